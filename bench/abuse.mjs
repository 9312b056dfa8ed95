#!/usr/bin/env node
// Abuse benchmark: wmproxy (Bun and Node), nginx and HAProxy, each in turn in
// front of the same two backends, with the same connection limits and client
// timeouts, under four attacks, one after the other, while a well-behaved
// client measures its latency:
//   slowloris  COUNT connections dribbling a request head (a header line every 2 s), never finishing it
//   slow-body  COUNT POSTs with a complete head and a body dribbled 16 bytes every 2 s
//   mid-body   COUNT POSTs sending half of a 64 KiB body then closing (half) or resetting (half),
//              spread over the attack, 256 at a time at most
//   flood      COUNT connections opened as fast as possible and left silent
// The abusers come from --ips loopback addresses other than the client's
// 127.0.0.1 (so a per-IP limit tells them apart) and run in their own
// process, as does the client (bench/lib/abuser.mjs, bench/lib/probe-client.mjs).
// Each attack lasts --abuse seconds; then the abusers go silent but keep
// their connections open: the proxy's own timeouts must free them. The
// reverse proxy is measured with --modes reverse, the forward proxy (HTTP
// absolute-form requests to one backend) with --modes forward; nginx and
// HAProxy take absolute-form requests too and pass them to the same backend.
//
// Per proxy and attack it reports the client's p99 (keep-alive requests at
// --rate/s, unloaded and during the attack; requests on a new connection at
// --new-rate/s, during the attack), the p99 of requests sent straight to a
// backend in the same seconds ("direct": what the shared machine itself did),
// peak FDs and RSS of the proxy processes (/proc), the time from the end of
// the attack until FDs and RSS are back within a margin of their level before
// it (FDs: 48 or 10 %; RSS: 8 MiB or 10 %; bounded by --timeout plus 4 s, ">"
// when not reached), the RSS still held then over the level before, how many
// abusive connections were still open then, and how many times a healthy
// backend was ejected or marked down (wmproxy's health events, HAProxy's
// "is DOWN" lines, nginx's error log).
// Targets: client p99 under 2x its unloaded p99, no healthy backend ejected,
// FDs and RSS back within the configured timeouts.
//
// Equivalent settings (the configs are written to a temp dir):
//   limit         wmproxy                     nginx                                  HAProxy
//   total         max_connections --max       worker_connections 2x --max (it also   frontend maxconn --max
//                                             counts upstream connections)
//   per client IP max_connections_per_ip      limit_conn (counts a connection once   stick-table conn_cur +
//                 --per-ip (503 answered)     its head is read: 503)                 tcp-request connection reject
//   timeouts      client header/body,         client_header_timeout,                 timeout http-request, client,
//                 keep-alive --timeout        client_body_timeout, keepalive_timeout  http-keep-alive --timeout
//
//   node bench/abuse.mjs [--count 10000] [--ips 50] [--max 4096] [--per-ip 100] [--timeout 8]
//        [--base 8] [--abuse 12] [--rate 200] [--new-rate 20] [--only wmproxy-bun,wmproxy-node,nginx,haproxy]
//        [--modes reverse,forward] [--attacks slowloris,slow-body,mid-body,flood] [--json]
// Needs: `npx tsc -b` (Node runs dist/), nginx, haproxy. Loopback only; about
// 2 min per proxy and mode at the defaults. BENCH_VERBOSE=1 shows the proxies' stderr.
import { fork, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sampler } from './lib/procstat.mjs';
import { Children, argument, freePort, sleep, stop, waitPort } from './reverse-common.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => argument(args, name, fallback);
const COUNT = Number(arg('count', '10000'));
const IPS = Number(arg('ips', '50'));
const MAX = Number(arg('max', '4096'));
const PER_IP = Number(arg('per-ip', '100'));
const TIMEOUT_S = Number(arg('timeout', '8'));
const BASE_S = Number(arg('base', '8'));
const ABUSE_S = Number(arg('abuse', '12'));
const RATE = Number(arg('rate', '200'));
const NEW_RATE = Number(arg('new-rate', '20'));
const ONLY = arg('only', 'wmproxy-bun,wmproxy-node,nginx,haproxy').split(',').filter(Boolean);
const MODES = arg('modes', 'reverse,forward').split(',').filter(Boolean);
const ATTACKS = arg('attacks', 'slowloris,slow-body,mid-body,flood').split(',').filter(Boolean);
const RECOVERY_BOUND_MS = (TIMEOUT_S + 4) * 1000;
if (IPS < 1 || IPS > 250) throw new Error('--ips must be from 1 to 250');
if (ONLY.includes('wmproxy-node') && !existsSync(join(root, 'packages/reverse/dist/src/index.js'))) {
  console.error('abuse bench: run `npx tsc -b` first (Node runs the compiled dist/)');
  process.exit(1);
}

const BUN = join(root, 'node_modules/.bin/bun');
const TARGET = join(root, 'bench/lib/wmproxy-target.mjs');
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-abuse-'));
chmodSync(dir, 0o777); // nginx workers run as nobody when started as root
const children = new Children();
process.on('exit', () => {
  children.killAll();
  rmSync(dir, { recursive: true, force: true });
});
process.on('SIGINT', () => process.exit(130));

/**
 * Start `command` with its soft FD limit raised to the hard limit (the FD
 * limit of this machine is 20 000; Bun and Node raise their own soft limit,
 * nginx and HAProxy may not), standard output and error piped.
 */
function startRaised(command, argv, name) {
  const child = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"', command, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], cwd: root });
  child.stdout.resume();
  child.errorTail = '';
  child.stderr.on('data', (chunk) => {
    child.errorTail = (child.errorTail + chunk).slice(-4096);
    if (process.env.BENCH_VERBOSE) process.stderr.write(`[${name}] ${chunk}`);
  });
  children.live.add(child);
  child.once('exit', () => children.live.delete(child));
  return child;
}

/** Lines a child writes to stderr (or a file it logs to), with the time they were read. */
function collectLines(stream, into) {
  let rest = '';
  stream.on('data', (chunk) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop();
    const at = performance.now();
    for (const line of lines) into.push({ at, line });
  });
}

// ---------------------------------------------------------------- contenders
/** Each returns {child, lines, ejections()} listening on `port`. */
const CONTENDERS = {
  'wmproxy-bun': (ctx) => wmproxy(BUN, ctx),
  'wmproxy-node': (ctx) => wmproxy(process.execPath, ctx),
  nginx: (ctx) => nginx(ctx),
  haproxy: (ctx) => haproxy(ctx),
};
const EJECTED = {
  wmproxy: /^eject |^health .*"to":"unhealthy"/,
  nginx: /upstream server temporarily disabled|no live upstreams/,
  haproxy: /is DOWN/,
};

function wmproxy(command, { mode, port, backends }) {
  // Warnings and errors, as in production (nginx logs at warn here too); health events come on stdout.
  const options = { mode, port, backends, timeoutMs: TIMEOUT_S * 1000, maxConnections: MAX, maxConnectionsPerIp: PER_IP, logLevel: 'warn' };
  const child = startRaised(command, [TARGET, JSON.stringify(options)], `wmproxy-${mode}`);
  const lines = [];
  collectLines(child.stdout, lines);
  return { child, lines, ejectedPattern: EJECTED.wmproxy };
}

function nginx({ mode, port, backends }) {
  const errorLog = join(dir, `nginx-${port}.err`);
  const servers = mode === 'reverse' ? backends.map((b) => `server 127.0.0.1:${b} max_fails=3 fail_timeout=10s;`).join(' ') : `server 127.0.0.1:${backends[0]};`;
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((name) => `${name}_temp_path ${dir}/${name}-${port};`).join(' ');
  const conf = join(dir, `nginx-${port}.conf`);
  writeFileSync(
    conf,
    `worker_processes 1; daemon off; pid ${dir}/nginx-${port}.pid; error_log ${errorLog} warn;
worker_rlimit_nofile 20000;
events { worker_connections ${2 * MAX}; }
http { access_log off; ${temp}
  limit_conn_zone $binary_remote_addr zone=perip:10m;
  limit_conn perip ${PER_IP};
  client_header_timeout ${TIMEOUT_S}s; client_body_timeout ${TIMEOUT_S}s; keepalive_timeout ${TIMEOUT_S}s; send_timeout ${TIMEOUT_S}s;
  keepalive_requests 1000000;
  upstream app { ${servers} keepalive 64; }
  server { listen 127.0.0.1:${port} backlog=4096;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_connect_timeout 5s; proxy_read_timeout ${TIMEOUT_S}s; proxy_send_timeout ${TIMEOUT_S}s; } } }
`,
  );
  const child = startRaised('nginx', ['-c', conf, '-p', dir, '-e', errorLog], 'nginx');
  const lines = [];
  // nginx writes warnings to its error log; read it as it grows.
  let offset = 0;
  const timer = setInterval(() => {
    try {
      const text = readFileSync(errorLog, 'latin1');
      const fresh = text.slice(offset);
      const complete = fresh.lastIndexOf('\n') + 1;
      offset += complete;
      const at = performance.now();
      for (const line of fresh.slice(0, complete).split('\n').filter(Boolean)) lines.push({ at, line });
    } catch {}
  }, 250);
  child.once('exit', () => clearInterval(timer));
  return { child, lines, ejectedPattern: EJECTED.nginx };
}

function haproxy({ mode, port, backends }) {
  const cfg = join(dir, `haproxy-${port}.cfg`);
  const servers = mode === 'reverse' ? backends.map((b, i) => `  server b${i} 127.0.0.1:${b} check inter 1s fall 3 rise 2`) : [`  server b0 127.0.0.1:${backends[0]}`];
  writeFileSync(
    cfg,
    [
      'global',
      '  nbthread 1',
      `  maxconn ${2 * MAX + 1000}`,
      'defaults',
      '  mode http',
      '  timeout connect 5s',
      `  timeout client ${TIMEOUT_S}s`,
      `  timeout server ${TIMEOUT_S}s`,
      `  timeout http-request ${TIMEOUT_S}s`,
      `  timeout http-keep-alive ${TIMEOUT_S}s`,
      '  timeout check 1s',
      'frontend fe',
      `  bind 127.0.0.1:${port}`,
      `  maxconn ${MAX}`,
      '  stick-table type ip size 100k expire 30s store conn_cur',
      '  tcp-request connection track-sc0 src',
      `  tcp-request connection reject if { sc0_conn_cur gt ${PER_IP} }`,
      '  default_backend app',
      'backend app',
      '  balance roundrobin',
      '  http-reuse safe',
      ...(mode === 'reverse' ? ['  option httpchk GET /health'] : []),
      ...servers,
      '',
    ].join('\n'),
  );
  const child = startRaised('haproxy', ['-db', '-f', cfg], 'haproxy');
  const lines = [];
  collectLines(child.stderr, lines);
  return { child, lines, ejectedPattern: EJECTED.haproxy };
}

// ---------------------------------------------------------------- helpers
/** A forked helper and a way to ask it something: `ask(message, replyType)`. */
function helper(file) {
  const child = fork(join(root, 'bench/lib', file), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map();
  child.on('message', (message) => {
    const resolve = waiting.get(message.type);
    waiting.delete(message.type);
    resolve?.(message);
  });
  return {
    child,
    send: (message) => child.send(message),
    ask: (message, replyType) =>
      new Promise((resolve) => {
        waiting.set(replyType, resolve);
        child.send(message);
      }),
  };
}

async function settleBaseline(sampler, ms = 1000) {
  const fds = [];
  const rss = [];
  for (let i = 0; i < ms / 250; i++) {
    await sleep(250);
    fds.push(sampler.last.fds);
    rss.push(sampler.last.rss);
  }
  fds.sort((a, b) => a - b);
  rss.sort((a, b) => a - b);
  return { fds: fds[Math.floor(fds.length / 2)], rss: rss[Math.floor(rss.length / 2)] };
}

// Idle upstream connections come and go with the client's traffic: a few dozen FDs either way is not the attack.
const fdMargin = (base) => Math.max(48, Math.ceil(base * 0.1));
const rssMargin = (base) => Math.max(8, base * 0.1);

// ---------------------------------------------------------------- one run
async function runContender(name, mode, modeIndex, contenderIndex, backends) {
  const port = await freePort();
  const started = CONTENDERS[name]({ mode, port, backends });
  try {
    await waitPort(port);
  } catch (error) {
    throw new Error(`${name} did not start: ${error.message}\n${started.child.errorTail}`);
  }
  const sampler = new Sampler(started.child.pid);
  const forward = mode === 'forward';
  const requestTarget = forward ? `http://127.0.0.1:${backends[0]}/` : '/';
  const host = forward ? `127.0.0.1:${backends[0]}` : `127.0.0.1:${port}`;
  const probe = helper('probe-client.mjs');
  probe.send({ type: 'start', port, requestTarget, host, rate: RATE, newRate: NEW_RATE, directPort: backends[1] });
  await sleep(3000); // warm-up (JIT, pools), not counted
  await probe.ask({ type: 'mark' }, 'phase');
  await sleep(BASE_S * 1000);
  const unloaded = await probe.ask({ type: 'mark' }, 'phase');
  const abuser = helper('abuser.mjs');
  const rows = [];
  for (const [attackIndex, attack] of ATTACKS.entries()) {
    const ips = Array.from({ length: IPS }, (_, i) => `127.${20 + modeIndex * 8 + contenderIndex}.${10 + attackIndex}.${1 + i}`);
    const base = await settleBaseline(sampler);
    await probe.ask({ type: 'mark' }, 'phase'); // drop the samples between attacks
    sampler.reset();
    const attackStart = performance.now();
    abuser.send({ type: 'start', attack, port, count: COUNT, ips, requestTarget, host, paceMs: ABUSE_S * 1000 });
    await sleep(ABUSE_S * 1000);
    const loaded = await probe.ask({ type: 'mark' }, 'phase');
    await abuser.ask({ type: 'stop' }, 'stopped');
    // Recovery: the abusers are silent now; the proxy's timeouts must free their connections.
    const stoppedAt = performance.now();
    let fdBack;
    let rssBack;
    while (performance.now() - stoppedAt < RECOVERY_BOUND_MS && (fdBack === undefined || rssBack === undefined)) {
      const { fds, rss } = sampler.sample();
      const elapsed = performance.now() - stoppedAt;
      if (fdBack === undefined && fds <= base.fds + fdMargin(base.fds)) fdBack = elapsed;
      if (rssBack === undefined && rss <= base.rss + rssMargin(base.rss)) rssBack = elapsed;
      await sleep(250);
    }
    const after = { ...sampler.last };
    const { open: stillOpen } = await abuser.ask({ type: 'status' }, 'status');
    const recovery = await probe.ask({ type: 'mark' }, 'phase');
    const { stats } = await abuser.ask({ type: 'release' }, 'released');
    const windowEnd = performance.now();
    for (let i = 0; i < 20 && sampler.sample().fds > base.fds + fdMargin(base.fds); i++) await sleep(250);
    const ejections = started.lines.filter(({ at, line }) => at >= attackStart && at <= windowEnd + 1000 && started.ejectedPattern.test(line)).map(({ line }) => line);
    rows.push({
      proxy: name,
      mode,
      attack,
      unloaded: unloaded.keepAlive,
      loaded: loaded.keepAlive,
      fresh: loaded.fresh,
      direct: { unloaded: unloaded.direct, loaded: loaded.direct },
      recovery: recovery.keepAlive,
      base,
      peakFds: sampler.peakFds,
      peakRss: sampler.peakRss,
      after,
      fdBackMs: fdBack,
      rssBackMs: rssBack,
      stillOpen,
      abuser: stats,
      ejections,
    });
    if (process.env.BENCH_VERBOSE) console.error(JSON.stringify(rows.at(-1)));
  }
  abuser.send({ type: 'exit' });
  probe.send({ type: 'stop' });
  sampler.stop();
  await stop(started.child);
  return rows;
}

// ---------------------------------------------------------------- main
const backendPorts = [await freePort(), await freePort()];
const backend = startRaised(process.execPath, [join(root, 'bench/lib/backend.mjs'), ...backendPorts.map(String)], 'backends');
for (const port of backendPorts) await waitPort(port);

const results = [];
for (const [modeIndex, mode] of MODES.entries()) {
  for (const [contenderIndex, name] of Object.keys(CONTENDERS).entries()) {
    if (!ONLY.includes(name)) continue;
    console.error(`abuse: ${mode} proxy ${name}...`);
    results.push(...(await runContender(name, mode, modeIndex, contenderIndex, backendPorts)));
  }
}
await stop(backend);

// ---------------------------------------------------------------- report
const fmt = (value, digits = 0) => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const seconds = (ms) => (ms === undefined ? `>${fmt(RECOVERY_BOUND_MS / 1000)}` : fmt(ms / 1000, 1));
console.log(
  `\nabuse: ${COUNT} connections per attack from ${IPS} addresses; limits ${MAX} total, ${PER_IP} per IP; client timeouts ${TIMEOUT_S} s; ` +
    `attack ${ABUSE_S} s; client ${RATE} req/s keep-alive + ${NEW_RATE}/s on new connections; ${new Date().toISOString()}`,
);
for (const mode of MODES) {
  console.log(`\n${mode} proxy`);
  console.log(
    'proxy          attack      p99 ms idle→attack (x)  direct p99  errors  new-conn p99 (errors)   peak FDs (before)  peak RSS MiB (before)  back after stop s: FDs / RSS  RSS kept MiB  abusers open  ejected  pass',
  );
  for (const row of results.filter((r) => r.mode === mode)) {
    const ratio = row.loaded.p99 / row.unloaded.p99;
    const fdsOk = row.fdBackMs !== undefined && row.fdBackMs <= TIMEOUT_S * 1000 + 2000;
    const rssOk = row.rssBackMs !== undefined && row.rssBackMs <= TIMEOUT_S * 1000 + 2000;
    const pass = ratio < 2 && row.ejections.length === 0 && fdsOk && rssOk;
    const why = [ratio >= 2 ? 'p99' : '', row.ejections.length ? 'eject' : '', fdsOk ? '' : 'fds', rssOk ? '' : 'rss'].filter(Boolean).join(',');
    console.log(
      `${row.proxy.padEnd(14)} ${row.attack.padEnd(10)} ${`${fmt(row.unloaded.p99, 1)}→${fmt(row.loaded.p99, 1)} (${fmt(ratio, 1)})`.padStart(22)} ` +
        `${`${fmt(row.direct.unloaded.p99, 1)}→${fmt(row.direct.loaded.p99, 1)}`.padStart(11)} ${String(row.loaded.errors).padStart(7)} ` +
        `${`${fmt(row.fresh.p99, 1)} (${row.fresh.errors}/${row.fresh.count})`.padStart(22)} ${`${row.peakFds} (${row.base.fds})`.padStart(19)} ${`${fmt(row.peakRss, 1)} (${fmt(row.base.rss, 1)})`.padStart(22)} ` +
        `${`${seconds(row.fdBackMs)} / ${seconds(row.rssBackMs)}`.padStart(29)} ${fmt(row.after.rss - row.base.rss, 1).padStart(13)} ${String(row.stillOpen).padStart(13)} ${String(row.ejections.length).padStart(8)}  ${pass ? 'yes' : `no (${why})`}`,
    );
  }
}
console.log('\nabusers per attack: connected/attempted / closed by the proxy while attacking / after going silent / answered (statuses);');
console.log('"never connected": ECONNRESET is a refusal by reset that beat the connect callback (wmproxy on Bun), EPENDING a connect still queued at the end');
for (const row of results) {
  const s = row.abuser;
  const statuses = Object.entries(s.statuses).map(([status, n]) => `${status}:${n}`).join(' ');
  const failed = Object.entries(s.failedCodes ?? {}).map(([code, n]) => `${code}:${n}`).join(' ');
  console.log(`${row.mode.padEnd(8)} ${row.proxy.padEnd(14)} ${row.attack.padEnd(10)} ${s.connected}/${s.attempted} / ${s.closedByPeer.attacking} / ${s.closedByPeer.silent} / ${s.answered} (${statuses})${s.failed ? `, ${s.failed} never connected (${failed})` : ''}`);
}
const errorCodes = results.filter((row) => row.loaded.errors || row.fresh.errors);
if (errorCodes.length) {
  console.log('\nclient errors during attacks (keep-alive | new connections):');
  for (const row of errorCodes) console.log(`${row.mode.padEnd(8)} ${row.proxy.padEnd(14)} ${row.attack.padEnd(10)} ${JSON.stringify(row.loaded.codes)} | ${JSON.stringify(row.fresh.codes)}`);
}
const ejected = results.filter((row) => row.ejections.length);
if (ejected.length) {
  console.log('\nejections:');
  for (const row of ejected) console.log(`${row.mode} ${row.proxy} ${row.attack}: ${row.ejections.slice(0, 3).join(' | ')}`);
}
if (args.includes('--json')) console.log(JSON.stringify(results));
process.exit(0);
