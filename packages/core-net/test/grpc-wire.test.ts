// Property tests of the protobuf and gRPC wire codec: round trips, agreement
// with an independent BigInt varint reference, and hostile input that never
// throws anything but WireError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  WireError,
  WireType,
  decodeFields,
  decodeGrpcMessages,
  encodeFields,
  encodeGrpcMessage,
  encodeVarint,
  readVarint,
  formatGrpcTimeout,
  grpcStatusName,
  decodeGrpcMessageField,
  parseGrpcTimeout,
  encodeGrpcTimeout,
  encodeGrpcMessageField,
  type ProtobufField,
} from '../src/index.js';

const RUNS = { numRuns: 300, seed: 17 };

/** The reference: LEB128 with BigInt, no shortcuts. */
function refVarint(value: bigint): number[] {
  const out: number[] = [];
  do {
    let byte = Number(value & 0x7fn);
    value >>= 7n;
    if (value > 0n) byte |= 0x80;
    out.push(byte);
  } while (value > 0n);
  return out;
}

const safeInt = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 2 ** 32 }), fc.maxSafeInteger().filter((n) => n >= 0));

const fieldArb: fc.Arbitrary<ProtobufField> = fc.oneof(
  fc.record({ field: fc.integer({ min: 1, max: 2 ** 29 - 1 }), wireType: fc.constant(WireType.VARINT), value: safeInt }),
  fc.record({ field: fc.integer({ min: 1, max: 1000 }), wireType: fc.constant(WireType.LEN), value: fc.uint8Array({ maxLength: 300 }) }),
  fc.record({ field: fc.integer({ min: 1, max: 1000 }), wireType: fc.constant(WireType.I64), value: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
  fc.record({ field: fc.integer({ min: 1, max: 1000 }), wireType: fc.constant(WireType.I32), value: fc.integer({ min: 0, max: 0xffffffff }) }),
) as fc.Arbitrary<ProtobufField>;

test('varints: encode agrees with a BigInt reference and decodes back, at any offset', () => {
  fc.assert(
    fc.property(safeInt, fc.uint8Array({ maxLength: 4 }), (n, prefix) => {
      const bytes = encodeVarint(n);
      assert.deepEqual([...bytes], refVarint(BigInt(n)));
      const buffer = new Uint8Array([...prefix, ...bytes, 0xff]);
      assert.deepEqual(readVarint(buffer, prefix.byteLength), { value: n, next: prefix.byteLength + bytes.byteLength });
    }),
    RUNS,
  );
});

test('varints: above 2^53-1, longer than 10 bytes, truncated or negative are WireErrors', () => {
  assert.throws(() => readVarint(Uint8Array.from(refVarint(2n ** 53n)), 0), WireError);
  assert.throws(() => readVarint(Uint8Array.from(refVarint(2n ** 64n - 1n)), 0), WireError);
  assert.throws(() => readVarint(new Uint8Array(11).fill(0x80), 0), /longer than 10 bytes/);
  assert.throws(() => readVarint(Uint8Array.of(0x80, 0x80), 0), /truncated/);
  assert.throws(() => encodeVarint(-1), WireError);
  assert.throws(() => encodeVarint(2 ** 53), WireError);
  // Non-canonical (padded) encodings are accepted, as protobuf parsers do.
  assert.deepEqual(readVarint(Uint8Array.of(0x81, 0x80, 0x00), 0), { value: 1, next: 3 });
  assert.equal(readVarint(Uint8Array.from(refVarint(2n ** 53n - 1n)), 0).value, Number.MAX_SAFE_INTEGER);
});

test('fields: decode(encode(fields)) is the same fields, and concatenated messages decode to the concatenation', () => {
  fc.assert(
    fc.property(fc.array(fieldArb, { maxLength: 12 }), fc.array(fieldArb, { maxLength: 4 }), (a, b) => {
      const normal = (list: ProtobufField[]) => list.map((f) => ({ ...f, value: f.value instanceof Uint8Array ? [...f.value] : f.value }));
      const encodedA = encodeFields(a);
      assert.deepEqual(normal(decodeFields(encodedA)), normal(a));
      const both = new Uint8Array([...encodedA, ...encodeFields(b)]);
      assert.deepEqual(normal(decodeFields(both)), normal([...a, ...b]));
    }),
    RUNS,
  );
});

test('hostile bytes: the field and gRPC decoders return or throw WireError, never anything else', () => {
  const hostile = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    // Valid messages with one byte flipped or cut short: the interesting edge.
    fc.tuple(fc.array(fieldArb, { minLength: 1, maxLength: 5 }), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([fields, at, byte, cut]) => {
      const bytes = encodeFields(fields);
      const i = at % bytes.byteLength;
      if (cut) return bytes.subarray(0, i);
      const copy = Uint8Array.from(bytes);
      copy[i] = byte;
      return copy;
    }),
  );
  fc.assert(
    fc.property(hostile, (bytes) => {
      for (const decode of [() => decodeFields(bytes), () => decodeGrpcMessages(bytes, 1024), () => readVarint(bytes, 0)]) {
        try {
          decode();
        } catch (error) {
          assert.ok(error instanceof WireError, `threw ${String(error)}`);
        }
      }
    }),
    { numRuns: 2000, seed: 17 },
  );
});

test('decoding is bounded: field counts, declared lengths and group wire types are refused', () => {
  const many = encodeFields(Array.from({ length: 20 }, () => ({ field: 1, wireType: WireType.VARINT, value: 1 })));
  assert.throws(() => decodeFields(many, 10), /more than 10 fields/);
  // A LEN field claiming 2^40 bytes in a 10-byte message.
  assert.throws(() => decodeFields(Uint8Array.from([0x0a, ...refVarint(2n ** 40n)])), /longer than the message/);
  assert.throws(() => decodeFields(Uint8Array.of(0x0b)), /wire type 3/); // start group
  assert.throws(() => decodeFields(Uint8Array.of(0x00, 0x01)), /field number 0/);
});

test('gRPC messages: framing round trip, limits, compression refused', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 6 }), (payloads) => {
      const body = new Uint8Array(payloads.flatMap((p) => [...encodeGrpcMessage(p)]));
      assert.deepEqual(decodeGrpcMessages(body).map((m) => [...m]), payloads.map((p) => [...p]));
    }),
    RUNS,
  );
  assert.throws(() => decodeGrpcMessages(Uint8Array.of(0, 0xff, 0xff, 0xff, 0xff), 1024), /4294967295 bytes \(limit 1024\)/);
  assert.throws(() => decodeGrpcMessages(Uint8Array.of(1, 0, 0, 0, 0)), /compressed/);
  assert.throws(() => decodeGrpcMessages(Uint8Array.of(0, 0, 0)), /truncated/);
  assert.throws(() => decodeGrpcMessages(Uint8Array.of(0, 0, 0, 0, 2, 1)), /truncated gRPC message/);
});

test('gRPC fields: grpc-timeout stays within 8 digits, status names, percent-decoded messages', () => {
  assert.equal(formatGrpcTimeout(1500), '1500m');
  assert.equal(formatGrpcTimeout(0.2), '1m');
  assert.equal(formatGrpcTimeout(2e8), '200000S');
  fc.assert(fc.property(fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.maxSafeInteger()), (ms) => assert.match(formatGrpcTimeout(ms), /^\d{1,8}[mSMH]$/)), RUNS);
  assert.equal(grpcStatusName(14), 'UNAVAILABLE');
  assert.equal(grpcStatusName(99), 'status 99');
  assert.equal(decodeGrpcMessageField('not%20found%3A%20x'), 'not found: x');
  assert.equal(decodeGrpcMessageField('bad%zz'), 'bad%zz');
});

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

test('grpc-timeout: every unit parses to whole milliseconds, rounded up', () => {
  assert.equal(parseGrpcTimeout('1H'), 3_600_000);
  assert.equal(parseGrpcTimeout('2M'), 120_000);
  assert.equal(parseGrpcTimeout('3S'), 3000);
  assert.equal(parseGrpcTimeout('250m'), 250);
  assert.equal(parseGrpcTimeout('1500u'), 2);
  assert.equal(parseGrpcTimeout('1n'), 1);
  assert.equal(parseGrpcTimeout('0m'), 0);
  assert.equal(parseGrpcTimeout('99999999H'), 99_999_999 * 3_600_000);
});

test('grpc-timeout: malformed values are refused, never thrown on', () => {
  for (const bad of ['', 'm', '1', '1x', '-1S', '1.5S', ' 1S', '1S ', '123456789S', '1s', '1h', '0x1S', '１S']) assert.equal(parseGrpcTimeout(bad), undefined, bad);
  fc.assert(
    fc.property(fc.string({ maxLength: 16 }), (value) => {
      const ms = parseGrpcTimeout(value);
      assert.ok(ms === undefined || (Number.isSafeInteger(ms) && ms >= 0));
    }),
    RUNS,
  );
});

test('grpc-timeout: any valid value agrees with a reference, and formatGrpcTimeout round-trips within one unit', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 99_999_999 }), fc.constantFrom('H', 'M', 'S', 'm', 'u', 'n'), fc.integer({ min: 0, max: 7 }), (amount, unit, zeros) => {
      const text = `${'0'.repeat(Math.min(zeros, 8 - String(amount).length))}${amount}${unit}`;
      assert.equal(parseGrpcTimeout(text), Math.ceil(amount * UNIT_MS[unit]!));
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (ms) => {
      const back = parseGrpcTimeout(formatGrpcTimeout(ms))!;
      assert.ok(back >= ms, `${ms} -> ${formatGrpcTimeout(ms)} -> ${back}`);
    }),
    RUNS,
  );
});

test('grpc-message: percent-encoding round-trips any text', () => {
  assert.equal(encodeGrpcMessageField('no server'), 'no server');
  assert.equal(encodeGrpcMessageField('100% down\n'), '100%25 down%0A');
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (text) => {
      const encoded = encodeGrpcMessageField(text);
      for (let i = 0; i < encoded.length; i++) assert.ok(encoded.charCodeAt(i) >= 0x20 && encoded.charCodeAt(i) <= 0x7e);
      assert.equal(decodeGrpcMessageField(encoded), text);
    }),
    RUNS,
  );
});

test('encodeGrpcTimeout: what is left of a deadline, at most 8 digits, never shorter than asked, read back by parseGrpcTimeout', () => {
  assert.equal(encodeGrpcTimeout(199.2), '200m');
  assert.equal(encodeGrpcTimeout(0), '1m');
  assert.equal(encodeGrpcTimeout(-5), '1m');
  assert.equal(encodeGrpcTimeout(100_000_000), '100000S');
  fc.assert(
    fc.property(fc.double({ min: -1e3, max: 9e10, noNaN: true }), (ms) => {
      const value = encodeGrpcTimeout(ms);
      assert.ok(value.length <= 9, value);
      const back = parseGrpcTimeout(value)!;
      assert.ok(back >= Math.max(1, ms), `${value} is shorter than ${ms} ms`);
      assert.ok(back - Math.max(1, ms) < (value.endsWith('S') ? 1000 : 1), `${value} is much longer than ${ms} ms`);
    }),
  );
});
