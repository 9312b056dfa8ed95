import { parseDuration } from '@wmproxy/health';

export { parseDuration, formatDuration, DurationError } from '@wmproxy/health';

// The schema's size pattern: a unit letter may be followed by b or ib, a bare number only by b.
const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([kmg])(?:i?b)?|b)?$/i;
const FACTORS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

export class SizeError extends Error {
  constructor(input: string | number) {
    super(`invalid size "${input}" (expected e.g. 65536, 64k, 10m)`);
    this.name = 'SizeError';
  }
}

/** Bytes in `64k`, `10m`, `1g`, `512`, `1.5m` (binary units: k = 1024). */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') {
    // Above 2^53 a byte count is no longer exact (and no buffer is that large).
    if (!Number.isSafeInteger(input) || input < 0) throw new SizeError(input);
    return input;
  }
  const match = SIZE.exec(input.trim());
  if (!match) throw new SizeError(input);
  const bytes = Math.round(Number(match[1]) * FACTORS[(match[2] ?? '').toLowerCase()]!);
  if (!Number.isSafeInteger(bytes)) throw new SizeError(input);
  return bytes;
}

/** Milliseconds of an optional duration string. */
export function durationMs(input: string | undefined, fallback: number): number {
  return input === undefined ? fallback : parseDuration(input);
}
