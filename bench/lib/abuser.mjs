// The abusive clients of the abuse benchmark, in their own process, driven
// over IPC (child_process.fork). One attack at a time, from the source
// addresses it is given (other loopback addresses than the well-behaved
// client's 127.0.0.1, so that per-IP limits can tell them apart):
//   slowloris  a request head dribbled one header line every `dribbleMs`, never finished
//   slow-body  a complete POST head with Content-Length 1 MB, the body dribbled 16 bytes every `dribbleMs`
//   mid-body   POST heads with half of a 64 KiB body, then the client closes (even) or resets (odd);
//              `count` in all, spread evenly over `paceMs`, at most `abortConcurrency` at a time
//   flood      `count` connections opened as fast as possible, nothing sent
// Connections are opened with at most `ramp` connects pending. Messages:
//   {type: 'start', attack, port, count, ips, requestTarget, host, ramp, dribbleMs, abortConcurrency, paceMs}
//   {type: 'stop'}     stop sending and opening; open connections stay, silent   -> {type: 'stopped', stats}
//   {type: 'status'}   -> {type: 'status', open}
//   {type: 'release'}  close every connection                                   -> {type: 'released', stats}
// stats: attempted, connected, failed (never connected; failedCodes says why), closedByPeer (while attacking / while silent),
// answered (got bytes back, by status), maxOpen, aborted (mid-body).
import net from 'node:net';

const BUCKETS = 20;
let config;
let phase = 'idle';
let stats;
let pending = 0;
let openCount = 0;
let serial = 0;
let inFlightAborts = 0;
const entries = new Set();
let dribbleTimer;
let paceTimer;
let startedAt = 0;
let tick = 0;

function newStats() {
  return { attempted: 0, connected: 0, failed: 0, failedCodes: {}, closedByPeer: { attacking: 0, silent: 0 }, answered: 0, statuses: {}, maxOpen: 0, aborted: 0 };
}

function head(method, extra = '') {
  return `${method} ${config.requestTarget} HTTP/1.1\r\nHost: ${config.host}\r\nUser-Agent: wmproxy-bench-abuser\r\n${extra}`;
}

function open(onConnect) {
  const n = serial++;
  stats.attempted++;
  pending++;
  const localAddress = config.ips[n % config.ips.length];
  const socket = net.connect({ port: config.port, host: '127.0.0.1', localAddress });
  const entry = { socket, n, connected: false, answered: false };
  entries.add(entry);
  socket.on('connect', () => {
    pending--;
    entry.connected = true;
    stats.connected++;
    openCount++;
    if (openCount > stats.maxOpen) stats.maxOpen = openCount;
    onConnect(entry);
    pump();
  });
  socket.on('data', (chunk) => {
    if (entry.answered) return;
    entry.answered = true;
    stats.answered++;
    const status = chunk.toString('latin1', 0, 5) === 'HTTP/' ? chunk.toString('latin1', 9, 12) : 'other';
    stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
  });
  socket.on('error', (error) => {
    if (!entry.connected) entry.error = error.code ?? 'ERROR';
  });
  socket.on('close', () => {
    entries.delete(entry);
    if (!entry.connected) {
      pending--;
      stats.failed++;
      // A connection refused with a reset can fail before the client saw it connect (ECONNRESET); still pending at release: EPENDING.
      const code = entry.error ?? 'EPENDING';
      stats.failedCodes[code] = (stats.failedCodes[code] ?? 0) + 1;
    } else {
      openCount--;
      if (!entry.ours) stats.closedByPeer[phase === 'attacking' ? 'attacking' : 'silent']++;
    }
    if (entry.onClose) entry.onClose();
    pump();
  });
  return entry;
}

const attacks = {
  slowloris: {
    connected(entry) {
      entry.socket.write(head('GET'));
    },
    dribble(entry) {
      entry.socket.write(`X-Slow-${tick}: x\r\n`);
    },
  },
  'slow-body': {
    connected(entry) {
      entry.socket.write(head('POST', 'Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n'));
    },
    dribble(entry) {
      entry.socket.write('xxxxxxxxxxxxxxxx');
    },
  },
  'mid-body': {
    connected(entry) {
      entry.socket.write(head('POST', 'Content-Type: application/octet-stream\r\nContent-Length: 65536\r\n\r\n'));
      entry.socket.write(HALF_BODY);
      // Long enough for the proxy to have passed the head and the half body on.
      setTimeout(abort, 20, entry);
    },
  },
  flood: {
    connected() {},
  },
};
const HALF_BODY = Buffer.alloc(32768, 'x');

function abort(entry) {
  entry.ours = true;
  stats.aborted++;
  if (entry.n % 2 === 0) entry.socket.destroy();
  else entry.socket.resetAndDestroy();
}

/** Open connections while the attack wants more and fewer than `ramp` connects are pending. */
function pump() {
  if (phase !== 'attacking') return;
  const attack = attacks[config.attack];
  if (config.attack === 'mid-body') {
    const due = Math.min(config.count, Math.floor((config.count * (performance.now() - startedAt)) / config.paceMs));
    while (stats.attempted < due && inFlightAborts < config.abortConcurrency) {
      inFlightAborts++;
      const entry = open(attack.connected);
      entry.onClose = () => inFlightAborts--;
    }
    return;
  }
  while (stats.attempted < config.count && pending < config.ramp) open(attack.connected);
}

function start(message) {
  config = { ramp: 500, dribbleMs: 2_000, abortConcurrency: 256, paceMs: 10_000, ...message };
  stats = newStats();
  serial = 0;
  phase = 'attacking';
  startedAt = performance.now();
  if (config.attack === 'mid-body') paceTimer = setInterval(pump, 10);
  const attack = attacks[config.attack];
  if (!attack) throw new Error(`unknown attack ${config.attack}`);
  if (attack.dribble) {
    // Each connection writes once every dribbleMs: a tick every dribbleMs / BUCKETS serves one bucket.
    dribbleTimer = setInterval(() => {
      const bucket = tick++ % BUCKETS;
      for (const entry of entries) if (entry.connected && entry.n % BUCKETS === bucket && !entry.socket.destroyed) attack.dribble(entry);
    }, config.dribbleMs / BUCKETS);
  }
  pump();
}

function snapshot() {
  return { ...stats, open: openCount, pending };
}

process.on('message', (message) => {
  if (message.type === 'start') start(message);
  else if (message.type === 'stop') {
    phase = 'silent';
    clearInterval(dribbleTimer);
    clearInterval(paceTimer);
    process.send({ type: 'stopped', stats: snapshot() });
  } else if (message.type === 'status') process.send({ type: 'status', open: openCount, pending });
  else if (message.type === 'release') {
    phase = 'released';
    const result = snapshot();
    for (const entry of entries) {
      entry.ours = true;
      entry.socket.destroy();
    }
    const done = () => (entries.size === 0 ? process.send({ type: 'released', stats: result }) : setTimeout(done, 20));
    done();
  } else if (message.type === 'exit') process.exit(0);
});
process.on('disconnect', () => process.exit(0));
