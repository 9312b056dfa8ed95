// The frame codec: frames survive any chunking byte-exact; garbage and
// oversized headers end in a ProtocolError and nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameDecoder, FrameType, ProtocolError, encodeFrame, HEADER_SIZE, MAX_DATAGRAM, type FrameSink } from '../src/frame.js';

interface Seen {
  type: number;
  flags: number;
  id: number;
  payload: number[];
}

function collector(): FrameSink & { seen: Seen[] } {
  const seen: Seen[] = [];
  return {
    seen,
    frame(type, flags, id, payload) {
      seen.push({ type, flags, id, payload: [...payload] });
    },
  };
}

/** DATA is a byte stream: the decoder may hand a frame out in pieces. Merge adjacent DATA of one stream (and drop empty ones) on both sides. */
function mergeData(frames: Seen[]): Seen[] {
  const out: Seen[] = [];
  for (const frame of frames) {
    if (frame.type === FrameType.DATA) {
      if (frame.payload.length === 0) continue;
      const last = out[out.length - 1];
      if (last && last.type === FrameType.DATA && last.id === frame.id && last.flags === frame.flags) {
        last.payload = [...last.payload, ...frame.payload];
        continue;
      }
    }
    out.push({ ...frame, payload: [...frame.payload] });
  }
  return out;
}

/** Split `bytes` at the given cut points (any order, duplicates allowed). */
function chunked(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.byteLength + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let last = 0;
  for (const point of points) {
    out.push(bytes.slice(last, point));
    last = point;
  }
  out.push(bytes.slice(last));
  return out;
}

const frameArb = fc.oneof(
  fc.record({ type: fc.constant(FrameType.DATA), flags: fc.integer({ min: 0, max: 255 }), id: fc.nat(), payload: fc.uint8Array({ maxLength: 3000 }) }),
  fc.record({ type: fc.constant(FrameType.WINDOW_UPDATE), flags: fc.constant(0), id: fc.nat(), payload: fc.uint8Array({ minLength: 4, maxLength: 4 }) }),
  fc.record({ type: fc.constantFrom(FrameType.PING, FrameType.PONG), flags: fc.constant(0), id: fc.constant(0), payload: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
  fc.record({ type: fc.constantFrom(FrameType.FIN, FrameType.OPEN_OK), flags: fc.constant(0), id: fc.nat(), payload: fc.constant(new Uint8Array(0)) }),
  fc.record({ type: fc.constantFrom(FrameType.RST, FrameType.GOAWAY, FrameType.OPEN, FrameType.DATAGRAM), flags: fc.integer({ min: 0, max: 1 }), id: fc.nat(), payload: fc.uint8Array({ maxLength: 200 }) }),
);

test('frames round-trip byte-exact however the stream is chunked', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (frames, cuts) => {
      const wire = frames.map((f) => encodeFrame(f.type, f.flags, f.id, f.payload));
      const all = new Uint8Array(wire.reduce((n, w) => n + w.byteLength, 0));
      let at = 0;
      for (const w of wire) {
        all.set(w, at);
        at += w.byteLength;
      }
      const sink = collector();
      const decoder = new FrameDecoder();
      for (const chunk of chunked(all, cuts)) decoder.push(chunk, sink);
      assert.deepEqual(
        mergeData(sink.seen),
        mergeData(frames.map((f) => ({ type: f.type, flags: f.flags, id: f.id, payload: [...f.payload] }))),
      );
      assert.equal(decoder.buffered, 0);
    }),
    { numRuns: 300 },
  );
});

test('a partial frame is kept by copy: a caller that reuses one Buffer for every read (a Buffer\'s slice() is a view) loses nothing', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (frames, cuts) => {
      const all = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.flags, f.id, f.payload)));
      const sink = collector();
      const decoder = new FrameDecoder();
      const readBuffer = Buffer.alloc(all.byteLength + 1);
      for (const chunk of chunked(all, cuts)) {
        readBuffer.set(chunk);
        decoder.push(readBuffer.subarray(0, chunk.byteLength), sink);
        readBuffer.fill(0xee);
      }
      assert.deepEqual(
        mergeData(sink.seen),
        mergeData(frames.map((f) => ({ type: f.type, flags: f.flags, id: f.id, payload: [...f.payload] }))),
      );
    }),
    { numRuns: 300 },
  );
});

test('random garbage only ever raises a ProtocolError, and the decoder stays dead after one', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 10 }), (garbage, cuts) => {
      const decoder = new FrameDecoder(4096);
      const sink = collector();
      let failed = false;
      for (const chunk of chunked(garbage, cuts)) {
        try {
          decoder.push(chunk, sink);
        } catch (error) {
          assert.ok(error instanceof ProtocolError, `threw ${String(error)}`);
          failed = true;
          break;
        }
      }
      if (failed) assert.throws(() => decoder.push(new Uint8Array(1), sink), ProtocolError);
      // Never holds more than one bounded frame.
      assert.ok(decoder.buffered <= 4096 + HEADER_SIZE);
    }),
    { numRuns: 500 },
  );
});

test('an oversized length is refused from the header, before its payload arrives', () => {
  const decoder = new FrameDecoder(1024);
  const header = encodeFrame(FrameType.DATA, 0, 1, new Uint8Array(2000)).subarray(0, HEADER_SIZE);
  assert.throws(() => decoder.push(header, collector()), /exceeds the limit of 1024/);
  const datagram = new FrameDecoder(1 << 20);
  const big = encodeFrame(FrameType.DATAGRAM, 0, 1, new Uint8Array(MAX_DATAGRAM + 1)).subarray(0, HEADER_SIZE);
  assert.throws(() => datagram.push(big, collector()), ProtocolError);
});

test('fixed-size frames of the wrong size and unknown types are protocol errors', () => {
  assert.throws(() => new FrameDecoder().push(encodeFrame(FrameType.WINDOW_UPDATE, 0, 1, new Uint8Array(3)), collector()), /shorter than 4/);
  assert.throws(() => new FrameDecoder().push(encodeFrame(FrameType.PING, 0, 0, new Uint8Array(9)), collector()), /exceeds/);
  assert.throws(() => new FrameDecoder().push(new Uint8Array([0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0]), collector()), /unknown frame type 238/);
});

test('a DATA frame split over reads is handed out piece by piece as it arrives, other frames whole', () => {
  const data = encodeFrame(FrameType.DATA, 0, 3, new Uint8Array(1000).fill(9));
  const open = encodeFrame(FrameType.OPEN, 0, 5, new Uint8Array(100).fill(1));
  const wire = Buffer.concat([data, open]);
  const sink = collector();
  const decoder = new FrameDecoder();
  decoder.push(wire.subarray(0, 400), sink);
  assert.deepEqual(sink.seen.map((f) => [f.type, f.payload.length]), [[FrameType.DATA, 390]]);
  decoder.push(wire.subarray(400, 1050), sink);
  assert.deepEqual(sink.seen.map((f) => [f.type, f.payload.length]), [[FrameType.DATA, 390], [FrameType.DATA, 610]]);
  assert.equal(decoder.buffered, 40);
  decoder.push(wire.subarray(1050), sink);
  assert.deepEqual(sink.seen.map((f) => [f.type, f.payload.length]), [[FrameType.DATA, 390], [FrameType.DATA, 610], [FrameType.OPEN, 100]]);
});

test('a whole 64 KiB datagram is one frame', () => {
  const payload = new Uint8Array(MAX_DATAGRAM).map((_, i) => i & 0xff);
  const sink = collector();
  new FrameDecoder().push(encodeFrame(FrameType.DATAGRAM, 0, 7, payload), sink);
  assert.equal(sink.seen.length, 1);
  assert.equal(sink.seen[0]!.payload.length, MAX_DATAGRAM);
  assert.equal(sink.seen[0]!.payload[300], 300 & 0xff);
});
