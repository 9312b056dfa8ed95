import { parseDuration } from '@wmproxy/health';

export { parseDuration, formatDuration, DurationError } from '@wmproxy/health';

const SIZE = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i;
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
    if (!Number.isInteger(input) || input < 0) throw new SizeError(input);
    return input;
  }
  const match = SIZE.exec(input.trim());
  if (!match) throw new SizeError(input);
  return Math.round(Number(match[1]) * FACTORS[match[2]!.toLowerCase()]!);
}

/** Milliseconds of an optional duration string. */
export function durationMs(input: string | undefined, fallback: number): number {
  return input === undefined ? fallback : parseDuration(input);
}
