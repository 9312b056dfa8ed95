import type { FailureKind, PassiveOptions } from './types.js';

/**
 * Outlier detection (Envoy) for one target: failures seen by real traffic.
 * `consecutiveFailures` failures in a row, all within `windowMs`, eject the
 * target for `baseEjectionMs × n` (n = how many times it has been ejected,
 * capped at `maxEjectionMs`). The multiplier decays by one for every
 * `baseEjectionMs` the target then stays in.
 */
export class Outlier {
  /** Times (monotonic ms) of the current run of consecutive failures, oldest first; at most `consecutiveFailures`. */
  private streak: number[] = [];
  ejections = 0;
  ejectedUntil: number | undefined;
  /** When the target last came back (monotonic ms). */
  private returnedAt: number | undefined;
  lastKind: FailureKind | undefined;

  get failures(): number {
    return this.streak.length;
  }

  get ejected(): boolean {
    return this.ejectedUntil !== undefined;
  }

  success(): void {
    // Called for every good response: truncating an array is not free, even an empty one.
    if (this.streak.length !== 0) this.streak.length = 0;
  }

  /**
   * Count a failure. Returns true when the streak is long enough (and recent
   * enough) to eject; the caller decides (max ejection percent) and calls `eject`.
   */
  failure(kind: FailureKind, now: number, options: PassiveOptions): boolean {
    if (this.ejected) return false;
    if (kind === 'status5xx' && !options.count5xx) return false;
    this.lastKind = kind;
    this.streak.push(now);
    if (this.streak.length > options.consecutiveFailures) this.streak.shift();
    return this.streak.length >= options.consecutiveFailures && now - this.streak[0]! <= options.windowMs;
  }

  /** Eject now; returns how long for. */
  eject(now: number, options: PassiveOptions): number {
    if (this.returnedAt !== undefined && options.baseEjectionMs > 0) {
      const decay = Math.floor((now - this.returnedAt) / options.baseEjectionMs);
      this.ejections = Math.max(0, this.ejections - decay);
    }
    this.ejections++;
    const duration = Math.min(options.baseEjectionMs * this.ejections, Math.max(options.maxEjectionMs, options.baseEjectionMs));
    this.ejectedUntil = now + duration;
    this.streak.length = 0;
    return duration;
  }

  /** Eject now for `durationMs` chosen by another detector (stall detection); returns it. */
  ejectFor(now: number, durationMs: number): number {
    this.ejectedUntil = now + durationMs;
    this.streak.length = 0;
    return durationMs;
  }

  uneject(now: number): void {
    this.ejectedUntil = undefined;
    this.returnedAt = now;
    this.streak.length = 0;
  }
}

/** How many targets of a pool of `total` may be ejected at once (at least one, as Envoy). */
export function maxEjected(total: number, percent: number): number {
  return Math.max(1, Math.floor((total * percent) / 100));
}

/** Panic (Envoy's healthy panic threshold): too few targets are available. */
export function inPanic(available: number, total: number, thresholdPercent: number): boolean {
  if (total === 0 || thresholdPercent <= 0) return false;
  return (available * 100) / total < thresholdPercent;
}
