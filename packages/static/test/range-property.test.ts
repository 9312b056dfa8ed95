// Property-based tests of Range handling (docs/fuzzing.md): any Range header is
// parsed without throwing into ranges inside the file, and a multipart/byteranges
// body always parses back into exactly the file's slices, whatever the file holds.
// Bounded (fixed seed); `npm run fuzz` sets WMPROXY_FUZZ_SEED / WMPROXY_FUZZ_TIME_MS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bodyChunks, evaluate, multipartLayout, parseRange, type Representation } from '../src/index.js';

/** A fixed seed and run count, or the nightly budget from `npm run fuzz`. */
function parameters(numRuns: number, seed: number): fc.Parameters<unknown> {
  const time = Number(process.env.WMPROXY_FUZZ_TIME_MS ?? '');
  const envSeed = process.env.WMPROXY_FUZZ_SEED;
  const chosen = envSeed !== undefined && envSeed !== '' ? Number(envSeed) : seed;
  if (Number.isFinite(time) && time > 0) return { numRuns: 1_000_000, seed: chosen, interruptAfterTimeLimit: time, markInterruptAsFailure: false };
  return { numRuns, seed: chosen };
}

const numberText = fc.oneof(
  fc.nat({ max: 300 }).map(String),
  fc.constantFrom('0', '00', '007', '9007199254740993', '99999999999999999999999', '1e3', '0x10', '-1', '+1', ' 1', '1 ', '', '٣', 'NaN', 'Infinity', '1.5'),
);
const specText = fc.oneof(
  fc.tuple(numberText, numberText).map(([a, b]) => `${a}-${b}`),
  numberText.map((a) => `${a}-`),
  numberText.map((b) => `-${b}`),
  fc.constantFrom('-', '--1', '1--2', '1-2-3', '', ' ', '=', 'bytes=1-2', '\x00', '\u2013'),
);
/** Range headers: mostly well-formed, often not. */
const rangeHeader = fc.oneof(
  fc.tuple(fc.constantFrom('bytes', 'BYTES', 'Bytes ', ' bytes', 'items', 'byte', ''), fc.constantFrom('=', ' = ', '', '=='), fc.array(specText, { maxLength: 8 }), fc.constantFrom(',', ', ', ' ,', ',,'))
    .map(([unit, eq, specs, sep]) => `${unit}${eq}${specs.join(sep)}`),
  fc.string({ maxLength: 40 }),
);

test('parseRange: any header, any size: never throws; ranges are inside the file, sorted, disjoint and at most maxRanges', () => {
  fc.assert(
    fc.property(rangeHeader, fc.oneof(fc.nat({ max: 1000 }), fc.constantFrom(0, 1, 2 ** 32, Number.MAX_SAFE_INTEGER)), fc.integer({ min: 1, max: 10 }), (header, size, maxRanges) => {
      const result = parseRange(header, size, maxRanges);
      if (result.kind !== 'ranges') return;
      assert.ok(result.ranges.length >= 1 && result.ranges.length <= maxRanges, JSON.stringify({ header, size, result }));
      let previousEnd = -1;
      for (const [start, end] of result.ranges) {
        assert.ok(Number.isSafeInteger(start) && Number.isSafeInteger(end), `integers: ${JSON.stringify({ header, size, result })}`);
        assert.ok(start >= 0 && start < end && end <= size, `inside the file: ${JSON.stringify({ header, size, result })}`);
        assert.ok(start > previousEnd, `sorted and coalesced: ${JSON.stringify({ header, size, result })}`);
        previousEnd = end;
      }
    }),
    parameters(2000, 0x4a46e),
  );
});

/** The bytes a list of well-formed specs selects, by brute force (RFC 9110 section 14.1.2). */
function selected(specs: Array<{ first?: number; last?: number; suffix?: number }>, size: number): Set<number> {
  const bytes = new Set<number>();
  for (const spec of specs) {
    let from: number;
    let to: number;
    if (spec.suffix !== undefined) {
      from = Math.max(0, size - spec.suffix);
      to = size - 1;
    } else {
      from = spec.first!;
      to = Math.min(spec.last ?? size - 1, size - 1);
    }
    for (let i = from; i <= to; i++) bytes.add(i);
  }
  return bytes;
}

const wellFormed = fc.array(
  fc.oneof(
    fc.tuple(fc.nat({ max: 120 }), fc.nat({ max: 60 })).map(([first, length]) => ({ first, last: first + length })),
    fc.nat({ max: 120 }).map((first) => ({ first })),
    fc.nat({ max: 130 }).map((suffix) => ({ suffix })),
  ),
  { minLength: 1, maxLength: 6 },
);

function headerOf(specs: Array<{ first?: number; last?: number; suffix?: number }>): string {
  return `bytes=${specs.map((s) => (s.suffix !== undefined ? `-${s.suffix}` : `${s.first}-${s.last ?? ''}`)).join(',')}`;
}

test('parseRange: well-formed ranges select exactly the bytes the RFC says, or none (416)', () => {
  fc.assert(
    fc.property(wellFormed, fc.nat({ max: 100 }), (specs, size) => {
      const result = parseRange(headerOf(specs), size, 10);
      const expected = selected(specs, size);
      if (expected.size === 0) {
        assert.equal(result.kind, 'unsatisfiable', headerOf(specs));
        return;
      }
      assert.equal(result.kind, 'ranges', headerOf(specs));
      const got = new Set<number>();
      if (result.kind === 'ranges') for (const [start, end] of result.ranges) for (let i = start; i < end; i++) got.add(i);
      assert.deepEqual([...got].sort((a, b) => a - b), [...expected].sort((a, b) => a - b), `${headerOf(specs)} on ${size} bytes`);
    }),
    parameters(1000, 0x4a47),
  );
});

/** Parse multipart/byteranges strictly (RFC 9110 section 14.6, RFC 2046 section 5.1.1). */
function parseByteranges(body: Buffer, boundary: string): Array<{ range: string; data: Buffer }> {
  const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  assert.equal(body.indexOf(delimiter), 0, 'the body starts with the first delimiter');
  const parts: Array<{ range: string; data: Buffer }> = [];
  let offset = 0;
  for (;;) {
    offset += delimiter.length;
    if (body.subarray(offset, offset + 4).toString('latin1') === '--\r\n') {
      assert.equal(offset + 4, body.length, 'nothing after the close delimiter');
      return parts;
    }
    assert.equal(body.subarray(offset, offset + 2).toString('latin1'), '\r\n', 'CRLF after a delimiter');
    const headEnd = body.indexOf('\r\n\r\n', offset);
    const headers = body.subarray(offset + 2, headEnd).toString('latin1').split('\r\n');
    const range = headers.find((line) => line.toLowerCase().startsWith('content-range:'))?.slice('content-range:'.length).trim() ?? '';
    // The part ends at the next delimiter: the data must never contain one.
    const next = body.indexOf(delimiter, headEnd + 4);
    assert.ok(next > 0, 'another delimiter follows every part');
    parts.push({ range, data: body.subarray(headEnd + 4, next) });
    offset = next;
  }
}

async function collect(body: Parameters<typeof bodyChunks>[0]): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of bodyChunks(body)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function representation(data: Buffer): Representation {
  return { path: '/nonexistent', size: data.length, etag: '"e"', mtimeSeconds: 0, lastModified: 'Thu, 01 Jan 1970 00:00:00 GMT', contentType: 'application/octet-stream', data };
}

/**
 * File contents, including ones that carry the delimiter a *later* response
 * would use, as someone who saw an earlier response's boundary could write.
 */
const fileArb = fc
  .tuple(fc.uint8Array({ minLength: 1, maxLength: 400 }), fc.boolean(), fc.nat({ max: 400 }))
  .map(([bytes, plant, at]) => ({ bytes: Buffer.from(bytes), plant, at }));

/** The boundary the next multipart response will use, as far as one can tell from the last one. */
function guessNext(boundary: string): string {
  const match = /^(.*-)([0-9a-z]+)$/.exec(boundary);
  return match ? `${match[1]}${(parseInt(match[2]!, 36) + 1).toString(36)}` : boundary;
}

test('multipart/byteranges: the body parses back into exactly the requested slices, whatever the file holds', async () => {
  let lastBoundary = multipartLayout([[0, 1], [2, 3]], 3, 'x/y').boundary;
  await fc.assert(
    fc.asyncProperty(fileArb, wellFormed, async (file, specs) => {
      let data = file.bytes;
      if (file.plant) {
        const planted = Buffer.from(`\r\n--${guessNext(lastBoundary)}\r\ncontent-range: bytes 0-0/1\r\n\r\n`, 'latin1');
        const at = Math.min(file.at, data.length);
        data = Buffer.concat([data.subarray(0, at), planted, data.subarray(at)]);
      }
      const header = headerOf(specs);
      const response = evaluate('GET', { range: header }, representation(data), { maxRanges: 10, headers: {} });
      const parsed = parseRange(header, data.length, 10);
      if (response.body.kind !== 'multipart') {
        assert.ok(parsed.kind !== 'ranges' || parsed.ranges.length === 1, `a multipart answer for ${header}`);
        return;
      }
      const boundary = /boundary=([^;\s]+)/.exec(response.headers['content-type']!)![1]!;
      lastBoundary = boundary;
      const body = await collect(response.body);
      assert.equal(Number(response.headers['content-length']), body.length, 'Content-Length is the body length');
      const parts = parseByteranges(body, boundary);
      assert.ok(parsed.kind === 'ranges');
      assert.equal(parts.length, parsed.ranges.length, `as many parts as ranges (${header}, boundary ${boundary})`);
      parsed.ranges.forEach(([start, end], i) => {
        assert.equal(parts[i]!.range, `bytes ${start}-${end - 1}/${data.length}`);
        assert.ok(parts[i]!.data.equals(data.subarray(start, end)), `part ${i} is the file's bytes ${start}-${end - 1}`);
      });
    }),
    parameters(300, 0x4a48),
  );
});

test('multipart/byteranges: no boundary can be told from an earlier one', () => {
  // Found by the property above: the boundary was a per-process prefix and a counter, so a file
  // could carry the delimiter of the next multipart response and split it into forged parts.
  const first = multipartLayout([[0, 1], [2, 3]], 3, 'x/y').boundary;
  const second = multipartLayout([[0, 1], [2, 3]], 3, 'x/y').boundary;
  assert.notEqual(second, guessNext(first));
  const shared = [...first].filter((c, i) => second[i] === c).length;
  assert.ok(shared < first.length - 8, `boundaries share too much: ${first} / ${second}`);
});
