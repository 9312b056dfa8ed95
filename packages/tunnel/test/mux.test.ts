// The multiplexer: byte-exact streams both ways under any chunking and
// pausing, per-stream flow control (a stalled reader holds one window and
// never slows a parallel stream), half-close, reset, limits, protocol errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NetError, composeHead } from '@wmproxy/core-net';
import { FrameType, encodeFrame, u32 } from '../src/frame.js';
import { delay, muxPair, pattern, sink, split, streamPair, until, writeAll } from './helpers.js';

test('streams deliver byte-exact both ways under random chunking and random pause/resume', async () => {
  const { client, server, close } = await muxPair({ initialWindow: 16 * 1024, streamHighWater: 8 * 1024 });
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer({ min: 0, max: 200_000 }),
        fc.array(fc.integer({ min: 1, max: 40_000 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 8 }),
        fc.integer(),
        async (upSize, downSize, sizes, pauses, seed) => {
          const [a, b] = await streamPair(client, server);
          const up = pattern(upSize, seed);
          const down = pattern(downSize, seed + 1);
          const atB = sink(b, { pauseEvery: pauses });
          const atA = sink(a, { pauseEvery: [...pauses].reverse() });
          await Promise.all([writeAll(a, split(up, sizes)), writeAll(b, split(down, [...sizes].reverse()))]);
          const [gotB, gotA] = await Promise.all([atB.done, atA.done]);
          assert.equal(gotB.error, undefined);
          assert.ok(gotB.ended && gotA.ended);
          assert.deepEqual(Buffer.from(gotB.bytes).equals(Buffer.from(up)), true, 'client→server bytes differ');
          assert.deepEqual(Buffer.from(gotA.bytes).equals(Buffer.from(down)), true, 'server→client bytes differ');
        },
      ),
      { numRuns: 25 },
    );
    // Every stream closed cleanly and was forgotten on both sides.
    await until(() => client.streams.size === 0 && server.streams.size === 0, 'streams to be forgotten');
  } finally {
    close();
  }
});

test('a stalled stream holds at most one window and does not slow a parallel stream', async () => {
  const window = 64 * 1024;
  const { client, server, close } = await muxPair({ initialWindow: window, streamHighWater: 64 * 1024 });
  try {
    const [stalledA, stalledB] = await streamPair(client, server);
    const [healthyA, healthyB] = await streamPair(client, server);
    // The stalled reader pauses at once and never resumes.
    let stalledGot = 0;
    stalledB.setHandler({ data(c, chunk) { stalledGot += chunk.byteLength; c.pause(); }, close() {} });
    stalledB.pause();
    const stalledData = new Uint8Array(1024 * 1024);
    const stalledWriting = writeAll(stalledA, split(stalledData, [16 * 1024]));
    const healthy = sink(healthyB, { endOnEnd: true });
    const data = pattern(8 * 1024 * 1024, 7);
    await writeAll(healthyA, split(data, [65536]));
    const got = await healthy.done;
    assert.equal(got.bytes.byteLength, data.byteLength);
    assert.ok(Buffer.from(got.bytes).equals(Buffer.from(data)));
    // The stalled stream sent exactly its credit; the rest waits in its own bounded queue.
    assert.equal(stalledA.bytesWritten, window);
    assert.equal(stalledA.credit, 0);
    assert.ok(client.stats().queuedBytes <= 64 * 1024 + 16 * 1024, `queued ${client.stats().queuedBytes}`);
    assert.ok(stalledGot + server.stats().bufferedBytes <= window, `received ${stalledGot} + ${server.stats().bufferedBytes}`);
    // Resume: everything arrives.
    stalledB.setHandler({ data(_c, c2) { stalledGot += c2.byteLength; }, close() {} });
    stalledB.resume();
    await stalledWriting;
    await until(() => stalledGot === stalledData.byteLength, 'the stalled stream to catch up');
  } finally {
    close();
  }
});

test('half-close works both ways: each side ends independently and keeps reading', async () => {
  const { client, server, close } = await muxPair();
  try {
    const [a, b] = await streamPair(client, server);
    const events: string[] = [];
    b.setHandler({
      data(c, chunk) {
        events.push(`b:${Buffer.from(chunk).toString()}`);
      },
      end(c) {
        events.push('b:end');
        // The other direction still works after the peer's FIN.
        c.write(Buffer.from('late reply'));
        c.end();
      },
      close() {
        events.push('b:close');
      },
    });
    const closed = new Promise<void>((resolve) =>
      a.setHandler({
        data(_c, chunk) {
          events.push(`a:${Buffer.from(chunk).toString()}`);
        },
        end() {
          events.push('a:end');
        },
        close() {
          events.push('a:close');
          resolve();
        },
      }),
    );
    a.write(Buffer.from('hello'));
    a.end();
    await closed;
    await until(() => events.includes('b:close'), 'b to close');
    assert.deepEqual(events.filter((e) => e.startsWith('a')), ['a:late reply', 'a:end', 'a:close']);
    assert.deepEqual(events.filter((e) => e.startsWith('b')), ['b:hello', 'b:end', 'b:close']);
  } finally {
    close();
  }
});

test('a reset on one side closes the other with ECONNRESET, in both directions', async () => {
  const { client, server, close } = await muxPair();
  try {
    for (const resetter of ['client', 'server'] as const) {
      const [a, b] = await streamPair(client, server);
      const [local, remote] = resetter === 'client' ? [a, b] : [b, a];
      const gone = new Promise<Error | undefined>((resolve) => remote.setHandler({ data() {}, close: (_c, error) => resolve(error) }));
      local.setHandler({ data() {}, close() {} });
      local.destroy();
      const error = await gone;
      assert.ok(error instanceof NetError);
      assert.equal(error.code, 'ECONNRESET');
    }
  } finally {
    close();
  }
});

test('a refused open rejects with the peer reason; the stream limit refuses extra streams', async () => {
  const { client, server, close } = await muxPair({ maxStreams: 2 });
  try {
    server.setEvents({ open: (_m, stream) => stream.reject('no service here') });
    await assert.rejects(client.open(new Uint8Array(0)), (error: NetError) => error.code === 'ECONNREFUSED' && /no service here/.test(error.message));
    server.setEvents({ open: (_m, stream) => stream.accept() });
    const first = await client.open(new Uint8Array(0));
    const second = await client.open(new Uint8Array(0));
    await assert.rejects(client.open(new Uint8Array(0)), /too many streams \(limit 2\)/);
    first.destroy();
    await until(() => server.streams.size === 1, 'the server to forget the reset stream');
    const third = await client.open(new Uint8Array(0));
    assert.ok(third.accepted);
    second.destroy();
    third.destroy();
  } finally {
    close();
  }
});

test('data past the flow-control window is a protocol error: GOAWAY with the reason, then close', async () => {
  const { client, server, close } = await muxPair({ initialWindow: 1024 });
  try {
    const [a] = await streamPair(client, server);
    let goaway = '';
    const closed = new Promise<Error | undefined>((resolve) =>
      client.setEvents({ goaway: (_m, reason) => (goaway = reason), close: (_m, error) => resolve(error) }),
    );
    // Forge a frame bypassing the stream's credit accounting.
    client.conn.write(encodeFrame(FrameType.DATA, 0, a.streamId, new Uint8Array(2048)));
    await closed;
    assert.match(goaway, /protocol error: stream 1 sent past its flow-control window/);
    await until(() => server.closed, 'the server to close');
  } finally {
    close();
  }
});

test('a window update that overflows the window is a protocol error', async () => {
  const { client, server, close } = await muxPair();
  try {
    const [a] = await streamPair(client, server);
    const closed = new Promise<void>((resolve) => server.setEvents({ close: () => resolve() }));
    client.conn.write(encodeFrame(FrameType.WINDOW_UPDATE, 0, a.streamId, u32(0x7fffffff)));
    await closed;
    assert.ok(server.closed);
  } finally {
    close();
  }
});

test('a stream read quickly grows its window up to maxWindow; a stalled one keeps its initial window', async () => {
  const { client, server, close } = await muxPair({ initialWindow: 64 * 1024, maxWindow: 1024 * 1024 });
  try {
    const [fastA, fastB] = await streamPair(client, server);
    const [slowA, slowB] = await streamPair(client, server);
    slowB.setHandler({ data(c) { c.pause(); }, close() {} });
    slowB.pause();
    writeAll(slowA, split(new Uint8Array(2 * 1024 * 1024), [65536])).catch(() => undefined);
    const fast = sink(fastB, { endOnEnd: true });
    await writeAll(fastA, split(pattern(16 * 1024 * 1024, 3), [65536]));
    await fast.done;
    assert.equal(fastB.windowSize, 1024 * 1024);
    assert.equal(slowB.windowSize, 64 * 1024);
    assert.ok(server.stats().bufferedBytes <= 64 * 1024);
  } finally {
    close();
  }
});

test('a peer that goes silent (socket paused, not closed) is declared dead within two heartbeats; pings measure RTT', async () => {
  const { client, server, close } = await muxPair();
  try {
    client.startHeartbeat(100);
    server.startHeartbeat(100);
    await until(() => client.rttMs !== undefined && server.rttMs !== undefined, 'an RTT sample');
    const [a] = await streamPair(client, server);
    const streamClosed = new Promise<Error | undefined>((resolve) => a.setHandler({ data() {}, close: (_c, error) => resolve(error) }));
    const dead = new Promise<Error | undefined>((resolve) => client.setEvents({ close: (_m, error) => resolve(error) }));
    // Blackhole: the client stops reading; nothing is closed.
    client.conn.pause();
    const started = Date.now();
    const error = await dead;
    assert.ok(error instanceof NetError);
    assert.equal(error.code, 'ETIMEDOUT');
    assert.ok(Date.now() - started >= 100, 'not declared dead before a heartbeat passed');
    const streamError = await streamClosed;
    assert.equal((streamError as NetError).code, 'ETIMEDOUT');
  } finally {
    close();
  }
});

test('stream frames before the handshake are protocol errors', async () => {
  const { client, server, close } = await muxPair();
  try {
    server.established = false;
    const closed = new Promise<Error | undefined>((resolve) => server.setEvents({ close: (_m, error) => resolve(error) }));
    client.conn.write(encodeFrame(FrameType.OPEN, 0, 1));
    const error = await closed;
    assert.match(String(error?.message), /OPEN before the handshake/);
  } finally {
    close();
    await delay(1);
  }
});

test('a paused stream keeps views of a read only when they are at least half of it, else copies (a paused stream holds at most twice its window)', async () => {
  const { client, server, close } = await muxPair();
  try {
    const [, b] = await streamPair(client, server);
    const [, other] = await streamPair(client, server);
    const got: Uint8Array[] = [];
    let pauseAfter = Infinity;
    b.setHandler({ data(c, chunk) { got.push(chunk); if (got.length === pauseAfter) c.pause(); }, close() {} });
    other.setHandler({ data() {}, close() {} });
    b.pause();
    // Reads of their own size, as runtimes hand them out (Buffer.concat would share Node's pool).
    const read = (...frames: Array<[number, number]>): Uint8Array => new Uint8Array(Buffer.concat(frames.map(([id, size]) => encodeFrame(FrameType.DATA, 0, id, new Uint8Array(size)))));
    const sharesRead = (chunk: Uint8Array, of: Uint8Array): boolean => chunk.buffer === of.buffer;

    // The tail of a frame, a frame and the head of the next: each under half of the read, together nearly all: views.
    const whole = read([b.sid, 1000], [b.sid, 1000], [b.sid, 1000]);
    server.onData(whole);
    // Less than half of the read is this stream's (the rest went to a stream being read): copied.
    const little = read([b.sid, 100], [other.sid, 3000]);
    server.onData(little);
    // Together at least half, but the reader pauses after the first piece: the rest (under half) is copied then.
    const split = read([b.sid, 1600], [b.sid, 100], [b.sid, 100], [other.sid, 1200]);
    server.onData(split);
    assert.equal(server.stats().bufferedBytes, 3000 + 100 + 1800);

    pauseAfter = 5;
    b.resume();
    assert.deepEqual(got.map((c) => c.byteLength), [1000, 1000, 1000, 100, 1600]);
    assert.ok(got.slice(0, 3).every((c) => sharesRead(c, whole)), 'views of a read kept together');
    assert.ok(!sharesRead(got[3]!, little), 'a small share of a read is copied');
    assert.ok(sharesRead(got[4]!, split));
    pauseAfter = Infinity;
    b.resume();
    assert.deepEqual(got.slice(5).map((c) => c.byteLength), [100, 100]);
    assert.ok(got.slice(5).every((c) => !sharesRead(c, split)), 'what is left of a read after a pause, under half of it, is copied');
  } finally {
    close();
  }
});

test('a head composed in the shared buffer and written to a stream arrives intact when another is composed before the writer runs', async () => {
  const { client, server, close } = await muxPair();
  try {
    const [a, b] = await streamPair(client, server);
    const got = sink(b, { endOnEnd: true });
    const first = composeHead('GET /first HTTP/1.1\r\n', [['host', 'a.example']]);
    const expected = Buffer.from(first);
    a.write(first);
    // The reverse engine composes the next head (another request or response) in the same turn.
    composeHead('GET /other HTTP/1.1\r\n', [['host', 'b.example']]);
    a.end();
    const { bytes } = await got.done;
    assert.equal(Buffer.from(bytes).toString('latin1'), expected.toString('latin1'));
  } finally {
    close();
  }
});
