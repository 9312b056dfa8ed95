// Our client and our server over an in-memory pair: backpressure both ways,
// stream events, resets and GOAWAY as each side sees them.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import fc from 'fast-check';
import { echoServer } from '../helpers.js';
import {
  Server,
  parseAddress,
  connect,
  relay,
  Http2StreamConn,
  connPair,
  Http2Session,
  ErrorCode,
  FrameWriter,
  CLIENT_PREFACE,
  HpackEncoder,
  type Http2Stream,
  type Http2SessionHandler,
  type Http2StreamError,
} from '../../src/index.js';

const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

function pair(server: Http2SessionHandler, options = {}): { client: Http2Session; server: Http2Session } {
  const [a, b] = connPair();
  return { server: new Http2Session(a, 'server', server, options), client: new Http2Session(b, 'client', {}, options) };
}

const get = (path: string) => ({ method: 'GET', scheme: 'https', authority: 'example', path, headers: [] as string[] });

describe('Http2Session client and server', () => {
  test('a paused reader holds the sender to one stream window; the producer sees write() false, then drain', async () => {
    let serverStream: Http2Stream | undefined;
    let drains = 0;
    let writesRefused = 0;
    const chunk = new Uint8Array(16 * 1024);
    let sent = 0;
    const total = 2 * 1024 * 1024;
    const produce = (s: Http2Stream): void => {
      while (sent < total) {
        sent += chunk.byteLength;
        if (sent >= total) {
          s.end(chunk);
          return;
        }
        if (!s.write(chunk)) {
          writesRefused++;
          return;
        }
      }
    };
    const { client } = pair(
      {
        stream(s) {
          serverStream = s;
          s.setHandler({ data() {}, drain: (st) => (drains++, produce(st)), close() {} });
          s.respond(200);
          produce(s);
        },
      },
      { initialWindowSize: 64 * 1024, streamHighWaterMark: 64 * 1024 },
    );
    const stream = client.request(get('/'), true);
    let received = 0;
    let ended = false;
    stream.pause();
    stream.setHandler({ data: (_s, c) => (received += c.byteLength), end: () => (ended = true), close() {} });
    await tick(50);
    // Nothing delivered while paused; the server holds at most its high-water mark plus a window.
    assert.equal(received, 0);
    assert.ok(writesRefused >= 1);
    assert.ok(sent <= 64 * 1024 + 64 * 1024 + chunk.byteLength, `producer ran ahead: ${sent}`);
    assert.ok(serverStream!.bufferedAmount <= 64 * 1024 + chunk.byteLength);
    stream.resume();
    for (let i = 0; i < 200 && !ended; i++) await tick(10);
    assert.equal(ended, true);
    assert.equal(received, total);
    assert.ok(drains >= 1);
  });

  test('writeRange sends the range once, framed at once or copied when queued: overwriting the source afterwards changes nothing', async () => {
    const source = new Uint8Array(100_000).map((_, i) => (i * 13) % 251);
    const expected = Buffer.concat([source.subarray(5, 25), source.subarray(1000, 91_000)]).toString('hex');
    const { client } = pair({
      stream(s) {
        s.setHandler({ data() {}, close() {} });
        s.respond(200);
        s.writeRange(source, 5, 25); // small: one DATA frame straight from the source
        s.writeRange(source, 1000, 91_000); // beyond the 64 KiB window: copied into the queue
        source.fill(0);
        s.end();
      },
    });
    const stream = client.request(get('/'), true);
    const chunks: Buffer[] = [];
    let ended = false;
    stream.setHandler({ data: (_s, c) => chunks.push(Buffer.from(c)), end: () => (ended = true), close() {} });
    for (let i = 0; i < 200 && !ended; i++) await tick(10);
    assert.equal(ended, true);
    assert.equal(Buffer.concat(chunks).toString('hex'), expected);
  });

  test('a reset from the client reaches the server handler with CANCEL; the server reset reaches the client', async () => {
    const serverCloses: Array<number | undefined> = [];
    const { client } = pair({
      stream(s) {
        s.setHandler({ data() {}, close: (_st, error) => serverCloses.push(error?.code) });
        if (s.request!.path === '/reset-me') s.reset(ErrorCode.REFUSED_STREAM);
      },
    });
    const a = client.request(get('/hang'), true);
    const b = client.request(get('/reset-me'), true);
    const errors: Array<Http2StreamError | undefined> = [];
    a.setHandler({ data() {}, close: (_s, e) => errors.push(e) });
    b.setHandler({ data() {}, close: (_s, e) => errors.push(e) });
    await tick();
    a.reset();
    await tick();
    assert.deepEqual(serverCloses.sort(), [ErrorCode.CANCEL, ErrorCode.REFUSED_STREAM].sort());
    assert.equal(errors.length, 2);
    const refused = errors.find((e) => e?.code === ErrorCode.REFUSED_STREAM)!;
    assert.equal(refused.retryable, true);
    assert.equal(errors.find((e) => e?.code === ErrorCode.CANCEL)!.retryable, false);
  });

  test('a server GOAWAY stops new client streams; the client sees it and the session ends when streams finish', async () => {
    let goaway = -1;
    let pending: Http2Stream | undefined;
    const [a, b] = connPair();
    const server = new Http2Session(a, 'server', { stream: (s) => (pending = s) });
    const client = new Http2Session(b, 'client', { goaway: (_s, code) => (goaway = code) });
    const stream = client.request(get('/slow'), true);
    let status = 0;
    stream.setHandler({ response: (s) => (status = s.response!.status), data() {}, close() {} });
    await tick();
    server.close();
    await tick();
    assert.equal(goaway, ErrorCode.NO_ERROR);
    assert.equal(client.availableStreams, 0);
    assert.throws(() => client.request(get('/late'), true));
    pending!.respond(204, [], true);
    await tick();
    assert.equal(status, 204);
    await tick();
    assert.equal(server.closed && client.closed, true);
  });

  test('a response larger than the header table and frame size travels in CONTINUATION frames', async () => {
    const big = 'v'.repeat(40_000);
    const { client } = pair({
      stream(s) {
        s.respond(200, ['x-big', big], true);
      },
    });
    const stream = client.request(get('/'), true);
    const got = await new Promise<string[]>((resolve) => stream.setHandler({ response: (s) => resolve(s.response!.headers), data() {}, close() {} }));
    assert.deepEqual(got, ['x-big', big]);
  });
});

describe('Http2Session PING', () => {
  test('ping() resolves with a round trip from either side, and rejects when the connection closes', async () => {
    const { client, server } = pair({});
    const rtt = await client.ping();
    assert.ok(rtt >= 0);
    assert.ok((await server.ping()) >= 0);
    const lost = client.ping();
    client.destroy();
    await assert.rejects(lost, /closed before PING/);
  });
});

describe('Http2Session under random input', () => {
  test('random frames after a valid preface never throw out of the session: it answers or sends GOAWAY', async () => {
    const frame = fc.record({
      type: fc.integer({ min: 0, max: 10 }),
      flags: fc.integer({ min: 0, max: 255 }),
      stream: fc.constantFrom(0, 1, 2, 3, 5, 0x7fffffff),
      payload: fc.uint8Array({ maxLength: 40 }),
      headers: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { maxLength: 25 }), async (frames) => {
        const [a, b] = connPair();
        const server = new Http2Session(a, 'server', {
          stream(s) {
            s.setHandler({ data() {}, end: (st) => st.end(new Uint8Array(3)), close() {} });
            if (s.request!.path === '/x') s.respond(200, [], true);
          },
        });
        let received = 0;
        b.setHandler({ data: (_c, chunk) => (received += chunk.byteLength), close() {} });
        const w = new FrameWriter();
        w.raw(CLIENT_PREFACE);
        w.settings([]);
        const enc = new HpackEncoder();
        for (const f of frames) {
          // Half the HEADERS frames carry a valid block, so that streams open and the state machine is reached.
          const payload = f.type === 1 && f.headers ? enc.encode([':method', 'POST', ':scheme', 'http', ':authority', 'a', ':path', '/x']) : f.payload;
          w.bytes.set(payload, w.header(payload.byteLength, f.type, f.flags, f.stream));
        }
        b.write(w.take());
        await new Promise((r) => setTimeout(r, 1));
        assert.ok(received > 0); // at least the server's SETTINGS
        server.destroy();
        b.destroy();
      }),
      { numRuns: 300 },
    );
  });
});

describe('Http2StreamConn', () => {
  test('CONNECT over HTTP/2: a stream relayed to a TCP echo server, half-close passed through', async () => {
    const echo = await echoServer();
    const relays: Promise<unknown>[] = [];
    const server = await new Server({
      addresses: [parseAddress('127.0.0.1:0')],
      onConnection(conn) {
        new Http2Session(conn, 'server', {
          stream(stream) {
            const [host, port] = stream.request!.authority.split(':');
            stream.respond(200);
            const tunnel = new Http2StreamConn(stream);
            relays.push(connect({ host: host!, port: Number(port) }).then((upstream) => relay(tunnel, upstream)));
          },
        });
      },
    }).start();
    const port = Number(server.boundAddresses[0]!.split(':').pop());
    const client = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const req = client.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${echo.port}` });
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      const ended = new Promise((resolve) => req.on('end', resolve));
      req.write('hello ');
      req.end('tunnel');
      await ended;
      assert.equal(Buffer.concat(chunks).toString(), 'hello tunnel');
      const [stats] = (await Promise.all(relays)) as Array<{ reason: string; bytesUp: number; bytesDown: number }>;
      assert.equal(stats!.bytesUp, 12);
      assert.equal(stats!.bytesDown, 12);
    } finally {
      client.close();
      await echo.close();
      await server.shutdown({ deadlineMs: 100 });
    }
  });
});
