// A conformance-style suite over raw frames: a hand-driven client speaks
// bytes to an Http2Session server and asserts on the frames it gets back.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { testRuntimes } from '../helpers.js';
import {
  Server,
  parseAddress,
  setRuntime,
  Http2Session,
  HpackEncoder,
  HpackDecoder,
  FrameWriter,
  FrameType,
  Flag,
  ErrorCode,
  CLIENT_PREFACE,
  type Http2Options,
  type Http2Stream,
} from '../../src/index.js';

const { runtimes, detected } = await testRuntimes();

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

const u32 = (b: Buffer, at = 0): number => b.readUInt32BE(at) & 0x7fffffff;

/** A client that writes raw bytes and splits what comes back into frames. */
class RawClient {
  frames: Frame[] = [];
  closed = false;
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  readonly enc = new HpackEncoder({ huffman: false });
  readonly dec = new HpackDecoder();
  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      while (this.buf.length >= 9) {
        const length = this.buf.readUIntBE(0, 3);
        if (this.buf.length < 9 + length) break;
        this.frames.push({ type: this.buf[3]!, flags: this.buf[4]!, streamId: u32(this.buf, 5), payload: this.buf.subarray(9, 9 + length) });
        this.buf = this.buf.subarray(9 + length);
      }
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  static async open(port: number, settings: Array<[number, number]> = []): Promise<RawClient> {
    const socket = net.connect({ port, host: '127.0.0.1' });
    await new Promise((resolve) => socket.once('connect', resolve));
    const client = new RawClient(socket);
    const w = new FrameWriter();
    w.raw(CLIENT_PREFACE);
    w.settings(settings);
    client.send(w.take());
    await client.until((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0);
    const ack = new FrameWriter();
    ack.settingsAck();
    client.send(ack.take());
    return client;
  }
  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }
  frame(build: (w: FrameWriter) => void): void {
    const w = new FrameWriter();
    build(w);
    this.send(w.take());
  }
  headers(streamId: number, fields: string[], endStream: boolean): void {
    this.frame((w) => w.headers(streamId, this.enc.encode(fields), endStream, 16384));
  }
  /** Fields as literals without indexing, bytes as given (no lower-casing, no checks). */
  rawHeaders(streamId: number, fields: string[], endStream: boolean): void {
    const bytes: number[] = [];
    for (let i = 0; i < fields.length; i += 2) {
      bytes.push(0x00);
      for (const text of [fields[i]!, fields[i + 1]!]) bytes.push(text.length, ...Buffer.from(text, 'latin1'));
    }
    this.frame((w) => w.headers(streamId, Uint8Array.from(bytes), endStream, 16384));
  }
  get(streamId: number, path = '/', extra: string[] = []): void {
    this.headers(streamId, [':method', 'GET', ':scheme', 'http', ':authority', 'test', ':path', path, ...extra], true);
  }
  /** Resolve with the first frame (from the start) matching; reject on close without it or after 5 s. */
  until(match: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching frame; got ${this.describe()}`)), timeoutMs);
      const check = (): void => {
        const found = this.frames.find(match);
        if (found) {
          clearTimeout(timer);
          resolve(found);
        } else if (this.closed) {
          clearTimeout(timer);
          reject(new Error(`closed without a matching frame; got ${this.describe()}`));
        } else this.waiters.push(check);
      };
      check();
    });
  }
  goaway(): Promise<{ lastStreamId: number; code: number }> {
    return this.until((f) => f.type === FrameType.GOAWAY).then((f) => ({ lastStreamId: u32(f.payload), code: f.payload.readUInt32BE(4) }));
  }
  rst(streamId: number): Promise<number> {
    return this.until((f) => f.type === FrameType.RST_STREAM && f.streamId === streamId).then((f) => f.payload.readUInt32BE(0));
  }
  /** Decoded response head of a stream. */
  async response(streamId: number): Promise<string[]> {
    const f = await this.until((x) => x.type === FrameType.HEADERS && x.streamId === streamId);
    const out: string[] = [];
    this.dec.decode(f.payload, out);
    return out;
  }
  dataBytes(streamId?: number): number {
    return this.frames.filter((f) => f.type === FrameType.DATA && (streamId === undefined || f.streamId === streamId)).reduce((n, f) => n + f.payload.length, 0);
  }
  describe(): string {
    return this.frames.map((f) => `${f.type}/${f.flags}/${f.streamId}`).join(' ');
  }
  close(): void {
    this.socket.destroy();
  }
}

const settle = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function serve(options: Partial<Http2Options> = {}, onStream?: (s: Http2Stream) => void) {
  const sessions: Http2Session[] = [];
  const handler = {
    stream(stream: Http2Stream) {
      if (onStream && stream.request!.path !== '/alive') return onStream(stream);
      stream.respond(200, ['content-length', '2']);
      stream.end(new TextEncoder().encode('ok'));
    },
  };
  const server = await new Server({
    addresses: [parseAddress('127.0.0.1:0')],
    onConnection(conn) {
      sessions.push(new Http2Session(conn, 'server', handler, options));
    },
  }).start();
  const port = Number(server.boundAddresses[0]!.split(':').pop());
  return { port, sessions, stop: () => server.shutdown({ deadlineMs: 50 }) };
}

/** The server still answers on a fresh connection (one bad peer hurts nobody else). */
async function stillServes(port: number): Promise<void> {
  const c = await RawClient.open(port);
  c.get(1, '/alive');
  const head = await c.response(1);
  assert.deepEqual(head.slice(0, 2), [':status', '200']);
  c.close();
}

for (const rt of runtimes) {
  describe(`HTTP/2 conformance over raw frames on the ${rt.name} runtime`, () => {
    after(() => setRuntime(detected));

    test('a bad preface is answered with GOAWAY PROTOCOL_ERROR and the connection closes', async () => {
      setRuntime(rt);
      const s = await serve();
      try {
        const socket = net.connect({ port: s.port, host: '127.0.0.1' });
        const got: Buffer[] = [];
        socket.on('data', (c: Buffer) => got.push(c));
        socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
        await new Promise((resolve) => socket.on('close', resolve));
        const all = Buffer.concat(got);
        // Server SETTINGS first, then GOAWAY (type 7) with PROTOCOL_ERROR.
        const at = all.indexOf(Buffer.from([0x07, 0x00, 0, 0, 0, 0]), 0);
        assert.ok(at >= 3, 'GOAWAY frame present');
        assert.equal(all.readUInt32BE(at + 6 + 4), ErrorCode.PROTOCOL_ERROR);
        await stillServes(s.port);
      } finally {
        await s.stop();
      }
    });

    test('flow control: DATA never exceeds the peer windows, and resumes exactly by WINDOW_UPDATE', async () => {
      setRuntime(rt);
      const big = new Uint8Array(200_000);
      const s = await serve({}, (stream) => {
        stream.respond(200);
        stream.end(big);
      });
      try {
        const c = await RawClient.open(s.port);
        c.get(1);
        await c.response(1);
        await settle(100);
        assert.equal(c.dataBytes(1), 65_535);
        c.frame((w) => w.windowUpdate(1, 1000)); // stream only: the connection window is still 0
        await settle(100);
        assert.equal(c.dataBytes(1), 65_535);
        c.frame((w) => w.windowUpdate(0, 10));
        await settle(100);
        assert.equal(c.dataBytes(1), 65_545);
        c.frame((w) => {
          w.windowUpdate(0, 1 << 20);
          w.windowUpdate(1, 1 << 20);
        });
        await c.until((f) => f.type === FrameType.DATA && (f.flags & Flag.END_STREAM) !== 0);
        assert.equal(c.dataBytes(1), 200_000);
        assert.ok(c.frames.every((f) => f.payload.length <= 16_384), 'no frame above the default MAX_FRAME_SIZE');
        c.close();
      } finally {
        await s.stop();
      }
    });

    test('streams sharing a small connection window take turns, frame by frame', async () => {
      setRuntime(rt);
      const s = await serve({}, (stream) => {
        stream.respond(200);
        stream.end(new Uint8Array(100_000));
      });
      try {
        // Stream windows of 1 MiB: only the 65 535-byte connection window limits.
        const c = await RawClient.open(s.port, [[0x4, 1 << 20]]);
        c.get(1);
        c.get(3);
        await c.response(3);
        await settle(100);
        assert.equal(c.dataBytes(), 65_535);
        const before = [c.dataBytes(1), c.dataBytes(3)];
        // Refill the connection window: both waiting streams continue, neither starves.
        c.frame((w) => w.windowUpdate(0, 65_536));
        await settle(100);
        const one = c.dataBytes(1) - before[0]!;
        const three = c.dataBytes(3) - before[1]!;
        assert.equal(one + three, 65_536);
        assert.ok(Math.abs(one - three) <= 16_384, `stream 1 got ${one}, stream 3 got ${three}`);
        c.close();
      } finally {
        await s.stop();
      }
    });

    test('a peer lowering SETTINGS_INITIAL_WINDOW_SIZE to 0 gets no DATA until it opens the stream window', async () => {
      setRuntime(rt);
      const s = await serve({}, (stream) => {
        stream.respond(200);
        stream.end(new Uint8Array(100));
      });
      try {
        const c = await RawClient.open(s.port, [[0x4, 0]]);
        c.get(1);
        await c.response(1);
        await settle(80);
        assert.equal(c.dataBytes(1), 0);
        c.frame((w) => w.windowUpdate(1, 40));
        await settle(80);
        assert.equal(c.dataBytes(1), 40);
        c.close();
      } finally {
        await s.stop();
      }
    });

    test('rapid reset (HEADERS + RST_STREAM in a loop) is answered with GOAWAY ENHANCE_YOUR_CALM', async () => {
      setRuntime(rt);
      let seen = 0;
      const s = await serve({ maxResetsPerSecond: 100 }, () => {
        seen++; // never answered: each stream stays open until the client resets it
      });
      try {
        const c = await RawClient.open(s.port);
        for (let id = 1; id < 2 * 300; id += 2) {
          c.headers(id, [':method', 'GET', ':scheme', 'http', ':authority', 't', ':path', '/'], true);
          c.frame((w) => w.rstStream(id, ErrorCode.CANCEL));
        }
        const g = await c.goaway();
        assert.equal(g.code, ErrorCode.ENHANCE_YOUR_CALM);
        assert.ok(seen <= 102, `handled ${seen} streams`);
        await stillServes(s.port);
      } finally {
        await s.stop();
      }
    });

    test('CONTINUATION flood: endless CONTINUATION frames are cut off with GOAWAY ENHANCE_YOUR_CALM', async () => {
      setRuntime(rt);
      const s = await serve();
      try {
        const c = await RawClient.open(s.port);
        const block = c.enc.encode([':method', 'GET', ':scheme', 'http', ':authority', 't', ':path', '/']);
        c.frame((w) => {
          const at = w.header(block.byteLength, FrameType.HEADERS, Flag.END_STREAM, 1);
          w.bytes.set(block, at);
          for (let i = 0; i < 200; i++) w.header(0, FrameType.CONTINUATION, 0, 1);
        });
        assert.equal((await c.goaway()).code, ErrorCode.ENHANCE_YOUR_CALM);
        const d = await RawClient.open(s.port);
        const junk = new Uint8Array(16_000).fill(0x41);
        d.frame((w) => {
          // HEADERS then 20 × 16 KB CONTINUATION: over the 128 KiB block cap.
          let at = w.header(junk.byteLength, FrameType.HEADERS, 0, 1);
          w.bytes.set(junk, at);
          for (let i = 0; i < 20; i++) {
            at = w.header(junk.byteLength, FrameType.CONTINUATION, 0, 1);
            w.bytes.set(junk, at);
          }
        });
        assert.equal((await d.goaway()).code, ErrorCode.ENHANCE_YOUR_CALM);
        await stillServes(s.port);
      } finally {
        await s.stop();
      }
    });

    test('an oversized header list (HPACK bomb) gets 431 on its stream; the connection goes on', async () => {
      setRuntime(rt);
      const s = await serve({ maxHeaderListSize: 8 * 1024 });
      try {
        const c = await RawClient.open(s.port);
        const fields = [':method', 'GET', ':scheme', 'http', ':authority', 't', ':path', '/'];
        for (let i = 0; i < 100; i++) fields.push('x-bomb', 'y'.repeat(200)); // one table entry, referenced 100 times
        c.headers(1, fields, true);
        const head = await c.response(1);
        assert.deepEqual(head.slice(0, 2), [':status', '431']);
        c.get(3);
        assert.deepEqual((await c.response(3)).slice(0, 2), [':status', '200']);
        assert.equal(c.frames.some((f) => f.type === FrameType.GOAWAY), false);
        c.close();
      } finally {
        await s.stop();
      }
    });

    test('SETTINGS, PING and empty DATA floods end in GOAWAY ENHANCE_YOUR_CALM', async () => {
      setRuntime(rt);
      const s = await serve({ maxControlFramesPerSecond: 100 }, (stream) => {
        stream.setHandler({ data() {}, close() {} });
      });
      try {
        const floods: Array<(w: FrameWriter) => void> = [
          (w) => w.settings([]),
          (w) => w.ping(false, new Uint8Array(8)),
          (w) => w.data(1, new Uint8Array(0), false),
        ];
        for (const flood of floods) {
          const c = await RawClient.open(s.port);
          c.headers(1, [':method', 'POST', ':scheme', 'http', ':authority', 't', ':path', '/'], false);
          c.frame((w) => {
            for (let i = 0; i < 300; i++) flood(w);
          });
          assert.equal((await c.goaway()).code, ErrorCode.ENHANCE_YOUR_CALM);
          c.close();
        }
        await stillServes(s.port);
      } finally {
        await s.stop();
      }
    });

    test('PING is answered with the same payload and ACK', async () => {
      setRuntime(rt);
      const s = await serve();
      try {
        const c = await RawClient.open(s.port);
        c.frame((w) => w.ping(false, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8])));
        const pong = await c.until((f) => f.type === FrameType.PING);
        assert.equal(pong.flags & Flag.ACK, Flag.ACK);
        assert.deepEqual([...pong.payload], [1, 2, 3, 4, 5, 6, 7, 8]);
        c.close();
      } finally {
        await s.stop();
      }
    });

    test('stream-id misuse: an even id, a reused lower id, and frames on idle streams are PROTOCOL_ERROR', async () => {
      setRuntime(rt);
      const s = await serve();
      try {
        const even = await RawClient.open(s.port);
        even.get(2);
        assert.equal((await even.goaway()).code, ErrorCode.PROTOCOL_ERROR);
        const lower = await RawClient.open(s.port);
        lower.get(5);
        await lower.response(5);
        lower.get(3);
        const g = await lower.goaway();
        assert.equal(g.code, ErrorCode.PROTOCOL_ERROR);
        assert.equal(g.lastStreamId, 5);
        const idle = await RawClient.open(s.port);
        idle.frame((w) => w.windowUpdate(7, 100));
        assert.equal((await idle.goaway()).code, ErrorCode.PROTOCOL_ERROR);
        const idleRst = await RawClient.open(s.port);
        idleRst.frame((w) => w.rstStream(9, ErrorCode.CANCEL));
        assert.equal((await idleRst.goaway()).code, ErrorCode.PROTOCOL_ERROR);
        await stillServes(s.port);
      } finally {
        await s.stop();
      }
    });

    test('frames above SETTINGS_MAX_FRAME_SIZE are a FRAME_SIZE_ERROR', async () => {
      setRuntime(rt);
      const s = await serve();
      try {
        const c = await RawClient.open(s.port);
        c.headers(1, [':method', 'POST', ':scheme', 'http', ':authority', 't', ':path', '/'], false);
        c.frame((w) => w.data(1, new Uint8Array(16_385), false));
        assert.equal((await c.goaway()).code, ErrorCode.FRAME_SIZE_ERROR);
      } finally {
        await s.stop();
      }
    });

    test('malformed requests are reset with PROTOCOL_ERROR, one stream at a time', async () => {
      setRuntime(rt);
      const s = await serve();
      try {
        const c = await RawClient.open(s.port);
        const base = [':method', 'GET', ':scheme', 'http', ':authority', 't', ':path', '/'];
        const bad: string[][] = [
          [...base, 'X-Upper', 'v'],
          [...base, 'connection', 'keep-alive'],
          [...base, 'transfer-encoding', 'chunked'],
          [...base, 'te', 'gzip'],
          [':method', 'GET', ':scheme', 'http', ':authority', 't'],
          ['x-first', '1', ...base],
          [...base, ':method', 'POST'],
          [...base, ':foo', 'bar'],
          [...base, 'x-crlf', 'a\r\nb'],
          [...base, 'x-space', ' padded'],
          // Pseudo-headers become the upstream request line and Host: a second target, a space or a bad host are refused.
          [':method', 'GET /admin', ':scheme', 'http', ':authority', 't', ':path', '/public'],
          [':method', 'GET', ':scheme', 'http', ':authority', 't', ':path', '/x HTTP/1.0\tZ'],
          [':method', 'GET', ':scheme', 'http', ':authority', 't', ':path', '/caf\u00e9'],
          [':method', 'GET', ':scheme', 'http', ':authority', 'a"b,for=1.2.3.4;x', ':path', '/'],
          [':method', 'GET', ':scheme', 'http', ':path', '/', 'host', 'a b'],
        ];
        let id = 1;
        for (const fields of bad) {
          c.rawHeaders(id, fields, true);
          assert.equal(await c.rst(id), ErrorCode.PROTOCOL_ERROR, `fields ${JSON.stringify(fields)}`);
          id += 2;
        }
        // te: trailers is allowed.
        c.headers(id, [...base, 'te', 'trailers'], true);
        assert.deepEqual((await c.response(id)).slice(0, 2), [':status', '200']);
        assert.equal(c.frames.some((f) => f.type === FrameType.GOAWAY), false);
        c.close();
      } finally {
        await s.stop();
      }
    });

    test('content-length that differs from the DATA sent is a stream PROTOCOL_ERROR', async () => {
      setRuntime(rt);
      const s = await serve({}, (stream) => stream.setHandler({ data() {}, end: (st) => st.end(), close() {} }));
      try {
        const c = await RawClient.open(s.port);
        c.headers(1, [':method', 'POST', ':scheme', 'http', ':authority', 't', ':path', '/', 'content-length', '10'], false);
        c.frame((w) => w.data(1, new Uint8Array(5), true));
        assert.equal(await c.rst(1), ErrorCode.PROTOCOL_ERROR);
        c.headers(3, [':method', 'POST', ':scheme', 'http', ':authority', 't', ':path', '/', 'content-length', '3'], false);
        c.frame((w) => w.data(3, new Uint8Array(4), false));
        assert.equal(await c.rst(3), ErrorCode.PROTOCOL_ERROR);
        c.headers(5, [':method', 'POST', ':scheme', 'http', ':authority', 't', ':path', '/', 'content-length', '3'], false);
        c.frame((w) => w.data(5, new Uint8Array(3), true));
        assert.deepEqual((await c.response(5)).slice(0, 2), [':status', '200']);
        c.close();
      } finally {
        await s.stop();
      }
    });

    test('MAX_CONCURRENT_STREAMS: a stream beyond the limit is refused with REFUSED_STREAM', async () => {
      setRuntime(rt);
      const s = await serve({ maxConcurrentStreams: 2 }, (stream) => stream.setHandler({ data() {}, close() {} }));
      try {
        const c = await RawClient.open(s.port);
        const settings = c.frames.find((f) => f.type === FrameType.SETTINGS)!;
        const announced = new Map<number, number>();
        for (let at = 0; at < settings.payload.length; at += 6) announced.set(settings.payload.readUInt16BE(at), settings.payload.readUInt32BE(at + 2));
        assert.equal(announced.get(0x3), 2);
        for (const id of [1, 3, 5]) c.headers(id, [':method', 'POST', ':scheme', 'http', ':authority', 't', ':path', '/'], false);
        assert.equal(await c.rst(5), ErrorCode.REFUSED_STREAM);
        await settle();
        assert.equal(c.frames.some((f) => f.type === FrameType.RST_STREAM && f.streamId !== 5), false);
        assert.equal(s.sessions[0]!.openStreams, 2);
        c.close();
      } finally {
        await s.stop();
      }
    });

    test('graceful GOAWAY: last-stream-id covers streams in flight, which finish; later streams are refused', async () => {
      setRuntime(rt);
      const s = await serve({}, (stream) => {
        stream.setHandler({
          data() {},
          end(st) {
            st.respond(200);
            st.end(new TextEncoder().encode('done'));
          },
          close() {},
        });
      });
      try {
        const c = await RawClient.open(s.port);
        c.headers(1, [':method', 'POST', ':scheme', 'http', ':authority', 't', ':path', '/'], false);
        c.headers(3, [':method', 'POST', ':scheme', 'http', ':authority', 't', ':path', '/'], false);
        await settle();
        s.sessions[0]!.close();
        const g = await c.goaway();
        assert.equal(g.code, ErrorCode.NO_ERROR);
        assert.equal(g.lastStreamId, 3);
        c.headers(5, [':method', 'GET', ':scheme', 'http', ':authority', 't', ':path', '/'], true);
        assert.equal(await c.rst(5), ErrorCode.REFUSED_STREAM);
        c.frame((w) => {
          w.data(1, new Uint8Array(1), true);
          w.data(3, new Uint8Array(1), true);
        });
        await c.until((f) => f.type === FrameType.DATA && f.streamId === 3 && (f.flags & Flag.END_STREAM) !== 0);
        await c.until((f) => f.type === FrameType.DATA && f.streamId === 1 && (f.flags & Flag.END_STREAM) !== 0);
        await new Promise<void>((resolve) => (c.closed ? resolve() : c.socket.once('close', () => resolve())));
        assert.equal(c.closed, true);
      } finally {
        await s.stop();
      }
    });

    test('a zero-window stall (the peer never reads) resets the stream after the stall timeout', async () => {
      setRuntime(rt);
      const closes: Array<number | undefined> = [];
      const s = await serve({ stallTimeoutMs: 200 }, (stream) => {
        stream.setHandler({ data() {}, close: (_st, error) => closes.push(error?.code) });
        stream.respond(200);
        stream.end(new Uint8Array(100_000));
      });
      try {
        const c = await RawClient.open(s.port);
        c.get(1);
        assert.equal(await c.rst(1), ErrorCode.CANCEL);
        assert.deepEqual(closes, [ErrorCode.CANCEL]);
        c.close();
      } finally {
        await s.stop();
      }
    });
  });
}
