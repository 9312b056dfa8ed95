#!/usr/bin/env node
// Paired and concurrent: several wmproxy builds (this checkout, a base
// checkout, this one with tracing on) in front of the same nginx backends,
// each loaded by its own wrk AT THE SAME TIME, so that whatever else the host
// runs meanwhile (other jobs, CPU frequency) falls on all of them alike. On a
// loaded host, runs taken one after another differ by 10-20 % from minute to
// minute; a ratio taken within one concurrent round resolves a few percent.
//
// Per round and contender: CPU per request (user + system time of the
// process from /proc/PID/stat, divided by the requests completed) and req/s; reported as ratios to the first contender of the
// same round (median, geometric mean, range), with nginx's own CPU per request
// measured alongside as the peer.
//
//   node bench/reverse-paired.mjs --compare DIR [--also DIR,...] [--runtime bun|node] [--rounds 10] [--duration 5] [--connections 32] [--trace] [--otlp] [--otel] [--rate N]
//
// Closed-loop (wrk, the default), a proxy that gets less CPU in a round also
// batches more per wakeup, which lowers its CPU per request: with --rate N an
// open-loop client in this process sends N requests a second to every
// contender alike (keep-alive, up to --connections each), so that each does
// the same work per second and only the cost of a request differs.
//
// Contenders: wmproxy@base (DIR, built), wmproxy@NAME for each --also DIR
// (another built checkout, NAME its directory's name, e.g. /work/main), wmproxy (this checkout), and with
// --trace wmproxy+trace (`--trace`: spans, no export), with --otlp
// wmproxy+otlp (every span exported to a collector in this process), with
// --otel wmproxy+otel (the same through the OpenTelemetry API and SDK), and
// nginx (keepalive upstream) as the peer.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LoadClient, argument, freePort, stop, waitPort } from './reverse-common.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => argument(args, name, fallback);
const compareRoot = arg('compare', undefined);
const alsoRoots = (arg('also', '') ?? '').split(',').filter(Boolean);
const runtime = arg('runtime', 'bun');
const rounds = Math.max(1, Number(arg('rounds', '10')));
const duration = Number(arg('duration', '5'));
const connections = Number(arg('connections', '32'));
const rate = Number(arg('rate', '0'));
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-paired-'));
const children = [];

function start(command, argv) {
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'ignore'], cwd: root });
  children.push(child);
  return child;
}

const TICK_NS = 1e7; // USER_HZ 100
/**
 * Nanoseconds on a CPU (user + system) of `pids`, from /proc/PID/stat: it
 * keeps the time of threads that exited (Bun and V8 start and stop helper
 * threads), which a sum over /proc/PID/task/* loses. 10 ms resolution: a
 * round is several hundred ms of CPU.
 */
function runNs(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {}
  }
  return ticks * TICK_NS;
}

function tree(pid) {
  const out = [pid];
  const result = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  for (const line of result.stdout.split('\n').filter(Boolean)) out.push(...tree(Number(line)));
  return out;
}

function wrk(port, seconds) {
  return new Promise((resolve) => {
    const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => (text += chunk));
    child.on('close', () => resolve({ requests: Number(/(\d+) requests in/.exec(text)?.[1] ?? 0), rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN), non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0) }));
  });
}

// Backends: one nginx process, two ports.
const b1 = await freePort();
const b2 = await freePort();
writeFileSync(
  join(dir, 'backend.conf'),
  `worker_processes 1; daemon off; pid ${dir}/backend.pid; error_log ${dir}/backend.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:${b1}; location / { return 200 "hello world"; } }
  server { listen 127.0.0.1:${b2}; location / { return 200 "hello world"; } } }
`,
);
start('nginx', ['-c', join(dir, 'backend.conf'), '-p', dir]);
await waitPort(b1);
await waitPort(b2);

let collectorPort = 0;
let collector;
if (args.includes('--otlp') || args.includes('--otel')) {
  collector = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{}'));
  });
  await new Promise((resolve) => collector.listen(0, '127.0.0.1', resolve));
  collectorPort = collector.address().port;
}

const contenders = [
  ...(compareRoot ? [{ name: 'wmproxy@base', tree: compareRoot, extra: [] }] : []),
  ...alsoRoots.map((tree) => ({ name: `wmproxy@${tree.replace(/\/+$/, '').split('/').pop()}`, tree, extra: [] })),
  { name: 'wmproxy', tree: root, extra: [] },
  ...(args.includes('--trace') ? [{ name: 'wmproxy+trace', tree: root, extra: ['--trace'] }] : []),
  ...(args.includes('--otel') ? [{ name: 'wmproxy+otel', tree: root, extra: ['--otlp-endpoint', `http://127.0.0.1:${collectorPort}/v1/traces`, '--trace-exporter', 'otel'] }] : []),
  ...(args.includes('--otlp') ? [{ name: 'wmproxy+otlp', tree: root, extra: ['--otlp-endpoint', `http://127.0.0.1:${collectorPort}/v1/traces`] }] : []),
  { name: 'nginx', nginx: true },
];
for (const contender of contenders) {
  const port = await freePort();
  contender.port = port;
  if (contender.nginx) {
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:${b1}; server 127.0.0.1:${b2}; keepalive 256; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`,
    );
    contender.child = start('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir]);
  } else {
    const command = runtime === 'bun' ? join(contender.tree, 'node_modules/.bin/bun') : process.execPath;
    contender.child = start(command, [join(contender.tree, 'cli/bin/run.js'), 'reverse-proxy', '--from', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${b1},http://127.0.0.1:${b2}`, '--log-level', 'warn', ...contender.extra]);
  }
  await waitPort(port);
}
for (const contender of contenders) contender.pids = tree(contender.child.pid);

/** `rate` requests a second to every contender at once, for `seconds` (open loop: late answers do not slow the sending). */
async function openLoop(seconds) {
  const clients = contenders.map((c) => (c.client ??= new LoadClient({ port: c.port, maxConns: connections })));
  const counts = contenders.map(() => ({ requests: 0, non2xx: 0 }));
  const TICK_MS = 10;
  const started = performance.now();
  let sent = 0;
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * rate);
      for (; sent < due; sent++) clients.forEach((client, i) => client.request((status) => (status === 200 ? counts[i].requests++ : counts[i].non2xx++)));
      if (performance.now() - started >= seconds * 1000) {
        clearInterval(timer);
        resolve();
      }
    }, TICK_MS);
  });
  // Let the answers in flight arrive (they were sent within the round).
  await new Promise((resolve) => setTimeout(resolve, 200));
  return counts.map((count) => ({ ...count, rps: count.requests / seconds }));
}

/** One concurrent round: every contender loaded at once; CPU ns per request and req/s each. */
async function round(seconds) {
  const before = contenders.map((c) => runNs(c.pids));
  const runs = rate > 0 ? await openLoop(seconds) : await Promise.all(contenders.map((c) => wrk(c.port, seconds)));
  const after = contenders.map((c) => runNs(c.pids));
  return contenders.map((c, i) => ({ name: c.name, rps: runs[i].rps, requests: runs[i].requests, non2xx: runs[i].non2xx, cpuUsPerReq: (after[i] - before[i]) / 1000 / runs[i].requests }));
}

await round(3); // warm-up: JIT-compiled proxies reach their optimised code
const results = [];
for (let r = 0; r < rounds; r++) results.push(await round(duration));

for (const contender of contenders) contender.client?.close?.();
for (const contender of contenders) await stop(contender.child);
for (const child of children) await stop(child);
collector?.close();

const fmt = (n, digits = 3) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const gmean = (values) => Math.exp(values.reduce((sum, value) => sum + Math.log(value), 0) / values.length);
const base = contenders[0].name;
console.log(`\nreverse proxy, concurrent paired rounds: ${rounds} x ${duration}s, ${rate > 0 ? `${rate} req/s open loop` : `wrk -t1 -c${connections}`} per contender, ${runtime}, ${new Date().toISOString()}`);
console.log('contender          req/s (median)  cpu us/req (median)   cpu/req x ' + base.padEnd(14) + ' median  gmean   [min - max]     req/s x ' + base + ' median');
const summary = [];
for (const contender of contenders) {
  const rows = results.map((rows) => rows.find((row) => row.name === contender.name));
  const bases = results.map((rows) => rows.find((row) => row.name === base));
  const cpu = rows.map((row, i) => row.cpuUsPerReq / bases[i].cpuUsPerReq);
  const rps = rows.map((row, i) => row.rps / bases[i].rps);
  const sorted = [...cpu].sort((a, b) => a - b);
  summary.push({ name: contender.name, rps: median(rows.map((row) => row.rps)), cpuUsPerReq: median(rows.map((row) => row.cpuUsPerReq)), cpuRatio: { median: median(cpu), gmean: gmean(cpu), min: sorted[0], max: sorted[sorted.length - 1], rounds: cpu }, rpsRatio: median(rps), non2xx: rows.reduce((sum, row) => sum + row.non2xx, 0) });
  console.log(
    `${contender.name.padEnd(18)} ${fmt(median(rows.map((row) => row.rps)), 0).padStart(14)} ${fmt(median(rows.map((row) => row.cpuUsPerReq)), 2).padStart(20)}   ${' '.repeat(24)}${fmt(median(cpu)).padStart(6)}  ${fmt(gmean(cpu))}  [${fmt(sorted[0])} - ${fmt(sorted[sorted.length - 1])}]  ${fmt(median(rps)).padStart(10)}`,
  );
}
console.log(JSON.stringify({ bench: 'reverse-paired', runtime, rounds, duration, connections, rate, base, summary }));
process.exit(0);
