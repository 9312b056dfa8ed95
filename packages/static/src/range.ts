/**
 * `Range: bytes=...` (RFC 9110 section 14). Pure functions.
 */
export type RangeResult =
  | { kind: 'ignore' }
  | { kind: 'unsatisfiable' }
  /** Sorted, coalesced `[start, end)` pairs. */
  | { kind: 'ranges'; ranges: Array<[number, number]> };

const IGNORE: RangeResult = { kind: 'ignore' };
const UNSATISFIABLE: RangeResult = { kind: 'unsatisfiable' };
const DIGITS = /^\d+$/;

/**
 * Parse against a representation of `size` bytes. A syntactically invalid
 * header, another unit, or more than `maxRanges` ranges → ignored (full 200,
 * as the RFC allows); no satisfiable range → 416. Overlapping and adjacent
 * ranges are merged.
 */
export function parseRange(header: string, size: number, maxRanges: number): RangeResult {
  const equals = header.indexOf('=');
  if (equals < 0 || header.slice(0, equals).trim().toLowerCase() !== 'bytes') return IGNORE;
  const specs = header.slice(equals + 1).split(',');
  const ranges: Array<[number, number]> = [];
  let count = 0;
  for (const raw of specs) {
    const spec = raw.trim();
    if (spec === '') continue; // empty list elements are allowed
    if (++count > maxRanges) return IGNORE;
    const dash = spec.indexOf('-');
    if (dash < 0) return IGNORE;
    const firstText = spec.slice(0, dash);
    const lastText = spec.slice(dash + 1);
    if (firstText === '') {
      if (!DIGITS.test(lastText)) return IGNORE;
      const suffix = Number(lastText);
      if (suffix > 0 && size > 0) ranges.push([Math.max(0, size - suffix), size]);
      continue;
    }
    if (!DIGITS.test(firstText) || (lastText !== '' && !DIGITS.test(lastText))) return IGNORE;
    const first = Number(firstText);
    const last = lastText === '' ? Infinity : Number(lastText);
    if (last < first) return IGNORE;
    if (first < size) ranges.push([first, Math.min(last + 1, size)]);
  }
  if (count === 0) return IGNORE;
  if (ranges.length === 0) return UNSATISFIABLE;
  return { kind: 'ranges', ranges: coalesce(ranges) };
}

function coalesce(ranges: Array<[number, number]>): Array<[number, number]> {
  if (ranges.length === 1) return ranges;
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [ranges[0]!];
  for (let i = 1; i < ranges.length; i++) {
    const range = ranges[i]!;
    const previous = merged[merged.length - 1]!;
    if (range[0] <= previous[1]) previous[1] = Math.max(previous[1], range[1]);
    else merged.push(range);
  }
  return merged;
}

const encoder = new TextEncoder();
const boundaryBytes = new Uint8Array(12);

/**
 * A fresh boundary per response, from 96 random bits: one that could be told
 * from an earlier response (a per-process prefix and a counter, say) lets a
 * file that holds the next delimiter split a multipart body into forged parts.
 */
function newBoundary(): string {
  globalThis.crypto.getRandomValues(boundaryBytes);
  let hex = '';
  for (const byte of boundaryBytes) hex += (byte < 16 ? '0' : '') + byte.toString(16);
  return `wmproxy-${hex}`;
}

/** The pieces of a multipart/byteranges body, and its exact length. */
export function multipartLayout(
  ranges: Array<[number, number]>,
  size: number,
  contentType: string,
): { boundary: string; parts: Array<{ head: Uint8Array; start: number; end: number }>; tail: Uint8Array; length: number } {
  const boundary = newBoundary();
  let length = 0;
  const parts = ranges.map(([start, end]) => {
    const head = encoder.encode(
      `\r\n--${boundary}\r\ncontent-type: ${contentType}\r\ncontent-range: bytes ${start}-${end - 1}/${size}\r\n\r\n`,
    );
    length += head.length + (end - start);
    return { head, start, end };
  });
  const tail = encoder.encode(`\r\n--${boundary}--\r\n`);
  length += tail.length;
  return { boundary, parts, tail, length };
}
