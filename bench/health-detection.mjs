#!/usr/bin/env node
// Detection latency: the time from a backend dying to its `unhealthy` event,
// against the theoretical worst case `interval × fall + timeout`, with HAProxy
// checking the same backends with the same settings as the comparator (its
// "Server … is DOWN" lines are timestamped as they arrive).
//
// Scenarios (K backends each, in a separate Node process):
//   refused    the listeners close: connects are refused              (TCP check)
//   blackhole  the process is frozen (SIGSTOP) and every accept queue is
//              filled: SYNs are dropped, connects time out             (TCP check)
//   hang       the HTTP server accepts but stops answering              (HTTP check)
// The checker's targets are added one by one across an interval so probe
// phases are spread evenly; the death moment is then a random phase for each.
//
//   node bench/health-detection.mjs [--interval 1s] [--timeout 1s] [--fall 3] [--targets 20] [--jitter 0.1] [--no-haproxy]
//   npx bun bench/health-detection.mjs …
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? args[index + 1] : fallback;
};

if (option('role', 'main') === 'backends') await backends(Number(option('count', '20')));
else await main();

/** K listeners on 127.0.0.1:0 (backlog 1) answering HTTP 200; stdin commands: `close`, `hang`. */
async function backends(count) {
  let hang = false;
  const servers = [];
  const sockets = new Set();
  const onSocket = (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.on('data', () => {
      if (!hang) socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
  };
  for (let i = 0; i < count; i++) {
    const server = net.createServer(onSocket);
    await new Promise((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, resolve));
    servers.push(server);
  }
  console.log(JSON.stringify(servers.map((server) => server.address().port)));
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'close') {
      for (const server of servers) server.close();
      for (const socket of sockets) socket.destroy();
    } else if (line === 'hang') hang = true;
    console.log('done');
  }
}

async function main() {
  const { HealthChecker, parseDuration } = await import('@wmproxy/health');
  const intervalMs = parseDuration(option('interval', '1s'));
  const timeoutMs = Math.min(parseDuration(option('timeout', '1s')), intervalMs);
  const fall = Number(option('fall', '3'));
  const count = Number(option('targets', '20'));
  const jitter = Number(option('jitter', '0.1'));
  const withHaproxy = !args.includes('--no-haproxy') && spawnSync('haproxy', ['-v']).status === 0;
  const bound = intervalMs * fall + timeoutMs;
  const runtime = typeof Bun !== 'undefined' ? `bun ${Bun.version}` : `node ${process.versions.node}`;
  console.log(`health-detection on ${runtime}: interval ${intervalMs} ms, timeout ${timeoutMs} ms, fall ${fall}, jitter ${jitter * 100} %, ${count} backends per scenario`);
  console.log(`theoretical bound interval × fall + timeout = ${bound} ms (with jitter, up to ${Math.round(intervalMs * (1 + jitter) * fall + timeoutMs)} ms)\n`);
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-health-detection-'));
  const rows = [];

  for (const scenario of ['refused', 'blackhole', 'hang']) {
    const child = spawn(process.versions.bun ? 'node' : process.execPath, [self, '--role', 'backends', '--count', String(count)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const ports = JSON.parse((await lines.next()).value);
    const command = async (text) => {
      child.stdin.write(text + '\n');
      await lines.next();
    };
    const http = scenario === 'hang';
    const health = new HealthChecker({ active: { intervalMs, timeoutMs, fall, rise: 2, jitter }, passive: { enabled: false }, panicThreshold: 0 });
    const downAt = new Map();
    health.events.on('transition', (event) => {
      if (event.to === 'unhealthy' && event.from === 'healthy') downAt.set(event.target, { at: performance.now(), reason: event.reason });
    });
    // HAProxy on the same backends, same timing.
    let haproxy;
    const haproxyDown = new Map();
    if (withHaproxy) {
      const file = join(dir, `${scenario}.cfg`);
      writeFileSync(
        file,
        [
          'global',
          '  nbthread 1',
          'defaults',
          '  mode tcp',
          `  timeout connect ${timeoutMs}ms`,
          `  timeout check ${timeoutMs}ms`,
          '  timeout client 5s',
          '  timeout server 5s',
          'frontend unused',
          `  bind unix@${join(dir, `${scenario}.sock`)}`,
          '  default_backend b',
          'backend b',
          ...(http ? ['  option httpchk GET /', '  http-check expect status 200'] : []),
          `  default-server check inter ${intervalMs}ms fall ${fall} rise 2`,
          ...ports.map((port, index) => `  server s${index} 127.0.0.1:${port}`),
          '',
        ].join('\n'),
      );
      haproxy = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
      createInterface({ input: haproxy.stderr }).on('line', (line) => {
        const match = /Server b\/s(\d+) is DOWN/.exec(line);
        if (match && !haproxyDown.has(Number(match[1]))) haproxyDown.set(Number(match[1]), performance.now());
      });
    }
    // Spread probe phases over one interval, then let every target become healthy.
    for (const port of ports) {
      health.add({ address: `127.0.0.1:${port}`, check: http ? { type: 'http', path: '/' } : { type: 'tcp' } });
      await sleep(intervalMs / count);
    }
    await waitFor(() => health.snapshot().targets.every((target) => target.state === 'healthy'), 30_000);
    await sleep(intervalMs * 1.5);

    const fillers = [];
    let died;
    if (scenario === 'refused') {
      died = performance.now();
      await command('close');
    } else if (scenario === 'hang') {
      died = performance.now();
      await command('hang');
    } else {
      process.kill(child.pid, 'SIGSTOP');
      // Fill every accept queue (backlog 1 holds 2) so further SYNs are dropped.
      for (const port of ports) {
        for (let i = 0; i < 3; i++) {
          const socket = net.connect({ port, host: '127.0.0.1' });
          socket.on('error', () => {});
          fillers.push(socket);
        }
      }
      await sleep(50);
      died = performance.now();
    }
    await waitFor(() => downAt.size === count && (!withHaproxy || haproxyDown.size === count), bound * 3);
    const ours = [...downAt.values()].map((entry) => entry.at - died);
    const reasons = [...new Set([...downAt.values()].map((entry) => entry.reason))];
    rows.push({ scenario, checker: `wmproxy (${runtime})`, ...summary(ours, count), reasons: reasons.join('; ') });
    if (withHaproxy) rows.push({ scenario, checker: 'haproxy 2.6', ...summary([...haproxyDown.values()].map((at) => at - died), count), reasons: '' });
    await health.close();
    haproxy?.kill('SIGTERM');
    for (const socket of fillers) socket.destroy();
    if (scenario === 'blackhole') process.kill(child.pid, 'SIGCONT');
    child.kill('SIGTERM');
    console.log(rows.slice(withHaproxy ? -2 : -1).map((row) => JSON.stringify(row)).join('\n'));
  }

  console.log(`\n| scenario | checker | detected | mean ms | p50 ms | max ms | max / bound (${bound} ms) | reason |`);
  console.log('|---|---|---:|---:|---:|---:|---:|---|');
  for (const row of rows) {
    console.log(`| ${row.scenario} | ${row.checker} | ${row.detected} | ${row.mean} | ${row.p50} | ${row.max} | ${(row.max / bound).toFixed(2)} | ${row.reasons} |`);
  }
}

function summary(values, count) {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((sum, value) => sum + value, 0) / Math.max(1, sorted.length);
  return {
    detected: `${sorted.length}/${count}`,
    mean: Math.round(mean),
    p50: Math.round(sorted[Math.floor(sorted.length / 2)] ?? NaN),
    max: Math.round(sorted.at(-1) ?? NaN),
  };
}

async function waitFor(predicate, limitMs) {
  const until = performance.now() + limitMs;
  while (!predicate() && performance.now() < until) await sleep(20);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
