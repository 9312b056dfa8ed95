// WebSocket <-> TCP bridges (ws2tcp, tcp2ws) measured against websockify, `ws` and direct TCP, in the same run.
// Usage: flock /work/bench.lock node bench/ws-bridge.mjs [--mib 256] [--conns 200] [--msgs 200000] [--only a,b]
//          [--far codec-bun] [--phases upload,download,small,memory] [--rounds 1] [--profile DIR]
// --baseline DIR: also the codec, relay and tcp2ws candidates from another checkout (e.g. /work/main, built), as NAME@base.
// --rounds N: every candidate measured N times, rounds interleaved (a load change hits all alike); medians.
// CPU: the bridge process tree's user+system seconds per GiB moved (less sensitive to a loaded host than MiB/s),
// read after the handshake and before the close (see treeCpuSeconds); small messages: CPU us per message.
// --profile DIR: candidate processes run with --cpu-prof (Node and Bun), profiles written to DIR on exit.
//
// Candidates (each a child process bridging ws://127.0.0.1:P/ to a TCP target in this process):
//   codec-node  wmproxy's ws2tcp (its own RFC 6455 codec over core-net Conns) on Node
//   codec-bun   the same on Bun
//   ws-node     the `ws` package's WebSocketServer piped to a net socket (createWebSocketStream)
//   bun-native  Bun.serve's native WebSocket with a node:net socket (Bun only)
//   websockify  Debian's websockify (Python; forks a process per connection)
//   direct      plain TCP to the target, no bridge (the ceiling)
// Ceilings of a relay per runtime (plain TCP through them, no WebSocket at all):
//   pipe-node   node:net sockets piped both ways (the least JS TCP relay on Node)
//   pipe-bun    Bun.listen/Bun.connect, a write's remainder queued until the drain (the least JS on Bun;
//               bench/lib/relay-pair.ts's far end, tcp mode)
//   relay-node / relay-bun  core-net's relay() between two Conns (the layer ws-bridge runs on)
// tcp2ws candidates (a TCP listener whose connections become WebSocket clients of a far end: the
// ws2tcp candidate named by --far, default codec-bun, in front of the same TCP target):
//   tcp2ws-node / tcp2ws-bun  wmproxy's tcp2ws on Node / Bun
//   tcp2ws-ws                 the `ws` package's client piped to the accepted socket, on Node
//   (websockify has no tcp2ws mode; the far end alone, a WebSocket client straight to it, is the ceiling)
// Workloads: upload (client -> bridge -> TCP sink, 64 KiB binary messages), download (TCP source ->
// bridge -> client), small messages (64-byte messages through a TCP echo, pipelined in windows),
// and memory: RSS of the bridge's process tree per idle open WebSocket.
// The client is the same raw-socket client for every candidate (pre-masked frames, byte counting).
import net from 'node:net';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { processTree, rssMiB } from './lib/procstat.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

// ------------------------------------------------------------------ child: one bridge
if (process.argv[2] === '--serve') {
  const [kind, targetPort] = [process.argv[3], Number(process.argv[4])];
  // The checkout whose ws-bridge to load (--baseline), else this one.
  const libRoot = process.argv[5] ?? root;
  const ready = (port) => process.stdout.write(`PORT ${port}\n`);
  // A clean exit on stop, so that --cpu-prof writes its profile.
  process.on('SIGTERM', () => process.exit(0));
  if (kind === 'codec') {
    const lib = typeof Bun !== 'undefined' ? join(libRoot, 'packages/ws-bridge/src/index.ts') : join(libRoot, 'packages/ws-bridge/dist/src/index.js');
    const { Ws2TcpServer } = await import(lib);
    const server = await new Ws2TcpServer({ listen: '127.0.0.1:0', target: `127.0.0.1:${targetPort}`, maxMessageSize: 1 << 30, maxConnections: 0 }).start();
    ready(server.boundAddresses[0].split(':').pop());
  } else if (kind === 'tcp2ws') {
    const lib = typeof Bun !== 'undefined' ? join(libRoot, 'packages/ws-bridge/src/index.ts') : join(libRoot, 'packages/ws-bridge/dist/src/index.js');
    const { Tcp2WsServer } = await import(lib);
    // targetPort is the far end's (a WebSocket server) here.
    const server = await new Tcp2WsServer({ listen: '127.0.0.1:0', url: `ws://127.0.0.1:${targetPort}/`, subprotocols: ['binary'], maxMessageSize: 1 << 30, maxConnections: 0 }).start();
    ready(server.boundAddresses[0].split(':').pop());
  } else if (kind === 'ws-client') {
    const { WebSocket, createWebSocketStream } = await import('ws');
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      const ws = new WebSocket(`ws://127.0.0.1:${targetPort}/`, 'binary', { maxPayload: 1 << 30, perMessageDeflate: false });
      const stream = createWebSocketStream(ws);
      stream.on('error', () => socket.destroy());
      socket.on('error', () => stream.destroy());
      socket.pipe(stream).pipe(socket);
    });
    server.listen(0, '127.0.0.1', () => ready(server.address().port));
  } else if (kind === 'ws') {
    const { WebSocketServer, createWebSocketStream } = await import('ws');
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 1 << 30, perMessageDeflate: false });
    wss.on('connection', (ws) => {
      const tcp = net.connect(targetPort, '127.0.0.1');
      const stream = createWebSocketStream(ws);
      stream.on('error', () => tcp.destroy());
      tcp.on('error', () => stream.destroy());
      stream.pipe(tcp).pipe(stream);
    });
    wss.on('listening', () => ready(wss.address().port));
  } else if (kind === 'pipe') {
    // The least JS relay on Node: node:net sockets piped both ways, no WebSocket.
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      const tcp = net.connect(targetPort, '127.0.0.1');
      tcp.setNoDelay(true);
      socket.on('error', () => tcp.destroy());
      tcp.on('error', () => socket.destroy());
      socket.pipe(tcp).pipe(socket);
    });
    server.listen(0, '127.0.0.1', () => ready(server.address().port));
  } else if (kind === 'relay') {
    // core-net's own relay() between two Conns (the connections ws-bridge runs on), no WebSocket.
    const lib = typeof Bun !== 'undefined' ? join(libRoot, 'packages/core-net/src/index.ts') : join(libRoot, 'packages/core-net/dist/src/index.js');
    const { Server, connect, relay, parseAddress } = await import(lib);
    const server = await new Server({
      addresses: [parseAddress('127.0.0.1:0')],
      limits: { maxConnections: 0 },
      onConnection(conn) {
        connect({ host: '127.0.0.1', port: targetPort }).then(
          (upstream) => relay(conn, upstream),
          () => conn.destroy(),
        );
      },
    }).start();
    ready(server.boundAddresses[0].split(':').pop());
  } else if (kind === 'bun') {
    const server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch(req, srv) {
        return srv.upgrade(req, { data: {} }) ? undefined : new Response('upgrade', { status: 426 });
      },
      websocket: {
        maxPayloadLength: 1 << 30,
        backpressureLimit: 1 << 20,
        open(ws) {
          const tcp = net.connect(targetPort, '127.0.0.1');
          ws.data.tcp = tcp;
          tcp.on('data', (chunk) => {
            if (ws.send(chunk) === -1) tcp.pause();
          });
          tcp.on('end', () => ws.close(1000));
          tcp.on('error', () => ws.close(1011));
        },
        drain(ws) {
          ws.data.tcp.resume();
        },
        message(ws, message) {
          ws.data.tcp.write(message);
        },
        close(ws) {
          ws.data.tcp.end();
        },
      },
    });
    ready(server.port);
  }
  await new Promise(() => {});
}

// ------------------------------------------------------------------ child: the TCP target
if (process.argv[2] === '--target') {
  const total = Number(process.argv[3]);
  let mode = 'idle';
  const SOURCE_CHUNK = Buffer.alloc(64 * 1024, 0x5a);
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.setNoDelay(true);
    if (mode === 'sink') {
      let sunk = 0;
      socket.on('data', (chunk) => {
        sunk += chunk.length;
        // The parent times the upload until every byte reached the target.
        if (sunk >= total && sunk - chunk.length < total) process.stdout.write('sunk\n');
      });
    } else if (mode === 'echo') socket.pipe(socket);
    else if (mode === 'source') {
      let left = total;
      const pump = () => {
        while (left > 0) {
          left -= SOURCE_CHUNK.length;
          if (!socket.write(SOURCE_CHUNK)) return socket.once('drain', pump);
        }
        socket.end();
      };
      pump();
    }
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT ${server.address().port}\n`));
  let input = '';
  process.stdin.on('data', (chunk) => {
    input += chunk;
    let newline;
    while ((newline = input.indexOf('\n')) >= 0) {
      mode = input.slice(0, newline);
      input = input.slice(newline + 1);
      process.stdout.write('ok\n');
    }
  });
  process.stdin.on('end', () => process.exit(0));
  await new Promise(() => {});
}

// ------------------------------------------------------------------ parent
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const MIB = Number(opt('mib', 256));
const CONNS = Number(opt('conns', 200));
const MSGS = Number(opt('msgs', 200_000));
const only = opt('only', undefined)?.split(',');
const FAR = opt('far', 'codec-bun');
const PHASES = opt('phases', 'upload,download,small,memory').split(',');
const PROFILE = opt('profile', undefined);
const ROUNDS = Number(opt('rounds', 1));
const BASELINE = opt('baseline', undefined);
const withBase = (kinds) => kinds.flatMap((kind) => (BASELINE && (kind.startsWith('codec') || kind.startsWith('relay-') || kind.startsWith('tcp2ws-')) && kind !== 'tcp2ws-ws' ? [kind, `${kind}@base`] : [kind]));
const TICK = 100; // USER_HZ on Linux

/** /proc/PID/stat fields after the command name: [state, ppid, ..., utime(11), stime(12), cutime(13), cstime(14)]. */
function statFields(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}
const reapedTicks = (f) => Number(f[13]) + Number(f[14]);

/**
 * user+system CPU seconds of a process tree: for the root and every descendant still in /proc (zombies
 * included), its own ticks plus its reaped children's. A child's ticks move into its parent's reaped counters
 * when the parent waits for it, so this sum is continuous across a reap - unless the reap happens while the
 * /proc scan runs (websockify reaps a connection's child on SIGCHLD: the scan read the parent before, the
 * child was gone after, and the child's whole CPU was lost; the next phase then counted it twice, 0.80-5.08
 * s/GiB). So the scan is checked: every parent's reaped counters read again afterwards, and a scan during
 * which any of them moved is taken again.
 */
function treeCpuSeconds(pid) {
  if (pid === undefined) return 0;
  for (let attempt = 0; ; attempt++) {
    const rootBefore = statFields(pid);
    if (!rootBefore) return 0;
    const tree = [[pid, rootBefore]];
    for (const p of processTree(pid).slice(1)) {
      const f = statFields(p);
      if (f) tree.push([p, f]);
    }
    const moved = tree.some(([p, f]) => {
      const now = statFields(p);
      return now !== undefined && reapedTicks(now) !== reapedTicks(f);
    });
    if (moved && attempt < 20) continue;
    let ticks = 0;
    for (const [, f] of tree) ticks += Number(f[11]) + Number(f[12]) + reapedTicks(f);
    return ticks / TICK;
  }
}

/**
 * Waits (up to 3 s) until the tree has no more processes than `count`: websockify's child of the previous
 * connection exits after the client closes, and its exit is not the next phase's work.
 */
async function settle(pid, count) {
  if (pid === undefined) return;
  for (let i = 0; i < 60 && processTree(pid).length - 1 > count; i++) await new Promise((r) => setTimeout(r, 50));
}

const BUN = join(root, 'node_modules/.bin/bun');
const hasBun = existsSync(BUN);
const hasWebsockify = existsSync('/usr/bin/websockify');

// The TCP target runs in its own process (so that "direct" is not the client and the target sharing one
// event loop); what it does is switched per phase over its stdin: sink, source, echo or idle.
const targetChild = spawn(process.execPath, [fileURLToPath(import.meta.url), '--target', String(MIB * 1024 * 1024)], { stdio: ['pipe', 'pipe', 'inherit'] });
let targetOut = '';
const targetWaiters = [];
targetChild.stdout.on('data', (chunk) => {
  targetOut += chunk;
  let newline;
  while ((newline = targetOut.indexOf('\n')) >= 0) {
    const line = targetOut.slice(0, newline);
    targetOut = targetOut.slice(newline + 1);
    targetWaiters.shift()?.(line);
  }
});
const targetLine = () => new Promise((resolve) => targetWaiters.push(resolve));
const targetPort = Number((await targetLine()).split(' ')[1]);
/** Switch the target's behaviour; resolves once it has. */
async function setTarget(mode) {
  const ack = targetLine();
  targetChild.stdin.write(`${mode}\n`);
  await ack;
}

function startCandidate(name, farPort) {
  const [kind, base] = name.split('@');
  if (kind === 'direct') return { port: targetPort, pid: undefined, stop() {} };
  let child;
  if (kind === 'websockify') {
    const port = 20000 + Math.floor(Math.random() * 10000);
    child = spawn('/usr/bin/websockify', [`127.0.0.1:${port}`, `127.0.0.1:${targetPort}`], { stdio: 'ignore' });
    return waitPort(port).then(() => ({ port, pid: child.pid, stop: () => child.kill('SIGTERM') }));
  }
  if (kind === 'pipe-bun') {
    // bench/lib/relay-pair.ts's far end in tcp mode is that relay: Bun's sockets, nothing else.
    child = spawn(BUN, [join(root, 'bench/lib/relay-pair.ts'), 'far', 'tcp', String(targetPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
    return childPort(name, child, /"control":(\d+)/);
  }
  const runtime = kind.endsWith('-bun') || kind === 'bun-native' ? BUN : process.execPath;
  const serveKind = kind.startsWith('codec')
    ? 'codec'
    : kind === 'ws-node'
      ? 'ws'
      : kind === 'tcp2ws-ws'
        ? 'ws-client'
        : kind.startsWith('tcp2ws')
          ? 'tcp2ws'
          : kind.startsWith('pipe')
            ? 'pipe'
            : kind.startsWith('relay')
              ? 'relay'
              : 'bun';
  const port = kind.startsWith('tcp2ws') ? farPort : targetPort;
  const flags = PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] : [];
  child = spawn(runtime, [...flags, fileURLToPath(import.meta.url), '--serve', serveKind, String(port), ...(base ? [BASELINE] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
  return childPort(name, child, /PORT (\d+)/);
}

/** The candidate once `child` has printed its port (`pattern`'s first group). */
function childPort(name, child, pattern) {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = pattern.exec(out);
      if (match) resolve({ port: Number(match[1]), pid: child.pid, stop: () => child.kill('SIGTERM') });
    });
    child.on('exit', (code) => reject(new Error(`${name} exited ${code}`)));
  });
}

async function waitPort(port) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** A raw WebSocket client connection (or plain TCP for `direct`). */
async function open(port, ws) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise((resolve, reject) => (socket.once('connect', resolve), socket.once('error', reject)));
  if (!ws) return { socket, rest: Buffer.alloc(0) };
  const key = randomBytes(16).toString('base64');
  socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Protocol: binary\r\n\r\n`);
  let buf = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const head = buf.subarray(0, end).toString();
      const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      if (!head.startsWith('HTTP/1.1 101') || !head.includes(accept)) return reject(new Error(head));
      resolve({ socket, rest: buf.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

function maskedFrame(payload) {
  const len = payload.length;
  const header = len < 126 ? Buffer.from([0x82, 0x80 | len]) : len < 65536 ? Buffer.from([0x82, 0xfe, len >> 8, len & 255]) : Buffer.from([0x82, 0xff, 0, 0, 0, 0, len >>> 24, (len >> 16) & 255, (len >> 8) & 255, len & 255]);
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([header, mask, body]);
}

/** Counts payload bytes of unmasked server frames (headers parsed byte by byte; payload skipped in bulk). */
function payloadCounter() {
  let need = 0; // payload bytes left in the current frame
  let control = false;
  const header = [];
  let total = 0;
  return {
    get total() {
      return total;
    },
    push(chunk) {
      let i = 0;
      while (i < chunk.length) {
        if (need > 0) {
          const take = Math.min(need, chunk.length - i);
          need -= take;
          if (!control) total += take;
          i += take;
          continue;
        }
        header.push(chunk[i++]);
        if (header.length < 2) continue;
        const len7 = header[1] & 0x7f;
        const size = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
        if (header.length < size) continue;
        let len = len7;
        if (len7 === 126) len = (header[2] << 8) | header[3];
        else if (len7 === 127) len = Number(Buffer.from(header.slice(2, 10)).readBigUInt64BE(0));
        control = (header[0] & 0x0f) >= 8;
        header.length = 0;
        need = len;
      }
    },
  };
}

// Each phase reads the bridge's CPU (cpu(): seconds) once the connection is open and again before closing
// it: the CPU of the handshake and of the teardown (a websockify child's exit) is not the transfer's.
async function upload(port, ws, cpu) {
  await setTarget('sink');
  const { socket } = await open(port, ws);
  const cpuBefore = cpu();
  const payload = randomBytes(64 * 1024);
  const chunk = ws ? maskedFrame(payload) : payload;
  const total = MIB * 1024 * 1024;
  const started = process.hrtime.bigint();
  const done = targetLine();
  // A bridge that drops the connection mid-way is an error row, not a hung run.
  const dropped = new Promise((_, reject) => socket.once('close', () => reject(new Error('the bridge closed the connection during the upload'))));
  dropped.catch(() => {});
  let sent = 0;
  await Promise.race([
    new Promise((resolve) => {
      const pump = () => {
        while (sent < total) {
          sent += payload.length;
          if (!socket.write(chunk)) return socket.once('drain', pump);
        }
        resolve();
      };
      pump();
    }),
    dropped,
  ]);
  await Promise.race([done, dropped]);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuSeconds = cpu() - cpuBefore;
  socket.destroy();
  return { rate: total / 1024 / 1024 / seconds, cpuSeconds };
}

async function download(port, ws, cpu) {
  await setTarget('source');
  const { socket, rest } = await open(port, ws);
  const cpuBefore = cpu();
  const total = MIB * 1024 * 1024;
  const counter = payloadCounter();
  const started = process.hrtime.bigint();
  let raw = 0;
  await new Promise((resolve, reject) => {
    const check = () => (ws ? counter.total : raw) >= total && resolve();
    socket.once('close', () => reject(new Error(`the connection closed after ${ws ? counter.total : raw} of ${total} bytes`)));
    if (ws) counter.push(rest);
    socket.on('data', (chunk) => {
      if (ws) counter.push(chunk);
      else raw += chunk.length;
      check();
    });
    socket.resume();
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuSeconds = cpu() - cpuBefore;
  socket.destroy();
  return { rate: total / 1024 / 1024 / seconds, cpuSeconds };
}

async function smallMessages(port, ws, cpu) {
  await setTarget('echo');
  const { socket, rest } = await open(port, ws);
  const cpuBefore = cpu();
  const payload = randomBytes(64);
  const frame = ws ? maskedFrame(payload) : payload;
  const window = 256;
  const counter = payloadCounter();
  let received = 0;
  const started = process.hrtime.bigint();
  let sent = 0;
  await new Promise((resolve, reject) => {
    socket.once('close', () => reject(new Error(`the connection closed after ${received} bytes of echo`)));
    const sendWindow = () => {
      const n = Math.min(window, MSGS - sent);
      const batch = Buffer.concat(Array.from({ length: n }, () => frame));
      sent += n;
      socket.write(batch);
    };
    let acked = 0;
    const onBytes = () => {
      const msgs = Math.floor(received / 64);
      // Keep two windows in flight.
      while (acked + window <= msgs && sent < MSGS) {
        acked += window;
        sendWindow();
      }
      if (msgs >= MSGS) resolve();
    };
    socket.on('data', (chunk) => {
      if (ws) {
        counter.push(chunk);
        received = counter.total;
      } else received += chunk.length;
      onBytes();
    });
    socket.resume();
    if (ws) counter.push(rest);
    sendWindow();
    sendWindow();
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuSeconds = cpu() - cpuBefore;
  socket.destroy();
  return { rate: MSGS / seconds, cpuSeconds };
}

function treeRssKiB(pid) {
  return pid === undefined ? 0 : (rssMiB(processTree(pid)) ?? 0) * 1024;
}

async function memoryPerConn(candidate, ws) {
  if (candidate.pid === undefined) return undefined;
  await setTarget('idle');
  // Warm up, then measure the growth for CONNS idle WebSockets.
  const warm = [];
  for (let i = 0; i < 20; i++) warm.push((await open(candidate.port, ws)).socket);
  await new Promise((r) => setTimeout(r, 300));
  const before = treeRssKiB(candidate.pid);
  const sockets = [];
  for (let i = 0; i < CONNS; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, CONNS - i) }, () => open(candidate.port, ws)));
    for (const { socket } of batch) sockets.push(socket);
  }
  await new Promise((r) => setTimeout(r, 1000));
  const after = treeRssKiB(candidate.pid);
  for (const s of [...warm, ...sockets]) s.destroy();
  return (after - before) / CONNS;
}

/** TCP relays without WebSocket: their clients speak plain TCP, as direct's. */
const plainTcp = (kind) => kind === 'direct' || kind.startsWith('pipe-') || kind.startsWith('relay-');
const candidates = withBase(['direct', 'pipe-node', ...(hasBun ? ['pipe-bun'] : []), 'relay-node', ...(hasBun ? ['relay-bun'] : []), 'codec-node', ...(hasBun ? ['codec-bun'] : []), 'ws-node', ...(hasBun ? ['bun-native'] : []), ...(hasWebsockify ? ['websockify'] : [])]
  .filter((kind) => !only || only.includes(kind) || kind === 'direct'));
const tcp2wsCandidates = withBase(['tcp2ws-node', ...(hasBun ? ['tcp2ws-bun'] : []), 'tcp2ws-ws'].filter((kind) => !only || only.includes(kind)));

async function measure(kind, candidate, ws) {
  console.error(`${kind}: measuring`);
  const row = {};
  const gib = MIB / 1024;
  const cpu = () => treeCpuSeconds(candidate.pid);
  const has = candidate.pid !== undefined;
  if (PHASES.includes('upload')) {
    await settle(candidate.pid, 0);
    const { rate, cpuSeconds } = await upload(candidate.port, ws, cpu);
    row.uploadMiBs = rate;
    if (has) row.uploadCpuSPerGiB = cpuSeconds / gib;
  }
  if (PHASES.includes('download')) {
    await settle(candidate.pid, 0);
    const { rate, cpuSeconds } = await download(candidate.port, ws, cpu);
    row.downloadMiBs = rate;
    if (has) row.downloadCpuSPerGiB = cpuSeconds / gib;
  }
  if (PHASES.includes('small')) {
    await settle(candidate.pid, 0);
    const { rate, cpuSeconds } = await smallMessages(candidate.port, ws, cpu);
    row.msgsPerSec = rate;
    // CPU microseconds per 64-byte message echoed (both directions through the bridge).
    if (has) row.smallCpuUsPerMsg = (cpuSeconds / MSGS) * 1e6;
  }
  if (PHASES.includes('memory')) row.kibPerConn = await memoryPerConn(candidate, ws);
  // Progress on stderr, so that a run cut short still says what it measured.
  console.error(`${kind}: ${JSON.stringify(row)}`);
  return row;
}

/** Per-key medians of several rows (error rows are dropped; all errors: the first error). */
function median(rows) {
  const ok = rows.filter((r) => !r.error);
  if (ok.length === 0) return rows[0];
  const out = {};
  for (const key of Object.keys(ok[0])) {
    const values = ok.map((r) => r[key]).filter((v) => v !== undefined).sort((a, b) => a - b);
    out[key] = values[Math.floor(values.length / 2)];
  }
  if (ok.length > 1) out.rounds = ok.length;
  return out;
}

const rounds = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const kind of candidates) {
    const candidate = await startCandidate(kind);
    try {
      (rounds[kind] ??= []).push(await measure(kind, candidate, !plainTcp(kind)));
    } catch (error) {
      (rounds[kind] ??= []).push({ error: error.message });
    } finally {
      candidate.stop();
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}
const results = Object.fromEntries(Object.entries(rounds).map(([kind, rows]) => [kind, median(rows)]));

// tcp2ws: the far end stays up for every candidate; its own row (a WebSocket client straight to it) is the ceiling.
const tcp2wsResults = {};
if (tcp2wsCandidates.length > 0) {
  const far = await startCandidate(FAR);
  try {
    const farKey = `far end (${FAR})`;
    try {
      tcp2wsResults[farKey] = results[FAR] && !results[FAR].error ? results[FAR] : await measure(farKey, far, true);
    } catch (error) {
      tcp2wsResults[farKey] = { error: error.message };
    }
    const t2wRounds = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const kind of tcp2wsCandidates) {
        const candidate = await startCandidate(kind, far.port);
        try {
          (t2wRounds[kind] ??= []).push(await measure(kind, candidate, false));
        } catch (error) {
          (t2wRounds[kind] ??= []).push({ error: error.message });
        } finally {
          candidate.stop();
        }
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    for (const [kind, rows] of Object.entries(t2wRounds)) tcp2wsResults[kind] = median(rows);
  } finally {
    far.stop();
  }
}
targetChild.stdin.end();

const fmt = (n, d = 0) => (n === undefined || Number.isNaN(n) ? '-' : n.toFixed(d));
const dir = results.direct;
function table(rows, ref, refName) {
  console.log(`candidate     upload MiB/s          download MiB/s        64B msgs/s            KiB/conn  CPU s/GiB up/down  CPU us/msg  (ratios: vs ${refName} | vs direct TCP)`);
  for (const [kind, r] of Object.entries(rows)) {
    if (r.error) {
      console.log(`${kind.padEnd(13)} error: ${r.error}`);
      continue;
    }
    const ratio = (key) => `${ref && !ref.error ? fmt(r[key] / ref[key], 1) : '-'}x|${dir && !dir.error ? fmt(r[key] / dir[key], 2) : '-'}x`;
    console.log(`${kind.padEnd(13)} ${fmt(r.uploadMiBs).padStart(6)} ${ratio('uploadMiBs').padEnd(13)} ${fmt(r.downloadMiBs).padStart(6)} ${ratio('downloadMiBs').padEnd(13)} ${fmt(r.msgsPerSec).padStart(8)} ${ratio('msgsPerSec').padEnd(11)} ${fmt(r.kibPerConn, 1).padStart(7)}  ${fmt(r.uploadCpuSPerGiB, 2).padStart(5)}/${fmt(r.downloadCpuSPerGiB, 2).padEnd(5)}  ${fmt(r.smallCpuUsPerMsg, 2).padStart(8)}`);
  }
}
console.log(`ws2tcp, ${MIB} MiB each way, median of ${ROUNDS}, ${MSGS} x 64-byte messages, ${CONNS} idle connections for memory`);
table(results, results.websockify, 'websockify');
if (tcp2wsCandidates.length > 0) {
  const farKey = `far end (${FAR})`;
  console.log(`\ntcp2ws: TCP client -> candidate -> ws://far end (${FAR} ws2tcp) -> the same TCP target; memory is the candidate's process tree`);
  table(tcp2wsResults, tcp2wsResults[farKey], 'the far end alone');
}
if (BASELINE) console.log(`\nNAME@base: the same candidate built from ${BASELINE}`);
console.log(JSON.stringify({ bench: 'ws-bridge', baseline: BASELINE, mib: MIB, msgs: MSGS, conns: CONNS, rounds: ROUNDS, load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number), results, tcp2ws: { far: FAR, results: tcp2wsResults } }));
process.exit(0);
