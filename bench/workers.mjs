#!/usr/bin/env node
// `workers = N`: reverse-proxy throughput with 1 and 2 worker processes, for
// wmproxy on Bun and on Node, with nginx at worker_processes 1 and 2 as the
// comparator, in the same run. wrk with keep-alive connections against a
// proxy in front of two backends (one nginx process, two ports, `return 200`,
// so the backends cost little CPU). Rounds are interleaved and the median
// shown, because the machine's noise is large between minutes.
//
//   node bench/workers.mjs [--duration 5] [--connections 64] [--rounds 3] [--only wmproxy-bun,nginx]
//                          [--body 16384] [--access-log] [--pipeline 8] [--respond]
//
// --body makes the backends answer that many bytes, and --access-log makes
// every proxy write a log line per request to a file: both add work in the
// proxy relative to wrk and the backends, which is where more workers help.
// --pipeline N makes wrk send N requests per write (HTTP/1.1 pipelining), so
// that the client costs far less per request than the proxy: on 2 cores
// shared with the client, that is how the proxy becomes the bottleneck.
// --respond answers from the proxy itself (a fixed-response location; nginx
// `return 200`), so that no backend shares the cores either: what is left is
// the proxy's own request handling against a pipelining client.
//
// On a 2-core machine wrk and the backends share the cores with the proxy, so
// the gain from a second worker is bounded well below 2x; the ratio that
// matters is wmproxy's 2-worker gain against nginx's in the same run.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { argument, Children, freePort, median, sleep, startNginxBackends, startWmproxyRun, stop, waitPort } from './reverse-common.mjs';
import { cpuSeconds, peakRssMiB, runCommand } from './lib/proc.mjs';
import { parseWrk, runWrk } from './lib/wrk.mjs';

const args = process.argv.slice(2);
const duration = Number(argument(args, 'duration', '5'));
const connections = Number(argument(args, 'connections', '64'));
const rounds = Math.max(1, Number(argument(args, 'rounds', '3')));
const only = (argument(args, 'only', '') ?? '').split(',').filter(Boolean);
const bodyBytes = Number(argument(args, 'body', '6'));
const accessLog = args.includes('--access-log');
const pipeline = Math.max(1, Number(argument(args, 'pipeline', '1')));
const respond = args.includes('--respond');
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-workers-'));
const children = new Children();

async function backends() {
  writeFileSync(join(dir, 'body.txt'), 'x'.repeat(Math.max(0, bodyBytes - 1)) + '\n');
  chmodSync(dir, 0o755); // nginx workers run as an unprivileged user
  return startNginxBackends(children, dir, 'location / { try_files /body.txt =404; }');
}

async function startNginx(workers, ports) {
  const port = await freePort();
  const conf = join(dir, `nginx-${workers}.conf`);
  writeFileSync(
    conf,
    `daemon off; worker_processes ${workers}; pid ${join(dir, `nginx-${workers}.pid`)}; error_log stderr error;
events { worker_connections 4096; }
http { ${accessLog ? `access_log ${join(dir, `nginx-${workers}-access.log`)} combined;` : 'access_log off;'} keepalive_requests 1000000;
upstream app { ${ports.map((p) => `server 127.0.0.1:${p};`).join(' ')} keepalive 512; }
server { listen 127.0.0.1:${port} reuseport; location / { ${respond ? 'return 200 "hello\\n";' : 'proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";'} } }
}`,
  );
  const child = children.start('nginx', ['-c', conf, '-p', dir], `nginx-${workers}`);
  await waitPort(port);
  return { port, child };
}

async function startWmproxy(runtime, workers, ports) {
  const port = await freePort();
  const file = join(dir, `wmproxy-${runtime}-${workers}.toml`);
  writeFileSync(
    file,
    `[control]
enabled = false
[log]
level = "error"
${accessLog ? `access_log = "${join(dir, `wmproxy-${runtime}-${workers}-access.log`)}"` : ''}
[[upstream]]
name = "app"
servers = [${ports.map((p) => `"127.0.0.1:${p}"`).join(', ')}]
[[server]]
listen = "127.0.0.1:${port}"
[[server.location]]
path = "/"
${respond ? 'respond = { status = 200, body = "hello\\n" }' : 'upstream = "app"'}
`,
  );
  const child = startWmproxyRun(children, runtime, file, ['--workers', String(workers)]);
  await waitPort(port);
  // Every worker binds the port; give the second one time to join before measuring.
  await sleep(workers > 1 ? 1500 : 300);
  return { port, child };
}

const contenders = [
  { name: 'nginx', workers: 1, start: (ports) => startNginx(1, ports) },
  { name: 'nginx', workers: 2, start: (ports) => startNginx(2, ports) },
  { name: 'wmproxy-bun', workers: 1, start: (ports) => startWmproxy('bun', 1, ports) },
  { name: 'wmproxy-bun', workers: 2, start: (ports) => startWmproxy('bun', 2, ports) },
  { name: 'wmproxy-node', workers: 1, start: (ports) => startWmproxy('node', 1, ports) },
  { name: 'wmproxy-node', workers: 2, start: (ports) => startWmproxy('node', 2, ports) },
].filter((contender) => only.length === 0 || only.includes(contender.name));

/** wrk, with `pipeline` requests per write when asked (wrk's pipeline.lua). */
async function load(port, durationSec) {
  if (pipeline === 1) return runWrk({ url: `http://127.0.0.1:${port}/`, threads: 1, connections, durationSec });
  const script = join(dir, 'pipeline.lua');
  writeFileSync(script, `init = function(args)\n  local r = {}\n  for i = 1, ${pipeline} do r[i] = wrk.format(nil, "/") end\n  req = table.concat(r)\nend\nrequest = function() return req end\n`);
  const result = await runCommand('wrk', ['-t1', `-c${connections}`, `-d${durationSec}s`, '--timeout', '5s', '-s', script, `http://127.0.0.1:${port}/`], { timeoutMs: (durationSec + 60) * 1000 });
  if (result.code !== 0) throw new Error(`wrk failed: ${result.stderr || result.stdout}`);
  return parseWrk(result.stdout);
}

async function measure(contender, ports) {
  const proxy = await contender.start(ports);
  try {
    await load(proxy.port, 1); // warm-up
    const cpuBefore = cpuSeconds(proxy.child.pid) ?? 0;
    const result = await load(proxy.port, duration);
    const cpu = (cpuSeconds(proxy.child.pid) ?? 0) - cpuBefore;
    return {
      rps: result.requestsPerSec ?? 0,
      errors: result.socketErrors + result.non2xx,
      cpuUsPerRequest: result.requests ? (cpu * 1e6) / result.requests : NaN,
      rssMiB: peakRssMiB(proxy.child.pid) ?? NaN,
    };
  } finally {
    await stop(proxy.child);
    await sleep(300);
  }
}

async function main() {
  const { ports, child: backendChild } = await backends();
  const results = new Map(contenders.map((contender) => [`${contender.name}/${contender.workers}`, []]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (const contender of contenders) {
        const row = await measure(contender, ports);
        results.get(`${contender.name}/${contender.workers}`).push(row);
        process.stderr.write(`round ${round + 1} ${contender.name} x${contender.workers}: ${Math.round(row.rps)} req/s\n`);
      }
    }
  } finally {
    await stop(backendChild);
  }
  console.log(`\nworkers benchmark: wrk -t1 -c${connections} ${duration}s, pipeline ${pipeline}, ${respond ? 'answered by the proxy itself' : `2 nginx backends answering ${bodyBytes} bytes`}, access log ${accessLog ? 'on' : 'off'}, median of ${rounds} interleaved rounds; ${new Date().toISOString()}`);
  console.log('| proxy | workers | req/s | vs 1 worker | errors | CPU µs/req | peak RSS (all processes) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const name of [...new Set(contenders.map((contender) => contender.name))]) {
    const one = results.get(`${name}/1`);
    const base = one ? median(one.map((row) => row.rps)) : NaN;
    for (const workers of [1, 2]) {
      const rows = results.get(`${name}/${workers}`);
      if (!rows) continue;
      const rps = median(rows.map((row) => row.rps));
      console.log(
        `| ${name} | ${workers} | ${Math.round(rps)} | ${(rps / base).toFixed(2)}x | ${rows.reduce((sum, row) => sum + row.errors, 0)} | ${median(rows.map((row) => row.cpuUsPerRequest)).toFixed(1)} | ${median(rows.map((row) => row.rssMiB)).toFixed(0)} MiB |`,
      );
    }
  }
}

try {
  await main();
} finally {
  children.killAll();
  rmSync(dir, { recursive: true, force: true });
}
