#!/usr/bin/env node
// Forward-proxy benchmark, one run, Bun and Node side by side:
//  (a) SOCKS5 download of a large file (nginx serving a sparse file) with
//      `curl --socks5`, through wmproxy, Dante and core-net's minimal relay,
//      and direct; MiB/s (median of --reps), proxy CPU seconds per GiB, peak RSS.
//  (b) HTTP requests/s with wrk sending absolute-form requests through the
//      HTTP proxy (wmproxy, tinyproxy), and direct to nginx for reference
//      (median of --reps runs of --wrk-sec seconds).
// Every subject runs at once and is measured in rounds, one sample each per
// round, so a noisy neighbour on a shared machine hurts all of them alike.
//  (c) The encrypted hop between two proxies: a SOCKS5 download through a
//      two-node chain, wmproxy client -> mutual TLS -> wmproxy server ->
//      nginx (CONNECT inside TLS, and SOCKS5 inside TLS), against `ssh -D`
//      (OpenSSH's dynamic forwarding to a private sshd on loopback; default
//      cipher, and AES-GCM as TLS negotiates); MiB/s and CPU s/GiB of both
//      nodes together.
// Targets (wmproxy on Bun): >= 1.4x Dante, >= 0.5x direct, peak RSS < 80 MiB.
//
// Usage: node bench/forward-proxy.mjs [--size-mib 1024] [--reps 5] [--wrk-sec 5]
//          [--connections 50] [--only socks|http|tls] [--skip-mini] [--skip-node] [--json FILE]
// Needs: `npx tsc -b` done (Node runs dist/), curl, wrk, nginx, danted, tinyproxy,
// openssl, and for (c) OpenSSH's sshd and ssh (run as root: the private sshd logs in as root).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, have, runCommand, startProcess } from './lib/proc.mjs';
import { startDante, startNginx, startTinyproxy } from './lib/servers.mjs';
import { runWrk } from './lib/wrk.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: options } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    reps: { type: 'string', default: '5' },
    'wrk-sec': { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    only: { type: 'string' },
    'skip-mini': { type: 'boolean', default: false },
    'skip-node': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const sizeBytes = Number(options['size-mib']) * 1024 * 1024;
const reps = Number(options.reps);
const wrkSec = Number(options['wrk-sec']);
const connections = Number(options.connections);
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

const bun = join(root, 'node_modules', 'bun', 'bin', 'bun.exe');
const bunBin = existsSync(bun) ? bun : join(root, 'node_modules', '.bin', 'bun');
const cli = join(root, 'cli', 'bin', 'run.js');
const mini = join(root, 'bench', 'lib', 'mini-socks5.mjs');

const tools = options.only === 'tls' ? ['curl', 'nginx', 'openssl', 'sshd', 'ssh'] : ['curl', 'wrk', 'nginx', 'danted', 'tinyproxy', ...(options.only === undefined ? ['openssl', 'sshd', 'ssh'] : [])];
for (const tool of tools) {
  if (!have(tool)) {
    console.error(`forward-proxy bench: ${tool} is not installed (apt-get install curl wrk nginx dante-server tinyproxy openssl openssh-server openssh-client)`);
    process.exit(1);
  }
}
if (!existsSync(join(root, 'cli', 'dist', 'src', 'commands.js'))) {
  console.error('forward-proxy bench: run `npx tsc -b` first (Node runs the compiled dist/)');
  process.exit(1);
}

/** Proxies under test: how to start each on a port. */
const wmproxy = (runtime) => (port) => ({
  command: runtime === 'bun' ? bunBin : process.execPath,
  args: [cli, 'proxy', '--bind', `127.0.0.1:${port}`, '--log-level', 'warn'],
});
const miniRelay = (runtime, env = {}) => (port) => ({ command: runtime === 'bun' ? bunBin : process.execPath, args: [mini, String(port)], env });

const socksSubjects = [
  { name: 'direct (no proxy)', kind: 'direct' },
  { name: 'Dante 1.4', kind: 'dante' },
  { name: 'wmproxy on Bun', kind: 'spawn', start: wmproxy('bun'), target: true },
  { name: 'wmproxy on Node', kind: 'spawn', start: wmproxy('node') },
  ...(options['skip-mini']
    ? []
    : [
        { name: 'core-net relay, Bun sockets', kind: 'spawn', start: miniRelay('bun') },
        { name: 'core-net relay, node:net on Bun', kind: 'spawn', start: miniRelay('bun', { WMPROXY_RUNTIME: 'node' }) },
        { name: 'core-net relay, Node', kind: 'spawn', start: miniRelay('node') },
      ]),
];
const httpSubjects = [
  { name: 'direct (no proxy)', kind: 'direct' },
  { name: 'tinyproxy 1.11', kind: 'tinyproxy' },
  { name: 'wmproxy on Bun', kind: 'spawn', start: wmproxy('bun'), target: true },
  { name: 'wmproxy on Node', kind: 'spawn', start: wmproxy('node') },
];

// ---------------------------------------------------------------- (c) the TLS hop
/** A throw-away PKI (CA, server and client certificates) and SSH keys, in one temp dir. */
function makeKeys() {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-bench-tls-'));
  const run = (command, args) => execFileSync(command, args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('openssl', ['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=bench-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-keyout', 'ca.key', '-out', 'ca.pem']);
  for (const [name, ext] of [['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'], ['client', 'extendedKeyUsage=clientAuth\n']]) {
    run('openssl', ['req', ...ec, '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`]);
    writeFileSync(join(dir, `${name}.ext`), ext);
    run('openssl', ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`]);
  }
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_ed25519')]);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id_ed25519')]);
  execFileSync('cp', [join(dir, 'id_ed25519.pub'), join(dir, 'authorized_keys')]);
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Two processes measured as one subject: CPU and peak RSS summed, both stopped. */
function pair(first, second, port) {
  return {
    port,
    get output() {
      return `${first.name}: ${first.output.trim().split('\n').slice(-3).join('\n')}\n${second.name}: ${second.output.trim().split('\n').slice(-3).join('\n')}`;
    },
    cpuSeconds: () => (first.cpuSeconds() ?? 0) + (second.cpuSeconds() ?? 0),
    peakRssMiB: () => (first.peakRssMiB() ?? 0) + (second.peakRssMiB() ?? 0),
    async stop() {
      await second.stop();
      await first.stop();
    },
  };
}

/** wmproxy server (TLS port, client certificates required) and client (plain SOCKS5/HTTP port, parent over mutual TLS). */
async function startWmproxyChain(runtime, scheme, keys) {
  const command = runtime === 'bun' ? bunBin : process.execPath;
  const serverPort = await freePort();
  const server = await startProcess(command, [cli, 'proxy', '--bind', `127.0.0.1:${serverPort}`, '--log-level', 'warn',
    '--cert', keys.path('server.pem'), '--key', keys.path('server.key'), '--client-ca', keys.path('ca.pem')], { port: serverPort, name: `wmproxy server (${runtime})`, timeoutMs: 30_000 });
  const clientPort = await freePort();
  try {
    const client = await startProcess(command, [cli, 'proxy', '--bind', `127.0.0.1:${clientPort}`, '--log-level', 'warn',
      '--upstream', `${scheme}://127.0.0.1:${serverPort}`, '--upstream-ca', keys.path('ca.pem'), '--upstream-cert', keys.path('client.pem'), '--upstream-key', keys.path('client.key')],
      { port: clientPort, name: `wmproxy client (${runtime})`, timeoutMs: 30_000 });
    return pair(server, client, clientPort);
  } catch (error) {
    await server.stop();
    throw error;
  }
}

/** A private sshd on loopback (root login by key only) and `ssh -D` to it: a SOCKS5 port whose hop is SSH. */
async function startSshChain(keys, cipher) {
  const sshPort = await freePort();
  const config = keys.path(`sshd_config_${sshPort}`);
  writeFileSync(config, [
    `Port ${sshPort}`, 'ListenAddress 127.0.0.1', `HostKey ${keys.path('host_ed25519')}`, `PidFile ${keys.path(`sshd_${sshPort}.pid`)}`,
    `AuthorizedKeysFile ${keys.path('authorized_keys')}`, 'PermitRootLogin yes', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
    'StrictModes no', 'AllowTcpForwarding yes', 'PrintMotd no', 'LogLevel ERROR', '',
  ].join('\n'));
  execFileSync('/usr/sbin/sshd', ['-t', '-f', config], { stdio: 'pipe' });
  const sshd = await startProcess('/usr/sbin/sshd', ['-D', '-e', '-f', config], { port: sshPort, name: 'sshd' });
  const socksPort = await freePort();
  try {
    const ssh = await startProcess('ssh', [
      '-N', '-D', `127.0.0.1:${socksPort}`, '-p', String(sshPort), '-i', keys.path('id_ed25519'),
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR',
      ...(cipher ? ['-c', cipher] : []), 'root@127.0.0.1',
    ], { port: socksPort, name: 'ssh -D', timeoutMs: 20_000 });
    return pair(sshd, ssh, socksPort);
  } catch (error) {
    await sshd.stop();
    throw error;
  }
}

function tlsSubjects(keys) {
  const chains = (runtime) => [
    { name: `wmproxy chain on ${runtime}, https:// parent (CONNECT in mTLS)`, kind: 'custom', start: () => startWmproxyChain(runtime, 'https', keys), target: runtime === 'bun' },
    { name: `wmproxy chain on ${runtime}, socks5+tls:// parent`, kind: 'custom', start: () => startWmproxyChain(runtime, 'socks5+tls', keys) },
  ];
  return [
    { name: 'direct (no proxy)', kind: 'direct' },
    { name: 'ssh -D, default cipher (chacha20-poly1305)', kind: 'custom', start: () => startSshChain(keys) },
    { name: 'ssh -D, aes128-gcm', kind: 'custom', start: () => startSshChain(keys, 'aes128-gcm@openssh.com') },
    ...chains('bun'),
    ...(options['skip-node'] ? [] : chains('node')),
  ];
}

async function benchTls(origin) {
  const keys = makeKeys();
  try {
    return await downloadRows(origin, tlsSubjects(keys), 'tls hop');
  } finally {
    keys.cleanup();
  }
}

async function startSubject(subject) {
  if (subject.kind === 'direct') return undefined;
  if (subject.kind === 'custom') return subject.start();
  if (subject.kind === 'dante') return startDante();
  if (subject.kind === 'tinyproxy') return startTinyproxy();
  const port = await freePort();
  const { command, args, env } = subject.start(port);
  const handle = await startProcess(command, args, { port, env, name: subject.name, timeoutMs: 30_000 });
  return Object.assign(handle, { port });
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
const fixed = (value, digits = 1) => (value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits));

async function curlDownload(url, proxyPort) {
  const args = ['-sS', '--max-time', '300', '-o', '/dev/null', '-w', '%{speed_download} %{size_download}'];
  if (proxyPort) args.push('--socks5', `127.0.0.1:${proxyPort}`);
  const result = await runCommand('curl', [...args, url]);
  if (result.code !== 0) throw new Error(`curl exited ${result.code}: ${result.stderr.trim()}`);
  const [speed, size] = result.stdout.trim().split(' ').map(Number);
  if (size !== sizeBytes) throw new Error(`curl received ${size} bytes, expected ${sizeBytes}`);
  return speed / MiB;
}

/**
 * Start every subject, then measure in rounds (each subject once per round),
 * so load from other processes on a shared machine spreads over all of them
 * instead of skewing one. `measure(subject, proxy)` returns one sample.
 */
async function inRounds(subjects, rounds, measure, label) {
  const live = [];
  try {
    for (const subject of subjects) {
      const row = { name: subject.name, target: subject.target ?? false, samples: [] };
      try {
        row.proxy = await startSubject(subject);
      } catch (error) {
        row.error = error.message;
      }
      live.push(row);
    }
    for (let round = 0; round < rounds; round++) {
      for (const row of live) {
        if (row.error) continue;
        const cpuBefore = row.proxy?.cpuSeconds();
        try {
          row.samples.push(await measure(row.proxy));
          if (row.proxy) row.cpuSeconds = (row.cpuSeconds ?? 0) + (row.proxy.cpuSeconds() - cpuBefore);
        } catch (error) {
          row.error = `${error.message}${row.proxy ? `\n${row.proxy.output.trim().split('\n').slice(-5).join('\n')}` : ''}`;
        }
      }
      console.error(`  ${label} round ${round + 1}/${rounds} done`);
    }
    for (const row of live) row.peakRssMiB = row.proxy?.peakRssMiB();
  } finally {
    for (const row of live) await row.proxy?.stop();
  }
  return live.map(({ proxy, ...row }) => row);
}

async function benchSocks(origin) {
  return downloadRows(origin, socksSubjects, 'socks5');
}

/** `curl --socks5` downloads through each subject in rounds: MiB/s (median) and CPU s/GiB. */
async function downloadRows(origin, subjects, label) {
  await curlDownload(origin.fileUrl); // page cache warm-up
  const rows = await inRounds(subjects, reps, (proxy) => curlDownload(origin.fileUrl, proxy?.port), label);
  for (const row of rows) {
    if (row.error) continue;
    row.mibPerSec = median(row.samples);
    if (row.cpuSeconds !== undefined) row.cpuSecPerGiB = row.cpuSeconds / ((row.samples.length * sizeBytes) / GiB);
  }
  return rows;
}

async function benchHttp(origin) {
  const measure = async (proxy) => {
    // One request by hand first: a proxy that answers errors fast would look great in wrk.
    const probe = await runCommand('curl', ['-sS', '--max-time', '10', ...(proxy ? ['-x', `http://127.0.0.1:${proxy.port}`] : []), origin.helloUrl]);
    if (probe.code !== 0 || probe.stdout !== 'hello\n') throw new Error(`probe request failed: ${probe.stderr.trim() || probe.stdout.slice(0, 80)}`);
    return runWrk({ url: origin.helloUrl, proxy: proxy ? { host: '127.0.0.1', port: proxy.port } : undefined, connections, durationSec: wrkSec });
  };
  const rows = await inRounds(httpSubjects, reps, measure, 'http');
  for (const row of rows) {
    if (row.error) continue;
    row.requestsPerSec = median(row.samples.map((sample) => sample.requestsPerSec));
    row.latencyAvgMs = median(row.samples.map((sample) => sample.latencyAvgMs));
    row.errors = row.samples.reduce((sum, sample) => sum + sample.non2xx + sample.socketErrors, 0);
    row.requests = row.samples.reduce((sum, sample) => sum + sample.requests, 0);
    if (row.cpuSeconds !== undefined) row.cpuMicrosPerRequest = (row.cpuSeconds / row.requests) * 1e6;
    row.samples = row.samples.map((sample) => sample.requestsPerSec);
  }
  return rows;
}

function table(headers, rows) {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => String(row[i]).length)));
  const line = (cells) => cells.map((cell, i) => (i === 0 ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

/** Print `rows` under `headers`: the name, then `cells(row)`, or "error" for a row that failed. */
function printRows(headers, rows, cells) {
  console.log(table(headers, rows.map((row) => (row.error ? [row.name, 'error', ...headers.slice(2).map(() => '')] : [row.name, ...cells(row)]))));
}

const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : '-');
const cpus = (await import('node:os')).cpus().length;
const load = (await import('node:os')).loadavg()[0];
console.error(`forward-proxy bench: ${options['size-mib']} MiB file, ${reps} reps, wrk ${wrkSec}s x ${connections} connections; ${cpus} CPUs, load ${load.toFixed(1)}`);

const origin = await startNginx({ fileBytes: options.only === 'http' ? 1 : sizeBytes });
const report = { date: new Date().toISOString(), sizeMiB: Number(options['size-mib']), reps, wrkSec, connections, cpus, loadAtStart: load };
try {
  if (options.only === undefined || options.only === 'socks') report.socks5 = await benchSocks(origin);
  if (options.only === undefined || options.only === 'http') report.http = await benchHttp(origin);
  if (options.only === undefined || options.only === 'tls') report.tlsHop = await benchTls(origin);
} finally {
  await origin.stop();
}

const verdicts = [];
if (report.socks5) {
  const by = (name) => report.socks5.find((row) => row.name === name);
  const direct = by('direct (no proxy)')?.mibPerSec;
  const dante = by('Dante 1.4')?.mibPerSec;
  console.log(`\n(a) SOCKS5 download of ${options['size-mib']} MiB, curl --socks5, median of ${reps}`);
  printRows(['proxy', 'MiB/s', 'vs Dante', 'vs direct', 'CPU s/GiB', 'peak RSS MiB', 'samples MiB/s'], report.socks5, (row) => [fixed(row.mibPerSec, 0), ratio(row.mibPerSec, dante), ratio(row.mibPerSec, direct), fixed(row.cpuSecPerGiB, 2), fixed(row.peakRssMiB), row.samples.map((v) => v.toFixed(0)).join(' ')]);
  const bunRow = by('wmproxy on Bun');
  if (bunRow && !bunRow.error) {
    verdicts.push([`wmproxy on Bun >= 1.4x Dante`, bunRow.mibPerSec / dante >= 1.4, ratio(bunRow.mibPerSec, dante)]);
    verdicts.push([`wmproxy on Bun >= 0.5x direct`, bunRow.mibPerSec / direct >= 0.5, ratio(bunRow.mibPerSec, direct)]);
    verdicts.push([`wmproxy on Bun peak RSS < 80 MiB (SOCKS5)`, bunRow.peakRssMiB < 80, `${fixed(bunRow.peakRssMiB)} MiB`]);
    const danteCpu = by('Dante 1.4')?.cpuSecPerGiB;
    if (danteCpu) verdicts.push([`(info) wmproxy on Bun CPU per GiB vs Dante, lower is better`, undefined, ratio(bunRow.cpuSecPerGiB, danteCpu)]);
  }
}
if (report.http) {
  const tiny = report.http.find((row) => row.name.startsWith('tinyproxy'))?.requestsPerSec;
  console.log(`\n(b) HTTP requests/s through the proxy, wrk -c${connections} -d${wrkSec}s, median of ${reps}, absolute-form GET of a 6-byte body`);
  printRows(['proxy', 'req/s', 'vs tinyproxy', 'avg latency ms', 'errors', 'CPU us/req', 'peak RSS MiB', 'samples req/s'], report.http, (row) => [fixed(row.requestsPerSec, 0), ratio(row.requestsPerSec, tiny), fixed(row.latencyAvgMs, 2), row.errors, fixed(row.cpuMicrosPerRequest, 0), fixed(row.peakRssMiB), row.samples.map((v) => v.toFixed(0)).join(' ')]);
  const bunRow = report.http.find((row) => row.name === 'wmproxy on Bun');
  if (bunRow && !bunRow.error) verdicts.push([`wmproxy on Bun peak RSS < 80 MiB (HTTP)`, bunRow.peakRssMiB < 80, `${fixed(bunRow.peakRssMiB)} MiB`]);
}
if (report.tlsHop) {
  const by = (name) => report.tlsHop.find((row) => row.name === name);
  const direct = by('direct (no proxy)')?.mibPerSec;
  const sshDefault = report.tlsHop.find((row) => row.name.startsWith('ssh -D, default'))?.mibPerSec;
  const sshGcm = report.tlsHop.find((row) => row.name.startsWith('ssh -D, aes128'))?.mibPerSec;
  console.log(`\n(c) Encrypted hop: SOCKS5 download of ${options['size-mib']} MiB (curl --socks5) through two nodes, median of ${reps}; CPU and RSS of both nodes`);
  printRows(['path', 'MiB/s', 'vs ssh -D', 'vs ssh aes-gcm', 'vs direct', 'CPU s/GiB', 'peak RSS MiB', 'samples MiB/s'], report.tlsHop, (row) => [fixed(row.mibPerSec, 0), ratio(row.mibPerSec, sshDefault), ratio(row.mibPerSec, sshGcm), ratio(row.mibPerSec, direct), fixed(row.cpuSecPerGiB, 2), fixed(row.peakRssMiB), row.samples.map((v) => v.toFixed(0)).join(' ')]);
  const bunRow = report.tlsHop.find((row) => row.target);
  if (bunRow && !bunRow.error) verdicts.push([`(info) wmproxy TLS chain on Bun vs ssh -D`, undefined, `${ratio(bunRow.mibPerSec, sshDefault)} (default cipher), ${ratio(bunRow.mibPerSec, sshGcm)} (AES-GCM)`]);
}
for (const row of [...(report.socks5 ?? []), ...(report.http ?? []), ...(report.tlsHop ?? [])].filter((row) => row.error)) {
  console.log(`\nerror: ${row.name}: ${row.error}`);
}
if (verdicts.length) {
  console.log('\nTargets');
  for (const [label, ok, value] of verdicts) console.log(`  ${ok === undefined ? '    ' : ok ? 'PASS' : 'FAIL'}  ${label}: ${value}`);
}
console.log(`\n(CPU figures are the proxy process's user+system time; with ${cpus} shared CPUs (load ${load.toFixed(1)} at start) throughput varies between runs, CPU per GiB less so.)`);
if (options.json) writeFileSync(options.json, JSON.stringify(report, null, 2));
console.log(JSON.stringify(report));
