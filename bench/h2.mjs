#!/usr/bin/env node
// HTTP/2 server throughput: core-net's own HTTP/2 codec (bench/lib/h2-serve.mjs)
// against nginx (`listen ssl http2`, 1 worker) and a minimal node:http2 server,
// all answering a fixed 100-byte body, measured with
// `h2load -n 100000 -c 32 -m 10` in one run.
// Usage: flock /work/bench.lock node bench/h2.mjs [--requests N] [--runs R] [--h2c]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
const requests = Number(option('--requests', 100_000));
const runs = Number(option('--runs', 3));
const withH2c = args.includes('--h2c');
const bun = join(root, 'node_modules/.bin/bun');

for (const tool of ['h2load', 'nginx', 'openssl']) {
  if (!have(tool)) {
    console.error(`${tool} is needed (apt-get install nghttp2-client nginx openssl)`);
    process.exit(2);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'wmproxy-h2-bench-'));
const cert = join(dir, 'cert.pem');
const key = join(dir, 'key.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
  '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
const body = 'a'.repeat(100);

async function nginx(tls) {
  const port = await freePort();
  const conf = join(dir, `nginx-${port}.conf`);
  writeFileSync(conf, `daemon off; worker_processes 1; pid ${join(dir, `nginx-${port}.pid`)}; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; default_type text/plain; keepalive_requests 1000000; http2_max_requests 1000000;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen 127.0.0.1:${port}${tls ? ' ssl' : ''} http2;
    ${tls ? `ssl_certificate ${cert}; ssl_certificate_key ${key};` : ''}
    location / { return 200 "${body}"; } } }
`);
  return { port, proc: await startProcess('nginx', ['-c', conf, '-p', dir], { port, name: 'nginx' }) };
}

async function ours(runtime, tls, kind = 'wmproxy') {
  const port = await freePort();
  const command = runtime === 'bun' ? bun : process.execPath;
  const argv = [join(root, 'bench/lib/h2-serve.mjs'), String(port), ...(tls ? [cert, key] : []), ...(kind === 'wmproxy' ? [] : [kind])];
  return { port, proc: await startProcess(command, argv, { port, name: `${kind}-${runtime}` }) };
}

function h2load(port, tls, n) {
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}/`;
  const result = spawnSync('h2load', ['-n', String(n), '-c', '32', '-m', '10', url], { encoding: 'utf8', timeout: 120_000 });
  const text = result.stdout ?? '';
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(text)?.[1] ?? NaN);
  const ok = Number(/(\d+) succeeded/.exec(text)?.[1] ?? 0);
  const failed = Number(/(\d+) failed/.exec(text)?.[1] ?? n);
  const codes2xx = Number(/status codes: (\d+) 2xx/.exec(text)?.[1] ?? 0);
  if (!(rps > 0)) console.error(`h2load against ${url} printed:\n${text}${result.stderr}`);
  return { rps, ok, failed, codes2xx };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

const cases = [
  { name: 'nginx 1 worker (TLS)', start: () => nginx(true), tls: true, peer: true },
  { name: 'wmproxy h2 on Bun (TLS)', start: () => ours('bun', true), tls: true },
  { name: 'wmproxy h2 on Node (TLS)', start: () => ours('node', true), tls: true },
  { name: 'node:http2 on Bun (TLS)', start: () => ours('bun', true, 'node-http2'), tls: true },
  { name: 'node:http2 on Node (TLS)', start: () => ours('node', true, 'node-http2'), tls: true },
];
if (withH2c) {
  cases.push(
    { name: 'nginx 1 worker (h2c)', start: () => nginx(false), tls: false, peer: true },
    { name: 'wmproxy h2c on Bun', start: () => ours('bun', false), tls: false },
    { name: 'wmproxy h2c on Node', start: () => ours('node', false), tls: false },
  );
}

// Every server is started first and the runs are interleaved (round 1 of each,
// then round 2...), so that load from elsewhere on a shared machine falls on
// all of them alike.
const rows = [];
const live = [];
try {
  for (const c of cases) {
    const { port, proc } = await c.start();
    live.push({ c, port, proc, samples: [], failed: 0, cpu: 0 });
  }
  for (const s of live) h2load(s.port, s.c.tls, Math.min(20_000, requests)); // warm-up (JIT, TLS set-up)
  for (let round = 0; round < runs; round++) {
    for (const s of live) {
      const cpuBefore = s.proc.cpuSeconds();
      const r = h2load(s.port, s.c.tls, requests);
      // Server CPU per request: h2load is single-threaded and may be what limits req/s.
      s.cpu += s.proc.cpuSeconds() - cpuBefore;
      s.samples.push(r.rps);
      s.failed += r.failed + (r.ok - r.codes2xx);
    }
  }
  for (const s of live) {
    rows.push({
      server: s.c.name,
      tls: s.c.tls,
      peer: !!s.c.peer,
      rps: Math.round(median(s.samples)),
      samples: s.samples.map(Math.round),
      failed: s.failed,
      cpuUsPerRequest: Number(((s.cpu * 1e6) / (runs * requests)).toFixed(1)),
      peakRssMiB: s.proc.peakRssMiB?.(),
    });
  }
} finally {
  for (const s of live) await s.proc.stop();
  rmSync(dir, { recursive: true, force: true });
}

for (const row of rows) {
  const peer = rows.find((r) => r.peer && r.tls === row.tls);
  row.vsNginx = peer ? Number((row.rps / peer.rps).toFixed(2)) : null;
}
console.log(`\nh2load -n ${requests} -c 32 -m 10, 100-byte body, median of ${runs} runs`);
console.log('| server | req/s | vs nginx | runs | failed | server CPU µs/req | peak RSS MiB |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.server} | ${r.rps} | ${r.vsNginx?.toFixed(2)}x | ${r.samples.join(', ')} | ${r.failed} | ${r.cpuUsPerRequest} | ${r.peakRssMiB?.toFixed?.(1) ?? ''} |`);
}
console.log(JSON.stringify({ bench: 'h2', requests, runs, rows }));
