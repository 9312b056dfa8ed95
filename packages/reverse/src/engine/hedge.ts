import { DEFAULT_ACTIVE } from '@wmproxy/health';
import type { Upstream, UpstreamServer } from '../upstream.js';

/**
 * Adaptive request hedging ("The Tail at Scale", Dean and Barroso 2013).
 *
 * - The hedge delay follows the upstream's recent first-byte latency: its
 *   p99, at least `HEDGE_MIN_DELAY_MS`, at most the configured
 *   `requestHedgeMs` (which is also the delay until enough answers were seen).
 * - A budget (token bucket) bounds the extra load: every hedge-eligible
 *   request earns `ratio` tokens (default 0.1), a hedge spends one; the bucket
 *   holds a second's worth of earnings (at least `HEDGE_MIN_BURST`), so the
 *   burst a stalled server causes is absorbed while an everywhere-slow pool
 *   is not sent twice the load. A hedge refused for want of tokens is tried
 *   again a little later, not dropped.
 * - A server that loses `STALL_AFTER` hedges in a row (its first byte did
 *   not come within the delay while another server answered first: the
 *   hedge, sooner than the original had waited, or requests sent after this
 *   one when no hedge went), with no answer of its own in between, is
 *   skipped by new requests for `STALL_SKIP_MS` (doubling on each repeat,
 *   up to `STALL_SKIP_MAX_MS`; with active checks, at least as long as they
 *   take to mark it down) while another server is available; then it is on
 *   probation, where a single lost hedge skips it again and an answer
 *   restores it. Active checks that mark a skipped server down and then up
 *   end its skip.
 * - Losses count only as separate observations: a request already in
 *   flight when a loss was counted adds none (a burst that one slow moment
 *   delays is one loss, not one per request). Every counted loss is also a
 *   passive-health failure (the caller reports it), so the health checker
 *   ejects the server too when its limits allow.
 *
 * State hangs off the upstream, server and proxy objects (WeakMaps): nothing
 * here holds a proxy alive or needs closing, except the hedge timer which
 * only runs while hedges are due.
 */

/** Never hedge sooner than this after the request went out (ms). */
export const HEDGE_MIN_DELAY_MS = 10;
/** Answers needed before the delay adapts (until then: the configured delay). */
export const HEDGE_MIN_SAMPLES = 32;
/** Quantile of the first-byte latency the delay follows. */
export const HEDGE_QUANTILE = 0.99;
/** Smallest hedge burst the budget allows. */
export const HEDGE_MIN_BURST = 10;
/** A hedge refused by the budget is tried again after this long (ms). */
export const HEDGE_RETRY_MS = 5;
/** Lost hedges in a row that make a server skipped. */
export const STALL_AFTER = 3;
/** First skip of a stalled server (ms); doubles on each repeat. */
export const STALL_SKIP_MS = 1_000;
/** Longest skip (ms). */
export const STALL_SKIP_MAX_MS = 30_000;

// ------------------------------------------------------------------ latency estimate

/** Log-scale histogram buckets: bucket i holds latencies up to BASE^i ms. */
const BUCKET_BASE = 1.2;
const BUCKETS = 64; // 1.2^63 ms ≈ 97 minutes
const LOG_BASE = Math.log(BUCKET_BASE);
/** Counts are halved every this many samples, so the estimate follows recent traffic. */
const DECAY_EVERY = 1024;
/** The quantile is recomputed every this many samples. */
const RECOMPUTE_EVERY = 32;

class LatencyEstimate {
  private readonly counts = new Float64Array(BUCKETS);
  private total = 0;
  private sinceDecay = 0;
  private sinceRecompute = 0;
  /** The cached quantile in ms (NaN until HEDGE_MIN_SAMPLES answers). */
  quantileMs = Number.NaN;

  add(ms: number): void {
    const index = ms <= 1 ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(ms) / LOG_BASE));
    this.counts[index]! += 1;
    this.total += 1;
    if (++this.sinceDecay >= DECAY_EVERY) {
      this.sinceDecay = 0;
      for (let i = 0; i < BUCKETS; i++) this.counts[i]! *= 0.5;
      this.total *= 0.5;
    }
    if (++this.sinceRecompute >= RECOMPUTE_EVERY) {
      this.sinceRecompute = 0;
      this.recompute();
    }
  }

  private recompute(): void {
    if (this.total < HEDGE_MIN_SAMPLES) return;
    const want = this.total * HEDGE_QUANTILE;
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= want) {
        this.quantileMs = Math.pow(BUCKET_BASE, i);
        return;
      }
    }
  }
}

// ------------------------------------------------------------------ stalled servers

interface Stall {
  /** Send time (performance.now()) of the newest request this server answered. */
  newestSentAt: number;
  /** Lost hedges since the server last answered. */
  losses: number;
  /** When the last loss was counted (performance.now()); requests sent before it add none. */
  lossAt: number;
  /** Skipped until this time (Date.now() ms); 0 when not skipped. */
  until: number;
  /** Skips in a row (the next skip lasts STALL_SKIP_MS × 2^skips). */
  skips: number;
  /** Back from a skip, not yet answered: one lost hedge skips it again. */
  probation: boolean;
  /** Health (active checks) marked it unavailable during the skip: its return ends the skip. */
  downSeen: boolean;
}

interface UpstreamHedge {
  latency: LatencyEstimate;
  /** Servers skipped right now (a fast path for the common case of none). */
  skipped: number;
}

const upstreams = new WeakMap<Upstream, UpstreamHedge>();
const stalls = new WeakMap<UpstreamServer, Stall>();

function upstreamHedge(upstream: Upstream): UpstreamHedge {
  let state = upstreams.get(upstream);
  if (!state) {
    state = { latency: new LatencyEstimate(), skipped: 0 };
    upstreams.set(upstream, state);
  }
  return state;
}

/** How long to wait for a first byte from `upstream` before hedging (ms). */
export function hedgeDelay(upstream: Upstream, maxMs: number): number {
  const estimate = upstreamHedge(upstream).latency.quantileMs;
  if (!(estimate > 0)) return maxMs;
  return Math.min(maxMs, Math.max(HEDGE_MIN_DELAY_MS, Math.ceil(estimate)));
}

function newStall(): Stall {
  return { newestSentAt: 0, losses: 0, lossAt: 0, until: 0, skips: 0, probation: false, downSeen: false };
}

/** A skip that ran out puts its server on probation. */
function expire(stall: Stall, now: number): void {
  if (stall.until !== 0 && stall.until <= now) {
    stall.until = 0;
    stall.probation = true;
  }
}

/**
 * The first response byte of a request sent to `server` at `sentAt`
 * (performance.now()) came at `now`: a latency sample, and a sign of life.
 */
export function answered(upstream: Upstream, server: UpstreamServer, sentAt: number, now: number): void {
  upstreamHedge(upstream).latency.add(now - sentAt);
  let stall = stalls.get(server);
  if (stall === undefined) {
    stall = newStall();
    stalls.set(server, stall);
  }
  if (sentAt > stall.newestSentAt) stall.newestSentAt = sentAt;
  if (stall.losses === 0 && !stall.probation && stall.until === 0) return;
  expire(stall, Date.now());
  if (stall.until !== 0) return; // a late answer to a request sent before the skip
  stall.losses = 0;
  stall.probation = false;
  stall.skips = 0;
}

/**
 * Has another server of `upstream` answered a request sent after `sentAt`?
 * Then `server`, still silent about a request sent at `sentAt`, is lagging
 * behind its peers (not the whole machine or network being slow).
 */
export function overtaken(upstream: Upstream, server: UpstreamServer, sentAt: number): boolean {
  for (const other of upstream.servers) {
    if (other === server) continue;
    const stall = stalls.get(other);
    if (stall !== undefined && stall.newestSentAt > sentAt) return true;
  }
  return false;
}

/** What a lost hedge did: nothing (already skipped, or not a separate observation), one more loss, or a skip. */
export type LossVerdict = 'ignored' | 'counted' | 'skipped';

/**
 * `server` lost a hedge: no first byte within the hedge delay, for a request
 * sent at `sentAt` (performance.now(); 0 if unknown), while another server
 * answered (the hedge, or requests sent after this one).
 */
export function lostHedge(upstream: Upstream, server: UpstreamServer, sentAt: number, now: number): LossVerdict {
  let stall = stalls.get(server);
  if (!stall) {
    stall = newStall();
    stalls.set(server, stall);
  }
  expire(stall, now);
  if (stall.until !== 0) return 'ignored';
  if (sentAt !== 0 && sentAt <= stall.lossAt) return 'ignored';
  stall.lossAt = performance.now();
  stall.losses++;
  if (!stall.probation && stall.losses < STALL_AFTER) return 'counted';
  stall.until = now + Math.min(STALL_SKIP_MAX_MS, Math.max(STALL_SKIP_MS * 2 ** stall.skips, activeDetectionMs(upstream)));
  stall.skips = Math.min(stall.skips + 1, 16);
  stall.losses = 0;
  stall.probation = false;
  stall.downSeen = false;
  upstreamHedge(upstream).skipped++;
  return 'skipped';
}

/**
 * How long the upstream's active checks take to mark a dead server down
 * (fall × interval + timeout, plus an interval of margin); 0 without active
 * checks. A skip lasts at least that long, so that a stalled server is not
 * tried again before the checks could take over (then their return of the
 * server ends the skip, see `avoiding`).
 */
function activeDetectionMs(upstream: Upstream): number {
  const health = upstream.spec.health;
  if (!health?.check) return 0;
  const interval = health.intervalMs ?? DEFAULT_ACTIVE.intervalMs;
  const fast = health.fastIntervalMs || interval;
  return (health.fall ?? DEFAULT_ACTIVE.fall) * fast + (health.timeoutMs ?? DEFAULT_ACTIVE.timeoutMs) + interval;
}

/**
 * Has `server` lost a hedge and not answered since, or is it skipped? Its
 * requests still waiting are hedged whatever the budget: they are likely
 * stuck, and they are few (those in flight to it).
 */
export function lostSinceAnswer(server: UpstreamServer, now: number): boolean {
  const stall = stalls.get(server);
  return stall !== undefined && (stall.losses > 0 || stall.probation || stall.until > now);
}

/** Is `server` skipped now (for status pages and tests)? */
export function isStalled(server: UpstreamServer, now = Date.now()): boolean {
  const stall = stalls.get(server);
  return stall !== undefined && stall.until > now;
}

/**
 * The servers a new attempt must avoid: `tried` plus the stalled servers,
 * or `tried` itself when none is stalled (no allocation). Expired skips move
 * their server to probation here, and so does health marking a skipped
 * server available again after it marked it down (active checks passed).
 */
export function avoiding(upstream: Upstream, tried: ReadonlySet<UpstreamServer> | undefined, now: number): ReadonlySet<UpstreamServer> | undefined {
  const state = upstreams.get(upstream);
  if (state === undefined || state.skipped === 0) return tried;
  let out: Set<UpstreamServer> | undefined;
  let skipped = 0;
  for (const server of upstream.servers) {
    const stall = stalls.get(server);
    if (stall === undefined) continue;
    expire(stall, now);
    if (stall.until === 0) continue;
    if (!upstream.isAvailable(server)) stall.downSeen = true;
    else if (stall.downSeen) {
      stall.until = 0;
      stall.probation = true;
      continue;
    }
    skipped++;
    out ??= new Set(tried);
    out.add(server);
  }
  state.skipped = skipped;
  return out ?? tried;
}

/**
 * Pick a server avoiding stalled ones when another is available; falls
 * back to the stalled ones rather than to no server at all.
 */
export function pickAvoiding(upstream: Upstream, ctx: Parameters<Upstream['pick']>[0], tried: ReadonlySet<UpstreamServer> | undefined): UpstreamServer | undefined {
  // The common case, no server skipped: no clock read.
  const state = upstreams.get(upstream);
  if (state === undefined || state.skipped === 0) return upstream.pick(ctx, tried);
  const avoid = avoiding(upstream, tried, Date.now());
  if (avoid === tried) return upstream.pick(ctx, tried);
  return upstream.pick(ctx, avoid) ?? upstream.pick(ctx, tried);
}

// ------------------------------------------------------------------ budget

interface Bucket {
  tokens: number;
  cap: number;
  /** Hedge-eligible requests in the current second, and which second. */
  requests: number;
  second: number;
}

const buckets = new WeakMap<object, Bucket>();

function bucketOf(owner: object): Bucket {
  let bucket = buckets.get(owner);
  if (!bucket) {
    bucket = { tokens: HEDGE_MIN_BURST, cap: HEDGE_MIN_BURST, requests: 0, second: 0 };
    buckets.set(owner, bucket);
  }
  return bucket;
}

/** A hedge-eligible request started: it earns `ratio` tokens for `owner`'s budget. */
export function earnHedge(owner: object, ratio: number, now: number): void {
  const bucket = bucketOf(owner);
  const second = Math.floor(now / 1000);
  if (second !== bucket.second) {
    // The bucket holds one second's worth of earnings (the last full second's rate).
    bucket.cap = Math.max(HEDGE_MIN_BURST, second === bucket.second + 1 ? bucket.requests * ratio : 0);
    bucket.second = second;
    bucket.requests = 0;
  }
  bucket.requests++;
  bucket.tokens = Math.min(bucket.cap, bucket.tokens + ratio);
}

/** Spend a token for a hedge; false when the budget is exhausted. */
export function spendHedge(owner: object): boolean {
  const bucket = bucketOf(owner);
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

/** Give back a token spent for a hedge that found no server to go to. */
export function refundHedge(owner: object): void {
  bucketOf(owner).tokens += 1;
}

// ------------------------------------------------------------------ timer

/** What the hedge timer calls: a session whose hedge may be due at `at` (Date.now() ms). */
export interface HedgeWaiter {
  hedgeDue(at: number): void;
}

/** Min-heap of [due time, waiter], one timer for the earliest. */
const heapAt: number[] = [];
const heapWaiter: HedgeWaiter[] = [];
let timer: ReturnType<typeof setTimeout> | undefined;
let timerAt = Infinity;

/**
 * Call `waiter.hedgeDue(at)` at `at` (or soon after): with millisecond
 * precision rather than the proxy's 100 ms deadline sweep. Entries are never
 * removed; the waiter ignores calls that no longer match its state.
 */
export function scheduleHedge(waiter: HedgeWaiter, at: number): void {
  let i = heapAt.length;
  heapAt.push(at);
  heapWaiter.push(waiter);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heapAt[parent]! <= at) break;
    heapAt[i] = heapAt[parent]!;
    heapWaiter[i] = heapWaiter[parent]!;
    i = parent;
  }
  heapAt[i] = at;
  heapWaiter[i] = waiter;
  if (at < timerAt) arm(at);
}

function arm(at: number): void {
  if (timer !== undefined) clearTimeout(timer);
  timerAt = at;
  timer = setTimeout(onTimer, Math.max(0, at - Date.now()));
  (timer as { unref?: () => void }).unref?.();
}

function pop(): void {
  const lastAt = heapAt.pop()!;
  const lastWaiter = heapWaiter.pop()!;
  const n = heapAt.length;
  if (n === 0) return;
  let i = 0;
  for (;;) {
    let child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heapAt[child + 1]! < heapAt[child]!) child++;
    if (heapAt[child]! >= lastAt) break;
    heapAt[i] = heapAt[child]!;
    heapWaiter[i] = heapWaiter[child]!;
    i = child;
  }
  heapAt[i] = lastAt;
  heapWaiter[i] = lastWaiter;
}

const due: Array<HedgeWaiter | number> = [];

function onTimer(): void {
  timer = undefined;
  timerAt = Infinity;
  const now = Date.now();
  while (heapAt.length > 0 && heapAt[0]! <= now) {
    due.push(heapWaiter[0]!, heapAt[0]!);
    pop();
  }
  if (heapAt.length > 0) arm(heapAt[0]!);
  // Let I/O that is already waiting (answers that came while the loop was
  // busy) be read first, so that a late timer does not hedge answered requests.
  if (due.length > 0) setImmediate(runDue);
}

function runDue(): void {
  const list = due.splice(0);
  for (let i = 0; i < list.length; i += 2) (list[i] as HedgeWaiter).hedgeDue(list[i + 1] as number);
}
