// The e2e backend: an HTTP(S) and TCP server whose failure mode is switched at
// run time, so tests can break one upstream in every way a real one breaks.
// Runs on Bun or Node, no dependencies.
//
// Ports (environment):
//   HTTP_PORT 8080     HTTP
//   TLS_PORT 8443      HTTPS, only when TLS_CERT and TLS_KEY hold PEM text
//   TCP_PORT 7000      TCP: greets with "hello <id>\n", then echoes
//   CONTROL_PORT 9000  the control API below; always answers, whatever the mode
//   BACKEND_ID         identity reported everywhere (default: the host name)
//   MODE               mode at start (default healthy; same syntax as below)
//
// HTTP: every response carries `X-Backend-Id: <id>`.
//   GET /health    200 "ok <id>"
//   GET /bytes/N   N bytes of 'x'
//   anything else  JSON {id, method, url, headers, remoteAddress, tls, bodyBytes}
//
// Modes (they apply to the HTTP, HTTPS and TCP ports alike):
//   healthy              as above
//   refuse               listeners closed and open connections reset (ECONNREFUSED)
//   hang                 connections accepted, nothing ever answered
//   slow?ms=N            every answer (and the TCP greeting) delayed by N ms (default 2000)
//   error?status=S       every HTTP request answered with S (default 500); TCP: "ERROR" and close
//   wrong-body           200, but the body is not what a healthy instance sends:
//                        /health says "degraded <id>", the echo says {"id", "wrong": true}
//   flap?ms=N            healthy and refuse alternate every N ms (default 2000), starting healthy
//
// Control API (CONTROL_PORT):
//   POST /mode/<mode>[?ms=N|status=S]   switch; answers the new state
//   GET  /mode                          {id, mode, ms, status, listening}
//   GET  /stats                         {id, requests, healthChecks, tcpConnections} since start or reset
//   POST /stats/reset
// Signals: SIGUSR1 switches to refuse, SIGUSR2 back to healthy (`docker kill --signal`).
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { createServer as createTcpServer } from 'node:net';
import { hostname } from 'node:os';

const id = process.env.BACKEND_ID || hostname();
const HTTP_PORT = Number(process.env.HTTP_PORT || 8080);
const TLS_PORT = Number(process.env.TLS_PORT || 8443);
const TCP_PORT = Number(process.env.TCP_PORT || 7000);
const CONTROL_PORT = Number(process.env.CONTROL_PORT || 9000);
const MODES = new Set(['healthy', 'refuse', 'hang', 'slow', 'error', 'wrong-body', 'flap']);
const BYTES_PATH = /^\/bytes\/(\d+)$/;
const BLOCK = Buffer.alloc(64 * 1024, 'x');

/** Current behaviour; `effective` is what flap currently acts as. */
const state = { mode: 'healthy', ms: 0, status: 500, effective: 'healthy' };
const stats = { requests: 0, healthChecks: 0, tcpConnections: 0 };
let flapTimer;

function log(message) {
  console.log(`flaky-backend ${id}: ${message}`);
}

// ------------------------------------------------------------------ servers
/** Every socket accepted on a data port, so that refuse can reset them. */
const sockets = new Set();
function track(socket) {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  socket.on('error', () => {});
}

function delayThen(action) {
  if (state.effective === 'slow') setTimeout(action, state.ms);
  else action();
}

function handleHttp(request, response) {
  stats.requests++;
  const url = request.url ?? '/';
  const isHealth = url === '/health' || url.startsWith('/health?');
  if (isHealth) stats.healthChecks++;
  if (state.effective === 'hang') return; // never answered; the socket stays open
  let bodyBytes = 0;
  request.on('data', (chunk) => (bodyBytes += chunk.length));
  request.on('end', () =>
    delayThen(() => {
      if (response.destroyed) return;
      response.setHeader('x-backend-id', id);
      if (state.effective === 'error') return send(response, state.status, 'text/plain', `error ${state.status} from ${id}\n`);
      const wrong = state.effective === 'wrong-body';
      if (isHealth) return send(response, 200, 'text/plain', wrong ? `degraded ${id}\n` : `ok ${id}\n`);
      const bytes = BYTES_PATH.exec(url);
      if (bytes && !wrong) return sendBytes(response, Math.min(Number(bytes[1]), 1 << 30));
      const body = wrong
        ? { id, wrong: true }
        : {
            id,
            method: request.method,
            url,
            headers: request.headers,
            remoteAddress: request.socket.remoteAddress,
            tls: Boolean(request.socket.encrypted),
            bodyBytes,
          };
      send(response, 200, 'application/json', JSON.stringify(body));
    }),
  );
}

function send(response, status, type, body) {
  response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

function sendBytes(response, size) {
  response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  let left = size;
  const pump = () => {
    while (left > 0) {
      const part = left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left);
      left -= part.length;
      if (!response.write(part)) return void response.once('drain', pump);
    }
    response.end();
  };
  pump();
}

function handleTcp(socket) {
  stats.tcpConnections++;
  if (state.effective === 'hang') return;
  delayThen(() => {
    if (socket.destroyed) return;
    if (state.effective === 'error') return void socket.end('ERROR\n');
    socket.write(state.effective === 'wrong-body' ? 'WRONG\n' : `hello ${id}\n`);
    socket.pipe(socket);
  });
}

const dataServers = [
  { name: 'http', port: HTTP_PORT, server: createHttpServer(handleHttp) },
  { name: 'tcp', port: TCP_PORT, server: createTcpServer(handleTcp) },
];
if (process.env.TLS_CERT && process.env.TLS_KEY) {
  dataServers.push({ name: 'https', port: TLS_PORT, server: createTlsServer({ cert: process.env.TLS_CERT, key: process.env.TLS_KEY }, handleHttp) });
}
for (const { server } of dataServers) {
  server.on('connection', track);
  server.on('secureConnection', track);
  // Keep-alive sockets must not outlive a test's mode switch by much.
  if ('keepAliveTimeout' in server) server.keepAliveTimeout = 5_000;
}

let listening = false;
function openListeners() {
  if (listening) return Promise.resolve();
  listening = true;
  return Promise.all(
    dataServers.map(({ server, port }) => new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    })),
  );
}

function closeListeners() {
  if (!listening) return;
  listening = false;
  for (const { server } of dataServers) server.close();
  for (const socket of sockets) socket.destroy();
}

// -------------------------------------------------------------------- modes
async function act(effective) {
  const wasHang = state.effective === 'hang';
  state.effective = effective;
  if (effective === 'refuse') return closeListeners();
  // Leaving hang: the requests it swallowed are dropped (the client has long given up).
  if (wasHang && effective !== 'hang') for (const socket of sockets) socket.destroy();
  await openListeners();
}

async function setMode(mode, params) {
  if (!MODES.has(mode)) throw new Error(`unknown mode ${mode} (one of ${[...MODES].join(', ')})`);
  const ms = mode === 'slow' || mode === 'flap' ? Number(params.get('ms') ?? 2000) : 0;
  const status = mode === 'error' ? Number(params.get('status') ?? 500) : 500;
  if (!Number.isFinite(ms) || ms < 0 || (mode === 'flap' && ms === 0)) throw new Error('ms must be a number >= 0 (> 0 for flap)');
  if (!Number.isInteger(status) || status < 100 || status > 599) throw new Error('status must be 100-599');
  clearInterval(flapTimer);
  flapTimer = undefined;
  Object.assign(state, { mode, ms, status });
  if (mode === 'flap') {
    await act('healthy');
    flapTimer = setInterval(() => void act(state.effective === 'healthy' ? 'refuse' : 'healthy'), state.ms);
  } else {
    await act(mode);
  }
  log(`mode ${describe()}`);
}

function describe() {
  return state.mode === 'slow' || state.mode === 'flap' ? `${state.mode} ${state.ms} ms` : state.mode === 'error' ? `error ${state.status}` : state.mode;
}

function snapshot() {
  return { id, mode: state.mode, ms: state.ms, status: state.status, effective: state.effective, listening };
}

// ------------------------------------------------------------------ control
const control = createHttpServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://control');
  const reply = (status, body) => send(response, status, 'application/json', JSON.stringify(body) + '\n');
  request.resume();
  request.on('end', async () => {
    try {
      if (url.pathname === '/mode' && request.method === 'GET') return reply(200, snapshot());
      if (url.pathname.startsWith('/mode/') && (request.method === 'POST' || request.method === 'PUT')) {
        await setMode(decodeURIComponent(url.pathname.slice('/mode/'.length)), url.searchParams);
        return reply(200, snapshot());
      }
      if (url.pathname === '/stats' && request.method === 'GET') return reply(200, { id, ...stats });
      if (url.pathname === '/stats/reset' && request.method === 'POST') {
        stats.requests = stats.healthChecks = stats.tcpConnections = 0;
        return reply(200, { id, ...stats });
      }
      reply(404, { error: `no route ${request.method} ${url.pathname}` });
    } catch (error) {
      reply(400, { error: error instanceof Error ? error.message : String(error) });
    }
  });
});

process.on('SIGUSR1', () => void setMode('refuse', new URLSearchParams()).catch((error) => log(String(error))));
process.on('SIGUSR2', () => void setMode('healthy', new URLSearchParams()).catch((error) => log(String(error))));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

const initial = new URL(`x:/${process.env.MODE || 'healthy'}`);
await new Promise((resolve) => control.listen(CONTROL_PORT, '0.0.0.0', resolve));
await setMode(initial.pathname.slice(1), initial.searchParams);
log(`${dataServers.map(({ name, port }) => `${name} ${port}`).join(', ')}, control ${CONTROL_PORT}`);
