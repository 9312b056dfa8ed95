import type { Ticker } from '@wmproxy/core-net';
import { DEFAULT_ACTIVE, STALL_AFTER, type LossVerdict } from '@wmproxy/health';
import type { Upstream, UpstreamServer } from '../upstream.js';
import { LatencyEstimate } from './latency.js';

/**
 * Adaptive request and connect hedging ("The Tail at Scale", Dean and
 * Barroso 2013).
 *
 * - The request-hedge delay follows the upstream's recent first-byte
 *   latency: its p99, at least `HEDGE_MIN_DELAY_MS`, at most the configured
 *   `requestHedgeMs` (which is also the delay until enough answers were seen).
 * - The connect-hedge delay follows the upstream's recent connect times the
 *   same way: their p99, at least `CONNECT_HEDGE_MIN_DELAY_MS`, at most the
 *   configured `hedgeDelayMs`; so a blackholed server costs a client a few
 *   milliseconds, not the configured ceiling.
 * - A budget (token bucket) bounds the extra load: every hedge-eligible
 *   request earns `ratio` tokens (default 0.1), a hedge spends one; the bucket
 *   holds a second's worth of earnings (at least `HEDGE_MIN_BURST`), so the
 *   burst a stalled server causes is absorbed while an everywhere-slow pool
 *   is not sent twice the load. A hedge refused for want of tokens is tried
 *   again a little later, not dropped.
 * - A server that loses a race (its first byte or its connection did not
 *   come within the delay while another server's did) is reported to
 *   `@wmproxy/health`'s stall detector (see its stall.ts), which ejects it
 *   after `STALL_AFTER` losses in a row, under the same ejection limits,
 *   events and metrics as every other detector; `Upstream.pick` then avoids
 *   it like any unavailable server. A stall ejection lasts at least as long
 *   as the group's active checks take to mark a dead server down.
 *
 * Latency state hangs off the upstream objects (a WeakMap): nothing here
 * holds a proxy alive or needs closing. Hedge delays are timed on the
 * proxy's one timer facility (core-net's Ticker), never a timer of their own.
 */

/** Never hedge a request sooner than this after it went out (ms). */
export const HEDGE_MIN_DELAY_MS = 10;
/** Never hedge a connect sooner than this after it started (ms): above loopback and LAN jitter. */
export const CONNECT_HEDGE_MIN_DELAY_MS = 5;
/** Answers needed before the request-hedge delay adapts (until then: the configured delay). */
export const HEDGE_MIN_SAMPLES = 32;
/**
 * Connects needed before the connect-hedge delay adapts: fewer, because
 * keep-alive pools make connects rare, and a blackhole met before the
 * delay adapted costs clients the whole configured delay.
 */
export const CONNECT_HEDGE_MIN_SAMPLES = 8;
/**
 * Before that, the connect-hedge delay is the longest connect seen so far
 * times this (within floor and ceiling): a blackhole met in the first
 * seconds of a process costs a few milliseconds, not the configured delay.
 */
export const CONNECT_HEDGE_WARMUP_FACTOR = 4;
/** Quantile of the first-byte and connect times the delays follow. */
export const HEDGE_QUANTILE = 0.99;
/** Smallest hedge burst the budget allows. */
export const HEDGE_MIN_BURST = 10;
/** A hedge refused by the budget is tried again after this long (ms). */
export const HEDGE_RETRY_MS = 5;
export { STALL_AFTER, type LossVerdict };

// ------------------------------------------------------------------ latency estimates

interface UpstreamHedge {
  /** First-byte times. */
  latency: LatencyEstimate;
  /** Connect times. */
  connect: LatencyEstimate;
}

const upstreams = new WeakMap<Upstream, UpstreamHedge>();

function upstreamHedge(upstream: Upstream): UpstreamHedge {
  let state = upstreams.get(upstream);
  if (!state) {
    state = { latency: new LatencyEstimate(HEDGE_QUANTILE, HEDGE_MIN_SAMPLES), connect: new LatencyEstimate(HEDGE_QUANTILE, CONNECT_HEDGE_MIN_SAMPLES, CONNECT_HEDGE_WARMUP_FACTOR) };
    upstreams.set(upstream, state);
  }
  return state;
}

/** How long to wait for a first byte from `upstream` before hedging (ms). */
export function hedgeDelay(upstream: Upstream, maxMs: number): number {
  return upstreamHedge(upstream).latency.clamp(HEDGE_MIN_DELAY_MS, maxMs);
}

/** How long to wait for a connection to a server of `upstream` before connecting to another too (ms); 0 stays 0 (off). */
export function connectHedgeDelay(upstream: Upstream, maxMs: number): number {
  if (maxMs <= 0) return 0;
  return upstreamHedge(upstream).connect.clamp(Math.min(CONNECT_HEDGE_MIN_DELAY_MS, maxMs), maxMs);
}

/**
 * A connect to `server` started at `startedAt` (performance.now()) completed
 * at `now`: a connect-time sample, and a sign of life for stall detection.
 */
export function connected(upstream: Upstream, server: UpstreamServer, startedAt: number, now: number): void {
  upstreamHedge(upstream).connect.add(now - startedAt);
  stuckServers.delete(server);
  upstream.health?.reportAnswer?.(server.address, startedAt, 'connect');
}

/**
 * Servers whose newest news is a connect still pending after the hedge
 * delay (SYNs dropped), until one of their connects completes. A connect to
 * such a server is hedged at once rather than after the delay: only the
 * requests of the first delay pay it, not every one until the stall
 * detector has counted its losses. The connect to it still goes out, so that
 * its recovery is seen; a server never connected to again stays here, which
 * costs only an extra connect when it is next picked.
 */
const stuckServers = new WeakSet<UpstreamServer>();

/** A connect to `server` is still pending after the connect-hedge delay. */
export function connectStuck(server: UpstreamServer): void {
  stuckServers.add(server);
}

/** Is the newest news of `server` a connect stuck past the hedge delay (and none completed since)? */
export function connectsStuck(server: UpstreamServer): boolean {
  return stuckServers.has(server);
}

// ------------------------------------------------------------------ stalled servers (reported to @wmproxy/health)

/**
 * The first response byte of a request sent to `server` at `sentAt`
 * (performance.now()) came at `now`: a latency sample, and a sign of life.
 */
export function answered(upstream: Upstream, server: UpstreamServer, sentAt: number, now: number): void {
  upstreamHedge(upstream).latency.add(now - sentAt);
  upstream.health?.reportAnswer?.(server.address, sentAt);
}

/**
 * Has another server of `upstream` answered a request sent after `sentAt`?
 * Then `server`, still silent about a request sent at `sentAt`, is lagging
 * behind its peers (not the whole machine or network being slow).
 */
export function overtaken(upstream: Upstream, server: UpstreamServer, sentAt: number): boolean {
  const health = upstream.health;
  if (health?.answeredAfter === undefined) return false;
  for (const other of upstream.servers) {
    if (other !== server && health.answeredAfter(other.address, sentAt)) return true;
  }
  return false;
}

/**
 * `server` lost a race: no first byte (or connection) within the hedge
 * delay, for work sent at `sentAt` (performance.now(); 0 if unknown), while
 * another server answered. Reported to health's stall detector.
 */
export function lostHedge(upstream: Upstream, server: UpstreamServer, sentAt: number, _now?: number): LossVerdict {
  return upstream.health?.reportLostRace?.(server.address, sentAt, activeDetectionMs(upstream)) ?? 'ignored';
}

/** `server` lost a connect race: no connection within the connect-hedge delay while another server's came first. */
export function lostConnect(upstream: Upstream, server: UpstreamServer, startedAt: number): LossVerdict {
  return upstream.health?.reportLostRace?.(server.address, startedAt, activeDetectionMs(upstream), 'connect') ?? 'ignored';
}

/**
 * How long the upstream's active checks take to mark a dead server down
 * (fall × interval + timeout, plus an interval of margin); 0 without active
 * checks. A stall ejection lasts at least that long, so that a stalled
 * server is not tried again before the checks could take over (then their
 * return of the server ends the ejection).
 */
function activeDetectionMs(upstream: Upstream): number {
  const health = upstream.spec.health;
  if (!health?.check) return 0;
  const interval = health.intervalMs ?? DEFAULT_ACTIVE.intervalMs;
  const fast = health.fastIntervalMs || interval;
  return (health.fall ?? DEFAULT_ACTIVE.fall) * fast + (health.timeoutMs ?? DEFAULT_ACTIVE.timeoutMs) + interval;
}

/**
 * Has `server` lost a race and not answered since, or is it out for
 * stalling? Its requests still waiting are hedged whatever the budget: they
 * are likely stuck, and they are few (those in flight to it).
 */
export function lostSinceAnswer(server: UpstreamServer, _now?: number): boolean {
  return server.group?.health?.lostSinceAnswer?.(server.address) ?? false;
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

/** What a request hedge timer calls: a session whose hedge may be due at `at` (Date.now() ms). */
export interface HedgeWaiter {
  hedgeDue(at: number): void;
}

function fireHedge(waiter: HedgeWaiter, at: number): void {
  waiter.hedgeDue(at);
}

/**
 * Call `waiter.hedgeDue(at)` at `at` (or soon after) on the proxy's timer
 * facility (`ticker`): with millisecond precision rather than the proxy's
 * 100 ms deadline sweep. Entries are never cancelled; the waiter ignores
 * calls that no longer match its state.
 */
export function scheduleHedge(ticker: Ticker, waiter: HedgeWaiter, at: number): void {
  ticker.once(at, fireHedge, waiter);
}
