/**
 * Durations as people write them: `500ms`, `1s`, `1.5s`, `2m`, `1h`, `1m30s`.
 * A bare number is milliseconds. Shared with the configuration loader.
 */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
const BARE = /^\d+(?:\.\d+)?$/;

export class DurationError extends Error {
  constructor(input: string) {
    super(`invalid duration "${input}" (expected e.g. 500ms, 2s, 1m30s)`);
    this.name = 'DurationError';
  }
}

/** Milliseconds in `input`; throws DurationError when it is not a duration. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new DurationError(String(input));
    return input;
  }
  const text = input.trim().toLowerCase();
  if (BARE.test(text)) return Number(text);
  if (text.length === 0) throw new DurationError(input);
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const at = PART.lastIndex;
    const match = PART.exec(text);
    if (!match || match.index !== at) throw new DurationError(input);
    total += Number(match[1]) * UNITS[match[2]!]!;
  }
  return Math.round(total);
}

/** `1500` → `1.5s`, `250` → `250ms`, `120000` → `2m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(3)}s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(3)}m`;
  return `${+(ms / 3_600_000).toFixed(3)}h`;
}
