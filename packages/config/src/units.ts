import { parseDuration } from '@wmproxy/health';

export { parseDuration, formatDuration, DurationError, MAX_DURATION_MS } from '@wmproxy/health';

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

/** A duration in ms as the schema writes defaults: the largest whole unit, except that 60s stays 60s. */
export function durationText(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 60_000) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** Bytes as the schema writes defaults: `64k`, `10m`, or a plain number. */
export function sizeText(bytes: number): string {
  for (const [unit, factor] of [['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return String(bytes);
}
