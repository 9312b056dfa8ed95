import { HealthChecker } from './checker.js';
import type { ActiveOptions, HealthState, ProbeResult, TargetSpec } from './types.js';

/** One target of a probe run: how the user wrote it, and what to check. */
export interface ProbeTarget {
  label: string;
  spec: TargetSpec;
}

export interface ProbeRunOptions {
  targets: ProbeTarget[];
  active?: Partial<ActiveOptions>;
  /** `once`: until each state is decided; `wait`: until all are healthy or `deadlineMs` passes. */
  mode: 'once' | 'wait';
  deadlineMs?: number;
  signal?: AbortSignal;
  /** Told about every probe (for progress output). */
  onProbe?(outcome: ProbeOutcome, result: ProbeResult): void;
}

/** Where one target ended up. */
export interface ProbeOutcome {
  label: string;
  target: string;
  check: string;
  state: HealthState;
  healthy: boolean;
  probes: number;
  latencyMs?: number;
  reason: string;
  status?: number;
  history: ProbeResult[];
}

export interface ProbeRunReport {
  healthy: boolean;
  durationMs: number;
  /** `wait` mode only: the deadline passed before every target was healthy. */
  timedOut: boolean;
  results: ProbeOutcome[];
}

/**
 * Probe targets from a script or CI job (`wmproxy probe`). `once` stops when
 * every target's state is decided by rise/fall (or after rise + fall probes
 * without a decision); `wait` keeps probing until all are healthy or the
 * deadline passes.
 */
export async function runProbes(options: ProbeRunOptions): Promise<ProbeRunReport> {
  const started = performance.now();
  const checker = new HealthChecker({ active: { jitter: 0, ...options.active }, passive: { enabled: false }, panicThreshold: 0 });
  const outcomes = new Map<string, ProbeOutcome>();
  const order: ProbeOutcome[] = [];
  for (const target of options.targets) {
    const key = checker.add(target.spec);
    let outcome = outcomes.get(key);
    if (!outcome) {
      const entry = checker.snapshot().targets.find((t) => t.checks.some((c) => c.key === key))!;
      const check = entry.checks.find((c) => c.key === key)!;
      outcome = { label: target.label, target: entry.target, check: check.check, state: 'unknown', healthy: false, probes: 0, reason: 'not probed yet', history: [] };
      outcomes.set(key, outcome);
    }
    order.push(outcome);
  }
  const unique = [...new Set(order)];
  const limits = new Map<string, number>();
  for (const [key] of outcomes) {
    const check = checker.snapshot().targets.flatMap((t) => t.checks).find((c) => c.key === key)!;
    limits.set(key, check.rise + check.fall - 1);
  }

  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const complete = (): boolean => {
    if (options.mode === 'wait') return unique.every((outcome) => outcome.state === 'healthy');
    return [...outcomes].every(([key, outcome]) => outcome.state !== 'unknown' || outcome.probes >= limits.get(key)!);
  };
  checker.events.on('probe', ({ key, result, state }) => {
    const outcome = outcomes.get(key);
    if (!outcome) return;
    outcome.probes++;
    outcome.state = state;
    outcome.healthy = state === 'healthy';
    outcome.latencyMs = result.latencyMs;
    outcome.reason = result.reason;
    if (result.status !== undefined) outcome.status = result.status;
    else delete outcome.status;
    outcome.history.push(result);
    options.onProbe?.(outcome, result);
    if (complete()) finish();
  });
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (options.mode === 'wait') {
    timer = setTimeout(() => {
      timedOut = true;
      finish();
    }, options.deadlineMs ?? 30_000);
  }
  const onAbort = (): void => finish();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) finish();
  await done;
  clearTimeout(timer);
  options.signal?.removeEventListener('abort', onAbort);
  await checker.close();
  const results = options.targets.map((target, index) => ({ ...order[index]!, label: target.label }));
  return {
    healthy: results.every((outcome) => outcome.healthy),
    durationMs: Math.round(performance.now() - started),
    timedOut,
    results,
  };
}
