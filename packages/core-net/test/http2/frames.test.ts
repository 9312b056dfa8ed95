import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameParser, FrameWriter, FrameType, Flag, ErrorCode, Http2Error, type FrameHandler } from '../../src/index.js';

/** Records every event as a comparable tuple. */
function recorder(): { events: unknown[]; handler: FrameHandler } {
  const events: unknown[] = [];
  const handler: FrameHandler = {
    onData: (id, data, end, flow) => events.push(['data', id, [...data], end, flow]),
    onHeaders: (id, block, end) => events.push(['headers', id, [...block], end]),
    onPriority: (id, dep) => events.push(['priority', id, dep]),
    onRstStream: (id, code) => events.push(['rst', id, code]),
    onSettings: (ack, payload) => events.push(['settings', ack, [...payload]]),
    onPushPromise: (id, promised, block) => events.push(['push', id, promised, [...block]]),
    onPing: (ack, payload) => events.push(['ping', ack, [...payload]]),
    onGoaway: (last, code, debug) => events.push(['goaway', last, code, [...debug]]),
    onWindowUpdate: (id, inc) => events.push(['window', id, inc]),
    onStreamError: (error) => events.push(['stream-error', error.streamId, error.code]),
  };
  return { events, handler };
}

const settingsFirst = (): Uint8Array => {
  const w = new FrameWriter();
  w.settings([[3, 100]]);
  return w.take();
};

function parseAll(bytes: Uint8Array, cuts: number[] = []): unknown[] {
  const { events, handler } = recorder();
  const parser = new FrameParser(handler);
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.byteLength)].sort((a, b) => a - b)) {
    parser.push(bytes.subarray(at, cut));
    at = cut;
  }
  parser.push(bytes.subarray(at));
  return events;
}

function connError(bytes: Uint8Array, code: number): void {
  const { handler } = recorder();
  const parser = new FrameParser(handler, { maxContinuationFrames: 4, maxHeaderBlockSize: 1000 });
  assert.throws(() => parser.push(bytes), (error: unknown) => error instanceof Http2Error && error.code === code && error.streamId === 0);
}

const frames = (build: (w: FrameWriter) => void): Uint8Array => {
  const w = new FrameWriter();
  w.raw(settingsFirst());
  build(w);
  return w.take();
};

describe('HTTP/2 frame parser', () => {
  test('every frame type round-trips through the writer and the parser', () => {
    const bytes = frames((w) => {
      w.data(1, Uint8Array.from([1, 2, 3]), true);
      w.headers(3, Uint8Array.from([0x82]), false, 16384);
      w.rstStream(3, ErrorCode.CANCEL);
      w.settingsAck();
      w.ping(true, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
      w.goaway(7, ErrorCode.NO_ERROR, Uint8Array.from([0x61]));
      w.windowUpdate(0, 1000);
      const at = w.header(5, FrameType.PRIORITY, 0, 5);
      w.bytes.set([0, 0, 0, 1, 16], at);
    });
    assert.deepEqual(parseAll(bytes), [
      ['settings', false, [0, 3, 0, 0, 0, 100]],
      ['data', 1, [1, 2, 3], true, 3],
      ['headers', 3, [0x82], false],
      ['rst', 3, ErrorCode.CANCEL],
      ['settings', true, []],
      ['ping', true, [1, 2, 3, 4, 5, 6, 7, 8]],
      ['goaway', 7, 0, [0x61]],
      ['window', 0, 1000],
      ['priority', 5, 1],
    ]);
  });

  test('padding is stripped (flow length keeps it) and priority fields are skipped', () => {
    const bytes = frames((w) => {
      let at = w.header(1 + 2 + 3, FrameType.DATA, Flag.PADDED, 1);
      w.bytes.set([3, 9, 9, 0, 0, 0], at);
      at = w.header(1 + 5 + 1 + 2, FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY | Flag.END_HEADERS | Flag.END_STREAM, 3);
      w.bytes.set([2, 0, 0, 0, 1, 255, 0x82, 0, 0], at);
    });
    assert.deepEqual(parseAll(bytes).slice(1), [
      ['data', 1, [9, 9], false, 6],
      ['headers', 3, [0x82], true],
    ]);
  });

  test('a header block split into CONTINUATION frames is delivered whole', () => {
    const block = Uint8Array.from({ length: 40 }, (_, i) => i);
    const bytes = frames((w) => w.headers(1, block, true, 16));
    assert.deepEqual(parseAll(bytes).slice(1), [['headers', 1, [...block], true]]);
  });

  test('connection errors: bad first frame, oversized frame, bad padding, misplaced frames, interrupted header blocks, floods', () => {
    const raw = (build: (w: FrameWriter) => void): Uint8Array => {
      const w = new FrameWriter();
      build(w);
      return w.take();
    };
    connError(raw((w) => w.ping(false, new Uint8Array(8))), ErrorCode.PROTOCOL_ERROR);
    connError(frames((w) => w.header(16385, FrameType.DATA, 0, 1)), ErrorCode.FRAME_SIZE_ERROR);
    connError(frames((w) => w.bytes.set([5, 0], w.header(2, FrameType.DATA, Flag.PADDED, 1))), ErrorCode.PROTOCOL_ERROR);
    connError(frames((w) => w.data(0, new Uint8Array(1), false)), ErrorCode.PROTOCOL_ERROR);
    connError(frames((w) => w.header(4, FrameType.SETTINGS, 0, 0)), ErrorCode.FRAME_SIZE_ERROR);
    connError(frames((w) => w.header(8, FrameType.PING, 0, 1)), ErrorCode.PROTOCOL_ERROR);
    connError(frames((w) => w.header(3, FrameType.RST_STREAM, 0, 1)), ErrorCode.FRAME_SIZE_ERROR);
    connError(frames((w) => w.windowUpdate(0, 0)), ErrorCode.PROTOCOL_ERROR);
    connError(frames((w) => w.header(0, FrameType.CONTINUATION, Flag.END_HEADERS, 1)), ErrorCode.PROTOCOL_ERROR);
    connError(
      frames((w) => {
        w.header(1, FrameType.HEADERS, 0, 1);
        w.ping(false, new Uint8Array(8));
      }),
      ErrorCode.PROTOCOL_ERROR,
    );
    connError(
      frames((w) => {
        w.header(1, FrameType.HEADERS, 0, 1);
        for (let i = 0; i < 5; i++) w.header(0, FrameType.CONTINUATION, 0, 1);
      }),
      ErrorCode.ENHANCE_YOUR_CALM,
    );
    connError(frames((w) => w.header(1001, FrameType.HEADERS, Flag.END_HEADERS, 1)), ErrorCode.ENHANCE_YOUR_CALM);
  });

  test('stream errors (WINDOW_UPDATE of 0, bad PRIORITY length) do not stop the parser', () => {
    const bytes = frames((w) => {
      w.windowUpdate(1, 0);
      w.header(4, FrameType.PRIORITY, 0, 3);
      w.windowUpdate(1, 5);
    });
    assert.deepEqual(parseAll(bytes).slice(1), [
      ['stream-error', 1, ErrorCode.PROTOCOL_ERROR],
      ['stream-error', 3, ErrorCode.FRAME_SIZE_ERROR],
      ['window', 1, 5],
    ]);
  });

  test('unknown frame types are ignored', () => {
    const bytes = frames((w) => {
      w.header(3, 0xfa, 0, 0);
      w.ping(false, new Uint8Array(8));
    });
    assert.deepEqual(parseAll(bytes).slice(1), [['ping', false, [0, 0, 0, 0, 0, 0, 0, 0]]]);
  });

  test('any chunking of a frame sequence yields the same events', () => {
    const frame = fc.oneof(
      fc.record({ kind: fc.constant('data'), id: fc.integer({ min: 1, max: 1000 }), body: fc.uint8Array({ maxLength: 300 }), end: fc.boolean() }),
      fc.record({ kind: fc.constant('headers'), id: fc.integer({ min: 1, max: 1000 }), body: fc.uint8Array({ minLength: 1, maxLength: 300 }), end: fc.boolean() }),
      fc.record({ kind: fc.constant('ping'), id: fc.constant(0), body: fc.uint8Array({ minLength: 8, maxLength: 8 }), end: fc.boolean() }),
      fc.record({ kind: fc.constant('window'), id: fc.integer({ min: 0, max: 1000 }), body: fc.constant(new Uint8Array(0)), end: fc.constant(false) }),
    );
    fc.assert(
      fc.property(fc.array(frame, { maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 5000 }), { maxLength: 30 }), (list, cuts) => {
        const bytes = frames((w) => {
          for (const f of list) {
            if (f.kind === 'data') w.data(f.id, f.body, f.end);
            else if (f.kind === 'headers') w.headers(f.id, f.body, f.end, 100);
            else if (f.kind === 'ping') w.ping(f.end, f.body);
            else w.windowUpdate(f.id, 7);
          }
        });
        assert.deepEqual(parseAll(bytes, cuts), parseAll(bytes));
        assert.equal(parseAll(bytes).length, list.length + 1);
      }),
      { numRuns: 300 },
    );
  });
});
