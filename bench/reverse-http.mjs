#!/usr/bin/env node
// HTTP reverse-proxy benchmark: wmproxy on Bun, wmproxy on Node, nginx and
// HAProxy (from Debian) in front of the same two backends, and the backends
// directly; wrk with keep-alive at 64 and 256 connections. Prints req/s,
// p50/p99, CPU per request (user + system, and user alone: the kernel part of
// loopback proxying is about the same for every proxy), peak RSS of the
// proxy and its private part (see peakAnonMiB), and ratios to nginx.
//
//   node bench/reverse-http.mjs [--duration 5] [--connections 64,256] [--only wmproxy-bun,nginx] [--rounds 1] [--compare DIR] [--warmup 3]
//                               [--trace] [--trace-otlp] [--trace-otel] [--pair NAME]
//
// --compare DIR adds wmproxy-bun@base and wmproxy-node@base, run from another
// checkout (DIR, built with `npx tsc -b`), to compare a change against its
// base in the same run. --trace adds wmproxy-bun+trace and wmproxy-node+trace
// (W3C trace context on: a span id per hop and attempt, trace ids; no export);
// --trace-otlp adds +otlp contenders that also export every span (sample
// ratio 1) to a collector in this process that reads and drops the batches;
// --trace-otel adds +otel contenders that export the same way through the
// OpenTelemetry API and SDK (`--trace-exporter otel`).
// --pair NAME prints, per round, each contender's req/s and CPU per request as
// a ratio to NAME's run of the same round (e.g. --pair wmproxy-bun@base);
// --pair @base pairs each wmproxy-RUNTIME... with wmproxy-RUNTIME@base.
// --warmup S (default 3) loads each proxy for S seconds
// before measuring, so that JIT-compiled ones are measured at steady state.
//
// run% / wait% are the share of the run the proxy's threads spent on a CPU
// and runnable but waiting for one (/proc/PID/task/*/schedstat; the rest is
// sleep): on a shared machine a low CPU share with high wait% is other load,
// not the proxy waiting on something. With --rounds N every contender runs N
// times, interleaved (odd rounds in reverse order), and the median row is
// shown, then each proxy's req/s and p99 as ratios to the nginx run of the
// same round: median and range (the machine's noise is large between minutes).
//
// The backends are one nginx process (two ports, `return 200`), so they cost
// little CPU. Everything listens on 127.0.0.1.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argument, freePort, sleep, stop, waitPort } from './reverse-common.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => argument(args, name, fallback);
const duration = Number(arg('duration', '5'));
const connectionsList = arg('connections', '64,256').split(',').map(Number);
const only = arg('only', '')?.split(',').filter(Boolean);
const rounds = Math.max(1, Number(arg('rounds', '1')));
const compareRoot = arg('compare', undefined);
const warmup = Number(arg('warmup', '3'));
const trace = args.includes('--trace');
const traceOtel = args.includes('--trace-otel');
const traceOtlp = args.includes('--trace-otlp') || traceOtel;
const pairWith = arg('pair', undefined);
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-bench-'));
const children = [];




function start(command, argv, name) {
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe'], cwd: root });
  child.stderr.on('data', (chunk) => {
    if (process.env.BENCH_VERBOSE) process.stderr.write(`[${name}] ${chunk}`);
  });
  children.push(child);
  return child;
}


/** Every pid of a process tree (nginx master and workers). */
function tree(pid) {
  const out = [pid];
  const result = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  for (const line of result.stdout.split('\n').filter(Boolean)) out.push(...tree(Number(line)));
  return out;
}

const TICK = 100; // USER_HZ
/** User and system CPU time of `pids`, in ms. */
function cpuMs(pids) {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      user += Number(fields[11]);
      system += Number(fields[12]);
    } catch {}
  }
  return { user: (user * 1000) / TICK, system: (system * 1000) / TICK };
}
/** Nanoseconds on a CPU and waiting on a run queue, summed over every thread. */
function schedNs(pids) {
  let run = 0;
  let wait = 0;
  for (const pid of pids) {
    let tasks = [];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {}
    for (const tid of tasks) {
      try {
        const [r, w] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
        run += r;
        wait += w;
      } catch {}
    }
  }
  return { run, wait };
}
function peakRssMiB(pids) {
  let kb = 0;
  for (const pid of pids) {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) kb += Number(match[1]);
    } catch {}
  }
  return kb / 1024;
}

function parseLatency(text, label) {
  const match = new RegExp(`\\s${label}%\\s+([\\d.]+)(us|ms|s)`).exec(text);
  if (!match) return NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
}

/**
 * Peak private (anonymous) memory of `pids` while `work` runs, sampled every
 * 50 ms: VmHWM also counts the pages of the executable mapped from disk
 * (shared, clean: about 36-44 MiB of the Bun binary, 1 MiB of nginx's).
 */
async function peakAnonMiB(pids, work) {
  let peak = 0;
  const sample = () => {
    let kb = 0;
    for (const pid of pids) {
      try {
        kb += Number(/RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      } catch {}
    }
    peak = Math.max(peak, kb / 1024);
  };
  const timer = setInterval(sample, 50);
  try {
    return { result: await work(), peak };
  } finally {
    clearInterval(timer);
  }
}

function wrk(port, connections) {
  return new Promise((resolve) => {
    const child = spawn('wrk', ['-t2', `-c${connections}`, `-d${duration}s`, '--latency', `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => (text += chunk));
    child.on('close', () => resolve(parseWrk(text)));
  });
}

function parseWrk(text) {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? 0);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? '0';
  const socketErrors = /Socket errors: (.*)/.exec(text)?.[1] ?? '';
  return { rps, requests, p50: parseLatency(text, '50'), p99: parseLatency(text, '99'), errors: Number(errors), socketErrors };
}

// ---------------------------------------------------------------- backends
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
start('nginx', ['-c', join(dir, 'backend.conf'), '-p', dir], 'backends');
await waitPort(b1);
await waitPort(b2);

// ---------------------------------------------------------------- OTLP collector (--trace-otlp)
// Reads and drops each batch, counting the spans by their ids (no JSON parse: its CPU is not the proxy's).
let collectorPort = 0;
let collectedSpans = 0;
let collector;
if (traceOtlp) {
  collector = createServer((req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      for (let at = body.indexOf('"spanId"'); at >= 0; at = body.indexOf('"spanId"', at + 8)) collectedSpans++;
      res.end('{}');
    });
  });
  await new Promise((resolve) => collector.listen(0, '127.0.0.1', resolve));
  collectorPort = collector.address().port;
}

// ---------------------------------------------------------------- proxies
const contenders = [
  {
    name: 'direct',
    async start(port) {
      return { port: b1, pids: [] };
    },
  },
  {
    name: 'nginx',
    async start(port) {
      writeFileSync(
        join(dir, 'nginx.conf'),
        `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:${b1}; server 127.0.0.1:${b2}; keepalive 256; }
  server { listen 127.0.0.1:${port};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`,
      );
      const child = start('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], 'nginx');
      return { child, port };
    },
  },
  {
    name: 'haproxy',
    async start(port) {
      writeFileSync(
        join(dir, 'haproxy.cfg'),
        `global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:${port}
  default_backend app
backend app
  balance roundrobin
  server b1 127.0.0.1:${b1}
  server b2 127.0.0.1:${b2}
`,
      );
      const child = start('haproxy', ['-f', join(dir, 'haproxy.cfg')], 'haproxy');
      return { child, port };
    },
  },
  ...[
    ['bun', root, '', []],
    ['node', root, '', []],
    ...(compareRoot ? [['bun', compareRoot, '@base', []], ['node', compareRoot, '@base', []]] : []),
    ...(trace ? [['bun', root, '+trace', ['--trace']], ['node', root, '+trace', ['--trace']]] : []),
    ...(traceOtel ? [['bun', root, '+otel', ['--otlp-endpoint', `http://127.0.0.1:${collectorPort}/v1/traces`, '--trace-exporter', 'otel']], ['node', root, '+otel', ['--otlp-endpoint', `http://127.0.0.1:${collectorPort}/v1/traces`, '--trace-exporter', 'otel']]] : []),
    ...(args.includes('--trace-otlp') ? [['bun', root, '+otlp', ['--otlp-endpoint', `http://127.0.0.1:${collectorPort}/v1/traces`]], ['node', root, '+otlp', ['--otlp-endpoint', `http://127.0.0.1:${collectorPort}/v1/traces`]]] : []),
  ].map(([runtime, tree, suffix, extra]) => ({
    name: `wmproxy-${runtime}${suffix}`,
    async start(port) {
      const command = runtime === 'bun' ? join(tree, 'node_modules/.bin/bun') : process.execPath;
      const child = start(
        command,
        [join(tree, 'cli/bin/run.js'), 'reverse-proxy', '--from', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${b1},http://127.0.0.1:${b2}`, '--log-level', 'warn', ...extra],
        `wmproxy-${runtime}${suffix}`,
      );
      return { child, port };
    },
  })),
].filter((c) => !only?.length || only.includes(c.name));

const results = [];
for (let round = 0; round < rounds; round++) {
  // Odd rounds run the contenders in reverse order, so that a drift of the host's speed
  // within a round favours nobody in the paired ratios.
  for (const contender of round % 2 === 0 ? contenders : [...contenders].reverse()) {
    const port = await freePort();
    const started = await contender.start(port);
    if (process.env.BENCH_VERBOSE) console.error('started', contender.name, started.port);
    await waitPort(started.port);
    // The real server process: bun/node run.js execs no children; nginx has a master and a worker.
    const pids = started.child ? tree(started.child.pid) : [];
    // Warm-up long enough for JIT-compiled proxies (Bun, Node) to reach their
    // optimised code: a fresh process measured at once pays for compiling.
    spawnSync('wrk', ['-t2', `-c${connectionsList[0]}`, `-d${warmup}s`, `http://127.0.0.1:${started.port}/`]);
    for (const connections of connectionsList) {
      const allPids = started.child ? tree(started.child.pid) : pids;
      const cpuBefore = cpuMs(allPids);
      const schedBefore = schedNs(allPids);
      const wallBefore = process.hrtime.bigint();
      const { result: run, peak: anonMiB } = await peakAnonMiB(allPids, () => wrk(started.port, connections));
      const wallNs = Number(process.hrtime.bigint() - wallBefore);
      const cpuAfter = cpuMs(allPids);
      const userMs = cpuAfter.user - cpuBefore.user;
      const systemMs = cpuAfter.system - cpuBefore.system;
      const sched = schedNs(allPids);
      results.push({
        proxy: contender.name,
        connections,
        round,
        rps: run.rps,
        p50: run.p50,
        p99: run.p99,
        cpuUsPerReq: started.child && run.requests ? ((userMs + systemMs) * 1000) / run.requests : NaN,
        userUsPerReq: started.child && run.requests ? (userMs * 1000) / run.requests : NaN,
        runPct: started.child ? ((sched.run - schedBefore.run) * 100) / wallNs : NaN,
        waitPct: started.child ? ((sched.wait - schedBefore.wait) * 100) / wallNs : NaN,
        peakRssMiB: started.child ? peakRssMiB(allPids) : NaN,
        peakAnonMiB: started.child ? anonMiB : NaN,
        errors: run.errors,
        socketErrors: run.socketErrors,
      });
    }
    if (started.child) await stop(started.child);
  }
}

/** Per proxy and connection count, the round with the median req/s. */
function medians(rows) {
  const out = [];
  for (const row of rows) {
    if (out.some((r) => r.proxy === row.proxy && r.connections === row.connections)) continue;
    const same = rows.filter((r) => r.proxy === row.proxy && r.connections === row.connections).sort((a, b) => a.rps - b.rps);
    out.push(same[Math.floor((same.length - 1) / 2)]);
  }
  return out;
}

for (const child of children) await stop(child);

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
const shown = medians(results);
console.log(`\nreverse proxy, wrk -t2 -d${duration}s, 2 nginx backends, ${rounds > 1 ? `median of ${rounds} rounds, ` : ''}${new Date().toISOString()}`);
console.log('proxy               conns    req/s  x nginx   p50 ms   p99 ms  cpu us/req (user)  run%  wait%  peak RSS MiB (private)  non-2xx  socket errors');
for (const row of shown) {
  const nginx = shown.find((r) => r.proxy === 'nginx' && r.connections === row.connections);
  const ratio = nginx ? row.rps / nginx.rps : NaN;
  console.log(
    `${row.proxy.padEnd(19)} ${String(row.connections).padStart(5)} ${fmt(row.rps).padStart(8)} ${fmt(ratio, 2).padStart(8)} ${fmt(row.p50, 2).padStart(8)} ${fmt(row.p99, 2).padStart(8)} ${fmt(row.cpuUsPerReq, 1).padStart(11)} ${`(${fmt(row.userUsPerReq, 1)})`.padStart(6)} ${fmt(row.runPct).padStart(5)} ${fmt(row.waitPct).padStart(6)} ${fmt(row.peakRssMiB, 1).padStart(13)} ${`(${fmt(row.peakAnonMiB, 1)})`.padStart(9)} ${String(row.errors).padStart(8)}  ${row.socketErrors}`,
  );
}
// The host's speed drifts between minutes by more than the differences measured here;
// a ratio taken within one round (contenders run back to back) cancels most of it.
if (rounds > 1) {
  console.log('\npaired ratios to nginx, per round (each proxy against the nginx run of the same round): median [min - max]');
  console.log('proxy               conns        req/s x nginx                p99 x nginx');
  const range = (values) => {
    const sorted = [...values].sort((a, b) => a - b);
    return `${fmt(sorted[Math.floor((sorted.length - 1) / 2)], 2)} [${fmt(sorted[0], 2)} - ${fmt(sorted[sorted.length - 1], 2)}]`;
  };
  for (const row of shown) {
    if (row.proxy === 'nginx') continue;
    const pairs = results
      .filter((r) => r.proxy === row.proxy && r.connections === row.connections)
      .map((r) => [r, results.find((n) => n.proxy === 'nginx' && n.connections === r.connections && n.round === r.round)])
      .filter(([, nginx]) => nginx);
    if (pairs.length === 0) continue;
    console.log(
      `${row.proxy.padEnd(19)} ${String(row.connections).padStart(5)} ${range(pairs.map(([r, n]) => r.rps / n.rps)).padStart(24)} ${range(pairs.map(([r, n]) => r.p99 / n.p99)).padStart(26)}`,
    );
  }
}
if (pairWith) {
  // Paired: each contender against NAME's run of the same round (the host's drift between rounds cancels).
  console.log(`\npaired ratios to ${pairWith}, per round: median [min - max]`);
  console.log('proxy / baseline                           conns        req/s ratio        cpu us/req ratio');
  const range = (values) => {
    const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
    if (sorted.length === 0) return '-';
    return `${fmt(sorted[Math.floor((sorted.length - 1) / 2)], 3)} [${fmt(sorted[0], 3)} - ${fmt(sorted[sorted.length - 1], 3)}]`;
  };
  const summary = [];
  const baseOf = (proxy) => (pairWith.startsWith('@') ? (proxy.startsWith('wmproxy-') ? `${proxy.split(/[@+]/)[0]}${pairWith}` : undefined) : pairWith);
  for (const row of shown) {
    const base = baseOf(row.proxy);
    if (base === undefined || row.proxy === base || row.proxy === 'direct') continue;
    const pairs = results
      .filter((r) => r.proxy === row.proxy && r.connections === row.connections)
      .map((r) => [r, results.find((b) => b.proxy === base && b.connections === r.connections && b.round === r.round)])
      .filter(([, base]) => base);
    if (pairs.length === 0) continue;
    const rps = pairs.map(([r, b]) => r.rps / b.rps);
    const cpu = pairs.map(([r, b]) => r.cpuUsPerReq / b.cpuUsPerReq);
    summary.push({ proxy: row.proxy, base, connections: row.connections, rps, cpu });
    console.log(`${`${row.proxy} / ${base}`.padEnd(42)} ${String(row.connections).padStart(5)} ${range(rps).padStart(24)} ${range(cpu).padStart(24)}`);
  }
  console.log(JSON.stringify({ pairedWith: pairWith, ratios: summary }));
}
if (traceOtlp) {
  console.log(`\nOTLP collector received ${collectedSpans} spans`);
  collector.close();
}
if (args.includes('--json')) console.log(JSON.stringify(results));
