// Mixed traffic for the soak benchmark, in its own process, driven over IPC
// (child_process.fork). Every kind runs at a fixed rate (per second):
//   get        keep-alive GETs through the reverse proxy
//   post       POSTs with a 16 KiB body through the reverse proxy, a new connection each
//   websocket  WebSocket connections through the reverse proxy, each echoing a 64-byte message
//              every 500 ms; a few are closed and reopened every 10 s
//   absolute   keep-alive absolute-form GETs through the forward proxy
//   connect    CONNECT tunnels through the forward proxy: one GET inside, then closed
//   abort      POSTs that send half of their body and reset; GETs that close before the answer;
//              forward-proxy connections reset right after connecting
// Messages: {type: 'start', reversePort, forwardPort, backendPort, scale}   (scale multiplies every rate)
//           {type: 'report'} -> {type: 'report', kinds: {kind: {ok, errors: {code: n}}}}
//           {type: 'stop'}   -> exits
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { RoundRobinClient } from './round-robin-client.mjs';

const RATES = { get: 300, post: 30, absolute: 100, connect: 20, abortBody: 10, abortResponse: 5, abortForward: 5 };
const WEBSOCKETS = 20;
const BODY = Buffer.alloc(16 * 1024, 'b');
const HALF_BODY = Buffer.alloc(8 * 1024, 'h');
const kinds = {};
const timers = [];
const clients = [];
const sockets = new Set();

function count(kind, error) {
  const entry = (kinds[kind] ??= { ok: 0, errors: {} });
  if (error === undefined) entry.ok++;
  else entry.errors[error] = (entry.errors[error] ?? 0) + 1;
}

/** A raw exchange on a new connection: `onConnect(socket)` writes, `done(text)` says when the answer is complete. */
function exchange(port, kind, onConnect, done, timeoutMs = 10_000) {
  const socket = net.connect(port, '127.0.0.1');
  sockets.add(socket);
  let text = '';
  let settled = false;
  const settle = (error) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.destroy();
    count(kind, error);
  };
  const timer = setTimeout(settle, timeoutMs, 'ETIMEOUT');
  socket.setEncoding('latin1');
  socket.on('connect', () => onConnect(socket));
  socket.on('data', (chunk) => {
    text += chunk;
    const verdict = done(text, socket);
    if (verdict !== undefined) settle(verdict === true ? undefined : verdict);
  });
  socket.on('error', (error) => settle(error.code ?? 'ERROR'));
  socket.on('close', () => {
    sockets.delete(socket);
    settle('ECLOSED');
  });
  return socket;
}

/** Call `fn` `rate` times a second, evenly (a timer every 10 ms sends what is due). */
function every(rate, fn) {
  const t0 = performance.now();
  let sent = 0;
  timers.push(
    setInterval(() => {
      for (const due = Math.floor(((performance.now() - t0) / 1000) * rate); sent < due; sent++) fn();
    }, 10),
  );
}

function websocket(port) {
  const key = randomBytes(16).toString('base64');
  const socket = net.connect(port, '127.0.0.1');
  sockets.add(socket);
  const ws = { socket, open: false, buffer: '', waiting: 0, closed: false };
  socket.setEncoding('latin1');
  socket.on('connect', () => socket.write(`GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
  socket.on('data', (chunk) => {
    ws.buffer += chunk;
    if (!ws.open) {
      const end = ws.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!ws.buffer.startsWith('HTTP/1.1 101')) {
        count('websocket', `HTTP ${ws.buffer.slice(9, 12)}`);
        socket.destroy();
        return;
      }
      ws.open = true;
      ws.buffer = ws.buffer.slice(end + 4);
    }
    // The backend echoes bytes; the proxy tunnels them untouched (no framing is needed to test that).
    while (ws.waiting > 0 && ws.buffer.length >= 64) {
      const message = ws.buffer.slice(0, 64);
      ws.buffer = ws.buffer.slice(64);
      ws.waiting--;
      count('websocket', message === MESSAGE ? undefined : 'EMISMATCH');
    }
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    sockets.delete(socket);
    if (!ws.closed) count('websocket', 'ECLOSED');
    ws.closed = true;
  });
  return ws;
}
const MESSAGE = 'm'.repeat(64);

function start({ reversePort, forwardPort, backendPort, scale = 1 }) {
  const target = `127.0.0.1:${backendPort}`;
  const get = new RoundRobinClient({ port: reversePort, maxConns: 16, timeoutMs: 10_000 });
  const absolute = new RoundRobinClient({ port: forwardPort, maxConns: 8, timeoutMs: 10_000 });
  absolute.head = Buffer.from(`GET http://${target}/ HTTP/1.1\r\nHost: ${target}\r\n\r\n`, 'latin1');
  clients.push(get, absolute);
  const record = (kind) => (status, error) => count(kind, status === 200 ? undefined : (error ?? `HTTP ${status}`));
  every(RATES.get * scale, () => get.request(record('get')));
  every(RATES.absolute * scale, () => absolute.request(record('absolute')));
  every(RATES.post * scale, () =>
    exchange(
      reversePort,
      'post',
      (socket) => {
        socket.write(`POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n`);
        socket.write(BODY);
      },
      (text) => (text.includes(`got ${BODY.length} bytes`) ? true : /^HTTP\/1\.1 [45]/.test(text) ? `HTTP ${text.slice(9, 12)}` : undefined),
    ),
  );
  every(RATES.connect * scale, () => {
    let tunnelled = false;
    exchange(
      forwardPort,
      'connect',
      (socket) => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`),
      (text, socket) => {
        if (!tunnelled) {
          const end = text.indexOf('\r\n\r\n');
          if (end < 0) return undefined;
          if (!text.startsWith('HTTP/1.1 200')) return `HTTP ${text.slice(9, 12)}`;
          tunnelled = true;
          socket.write(`GET / HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`);
          return undefined;
        }
        return text.includes('hello\n') ? true : undefined;
      },
    );
  });
  // Aborts: counted as done when the abort happened (the proxy's side is what the soak watches).
  every(RATES.abortBody * scale, () => {
    const socket = net.connect(reversePort, '127.0.0.1', () => {
      socket.write(`POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: ${BODY.length}\r\n\r\n`);
      socket.write(HALF_BODY);
      setTimeout(() => {
        socket.resetAndDestroy();
        count('abort');
      }, 20);
    });
    socket.on('error', () => {});
  });
  every(RATES.abortResponse * scale, () => {
    const socket = net.connect(reversePort, '127.0.0.1', () => {
      socket.write('GET / HTTP/1.1\r\nHost: soak\r\n\r\n');
      socket.destroy();
      count('abort');
    });
    socket.on('error', () => {});
  });
  every(RATES.abortForward * scale, () => {
    const socket = net.connect(forwardPort, '127.0.0.1', () => {
      socket.resetAndDestroy();
      count('abort');
    });
    socket.on('error', () => {});
  });
  // WebSockets: a message every 500 ms on each; two of them replaced every 10 s.
  const sessions = Array.from({ length: WEBSOCKETS }, () => websocket(reversePort));
  timers.push(
    setInterval(() => {
      for (const [index, ws] of sessions.entries()) {
        if (ws.closed) sessions[index] = websocket(reversePort);
        else if (ws.open) {
          ws.waiting++;
          ws.socket.write(MESSAGE);
        }
      }
    }, 500),
    setInterval(() => {
      for (let i = 0; i < 2; i++) {
        const index = Math.floor(Math.random() * sessions.length);
        sessions[index].closed = true;
        sessions[index].socket.end();
        sessions[index] = websocket(reversePort);
      }
    }, 10_000),
  );
}

process.on('message', (message) => {
  if (message.type === 'start') start(message);
  else if (message.type === 'report') process.send({ type: 'report', kinds });
  else if (message.type === 'stop') {
    for (const timer of timers) clearInterval(timer);
    for (const client of clients) client.close();
    for (const socket of sockets) socket.destroy();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
