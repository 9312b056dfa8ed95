#!/usr/bin/env node
// How much CPU does active checking cost? N TCP targets (N local listeners
// on as many ports, in a separate process) checked every second; the
// checker's own CPU (process.cpuUsage, user + system) is measured over a
// window after a warm-up, on Bun and on Node, with HAProxy checking the same
// listeners (`check inter 1s`, one thread) as the comparator.
//
//   node bench/health-scale.mjs [--targets 1000,10000] [--seconds 15] [--warmup 3] [--runtimes bun,node,haproxy]
//   npx bun bench/health-scale.mjs …   (same; each measurement runs in its own child process)
//
// Loopback only. Needs ulimit -n above the largest target count.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const self = fileURLToPath(import.meta.url);
const root = join(self, '..', '..');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? args[index + 1] : fallback;
};
const role = option('role', 'main');

if (role === 'server') await server(Number(option('count', '1000')));
else if (role === 'checker') await checker(option('ports'), Number(option('seconds', '15')), Number(option('warmup', '3')));
else await main();

/** N listeners on 127.0.0.1:0 that accept and close at once; prints the ports, runs until stdin closes. */
async function server(count) {
  const ports = [];
  const onSocket = (socket) => {
    socket.on('error', () => {});
    socket.destroy();
  };
  if (typeof Bun !== 'undefined') {
    // Bun's native listener: the cheapest accept-and-close on this machine.
    // end(), not terminate(): an instant RST can reach the prober before its connect completes.
    const handlers = { open: (socket) => socket.end(), data() {}, close() {}, error() {} };
    for (let i = 0; i < count; i++) ports.push(Bun.listen({ hostname: '127.0.0.1', port: 0, socket: handlers }).port);
    count = 0;
  }
  for (let i = 0; i < count; i++) {
    const listener = net.createServer(onSocket);
    listener.on('error', () => {});
    await new Promise((resolve) => listener.listen({ port: 0, host: '127.0.0.1', backlog: 511 }, resolve));
    ports.push(listener.address().port);
  }
  process.stdout.write(JSON.stringify(ports) + '\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
}

async function checker(portsFile, seconds, warmup) {
  const { HealthChecker } = await import('@wmproxy/health');
  const ports = JSON.parse(readFileSync(portsFile, 'utf8'));
  const health = new HealthChecker({ active: { intervalMs: 1000, timeoutMs: 1000, jitter: 0.1 }, passive: { enabled: false } });
  // Spread the first probes over the interval, as HAProxy does at start-up.
  for (const port of ports) health.add({ address: `127.0.0.1:${port}` });
  await sleep(warmup * 1000);
  const before = health.stats();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  const after = health.stats();
  const snapshot = health.snapshot();
  const healthy = snapshot.targets.filter((target) => target.state === 'healthy').length;
  await health.close();
  const result = {
    runtime: typeof Bun !== 'undefined' ? `bun ${Bun.version}` : `node ${process.versions.node}`,
    targets: ports.length,
    cpuPercent: round(((cpu.user + cpu.system) / 1000 / wall) * 100),
    userPercent: round((cpu.user / 1000 / wall) * 100),
    systemPercent: round((cpu.system / 1000 / wall) * 100),
    probesPerSecond: round(((after.probes - before.probes) / wall) * 1000),
    failures: after.failures - before.failures,
    healthy,
    meanLatenessMs: after.meanLatenessMs,
    maxLatenessMs: after.maxLatenessMs,
    rssMiB: round(process.memoryUsage().rss / 1048576),
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

async function main() {
  const counts = option('targets', '1000,10000').split(',').map(Number);
  const seconds = Number(option('seconds', '15'));
  const warmup = Number(option('warmup', '3'));
  const runtimes = option('runtimes', 'bun,node,haproxy').split(',');
  const bun = join(root, 'node_modules', '.bin', 'bun');
  const node = process.versions.bun ? 'node' : process.execPath;
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-health-scale-'));
  console.log(`health-scale: TCP checks every 1 s (timeout 1 s, jitter 10 %), CPU over ${seconds} s after ${warmup} s warm-up; 2-core machine, shared`);
  const rows = [];
  for (const count of counts) {
    // The listeners run on Bun when available (cheaper accepts), apart from the checker.
    const serverRuntime = existsSync(bun) ? bun : node;
    const listeners = spawn(serverRuntime, [self, '--role', 'server', '--count', String(count)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const ports = await firstLine(listeners.stdout);
    const portsFile = join(dir, `ports-${count}.json`);
    writeFileSync(portsFile, ports);
    for (const runtime of runtimes) {
      const serverCpu0 = procCpu(listeners.pid);
      const opens0 = activeOpens();
      const t0 = performance.now();
      let result;
      if (runtime === 'haproxy') result = await haproxy(JSON.parse(ports), seconds, warmup, dir);
      else {
        const command = runtime === 'bun' ? bun : node;
        if (runtime === 'bun' && !existsSync(bun)) continue;
        const run = spawnSync(command, [self, '--role', 'checker', '--ports', portsFile, '--seconds', String(seconds), '--warmup', String(warmup)], {
          encoding: 'utf8',
          cwd: root,
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        result = JSON.parse(run.stdout.trim().split('\n').at(-1));
      }
      const elapsed = (performance.now() - t0) / 1000;
      const serverCpu = ((procCpu(listeners.pid) - serverCpu0) / elapsed) * 100;
      // Connects per second machine-wide (kernel counter, includes anything else running), over warm-up + window.
      rows.push({ ...result, listenerCpuPercent: round(serverCpu), connectsPerSecond: Math.round((activeOpens() - opens0) / elapsed) });
      console.log(JSON.stringify(rows.at(-1)));
    }
    listeners.stdin.end();
    listeners.kill();
  }
  console.log('\n| targets | checker | CPU % of one core (user+sys) | probes/s | connects/s (kernel) | failed | healthy | mean / max lateness ms | RSS MiB |');
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of rows) {
    console.log(
      `| ${row.targets} | ${row.runtime} | ${row.cpuPercent} | ${row.probesPerSecond ?? '-'} | ${row.connectsPerSecond} | ${row.failures ?? '-'} | ${row.healthy ?? '-'} | ${row.meanLatenessMs ?? '-'} / ${row.maxLatenessMs ?? '-'} | ${row.rssMiB ?? '-'} |`,
    );
  }
}

/** HAProxy checking the same listeners: one backend, `check inter 1s fall 3 rise 2`, one thread; CPU from /proc. */
async function haproxy(ports, seconds, warmup, dir) {
  const which = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
  if (which.status !== 0) return { runtime: 'haproxy (not installed)', targets: ports.length, cpuPercent: NaN };
  const version = which.stdout.split('\n')[0].replace(/^HAProxy version (\S+).*/, '$1');
  const config = [
    'global',
    '  nbthread 1',
    '  maxconn 2000',
    'defaults',
    '  mode tcp',
    '  timeout connect 1s',
    '  timeout check 1s',
    '  timeout client 5s',
    '  timeout server 5s',
    'frontend unused',
    `  bind unix@${join(dir, `haproxy-${ports.length}.sock`)}`,
    '  default_backend targets',
    'backend targets',
    '  default-server check inter 1s fall 3 rise 2',
    ...ports.map((port, index) => `  server s${index} 127.0.0.1:${port}`),
    '',
  ].join('\n');
  const file = join(dir, `haproxy-${ports.length}.cfg`);
  writeFileSync(file, config);
  const child = spawn('haproxy', ['-db', '-q', '-f', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  await sleep(warmup * 1000);
  const cpu0 = procCpu(child.pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const cpu = procCpu(child.pid) - cpu0;
  const wall = (performance.now() - t0) / 1000;
  const rss = Number(readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024;
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  return { runtime: `haproxy ${version}`, targets: ports.length, cpuPercent: round((cpu / wall) * 100), rssMiB: round(rss) };
}

/** TCP connects started machine-wide (Tcp ActiveOpens in /proc/net/snmp). */
function activeOpens() {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((line) => line.startsWith('Tcp:'));
  const names = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/);
  return Number(values[names.indexOf('ActiveOpens')]);
}

/** CPU seconds (user + system) of a process, from /proc. */
function procCpu(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function firstLine(stream) {
  return new Promise((resolve) => {
    let text = '';
    stream.on('data', (chunk) => {
      text += chunk;
      const newline = text.indexOf('\n');
      if (newline >= 0) resolve(text.slice(0, newline));
    });
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function round(value) {
  return Math.round(value * 10) / 10;
}
