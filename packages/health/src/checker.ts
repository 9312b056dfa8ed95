import { EventEmitter } from 'node:events';
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_PANIC_THRESHOLD,
  DEFAULT_SLOW_START_MIN_PERCENT,
  HEALTH_DEFAULTS,
  resolveActive,
  resolvePassive,
  validateChecker,
} from './options.js';
import { inPanic, maxEjected, Outlier } from './passive.js';
import { runProbe } from './probes/index.js';
import { Scheduler, type Job } from './scheduler.js';
import { slowStartFactor } from './slow-start.js';
import { RiseFall } from './state.js';
import { Stall, type LossVerdict } from './stall.js';
import { checkKey, describeCheck, normaliseAddress, parseTargetUrl, resolveCheck, splitAddress, type ResolvedCheck } from './target.js';
import type {
  ActiveOptions,
  EjectKind,
  FailureKind,
  HealthCheckerOptions,
  HealthEventMap,
  HealthSnapshot,
  HealthState,
  HealthStats,
  PassiveOptions,
  PoolSnapshot,
  ProbeResult,
  TargetSnapshot,
  TargetSpec,
} from './types.js';
import type { Transport } from '@wmproxy/core-net';

const DEFAULT_POOL = 'default';
const MAX_ALIASES = 10_000;

/** One deduplicated active check (address + check spec). */
class Check implements Job {
  due = 0;
  heapIndex = -1;
  queued = false;
  inFlight = false;
  removed = false;
  /** Monotonic start of the last probe. */
  lastStart = 0;
  lastChange = Date.now();
  history: ProbeResult[] = [];
  machine: RiseFall;

  constructor(
    readonly key: string,
    readonly host: Host,
    readonly check: ResolvedCheck | null,
    readonly description: string,
    public options: ActiveOptions,
    readonly transport: Transport | undefined,
  ) {
    this.machine = new RiseFall(options.initial, options.rise, options.fall, options.decideOnFirst);
  }

  get active(): boolean {
    return this.check !== null;
  }
}

/** One address, with its checks, passive state and pools. */
class Host {
  readonly checks = new Set<Check>();
  readonly pools = new Set<string>();
  readonly outlier = new Outlier();
  /** Stall detection of responses (lost request hedges); created by the first answer or loss. */
  stall: Stall | undefined;
  /** Stall detection of connects (lost connect races): a server can accept and never answer, so apart. */
  connectStall: Stall | undefined;
  /** The stall detector behind the current ejection (undefined: none, or the outlier's). */
  stallEjected: Stall | undefined;
  /** Active checks marked the target unhealthy during its stall ejection. */
  downSeen = false;
  /** The reason of the current ejection (for snapshots). */
  ejectReason = '';
  /** The detector behind the current ejection. */
  ejectKind: EjectKind = 'consecutive_failures';
  readonly hostname: string;
  readonly port: number;
  state: HealthState = 'unknown';
  available = true;
  /** Monotonic time the target came back (for slow start). */
  recoveredAt: number | undefined;
  /** Monotonic time of the current ejection. */
  ejectedAt = 0;
  ejectTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly address: string) {
    const { host, port } = splitAddress(address);
    this.hostname = host;
    this.port = port;
  }
}

interface Pool {
  name: string;
  total: number;
  available: number;
  ejected: number;
  panic: boolean;
}

/**
 * Active and passive health checking for a set of targets.
 *
 * ```ts
 * const health = new HealthChecker({ active: { intervalMs: 1000 } });
 * health.events.on('transition', (event) => console.log(event.target, event.from, '->', event.to, event.reason));
 * health.add({ address: '10.0.0.5:8080', check: { type: 'http', path: '/healthz' } });
 * if (health.isAvailable('10.0.0.5:8080')) { … }
 * health.reportFailure('10.0.0.5:8080', 'connect'); // from the request path
 * await health.close();
 * ```
 */
export class HealthChecker {
  readonly events = new EventEmitter<HealthEventMap>();
  private readonly checks = new Map<string, Check>();
  private readonly hosts = new Map<string, Host>();
  private readonly pools = new Map<string, Pool>();
  private readonly scheduler: Scheduler<Check>;
  private activeDefaults: Partial<ActiveOptions> | undefined;
  private passive!: PassiveOptions;
  private slowStartMs!: number;
  private slowStartMinPercent!: number;
  private panicThreshold!: number;
  private failMode!: 'open' | 'closed';
  /** False in a follower: active checks are declared but never probed here; `applyState` sets their state. */
  private readonly probing: boolean;
  private closed = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly aliases = new Map<string, string>();
  private probes = 0;
  private failures = 0;
  /** Pools in panic now: while none is, a target's availability is its own (no pool lookup per request). */
  private panicking = 0;

  constructor(options: HealthCheckerOptions = {}) {
    this.probing = options.probe ?? true;
    this.scheduler = new Scheduler<Check>((check) => this.runCheck(check), DEFAULT_CONCURRENCY);
    this.configure(options);
  }

  /**
   * Take new checker-wide options (hot reload): passive settings, panic
   * threshold, fail mode, slow start and concurrency apply at once; new
   * defaults for active checks apply to the checks that the next
   * `replaceTargets()` keeps or adds. Throws on invalid options, changing nothing.
   */
  configure(options: HealthCheckerOptions): void {
    validateChecker(options);
    resolveActive(options.active); // validate before changing anything
    const passive = resolvePassive(options.passive);
    this.activeDefaults = options.active;
    this.passive = passive;
    this.slowStartMs = options.slowStartMs ?? HEALTH_DEFAULTS.slowStartMs;
    this.slowStartMinPercent = options.slowStartMinPercent ?? DEFAULT_SLOW_START_MIN_PERCENT;
    this.panicThreshold = options.panicThreshold ?? DEFAULT_PANIC_THRESHOLD;
    this.failMode = options.failMode ?? HEALTH_DEFAULTS.failMode;
    this.scheduler.concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    for (const pool of this.pools.values()) this.updatePanic(pool);
  }

  /**
   * Set an active check's state from elsewhere: a worker process following
   * the primary that probes (see `probe: false`). Emits `transition` and
   * updates availability and panic like a probe result would.
   */
  applyState(key: string, state: HealthState, reason = 'state from the primary'): void {
    const check = this.checks.get(key);
    if (!check || this.closed) return;
    const previous = check.machine.state;
    check.machine.successes = state === 'healthy' ? check.machine.rise : 0;
    check.machine.failures = state === 'unhealthy' ? check.machine.fall : 0;
    if (previous === state) return;
    check.machine.state = state;
    check.lastChange = Date.now();
    this.emit('transition', {
      target: check.host.address,
      key,
      check: check.description,
      from: previous,
      to: state,
      reason,
      successes: check.machine.successes,
      failures: check.machine.failures,
      latencyMs: 0,
      at: Date.now(),
    });
    this.refreshHost(check.host, reason);
  }

  /**
   * Check a target (a spec, or a `tcp://`/`http://`/`https://` URL or
   * `host:port`). Returns the check's key; the same normalised address and
   * check added twice share one key and one probe (the first spec's timing
   * wins; pools are merged).
   */
  add(target: TargetSpec | string): string {
    if (this.closed) throw new Error('HealthChecker is closed');
    const spec = typeof target === 'string' ? parseTargetUrl(target) : target;
    const { key, address, check, description } = this.identify(spec);
    const pool = spec.pool ?? DEFAULT_POOL;
    const existing = this.checks.get(key);
    if (existing) {
      this.joinPool(existing.host, pool);
      return key;
    }
    const options = resolveActive(this.activeDefaults, spec);
    let host = this.hosts.get(address);
    if (!host) {
      host = new Host(address);
      if (spec.slowStart) host.recoveredAt = performance.now();
      this.hosts.set(address, host);
    }
    const entry = new Check(key, host, check, description, options, spec.transport);
    this.checks.set(key, entry);
    host.checks.add(entry);
    this.joinPool(host, pool);
    this.refreshHost(host, 'added');
    if (entry.active && this.probing) this.scheduler.schedule(entry, performance.now() + Math.random() * options.jitter * options.intervalMs);
    return key;
  }

  /** Stop checking a key (from `add`) or every check of an address. Returns how many checks were removed. */
  remove(keyOrTarget: string): number {
    const check = this.checks.get(keyOrTarget);
    if (check) {
      this.dropCheck(check);
      return 1;
    }
    const host = this.findHost(keyOrTarget);
    if (!host) return 0;
    const count = host.checks.size;
    for (const entry of [...host.checks]) this.dropCheck(entry);
    return count;
  }

  /**
   * Hot reload: make the checked set exactly `specs`. Checks that stay (same
   * normalised address and check) keep their state, counters and history and
   * take the new timing; the others are removed or added.
   */
  replaceTargets(specs: ReadonlyArray<TargetSpec | string>): void {
    if (this.closed) throw new Error('HealthChecker is closed');
    const wanted = new Map<string, { spec: TargetSpec; pools: Set<string> }>();
    for (const target of specs) {
      const spec = typeof target === 'string' ? parseTargetUrl(target) : target;
      const { key } = this.identify(spec);
      const seen = wanted.get(key);
      if (seen) seen.pools.add(spec.pool ?? DEFAULT_POOL);
      else wanted.set(key, { spec, pools: new Set([spec.pool ?? DEFAULT_POOL]) });
    }
    // Validate every timing before touching anything.
    const timings = new Map<string, ActiveOptions>();
    for (const [key, { spec }] of wanted) timings.set(key, resolveActive(this.activeDefaults, spec));
    const stale = [...this.checks.values()].filter((check) => !wanted.has(check.key));
    // Add before dropping, so an address whose check changed keeps its passive state.
    const poolsByHost = new Map<string, Set<string>>();
    for (const [key, { spec, pools }] of wanted) {
      const address = this.identify(spec).address;
      const set = poolsByHost.get(address) ?? new Set<string>();
      for (const pool of pools) set.add(pool);
      poolsByHost.set(address, set);
      const existing = this.checks.get(key);
      if (existing) this.retime(existing, timings.get(key)!);
      else for (const pool of pools) this.add({ ...spec, pool });
    }
    for (const check of stale) this.dropCheck(check);
    // Pools are recomputed from the new specs for every host that stays.
    for (const [address, pools] of poolsByHost) {
      const host = this.hosts.get(address)!;
      for (const pool of [...host.pools]) if (!pools.has(pool)) this.leavePool(host, pool);
      for (const pool of pools) this.joinPool(host, pool);
    }
  }

  /** Keys of every check. */
  keys(): string[] {
    return [...this.checks.keys()];
  }

  /** Normalised addresses of every target. */
  targets(): string[] {
    return [...this.hosts.keys()];
  }

  /** The combined active state of a target (`unknown` for a target not checked). */
  state(target: string): HealthState {
    return this.findHost(target)?.state ?? 'unknown';
  }

  /**
   * May traffic go to this target? True when no active check says unhealthy
   * and passive checks have not ejected it — or when its pool panics and
   * fails open. (Fail closed: nothing is available while the pool panics.)
   * A target the checker does not know is available.
   */
  isAvailable(target: string, pool?: string): boolean {
    const host = this.findHost(target);
    if (!host) return true;
    if (this.panicking === 0) return host.available;
    if (pool !== undefined) return this.availableIn(host, this.pools.get(pool));
    for (const name of host.pools) if (!this.availableIn(host, this.pools.get(name))) return false;
    return true;
  }

  /** The targets of a pool traffic may go to (applies the panic threshold). */
  available(pool: string = DEFAULT_POOL): string[] {
    const info = this.pools.get(pool);
    const out: string[] = [];
    for (const host of this.hosts.values()) if (host.pools.has(pool) && this.availableIn(host, info)) out.push(host.address);
    return out;
  }

  /** Is the pool below its panic threshold? */
  inPanic(pool: string = DEFAULT_POOL): boolean {
    return this.pools.get(pool)?.panic ?? false;
  }

  /** Slow start: a factor in (0, 1] to multiply a target's weight by (1 outside the ramp). */
  weightFactor(target: string): number {
    // Called for every server on every pick: no clock read outside a ramp.
    if (this.slowStartMs <= 0) return 1;
    const host = this.findHost(target);
    if (!host || host.recoveredAt === undefined) return 1;
    return slowStartFactor(host.recoveredAt, performance.now(), this.slowStartMs, this.slowStartMinPercent);
  }

  /** Passive check: a request to this target went well (resets its failure streak). */
  reportSuccess(target: string): void {
    this.findHost(target)?.outlier.success();
  }

  /** Passive check: a request to this target failed. Enough in a row, within the window, eject it. */
  reportFailure(target: string, kind: FailureKind): void {
    if (!this.passive.enabled || this.closed) return;
    const host = this.findHost(target);
    if (!host) return;
    const now = performance.now();
    if (!host.outlier.failure(kind, now, this.passive)) return;
    if (!this.mayEject(host)) return;
    const streak = host.outlier.failures;
    this.eject(host, now, host.outlier.eject(now, this.passive), 'consecutive_failures', `${streak} consecutive ${kindWords(kind)} failures`);
  }

  /**
   * Stall detection: work sent to `target` at `sentAt` (performance.now();
   * 0 if unknown) lost a race — no first byte (or no connection) within the
   * hedge delay while another target of its group answered (or connected)
   * first. `STALL_AFTER` separate losses in a row, or one on probation, eject
   * it for at least `minEjectMs` (see stall.ts), within the same
   * max-ejection-percent as outlier detection. Works whether passive checks
   * are enabled or not: it is driven by hedging, which is configured apart.
   */
  reportLostRace(target: string, sentAt: number, minEjectMs = 0, race: Race = 'response'): LossVerdict {
    if (this.closed) return 'ignored';
    const host = this.findHost(target);
    if (!host || host.outlier.ejected) return 'ignored';
    const stall = race === 'connect' ? (host.connectStall ??= new Stall()) : (host.stall ??= new Stall());
    const now = performance.now();
    const verdict = stall.lost(sentAt, now);
    if (verdict !== 'skipped') return verdict;
    if (!this.mayEject(host)) return 'counted';
    const losses = stall.losses;
    host.stallEjected = stall;
    host.downSeen = false;
    const what = race === 'connect' ? 'connect races' : 'hedges';
    this.eject(host, now, host.outlier.ejectFor(now, stall.ejected(minEjectMs)), race === 'connect' ? 'connect_stall' : 'stall', `stalled: ${losses} lost ${what} in a row`);
    return 'skipped';
  }

  /** Stall detection: `target` answered a request (or completed a connect) started at `sentAt` (performance.now()). */
  reportAnswer(target: string, sentAt: number, race: Race = 'response'): void {
    const host = this.findHost(target);
    if (!host) return;
    if (race === 'connect') (host.connectStall ??= new Stall()).answered(sentAt);
    else (host.stall ??= new Stall()).answered(sentAt);
  }

  /** Has `target` answered work sent after `sentAt` (performance.now())? */
  answeredAfter(target: string, sentAt: number): boolean {
    const stall = this.findHost(target)?.stall;
    return stall !== undefined && stall.newestSentAt > sentAt;
  }

  /** Has `target` lost a race and not answered since (or is it out for stalling)? Its waiting work is worth hedging. */
  lostSinceAnswer(target: string): boolean {
    const host = this.findHost(target);
    if (!host?.stall) return false;
    return host.stall.losses > 0 || host.stall.probation || host.stallEjected !== undefined;
  }

  /** Is `target` ejected by the stall detector right now? */
  isStalled(target: string): boolean {
    return this.findHost(target)?.stallEjected !== undefined;
  }

  /** Max ejection percent: may one more target of each of `host`'s pools be ejected? */
  private mayEject(host: Host): boolean {
    for (const name of host.pools) {
      const pool = this.pools.get(name)!;
      if (pool.ejected >= maxEjected(pool.total, this.passive.maxEjectionPercent)) return false;
    }
    return true;
  }

  /** The one ejection mechanism (outlier and stall detection): counts, timer, event. */
  private eject(host: Host, now: number, durationMs: number, kind: EjectKind, reason: string): void {
    host.ejectedAt = now;
    host.ejectReason = reason;
    host.ejectKind = kind;
    for (const name of host.pools) this.pools.get(name)!.ejected++;
    host.ejectTimer = setTimeout(onEjectionOver, durationMs, this, host);
    this.emit('eject', { target: host.address, kind, reason, ejections: host.outlier.ejections, durationMs, at: Date.now() });
    this.refreshHost(host, 'ejected');
  }

  /** The whole table: every target, its checks and their last results, and the pools. */
  snapshot(): HealthSnapshot {
    const now = performance.now();
    const wall = Date.now();
    const targets: TargetSnapshot[] = [];
    for (const host of this.hosts.values()) {
      const entry: TargetSnapshot = {
        target: host.address,
        pools: [...host.pools],
        state: host.state,
        available: this.isAvailable(host.address),
        ejected: host.outlier.ejected,
        ejections: host.outlier.ejections,
        passiveFailures: host.outlier.failures,
        weightFactor: slowStartFactor(host.recoveredAt, now, this.slowStartMs, this.slowStartMinPercent),
        checks: [...host.checks]
          .filter((check) => check.active)
          .map((check) => ({
            key: check.key,
            check: check.description,
            state: check.machine.state,
            successes: check.machine.successes,
            failures: check.machine.failures,
            inFlight: check.inFlight,
            lastChange: check.lastChange,
            history: [...check.history],
            intervalMs: check.options.intervalMs,
            timeoutMs: check.options.timeoutMs,
            rise: check.options.rise,
            fall: check.options.fall,
          })),
      };
      if (host.outlier.ejectedUntil !== undefined) {
        entry.ejectedUntil = Math.round(wall + host.outlier.ejectedUntil - now);
        entry.ejectReason = host.ejectReason;
        entry.ejectKind = host.ejectKind;
      }
      targets.push(entry);
    }
    const pools: PoolSnapshot[] = [...this.pools.values()].map((pool) => ({
      pool: pool.name,
      total: pool.total,
      available: pool.available,
      panic: pool.panic,
    }));
    return { at: wall, targets, pools, probesInFlight: this.scheduler.inFlight, probesQueued: this.scheduler.queued };
  }

  /** Counters since start: probes run and failed, how late they started (the scheduler keeping up), in flight and queued now. */
  stats(): HealthStats {
    const started = this.scheduler.started;
    return {
      targets: this.hosts.size,
      checks: this.checks.size,
      probes: this.probes,
      failures: this.failures,
      inFlight: this.scheduler.inFlight,
      queued: this.scheduler.queued,
      meanLatenessMs: started === 0 ? 0 : Math.round((this.scheduler.latenessTotal / started) * 100) / 100,
      maxLatenessMs: Math.round(this.scheduler.latenessMax * 100) / 100,
    };
  }

  /** Stop probing; resolves once probes in flight have finished (each is bounded by its timeout). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.scheduler.close();
    for (const host of this.hosts.values()) if (host.ejectTimer) clearTimeout(host.ejectTimer);
    await Promise.all([...this.inFlight]);
  }

  // ---- internals ----

  private identify(spec: TargetSpec): { key: string; address: string; check: ResolvedCheck | null; description: string } {
    const address = normaliseAddress(spec.address);
    const check = spec.check === null ? null : resolveCheck(address, spec.check ?? { type: 'tcp' });
    const key = checkKey(address, check);
    return { key: spec.transport ? `${key} via ${spec.transport.kind}` : key, address, check, description: describeCheck(check) };
  }

  private findHost(target: string): Host | undefined {
    const direct = this.hosts.get(target);
    if (direct) return direct;
    // Other spellings (`LOCALHOST:80`, `[0::1]:80`) are normalised once and remembered.
    let normalised = this.aliases.get(target);
    if (normalised === undefined) {
      try {
        normalised = normaliseAddress(target);
      } catch {
        normalised = '';
      }
      if (this.aliases.size >= MAX_ALIASES) this.aliases.clear();
      this.aliases.set(target, normalised);
    }
    return normalised === '' ? undefined : this.hosts.get(normalised);
  }

  private availableIn(host: Host, pool: Pool | undefined): boolean {
    if (!pool || !pool.panic) return host.available;
    return this.failMode === 'open';
  }

  private emit<K extends keyof HealthEventMap>(name: K, ...args: HealthEventMap[K]): void {
    if (this.events.listenerCount(name) === 0) return;
    try {
      (this.events.emit as (event: K, ...rest: HealthEventMap[K]) => boolean)(name, ...args);
    } catch {
      // A listener's bug must not stop the checker.
    }
  }

  private runCheck(check: Check): Promise<void> {
    const run = this.probe(check);
    this.inFlight.add(run);
    return run.finally(() => this.inFlight.delete(run));
  }

  private async probe(check: Check): Promise<void> {
    if (check.removed || this.closed || check.inFlight) return;
    check.inFlight = true;
    check.lastStart = performance.now();
    const startedAt = check.lastStart;
    let result: ProbeResult;
    try {
      result = await runProbe(check.host.hostname, check.host.port, check.check!, check.options.timeoutMs, check.transport);
    } catch (error) {
      result = { ok: false, at: Date.now(), latencyMs: 0, reason: error instanceof Error ? error.message : String(error) };
    } finally {
      check.inFlight = false;
    }
    if (check.removed || this.closed) return;
    this.record(check, result, startedAt);
    const machine = check.machine;
    const options = check.options;
    const base = machine.changing ? options.fastIntervalMs : machine.state === 'unhealthy' ? options.downIntervalMs : options.intervalMs;
    const jittered = base * (1 + options.jitter * (2 * Math.random() - 1));
    this.scheduler.schedule(check, Math.max(startedAt + jittered, performance.now()));
  }

  private record(check: Check, result: ProbeResult, startedAt: number): void {
    const limit = check.options.history;
    if (limit > 0) {
      if (check.history.length >= limit) check.history.shift();
      check.history.push(result);
    }
    const host = check.host;
    this.probes++;
    if (!result.ok) this.failures++;
    const previous = check.machine.record(result.ok);
    if (this.events.listenerCount('probe') > 0) {
      this.emit('probe', { target: host.address, key: check.key, result, state: check.machine.state });
    }
    if (previous !== undefined) {
      check.lastChange = Date.now();
      this.emit('transition', {
        target: host.address,
        key: check.key,
        check: check.description,
        from: previous,
        to: check.machine.state,
        reason: result.reason,
        successes: check.machine.successes,
        failures: check.machine.failures,
        latencyMs: result.latencyMs,
        at: result.at,
      });
    }
    // A passing active check that started after the ejection brings the target back early;
    // a stalled one only once the checks had marked it down (a TCP check passes while the
    // process behind the port hangs).
    if (result.ok && host.outlier.ejected && startedAt >= host.ejectedAt && (host.stallEjected === undefined || host.downSeen)) {
      this.uneject(host, 'active check passed');
    } else if (previous !== undefined) {
      this.refreshHost(host, result.reason);
    }
  }

  /** @internal */
  uneject(host: Host, reason: string): void {
    if (!host.outlier.ejected) return;
    if (host.ejectTimer) clearTimeout(host.ejectTimer);
    host.ejectTimer = undefined;
    host.outlier.uneject(performance.now());
    if (host.stallEjected) {
      host.stallEjected.returned();
      host.stallEjected = undefined;
    }
    for (const name of host.pools) {
      const pool = this.pools.get(name);
      if (pool) pool.ejected--;
    }
    this.emit('uneject', { target: host.address, kind: host.ejectKind, reason, ejections: host.outlier.ejections, durationMs: 0, at: Date.now() });
    this.refreshHost(host, reason);
  }

  /** Recompute a host's combined state and availability, and its pools' counts and panic. */
  private refreshHost(host: Host, _reason: string): void {
    let unhealthy = false;
    let allHealthy = true;
    for (const check of host.checks) {
      if (!check.active) continue;
      const state = check.machine.state;
      if (state === 'unhealthy') unhealthy = true;
      if (state !== 'healthy') allHealthy = false;
    }
    const state: HealthState = unhealthy ? 'unhealthy' : allHealthy ? 'healthy' : 'unknown';
    if (unhealthy && host.stallEjected !== undefined) host.downSeen = true;
    const wasUnhealthy = host.state === 'unhealthy';
    host.state = state;
    if (wasUnhealthy && state === 'healthy') host.recoveredAt = performance.now();
    const available = state !== 'unhealthy' && !host.outlier.ejected;
    if (available === host.available) return;
    host.available = available;
    if (available && host.outlier.ejections > 0 && !wasUnhealthy) host.recoveredAt = performance.now();
    for (const name of host.pools) {
      const pool = this.pools.get(name)!;
      pool.available += available ? 1 : -1;
      this.updatePanic(pool);
    }
  }

  private updatePanic(pool: Pool): void {
    const panic = inPanic(pool.available, pool.total, this.panicThreshold);
    if (panic === pool.panic) return;
    pool.panic = panic;
    this.panicking += panic ? 1 : -1;
    this.emit('panic', { pool: pool.name, panic, available: pool.available, total: pool.total, at: Date.now() });
  }

  private joinPool(host: Host, name: string): void {
    if (host.pools.has(name)) return;
    host.pools.add(name);
    let pool = this.pools.get(name);
    if (!pool) {
      pool = { name, total: 0, available: 0, ejected: 0, panic: false };
      this.pools.set(name, pool);
    }
    pool.total++;
    if (host.available) pool.available++;
    if (host.outlier.ejected) pool.ejected++;
    this.updatePanic(pool);
  }

  private leavePool(host: Host, name: string): void {
    if (!host.pools.delete(name)) return;
    const pool = this.pools.get(name);
    if (!pool) return;
    pool.total--;
    if (host.available) pool.available--;
    if (host.outlier.ejected) pool.ejected--;
    if (pool.total === 0) {
      if (pool.panic) this.panicking--;
      this.pools.delete(name);
      return;
    }
    this.updatePanic(pool);
  }

  private dropCheck(check: Check): void {
    check.removed = true;
    this.scheduler.cancel(check);
    this.checks.delete(check.key);
    const host = check.host;
    host.checks.delete(check);
    if (host.checks.size === 0) {
      if (host.ejectTimer) clearTimeout(host.ejectTimer);
      for (const pool of [...host.pools]) this.leavePool(host, pool);
      this.hosts.delete(host.address);
    } else {
      this.refreshHost(host, 'removed');
    }
  }

  /** New timing for a check that stays across a reload; counters and history are kept. */
  private retime(check: Check, options: ActiveOptions): void {
    check.options = options;
    check.machine.rise = options.rise;
    check.machine.fall = options.fall;
    check.machine.decideOnFirst = options.decideOnFirst;
    if (check.history.length > options.history) check.history.splice(0, check.history.length - options.history);
    if (check.heapIndex >= 0) {
      const due = Math.min(check.due, check.lastStart + options.intervalMs);
      this.scheduler.schedule(check, Math.max(due, performance.now()));
    }
  }
}

/** What a lost race was: a request hedge (first byte) or a connect hedge. */
export type Race = 'response' | 'connect';

function onEjectionOver(checker: HealthChecker, host: Host): void {
  checker.uneject(host, 'ejection time elapsed');
}

function kindWords(kind: FailureKind): string {
  return kind === 'status5xx' ? '5xx' : kind;
}
