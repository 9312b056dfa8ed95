/**
 * The runtime boundary (docs/CONTRIBUTING.md): only core-net asks which
 * runtime it runs on. Outside `packages/core-net/src/runtime/`, no source file
 * in `packages/<name>/src/` or `cli/src/` may mention `Bun.…`, `….Bun`
 * (`globalThis.Bun`), `typeof Bun` or `process.versions.bun` in code (comments
 * are free to), except a runtime adapter: a file below a folder named
 * `runtime` or `adapters` that is itself in a folder named `bun` or has `bun`
 * in its file name (`runtime/bun/index.ts`, `runtime/bun.ts`,
 * `adapters/elysia-bun.ts`). Everything else imports core-net's facts
 * (`runtimeName`, `hostRuntime`, `supportsReusePort`, `hasCluster`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const PROBES = /\bBun\s*\.|\.\s*Bun\b|\btypeof\s+Bun\b|\bversions\s*\.\s*bun\b/;

/** The repository root, from this file's place in src (Bun) or dist (Node). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'packages', 'core-net')) || !existsSync(join(dir, 'cli'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('repository root not found');
    dir = up;
  }
  return dir;
}

/** Source text with its comments blanked (strings and template literals kept: they may run code). */
function withoutComments(source: string): string {
  let out = '';
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === '/' && next === '/') {
      while (i < source.length && source[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      const stop = end < 0 ? source.length : end + 2;
      out += source.slice(i, stop).replace(/[^\n]/g, ' '); // keeps line numbers
      i = stop;
    } else if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      while (j < source.length && source[j] !== c) j += source[j] === '\\' ? 2 : 1;
      out += source.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Whether `path` (relative to the root, `/`-separated) may ask about the runtime. */
function mayProbeRuntime(path: string): boolean {
  if (path.startsWith('packages/core-net/src/runtime/')) return true;
  const parts = path.split('/');
  const file = parts[parts.length - 1]!;
  const folders = parts.slice(0, -1);
  const inAdapters = folders.some((folder) => folder === 'runtime' || folder === 'adapters');
  return inAdapters && (folders.includes('bun') || /bun/i.test(file));
}

function sourceFiles(root: string): string[] {
  const dirs = [...readdirSync(join(root, 'packages')).map((name) => join(root, 'packages', name, 'src')), join(root, 'cli', 'src')];
  return dirs
    .filter((dir) => existsSync(dir))
    .flatMap((dir) => readdirSync(dir, { recursive: true }).map((name) => join(dir, String(name))))
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))
    .map((file) => relative(root, file).split(sep).join('/'));
}

test('only core-net and runtime adapters ask which runtime this is', () => {
  const root = repoRoot();
  const files = sourceFiles(root);
  assert.ok(files.includes('packages/core-net/src/runtime/facts.ts'), 'the scan sees the sources');
  const offenders = files
    .filter((file) => !mayProbeRuntime(file))
    .flatMap((file) =>
      withoutComments(readFileSync(join(root, file), 'utf8'))
        .split('\n')
        .flatMap((line, index) => (PROBES.test(line) ? [`${file}:${index + 1}: ${line.trim()}`] : [])),
    );
  assert.deepEqual(offenders, [], 'import hostRuntime/runtimeName/supportsReusePort/hasCluster from @wmproxy/core-net, or move the code into a runtime adapter file');
});

test('the boundary check recognises every probe and only adapters are exempt', () => {
  for (const probe of ['Bun.serve({})', "typeof Bun !== 'undefined'", '(globalThis as { Bun?: unknown }).Bun', 'process.versions.bun', 'globalThis.Bun']) {
    assert.ok(PROBES.test(withoutComments(probe)), probe);
  }
  for (const fine of ['// Bun.serve is faster', '/* process.versions.bun */', 'const bundle = 1;', 'runtimeName === "bun"']) {
    assert.ok(!PROBES.test(withoutComments(fine)), fine);
  }
  assert.ok(PROBES.test(withoutComments("const url = 'http://x'; Bun.file(p)")), 'a // inside a string is not a comment');
  assert.ok(mayProbeRuntime('packages/core-net/src/runtime/facts.ts'));
  assert.ok(mayProbeRuntime('packages/static/src/runtime/bun.ts'));
  assert.ok(mayProbeRuntime('packages/control/src/adapters/bun/serve.ts'));
  assert.ok(!mayProbeRuntime('packages/static/src/server.ts'));
  assert.ok(!mayProbeRuntime('packages/static/src/runtime/workers.ts'));
  assert.ok(!mayProbeRuntime('packages/control/src/bun-helpers.ts'));
  assert.ok(!mayProbeRuntime('cli/src/commands/file-server.ts'));
});
