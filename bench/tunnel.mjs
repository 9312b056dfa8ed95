#!/usr/bin/env node
// Intranet tunnel benchmark: `wmproxy tunnel server|client` (TLS on, the
// default; on Bun and on Node) against OpenSSH remote forwarding (`ssh -R`,
// Debian's sshd and ssh, chacha20-poly1305) and against no tunnel at all
// (direct), in the same run, over the same local services:
//
//   visitor -> public port (tunnel server / sshd) -> tunnel client / ssh -> local service
//
//   flock /work/bench.lock node bench/tunnel.mjs [--quick] [--only direct,ssh,ssh-tty,wmproxy-bun,wmproxy-node]
//         [--phases bulk,iperf,http,ttfb,stall,idle] [--compare DIR] [--rounds 1] [--size-mib 1024] [--repeat 3] [--iperf-sec 5] [--duration 5] [--connections 64] [--ttfb 200] [--idle 1000] [--idle-warm 100] [--stall-mib 256]
//
// Scenarios, for every contender:
//  1. throughput: one stream downloads 1 GiB from the local service (the
//     visitor reads it), then one uploads 1 GiB (the service reads it),
//     alternating, 3 times (--repeat): the median MiB/s, and CPU seconds of
//     the tunnel's processes (server + client) per GiB;
//  1b. iperf3 (C at both ends, one TCP stream, as rathole's and frp's
//     benchmarks measure): `iperf3 -R` (download) then upload, --iperf-sec
//     each (5), alternating --repeat times: the median MiB/s and the tunnel's
//     CPU seconds per GiB. The node endpoints of (1) take a share of the two
//     cores that ssh -R and the tunnel then compete for; iperf3's take little;
//  2. HTTP: wrk -t2 -c64 --latency (no Lua) through a tcp mapping to a
//     one-worker nginx (`return 200`): req/s and p99;
//  3. time to first byte of a new connection: connect + one GET + the first
//     response byte, 200 sequential new connections: median and p99;
//  4. a healthy stream while another is stalled: a visitor asks the service
//     for 64 GiB and never reads; 1 s later (every buffer on its path full)
//     a second stream downloads 256 MiB. Unstalled and stalled runs alternate
//     (--repeat stalled ones); each stalled run is taken as a share of the
//     mean of the unstalled runs on either side, and the median share shown.
//     Head-of-line blocking, or a window shared between streams, shows here;
//  5. memory with 1,000 idle streams, on freshly started processes (the
//     garbage of the scenarios above would swamp it): after 100 streams opened
//     and closed, each of 1,000 streams completes one round trip to the
//     service and stays open; the growth of RSS (VmRSS) of the tunnel server
//     + client process trees (sshd + ssh for ssh -R), each settled (1 s, then
//     the median of 5 samples), divided by the number of streams, in KiB.
//     A garbage collection during the measurement can still move it by a few
//     KiB per stream: read it over --rounds 3.
//     --idle-warm N opens and closes N streams first instead of 100: with N =
//     --idle, what another 1,000 streams cost a process that has carried that
//     many before. On Node the first 1,000 also touch fresh pages of V8's
//     young generation (up to 2 x 16 MiB, once per process), which RSS counts
//     but no stream holds.
// `--quick` shrinks every scenario (128 MiB, one repeat, 2 s of wrk, 50 new
// connections, 200 idle streams) for a smoke run; its figures are noisier.
//
// Targets (from issue 15, TLS on) are printed as PASS/FAIL for each wmproxy
// row: download and upload throughput >= 2x ssh -R and >= 0.5x direct; HTTP
// req/s >= 3x ssh -R; a healthy stream keeps >= 90 % while another is stalled;
// <= 10 KiB per idle stream. A scenario that fails for a contender is shown as
// `-` and its error listed below the table (nothing is estimated).
//
// Set-up done here: a temporary sshd on a loopback port as the current user
// (generated host and user keys, `UsePAM no`, `PermitRootLogin yes` so that it
// works as root too, `StrictModes no` for the temporary directory; as root,
// sshd needs /run/sshd, which is created when missing, as Debian's unit does).
// The tunnel server keeps its self-signed certificate in a temporary state
// directory; the client pins the fingerprint the server prints. Node runs the
// compiled dist/ (`node_modules/.bin/tsc -b` first). The fd soft limit is
// raised to the hard limit (the script re-executes itself under `ulimit -n`)
// because 1,000 idle streams need ~2,000 descriptors in some processes. Every
// child process (and sshd's per-connection processes) is killed on exit, on
// error and on SIGINT/SIGTERM. Everything listens on 127.0.0.1.
// BENCH_VERBOSE=1 shows the children's output.
//
// `--only ...,ssh-tty` (not in the default set) adds `ssh -tt -R ... sleep`:
// OpenSSH sets TCP_NODELAY on its connection only for an interactive session,
// so with `-N` a lone small reply can wait for a delayed ACK (TTFB of ~40 ms
// instead of ~1 ms; throughput and req/s are the same).
// `--only relay-tcp,relay-tls,relay-mux` (not in the default set) add the least
// two-hop relay on Bun's sockets (bench/lib/relay-pair.ts: a TCP or TLS
// connection per visitor, or every visitor over one TLS connection): the
// ceiling of any JS tunnel on this host (the mux one has no flow control: use
// it with `--phases http`); `--only haproxy-pair` the same with two HAProxy
// processes (TLS between them), a native two-hop relay. `--only relay-tcp-node,relay-tls-node`: the same least
// relay on Node (bench/lib/relay-pair-node.mjs: node:net/node:tls sockets joined with pipe()), the ceiling of a
// Node tunnel. `--phases` runs only
// the scenarios named. `--compare DIR` adds wmproxy-bun@base and
// wmproxy-node@base: the tunnel of another checkout (built), for an A/B in
// one run (pick them with --only wmproxy-bun-base,...).
// wmproxy-bun and wmproxy-node run with `--data-pool 0` (every visitor on the
// multiplexed connection); wmproxy-bun-pool and wmproxy-node-pool with the data
// pool (idle extra TLS connections, one per visitor: rathole's model) of 8,
// or `--pool N` (and `--max-busy N`: their --data-max-busy; `--promote-bytes N`: their
// --data-promote-bytes, see below). With a client that supports it, a visitor starts on the mux and a bulk one
// moves to a data connection (promotion); `--only wmproxy-bun-pool-open,wmproxy-node-pool-open` (not in the
// default set) run the pool with --data-promote-bytes 0: a visitor takes a data connection at open.
// `--only mux-bun` (not in the default set) adds the tunnel's multiplexer
// alone (bench/lib/mux-relay.ts: two Bun processes, TLS, no handshake or
// CLI), to tell the cost of the stream layer from the rest.
//
// The visitor runs in this (node) process and the local service in another
// node process, so `direct` is bounded by node's socket reads and writes
// (~2 GiB/s on loopback here), not by the kernel.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, loadavg, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSecondsOf, processTree, rssMiB } from './lib/procstat.mjs';
import { download, ping, stalledDownload, upload } from './lib/stream-service.mjs';
import { runWrk } from './lib/wrk.mjs';
import { argument, Children, freePort, median, percentile, sleep, startNginxBackends, waitPort } from './reverse-common.mjs';

const self = fileURLToPath(import.meta.url);
const root = fileURLToPath(new URL('..', import.meta.url));

async function main() {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const arg = (name, full, small) => Number(argument(args, name, String(quick ? small : full)));
  const config = {
    quick,
    sizeMiB: arg('size-mib', 1024, 128),
    durationSec: arg('duration', 5, 2),
    connections: arg('connections', 64, 64),
    ttfbCount: arg('ttfb', 200, 50),
    idleStreams: arg('idle', 1000, 200),
    idleWarm: arg('idle-warm', 100, 100),
    stallMiB: arg('stall-mib', 256, 64),
    repeat: arg('repeat', 3, 1),
    rounds: Math.max(1, arg('rounds', 1, 1)),
    // The machine is shared: its load is printed beside the figures.
    loadAtStart: loadavg()[0],
    iperfSec: arg('iperf-sec', 5, 2),
    phases: argument(args, 'phases', 'bulk,iperf,http,ttfb,stall,idle').split(','),
  };
  const only = argument(args, 'only', '')?.split(',').filter(Boolean) ?? [];
  const compare = argument(args, 'compare', undefined);
  // --pool N: the data pool of the -pool contenders (default 8; the server's default is 0: off).
  const poolSize = Number(argument(args, 'pool', '8'));
  // --max-busy N: their --data-max-busy (default: the server's, 16).
  const maxBusy = argument(args, 'max-busy', undefined);
  // --promote-bytes N: their --data-promote-bytes (default: the server's).
  const promoteBytes = argument(args, 'promote-bytes', undefined);
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-tunnel-bench-'));
  chmodSync(dir, 0o755); // nginx workers run as an unprivileged user
  const children = new Children();
  const token = `bench-${process.pid}-${Date.now()}`;

  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    children.killAll();
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => (cleanup(), process.exit(130)));
  process.on('uncaughtException', (error) => (console.error(error), cleanup(), process.exit(1)));
  process.on('unhandledRejection', (error) => (console.error(error), cleanup(), process.exit(1)));

  // ------------------------------------------------------------ local services
  const service = children.start(process.execPath, [join(root, 'bench/lib/stream-service.mjs')], 'service', { stdout: true });
  const servicePort = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stream service did not start: ${service.output}`)), 10_000);
    service.stdout.on('data', () => {
      const match = /"port":(\d+)/.exec(service.output);
      if (match) (clearTimeout(timer), resolve(Number(match[1])));
    });
  });
  const nginx = await startNginxBackends(children, dir, 'location / { return 200 "hello world\\n"; }');
  const httpPort = nginx.ports[0];
  // iperf3's own server (C): its client through each contender gives a throughput figure whose endpoints cost
  // little CPU, as rathole's and frp's benchmarks measure (the node endpoints above take a share of the 2 cores).
  const iperfPort = await freePort();
  children.start('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(iperfPort)], 'iperf3-server');
  await waitPort(iperfPort);
  const services = { bulk: servicePort, http: httpPort, iperf: iperfPort };

  // ------------------------------------------------------------ contenders
  const contenders = [
    { id: 'direct', name: 'direct', start: async () => ({ ports: services, pids: () => [], stop: async () => {} }) },
    { id: 'ssh', name: 'ssh -R', start: () => startSsh(children, dir, services, false) },
    { id: 'ssh-tty', name: 'ssh -R tty', optional: true, start: () => startSsh(children, dir, services, true) },
    // The mux contenders pin --data-pool 0 (every visitor on the shared connection); -pool ones the data pool (rathole's model).
    { id: 'wmproxy-bun', name: 'wmproxy-bun', start: () => startTunnel(children, dir, services, 'bun', token, root, 0) },
    { id: 'wmproxy-node', name: 'wmproxy-node', start: () => startTunnel(children, dir, services, 'node', token, root, 0) },
    { id: 'wmproxy-bun-pool', name: 'wmproxy-bun-pool', start: () => startTunnel(children, dir, services, 'bun', token, root, poolSize, maxBusy, promoteBytes) },
    { id: 'wmproxy-node-pool', name: 'wmproxy-node-pool', start: () => startTunnel(children, dir, services, 'node', token, root, poolSize, maxBusy, promoteBytes) },
    { id: 'wmproxy-bun-pool-open', name: 'wmproxy-bun-pool-open', optional: true, start: () => startTunnel(children, dir, services, 'bun', token, root, poolSize, maxBusy, '0') },
    { id: 'wmproxy-node-pool-open', name: 'wmproxy-node-pool-open', optional: true, start: () => startTunnel(children, dir, services, 'node', token, root, poolSize, maxBusy, '0') },
    { id: 'mux-bun', name: 'mux-bun', optional: true, start: () => startMuxRelay(children, services) },
    ...['tcp', 'tls', 'mux'].map((mode) => ({ id: `relay-${mode}`, name: `relay-${mode}`, optional: true, start: () => startRelayPair(children, services, mode) })),
    ...['tcp', 'tls'].map((mode) => ({ id: `relay-${mode}-node`, name: `relay-${mode}-node`, optional: true, start: () => startRelayPair(children, services, mode, 'node') })),
    ...(compare ? ['bun', 'node'].map((runtime) => ({ id: `wmproxy-${runtime}-base`, name: `wmproxy-${runtime}@base`, start: () => startTunnel(children, dir, services, runtime, token, compare) })) : []),
    { id: 'haproxy-pair', name: 'haproxy-pair', optional: true, start: () => startHaproxyPair(children, dir, services) },
  ].filter((c) => (only.length === 0 && !c.optional) || only.includes(c.id));

  const rows = [];
  for (let round = 0; round < config.rounds; round++) {
    // Odd rounds run the contenders in reverse order, so that a drift of the host's
    // speed within a round favours nobody in the paired ratios.
    for (const contender of round % 2 === 0 ? contenders : [...contenders].reverse()) {
      const row = { name: contender.name, round, errors: {} };
      rows.push(row);
      await runContender(contender, row, config, round);
    }
  }
  report(rows, config);
  cleanup();
  process.exit(0);
}

/** Every scenario for one contender, into `row`; a failing scenario leaves its error there. */
async function runContender(contender, row, config, round) {
  const prefix = config.rounds > 1 ? `round ${round + 1}/${config.rounds}, ` : '';
  const progress = (text) => process.stderr.write(`[tunnel bench] ${prefix}${text}\n`);
  let started;
  try {
    started = await contender.start();
  } catch (error) {
    row.errors.start = oneLine(error);
    console.error(`${contender.name}: could not start: ${row.errors.start}`);
    return;
  }
  const { ports } = started;
  const attempt = async (scenario, fn) => {
    try {
      await fn();
    } catch (error) {
      row.errors[scenario] = oneLine(error);
      if (process.env.BENCH_VERBOSE) console.error(`${contender.name} ${scenario}:`, error);
    }
  };
  const phases = new Set(config.phases);
  progress(`${contender.name}: warm-up`);
  await attempt('warmup', async () => {
    if (phases.has('bulk') || phases.has('stall')) {
      await download(ports.bulk, 32 << 20);
      await upload(ports.bulk, 32 << 20);
    }
    if (phases.has('http') || phases.has('ttfb')) await runWrk({ url: `http://127.0.0.1:${ports.http}/`, connections: config.connections, durationSec: 1 });
  });

  const bytes = config.sizeMiB * 1024 * 1024;
  if (phases.has('bulk')) progress(`${contender.name}: ${config.sizeMiB} MiB download, upload x${config.repeat}`);
  // Interleaved repeats, the median shown: other load on a shared host moves single runs by +-30 %.
  const downs = [];
  const ups = [];
  for (let i = 0; i < (phases.has('bulk') ? config.repeat : 0); i++) {
    await attempt('download', async () => downs.push(await transfer(download, ports.bulk, bytes, started.pids)));
    await attempt('upload', async () => ups.push(await transfer(upload, ports.bulk, bytes, started.pids)));
  }
  if (downs.length) Object.assign(row, { downMiBs: median(downs.map((r) => r.mibs)), downCpuPerGiB: median(downs.map((r) => r.cpuPerGiB)) });
  if (ups.length) Object.assign(row, { upMiBs: median(ups.map((r) => r.mibs)), upCpuPerGiB: median(ups.map((r) => r.cpuPerGiB)) });

  if (phases.has('iperf')) progress(`${contender.name}: iperf3 -t ${config.iperfSec}, download (-R) and upload x${config.repeat}`);
  const iperfDowns = [];
  const iperfUps = [];
  for (let i = 0; i < (phases.has('iperf') ? config.repeat : 0); i++) {
    await attempt('iperf-download', async () => iperfDowns.push(await iperf(ports.iperf, true, config.iperfSec, started.pids)));
    await attempt('iperf-upload', async () => iperfUps.push(await iperf(ports.iperf, false, config.iperfSec, started.pids)));
  }
  if (iperfDowns.length) Object.assign(row, { iperfDownMiBs: median(iperfDowns.map((r) => r.mibs)), iperfDownCpuPerGiB: median(iperfDowns.map((r) => r.cpuPerGiB)) });
  if (iperfUps.length) Object.assign(row, { iperfUpMiBs: median(iperfUps.map((r) => r.mibs)), iperfUpCpuPerGiB: median(iperfUps.map((r) => r.cpuPerGiB)) });

  if (phases.has('http')) progress(`${contender.name}: wrk -c${config.connections} ${config.durationSec}s`);
  if (phases.has('http')) await attempt('http', async () => {
    const wrk = await runWrk({ url: `http://127.0.0.1:${ports.http}/`, connections: config.connections, durationSec: config.durationSec, latency: true });
    row.rps = wrk.requestsPerSec;
    row.p50Ms = wrk.latencyP50Ms;
    row.p99Ms = wrk.latencyP99Ms;
    row.httpErrors = wrk.non2xx + wrk.socketErrors;
    if (!(wrk.requests > 0)) throw new Error(`wrk completed no request: ${wrk.raw.trim().split('\n').slice(-3).join(' | ')}`);
  });

  if (phases.has('ttfb')) progress(`${contender.name}: time to first byte x${config.ttfbCount}`);
  if (phases.has('ttfb')) await attempt('ttfb', async () => {
    const times = [];
    for (let i = 0; i < config.ttfbCount; i++) times.push(await firstByteMs(ports.http));
    times.sort((a, b) => a - b);
    row.ttfbP50Ms = percentile(times, 50);
    row.ttfbP99Ms = percentile(times, 99);
  });

  if (phases.has('stall')) progress(`${contender.name}: healthy stream beside a stalled one`);
  if (phases.has('stall')) await attempt('stall', async () => {
    // Unstalled and stalled runs alternate (U S U S U ...); each stalled run is
    // compared with the mean of the unstalled runs on either side of it.
    const stallBytes = config.stallMiB * 1024 * 1024;
    const speed = async () => config.stallMiB / (await download(ports.bulk, stallBytes)).seconds;
    const unstalled = [await speed()];
    const stalledRuns = [];
    for (let i = 0; i < config.repeat; i++) {
      const stalled = await stalledDownload(ports.bulk, 64 * 1024 ** 3);
      try {
        await sleep(1000); // every buffer on the stalled stream's path fills
        stalledRuns.push(await speed());
      } finally {
        stalled.destroy();
      }
      await sleep(300);
      unstalled.push(await speed());
    }
    const ratios = stalledRuns.map((mibs, i) => mibs / ((unstalled[i] + unstalled[i + 1]) / 2));
    row.stalledMiBs = median(stalledRuns);
    row.unstalledMiBs = median(unstalled);
    row.healthyPct = median(ratios) * 100;
  });

  row.peakRssMiB = started.pids().length ? peakOf(started.pids()) : undefined;
  await started.stop();
  if (!phases.has('idle')) return;

  // On fresh processes: the garbage of the transfers above, collected (or not)
  // during the measurement, would move RSS by more than 1,000 streams hold.
  progress(`${contender.name}: ${config.idleStreams} idle streams (fresh processes)`);
  let fresh;
  try {
    fresh = await contender.start();
  } catch (error) {
    row.errors.idle = oneLine(error);
    return;
  }
  try {
    const port = fresh.ports.bulk;
    const warm = await openIdle(port, config.idleWarm);
    for (const socket of warm) socket.destroy();
    const before = await settledRss(fresh);
    const sockets = await openIdle(port, config.idleStreams);
    try {
      const after = await settledRss(fresh);
      const perStream = (name) => (after[name] === undefined || before[name] === undefined ? undefined : ((after[name] - before[name]) * 1024) / config.idleStreams);
      row.rssBeforeMiB = before.all;
      row.rssIdleMiB = after.all;
      row.idleKiBPerStream = perStream('all');
      // Which side holds it: the public (server) side or the intranet (client) side.
      row.idleKiBServer = perStream('server');
      row.idleKiBClient = perStream('client');
      // Every idle stream must still be usable: one more round trip on a sample.
      await Promise.all(sockets.filter((_, i) => i % 50 === 0).map((socket) => roundTrip(socket)));
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  } catch (error) {
    row.errors.idle = oneLine(error);
  } finally {
    await fresh.stop();
  }
}

// ---------------------------------------------------------------- contenders

/**
 * A private sshd on a loopback port and `ssh -N -R` for both services. With
 * `tty`, `ssh -tt ... sleep` instead: OpenSSH turns TCP_NODELAY on for its
 * connection only when a session is interactive, so `-N` leaves Nagle on
 * and a lone small reply waits for a delayed ACK (~40 ms of TTFB).
 */
async function startSsh(children, dir, services, tty) {
  const sshDir = mkdtempSync(join(dir, 'ssh-'));
  for (const name of ['host_key', 'user_key']) {
    const made = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sshDir, name)], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`ssh-keygen: ${made.stderr}`);
  }
  writeFileSync(join(sshDir, 'authorized_keys'), readFileSync(join(sshDir, 'user_key.pub')), { mode: 0o600 });
  // sshd running as root chroots its pre-auth child into /run/sshd.
  if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
  const sshdPort = await freePort();
  const conf = join(sshDir, 'sshd_config');
  writeFileSync(
    conf,
    `ListenAddress 127.0.0.1
Port ${sshdPort}
HostKey ${join(sshDir, 'host_key')}
PidFile none
AuthorizedKeysFile ${join(sshDir, 'authorized_keys')}
PermitRootLogin yes
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
GatewayPorts no
LogLevel ERROR
`,
  );
  const sshd = '/usr/sbin/sshd';
  const test = spawnSync(sshd, ['-t', '-f', conf], { encoding: 'utf8' });
  if (test.status !== 0) throw new Error(`sshd -t: ${test.stderr.trim()}`);
  const server = children.start(sshd, ['-D', '-e', '-f', conf], 'sshd');
  await waitPort(sshdPort);
  const ports = { bulk: await freePort(), http: await freePort(), iperf: await freePort() };
  const client = children.start(
    'ssh',
    [
      ...(tty ? ['-tt'] : ['-N']), '-F', '/dev/null', '-i', join(sshDir, 'user_key'), '-p', String(sshdPort),
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
      '-o', 'ExitOnForwardFailure=yes', '-o', 'Ciphers=chacha20-poly1305@openssh.com', '-o', 'LogLevel=ERROR',
      '-R', `127.0.0.1:${ports.bulk}:127.0.0.1:${services.bulk}`,
      '-R', `127.0.0.1:${ports.http}:127.0.0.1:${services.http}`,
      '-R', `127.0.0.1:${ports.iperf}:127.0.0.1:${services.iperf}`,
      `${userInfo().username}@127.0.0.1`,
      ...(tty ? ['sleep', '86400'] : []),
    ],
    'ssh',
  );
  await ready(ports, [server, client]);
  // sshd's per-connection processes (privileged monitor + user session) are its children.
  return contenderHandle(ports, server, client);
}

/** What the scenarios get from a started contender: its public ports, its processes by side, and a stop. */
function contenderHandle(ports, server, client, others = []) {
  return {
    ports,
    pids: () => [...processTree(server.pid), ...processTree(client.pid)],
    sides: () => ({ server: processTree(server.pid), client: processTree(client.pid) }),
    stop: async () => {
      for (const child of [client, ...others, server]) await stopTree(child);
    },
  };
}

/** `wmproxy tunnel server` + `wmproxy tunnel client` (TLS, fingerprint pinned) on `runtime`. */
async function startTunnel(children, dir, services, runtime, token, tree = root, dataPool = undefined, maxBusy = undefined, promoteBytes = undefined) {
  const command = runtime === 'bun' ? join(root, 'node_modules/.bin/bun') : process.execPath;
  const cli = join(tree, 'cli/bin/run.js');
  const control = await freePort();
  const ports = { bulk: await freePort(), http: await freePort(), iperf: await freePort() };
  const stateDir = mkdtempSync(join(dir, `tunnel-${runtime}-`));
  const server = children.start(
    command,
    [cli, 'tunnel', 'server', '--listen', `127.0.0.1:${control}`, '--token', token, '--state-dir', stateDir, '--allow-ports', String(ports.bulk), '--allow-ports', String(ports.http), '--allow-ports', String(ports.iperf),
      ...(dataPool === undefined ? [] : ['--data-pool', String(dataPool)]),
      ...(maxBusy === undefined ? [] : ['--data-max-busy', String(maxBusy)]),
      ...(promoteBytes === undefined ? [] : ['--data-promote-bytes', String(promoteBytes)])],
    `tunnel-server-${runtime}`,
    { stdout: true },
  );
  const fingerprint = await printedFingerprint(server);
  await waitPort(control);
  const client = children.start(
    command,
    [cli, 'tunnel', 'client', '--server', `127.0.0.1:${control}`, '--token', token, '--fingerprint', fingerprint,
      '--map', `bulk=tcp:127.0.0.1:${services.bulk}:${ports.bulk}`, '--map', `http=tcp:127.0.0.1:${services.http}:${ports.http}`,
      '--map', `iperf=tcp:127.0.0.1:${services.iperf}:${ports.iperf}`],
    `tunnel-client-${runtime}`,
    { stdout: true },
  );
  await ready(ports, [server, client]);
  return contenderHandle(ports, server, client);
}

/** bench/lib/mux-relay.ts: the tunnel's Mux over TLS between two Bun processes, without the CLI. */
async function startMuxRelay(children, services) {
  const bun = join(root, 'node_modules/.bin/bun');
  const relay = join(root, 'bench/lib/mux-relay.ts');
  const ports = { bulk: await freePort(), http: await freePort(), iperf: await freePort() };
  const pair = [];
  for (const name of ['bulk', 'http', 'iperf']) {
    const [pub, local] = [ports[name], services[name]];
    const server = children.start(bun, [relay, 'server', String(pub)], `mux-server-${name}`, { stdout: true });
    const control = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mux relay did not start: ${server.output}`)), 10_000);
      server.stdout.on('data', () => {
        const match = /"control":(\d+)/.exec(server.output);
        if (match) (clearTimeout(timer), resolve(Number(match[1])));
      });
    });
    const client = children.start(bun, [relay, 'client', String(control), String(local)], `mux-client-${name}`, { stdout: true });
    pair.push(server, client);
  }
  await ready(ports, pair);
  // Memory and CPU are the bulk mapping's pair's: every scenario but HTTP goes through it.
  return contenderHandle(ports, pair[0], pair[1], pair.slice(2));
}

/**
 * bench/lib/relay-pair.ts: the least two-hop relay on Bun's sockets (`mode` tcp, tls or mux), the ceiling of any JS
 * tunnel; on `node`, bench/lib/relay-pair-node.mjs (tcp or tls), the same on node:net and node:tls.
 */
async function startRelayPair(children, services, mode, runtime = 'bun') {
  const command = runtime === 'node' ? process.execPath : join(root, 'node_modules/.bin/bun');
  const script = join(root, runtime === 'node' ? 'bench/lib/relay-pair-node.mjs' : 'bench/lib/relay-pair.ts');
  const ports = { bulk: await freePort(), http: await freePort(), iperf: await freePort() };
  const pair = [];
  for (const name of ['bulk', 'http', 'iperf']) {
    const far = children.start(command, [script, 'far', mode, String(services[name])], `relay-${mode}-${runtime}-far-${name}`, { stdout: true });
    const control = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`relay did not start: ${far.output}`)), 10_000);
      far.stdout.on('data', () => {
        const match = /"control":(\d+)/.exec(far.output);
        if (match) (clearTimeout(timer), resolve(Number(match[1])));
      });
    });
    const near = children.start(command, [script, 'near', mode, String(control), String(ports[name])], `relay-${mode}-${runtime}-near-${name}`, { stdout: true });
    pair.push(near, far);
  }
  await ready(ports, pair);
  // CPU is both pairs' (each phase uses one, the other idles).
  const handle = contenderHandle(ports, pair[0], pair[1], pair.slice(2));
  return { ...handle, pids: () => pair.flatMap((child) => processTree(child.pid)), sides: undefined };
}

/**
 * Two HAProxy processes (one thread each, mode tcp) with TLS between them, one
 * connection per visitor: a native two-hop relay, the ceiling of any relay
 * on this host (C, no JS), beside the JS ones.
 */
async function startHaproxyPair(children, dir, services) {
  const haDir = mkdtempSync(join(dir, 'haproxy-'));
  const pem = join(haDir, 'cert.pem');
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=relay', '-days', '1', '-keyout', pem, '-out', join(haDir, 'crt.pem')], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`openssl: ${made.stderr}`);
  writeFileSync(pem, readFileSync(pem, 'utf8') + readFileSync(join(haDir, 'crt.pem'), 'utf8'));
  const ports = { bulk: await freePort(), http: await freePort(), iperf: await freePort() };
  const control = { bulk: await freePort(), http: await freePort(), iperf: await freePort() };
  const global = 'global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 600s\n  timeout server 600s\n';
  const near = join(haDir, 'near.cfg');
  const far = join(haDir, 'far.cfg');
  writeFileSync(near, global + ['bulk', 'http', 'iperf'].map((n) => `listen ${n}\n  bind 127.0.0.1:${ports[n]}\n  server s 127.0.0.1:${control[n]} ssl verify none\n`).join(''));
  writeFileSync(far, global + ['bulk', 'http', 'iperf'].map((n) => `listen ${n}\n  bind 127.0.0.1:${control[n]} ssl crt ${pem}\n  server s 127.0.0.1:${services[n]}\n`).join(''));
  const farChild = children.start('haproxy', ['-db', '-f', far], 'haproxy-far');
  const nearChild = children.start('haproxy', ['-db', '-f', near], 'haproxy-near');
  await ready(ports, [farChild, nearChild]);
  return contenderHandle(ports, nearChild, farChild);
}

/** The SHA-256 fingerprint the tunnel server prints at start (hex, colon-separated hex, or SHA256:base64). */
function printedFingerprint(child) {
  const patterns = [/\b(SHA256:[A-Za-z0-9+/=]{43,44})/, /\b((?:[0-9a-f]{2}:){31}[0-9a-f]{2})\b/i, /\b([0-9a-f]{64})\b/i];
  return new Promise((resolve, reject) => {
    const look = () => {
      for (const pattern of patterns) {
        const match = pattern.exec(child.output);
        if (match) return finish(undefined, match[1]);
      }
    };
    const timer = setTimeout(() => finish(new Error(`no fingerprint printed within 20 s: ${child.output.trim().slice(-600)}`)), 20_000);
    const exited = () => finish(new Error(`tunnel server exited (${child.exitCode ?? child.signalCode}): ${child.output.trim().slice(-600)}`));
    function finish(error, value) {
      clearTimeout(timer);
      child.stdout.off('data', look);
      child.stderr.off('data', look);
      child.off('exit', exited);
      if (error) reject(error);
      else resolve(value);
    }
    child.stdout.on('data', look);
    child.stderr.on('data', look);
    child.once('exit', exited);
    look();
  });
}

/** Resolve once both mappings carry a round trip end to end (30 s at most). */
async function ready(ports, processes) {
  const deadline = Date.now() + 30_000;
  let last;
  for (;;) {
    for (const child of processes) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${child.spawnfile} exited (${child.exitCode ?? child.signalCode}): ${child.output.trim().slice(-600)}`);
    }
    try {
      (await ping(ports.bulk, 2000)).destroy();
      await firstByteMs(ports.http, 2000);
      return;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`mappings not ready after 30 s (${oneLine(last)}): ${processes.map((c) => c.output.trim().slice(-300)).join(' | ')}`);
    await sleep(100);
  }
}

function stopChild(child, timeoutMs = 3000) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => (clearTimeout(timer), resolve()));
    child.kill('SIGTERM');
  });
}

/** Stop a process and its descendants (sshd's per-connection processes outlive SIGTERM to the listener). */
async function stopTree(child) {
  const pids = processTree(child.pid);
  await stopChild(child);
  for (const pid of pids.slice(1)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
}

// ---------------------------------------------------------------- visitors

/** One download or upload: MiB/s, and CPU seconds per GiB of the tunnel's processes (undefined for direct). */
async function transfer(direction, port, bytes, pids) {
  const before = pids().length ? cpuSecondsOf(pids()) : undefined;
  const { seconds } = await direction(port, bytes, 120_000);
  const mib = bytes / (1024 * 1024);
  return { mibs: mib / seconds, cpuPerGiB: before === undefined ? undefined : ((cpuSecondsOf(pids()) - before) * 1024) / mib };
}

/**
 * One iperf3 test of `seconds` through `port` (one TCP stream; `reverse`: the service sends, so the visitor
 * downloads): MiB/s received, and CPU seconds per GiB of the tunnel's processes (undefined for direct).
 */
async function iperf(port, reverse, seconds, pids) {
  // A mapping's third port may open a moment after the two that ready() checks (a connection to iperf3's server
  // that carries no test would upset its state, so it is not probed): try again, at most twice.
  for (let attempt = 1; ; attempt++) {
    try {
      return await iperfOnce(port, reverse, seconds, pids);
    } catch (error) {
      if (attempt === 3) throw error;
      await sleep(1000);
    }
  }
}

async function iperfOnce(port, reverse, seconds, pids) {
  const before = pids().length ? cpuSecondsOf(pids()) : undefined;
  const child = spawn('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J', ...(reverse ? ['-R'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  child.stderr.on('data', (chunk) => (out += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
  const code = await new Promise((resolve) => child.once('close', resolve));
  clearTimeout(timer);
  let result;
  try {
    result = JSON.parse(out);
  } catch {
    throw new Error(`iperf3 exited ${code}: ${oneLine(out.slice(-400))}`);
  }
  if (result.error) throw new Error(`iperf3: ${result.error}`);
  const received = result.end?.sum_received;
  if (!(received?.bytes > 0)) throw new Error('iperf3 received nothing');
  const mib = received.bytes / (1024 * 1024);
  return { mibs: mib / received.seconds, cpuPerGiB: before === undefined ? undefined : ((cpuSecondsOf(pids()) - before) * 1024) / mib };
}

const GET = Buffer.from('GET / HTTP/1.1\r\nHost: tunnel.bench\r\nUser-Agent: wmproxy-bench\r\n\r\n', 'latin1');

/** Connect, send one GET, and time the first response byte (ms). */
function firstByteMs(port, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`no first byte through ${port} within ${timeoutMs} ms`))), timeoutMs);
    socket.once('connect', () => socket.write(GET));
    socket.once('data', () => {
      const ms = performance.now() - start;
      clearTimeout(timer);
      socket.destroy();
      resolve(ms);
    });
    socket.once('error', (error) => (clearTimeout(timer), reject(error)));
    socket.once('close', () => (clearTimeout(timer), reject(new Error(`closed before the first byte through ${port}`))));
  });
}

/** `count` streams that each completed a ping round trip, opened 100 at a time. */
async function openIdle(port, count) {
  const sockets = [];
  try {
    for (let i = 0; i < count; i += 100) {
      const batch = await Promise.all(Array.from({ length: Math.min(100, count - i) }, () => ping(port)));
      for (const socket of batch) socket.on('error', () => {});
      sockets.push(...batch);
    }
  } catch (error) {
    for (const socket of sockets) socket.destroy();
    throw new Error(`opened ${sockets.length} of ${count} idle streams: ${oneLine(error)}`);
  }
  return sockets;
}

/** One more ping on an open stream. */
function roundTrip(socket, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('an idle stream stopped answering')), timeoutMs);
    socket.once('data', () => (clearTimeout(timer), resolve()));
    socket.write('P');
  });
}

/**
 * RSS of the tunnel's processes after 1 s of quiet: the median of 5 samples
 * over the next second, for both sides together (`all`) and each side; in MiB,
 * undefined without processes.
 */
async function settledRss(started) {
  await sleep(1000);
  const groups = () => ({ all: started.pids(), ...(started.sides?.() ?? {}) });
  const samples = {};
  for (let i = 0; i < 5; i++) {
    for (const [name, pids] of Object.entries(groups())) (samples[name] ??= []).push(rssMiB(pids));
    await sleep(250);
  }
  const out = {};
  for (const [name, values] of Object.entries(samples)) out[name] = values.includes(undefined) ? undefined : median(values);
  return out;
}

/** Peak RSS (VmHWM) of `pids` together, in MiB. */
function peakOf(pids) {
  let kib = 0;
  for (const pid of pids) {
    try {
      kib += Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {}
  }
  return kib / 1024;
}

// ---------------------------------------------------------------- report

/**
 * One row per contender: ratios are taken within each round (against direct
 * and ssh -R of the same round), then every figure is the median over rounds.
 */
function aggregate(rows) {
  const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? a / b : undefined);
  for (const row of rows) {
    const direct = rows.find((r) => r.name === 'direct' && r.round === row.round);
    const ssh = rows.find((r) => r.name === 'ssh -R' && r.round === row.round);
    row.downXDirect = ratio(row.downMiBs, direct?.downMiBs);
    row.downXSsh = ratio(row.downMiBs, ssh?.downMiBs);
    row.upXDirect = ratio(row.upMiBs, direct?.upMiBs);
    row.upXSsh = ratio(row.upMiBs, ssh?.upMiBs);
    row.rpsXSsh = ratio(row.rps, ssh?.rps);
    row.iperfDownXDirect = ratio(row.iperfDownMiBs, direct?.iperfDownMiBs);
    row.iperfDownXSsh = ratio(row.iperfDownMiBs, ssh?.iperfDownMiBs);
    row.iperfUpXDirect = ratio(row.iperfUpMiBs, direct?.iperfUpMiBs);
    row.iperfUpXSsh = ratio(row.iperfUpMiBs, ssh?.iperfUpMiBs);
  }
  const names = [...new Set(rows.map((r) => r.name))];
  return names.map((name) => {
    const same = rows.filter((r) => r.name === name);
    const out = { name, rounds: same.length, errors: Object.assign({}, ...same.map((r) => r.errors)) };
    for (const key of new Set(same.flatMap((r) => Object.keys(r)))) {
      if (key === 'round' || key === 'name' || key === 'errors') continue;
      const values = same.map((r) => r[key]).filter((v) => typeof v === 'number' && Number.isFinite(v));
      if (values.length > 0) out[key] = median(values);
    }
    return out;
  });
}

function report(rows, config) {
  const fmt = (n, digits = 0) => (typeof n === 'number' && Number.isFinite(n) ? n.toFixed(digits) : '-');
  const results = aggregate(rows);
  const mib = config.sizeMiB >= 1024 ? `${config.sizeMiB / 1024} GiB` : `${config.sizeMiB} MiB`;
  console.log(
    `\nintranet tunnel, ${config.quick ? 'QUICK, ' : ''}${mib} per transfer, wrk -t2 -c${config.connections} -d${config.durationSec}s, ` +
      `TTFB over ${config.ttfbCount} new connections, ${config.idleStreams} idle streams, ` +
      `${config.rounds > 1 ? `median of ${config.rounds} rounds (ratios paired within a round), ` : ''}load ${loadavg()[0].toFixed(1)} (was ${config.loadAtStart.toFixed(1)}), ${new Date().toISOString()}`,
  );
  const busiest = Math.max(config.loadAtStart, ...loadavg().slice(0, 2));
  if (busiest > cpus().length) {
    console.log(`WARNING: the host's load average reached ${busiest.toFixed(1)} on ${cpus().length} CPUs during the run: other processes competed for the CPU, so single figures are unreliable (compare the paired ratios, or run again with --rounds 3 on a quiet host)`);
  }
  console.log('                     download MiB/s (x direct, x ssh) [cpu s/GiB]     upload MiB/s (x direct, x ssh) [cpu s/GiB]');
  for (const row of results) {
    console.log(
      `${row.name.padEnd(16)} ${fmt(row.downMiBs).padStart(9)} (${fmt(row.downXDirect, 2).padStart(5)}, ${fmt(row.downXSsh, 2).padStart(5)}) [${fmt(row.downCpuPerGiB, 2).padStart(5)}]` +
        `        ${fmt(row.upMiBs).padStart(9)} (${fmt(row.upXDirect, 2).padStart(5)}, ${fmt(row.upXSsh, 2).padStart(5)}) [${fmt(row.upCpuPerGiB, 2).padStart(5)}]`,
    );
  }
  if (results.some((row) => row.iperfDownMiBs !== undefined || row.iperfUpMiBs !== undefined)) {
    console.log(`\niperf3 -t ${config.iperfSec}     download (-R) MiB/s (x direct, x ssh) [cpu s/GiB]  upload MiB/s (x direct, x ssh) [cpu s/GiB]`);
    for (const row of results) {
      console.log(
        `${row.name.padEnd(16)} ${fmt(row.iperfDownMiBs).padStart(9)} (${fmt(row.iperfDownXDirect, 2).padStart(5)}, ${fmt(row.iperfDownXSsh, 2).padStart(5)}) [${fmt(row.iperfDownCpuPerGiB, 2).padStart(5)}]` +
          `        ${fmt(row.iperfUpMiBs).padStart(9)} (${fmt(row.iperfUpXDirect, 2).padStart(5)}, ${fmt(row.iperfUpXSsh, 2).padStart(5)}) [${fmt(row.iperfUpCpuPerGiB, 2).padStart(5)}]`,
      );
    }
  }
  console.log('\n                    req/s  x ssh  p50 ms  p99 ms  errors   TTFB p50 ms  p99 ms   healthy MiB/s stalled/unstalled    %   idle KiB/stream (server + client)  RSS MiB idle before/after, peak in 1-4');
  for (const row of results) {
    console.log(
      `${row.name.padEnd(16)} ${fmt(row.rps).padStart(8)} ${fmt(row.rpsXSsh, 2).padStart(6)} ${fmt(row.p50Ms, 2).padStart(7)} ${fmt(row.p99Ms, 2).padStart(7)} ${String(row.httpErrors ?? '-').padStart(7)}` +
        `   ${fmt(row.ttfbP50Ms, 2).padStart(11)} ${fmt(row.ttfbP99Ms, 2).padStart(7)}   ${fmt(row.stalledMiBs).padStart(13)} ${fmt(row.unstalledMiBs).padStart(9)}${''.padStart(10)} ${fmt(row.healthyPct).padStart(4)}` +
        `   ${fmt(row.idleKiBPerStream, 1).padStart(5)} (${fmt(row.idleKiBServer, 1).padStart(4)} + ${fmt(row.idleKiBClient, 1).padStart(4)})  ${fmt(row.rssBeforeMiB, 1)}/${fmt(row.rssIdleMiB, 1)}/${fmt(row.peakRssMiB, 1)}`,
    );
  }
  const failures = results.flatMap((row) => Object.entries(row.errors).map(([scenario, error]) => `  ${row.name} ${scenario}: ${error}`));
  if (failures.length > 0) console.log(`\nscenarios that failed (shown as -):\n${failures.join('\n')}`);

  const targets = [];
  for (const row of results.filter((r) => r.name.startsWith('wmproxy'))) {
    const check = (what, value, goal, pass) => targets.push({ contender: row.name, target: what, value, goal, pass: value === undefined ? null : pass(value) });
    check('download >= 2x ssh -R', row.downXSsh, 2, (v) => v >= 2);
    check('download >= 0.5x direct', row.downXDirect, 0.5, (v) => v >= 0.5);
    check('upload >= 2x ssh -R', row.upXSsh, 2, (v) => v >= 2);
    check('upload >= 0.5x direct', row.upXDirect, 0.5, (v) => v >= 0.5);
    check('HTTP req/s >= 3x ssh -R', row.rpsXSsh, 3, (v) => v >= 3);
    check('iperf3 download >= 2x ssh -R', row.iperfDownXSsh, 2, (v) => v >= 2);
    check('iperf3 upload >= 2x ssh -R', row.iperfUpXSsh, 2, (v) => v >= 2);
    check('healthy stream >= 90 % beside a stalled one', row.healthyPct, 90, (v) => v >= 90);
    check('<= 10 KiB per idle stream', row.idleKiBPerStream, 10, (v) => v <= 10);
  }
  if (targets.length > 0) {
    console.log('\ntargets (TLS on)');
    for (const t of targets) {
      const verdict = t.pass === null ? 'n/a ' : t.pass ? 'PASS' : 'FAIL';
      console.log(`  ${verdict}  ${t.contender.padEnd(13)} ${t.target.padEnd(44)} ${fmt(t.value, t.value !== undefined && Math.abs(t.value) < 20 ? 2 : 0)}`);
    }
  }
  console.log(JSON.stringify({ bench: 'tunnel', date: new Date().toISOString(), config, load: loadavg(), results, targets, rounds: config.rounds > 1 ? rows : undefined }));
}

function oneLine(error) {
  return String(error?.message ?? error).replace(/\s+/g, ' ').slice(0, 400);
}

// 1,000 idle streams cost a visitor socket here, and two sockets in the tunnel
// client and the server each: raise the soft fd limit once, for every child too.
if (!process.env.WMPROXY_BENCH_NOFILE) {
  const soft = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim());
  if (Number.isFinite(soft) && soft < 16384) {
    const script = 'h=$(ulimit -Hn); [ "$h" = unlimited ] && h=65536; ulimit -n "$h" && exec "$@"';
    const child = spawn('sh', ['-c', script, 'sh', process.execPath, self, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, WMPROXY_BENCH_NOFILE: '1' },
    });
    for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
    child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
  }
}
if (process.env.WMPROXY_BENCH_NOFILE || Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim()) >= 16384) {
  await main();
}
