#!/usr/bin/env node
// HTTP/2 towards clients, as users run it: `wmproxy reverse-proxy --cert --key`
// (proxied responses) and `wmproxy file-server --cert --key` (static files),
// on Bun and on Node, against nginx (`listen ssl http2`, 1 worker, proxy_pass
// with upstream keep-alive, and `root` for files) in the same run, over the
// same backend (one nginx process answering "hello\n" over HTTP/1.1). The
// 320 streams in flight need as many upstream connections; both keep up to
// 256 idle ones (nginx `keepalive 256`; wmproxy's pool default per server).
// h2load -n N -c 32 -m 10 over TLS; runs interleaved, median of R. On a
// shared machine whose speed drifts between minutes, the figure to compare is
// the paired ratio: each server against the nginx run of the same round. CPU
// per request is the server's (front process only; the backend is the same for all).
// gRPC unary: the same h2load over h2c (-d: one 10-byte length-prefixed
// message, content-type application/grpc, te: trailers) through nginx
// `grpc_pass` (upstream keepalive) and `wmproxy reverse-proxy --h2c --to
// h2c://...`, to one gRPC backend (bench/lib/grpc-serve.mjs on Bun: answers a
// message and grpc-status 0 in trailers); p99 from h2load's per-request log;
// each front's grpc-status answers checked by a few thousand calls of
// bench/lib/grpc-load.mjs (h2load sees only HTTP statuses).
// Usage: flock /work/bench.lock node bench/http2.mjs [--requests N] [--runs R] [--file-size BYTES] [--only http|grpc]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, have, startProcess } from './lib/proc.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const requests = Number(option('--requests', 30_000));
const runs = Number(option('--runs', 5));
const fileSize = Number(option('--file-size', 1024));
const only = option('--only', 'all');
const bun = join(root, 'node_modules/.bin/bun');
const cli = join(root, 'cli/bin/run.js');

for (const tool of ['h2load', 'nginx', 'openssl']) {
  if (!have(tool)) {
    console.error(`${tool} is needed (apt-get install nghttp2-client nginx openssl)`);
    process.exit(2);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'wmproxy-http2-bench-'));
const cert = join(dir, 'cert.pem');
const key = join(dir, 'key.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
  '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
const www = join(dir, 'www');
mkdirSync(www);
writeFileSync(join(www, 'file.txt'), 'x'.repeat(fileSize));
const grpcRequest = join(dir, 'grpc-request.bin');
writeFileSync(grpcRequest, Buffer.from([0, 0, 0, 0, 10, ...Buffer.from('0123456789')]));
const temps = `client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};`;

async function nginx(name, server, port) {
  const conf = join(dir, `${name}.conf`);
  writeFileSync(conf, `daemon off; worker_processes 1; pid ${join(dir, `${name}.pid`)}; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; default_type text/plain; sendfile on; keepalive_requests 1000000; http2_max_requests 1000000; ${temps}
${server} }
`);
  return startProcess('nginx', ['-c', conf, '-p', dir], { port, name });
}

const backendPort = await freePort();
const frontPort = await freePort();
const grpcBackendPort = await freePort();
const grpcFrontPort = await freePort();

function wmproxy(runtime, argv, port) {
  return startProcess(runtime === 'bun' ? bun : process.execPath, [cli, ...argv], { port, name: `wmproxy-${runtime}`, env: { NODE_ENV: 'production' } });
}

async function reverse(runtime) {
  const port = await freePort();
  return { port, proc: await wmproxy(runtime, ['reverse-proxy', '--from', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${backendPort}`, '--cert', cert, '--key', key, '--log-level', 'error'], port) };
}

async function grpcReverse(runtime) {
  const port = await freePort();
  return { port, proc: await wmproxy(runtime, ['reverse-proxy', '--from', `127.0.0.1:${port}`, '--to', `h2c://127.0.0.1:${grpcBackendPort}`, '--h2c', '--log-level', 'error'], port) };
}

async function files(runtime) {
  const port = await freePort();
  return { port, proc: await wmproxy(runtime, ['file-server', '--root', www, '--listen', `127.0.0.1:${port}`, '--cert', cert, '--key', key], port) };
}

const GRPC_ARGS = ['-d', grpcRequest, '-H', 'content-type: application/grpc', '-H', 'te: trailers'];

function h2load(port, path, n, grpc = false) {
  const url = `${grpc ? 'http' : 'https'}://127.0.0.1:${port}${path}`;
  const log = join(dir, 'h2load.log');
  const result = spawnSync('h2load', ['-n', String(n), '-c', '32', '-m', '10', ...(grpc ? [...GRPC_ARGS, `--log-file=${log}`] : []), url], { encoding: 'utf8', timeout: 180_000 });
  const text = result.stdout ?? '';
  let p99 = NaN;
  if (grpc) {
    // h2load's log: start (µs), status, duration (µs) per request.
    const durations = readFileSync(log, 'utf8').trim().split('\n').map((line) => Number(line.split('\t')[2])).sort((a, b) => a - b);
    p99 = durations[Math.floor(durations.length * 0.99)] / 1000;
  }
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(text)?.[1] ?? NaN);
  const ok = Number(/(\d+) succeeded/.exec(text)?.[1] ?? 0);
  const codes2xx = Number(/status codes: (\d+) 2xx/.exec(text)?.[1] ?? 0);
  if (!(rps > 0)) console.error(`h2load against ${url} printed:\n${text}${result.stderr}`);
  return { rps, notOk: n - Math.min(ok, codes2xx), p99 };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

const live = [];
const rows = [];
let backend;
let grpcBackend;
/** gRPC answers through `port`: grpc-load's counts of grpc-status 0 and of anything else. */
function grpcCheck(port) {
  const result = spawnSync(bun, [join(root, 'bench/lib/grpc-load.mjs'), '--target', `127.0.0.1:${port}`, '--concurrency', '16', '--calls', '2000'], { encoding: 'utf8', timeout: 60_000 });
  try {
    const out = JSON.parse(result.stdout.trim().split('\n').at(-1));
    return { ok: out.ok, failed: out.calls - out.ok };
  } catch {
    return { ok: 0, failed: NaN };
  }
}
try {
  backend = await nginx('backend', `server { listen 127.0.0.1:${backendPort}; location / { return 200 "hello\\n"; } }`, backendPort);
  grpcBackend = await startProcess(bun, [join(root, 'bench/lib/grpc-serve.mjs'), String(grpcBackendPort)], { port: grpcBackendPort, name: 'grpc-backend' });
  const front = await nginx(
    'front',
    `upstream app { server 127.0.0.1:${backendPort}; keepalive 256; }
server { listen 127.0.0.1:${frontPort} ssl http2; ssl_certificate ${cert}; ssl_certificate_key ${key};
  location /proxy/ { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  location / { root ${www}; } }
upstream grpc_app { server 127.0.0.1:${grpcBackendPort}; keepalive 256; }
server { listen 127.0.0.1:${grpcFrontPort} http2; location / { grpc_pass grpc://grpc_app; } }`,
    frontPort,
  );
  const nginxFront = { port: frontPort, proc: front };
  const nginxGrpc = { port: grpcFrontPort, proc: front };
  const cases = [];
  if (only !== 'grpc') {
    const bunProxy = await reverse('bun');
    const bunFiles = await files('bun');
    const nodeProxy = await reverse('node');
    const nodeFiles = await files('node');
    cases.push(
      { kind: 'proxied', server: 'nginx 1 worker', peer: true, ...nginxFront, path: '/proxy/x' },
      { kind: 'proxied', server: 'wmproxy reverse-proxy on Bun', ...bunProxy, path: '/proxy/x' },
      { kind: 'proxied', server: 'wmproxy reverse-proxy on Node', ...nodeProxy, path: '/proxy/x' },
      { kind: 'static', server: 'nginx 1 worker', peer: true, ...nginxFront, path: '/file.txt' },
      { kind: 'static', server: 'wmproxy file-server on Bun', ...bunFiles, path: '/file.txt' },
      { kind: 'static', server: 'wmproxy file-server on Node', ...nodeFiles, path: '/file.txt' },
    );
  }
  if (only !== 'http') {
    const bunGrpc = await grpcReverse('bun');
    const nodeGrpc = await grpcReverse('node');
    cases.push(
      { kind: 'grpc unary (h2c)', server: 'nginx 1 worker grpc_pass', peer: true, grpc: true, ...nginxGrpc, path: '/bench.Echo/Unary' },
      { kind: 'grpc unary (h2c)', server: 'wmproxy reverse-proxy on Bun', grpc: true, ...bunGrpc, path: '/bench.Echo/Unary' },
      { kind: 'grpc unary (h2c)', server: 'wmproxy reverse-proxy on Node', grpc: true, ...nodeGrpc, path: '/bench.Echo/Unary' },
    );
  }
  for (const c of cases) live.push({ c, samples: [], p99s: [], notOk: 0, cpu: 0 });
  for (const s of live) h2load(s.c.port, s.c.path, Math.min(10_000, requests), s.c.grpc); // warm-up (JIT, pools, TLS)
  for (const s of live) if (s.c.grpc) s.grpcCheck = grpcCheck(s.c.port);
  for (let round = 0; round < runs; round++) {
    for (const s of live) {
      const before = s.c.proc.cpuSeconds();
      const r = h2load(s.c.port, s.c.path, requests, s.c.grpc);
      s.cpu += s.c.proc.cpuSeconds() - before;
      s.samples.push(r.rps);
      if (s.c.grpc) s.p99s.push(r.p99);
      s.notOk += r.notOk;
    }
  }
  for (const s of live) {
    rows.push({
      kind: s.c.kind,
      server: s.c.server,
      peer: !!s.c.peer,
      rps: Math.round(median(s.samples)),
      samples: s.samples.map(Math.round),
      notOk: s.notOk,
      cpuUsPerRequest: Number(((s.cpu * 1e6) / (runs * requests)).toFixed(1)),
      peakRssMiB: Number((s.c.proc.peakRssMiB() ?? 0).toFixed(1)),
      ...(s.c.grpc ? { p99Ms: Number(median(s.p99s).toFixed(2)), p99sMs: s.p99s.map((ms) => Number(ms.toFixed(2))), grpcCheck: s.grpcCheck } : {}),
    });
  }
} finally {
  const procs = new Set(live.map((s) => s.c.proc));
  for (const proc of procs) await proc.stop();
  await backend?.stop();
  await grpcBackend?.stop();
  rmSync(dir, { recursive: true, force: true });
}

for (const row of rows) {
  const peer = rows.find((r) => r.peer && r.kind === row.kind);
  const paired = row.samples.map((rps, round) => rps / peer.samples[round]);
  row.vsNginx = Number(median(paired).toFixed(2));
  row.vsNginxRange = [Math.min(...paired), Math.max(...paired)].map((ratio) => Number(ratio.toFixed(2)));
  row.cpuVsNginx = Number((row.cpuUsPerRequest / peer.cpuUsPerRequest).toFixed(2));
}
let load = '';
try {
  load = execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ');
} catch {}
console.log(`\nh2load -n ${requests} -c 32 -m 10 over TLS (h2 by ALPN; gRPC rows over h2c), median of ${runs} interleaved runs; static: a ${fileSize}-byte file; proxied: "hello\\n" from one nginx backend over HTTP/1.1; load average ${load}`);
console.log('| kind | server | req/s (median) | req/s × nginx, paired: median [range] | runs | not 2xx | server CPU µs/req | CPU × nginx | peak RSS MiB |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.kind} | ${r.server} | ${r.rps} | ${r.vsNginx.toFixed(2)} [${r.vsNginxRange.join('–')}] | ${r.samples.join(', ')} | ${r.notOk} | ${r.cpuUsPerRequest} | ${r.cpuVsNginx.toFixed(2)} | ${r.peakRssMiB} |`);
const grpcRows = rows.filter((r) => r.p99Ms !== undefined);
if (grpcRows.length > 0) {
  console.log('\n| gRPC unary via | calls/s (median) | × nginx grpc_pass | p99 ms (median of runs) | p99 × nginx | grpc-status 0 / other (2000-call check) |');
  console.log('|---|---|---|---|---|---|');
  const peer = grpcRows.find((r) => r.peer);
  for (const r of grpcRows) console.log(`| ${r.server} | ${r.rps} | ${r.vsNginx.toFixed(2)} | ${r.p99Ms} (${r.p99sMs.join(', ')}) | ${(r.p99Ms / peer.p99Ms).toFixed(2)} | ${r.grpcCheck.ok} / ${r.grpcCheck.failed} |`);
}
console.log(JSON.stringify({ bench: 'http2', requests, runs, fileSize, load, rows }));
