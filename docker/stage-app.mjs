// The Dockerfile's build stage runs this (on Bun, no shell needed) to turn
// the build context into the runtime tree, in place:
//   1. production dependencies: kept as they are when the context carries
//      node_modules (an offline build: docker/build-image.sh puts them there),
//      installed from the registry otherwise (`bun install --production`,
//      which reads package-lock.json);
//   2. everything the runtime does not load is removed: tests, compiled dist/
//      (Bun runs the TypeScript sources), source maps, build info, and the
//      type-only `typescript` package.
// Usage: bun docker/stage-app.mjs DIR
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = process.argv[2] ?? process.cwd();
const say = (message) => console.log(`stage-app: ${message}`);

if (existsSync(join(root, 'node_modules'))) {
  say('using the node_modules of the build context');
} else {
  say('bun install --production');
  const install = spawnSync(process.execPath, ['install', '--production', '--ignore-scripts', '--no-progress'], { cwd: root, stdio: 'inherit' });
  if (install.status !== 0) process.exit(install.status ?? 1);
}

const workspaces = ['cli', ...readdirSync(join(root, 'packages')).map((name) => join('packages', name))];
const unused = [
  'e2e', 'bench', 'examples', 'scripts', '.ci', 'node_modules/typescript', 'node_modules/bun', 'node_modules/@oven',
  ...workspaces.flatMap((dir) => [join(dir, 'test'), join(dir, 'dist'), join(dir, 'tsconfig.json')]),
];
for (const path of unused) rmSync(join(root, path), { recursive: true, force: true });
// The workspace link of the e2e package would dangle once e2e/ is gone.
rmSync(join(root, 'node_modules', '@wmproxy', 'e2e'), { force: true });
let removed = 0;
for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
  if (entry.isFile() && (entry.name.endsWith('.map') || entry.name.endsWith('.tsbuildinfo'))) {
    rmSync(join(entry.parentPath ?? entry.path, entry.name));
    removed++;
  }
}
say(`pruned ${unused.length} paths and ${removed} map/build-info files`);
