// The HTTP/2 client pool against real servers: node:http2 (h2c and TLS with
// ALPN) and @grpc/grpc-js; connections packed by MAX_CONCURRENT_STREAMS,
// GOAWAY replays, PING liveness through a relay that can blackhole, idle
// close, deadlines, cancellation, streamed bodies with trailers.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { closedPort, selfSigned, testRuntimes } from '../helpers.js';
import { trackedServer } from '@wmproxy/testkit';
import { setRuntime, Http2ClientPool, Http2CallError, ErrorCode, type Http2Call, type Http2Headers } from '../../src/index.js';

const { runtimes, detected } = await testRuntimes();

let dir = '';
let cert = '';
let key = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'wmproxy-h2pool-'));
  ({ cert, key } = selfSigned(dir, 'localhost', 'DNS:localhost,IP:127.0.0.1'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString();
function field(list: Http2Headers | undefined, name: string): string | undefined {
  if (!list) return undefined;
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(what: () => boolean, label: string, ms = 5000): Promise<void> {
  for (let waited = 0; !what(); waited += 10) {
    if (waited > ms) throw new Error(`timed out waiting for ${label}`);
    await sleep(10);
  }
}

interface NodeServer {
  port: number;
  sessions: http2.ServerHttp2Session[];
  streams: http2.ServerHttp2Stream[];
  close(): Promise<void>;
}

/** A node:http2 server (h2c, or TLS with ALPN h2) running `onStream` for every stream. */
async function nodeServer(onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void, options: { tls?: boolean; maxConcurrentStreams?: number } = {}): Promise<NodeServer> {
  const settings = options.maxConcurrentStreams === undefined ? {} : { maxConcurrentStreams: options.maxConcurrentStreams };
  const server = options.tls ? http2.createSecureServer({ cert, key, settings }) : http2.createServer({ settings });
  const state: NodeServer = { port: 0, sessions: [], streams: [], close: async () => {} };
  server.on('session', (session) => {
    state.sessions.push(session);
    session.on('error', () => undefined);
  });
  server.on('stream', (stream, headers) => {
    state.streams.push(stream);
    stream.on('error', () => undefined);
    onStream(stream, headers);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const session of state.sessions) session.destroy();
      server.close(() => resolve());
    });
  return state;
}

/** Answers `hello <path>` after `delay` ms. */
function hello(delay = 0) {
  return (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void => {
    const answer = (): void => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'x-path': String(headers[':path']) });
      stream.end(`hello ${headers[':path']}`);
    };
    if (delay > 0) setTimeout(answer, delay);
    else answer();
  };
}

/** A TCP relay in front of `port` that can stop moving bytes (a blackholed peer: packets vanish, nothing is closed). */
async function pausableRelay(port: number): Promise<{ port: number; blackhole(): void; close(): Promise<void> }> {
  let holes = false;
  const pairs: Array<[net.Socket, net.Socket]> = [];
  const relay = await trackedServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    pairs.push([client, upstream]);
    if (holes) return;
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return {
    port: relay.port,
    blackhole() {
      holes = true;
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    close: async () => {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      await relay.close();
    },
  };
}

/** A call that collects everything and resolves when it closes. */
function collect(pool: Http2ClientPool, path: string, options: Parameters<Http2ClientPool['request']>[2] = {}): { call: Http2Call; done: Promise<{ status?: number; body: string; trailers?: Http2Headers; error?: Http2CallError }> } {
  let call!: Http2Call;
  const done = new Promise<{ status?: number; body: string; trailers?: Http2Headers; error?: Http2CallError }>((resolve) => {
    const chunks: Uint8Array[] = [];
    call = pool.request({ method: options.body || options.stream ? 'POST' : 'GET', path }, {
      data: (_c, chunk) => chunks.push(chunk),
      close: (c, error) => resolve({ status: c.response?.status, body: Buffer.concat(chunks).toString(), trailers: c.trailers, error }),
    }, options);
  });
  return { call, done };
}

for (const rt of runtimes) {
  describe(`HTTP/2 client pool on the ${rt.name} runtime`, () => {
    after(() => setRuntime(detected));

    test('h2c: 50 concurrent calls share one connection', async () => {
      setRuntime(rt);
      const server = await nodeServer(hello(5));
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: server.port });
      try {
        const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => pool.fetch({ method: 'GET', path: `/n${i}` })));
        assert.deepEqual(responses.map((r) => text(r.body)), Array.from({ length: 50 }, (_, i) => `hello /n${i}`));
        assert.equal(responses[7]!.status, 200);
        assert.equal(field(responses[7]!.headers, 'x-path'), '/n7');
        assert.equal(server.sessions.length, 1);
        assert.equal(pool.stats.connects, 1);
        assert.equal(pool.connections, 1);
      } finally {
        pool.close();
        await server.close();
      }
    });

    test('a new connection opens when MAX_CONCURRENT_STREAMS is reached, and no connection carries more', async () => {
      setRuntime(rt);
      let open = 0;
      let peak = 0;
      const server = await nodeServer((stream, headers) => {
        open++;
        peak = Math.max(peak, open);
        stream.on('close', () => open--);
        hello(30)(stream, headers);
      }, { maxConcurrentStreams: 2 });
      const perSession = new Map<unknown, number>();
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: server.port, maxConnections: 3 });
      try {
        const calls = Array.from({ length: 12 }, (_, i) => pool.fetch({ method: 'GET', path: `/c${i}` }));
        const results = await Promise.all(calls);
        assert.equal(results.every((r) => r.status === 200), true);
        for (const stream of server.streams) perSession.set(stream.session!, (perSession.get(stream.session!) ?? 0) + 1);
        assert.equal(server.sessions.length, 3);
        assert.equal(peak <= 6, true, `peak ${peak}`);
        assert.equal(pool.stats.replayed, 0, 'no stream was refused: the pool respected the limit');
        assert.equal([...perSession.values()].reduce((a, b) => a + b), 12);
      } finally {
        pool.close();
        await server.close();
      }
    });

    test('TLS with ALPN h2 works; a TLS server without h2 is refused with EPROTO', async () => {
      setRuntime(rt);
      const server = await nodeServer(hello(), { tls: true });
      // A TLS server that knows no ALPN at all (chooses none), and one that offers only http/1.1 (refuses h2 with an alert).
      const h1 = tls.createServer({ cert, key }, (socket) => socket.end());
      const h1Only = https.createServer({ cert, key, ALPNProtocols: ['http/1.1'] }, (_req, res) => res.end('h1'));
      await new Promise<void>((resolve) => h1Only.listen(0, '127.0.0.1', resolve));
      await new Promise<void>((resolve) => h1.listen(0, '127.0.0.1', resolve));
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: server.port, tls: { ca: cert, servername: 'localhost' } });
      const h1Pool = new Http2ClientPool({ host: '127.0.0.1', port: (h1.address() as net.AddressInfo).port, tls: { rejectUnauthorized: false } });
      const h1OnlyPool = new Http2ClientPool({ host: '127.0.0.1', port: (h1Only.address() as net.AddressInfo).port, tls: { rejectUnauthorized: false } });
      const untrusted = new Http2ClientPool({ host: '127.0.0.1', port: server.port, tls: true });
      try {
        const response = await pool.fetch({ method: 'GET', path: '/secure' });
        assert.equal(text(response.body), 'hello /secure');
        assert.equal(pool.scheme, 'https');
        await assert.rejects(h1Pool.fetch({ method: 'GET', path: '/' }), (error: Http2CallError) => error.code === 'EPROTO' && /did not agree on h2/.test(error.message) && error.notProcessed);
        await assert.rejects(h1OnlyPool.fetch({ method: 'GET', path: '/' }), (error: Http2CallError) => error instanceof Http2CallError && /application protocol|did not agree on h2/.test(error.message) && error.notProcessed);
        await assert.rejects(untrusted.fetch({ method: 'GET', path: '/' }), (error: Http2CallError) => error instanceof Http2CallError && error.notProcessed);
      } finally {
        pool.close();
        h1Pool.close();
        h1OnlyPool.close();
        untrusted.close();
        h1.close();
        h1Only.close();
        await server.close();
      }
    });

    test('a streamed 4 MiB upload with backpressure and trailers both ways', async () => {
      setRuntime(rt);
      const server = await nodeServer((stream) => {
        let size = 0;
        let trailer = '';
        stream.on('trailers', (t) => (trailer = String(t['x-client-trailer'])));
        // Read slowly at first: the client must wait for drain.
        stream.pause();
        setTimeout(() => stream.resume(), 50);
        stream.on('data', (chunk: Buffer) => (size += chunk.byteLength));
        stream.on('end', () => {
          stream.respond({ ':status': 200 }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'x-size': String(size), 'x-got-trailer': trailer }));
          stream.end('ok');
        });
      });
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: server.port });
      try {
        const total = 4 * 1024 * 1024;
        const piece = new Uint8Array(64 * 1024).fill(7);
        let written = 0;
        let refused = 0;
        let drains = 0;
        const { call, done } = collect(pool, '/upload', { stream: true });
        const pump = (): void => {
          while (written < total) {
            written += piece.byteLength;
            if (written >= total) {
              call.end(piece, ['x-client-trailer', 'yes']);
              return;
            }
            if (!call.write(piece)) {
              refused++;
              return;
            }
          }
        };
        (call.handler as { drain?: () => void }).drain = () => {
          drains++;
          pump();
        };
        pump();
        const result = await done;
        assert.equal(result.error, undefined);
        assert.equal(result.body, 'ok');
        assert.equal(field(result.trailers, 'x-size'), String(total));
        assert.equal(field(result.trailers, 'x-got-trailer'), 'yes');
        assert.equal(refused > 0 && drains === refused, true, `refused ${refused}, drains ${drains}`);
      } finally {
        pool.close();
        await server.close();
      }
    });

    test('GOAWAY: calls above its last stream id are replayed on a new connection; a streamed one fails as not processed', async () => {
      setRuntime(rt);
      let seen = 0;
      const server = await nodeServer((stream, headers) => {
        seen++;
        if (seen === 1) setTimeout(() => hello()(stream, headers), 60);
        if (seen === 4) stream.session!.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
        if (seen > 4) hello()(stream, headers);
      });
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: server.port, maxConnections: 1 });
      try {
        const first = collect(pool, '/1');
        const second = collect(pool, '/2');
        const streamed = collect(pool, '/3', { stream: true });
        streamed.call.write(new Uint8Array(10));
        const fourth = collect(pool, '/4');
        const [a, b, c, d] = await Promise.all([first.done, second.done, streamed.done, fourth.done]);
        assert.equal(a.body, 'hello /1', 'the stream below last-stream-id finishes');
        assert.equal(b.body, 'hello /2');
        assert.equal(d.body, 'hello /4');
        assert.equal(c.error?.notProcessed, true);
        assert.equal(c.error?.http2Code, ErrorCode.REFUSED_STREAM);
        assert.equal(pool.stats.replayed, 2);
        assert.equal(server.sessions.length, 2);
      } finally {
        pool.close();
        await server.close();
      }
    });

    test('a deadline fails the call with ETIMEDOUT and resets its stream with CANCEL', async () => {
      setRuntime(rt);
      const server = await nodeServer(() => undefined);
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: server.port });
      try {
        const result = await collect(pool, '/slow', { deadlineMs: 100 }).done;
        assert.equal(result.error?.code, 'ETIMEDOUT');
        assert.match(result.error!.message, /100 ms deadline/);
        await until(() => server.streams[0]?.rstCode === http2.constants.NGHTTP2_CANCEL, 'the server to see RST_STREAM CANCEL');
        // The connection survives the reset.
        assert.equal(pool.connections, 1);
      } finally {
        pool.close();
        await server.close();
      }
    });

    test('a response head that ends the stream with a non-zero content-length is malformed: the call fails, the connection stays', async () => {
      setRuntime(rt);
      const server = await nodeServer((stream) => stream.respond({ ':status': 200, 'content-length': '5' }, { endStream: true }));
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: server.port });
      try {
        const result = await collect(pool, '/liar').done;
        assert.ok(result.error, 'the call fails instead of waiting for 5 bytes that never come');
        assert.match(result.error!.message, /content-length/);
        assert.equal(pool.connections, 1, 'a stream error, not a connection error');
      } finally {
        pool.close();
        await server.close();
      }
    });

    test('cancellation by AbortSignal: EABORTED, RST_STREAM CANCEL, other streams unaffected', async () => {
      setRuntime(rt);
      const server = await nodeServer((stream, headers) => {
        if (headers[':path'] === '/ok') setTimeout(() => hello()(stream, headers), 50);
      });
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: server.port });
      try {
        const controller = new AbortController();
        const cancelled = collect(pool, '/hang', { signal: controller.signal });
        const ok = collect(pool, '/ok');
        await until(() => server.streams.length === 2, 'both streams at the server');
        controller.abort();
        const [a, b] = await Promise.all([cancelled.done, ok.done]);
        assert.equal(a.error?.code, 'EABORTED');
        assert.equal(b.body, 'hello /ok');
        await until(() => server.streams.some((s) => s.rstCode === http2.constants.NGHTTP2_CANCEL), 'RST_STREAM CANCEL at the server');
        // Cancelling before a stream exists never reaches the server.
        const early = collect(pool, '/early', { signal: AbortSignal.abort() });
        assert.equal((await early.done).error?.code, 'EABORTED');
      } finally {
        pool.close();
        await server.close();
      }
    });

    test('PING liveness: a blackholed connection is dropped; the next call opens a new one', async () => {
      setRuntime(rt);
      const server = await nodeServer(hello());
      const relay = await pausableRelay(server.port);
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: relay.port, pingIntervalMs: 50, pingTimeoutMs: 100 });
      try {
        assert.equal(text((await pool.fetch({ method: 'GET', path: '/before' })).body), 'hello /before');
        const inFlight = collect(pool, '/lost');
        relay.blackhole();
        const lost = await inFlight.done;
        assert.equal(pool.stats.pingTimeouts, 1);
        assert.equal(lost.error?.code, 'ETIMEDOUT');
        assert.match(lost.error!.message, /PING not answered/);
        assert.equal(pool.connections, 0);
        assert.equal(pool.stats.connects, 1);
      } finally {
        pool.close();
        await relay.close();
        await server.close();
      }
    });

    test('an idle connection is closed with GOAWAY; answered PINGs keep a busy one', async () => {
      setRuntime(rt);
      const server = await nodeServer(hello());
      const pool = new Http2ClientPool({ host: '127.0.0.1', port: server.port, idleTimeoutMs: 150, pingIntervalMs: 40 });
      try {
        await pool.fetch({ method: 'GET', path: '/' });
        let goaway = false;
        server.sessions[0]!.on('goaway', () => (goaway = true));
        await until(() => pool.connections === 0, 'the idle close');
        await until(() => goaway, 'GOAWAY at the server');
        assert.equal(pool.stats.pingTimeouts, 0);
        await pool.fetch({ method: 'GET', path: '/again' });
        assert.equal(pool.stats.connects, 2);
      } finally {
        pool.close();
        await server.close();
      }
    });

    test('connect failures: refused, and a server that never sends SETTINGS (connect timeout)', async () => {
      setRuntime(rt);
      const refused = new Http2ClientPool({ host: '127.0.0.1', port: await closedPort() });
      const silent = await trackedServer(() => undefined);
      const mute = new Http2ClientPool({ host: '127.0.0.1', port: silent.port, connectTimeoutMs: 150 });
      try {
        const results = await Promise.all([collect(refused, '/a').done, collect(refused, '/b').done]);
        for (const result of results) {
          assert.equal(result.error?.code, 'ECONNREFUSED');
          assert.equal(result.error?.notProcessed, true);
        }
        const timedOut = await collect(mute, '/').done;
        assert.equal(timedOut.error?.code, 'ETIMEDOUT');
        assert.match(timedOut.error!.message, /no HTTP\/2 SETTINGS/);
        assert.equal(mute.connections, 0);
      } finally {
        refused.close();
        mute.close();
        await silent.close();
      }
    });

    test('gRPC: a unary call to @grpc/grpc-js with length-prefixed messages and grpc-status in trailers', async () => {
      setRuntime(rt);
      const server = new grpc.Server();
      const identity = (b: Buffer): Buffer => b;
      server.addService(
        { Echo: { path: '/test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
        {
          Echo(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
            if (call.request.toString() === 'fail') callback({ code: grpc.status.FAILED_PRECONDITION, details: 'asked to fail' });
            else callback(null, Buffer.concat([Buffer.from('echo:'), call.request]));
          },
        },
      );
      const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))));
      const pool = new Http2ClientPool({ host: '127.0.0.1', port });
      const frame = (message: string): Uint8Array => {
        const body = Buffer.from(message);
        const out = Buffer.alloc(5 + body.byteLength);
        out.writeUInt32BE(body.byteLength, 1);
        body.copy(out, 5);
        return out;
      };
      const headers = ['content-type', 'application/grpc', 'te', 'trailers'];
      try {
        const ok = await pool.fetch({ method: 'POST', path: '/test.Echo/Echo', headers }, { body: frame('hi') });
        assert.equal(ok.status, 200);
        assert.equal(Buffer.from(ok.body).subarray(5).toString(), 'echo:hi');
        assert.equal(field(ok.trailers, 'grpc-status'), '0');
        const failed = await pool.fetch({ method: 'POST', path: '/test.Echo/Echo', headers }, { body: frame('fail') });
        assert.equal(field(failed.trailers, 'grpc-status') ?? field(failed.headers, 'grpc-status'), String(grpc.status.FAILED_PRECONDITION));
        const unknown = await pool.fetch({ method: 'POST', path: '/test.Echo/Nope', headers }, { body: frame('x') });
        assert.equal(field(unknown.trailers, 'grpc-status') ?? field(unknown.headers, 'grpc-status'), String(grpc.status.UNIMPLEMENTED));
      } finally {
        pool.close();
        server.forceShutdown();
      }
    });
  });
}
