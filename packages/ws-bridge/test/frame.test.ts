import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { hostRuntime } from '@wmproxy/core-net';
import {
  Base64Decoder, encodeFrame, frameInHeadroom, FrameParser, isValidUtf8, parseClosePayload, parseTokenFile, unmask, unmaskJs, unmaskUsesWasm, unmaskWasm, Utf8Validator, closePayload,
  type FrameSink,
} from '../src/index.js';

interface Parsed {
  messages: Array<{ opcode: number; data: Buffer }>;
  controls: Array<{ opcode: number; data: Buffer }>;
}

function collector(): { sink: FrameSink; parsed: Parsed } {
  const parsed: Parsed = { messages: [], controls: [] };
  let opcode = 0;
  let parts: Buffer[] = [];
  const sink: FrameSink = {
    messageStart(op) {
      opcode = op;
      parts = [];
    },
    messageData(bytes) {
      parts.push(Buffer.from(bytes));
    },
    messageEnd() {
      parsed.messages.push({ opcode, data: Buffer.concat(parts) });
    },
    control(op, payload) {
      parsed.controls.push({ opcode: op, data: Buffer.from(payload) });
    },
  };
  return { sink, parsed };
}

/** Feed `bytes` cut at the given points (copies: the parser unmasks in place). */
function feed(parser: FrameParser, bytes: Uint8Array, cuts: number[]): number {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const point of [...points, bytes.length]) {
    const code = parser.push(Buffer.from(bytes.subarray(from, point)));
    if (code !== 0) return code;
    from = point;
  }
  return 0;
}

const message = fc.record({
  binary: fc.boolean(),
  payload: fc.uint8Array({ maxLength: 70_000 }),
  text: fc.string({ unit: 'grapheme', maxLength: 200 }),
  fragments: fc.array(fc.nat(), { maxLength: 4 }),
});

/** The messages as frames, each fragmented where it says, with a ping between fragments when `pings`. */
function encodeMessages(messages: Array<typeof message extends fc.Arbitrary<infer T> ? T : never>, masked: boolean, pings: boolean) {
  const wire: Uint8Array[] = [];
  const expected: Array<{ opcode: number; data: Buffer }> = [];
  for (const m of messages) {
    const data = m.binary ? Buffer.from(m.payload) : Buffer.from(m.text, 'utf8');
    const opcode = m.binary ? 2 : 1;
    expected.push({ opcode, data });
    const points = [...new Set(m.fragments.map((f) => f % (data.length + 1)))].sort((a, b) => a - b);
    let from = 0;
    const pieces = [...points, data.length].map((point) => {
      const piece = data.subarray(from, point);
      from = point;
      return piece;
    });
    pieces.forEach((piece, i) => {
      wire.push(encodeFrame(i === 0 ? opcode : 0, piece, i === pieces.length - 1, masked));
      // Control frames may sit between the fragments of a message.
      if (pings && i < pieces.length - 1) wire.push(encodeFrame(0x9, Buffer.from('p'), true, masked));
    });
  }
  return { wire: Buffer.concat(wire), expected };
}

describe('RFC 6455 frame codec', () => {
  it('parses any sequence of encoded messages, fragmented and cut anywhere, back to the same messages (property)', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 5 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(), (messages, masked, cuts, pings) => {
        const { wire, expected } = encodeMessages(messages, masked, pings);
        const { sink, parsed } = collector();
        const parser = new FrameParser(sink, { role: masked ? 'server' : 'client', maxMessageSize: 1 << 20 });
        assert.equal(feed(parser, wire, cuts), 0, parser.reason);
        assert.deepEqual(parsed.messages, expected);
        assert.ok(parsed.controls.every((c) => c.opcode === 0x9 && c.data.toString() === 'p'));
      }),
      { numRuns: 150 },
    );
  });

  it('hands out the payload of one chunk as adjacent views, which later moves and chunks leave intact (property)', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 6 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 6 }), fc.boolean(), (messages, masked, cuts, pings) => {
        const { wire, expected } = encodeMessages(messages, masked, pings);
        // Views kept as handed out, never copied: a later move over them would show at the end.
        const kept: Array<{ opcode: number; views: Uint8Array[] }> = [];
        let current: Uint8Array[] = [];
        let opcode = 0;
        let previous: Uint8Array | undefined;
        const sink: FrameSink = {
          messageStart(op) {
            opcode = op;
            current = [];
          },
          messageData(bytes) {
            if (previous !== undefined) {
              assert.equal(bytes.buffer, previous.buffer);
              assert.equal(bytes.byteOffset, previous.byteOffset + previous.length, 'a gap between two pieces of one chunk');
            }
            previous = bytes;
            current.push(bytes);
          },
          messageEnd() {
            kept.push({ opcode, views: current });
          },
          control() {},
        };
        const parser = new FrameParser(sink, { role: masked ? 'server' : 'client', maxMessageSize: 1 << 20 });
        const points = [...new Set(cuts.map((cut) => cut % (wire.length + 1)))].sort((a, b) => a - b);
        let from = 0;
        for (const point of [...points, wire.length]) {
          previous = undefined;
          assert.equal(parser.push(Buffer.from(wire.subarray(from, point))), 0, parser.reason);
          from = point;
        }
        assert.deepEqual(kept.map((m) => ({ opcode: m.opcode, data: Buffer.concat(m.views) })), expected);
      }),
      { numRuns: 150 },
    );
  });

  it('never throws on arbitrary bytes and either accepts or names a close code (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 5 }), fc.boolean(), (bytes, cuts, server) => {
        const { sink } = collector();
        const parser = new FrameParser(sink, { role: server ? 'server' : 'client', maxMessageSize: 100 });
        const code = feed(parser, bytes, cuts);
        assert.ok([0, 1002, 1007, 1009].includes(code), `code ${code}`);
        if (code !== 0) assert.ok(parser.reason.length > 0);
      }),
      { numRuns: 2000 },
    );
  });

  it('names the RFC close code for each broken frame', () => {
    const cases: Array<[string, Uint8Array, 'server' | 'client', number]> = [
      ['unmasked frame to a server', encodeFrame(2, Buffer.from('a')), 'server', 1002],
      ['masked frame to a client', encodeFrame(2, Buffer.from('a'), true, true), 'client', 1002],
      ['RSV1 without extension', Uint8Array.from([0xc2, 0x00]), 'client', 1002],
      ['reserved data opcode', encodeFrame(0x3, Buffer.alloc(0)), 'client', 1002],
      ['reserved control opcode', encodeFrame(0xb, Buffer.alloc(0)), 'client', 1002],
      ['fragmented ping', encodeFrame(0x9, Buffer.alloc(0), false), 'client', 1002],
      ['control frame of 126 bytes', Uint8Array.from([0x89, 126, 0, 126, ...Buffer.alloc(126)]), 'client', 1002],
      ['continuation without a message', encodeFrame(0x0, Buffer.from('a')), 'client', 1002],
      ['new message inside a fragmented one', Buffer.concat([encodeFrame(2, Buffer.from('a'), false), encodeFrame(2, Buffer.from('b'))]), 'client', 1002],
      ['64-bit length with the top bit set', Uint8Array.from([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]), 'client', 1002],
      ['frame over the message limit', Uint8Array.from([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]), 'client', 1009],
      ['invalid UTF-8 text', encodeFrame(1, Buffer.from([0xff])), 'client', 1007],
      ['text ending inside a code point', encodeFrame(1, Buffer.from([0xe2, 0x82])), 'client', 1007],
      ['UTF-16 surrogate in text', encodeFrame(1, Buffer.from([0xed, 0xa0, 0x80])), 'client', 1007],
    ];
    for (const [name, bytes, role, code] of cases) {
      const { sink } = collector();
      const parser = new FrameParser(sink, { role, maxMessageSize: 1 << 20 });
      assert.equal(parser.push(Buffer.from(bytes)), code, name);
      // Failed stays failed.
      assert.equal(parser.push(encodeFrame(2, Buffer.from('x'), true, role === 'server')), code, `${name} (sticky)`);
    }
  });

  it('fails a 64-bit length over the limit before any payload arrives', () => {
    const { sink, parsed } = collector();
    const parser = new FrameParser(sink, { role: 'client', maxMessageSize: 1024 });
    assert.equal(parser.push(Uint8Array.from([0x82, 127, 0, 0, 0, 0, 0, 0, 0x04, 0x01])), 1009);
    assert.equal(parsed.messages.length, 0);
  });

  it('validates UTF-8 like TextDecoder, across any split (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(), (bytes, cut) => {
        let expected = true;
        try {
          new TextDecoder('utf-8', { fatal: true }).decode(bytes);
        } catch {
          expected = false;
        }
        const at = cut % (bytes.length + 1);
        const validator = new Utf8Validator();
        const actual = validator.push(bytes.subarray(0, at)) && validator.push(bytes.subarray(at)) && validator.complete;
        assert.equal(actual, expected);
        assert.equal(isValidUtf8(bytes), expected);
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 50 }), (text) => {
        assert.ok(isValidUtf8(Buffer.from(text, 'utf8')));
      }),
    );
  });

  it('unmasks at any alignment and offset like a byte loop (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.nat(7), fc.nat(3), (data, key, shift, offset) => {
        const backing = new Uint8Array(data.length + 8);
        const view = backing.subarray(shift, shift + data.length);
        view.set(data);
        const end = unmask(view, key, offset);
        const expected = data.map((byte, i) => byte ^ key[(offset + i) & 3]!);
        assert.deepEqual([...view], [...expected]);
        assert.equal(end, (offset + data.length) & 3);
      }),
    );
  });

  it('unmasks large views in JS and in WebAssembly alike, across the 64 KiB blocks, at any alignment and offset (property)', () => {
    assert.equal(unmaskUsesWasm, hostRuntime === 'node');
    fc.assert(
      fc.property(fc.nat(150_000), fc.integer(), fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.nat(15), fc.nat(3), (length, seed, key, shift, offset) => {
        const data = new Uint8Array(length);
        let x = seed | 1;
        for (let i = 0; i < length; i++) data[i] = (x = (Math.imul(x, 1103515245) + 12345) | 0) >>> 24;
        const expected = data.map((byte, i) => byte ^ key[(offset + i) & 3]!);
        for (const f of [unmask, unmaskJs, unmaskWasm]) {
          const backing = new Uint8Array(length + 16);
          const view = backing.subarray(shift, shift + length);
          view.set(data);
          assert.equal(f(view, key, offset), (offset + length) & 3);
          assert.ok(Buffer.from(view).equals(expected), f.name);
          // Nothing outside the view is touched.
          assert.ok(backing.subarray(0, shift).every((b) => b === 0) && backing.subarray(shift + length).every((b) => b === 0), f.name);
        }
        // Into another view (a masked copy): the source stays as it was.
        const source = Uint8Array.from(data);
        const into = new Uint8Array(length + shift).subarray(shift);
        unmaskWasm(source, key, offset, into);
        assert.ok(Buffer.from(into).equals(expected) && Buffer.from(source).equals(data));
      }),
      { numRuns: 60 },
    );
  });

  it('writes a frame header into the room before a payload, or declines when it is too small (property)', () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 1, 125, 126, 65535, 65536, 70_000), fc.nat(16), (length, headroom) => {
        const payload = Buffer.alloc(length, 7);
        const backing = new Uint8Array(headroom + length + 3).fill(0xaa);
        const view = backing.subarray(headroom, headroom + length);
        view.set(payload);
        const frame = frameInHeadroom(2, view, headroom);
        const size = length < 126 ? 2 : length < 65536 ? 4 : 10;
        if (headroom < size) {
          assert.equal(frame, undefined);
          assert.ok(backing.subarray(0, headroom).every((b) => b === 0xaa), 'nothing written');
          return;
        }
        assert.ok(frame && Buffer.from(frame).equals(encodeFrame(2, payload)));
        assert.equal(frame.buffer, backing.buffer);
        // Only the header's bytes before the payload, nothing after it, were written.
        assert.ok(backing.subarray(0, headroom - size).every((b) => b === 0xaa) && backing.subarray(headroom + length).every((b) => b === 0xaa));
      }),
      { numRuns: 200 },
    );
  });

  it("writes a client's frame into the room before a payload, masking the payload in place, or declines when the room is too small (property)", () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 1, 125, 126, 65535, 65536, 70_000), fc.nat(20), (length, headroom) => {
        const payload = Buffer.alloc(length);
        for (let i = 0; i < length; i++) payload[i] = (i * 31) & 255;
        const backing = new Uint8Array(headroom + length + 3).fill(0xaa);
        const view = backing.subarray(headroom, headroom + length);
        view.set(payload);
        const frame = frameInHeadroom(2, view, headroom, true);
        const at = length < 126 ? 2 : length < 65536 ? 4 : 10;
        if (headroom < at + 4) {
          assert.equal(frame, undefined);
          assert.ok(backing.subarray(0, headroom).every((b) => b === 0xaa), 'nothing written');
          assert.ok(Buffer.from(view).equals(payload), 'the payload untouched');
          return;
        }
        assert.ok(frame);
        assert.equal(frame.buffer, backing.buffer);
        assert.equal(frame.length, at + 4 + length);
        // The header of the unmasked frame with the mask bit set, then the key, then the masked payload.
        const plain = encodeFrame(2, payload);
        assert.equal(frame[0], plain[0]);
        assert.equal(frame[1], plain[1]! | 0x80);
        assert.ok(Buffer.from(frame.subarray(2, at)).equals(plain.subarray(2, at)));
        const key = frame.slice(at, at + 4);
        const unmasked = frame.slice(at + 4);
        unmaskJs(unmasked, key, 0);
        assert.ok(Buffer.from(unmasked).equals(payload));
        assert.ok(backing.subarray(0, headroom - at - 4).every((b) => b === 0xaa) && backing.subarray(headroom + length).every((b) => b === 0xaa));
      }),
      { numRuns: 200 },
    );
  });

  it('checks close payloads: codes, UTF-8 reasons, the one-byte payload', () => {
    assert.deepEqual(parseClosePayload(new Uint8Array(0)), { ok: true, code: 1005, reason: '' });
    assert.deepEqual(parseClosePayload(closePayload(4000, 'bye')), { ok: true, code: 4000, reason: 'bye' });
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]) assert.equal(parseClosePayload(closePayload(code)).ok, false, String(code));
    assert.equal(parseClosePayload(Uint8Array.from([3])).ok, false);
    const bad = parseClosePayload(Uint8Array.from([0x03, 0xe8, 0xff]));
    assert.ok(!bad.ok && bad.failCode === 1007);
    // A long reason is cut on a code point boundary to fit a control frame.
    const long = closePayload(1000, 'é'.repeat(100));
    assert.ok(long.length <= 125);
    assert.ok(parseClosePayload(long).ok);
  });

  it('decodes base64 split anywhere, and refuses what is not base64 (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.array(fc.nat(), { maxLength: 4 }), (bytes, cuts) => {
        const text = Buffer.from(Buffer.from(bytes).toString('base64'));
        const decoder = new Base64Decoder();
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const out: Buffer[] = [];
        let from = 0;
        for (const point of [...points, text.length]) {
          const piece = decoder.push(text.subarray(from, point));
          assert.ok(piece);
          out.push(Buffer.from(piece));
          from = point;
        }
        const rest = decoder.end();
        assert.ok(rest);
        out.push(Buffer.from(rest));
        assert.deepEqual([...Buffer.concat(out)], [...bytes]);
      }),
    );
    for (const bad of ['ab*d', 'ab=c', 'a===', 'abc=abcd']) {
      const decoder = new Base64Decoder();
      assert.equal(decoder.push(Buffer.from(bad)), undefined, bad);
    }
    // Only the end of the message tells these apart from a valid text.
    for (const bad of ['abcda', 'abcd=', 'ab=']) {
      const decoder = new Base64Decoder();
      assert.notEqual(decoder.push(Buffer.from(bad)), undefined, bad);
      assert.equal(decoder.end(), undefined, bad);
    }
    const unpadded = new Base64Decoder();
    assert.deepEqual([...unpadded.push(Buffer.from('AAE'))!, ...unpadded.end()!], [0, 1]);
  });

  it('reads websockify token files and names the bad line', () => {
    const table = parseTokenFile('# comment\n\nvnc1: 10.0.0.5:5900\nv6: [::1]:5901\r\nhost-2: example.com:22\n');
    assert.deepEqual(Object.fromEntries(table), { vnc1: { host: '10.0.0.5', port: 5900 }, v6: { host: '::1', port: 5901 }, 'host-2': { host: 'example.com', port: 22 } });
    assert.throws(() => parseTokenFile('ok: 1.2.3.4:5\nbroken 1.2.3.4:5\n', 'tokens.cfg'), /tokens\.cfg:2/);
    assert.throws(() => parseTokenFile('x: 1.2.3.4:70000\n'), /:1/);
  });
});
