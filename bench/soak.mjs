#!/usr/bin/env node
// Soak benchmark: one wmproxy process running the reverse proxy and the
// forward proxy (bench/lib/wmproxy-target.mjs, Bun unless --runtime node)
// under steady mixed traffic (bench/lib/soak-traffic.mjs, about 500 requests
// and 60 new connections a second: keep-alive GETs, 16 KiB POSTs, WebSocket
// echoes, absolute-form GETs and CONNECT tunnels through the forward proxy,
// and aborts: half-sent bodies reset, GETs closed before the answer, resets
// right after connecting) for --duration after a warm-up. Every 5 s it
// samples the proxy's RSS and open FDs (/proc) and its live heap (heapUsed
// after a full GC, which the target reports on stdout).
//
// Verdict: a least-squares line through the last two thirds of the samples
// (the first third is start-up: JIT tiers, pools and heap sizing settle) for
// each of RSS, heap and FDs. The run fails (exit 1) when a line's growth over
// that window (slope x window length) is above the allowance:
//   RSS 8 MiB, heap 4 MiB, FDs 20.
// Why these: at a steady rate a healthy proxy's levels are flat, and the fit
// through its noise stays well inside them (a healthy --ci run on Bun: RSS
// +0.9 MiB, heap +0.02 MiB, FDs +4.6 over the window; connections in flight
// move the FD count by +-10). A leak of 1 KiB per request (about 500/s) grows
// the heap by 30 MiB a minute; 100 bytes per request or 1 KiB per new
// connection by about 3 MiB a minute; one FD per 1 000 connections by 4 FDs a
// minute: the 30-minute run (a 20-minute window) fails on each of these by
// far; the --ci run (a 65 s window) on the first, and on any leak from about
// 64 KiB of heap a second or one FD every 3 s (--self-test leaks 128 KiB a
// second and an FD every 2 s, and fails on all three). The allowances are
// totals over the window, so the slope threshold is allowance / window: for
// RSS 24 MiB/h in the 30-minute run, about 440 MiB/h in the --ci run.
// The run also fails if the proxy exits, or if more than 1 % of any kind of
// request fails (an exhausted resource shows there first).
//
//   node bench/soak.mjs [--duration 30m] [--warmup 60s] [--ci] [--runtime bun|node] [--scale 1] [--json] [--self-test]
//   --ci: --duration 100s --warmup 15s (about 2 minutes in all)
//   --self-test: the proxy leaks on purpose (heap and FDs); the run must fail.
// Needs `npx tsc -b` for --runtime node. Loopback only.
import { fork, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sampler } from './lib/procstat.mjs';
import { argument, freePort, sleep, stop, waitPort } from './reverse-common.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const ci = args.includes('--ci');
const arg = (name, fallback) => argument(args, name, fallback);

/** Seconds from `90`, `90s`, `30m`, `1h`. */
function seconds(text) {
  const match = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(String(text).trim());
  if (!match) throw new Error(`not a duration: ${text} (e.g. 90s, 30m, 1h)`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[match[2] ?? 's'];
}

const DURATION_S = seconds(arg('duration', ci ? '100s' : '30m'));
const WARMUP_S = seconds(arg('warmup', ci ? '15s' : '60s'));
const RUNTIME = arg('runtime', 'bun');
const SCALE = Number(arg('scale', '1'));
const SAMPLE_MS = 5_000;
const ALLOWANCE = { rss: 8, heap: 4, fds: 20 };
const UNITS = { rss: 'MiB', heap: 'MiB', fds: 'FDs' };
const MAX_ERROR_RATIO = 0.01;
if (RUNTIME === 'node' && !existsSync(join(root, 'packages/reverse/dist/src/index.js'))) {
  console.error('soak: run `npx tsc -b` first (Node runs the compiled dist/)');
  process.exit(1);
}

const live = new Set();
function start(command, argv, name) {
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: root });
  child.errorTail = '';
  child.stderr.on('data', (chunk) => {
    child.errorTail = (child.errorTail + chunk).slice(-4096);
    if (process.env.BENCH_VERBOSE) process.stderr.write(`[${name}] ${chunk}`);
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});
process.on('SIGINT', () => process.exit(130));

/** Least squares of `values` against `times` (seconds): slope per second, and r². */
export function regression(times, values) {
  const n = times.length;
  const meanT = times.reduce((sum, t) => sum + t, 0) / n;
  const meanV = values.reduce((sum, v) => sum + v, 0) / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (times[i] - meanT) ** 2;
    sxy += (times[i] - meanT) * (values[i] - meanV);
    syy += (values[i] - meanV) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return { slope, r2: syy === 0 ? 0 : (sxy * sxy) / (sxx * syy) };
}

// ---------------------------------------------------------------- start
const backendPorts = [await freePort(), await freePort()];
const backend = start(process.execPath, [join(root, 'bench/lib/backend.mjs'), ...backendPorts.map(String)], 'backends');
for (const port of backendPorts) await waitPort(port);
const reversePort = await freePort();
const forwardPort = await freePort();
const targetOptions = {
  mode: 'both', port: reversePort, forwardPort, backends: backendPorts, timeoutMs: 30_000, maxConnections: 4096, maxConnectionsPerIp: 0,
  statsMs: SAMPLE_MS, logLevel: 'warn', leak: args.includes('--self-test'),
};
const target =
  RUNTIME === 'bun'
    ? start(join(root, 'node_modules/.bin/bun'), [join(root, 'bench/lib/wmproxy-target.mjs'), JSON.stringify(targetOptions)], 'wmproxy')
    : start(process.execPath, ['--expose-gc', join(root, 'bench/lib/wmproxy-target.mjs'), JSON.stringify(targetOptions)], 'wmproxy');
let heap = { heapUsed: NaN };
let rest = '';
target.stdout.on('data', (chunk) => {
  const lines = (rest + chunk).split('\n');
  rest = lines.pop();
  for (const line of lines) if (line.startsWith('stats ')) heap = JSON.parse(line.slice(6));
});
let died = false;
let stopping = false;
target.once('exit', (code, signal) => {
  if (stopping) return;
  died = true;
  console.error(`soak: the proxy exited (${code ?? signal}); its last output:\n${target.errorTail}`);
});
await waitPort(reversePort);
await waitPort(forwardPort);

const traffic = fork(join(root, 'bench/lib/soak-traffic.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
traffic.send({ type: 'start', reversePort, forwardPort, backendPort: backendPorts[0], scale: SCALE });
console.error(`soak: wmproxy on ${RUNTIME}, warm-up ${WARMUP_S} s, then ${DURATION_S} s sampled every ${SAMPLE_MS / 1000} s`);
await sleep(WARMUP_S * 1000);

// ---------------------------------------------------------------- sample
const sampler = new Sampler(target.pid, 60_000);
const samples = [];
const t0 = performance.now();
for (let next = SAMPLE_MS; !died && next <= DURATION_S * 1000; next += SAMPLE_MS) {
  await sleep(Math.max(0, next - (performance.now() - t0)));
  const { fds, rss } = sampler.sample();
  samples.push({ t: (performance.now() - t0) / 1000, rss, heap: heap.heapUsed / 2 ** 20, fds, connections: heap.connections });
  if (process.env.BENCH_VERBOSE) console.error(JSON.stringify(samples.at(-1)));
}
sampler.stop();
const report = await new Promise((resolve) => {
  traffic.once('message', resolve);
  traffic.send({ type: 'report' });
});
traffic.send({ type: 'stop' });
stopping = true;
if (!died) await stop(target);
await stop(backend);

// ---------------------------------------------------------------- verdict
const fmt = (value, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const window = samples.slice(Math.floor(samples.length / 3));
const span = window.length > 1 ? window.at(-1).t - window[0].t : 0;
const failures = [];
console.log(`\nsoak: wmproxy (reverse + forward proxy) on ${RUNTIME}, ${fmt(DURATION_S / 60, 1)} min after ${WARMUP_S} s of warm-up, ${samples.length} samples; ${new Date().toISOString()}`);
console.log(`fit over the last two thirds: ${window.length} samples, ${fmt(span, 0)} s`);
console.log('metric      first     last      min      max   slope /h   growth over window   allowance   r²     verdict');
for (const metric of ['rss', 'heap', 'fds']) {
  const values = samples.map((s) => s[metric]);
  const fit = window.length > 2 ? regression(window.map((s) => s.t), window.map((s) => s[metric])) : { slope: NaN, r2: NaN };
  const growth = fit.slope * span;
  const ok = Number.isFinite(growth) && growth <= ALLOWANCE[metric];
  if (!ok) failures.push(`${metric} grew ${fmt(growth)} ${UNITS[metric]} over ${fmt(span, 0)} s (allowance ${ALLOWANCE[metric]})`);
  const digits = metric === 'fds' ? 0 : 1;
  console.log(
    `${`${metric} ${UNITS[metric]}`.padEnd(9)} ${fmt(values[0], digits).padStart(8)} ${fmt(values.at(-1), digits).padStart(8)} ${fmt(Math.min(...values), digits).padStart(8)} ${fmt(Math.max(...values), digits).padStart(8)} ` +
      `${fmt(fit.slope * 3600, 1).padStart(10)} ${fmt(growth, 2).padStart(20)} ${String(ALLOWANCE[metric]).padStart(11)}   ${fmt(fit.r2, 2).padStart(4)}   ${ok ? 'flat' : 'GROWING'}`,
  );
}
console.log('\ntraffic            ok   errors');
for (const [kind, { ok, errors }] of Object.entries(report.kinds)) {
  const failed = Object.values(errors).reduce((sum, n) => sum + n, 0);
  const ratio = failed / Math.max(1, ok + failed);
  if (kind !== 'abort' && ratio > MAX_ERROR_RATIO) failures.push(`${kind}: ${failed} of ${ok + failed} failed`);
  console.log(`${kind.padEnd(12)} ${String(ok).padStart(8)} ${String(failed).padStart(8)}  ${failed ? JSON.stringify(errors) : ''}`);
}
if (died) failures.push('the proxy exited');
if (args.includes('--json')) console.log(JSON.stringify({ samples, traffic: report.kinds }));
console.log(failures.length ? `\nFAIL: ${failures.join('; ')}` : '\nPASS: RSS, heap and FDs flat');
process.exit(failures.length ? 1 : 0);
