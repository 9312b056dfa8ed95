#!/usr/bin/env node
// Runs every test file on Bun (TypeScript sources) and on Node (compiled
// dist/, under c8 for coverage). Exits non-zero if either run fails.
// Usage: node scripts/test.mjs [--bun|--node] [filter...]
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const only = args.includes('--bun') ? 'bun' : args.includes('--node') ? 'node' : 'both';
const filters = args.filter((arg) => !arg.startsWith('--'));
const bin = (name) => join(root, 'node_modules', '.bin', name);

function testFiles(dir, extension) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((name) => name.endsWith(`.test.${extension}`) && !name.includes('node_modules'))
    .map((name) => join(dir, name));
}

const projects = [
  ...readdirSync(join(root, 'packages')).map((name) => join(root, 'packages', name)),
  join(root, 'cli'),
  join(root, 'e2e'),
];
const matches = (file) => filters.length === 0 || filters.some((filter) => file.includes(filter));

function run(label, command, commandArgs, env = {}) {
  console.log(`\n=== ${label}: ${command} ${commandArgs.map((a) => relative(root, a) || a).join(' ')}`);
  const result = spawnSync(command, commandArgs, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (result.error) console.error(result.error.message);
  return result.status ?? 1;
}

// The tests drive real peers (curl, openssl, Dante, Chromium, Docker). On a
// fresh Debian machine run as root, install them first with the same step CI
// uses, so that `npm test` alone does the whole set-up.
const peers = ['curl', 'openssl', 'danted', 'chromium', 'docker', 'unshare', 'nginx', 'python3', 'etcd', 'redis-server', 'dnsmasq', 'pebble', 'nghttp', 'h2load', 'websockify'];
const missing = peers.filter((name) => spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status !== 0);
const dockerDown = !missing.includes('docker') && spawnSync('docker', ['info'], { stdio: 'ignore' }).status !== 0;
if (missing.length > 0 || dockerDown) {
  const why = [missing.length > 0 ? `missing ${missing.join(', ')}` : '', dockerDown ? 'Docker daemon not running' : ''].filter(Boolean).join('; ');
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    console.log(`=== set-up (${why}): bash .ci/run --setup-only`);
    spawnSync('bash', [join(root, '.ci', 'run'), '--setup-only'], { cwd: root, stdio: 'inherit' });
  } else {
    console.log(`=== ${why}: tests that need them will fail or skip (as root on Debian, \`bash .ci/run --setup-only\` installs them)`);
  }
}

let failed = 0;
// e2e is not part of the product build (root tsconfig), so its tests are built here too.
const e2eProject = existsSync(join(root, 'e2e', 'tsconfig.json')) ? ['e2e'] : [];
failed |= run('build', bin('tsc'), ['-b', 'tsconfig.json', ...e2eProject]);
if (failed) process.exit(failed);
// Listed after the build, so that freshly compiled files are found.
const sources = projects.flatMap((dir) => testFiles(join(dir, 'test'), 'ts')).filter(matches);
const compiled = projects.flatMap((dir) => testFiles(join(dir, 'dist', 'test'), 'js')).filter(matches);
if (sources.length === 0 || compiled.length === 0) {
  console.error(`no test files matched ${filters.join(' ') || '(all)'}`);
  process.exit(1);
}

if (only !== 'node') {
  // One file per process keeps port and timer state from leaking between suites.
  failed |= run('tests on Bun', bin('bun'), ['test', '--timeout', '60000', ...sources.map((file) => './' + relative(root, file))]);
}
if (only !== 'bun') {
  failed |= run('tests on Node (c8)', bin('c8'), [
    '--reporter=text-summary',
    '--src=packages',
    '--exclude=**/test/**',
    '--exclude=**/node_modules/**',
    process.execPath,
    '--test',
    '--test-concurrency=1',
    '--test-reporter=spec',
    ...compiled,
  ]);
}
// The container suites skip themselves without Docker; say so where it is seen.
const e2eRan = [...sources, ...compiled].some((file) => relative(root, file).startsWith('e2e'));
if (e2eRan && spawnSync('docker', ['info'], { stdio: 'ignore' }).status !== 0) {
  console.log(`\n=== e2e: the container suites were SKIPPED: no Docker daemon answers${process.env.CI ? ' (a failure under CI)' : ''}`);
}
process.exit(failed ? 1 : 0);
