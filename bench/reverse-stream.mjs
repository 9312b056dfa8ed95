#!/usr/bin/env node
// TCP stream proxying: wmproxy `[[stream]]` (Bun and Node) against HAProxy in
// `mode tcp`, both balancing over the same two backends (one nginx process,
// two ports, `return 200`), and the backends directly. wrk with keep-alive
// connections through each relay measures request round trips through the
// stream; a second figure is bulk transfer (a 64 MiB body) in MB/s. Rounds
// are interleaved and the median shown.
//
//   node bench/reverse-stream.mjs [--duration 5] [--connections 64] [--rounds 3] [--compare DIR] [--only NAME,...]
//
// --compare DIR adds `wmproxy-bun@base stream` and `wmproxy-node@base stream`:
// the same proxy from another built checkout, to measure a change against its
// base in the same rounds. --only keeps the contenders whose names start with
// one of the given prefixes (e.g. --only haproxy,wmproxy-bun).
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { argument, Children, freePort, median, sleep, startNginxBackends, startWmproxyRun, stop, waitPort } from './reverse-common.mjs';
import { cpuSeconds, peakRssMiB } from './lib/proc.mjs';
import { runWrk } from './lib/wrk.mjs';

const args = process.argv.slice(2);
const duration = Number(argument(args, 'duration', '5'));
const connections = Number(argument(args, 'connections', '64'));
const rounds = Math.max(1, Number(argument(args, 'rounds', '3')));
const compareRoot = argument(args, 'compare', undefined);
const only = argument(args, 'only', undefined)?.split(',');
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-stream-'));
chmodSync(dir, 0o755); // nginx workers run as an unprivileged user
const children = new Children();

async function backends() {
  writeFileSync(join(dir, 'big.bin'), Buffer.alloc(64 << 20, 120));
  return startNginxBackends(children, dir, 'location = /big.bin { } location / { return 200 "hello\\n"; }');
}

async function startHaproxy(ports) {
  const port = await freePort();
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(
    conf,
    `global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend in
  bind 127.0.0.1:${port}
  default_backend app
backend app
  balance roundrobin
${ports.map((p, i) => `  server b${i} 127.0.0.1:${p}`).join('\n')}
`,
  );
  const child = children.start('haproxy', ['-db', '-f', conf], 'haproxy');
  await waitPort(port);
  return { port, child };
}

async function startWmproxy(runtime, ports, tree) {
  const port = await freePort();
  const file = join(dir, `wmproxy-${runtime}${tree ? '-base' : ''}.toml`);
  writeFileSync(
    file,
    `[control]
enabled = false
[log]
level = "error"
[[upstream]]
name = "app"
servers = [${ports.map((p) => `"127.0.0.1:${p}"`).join(', ')}]
[[stream]]
listen = "127.0.0.1:${port}"
upstream = "app"
`,
  );
  const child = startWmproxyRun(children, runtime, file, [], tree);
  await waitPort(port);
  return { port, child };
}

/** Bulk transfer: `count` sequential downloads of the 64 MiB file through the relay, MB/s. */
async function bulk(port, count = 4) {
  const started = performance.now();
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const response = await fetch(`http://127.0.0.1:${port}/big.bin`);
    const reader = response.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
    }
  }
  return bytes / 1e6 / ((performance.now() - started) / 1000);
}

async function measure(contender, ports) {
  const proxy = contender.start ? await contender.start(ports) : { port: ports[0], child: undefined };
  try {
    await runWrk({ url: `http://127.0.0.1:${proxy.port}/`, threads: 1, connections, durationSec: 1 }); // warm-up
    const cpuBefore = proxy.child ? cpuSeconds(proxy.child.pid) ?? 0 : 0;
    const result = await runWrk({ url: `http://127.0.0.1:${proxy.port}/`, threads: 1, connections, durationSec: duration });
    const cpu = proxy.child ? (cpuSeconds(proxy.child.pid) ?? 0) - cpuBefore : NaN;
    const mbps = await bulk(proxy.port);
    return {
      rps: result.requestsPerSec ?? 0,
      p99: result.latencyMaxMs,
      errors: result.socketErrors + result.non2xx,
      cpuUsPerRequest: result.requests ? (cpu * 1e6) / result.requests : NaN,
      mbps,
      rssMiB: proxy.child ? peakRssMiB(proxy.child.pid) ?? NaN : NaN,
    };
  } finally {
    if (proxy.child) await stop(proxy.child);
    await sleep(300);
  }
}

const contenders = [
  { name: 'direct (one backend)' },
  { name: 'haproxy mode tcp', start: startHaproxy },
  { name: 'wmproxy-bun stream', start: (ports) => startWmproxy('bun', ports) },
  { name: 'wmproxy-node stream', start: (ports) => startWmproxy('node', ports) },
  ...(compareRoot
    ? [
        { name: 'wmproxy-bun@base stream', start: (ports) => startWmproxy('bun', ports, compareRoot) },
        { name: 'wmproxy-node@base stream', start: (ports) => startWmproxy('node', ports, compareRoot) },
      ]
    : []),
].filter((contender) => !only || contender.name.startsWith('haproxy') || only.some((prefix) => contender.name.startsWith(prefix)));

async function main() {
  const { ports, child: backendChild } = await backends();
  const results = new Map(contenders.map((contender) => [contender.name, []]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (const contender of contenders) {
        const row = await measure(contender, ports);
        results.get(contender.name).push(row);
        process.stderr.write(`round ${round + 1} ${contender.name}: ${Math.round(row.rps)} req/s, ${Math.round(row.mbps)} MB/s\n`);
      }
    }
  } finally {
    await stop(backendChild);
  }
  const haproxy = results.get('haproxy mode tcp');
  const baseRps = median(haproxy.map((row) => row.rps));
  const baseMbps = median(haproxy.map((row) => row.mbps));
  console.log(`\nTCP stream benchmark: wrk -t1 -c${connections} ${duration}s through each relay, then 4 x 64 MiB downloads; median of ${rounds} interleaved rounds; ${new Date().toISOString()}`);
  console.log('| relay | req/s | vs HAProxy | max latency ms | errors | CPU µs/req | bulk MB/s | vs HAProxy | peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [name, rows] of results) {
    const rps = median(rows.map((row) => row.rps));
    const mbps = median(rows.map((row) => row.mbps));
    console.log(
      `| ${name} | ${Math.round(rps)} | ${(rps / baseRps).toFixed(2)}x | ${median(rows.map((row) => row.p99)).toFixed(1)} | ${rows.reduce((sum, row) => sum + row.errors, 0)} | ${!Number.isNaN(rows[0].cpuUsPerRequest) ? median(rows.map((row) => row.cpuUsPerRequest)).toFixed(1) : '–'} | ${Math.round(mbps)} | ${(mbps / baseMbps).toFixed(2)}x | ${Number.isNaN(median(rows.map((row) => row.rssMiB))) ? '–' : `${median(rows.map((row) => row.rssMiB)).toFixed(0)} MiB`} |`,
    );
  }
  if (compareRoot) {
    console.log('\npaired per round against the same proxy from --compare: median [min - max]');
    console.log('| proxy | req/s ratio | CPU µs/req ratio | bulk MB/s ratio |');
    console.log('|---|---|---|---|');
    for (const runtime of ['bun', 'node']) {
      const rows = results.get(`wmproxy-${runtime} stream`);
      const baseRows = results.get(`wmproxy-${runtime}@base stream`);
      if (!rows || !baseRows) continue;
      const ratio = (key) => {
        const values = rows.map((row, i) => row[key] / baseRows[i][key]).sort((a, b) => a - b);
        return `${median(values).toFixed(3)} [${values[0].toFixed(3)} - ${values.at(-1).toFixed(3)}]`;
      };
      console.log(`| wmproxy-${runtime} / @base | ${ratio('rps')} | ${ratio('cpuUsPerRequest')} | ${ratio('mbps')} |`);
    }
  }
}

try {
  await main();
} finally {
  children.killAll();
  rmSync(dir, { recursive: true, force: true });
}
