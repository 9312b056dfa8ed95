/**
 * Request rate and concurrency limits of a location (nginx `limit_req` with
 * `nodelay`, plus a `limit_conn`-like cap on requests in flight).
 *
 * The rate limit is a token bucket per key (the client IP by default): it
 * holds `burst + 1` tokens and refills at `rate`; a request takes one token,
 * and a request that finds none is answered at once with `status` (503 by
 * default, as nginx's `limit_req_status`) and a `Retry-After` — never queued.
 * The key table is bounded: past `maxKeys` the least recently seen key is
 * forgotten (a forgotten key starts again with a full bucket), so a flood of
 * distinct addresses costs at most `maxKeys` entries.
 */
import { REVERSE_DEFAULTS } from './defaults.js';

import { ClusterWindow, type ClusterFallback, type SharedCounters } from './cluster-limit.js';

/** What a limiter may look at to key a request (an Exchange). */
export interface LimitContext {
  clientIp: string;
  /** Request target (path and query). */
  uri: string;
  header(lower: string): string | undefined;
}

export interface RateLimitSpec {
  /**
   * Sustained rate: a number of requests per second, or `"100r/s"`,
   * `"6000r/m"`, `"10r/h"` (nginx's syntax). Omit for a concurrency limit only.
   */
  rate?: number | string;
  /** Requests allowed above the rate in a burst, answered without delay (default 0; nginx `burst=` with `nodelay`). */
  burst?: number;
  /** What identifies a client: `ip` (default), `header:NAME`, `host` or `uri`. Requests with an empty key are not limited. */
  key?: string;
  /** Status of a refused request (default 503; 429 is the other common choice). */
  status?: number;
  /** Most keys remembered at once (default 100 000; least recently seen forgotten first). */
  maxKeys?: number;
  /** Most requests in flight at once through this limit, all clients together (default 0: no limit). */
  maxInFlight?: number;
  /**
   * `local` (default): each instance counts alone. `cluster`: the rate holds
   * across every instance sharing the store (`ReverseProxyOptions.sharedCounters`,
   * Redis), see cluster-limit.ts.
   */
  scope?: 'local' | 'cluster';
  /** With `scope = "cluster"`, while the store is unreachable: `local` (this instance's share, rate / instances; default), `open` or `closed`. */
  fallback?: ClusterFallback;
}

/** Where a cluster-scoped limit keeps its counts, and the name it uses there. */
export interface SharedLimit {
  counters: SharedCounters;
  name: string;
}

/** Requests per millisecond from `"100r/s"`-style text or a number per second. */
export function parseRate(rate: number | string): number {
  if (typeof rate === 'number') {
    if (!(rate > 0) || !Number.isFinite(rate)) throw new Error(`invalid rate ${rate} (requests per second, > 0)`);
    return rate / 1000;
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*r\/(s|m|h)\s*$/i.exec(rate);
  if (!match || !(Number(match[1]) > 0)) throw new Error(`invalid rate "${rate}" (expected e.g. "100r/s" or "6000r/m")`);
  const per = match[2]!.toLowerCase() === 's' ? 1_000 : match[2]!.toLowerCase() === 'm' ? 60_000 : 3_600_000;
  return Number(match[1]) / per;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Why a request was refused, and for how long to come back. */
export interface Refusal {
  status: number;
  /** Seconds for `Retry-After` (at least 1). */
  retryAfter: number;
  reason: 'rate_limited' | 'concurrency_limited';
}

type KeyFn = (ctx: LimitContext) => string | undefined;

function keyFunction(key: string): KeyFn {
  if (key === 'ip') return (ctx) => ctx.clientIp;
  if (key === 'uri') return (ctx) => ctx.uri;
  if (key === 'host') return (ctx) => ctx.header('host');
  if (key.startsWith('header:') && key.length > 7) {
    const name = key.slice(7).toLowerCase();
    return (ctx) => ctx.header(name);
  }
  throw new Error(`invalid rate-limit key "${key}" (ip, host, uri or header:NAME)`);
}

export class RateLimiter {
  readonly status: number;
  readonly scope: 'local' | 'cluster';
  readonly fallback: ClusterFallback;
  /** Tokens per millisecond (0: no rate limit). */
  readonly perMs: number;
  readonly capacity: number;
  readonly maxKeys: number;
  readonly maxInFlight: number;
  /** Requests in flight through this limiter. */
  inFlight = 0;
  /** Requests refused so far (for snapshots). */
  refused = 0;
  private readonly keyOf: KeyFn;
  /** Insertion order is recency order: a key seen again is moved to the end. */
  private readonly buckets = new Map<string, Bucket>();
  private readonly cluster: ClusterWindow | undefined;
  private readonly counters: SharedCounters | undefined;

  constructor(spec: RateLimitSpec, shared?: SharedLimit) {
    this.perMs = spec.rate === undefined ? 0 : parseRate(spec.rate);
    const burst = spec.burst ?? REVERSE_DEFAULTS.rateLimit.burst;
    if (!Number.isInteger(burst) || burst < 0) throw new Error(`invalid burst ${burst} (a whole number >= 0)`);
    this.capacity = burst + 1;
    this.status = spec.status ?? REVERSE_DEFAULTS.rateLimit.status;
    if (!Number.isInteger(this.status) || this.status < 400 || this.status > 599) throw new Error(`invalid rate-limit status ${this.status} (4xx or 5xx)`);
    this.maxKeys = spec.maxKeys ?? REVERSE_DEFAULTS.rateLimit.maxKeys;
    if (!(this.maxKeys >= 1)) throw new Error(`invalid maxKeys ${this.maxKeys}`);
    this.maxInFlight = spec.maxInFlight ?? REVERSE_DEFAULTS.rateLimit.maxInFlight;
    if (!Number.isInteger(this.maxInFlight) || this.maxInFlight < 0) throw new Error(`invalid maxInFlight ${this.maxInFlight}`);
    if (this.perMs === 0 && this.maxInFlight === 0) throw new Error('a rate limit needs a rate or maxInFlight');
    this.keyOf = keyFunction(spec.key ?? 'ip');
    this.scope = spec.scope ?? 'local';
    this.fallback = spec.fallback ?? 'local';
    if (this.scope !== 'local' && this.scope !== 'cluster') throw new Error(`invalid rate-limit scope "${String(this.scope)}" (local or cluster)`);
    if (!['local', 'open', 'closed'].includes(this.fallback)) throw new Error(`invalid rate-limit fallback "${String(this.fallback)}" (local, open or closed)`);
    if (this.scope === 'cluster' && this.perMs > 0) {
      if (!shared) throw new Error('a cluster-scoped rate limit needs a shared store ([cluster] redis)');
      this.counters = shared.counters;
      this.cluster = new ClusterWindow(shared.counters, { name: shared.name, perMs: this.perMs, burst, maxKeys: this.maxKeys });
    }
  }

  /** Keys remembered now. */
  get keys(): number {
    return this.buckets.size;
  }

  /**
   * Admit a request (then call `release` when it ends), or say why not.
   * `now` is for tests.
   */
  admit(ctx: LimitContext, now = Date.now()): Refusal | undefined {
    if (this.maxInFlight > 0 && this.inFlight >= this.maxInFlight) {
      this.refused++;
      return { status: this.status, retryAfter: 1, reason: 'concurrency_limited' };
    }
    if (this.perMs > 0) {
      const key = this.keyOf(ctx);
      if (key) {
        const refusal = this.cluster ? this.takeShared(key, now) : this.take(key, now, this.perMs);
        if (refusal) return refusal;
      }
    }
    this.inFlight++;
    return undefined;
  }

  release(): void {
    if (this.inFlight > 0) this.inFlight--;
  }

  private takeShared(key: string, now: number): Refusal | undefined {
    const verdict = this.cluster!.take(key, now);
    if (verdict === 'admit') return undefined;
    if (verdict === 'refuse') {
      this.refused++;
      return { status: this.status, retryAfter: 1, reason: 'rate_limited' };
    }
    if (this.fallback === 'open') return undefined;
    if (this.fallback === 'closed') {
      this.refused++;
      return { status: this.status, retryAfter: 1, reason: 'rate_limited' };
    }
    return this.take(key, now, this.perMs / Math.max(1, this.counters!.instances));
  }

  private take(key: string, now: number, perMs: number): Refusal | undefined {
    const buckets = this.buckets;
    let bucket = buckets.get(key);
    if (bucket) {
      buckets.delete(key);
      bucket.tokens = Math.min(this.capacity, bucket.tokens + (now - bucket.at) * perMs);
      bucket.at = now;
    } else {
      if (buckets.size >= this.maxKeys) buckets.delete(buckets.keys().next().value!);
      bucket = { tokens: this.capacity, at: now };
    }
    buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    this.refused++;
    const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
    return { status: this.status, retryAfter, reason: 'rate_limited' };
  }
}
