#!/usr/bin/env node
// gRPC failover: steady unary load (open loop, bench/lib/grpc-load.mjs: calls
// leave on schedule whatever the answers, each with a 5 s deadline, no client
// retries) through wmproxy (Bun, `reverse-proxy --h2c --to h2c://A,h2c://B,h2c://C`)
// and nginx (`grpc_pass` to the same kind of upstream group, keepalive,
// max_fails=1, grpc_next_upstream error timeout) in the same run, three gRPC
// backends each (bench/lib/grpc-serve.mjs on Bun). Timeline per proxy, after
// a warm-up: 0-4 s healthy | 4 s: backend B killed (SIGKILL) | 8 s: backend C
// blackholed (an iptables rule drops the SYNs to its port and C is restarted:
// its connections close, new connects hang) | 14 s: end. A failed call is any
// outcome but grpc-status 0: another status, a reset, a deadline.
// Needs root and iptables (without them: C is stalled with SIGSTOP instead).
//   flock /work/bench.lock node bench/grpc-failover.mjs [--rate 500] [--rounds 1] [--only wmproxy,nginx]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argument, freePort, sleep, stop, waitPort } from './reverse-common.mjs';
import { allowSyns, canDropSyns, dropSyns } from './lib/syn-drop.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => argument(args, name, fallback);
const rate = Number(arg('rate', '500'));
const rounds = Number(arg('rounds', '1'));
const warmupSec = Number(arg('warmup', '3'));
const only = arg('only', '').split(',').filter(Boolean);
const bun = join(root, 'node_modules/.bin/bun');
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-grpc-failover-'));
const KILL_AT = 4000;
const BLACKHOLE_AT = 8000;
const END = 14_000;

const canBlackhole = canDropSyns();

function startBackend(port) {
  return spawn(bun, [join(root, 'bench/lib/grpc-serve.mjs'), String(port)], { stdio: 'ignore' });
}

const proxies = {
  wmproxy: (port, backends) =>
    spawn(
      bun,
      [
        join(root, 'cli/bin/run.js'), 'reverse-proxy', '--h2c', '--from', `127.0.0.1:${port}`,
        '--to', backends.map((b) => `h2c://127.0.0.1:${b}`).join(','),
        '--connect-timeout', '1s', '--panic-threshold', '30', '--log-level', process.env.WMPROXY_LOG_LEVEL ?? 'error',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    ),
  nginx: (port, backends) => {
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir};
  upstream app { ${backends.map((b) => `server 127.0.0.1:${b} max_fails=1 fail_timeout=5s;`).join(' ')} keepalive 64; }
  server { listen 127.0.0.1:${port} http2;
    location / { grpc_pass grpc://app; grpc_connect_timeout 1s; grpc_next_upstream error timeout; } } }
`,
    );
    return spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  },
};

process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

/** Run grpc-load against `port` for `seconds`; resolves with its JSON. */
function load(port, seconds) {
  return new Promise((resolve, reject) => {
    const child = spawn(bun, [join(root, 'bench/lib/grpc-load.mjs'), '--target', `127.0.0.1:${port}`, '--rate', String(rate), '--seconds', String(seconds), '--connections', '2'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('error', reject);
    child.on('close', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)));
      } catch {
        reject(new Error(`grpc-load printed: ${out}`));
      }
    });
  });
}

async function runOne(name) {
  const ports = [await freePort(), await freePort(), await freePort()];
  const backends = ports.map(startBackend);
  for (const port of ports) await waitPort(port);
  const port = await freePort();
  const proxy = proxies[name](port, ports);
  try {
    await waitPort(port);
    if (warmupSec > 0) await load(port, warmupSec);
    const run = load(port, END / 1000);
    await sleep(KILL_AT);
    await stop(backends[1], 'SIGKILL');
    await sleep(BLACKHOLE_AT - KILL_AT);
    if (canBlackhole) {
      dropSyns(ports[2]);
      await stop(backends[2], 'SIGKILL');
      backends[2] = startBackend(ports[2]);
    } else backends[2].kill('SIGSTOP');
    const result = await run;
    return { name, ...result };
  } finally {
    allowSyns(ports[2]);
    await stop(proxy);
    for (const child of backends) await stop(child);
  }
}

const names = Object.keys(proxies).filter((n) => !only.length || only.includes(n));
const all = [];
for (let round = 1; round <= rounds; round++) {
  const results = [];
  for (const name of names) results.push(await runOne(name));
  all.push(results);
  console.log(
    `\nround ${round}/${rounds}: ${rate} gRPC unary calls/s for ${END / 1000} s, 3 backends: B killed at ${KILL_AT / 1000} s, C ${canBlackhole ? 'blackholed (SYNs dropped, restarted)' : 'stalled (SIGSTOP; no root/iptables)'} at ${BLACKHOLE_AT / 1000} s; ${new Date().toISOString()}`,
  );
  console.log('| proxy | calls | grpc-status 0 | failed | failures by reason | p50 ms | p99 ms | max ms |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(`| ${r.name} | ${r.calls} | ${r.ok} | ${r.calls - r.ok} | ${JSON.stringify(r.failed)} | ${r.p50} | ${r.p99} | ${r.max} |`);
  }
}
console.log(JSON.stringify({ bench: 'grpc-failover', rate, rounds, blackhole: canBlackhole, results: all.map((results) => results.map(({ perSecond, ...rest }) => rest)) }));
process.exit(0);
