#!/usr/bin/env node
// The hot-path cost of a cluster-wide rate limit (issue 19): one wmproxy
// reverse proxy answering a fixed 200 at one location, three ways in the same
// run, interleaved over rounds: no limit, a local limit, and a
// `scope = "cluster"` limit counted in Redis (a real redis-server). Every
// client key stays far below its limit, so every request is admitted: what is
// measured is what the limit costs, not what it refuses. wrk keys by one
// client IP, so the limit's key is the `X-Client` header wrk's script sets to
// one of 1,000 values (many keys, as real traffic has).
//
//   node bench/cluster-rate-limit.mjs [--duration 5] [--connections 64] [--rounds 3] [--runtime bun|node]
//
// Target: cluster ≥ 0.9 × local req/s.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { argument, Children, freePort, median, sleep, startWmproxyRun, waitPort } from './reverse-common.mjs';
import { runCommand } from './lib/proc.mjs';
import { parseWrk } from './lib/wrk.mjs';

const args = process.argv.slice(2);
const duration = Number(argument(args, 'duration', '5'));
const connections = Number(argument(args, 'connections', '64'));
const rounds = Math.max(1, Number(argument(args, 'rounds', '3')));
const runtime = argument(args, 'runtime', 'bun');
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-bench-rl-'));
const children = new Children();
process.on('exit', () => {
  children.killAll();
  rmSync(dir, { recursive: true, force: true });
});

const redisPort = await freePort();
children.live.add(spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
await waitPort(redisPort);

const script = join(dir, 'keys.lua');
writeFileSync(script, 'local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format("GET", "/", { ["X-Client"] = "client-" .. (n % 1000) })\nend\n');

const variants = {
  none: '',
  local: 'rate_limit = { rate = "100000r/s", burst = 1000, key = "header:x-client" }',
  cluster: 'rate_limit = { rate = "100000r/s", burst = 1000, key = "header:x-client", scope = "cluster" }',
};

async function measure(name) {
  const port = await freePort();
  const control = await freePort();
  const file = join(dir, `${name}.toml`);
  writeFileSync(file, [
    `[control]\nlisten = "127.0.0.1:${control}"`,
    `[cluster]\nredis = "redis://127.0.0.1:${redisPort}"`,
    '[log]\nlevel = "warn"',
    `[[server]]\nlisten = "127.0.0.1:${port}"`,
    '[[server.location]]\npath = "/"\nrespond = { status = 200, body = "ok" }',
    variants[name],
  ].join('\n') + '\n');
  const child = startWmproxyRun(children, runtime, file);
  await waitPort(port);
  await runCommand('wrk', ['-t2', `-c${connections}`, '-d2s', '-s', script, `http://127.0.0.1:${port}/`]);
  const result = await runCommand('wrk', ['-t2', `-c${connections}`, `-d${duration}s`, '--latency', '-s', script, `http://127.0.0.1:${port}/`], { timeoutMs: (duration + 30) * 1000 });
  child.kill('SIGKILL');
  await sleep(300);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)$/m.exec(result.stdout);
  const scale = { us: 0.001, ms: 1, s: 1000 };
  return { ...parseWrk(result.stdout), p99: p99 ? Number(p99[1]) * scale[p99[2]] : NaN };
}

const results = { none: [], local: [], cluster: [] };
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? ['none', 'local', 'cluster'] : ['cluster', 'local', 'none'];
  for (const name of order) results[name].push(await measure(name));
}
const rps = (name) => median(results[name].map((r) => r.requestsPerSec));
const p99 = (name) => median(results[name].map((r) => r.p99));
const refused = (name) => results[name].reduce((sum, r) => sum + r.non2xx, 0);
console.log(`\ncluster rate limit hot path, wmproxy on ${runtime}, ${connections} connections, ${duration} s x ${rounds} rounds (median)`);
console.log('variant   req/s      p99 ms   vs local  non-2xx');
for (const name of ['none', 'local', 'cluster']) {
  console.log(`${name.padEnd(9)} ${rps(name).toFixed(0).padStart(8)}  ${p99(name).toFixed(2).padStart(7)}   ${(rps(name) / rps('local')).toFixed(3).padStart(7)}  ${refused(name)}`);
}
const ratio = rps('cluster') / rps('local');
console.log(`target cluster >= 0.9 x local: ${ratio >= 0.9 ? 'PASS' : 'FAIL'} (${ratio.toFixed(3)})`);
console.log(JSON.stringify({ bench: 'cluster-rate-limit', runtime, connections, duration, rounds, rps: { none: rps('none'), local: rps('local'), cluster: rps('cluster') }, ratio }));
process.exit(0);
