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
// p99 is the 99th percentile of per-request latency (h2load --log-file) after the handshakes, median over runs.
// Kind grpc (gRPC unary): the same h2load over h2c (-d: one 10-byte length-prefixed
// message, content-type application/grpc, te: trailers) through nginx `grpc_pass`
// (upstream keepalive 256) and `wmproxy reverse-proxy --h2c --to h2c://...`, to one
// gRPC backend (bench/lib/grpc-serve.mjs on Bun: a message and grpc-status 0 in
// trailers); each front's grpc-status answers checked by 2,000 calls of
// bench/lib/grpc-load.mjs (h2load sees only HTTP statuses).
// Usage: flock /work/bench.lock node bench/http2.mjs [--requests N] [--runs R] [--file-size BYTES]
//   [--kinds proxied,static,grpc] [--runtimes bun,node]   (nginx always runs, as the peer of each kind)
//   [--compare DIR]   also runs the checkout in DIR (say, main's) on Bun, in the same rounds: before/after pairs
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
const kinds = option('--kinds', 'proxied,static,grpc').split(',');
const runtimes = option('--runtimes', 'bun,node').split(',');
const compare = option('--compare', undefined);
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
const GRPC_ARGS = ['-d', grpcRequest, '-H', 'content-type: application/grpc', '-H', 'te: trailers'];
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

function wmproxy(runtime, argv, port, entry = cli) {
  return startProcess(runtime === 'bun' ? bun : process.execPath, [entry, ...argv], { port, name: `wmproxy-${runtime}`, env: { NODE_ENV: 'production' } });
}

async function reverse(runtime, entry) {
  const port = await freePort();
  return { port, proc: await wmproxy(runtime, ['reverse-proxy', '--from', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${backendPort}`, '--cert', cert, '--key', key, '--log-level', 'error'], port, entry) };
}

async function grpcReverse(runtime, entry) {
  const port = await freePort();
  return { port, proc: await wmproxy(runtime, ['reverse-proxy', '--from', `127.0.0.1:${port}`, '--to', `h2c://127.0.0.1:${grpcBackendPort}`, '--h2c', '--log-level', 'error'], port, entry) };
}

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

async function files(runtime, entry) {
  const port = await freePort();
  return { port, proc: await wmproxy(runtime, ['file-server', '--root', www, '--listen', `127.0.0.1:${port}`, '--cert', cert, '--key', key], port, entry) };
}

function h2load(port, path, n, grpc = false) {
  const url = `${grpc ? 'http' : 'https'}://127.0.0.1:${port}${path}`;
  const log = join(dir, 'h2load.log');
  const result = spawnSync('h2load', ['-n', String(n), '-c', '32', '-m', '10', ...(grpc ? GRPC_ARGS : []), `--log-file=${log}`, url], { encoding: 'utf8', timeout: 180_000 });
  const text = result.stdout ?? '';
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(text)?.[1] ?? NaN);
  const ok = Number(/(\d+) succeeded/.exec(text)?.[1] ?? 0);
  const codes2xx = Number(/status codes: (\d+) 2xx/.exec(text)?.[1] ?? 0);
  if (!(rps > 0)) console.error(`h2load against ${url} printed:\n${text}${result.stderr}`);
  return { rps, notOk: n - Math.min(ok, codes2xx), p99Ms: p99Of(log) };
}

/**
 * The 99th percentile of h2load's per-request times (columns: start µs,
 * status, µs to the end of the response), in ms, over the requests started
 * after the first tenth of the run: the 32 TLS handshakes fall there, and
 * their wait would otherwise be all the top percent shows.
 */
function p99Of(log) {
  let lines;
  try {
    lines = readFileSync(log, 'utf8').split('\n');
  } catch {
    return NaN;
  }
  const rows = [];
  let first = Infinity;
  let last = -Infinity;
  for (const line of lines) {
    const [start, , us] = line.split('\t').map(Number);
    if (!(us > 0)) continue;
    rows.push([start, us]);
    first = Math.min(first, start);
    last = Math.max(last, start);
  }
  const from = first + (last - first) / 10;
  const times = [];
  for (const [start, us] of rows) if (start >= from) times.push(us);
  times.sort((a, b) => a - b);
  return times.length > 0 ? times[Math.min(times.length - 1, Math.floor(times.length * 0.99))] / 1000 : NaN;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

const live = [];
const rows = [];
let backend;
let grpcBackend;
try {
  backend = await nginx('backend', `server { listen 127.0.0.1:${backendPort}; location / { return 200 "hello\\n"; } }`, backendPort);
  if (kinds.includes('grpc')) grpcBackend = await startProcess(bun, [join(root, 'bench/lib/grpc-serve.mjs'), String(grpcBackendPort)], { port: grpcBackendPort, name: 'grpc-backend' });
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
  const cases = [];
  const names = { bun: 'Bun', node: 'Node' };
  if (kinds.includes('proxied')) {
    cases.push({ kind: 'proxied', server: 'nginx 1 worker', peer: true, ...nginxFront, path: '/proxy/x' });
    for (const runtime of runtimes) cases.push({ kind: 'proxied', server: `wmproxy reverse-proxy on ${names[runtime]}`, ...(await reverse(runtime)), path: '/proxy/x' });
    if (compare) cases.push({ kind: 'proxied', server: `${compare} reverse-proxy on Bun`, ...(await reverse('bun', join(compare, 'cli/bin/run.js'))), path: '/proxy/x' });
  }
  if (kinds.includes('static')) {
    cases.push({ kind: 'static', server: 'nginx 1 worker', peer: true, ...nginxFront, path: '/file.txt' });
    for (const runtime of runtimes) cases.push({ kind: 'static', server: `wmproxy file-server on ${names[runtime]}`, ...(await files(runtime)), path: '/file.txt' });
    if (compare) cases.push({ kind: 'static', server: `${compare} file-server on Bun`, ...(await files('bun', join(compare, 'cli/bin/run.js'))), path: '/file.txt' });
  }
  if (kinds.includes('grpc')) {
    const path = '/bench.Echo/Unary';
    cases.push({ kind: 'grpc', server: 'nginx 1 worker grpc_pass', peer: true, grpc: true, port: grpcFrontPort, proc: front, path });
    for (const runtime of runtimes) cases.push({ kind: 'grpc', server: `wmproxy reverse-proxy on ${names[runtime]}`, grpc: true, ...(await grpcReverse(runtime)), path });
    if (compare) cases.push({ kind: 'grpc', server: `${compare} reverse-proxy on Bun`, grpc: true, ...(await grpcReverse('bun', join(compare, 'cli/bin/run.js'))), path });
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
      s.p99s.push(r.p99Ms);
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
      p99Ms: Number(median(s.p99s).toFixed(1)),
      notOk: s.notOk,
      cpuUsPerRequest: Number(((s.cpu * 1e6) / (runs * requests)).toFixed(1)),
      peakRssMiB: Number((s.c.proc.peakRssMiB() ?? 0).toFixed(1)),
      ...(s.grpcCheck ? { grpcCheck: s.grpcCheck } : {}),
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
console.log(`\nh2load -n ${requests} -c 32 -m 10 over TLS (h2 by ALPN; grpc: h2c), median of ${runs} interleaved runs; static: a ${fileSize}-byte file; proxied: "hello\\n" from one nginx backend over HTTP/1.1; load average ${load}`);
console.log('| kind | server | req/s (median) | req/s × nginx, paired: median [range] | runs | p99 ms | not 2xx | server CPU µs/req | CPU × nginx | peak RSS MiB |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.kind} | ${r.server} | ${r.rps} | ${r.vsNginx.toFixed(2)} [${r.vsNginxRange.join('–')}] | ${r.samples.join(', ')} | ${r.p99Ms} | ${r.notOk} | ${r.cpuUsPerRequest} | ${r.cpuVsNginx.toFixed(2)} | ${r.peakRssMiB} |`);
for (const r of rows) if (r.grpcCheck) console.log(`grpc via ${r.server}: grpc-status 0 for ${r.grpcCheck.ok} of ${r.grpcCheck.ok + r.grpcCheck.failed} calls (grpc-load)`);
console.log(JSON.stringify({ bench: 'http2', requests, runs, fileSize, kinds, runtimes, load, rows }));
