import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// oclif's explicit strategy imports the whole command table at start-up, so
// whatever a command file imports statically is loaded by every command:
// `wmproxy reverse-proxy` once carried the config schema and through it every
// package (tunnel, acme, static...), about 10 MiB more heap, which cost its
// request path measurably. Commands import what only they need inside run().

/** The repository root, from cli/test (Bun) or cli/dist/test (Node). */
function repoRoot(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!(existsSync(join(dir, 'packages')) && existsSync(join(dir, 'cli')))) dir = join(dir, '..');
  return dir;
}

// Value imports and re-exports (not `import type`/`export type`), and bare side-effect imports.
const STATIC_IMPORT = /^\s*(?:import|export)\s+(?!type\b)[^;]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm;

/** Every module the command table loads at start-up: workspace files, and the names of other packages. */
function startupGraph(root: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const pending = [join(root, 'cli/src/commands.ts')];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const match of readFileSync(file, 'utf8').matchAll(STATIC_IMPORT)) {
      const specifier = (match[1] ?? match[2])!;
      if (specifier.startsWith('node:')) continue;
      if (specifier.startsWith('.')) {
        const base = resolve(dirname(file), specifier).replace(/\.js$/, '');
        const target = [`${base}.ts`, join(base, 'index.ts')].find((candidate) => existsSync(candidate));
        if (target) pending.push(target);
        continue;
      }
      const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
      packages.add(name);
      if (name.startsWith('@wmproxy/')) {
        const index = join(root, 'packages', name.slice('@wmproxy/'.length), 'src/index.ts');
        if (existsSync(index)) pending.push(index);
      }
    }
  }
  return { files, packages };
}

test('the command table loads only the packages every command needs: heavy ones are imported inside run()', () => {
  const { files, packages } = startupGraph(repoRoot());
  assert.ok(files.size > 20, `walked ${files.size} files`);
  const workspace = [...packages].filter((name) => name.startsWith('@wmproxy/')).sort();
  assert.deepEqual(workspace, ['@wmproxy/core-net', '@wmproxy/health', '@wmproxy/reverse']);
  for (const heavy of ['@wmproxy/config', '@wmproxy/control', '@wmproxy/tunnel', '@wmproxy/acme', 'elysia', 'etcd3', 'ioredis', 'acme-client', '@opentelemetry/sdk-trace']) {
    assert.ok(!packages.has(heavy), `${heavy} is loaded by every command`);
  }
});
