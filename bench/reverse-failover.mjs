#!/usr/bin/env node
// Failover benchmark: 3 backends behind wmproxy (Bun), nginx (passive checks,
// proxy_next_upstream) and HAProxy (active checks, retries + redispatch), at a
// fixed request rate. Timeline per proxy (default 15 s):
//   0-3 s healthy | 3 s: backend B killed (SIGKILL) | 6 s: backend C
//   blackholed (SIGSTOP: the kernel still accepts connections, nothing answers)
//   | 9 s: B restarted on its port | 12 s: C resumed (SIGCONT) | 15 s: end.
// wmproxy runs with a panic threshold of 30 % (default 50 %): with two of three
// servers down, 50 % would send traffic to all three again; 30 % still fails
// open if probes mark every server down.
// Counts client-visible errors (non-200, socket errors, client timeout 5 s)
// and latency percentiles, healthy (0-3 s) against the outage (3-12 s).
//
//   node bench/reverse-failover.mjs [--rate 1000] [--only wmproxy,nginx,haproxy]
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argument, freePort, sleep, stop, waitPort } from './reverse-common.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => argument(args, name, fallback);
const rate = Number(arg('rate', '1000'));
const only = arg('only', '').split(',').filter(Boolean);
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-failover-'));


const BACKEND = `
const http = require('node:http');
const server = http.createServer((req, res) => { res.end(req.url === '/health' ? 'ok' : 'hello from ' + process.argv[1]); });
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[1]), '127.0.0.1');
`;
function startBackend(port) {
  return spawn(process.execPath, ['-e', BACKEND, String(port)], { stdio: 'ignore' });
}

const proxies = {
  wmproxy: (port, backends) =>
    spawn(
      join(root, 'node_modules/.bin/bun'),
      [
        join(root, 'cli/bin/run.js'), 'reverse-proxy', '--from', `127.0.0.1:${port}`,
        '--to', backends.map((b) => `http://127.0.0.1:${b}`).join(','),
        '--health-path', '/health', '--health-interval', '500ms', '--health-timeout', '250ms', '--rise', '2', '--fall', '2',
        '--hedge-delay', '50ms', '--panic-threshold', '30', '--hedge-request', process.env.HEDGE_REQUEST ?? '100ms', '--connect-timeout', '1s', '--first-byte-timeout', '500ms', '--log-level', 'error',
      ],
      { stdio: 'ignore', cwd: root },
    ),
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

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function runOne(name) {
  const ports = [await freePort(), await freePort(), await freePort()];
  const backends = ports.map(startBackend);
  for (const port of ports) await waitPort(port);
  const port = await freePort();
  const proxy = proxies[name](port, ports);
  await waitPort(port);
  await sleep(1500); // let active checks settle
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const samples = []; // [startMs, latencyMs, ok]
  const t0 = Date.now();
  const events = [
    [3000, () => backends[1].kill('SIGKILL')],
    [6000, () => backends[2].kill('SIGSTOP')],
    [9000, () => (backends[1] = startBackend(ports[1]))],
    [12000, () => backends[2].kill('SIGCONT')],
  ];
  let inflight = 0;
  const fire = () => {
    const start = Date.now();
    inflight++;
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => {
        inflight--;
        samples.push([start - t0, Date.now() - start, res.statusCode === 200]);
      });
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', () => {
      inflight--;
      samples.push([start - t0, Date.now() - start, false]);
    });
  };
  const perTick = rate / 100;
  let sent = 0;
  while (Date.now() - t0 < 15000) {
    const elapsed = Date.now() - t0;
    while (events.length && events[0][0] <= elapsed) events.shift()[1]();
    const due = Math.floor((elapsed / 1000) * rate);
    while (sent < due) {
      fire();
      sent++;
    }
    await sleep(10);
  }
  for (let i = 0; i < 600 && inflight > 0; i++) await sleep(10);
  agent.destroy();
  await stop(proxy);
  for (const child of backends) await stop(child);
  void perTick;
  const window = (from, to) => samples.filter(([at]) => at >= from && at < to);
  const summary = (list) => {
    const latencies = list.filter(([, , ok]) => ok).map(([, latency]) => latency).sort((a, b) => a - b);
    return { requests: list.length, errors: list.filter(([, , ok]) => !ok).length, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? NaN };
  };
  const perSecond = Array.from({ length: 15 }, (_, i) => { const w = summary(window(i * 1000, (i + 1) * 1000)); return `${i}s:${w.p50}/${w.p99}/${w.errors}`; });
  if (process.env.BENCH_VERBOSE) console.error(name, perSecond.join(' '));
  return { name, healthy: summary(window(0, 3000)), outage: summary(window(3000, 12000)), after: summary(window(12000, 15000)), total: summary(samples) };
}

// Warm the load generator itself (JIT, sockets) so that the first proxy measured is not penalised.
{
  const port = await freePort();
  const backend = startBackend(port);
  await waitPort(port);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const t0 = Date.now();
  let sent = 0;
  while (Date.now() - t0 < 2000) {
    const due = Math.floor(((Date.now() - t0) / 1000) * rate);
    for (; sent < due; sent++) http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => res.resume()).on('error', () => {});
    await sleep(10);
  }
  await sleep(200);
  agent.destroy();
  await stop(backend);
}

const results = [];
for (const name of Object.keys(proxies).filter((n) => !only.length || only.includes(n))) results.push(await runOne(name));
console.log(`\nfailover at ${rate} req/s, 3 backends: B killed at 3 s (restarted at 9 s), C blackholed 6-12 s; ${new Date().toISOString()}`);
console.log('proxy       errors  healthy p50/p99 ms   outage p50/p99/max ms   outage p99 / healthy p99   requests');
for (const r of results) {
  console.log(
    `${r.name.padEnd(10)} ${String(r.total.errors).padStart(7)}  ${`${r.healthy.p50}/${r.healthy.p99}`.padStart(17)}   ${`${r.outage.p50}/${r.outage.p99}/${r.outage.max}`.padStart(21)}   ${(r.outage.p99 / r.healthy.p99).toFixed(1).padStart(24)}   ${r.total.requests}`,
  );
}
if (args.includes('--json')) console.log(JSON.stringify(results));
