#!/usr/bin/env node
// Long fuzzing runs (nightly): the same properties as the bounded runs in the
// test suite (docs/fuzzing.md), each for a time budget instead of a fixed run
// count, from a random seed that is printed so that a failure can be replayed.
//
// Usage: node scripts/fuzz.mjs [--time SECONDS] [--seed N] [--rounds N]
//                              [--runtime bun|node|both] [--out FILE] [target...]
//   --time     budget per property in seconds (default 60)
//   --seed     first seed (default: random); round k uses seed + k
//   --rounds   how many rounds, each with its own seed (default 1)
//   --runtime  where to run (default bun; node runs the compiled dist/ files)
//   --out      where failing cases go, one JSON line each (default fuzz-found.jsonl)
//   targets    reverse, forward, http1, range (default: all)
// Replay a failure: WMPROXY_FUZZ_SEED=<seed> node scripts/fuzz.mjs --time <same> <target>,
// or add the case it printed to packages/testkit/fuzz/seeds/ (see docs/fuzzing.md).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const TARGETS = {
  reverse: 'packages/reverse/test/fuzz-differential.test.ts',
  forward: 'packages/http-proxy/test/fuzz-differential.test.ts',
  http1: 'packages/core-net/test/http1-property.test.ts',
  range: 'packages/static/test/range-property.test.ts',
};

function usage(message) {
  if (message) console.error(message);
  console.error('usage: node scripts/fuzz.mjs [--time SECONDS] [--seed N] [--rounds N] [--runtime bun|node|both] [--out FILE] [reverse|forward|http1|range ...]');
  process.exit(2);
}

const args = process.argv.slice(2);
const options = { time: 60, seed: undefined, rounds: 1, runtime: 'bun', out: join(root, 'fuzz-found.jsonl') };
const targets = [];
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  const value = () => args[++i] ?? usage(`${arg} needs a value`);
  if (arg === '--time') options.time = Number(value());
  else if (arg === '--seed') options.seed = Number(value());
  else if (arg === '--rounds') options.rounds = Number(value());
  else if (arg === '--runtime') options.runtime = value();
  else if (arg === '--out') options.out = resolve(value());
  else if (arg === '--help' || arg === '-h') usage();
  else if (arg in TARGETS) targets.push(arg);
  else usage(`unknown argument ${arg}`);
}
if (!(options.time > 0) || !Number.isInteger(options.rounds) || options.rounds < 1) usage('--time and --rounds must be positive');
if (!['bun', 'node', 'both'].includes(options.runtime)) usage('--runtime is bun, node or both');
if (options.seed !== undefined && !Number.isSafeInteger(options.seed)) usage('--seed must be an integer');
const chosen = targets.length > 0 ? targets : Object.keys(TARGETS);
const firstSeed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
const bin = (name) => join(root, 'node_modules', '.bin', name);

if (options.runtime !== 'bun') {
  console.log('=== build: tsc -b');
  const build = spawnSync(bin('tsc'), ['-b', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}

const linesBefore = existsSync(options.out) ? readFileSync(options.out, 'utf8').split('\n').filter(Boolean).length : 0;
const failures = [];
for (let round = 0; round < options.rounds; round++) {
  const seed = firstSeed + round;
  for (const target of chosen) {
    const source = TARGETS[target];
    const compiled = source.replace('/test/', '/dist/test/').replace(/\.ts$/, '.js');
    const env = { ...process.env, WMPROXY_FUZZ_TIME_MS: String(options.time * 1000), WMPROXY_FUZZ_SEED: String(seed), WMPROXY_FUZZ_FOUND: options.out };
    // Each property may use its budget and then shrink a failure: leave room for both.
    const timeoutMs = String(options.time * 1000 * 3 + 120_000);
    const runs = [];
    if (options.runtime !== 'node') runs.push(['bun', bin('bun'), ['test', '--timeout', timeoutMs, `./${source}`]]);
    if (options.runtime !== 'bun') runs.push(['node', process.execPath, ['--test', '--test-concurrency=1', `--test-timeout=${timeoutMs}`, '--test-reporter=spec', compiled]]);
    for (const [runtime, command, commandArgs] of runs) {
      console.log(`\n=== fuzz ${target} on ${runtime}, seed ${seed}, ${options.time} s per property`);
      const result = spawnSync(command, commandArgs, { cwd: root, stdio: 'inherit', env });
      if (result.status !== 0) {
        failures.push(`${target} on ${runtime}, seed ${seed}`);
        console.log(`\n=== FAILED: ${target} on ${runtime} with seed ${seed} (replay: WMPROXY_FUZZ_SEED=${seed} node scripts/fuzz.mjs --time ${options.time} --runtime ${runtime} ${target})`);
      }
    }
  }
}

const found = existsSync(options.out) ? readFileSync(options.out, 'utf8').split('\n').filter(Boolean).slice(linesBefore) : [];
console.log(`\n=== fuzzing done: ${chosen.join(', ')}; seeds ${firstSeed}..${firstSeed + options.rounds - 1}; ${failures.length} failing run(s)`);
for (const failure of failures) console.log(`  FAILED ${failure}`);
if (found.length > 0) console.log(`  ${found.length} failing case(s) written to ${options.out}: add them to packages/testkit/fuzz/seeds/ as regression seeds (docs/fuzzing.md)`);
process.exit(failures.length > 0 ? 1 : 0);
