/**
 * Durations as people write them: `500ms`, `1s`, `1.5s`, `2m`, `1h`, `1m30s`.
 * A bare number is milliseconds. Shared with the configuration loader.
 */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
const BARE = /^\d+(?:\.\d+)?$/;

/**
 * The longest duration a timer can wait: setTimeout fires at once (after
 * 1 ms) for anything above 2^31 - 1 ms, so a longer timeout would silently
 * become none.
 */
export const MAX_DURATION_MS = 2_147_483_647;

export class DurationError extends Error {
  constructor(input: string, tooLong = false) {
    super(
      tooLong
        ? `duration "${input}" is too long (at most 24d, 2147483647 ms: timers cannot wait longer)`
        : `invalid duration "${input}" (expected e.g. 500ms, 2s, 1m30s)`,
    );
    this.name = 'DurationError';
  }
}

/** Milliseconds in `input`; throws DurationError when it is not a duration or is longer than MAX_DURATION_MS. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new DurationError(String(input));
    if (input > MAX_DURATION_MS) throw new DurationError(String(input), true);
    return input;
  }
  const text = input.trim().toLowerCase();
  if (BARE.test(text)) {
    const ms = Number(text);
    if (ms > MAX_DURATION_MS) throw new DurationError(input, true);
    return ms;
  }
  if (text.length === 0) throw new DurationError(input);
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const at = PART.lastIndex;
    const match = PART.exec(text);
    if (!match || match.index !== at) throw new DurationError(input);
    total += Number(match[1]) * UNITS[match[2]!]!;
  }
  if (total > MAX_DURATION_MS) throw new DurationError(input, true);
  return Math.round(total);
}

/** `1500` → `1.5s`, `250` → `250ms`, `120000` → `2m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(3)}s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(3)}m`;
  return `${+(ms / 3_600_000).toFixed(3)}h`;
}
