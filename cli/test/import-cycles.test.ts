import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, from cli/test (Bun) or cli/dist/test (Node). */
function repoRoot(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!(existsSync(join(dir, 'packages')) && existsSync(join(dir, 'cli')))) dir = join(dir, '..');
  return dir;
}

// Static, type-only, re-export and dynamic imports of a relative module: a
// cycle through any of them ties the files together, whether or not it runs.
const IMPORT = /(?:\b(?:import|export)\s[^;]*?\bfrom\s*|\bimport\(\s*)['"](\.\.?\/[^'"]+)['"]/g;

/** Each source file's relative imports, resolved to files (`./x.js` → `x.ts`, a folder → its index.ts). */
function importGraph(files: readonly string[]): Map<string, string[]> {
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const targets: string[] = [];
    for (const match of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const base = resolve(dirname(file), match[1]!).replace(/\.js$/, '');
      const target = [`${base}.ts`, join(base, 'index.ts')].find((candidate) => known.has(candidate));
      if (target) targets.push(target);
    }
    graph.set(file, targets);
  }
  return graph;
}

/** One cycle per strongly connected part of the graph, as a path that ends where it starts. */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file);
  return cycles;
}

function sourceFiles(root: string): string[] {
  const packages = join(root, 'packages');
  return readdirSync(packages).flatMap((name) => {
    const src = join(packages, name, 'src');
    if (!existsSync(src)) return [];
    return readdirSync(src, { recursive: true })
      .map(String)
      .filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts'))
      .map((path) => join(src, path));
  });
}

test('no source file of a package imports itself back through other files, type imports included', () => {
  const root = repoRoot();
  const files = sourceFiles(root);
  assert.ok(files.length > 100, `found the sources (${files.length} files)`);
  const cycles = findCycles(importGraph(files)).map((cycle) => cycle.map((file) => relative(root, file)).join(' -> '));
  assert.deepEqual(cycles, []);
});

test('a cycle through a type import, a re-export and a dynamic import is found; a diamond is not', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-cycles-'));
  try {
    mkdirSync(join(dir, 'c'));
    const files = ['a.ts', 'b.ts', 'c/index.ts', 'd.ts'].map((name) => join(dir, name));
    writeFileSync(files[0]!, "import type { B } from './b.js';\nimport { d } from './d.js';\n");
    writeFileSync(files[1]!, "export { c } from './c/index.js';\n");
    writeFileSync(files[2]!, "import { d } from '../d.js';\nexport const c = d;\n");
    writeFileSync(files[3]!, 'export const d = 1;\n');
    assert.deepEqual(findCycles(importGraph(files)), [], 'a -> b -> c -> d and a -> d is a diamond');
    writeFileSync(files[3]!, "export const d = 1;\nexport const load = () => import('./a.js');\n");
    const cycles = findCycles(importGraph(files)).map((cycle) => cycle.map((file) => relative(dir, file)));
    assert.deepEqual(cycles, [['a.ts', 'b.ts', 'c/index.ts', 'd.ts', 'a.ts']]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
