#!/usr/bin/env node
// Failover benchmark: 3 backends behind wmproxy (Bun), nginx (passive checks,
// proxy_next_upstream) and HAProxy (active checks, retries + redispatch), at a
// fixed request rate, all three measured in the same run. Timeline per proxy
// (after a warm-up of 8 s at the same rate, not counted, so that JIT tiering
// and pool filling are not in the healthy window):
//   0-5 s healthy | 5 s: backend B killed (SIGKILL) | 8 s: backend C stalled
//   (SIGSTOP: the kernel still accepts connections, nothing answers)
//   | 11 s: B restarted on its port | 14 s: C resumed (SIGCONT) | 17 s: end.
// Phases reported: healthy 0-5, B down 5-8, B down + C stalled 8-11,
// C stalled 11-14, recovery 14-17, and the outage 5-14 as a whole.
// The machine is shared: run several --rounds (the proxies take turns in
// each round) and compare within a round and by the medians printed last.
// wmproxy runs with a panic threshold of 30 % (default 50 %): with two of three
// servers down, 50 % would send traffic to all three again.
// The load generator is an open-loop raw-socket HTTP/1.1 client (LoadClient,
// no retries): requests are sent on schedule every millisecond whatever the
// answers; latency runs from the send to the last response byte. Its own lag
// (how late requests left against the schedule) and CPU use are printed, so
// that a client bottleneck shows. Client-visible errors: non-200 answers,
// connection errors, client timeout (5 s).
//
//   node bench/reverse-failover.mjs [--rate 1000] [--rounds 3] [--warmup 8]
//        [--only wmproxy,nginx,haproxy] [--wmproxy-args "--hedge-request 0"] [--json]
//        [--baseline DIR --baseline-args "..."]   (another wmproxy checkout, as "wm-base")
// BENCH_VERBOSE=1 prints per-second p50/p99/errors.
//
// --blackhole [--connections 64]: instead, a closed-loop run (wrk) per proxy:
// healthy 5 s, then backend B blackholed for 5 s: an iptables rule drops the
// SYNs to its port on loopback and B is restarted (its established
// connections close; the process listens, new connects hang; the window starts
// once it listens, so that its start-up CPU is not measured). Reports each
// proxy's request rate during the blackhole as a share of its healthy rate,
// p99 and errors. Needs root and iptables; the rule is removed at the end,
// also on failure or Ctrl-C.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds } from './lib/proc.mjs';
import { allowSyns, dropSyns } from './lib/syn-drop.mjs';
import { LoadClient, argument, freePort, percentile, sleep, stop, waitPort } from './reverse-common.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => argument(args, name, fallback);
const rate = Number(arg('rate', '1000'));
const rounds = Number(arg('rounds', '1'));
const warmupSec = Number(arg('warmup', '8'));
const only = arg('only', '').split(',').filter(Boolean);
const extraWmproxyArgs = arg('wmproxy-args', process.env.WMPROXY_ARGS ?? '').split(/\s+/).filter(Boolean);
// Another wmproxy checkout (e.g. `git archive HEAD | tar -x -C DIR` plus node_modules) measured in the same run as "wm-base".
const baselineRoot = arg('baseline', '');
const baselineArgs = arg('baseline-args', '').split(/\s+/).filter(Boolean);
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-failover-'));

// The healthy phase is longer than the others: its p99 is the yardstick.
const H = 5000;
const PHASES = [
  ['healthy', 0, H],
  ['B down', H, H + 3000],
  ['B down+C stalled', H + 3000, H + 6000],
  ['C stalled', H + 6000, H + 9000],
  ['recovery', H + 9000, H + 12000],
];
const OUTAGE = [`outage ${H / 1000}-${H / 1000 + 9} s`, H, H + 9000];
const END_MS = H + 12000;

const BACKEND = `
const http = require('node:http');
const server = http.createServer((req, res) => { res.end(req.url === '/health' ? 'ok' : 'hello from ' + process.argv[1]); });
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[1]), '127.0.0.1', () => process.stdout.write('listening\\n'));
`;
function startBackend(port) {
  return spawn(process.execPath, ['-e', BACKEND, String(port)], { stdio: ['ignore', 'pipe', 'ignore'] });
}
/** Resolves once `child` (a backend) listens: its start-up (a CPU burst on a small host) is not part of what is measured. */
function listening(child) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 5000);
    child.stdout.on('data', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The wmproxy flags: health checks like HAProxy's below, timeouts like nginx's and HAProxy's. */
const WMPROXY_ARGS = [
  '--health-path', '/health', '--health-interval', '500ms', '--health-timeout', '250ms', '--rise', '2', '--fall', '2',
  '--panic-threshold', '30', '--connect-timeout', '1s', '--first-byte-timeout', '500ms', '--log-level', 'error',
];

/** `--flag value` pairs of `extra` replace the same flags of `base`. */
function mergeFlags(base, extra) {
  const out = [...base];
  for (let i = 0; i < extra.length; i++) {
    const flag = extra[i];
    const value = extra[i + 1] !== undefined && !extra[i + 1].startsWith('--') ? extra[++i] : undefined;
    const at = out.indexOf(flag);
    if (at >= 0 && value !== undefined) out[at + 1] = value;
    else if (at < 0) out.push(flag, ...(value === undefined ? [] : [value]));
  }
  return out;
}

function wmproxy(dir, port, backends, extra) {
  return spawn(
    join(root, 'node_modules/.bin/bun'),
    [
      join(dir, 'cli/bin/run.js'), 'reverse-proxy', '--from', `127.0.0.1:${port}`,
      '--to', backends.map((b) => `http://127.0.0.1:${b}`).join(','),
      ...mergeFlags(WMPROXY_ARGS, extra),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], cwd: dir },
  );
}

const proxies = {
  wmproxy: (port, backends) => wmproxy(root, port, backends, extraWmproxyArgs),
  ...(baselineRoot ? { 'wm-base': (port, backends) => wmproxy(baselineRoot, port, backends, baselineArgs) } : {}),
  nginx: (port, backends) => {
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream app { ${backends.map((b) => `server 127.0.0.1:${b} max_fails=1 fail_timeout=5s;`).join(' ')} keepalive 64; }
  server { listen 127.0.0.1:${port};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_connect_timeout 1s; proxy_read_timeout 500ms; proxy_next_upstream error timeout http_502 http_503 http_504; proxy_next_upstream_tries 3; } } }
`,
    );
    return spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
  },
  haproxy: (port, backends) => {
    writeFileSync(
      join(dir, 'haproxy.cfg'),
      `global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 500ms
  retries 3
  option redispatch 1
  http-reuse safe
frontend fe
  bind 127.0.0.1:${port}
  default_backend app
backend app
  balance roundrobin
  option httpchk GET /health
  retry-on all-retryable-errors
${backends.map((b, i) => `  server s${i} 127.0.0.1:${b} check inter 500 fall 2 rise 2`).join('\n')}
`,
    );
    return spawn('haproxy', ['-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
  },
};

/**
 * Send `rate` requests per second for `durationMs`, one every 1/rate s on
 * schedule (open loop: a slow answer does not delay the next request).
 * `onTick(elapsed)` runs between sends (the failure timeline).
 */
async function drive(client, durationMs, record, onTick = () => {}) {
  const t0 = performance.now();
  let sent = 0;
  const lags = [];
  const cpu0 = process.cpuUsage();
  while (performance.now() - t0 < durationMs) {
    const elapsed = performance.now() - t0;
    onTick(elapsed);
    const due = Math.min(Math.floor((elapsed / 1000) * rate), Math.floor((durationMs / 1000) * rate));
    while (sent < due) {
      const scheduled = (sent * 1000) / rate;
      const at = performance.now() - t0;
      lags.push(at - scheduled);
      client.request((status, error, reused) => record(scheduled, performance.now() - t0 - at, status, error, reused));
      sent++;
    }
    await sleep(1);
  }
  const cpu = process.cpuUsage(cpu0);
  for (let i = 0; i < 600 && client.inFlight > 0; i++) await sleep(10);
  // The client's own worst lag per second: a machine-wide stall shows here too.
  const lagPerSecond = [];
  for (let i = 0; i < lags.length; i++) {
    const second = Math.floor(i / rate);
    lagPerSecond[second] = Math.max(lagPerSecond[second] ?? 0, lags[i]);
  }
  lags.sort((a, b) => a - b);
  return { sent, lagPerSecond, lagP99: percentile(lags, 99), lagMax: lags.at(-1), cpuPercent: ((cpu.user + cpu.system) / 1000 / (performance.now() - t0)) * 100 };
}

async function runOne(name) {
  const ports = [await freePort(), await freePort(), await freePort()];
  const backends = ports.map(startBackend);
  for (const port of ports) await waitPort(port);
  const port = await freePort();
  const proxy = proxies[name](port, ports);
  await waitPort(port);
  const cpuAtStart = cpuSeconds(proxy.pid) ?? 0;
  await sleep(1000); // let active checks settle
  // Warm-up at the same rate (JIT, pools, connections), not counted.
  const client = new LoadClient({ port, maxConns: 256, timeoutMs: 5_000 });
  const warmupRequests = warmupSec > 0 ? (await drive(client, warmupSec * 1000, () => {})).sent : 0;
  await sleep(200);
  const samples = []; // [scheduledMs, latencyMs, status, error, reused]
  const events = [
    [H, () => backends[1].kill('SIGKILL')],
    [H + 3000, () => backends[2].kill('SIGSTOP')],
    [H + 6000, () => (backends[1] = startBackend(ports[1]))],
    [H + 9000, () => backends[2].kill('SIGCONT')],
  ];
  const client2 = client;
  const load = await drive(
    client2,
    END_MS,
    (at, latency, status, error, reused) => samples.push([at, latency, status, error, reused]),
    (elapsed) => {
      while (events.length && events[0][0] <= elapsed) events.shift()[1]();
    },
  );
  client.close();
  const proxyCpu = (cpuSeconds(proxy.pid) ?? NaN) - cpuAtStart;
  await stop(proxy);
  for (const child of backends) await stop(child);
  const window = (from, to) => samples.filter(([at]) => at >= from && at < to);
  const summary = (list) => {
    // Percentiles over every request, failed ones included (at the time they failed).
    const latencies = list.map(([, latency]) => latency).sort((a, b) => a - b);
    const errors = list.filter(([, , status]) => status !== 200);
    return { requests: list.length, errors: errors.length, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? NaN };
  };
  const reasons = {};
  for (const [at, , status, error, reused] of samples) {
    if (status === 200) continue;
    const key = `${status === 0 ? error : status}${reused ? ' (reused conn)' : ''} @${Math.floor(at / 1000)}s`;
    reasons[key] = (reasons[key] ?? 0) + 1;
  }
  const perSecond = Array.from({ length: END_MS / 1000 }, (_, i) => {
    const w = summary(window(i * 1000, (i + 1) * 1000));
    return `${i}s:${w.p50.toFixed(1)}/${w.p99.toFixed(1)}/${w.errors}`;
  });
  if (process.env.BENCH_VERBOSE) {
    console.error(`${name} per second p50/p99/errors: ${perSecond.join(' ')}`);
    console.error(`${name} client's worst send lag per second, ms: ${load.lagPerSecond.map((lag, i) => `${i}s:${lag.toFixed(0)}`).join(' ')}`);
    // Where the slow requests are: 100 ms bins holding 3 or more requests slower than 10 ms.
    const bins = new Map();
    for (const [at, latency] of samples) if (latency > 10) bins.set(Math.floor(at / 100), (bins.get(Math.floor(at / 100)) ?? 0) + 1);
    const slow = [...bins].filter(([, n]) => n >= 3).map(([bin, n]) => `${(bin / 10).toFixed(1)}s:${n}`);
    console.error(`${name} requests > 10 ms per 100 ms bin (>= 3): ${slow.join(' ') || 'none'}`);
  }
  return {
    name,
    phases: Object.fromEntries([...PHASES, OUTAGE].map(([phase, from, to]) => [phase, summary(window(from, to))])),
    total: summary(samples),
    reasons,
    load,
    proxyCpuMsPerRequest: (proxyCpu * 1000) / (load.sent + warmupRequests),
  };
}

const fmt = (v) => (Number.isNaN(v) ? '-' : v < 10 ? v.toFixed(1) : v.toFixed(0));

function printRound(results, title) {
  console.log(`\n${title}`);
  const cols = [...PHASES, OUTAGE].map(([phase]) => phase);
  console.log(`${'proxy'.padEnd(8)} ${'errors'.padStart(6)}  ${cols.map((c) => c.padStart(17)).join(' ')}   outage/healthy p99   proxy CPU µs/req   client lag p99/max ms, cpu`);
  console.log(`${''.padEnd(8)} ${''.padStart(6)}  ${cols.map(() => 'p50/p99 ms (err)'.padStart(17)).join(' ')}`);
  for (const r of results) {
    const cells = cols.map((c) => {
      const s = r.phases[c];
      return `${fmt(s.p50)}/${fmt(s.p99)}${s.errors ? ` (${s.errors})` : ''}`.padStart(17);
    });
    const ratio = r.phases[OUTAGE[0]].p99 / r.phases.healthy.p99;
    console.log(`${r.name.padEnd(8)} ${String(r.total.errors).padStart(6)}  ${cells.join(' ')}   ${ratio.toFixed(1).padStart(18)}   ${(r.proxyCpuMsPerRequest * 1000).toFixed(0).padStart(16)}   ${fmt(r.load.lagP99)}/${fmt(r.load.lagMax)}, ${r.load.cpuPercent.toFixed(0)}%`);
    if (r.total.errors) console.log(`${''.padEnd(16)}errors: ${Object.entries(r.reasons).map(([k, v]) => `${v}× ${k}`).join(', ')}`);
  }
}

// ------------------------------------------------------------------ --blackhole

const BLACKHOLE_MS = 5000;
const WRK_CONNECTIONS = Number(arg('connections', '64'));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

/** One wrk run: requests per second, p99 ms, errors (socket errors, non-2xx, timeouts). */
function wrk(port, durationMs) {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', ['-t', '2', '-c', String(WRK_CONNECTIONS), '-d', `${durationMs / 1000}s`, '--timeout', '5s', '--latency', `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('error', reject);
    child.on('close', () => {
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
      const p99 = /\s99%\s+([\d.]+)(us|ms|s)/.exec(out);
      const p99ms = p99 ? Number(p99[1]) * (p99[2] === 'us' ? 0.001 : p99[2] === 's' ? 1000 : 1) : NaN;
      const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      resolve({ rps, p99ms, errors: socketErrors + non2xx });
    });
  });
}

async function blackholeOne(name) {
  if (process.env.BENCH_VERBOSE) console.error(`blackhole: ${name}`);
  const ports = [await freePort(), await freePort(), await freePort()];
  const backends = ports.map(startBackend);
  for (const port of ports) await waitPort(port);
  const port = await freePort();
  const proxy = proxies[name](port, ports);
  try {
    await waitPort(port);
    await sleep(1000); // let active checks settle
    if (warmupSec > 0) await wrk(port, warmupSec * 1000);
    const healthy = await wrk(port, BLACKHOLE_MS);
    // Blackhole B: new SYNs dropped, its established connections closed by a restart.
    dropSyns(ports[1]);
    await stop(backends[1], 'SIGKILL');
    backends[1] = startBackend(ports[1]);
    await listening(backends[1]);
    const blackhole = await wrk(port, BLACKHOLE_MS);
    allowSyns(ports[1]);
    return { name, healthy, blackhole };
  } finally {
    allowSyns(ports[1]);
    await stop(proxy);
    for (const child of backends) await stop(child);
  }
}

async function blackholeRounds(names) {
  for (let round = 1; round <= rounds; round++) {
    const results = [];
    for (const name of names) results.push(await blackholeOne(name));
    console.log(`\nround ${round}/${rounds}: wrk ${WRK_CONNECTIONS} connections, 3 backends, B blackholed (SYNs dropped, restarted) for ${BLACKHOLE_MS / 1000} s; ${new Date().toISOString()}` + (extraWmproxyArgs.length ? `; wmproxy ${extraWmproxyArgs.join(' ')}` : ''));
    console.log(`${'proxy'.padEnd(8)} ${'healthy req/s'.padStart(14)} ${'p99 ms'.padStart(7)} ${'blackhole req/s'.padStart(16)} ${'share'.padStart(6)} ${'p99 ms'.padStart(7)} ${'errors'.padStart(7)}`);
    for (const { name, healthy, blackhole } of results) {
      console.log(
        `${name.padEnd(8)} ${healthy.rps.toFixed(0).padStart(14)} ${fmt(healthy.p99ms).padStart(7)} ${blackhole.rps.toFixed(0).padStart(16)} ${`${((blackhole.rps / healthy.rps) * 100).toFixed(0)}%`.padStart(6)} ${fmt(blackhole.p99ms).padStart(7)} ${String(blackhole.errors + healthy.errors).padStart(7)}`,
      );
    }
  }
}

// Warm the load generator itself (JIT) so that the first proxy measured is not penalised.
{
  const port = await freePort();
  const backend = startBackend(port);
  await waitPort(port);
  const client = new LoadClient({ port });
  await drive(client, 2000, () => {});
  client.close();
  await stop(backend);
}

const names = Object.keys(proxies).filter((n) => !only.length || only.includes(n));
if (args.includes('--blackhole')) {
  await blackholeRounds(names);
  process.exit(0);
}
const all = [];
for (let round = 1; round <= rounds; round++) {
  const results = [];
  for (const name of names) results.push(await runOne(name));
  all.push(results);
  printRound(
    results,
    `round ${round}/${rounds}: failover at ${rate} req/s, 3 backends: B killed ${H / 1000}-${H / 1000 + 6} s, C stalled (SIGSTOP) ${H / 1000 + 3}-${H / 1000 + 9} s; ${new Date().toISOString()}` +
      (extraWmproxyArgs.length ? `; wmproxy ${extraWmproxyArgs.join(' ')}` : '') +
      (baselineRoot ? `; wm-base ${baselineRoot} ${baselineArgs.join(' ')}` : ''),
  );
}
if (rounds > 1) {
  const median = (values) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  };
  const cols = [...PHASES, OUTAGE].map(([phase]) => phase);
  console.log(`\nmedian p99 ms over ${rounds} rounds (errors per round; outage/healthy ratio of the medians)`);
  console.log(`${'proxy'.padEnd(8)} ${'errors'.padEnd(12)} ${cols.map((c) => c.padStart(17)).join(' ')}   ratio`);
  for (const name of names) {
    const rows = all.map((results) => results.find((r) => r.name === name));
    const p99 = Object.fromEntries(cols.map((c) => [c, median(rows.map((r) => r.phases[c].p99))]));
    console.log(
      `${name.padEnd(8)} ${rows.map((r) => r.total.errors).join(',').padEnd(12)} ${cols.map((c) => fmt(p99[c]).padStart(17)).join(' ')}   ${(p99[OUTAGE[0]] / p99.healthy).toFixed(1)}`,
    );
  }
}
if (args.includes('--json')) console.log(JSON.stringify(all));
