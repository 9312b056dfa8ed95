import type { ActiveOptions, HealthCheckerOptions, PassiveOptions, TargetSpec } from './types.js';

export const DEFAULT_ACTIVE: Readonly<ActiveOptions> = Object.freeze({
  intervalMs: 2000,
  timeoutMs: 1000,
  rise: 2,
  fall: 3,
  jitter: 0.1,
  fastIntervalMs: 0, // 0: the interval
  downIntervalMs: 0, // 0: the interval
  initial: 'unknown',
  decideOnFirst: true,
  history: 10,
});

export const DEFAULT_PASSIVE: Readonly<PassiveOptions> = Object.freeze({
  enabled: true,
  consecutiveFailures: 5,
  windowMs: 10_000,
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
  maxEjectionPercent: 10,
  count5xx: false,
});

export const DEFAULT_PANIC_THRESHOLD = 50;
export const DEFAULT_CONCURRENCY = 1024;
export const DEFAULT_SLOW_START_MIN_PERCENT = 10;

/**
 * Every default of the health checker in one place: the checker, config's
 * resolver and schema, and the README tables read them from here
 * (test/defaults.test.ts checks the README).
 */
export const HEALTH_DEFAULTS = Object.freeze({
  active: DEFAULT_ACTIVE,
  passive: DEFAULT_PASSIVE,
  panicThreshold: DEFAULT_PANIC_THRESHOLD,
  /** In panic, send traffic to every target (`open`) or only to available ones (`closed`). */
  failMode: 'open' as 'open' | 'closed',
  /** Slow-start window (0: off). */
  slowStartMs: 0,
  slowStartMinPercent: DEFAULT_SLOW_START_MIN_PERCENT,
  concurrency: DEFAULT_CONCURRENCY,
});

export class HealthOptionError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'HealthOptionError';
  }
}

function positive(name: string, value: number, integer: boolean, allowZero = false): void {
  const ok = Number.isFinite(value) && (allowZero ? value >= 0 : value > 0) && (!integer || Number.isInteger(value));
  if (!ok) throw new HealthOptionError(`${name} must be a ${integer ? 'whole number' : 'number'} ${allowZero ? '>= 0' : '> 0'} (got ${value})`);
}

/** Checker defaults ← target overrides, validated; the timeout is capped at the interval, 0 intervals become the interval. */
export function resolveActive(base: Partial<ActiveOptions> | undefined, spec?: Partial<TargetSpec>): ActiveOptions {
  const merged: ActiveOptions = { ...DEFAULT_ACTIVE };
  for (const source of [base, spec]) {
    if (!source) continue;
    for (const key of Object.keys(DEFAULT_ACTIVE) as Array<keyof ActiveOptions>) {
      const value = source[key];
      if (value !== undefined) (merged as unknown as Record<string, unknown>)[key] = value;
    }
  }
  positive('interval', merged.intervalMs, false);
  positive('timeout', merged.timeoutMs, false);
  positive('rise', merged.rise, true);
  positive('fall', merged.fall, true);
  positive('fastinter', merged.fastIntervalMs, false, true);
  positive('downinter', merged.downIntervalMs, false, true);
  positive('history', merged.history, true, true);
  if (!(merged.jitter >= 0 && merged.jitter <= 1)) throw new HealthOptionError(`jitter must be between 0 and 1 (got ${merged.jitter})`);
  if (merged.initial !== 'unknown' && merged.initial !== 'healthy' && merged.initial !== 'unhealthy') {
    throw new HealthOptionError(`initial must be unknown, healthy or unhealthy (got ${String(merged.initial)})`);
  }
  if (merged.fastIntervalMs === 0) merged.fastIntervalMs = merged.intervalMs;
  if (merged.downIntervalMs === 0) merged.downIntervalMs = merged.intervalMs;
  merged.timeoutMs = Math.min(merged.timeoutMs, merged.intervalMs);
  return merged;
}

export function resolvePassive(given: Partial<PassiveOptions> | undefined): PassiveOptions {
  const merged: PassiveOptions = { ...DEFAULT_PASSIVE, ...stripUndefined(given) };
  positive('consecutiveFailures', merged.consecutiveFailures, true);
  positive('window', merged.windowMs, false);
  positive('baseEjectionTime', merged.baseEjectionMs, false);
  positive('maxEjectionTime', merged.maxEjectionMs, false);
  if (!(merged.maxEjectionPercent >= 0 && merged.maxEjectionPercent <= 100)) {
    throw new HealthOptionError(`maxEjectionPercent must be 0-100 (got ${merged.maxEjectionPercent})`);
  }
  return merged;
}

export function validateChecker(options: HealthCheckerOptions): void {
  if (options.panicThreshold !== undefined && !(options.panicThreshold >= 0 && options.panicThreshold <= 100)) {
    throw new HealthOptionError(`panicThreshold must be 0-100 (got ${options.panicThreshold})`);
  }
  if (options.failMode !== undefined && options.failMode !== 'open' && options.failMode !== 'closed') {
    throw new HealthOptionError(`failMode must be open or closed (got ${String(options.failMode)})`);
  }
  if (options.concurrency !== undefined) positive('concurrency', options.concurrency, true);
  if (options.slowStartMs !== undefined) positive('slowStart', options.slowStartMs, false, true);
}

function stripUndefined<T extends object>(value: T | undefined): Partial<T> {
  const out: Partial<T> = {};
  if (!value) return out;
  for (const [key, entry] of Object.entries(value)) if (entry !== undefined) (out as Record<string, unknown>)[key] = entry;
  return out;
}
