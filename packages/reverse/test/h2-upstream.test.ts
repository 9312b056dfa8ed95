// h2:// and h2c:// upstreams: curl (HTTP/1.1) → reverse proxy → node:http2
// backend. Requests become streams on one shared HTTP/2 connection, fields
// cross with the RFC 9113 rules, bodies both ways (chunked included),
// failover from a dead h2 server, TLS with ALPN h2.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import http2 from 'node:http2';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort, testPki, type TestPki } from '@wmproxy/testkit';
import { SERVING, grpcHealthServer } from '@wmproxy/testkit/grpc';
import { startProxy, until } from './helpers.js';

const run = promisify(execFile);
let dir = '';
let pki: TestPki;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'wmproxy-h2up-'));
  pki = testPki();
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
  pki.cleanup();
});

interface Seen {
  method: string;
  path: string;
  authority: string;
  headers: http2.IncomingHttpHeaders;
  bodyBytes: number;
  alpn: string | false | undefined;
}

/** A node:http2 backend that answers with what it saw (JSON); `/nolength` streams without content-length, with a trailer. */
async function h2Backend(secure = false): Promise<{ port: number; seen: Seen[]; sessions: number; close(): Promise<void> }> {
  const server = secure ? http2.createSecureServer({ cert: pki.server.cert, key: pki.server.key }) : http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  const state = { port: 0, seen: [] as Seen[], sessions: 0, close: async () => {} };
  server.on('session', (session) => {
    sessions.add(session);
    state.sessions++;
    session.on('error', () => undefined);
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => (bytes += chunk.byteLength));
    stream.on('end', () => {
      const seen: Seen = {
        method: String(headers[':method']),
        path: String(headers[':path']),
        authority: String(headers[':authority']),
        headers,
        bodyBytes: bytes,
        alpn: (stream.session?.socket as { alpnProtocol?: string | false } | undefined)?.alpnProtocol,
      };
      state.seen.push(seen);
      if (seen.path === '/nolength') {
        stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-done': 'yes' }));
        stream.write('part one, ');
        setTimeout(() => stream.end('part two'), 10);
        return;
      }
      const body = JSON.stringify({ method: seen.method, path: seen.path, authority: seen.authority, bodyBytes: bytes, te: headers.te ?? null, connection: headers.connection ?? null, xTest: headers['x-test'] ?? null });
      stream.respond({ ':status': seen.path === '/created' ? 201 : 200, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'x-backend': 'h2' });
      stream.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const session of sessions) session.destroy();
      server.close(() => resolve());
    });
  return state;
}

async function curl(args: string[]): Promise<{ status: number; headers: string; body: string }> {
  const out = await run('curl', ['-s', '--http1.1', '-D', '-', ...args], { maxBuffer: 8 << 20 });
  const split = out.stdout.indexOf('\r\n\r\n');
  const headers = out.stdout.slice(0, split);
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(headers)?.[1]), headers, body: out.stdout.slice(split + 4) };
}

test('h2c upstream: curl requests become streams on one HTTP/2 connection, fields and bodies translated', async () => {
  const backend = await h2Backend();
  const { proxy, base } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: `127.0.0.1:${backend.port}`, transport: 'h2c' }] }] });
  try {
    const get = await curl(['-H', 'X-Test: one', '-H', 'Connection: keep-alive, X-Gone', '-H', 'X-Gone: x', '-H', 'TE: trailers', `${base}/hello?q=1`]);
    assert.equal(get.status, 200);
    assert.match(get.headers, /^x-backend: h2$/im);
    const seen = JSON.parse(get.body) as Record<string, unknown>;
    assert.equal(seen.method, 'GET');
    assert.equal(seen.path, '/hello?q=1');
    assert.equal(seen.authority, base.slice('http://'.length), ':authority is the client\'s Host');
    assert.equal(seen.xTest, 'one');
    assert.equal(seen.connection, null, 'no connection-specific field reaches HTTP/2');
    assert.equal(backend.seen[0]!.headers['x-gone'], undefined, 'fields Connection names are dropped');
    // POST with a 1 MiB body (Content-Length), and a chunked upload.
    const file = join(dir, 'upload');
    writeFileSync(file, Buffer.alloc(1024 * 1024, 7));
    const post = await curl(['--data-binary', `@${file}`, `${base}/created`]);
    assert.equal(post.status, 201);
    assert.equal((JSON.parse(post.body) as { bodyBytes: number }).bodyBytes, 1024 * 1024);
    const chunked = await curl(['-H', 'Transfer-Encoding: chunked', '--data-binary', `@${file}`, `${base}/chunked`]);
    assert.equal((JSON.parse(chunked.body) as { bodyBytes: number }).bodyBytes, 1024 * 1024);
    // No content-length from the server: chunked to the client, the trailer in the last chunk.
    const streamed = await curl(['--raw', `${base}/nolength`]);
    assert.match(streamed.headers, /^transfer-encoding: chunked$/im);
    assert.match(streamed.body, /part one, [\s\S]*part two[\s\S]*0\r\nx-done: yes\r\n\r\n$/);
    // Many clients at once: still one HTTP/2 connection.
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => curl([`${base}/n${i}`])));
    assert.equal(many.every((r) => r.status === 200), true);
    assert.equal(backend.sessions, 1);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('h2 upstream over TLS (ALPN h2); a dead h2c server fails over to a live one', async () => {
  const secure = await h2Backend(true);
  const live = await h2Backend();
  const dead = await closedPort();
  const { proxy, base } = await startProxy({
    upstreams: [
      { name: 'tls', servers: [{ address: `127.0.0.1:${secure.port}`, transport: 'h2', tls: true, servername: 'localhost', tlsVerify: false }] },
      { name: 'pair', policy: 'first', servers: [{ address: `127.0.0.1:${dead}`, transport: 'h2c' }, { address: `127.0.0.1:${live.port}`, transport: 'h2c' }] },
    ],
    servers: [
      {
        listen: '127.0.0.1:0',
        vhosts: [{ locations: [{ path: '/tls/', upstream: 'tls' }, { path: '/', upstream: 'pair' }] }],
      },
    ],
  });
  try {
    const viaTls = await curl([`${base}/tls/x`]);
    assert.equal(viaTls.status, 200);
    assert.equal(secure.seen[0]!.alpn, 'h2');
    assert.equal((JSON.parse(viaTls.body) as { path: string }).path, '/tls/x');
    const failover = await curl([`${base}/y`]);
    assert.equal(failover.status, 200);
    assert.equal(live.seen.length, 1);
  } finally {
    await proxy.close();
    await secure.close();
    await live.close();
  }
});

test('health of h2c servers: an HTTP check goes through HTTP/2, a gRPC check speaks gRPC to the server', async () => {
  const backend = await h2Backend();
  const grpcServer = await grpcHealthServer({ statuses: { '': SERVING } });
  const httpAddress = `127.0.0.1:${backend.port}`;
  const grpcAddress = `127.0.0.1:${grpcServer.port}`;
  const { proxy } = await startProxy({
    upstreams: [
      { name: 'web', servers: [{ address: httpAddress, transport: 'h2c' }], health: { check: { type: 'http', path: '/healthz' }, intervalMs: 50, timeoutMs: 50, rise: 1, fall: 1 } },
      { name: 'rpc', servers: [{ address: grpcAddress, transport: 'h2c' }], health: { check: { type: 'grpc' }, intervalMs: 50, timeoutMs: 50, rise: 1, fall: 1 } },
    ],
  });
  try {
    await until(() => proxy.health.state(httpAddress) === 'healthy' && proxy.health.state(grpcAddress) === 'healthy', 'both healthy');
    assert.ok(backend.seen.some((seen) => seen.path === '/healthz' && seen.method === 'GET'), 'the HTTP check reached the h2 backend as an HTTP/2 request');
    assert.ok(grpcServer.requests.length > 0);
  } finally {
    await proxy.close();
    await backend.close();
    await grpcServer.close();
  }
});
