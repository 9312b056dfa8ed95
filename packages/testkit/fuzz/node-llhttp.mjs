#!/usr/bin/env node
// A node:http origin (llhttp, strict: insecureHTTPParser off) for the
// differential fuzzers, run as a child process so that it is llhttp even when
// the tests run on Bun. Started with an optional label (`node`, or `nginx-sink`
// when it sits behind nginx).
//
// On start it prints one line: {"ready":true,"port":N}. Then it answers
// commands, one JSON object per line on stdin, with one JSON line on stdout
// carrying the same `id`:
//   {"id":1,"cmd":"sync"}        -> {"id":1,"events":[...]}  every event since the last sync
//   {"id":2,"cmd":"parse","bytes":"<base64>"}
//        -> {"id":2,"events":[...]}  what llhttp made of these bytes on one fresh
//           connection (sent, then half-closed; answered once the server closed it)
//   {"id":3,"cmd":"parse-response","bytes":"<base64>","method":"GET"}
//        -> {"id":3,"ok":true,"status":200,"headers":[...],"body":"<base64>"} or {"id":3,"ok":false,"code":"HPE_..."}
//           (llhttp as an HTTP client reading these bytes as the answer to `method`)
// Events: {type:"request", conn, n, method, url, version, headers, trailers, body}
//         {type:"reject", conn, code, reason}   (a parse error: answered 400 and closed)
//         {type:"aborted", conn, method, url}   (the connection ended mid-body)
//         {type:"tunnel", conn, method, url, head}  (CONNECT: llhttp hands the rest over as tunnel bytes)
//         {type:"expectation", conn, method, url, reason}  (an Expect other than 100-continue: 417)
// Every request is answered 200 with X-Fuzz-* fields describing what was parsed
// and the same JSON as the body; parse errors get 400 with X-Fuzz-Origin: <label>-reject.
// It exits when stdin closes.
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';

const label = process.argv[2] ?? 'node';
let events = [];
const perSocket = new WeakMap();
const oracleEvents = new Map(); // local port of an oracle connection -> its events

function record(socket, event) {
  const port = socket.remotePort;
  const list = oracleEvents.get(port);
  if (list) list.push(event);
  else events.push(event);
}

function nextIndex(socket) {
  const n = (perSocket.get(socket) ?? 0) + 1;
  perSocket.set(socket, n);
  return n;
}

function answer(res, event, method) {
  const body = Buffer.from(JSON.stringify(event));
  res.setHeader('X-Fuzz-Origin', label);
  res.setHeader('X-Fuzz-Method', encodeURIComponent(event.method));
  res.setHeader('X-Fuzz-Target', encodeURIComponent(event.url));
  res.setHeader('X-Fuzz-Body-Length', String(event.bodyLength));
  res.setHeader('X-Fuzz-Body-Sha256', event.bodySha256);
  res.setHeader('X-Fuzz-N', String(event.n));
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', String(body.length));
  res.end(method === 'HEAD' ? undefined : body);
}

const server = http.createServer({ insecureHTTPParser: false }, (req, res) => {
  const socket = req.socket;
  const n = nextIndex(socket);
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('error', () => {});
  req.on('aborted', () => record(socket, { type: 'aborted', conn: socket.remotePort, n, method: req.method, url: req.url }));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const event = {
      type: 'request',
      // Behind nginx, the connection that counts is nginx's client connection.
      conn: req.headers['x-fuzz-nginx-conn'] !== undefined ? `nginx-${req.headers['x-fuzz-nginx-conn']}` : socket.remotePort,
      n,
      method: req.method,
      url: req.url,
      version: req.httpVersion,
      headers: req.rawHeaders,
      trailers: req.rawTrailers,
      body: body.toString('base64'),
      bodyLength: body.length,
      bodySha256: createHash('sha256').update(body).digest('hex'),
    };
    record(socket, event);
    answer(res, event, req.method);
  });
});
server.keepAliveTimeout = 30_000;
server.headersTimeout = 30_000;
server.requestTimeout = 0;

server.on('clientError', (error, socket) => {
  if (error.code === 'ECONNRESET' || error.code === 'EPIPE') {
    socket.destroy();
    return;
  }
  record(socket, { type: 'reject', conn: socket.remotePort, code: error.code, reason: error.reason ?? error.message });
  if (socket.writable) {
    socket.end(`HTTP/1.1 400 Bad Request\r\nX-Fuzz-Origin: ${label}-reject\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  } else socket.destroy();
});

// Node (not llhttp) answers an Expect other than 100-continue with 417: say so, as a refusal.
server.on('checkExpectation', (req, res) => {
  record(req.socket, { type: 'expectation', conn: req.socket.remotePort, method: req.method, url: req.url, reason: String(req.headers.expect) });
  res.writeHead(417, { 'X-Fuzz-Origin': `${label}-reject`, 'Content-Length': '0', Connection: 'close' });
  res.end();
});

server.on('connect', (req, socket, head) => {
  record(socket, { type: 'tunnel', conn: socket.remotePort, method: req.method, url: req.url, head: head.toString('base64') });
  socket.on('error', () => {});
  socket.end(`HTTP/1.1 405 Method Not Allowed\r\nX-Fuzz-Origin: ${label}-reject\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
});

/** Send `bytes` on a fresh connection to our own server; resolve with what it parsed once it closed. */
function parse(bytes) {
  return new Promise((resolve) => {
    const socket = net.connect(server.address().port, '127.0.0.1');
    let list;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      // The server may log the socket's last event just after the client saw it close.
      setImmediate(() => {
        oracleEvents.delete(socket.localPort);
        resolve(list ?? []);
      });
    };
    const timer = setTimeout(finish, 2_000);
    socket.on('connect', () => {
      list = [];
      oracleEvents.set(socket.localPort, list);
      socket.end(bytes);
    });
    socket.on('data', () => {});
    socket.on('error', finish);
    socket.on('close', finish);
  });
}

/** Serve `bytes` as a raw response and read it with node:http's client. */
function parseResponse(bytes, method) {
  return new Promise((resolve) => {
    const raw = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.end(bytes));
    });
    let settled = false;
    const finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      raw.close();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, code: 'TIMEOUT' }), 2_000);
    raw.listen(0, '127.0.0.1', () => {
      const req = http.request({ host: '127.0.0.1', port: raw.address().port, method, path: '/', agent: false, insecureHTTPParser: false }, (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('error', (error) => finish({ ok: false, code: error.code ?? 'ERROR', partial: true }));
        res.on('aborted', () => finish({ ok: false, code: 'ABORTED', partial: true }));
        res.on('end', () =>
          finish({ ok: true, status: res.statusCode, headers: res.rawHeaders, body: Buffer.concat(chunks).toString('base64') }),
        );
      });
      req.on('error', (error) => finish({ ok: false, code: error.code ?? 'ERROR' }));
      req.end();
    });
  });
}

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ ready: true, port: server.address().port }) + '\n');
});

const lines = createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  let command;
  try {
    command = JSON.parse(line);
  } catch {
    return;
  }
  let reply;
  switch (command.cmd) {
    case 'sync':
      reply = { events };
      events = [];
      break;
    case 'parse':
      reply = { events: await parse(Buffer.from(command.bytes, 'base64')) };
      break;
    case 'parse-response':
      reply = await parseResponse(Buffer.from(command.bytes, 'base64'), command.method ?? 'GET');
      break;
    default:
      reply = { error: `unknown command ${command.cmd}` };
  }
  process.stdout.write(JSON.stringify({ id: command.id, ...reply }) + '\n');
});
lines.on('close', () => process.exit(0));
