/**
 * The last 15 minutes of the instance, one sample a second, in fixed memory:
 * every column is a typed array allocated once (a ring), so a week-long run
 * holds exactly what a one-minute run holds. Counters are sampled as
 * cumulative totals (what /metrics exports, summed over workers) and stored
 * as per-second deltas; latency percentiles come from the delta of the
 * request-duration histogram over that second.
 *
 * Counters start at zero with the instance, so the first sample holds what
 * came before it. Per-server columns are allocated when a server first appears and dropped
 * when the configuration no longer names it, so memory is bounded by the
 * configuration, not by traffic. Health transitions are kept in a bounded
 * list of their own (time, target, from, to, reason).
 */
import type { HistogramData, WorkerCounters } from './cluster/protocol.js';
import { LATENCY_BUCKETS } from './metrics.js';
import type { SeriesTransition, SeriesView, UpstreamView } from './types.js';

export type { SeriesTransition, SeriesView };

export const SERIES_DEFAULTS = {
  /** Samples kept: 15 minutes at one a second. */
  capacity: 900,
  intervalMs: 1000,
  /** Health transitions, ejections and returns kept for the timeline. */
  transitions: 500,
} as const;

export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
/** Server states as stored (index into this list). */
export const SERVER_STATES = ['unknown', 'healthy', 'unhealthy', 'ejected'] as const;

/**
 * Quantile `q` (0..1) of a histogram of per-bucket (not cumulative) counts
 * with upper bounds `bounds`, interpolated linearly inside the bucket as
 * Prometheus' histogram_quantile does. Values above the last bound count in
 * `total` only; a quantile falling there answers the last bound. NaN when empty.
 */
export function histogramQuantile(bounds: readonly number[], counts: ArrayLike<number>, total: number, q: number): number {
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let cumulative = 0;
  for (let i = 0; i < bounds.length; i++) {
    const inBucket = counts[i] ?? 0;
    if (inBucket > 0 && cumulative + inBucket >= rank) {
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      return lower + (bounds[i]! - lower) * ((rank - cumulative) / inBucket);
    }
    cumulative += inBucket;
  }
  return bounds[bounds.length - 1]!;
}

class ServerColumns {
  readonly requests: Float64Array;
  readonly errors: Float64Array;
  readonly probeLatencyMs: Float32Array;
  /** p99 of the requests this server answered that second (NaN: none). */
  readonly p99Ms: Float32Array;
  readonly state: Uint8Array;
  lastHistogram: HistogramData | undefined = undefined;
  // Counters start at 0 with the instance; a server added by a reload starts from its first reading.
  lastRequests: number;
  lastErrors: number;
  seen = true;

  constructor(capacity: number, requests: number, errors: number) {
    this.lastRequests = requests;
    this.lastErrors = errors;
    this.requests = new Float64Array(capacity);
    this.errors = new Float64Array(capacity);
    this.probeLatencyMs = new Float32Array(capacity).fill(NaN);
    this.p99Ms = new Float32Array(capacity).fill(NaN);
    this.state = new Uint8Array(capacity);
  }

  get bytes(): number {
    return this.requests.byteLength + this.errors.byteLength + this.probeLatencyMs.byteLength + this.p99Ms.byteLength + this.state.byteLength;
  }
}

/** A counter's growth since the last reading; a counter that went back (a restarted worker) counts from 0. */
function delta(now: number, last: number): number {
  return now >= last ? now - last : now;
}

export class TimeSeries {
  readonly capacity: number;
  readonly intervalMs: number;
  private readonly times: Float64Array;
  private readonly requests: Float64Array[];
  private readonly p50: Float32Array;
  private readonly p95: Float32Array;
  private readonly p99: Float32Array;
  private readonly bytesOut: Float64Array;
  private readonly bytesIn: Float64Array;
  private readonly retries: Float64Array;
  private readonly hedgesWon: Float64Array;
  private readonly hedgesLost: Float64Array;
  private readonly limited: Float64Array;
  private readonly connections: Float64Array;
  private readonly servers = new Map<string, ServerColumns>();
  private readonly transitionLog: SeriesTransition[] = [];
  private readonly maxTransitions: number;
  /** Next slot to write, and how many slots hold samples. */
  private head = 0;
  private filled = 0;
  private readonly lastRequests = new Float64Array(STATUS_CLASSES.length);
  private lastBytes = 0;
  private lastBytesIn = 0;
  private lastRetries = 0;
  private lastHedgesWon = 0;
  private lastHedgesLost = 0;
  private lastLimited = 0;
  private lastHistogram: HistogramData | undefined;
  private readonly bucketDelta: Float64Array;

  constructor(options: { capacity?: number; intervalMs?: number; transitions?: number } = {}) {
    this.capacity = options.capacity ?? SERIES_DEFAULTS.capacity;
    this.intervalMs = options.intervalMs ?? SERIES_DEFAULTS.intervalMs;
    this.maxTransitions = options.transitions ?? SERIES_DEFAULTS.transitions;
    if (!(this.capacity > 0)) throw new RangeError(`series capacity must be above 0, got ${this.capacity}`);
    this.times = new Float64Array(this.capacity);
    this.requests = STATUS_CLASSES.map(() => new Float64Array(this.capacity));
    this.p50 = new Float32Array(this.capacity);
    this.p95 = new Float32Array(this.capacity);
    this.p99 = new Float32Array(this.capacity);
    this.bytesOut = new Float64Array(this.capacity);
    this.bytesIn = new Float64Array(this.capacity);
    this.retries = new Float64Array(this.capacity);
    this.hedgesWon = new Float64Array(this.capacity);
    this.hedgesLost = new Float64Array(this.capacity);
    this.limited = new Float64Array(this.capacity);
    this.connections = new Float64Array(this.capacity);
    this.bucketDelta = new Float64Array(LATENCY_BUCKETS.length);
  }

  /** Samples held (at most `capacity`). */
  get length(): number {
    return this.filled;
  }

  /** Bytes held by every column (constant for a given set of servers). */
  memoryBytes(): number {
    let bytes = this.times.byteLength + this.p50.byteLength + this.p95.byteLength + this.p99.byteLength + this.bytesOut.byteLength + this.bytesIn.byteLength + this.retries.byteLength + this.hedgesWon.byteLength + this.hedgesLost.byteLength + this.limited.byteLength + this.connections.byteLength;
    for (const column of this.requests) bytes += column.byteLength;
    for (const server of this.servers.values()) bytes += server.bytes;
    return bytes;
  }

  /** Transitions held (at most the configured number). */
  get transitionCount(): number {
    return this.transitionLog.length;
  }

  noteTransition(transition: SeriesTransition): void {
    this.transitionLog.push(transition);
    if (this.transitionLog.length > this.maxTransitions) this.transitionLog.splice(0, this.transitionLog.length - this.maxTransitions);
  }

  /**
   * Record one sample at `now` (epoch ms) from the instance's cumulative
   * counters, its open connections and its upstream servers' view.
   */
  sample(now: number, counters: WorkerCounters, connections: number, upstreams: readonly UpstreamView[], limited = 0): void {
    const slot = this.head;
    this.times[slot] = Math.floor(now / 1000);
    for (let i = 0; i < STATUS_CLASSES.length; i++) {
      let total = 0;
      for (const [code, count] of counters.requests) if (code === STATUS_CLASSES[i]) total = count;
      this.requests[i]![slot] = delta(total, this.lastRequests[i]!);
      this.lastRequests[i] = total;
    }
    this.bytesOut[slot] = delta(counters.bytesSent, this.lastBytes);
    this.lastBytes = counters.bytesSent;
    this.bytesIn[slot] = delta(counters.bytesReceived ?? 0, this.lastBytesIn);
    this.lastBytesIn = counters.bytesReceived ?? 0;
    this.retries[slot] = delta(counters.retries ?? 0, this.lastRetries);
    this.lastRetries = counters.retries ?? 0;
    this.hedgesWon[slot] = delta(counters.hedges?.won ?? 0, this.lastHedgesWon);
    this.lastHedgesWon = counters.hedges?.won ?? 0;
    this.hedgesLost[slot] = delta(counters.hedges?.lost ?? 0, this.lastHedgesLost);
    this.lastHedgesLost = counters.hedges?.lost ?? 0;
    this.limited[slot] = delta(limited, this.lastLimited);
    this.lastLimited = limited;
    this.connections[slot] = connections;
    this.samplePercentiles(slot, counters.requestDuration);
    this.sampleServers(slot, upstreams, counters.serverDuration);
    this.head = (slot + 1) % this.capacity;
    if (this.filled < this.capacity) this.filled++;
  }

  /** Fill `bucketDelta` with what `histogram` gained since `last`; the number of observations gained. */
  private histogramDelta(histogram: HistogramData, last: HistogramData | undefined): number {
    const before = last ?? { counts: [], sum: 0, count: 0 };
    if (histogram.count < before.count) {
      this.bucketDelta.fill(0);
      return 0;
    }
    for (let i = 0; i < this.bucketDelta.length; i++) this.bucketDelta[i] = (histogram.counts[i] ?? 0) - (before.counts[i] ?? 0);
    return histogram.count - before.count;
  }

  private samplePercentiles(slot: number, histogram: HistogramData): void {
    const total = this.histogramDelta(histogram, this.lastHistogram);
    this.lastHistogram = { counts: [...histogram.counts], sum: histogram.sum, count: histogram.count };
    this.p50[slot] = histogramQuantile(LATENCY_BUCKETS, this.bucketDelta, total, 0.5) * 1000;
    this.p95[slot] = histogramQuantile(LATENCY_BUCKETS, this.bucketDelta, total, 0.95) * 1000;
    this.p99[slot] = histogramQuantile(LATENCY_BUCKETS, this.bucketDelta, total, 0.99) * 1000;
  }

  private sampleServers(slot: number, upstreams: readonly UpstreamView[], durations: ReadonlyArray<[string, HistogramData]> = []): void {
    for (const columns of this.servers.values()) columns.seen = false;
    const byKey = new Map(durations);
    for (const group of upstreams) {
      for (const server of group.servers) {
        const key = `${group.name}\u0000${server.address}`;
        let columns = this.servers.get(key);
        if (!columns) {
          columns = new ServerColumns(this.capacity, this.filled === 0 ? 0 : server.requests, this.filled === 0 ? 0 : server.requestFailures);
          this.servers.set(key, columns);
        }
        columns.seen = true;
        columns.requests[slot] = delta(server.requests, columns.lastRequests);
        columns.errors[slot] = delta(server.requestFailures, columns.lastErrors);
        columns.lastRequests = server.requests;
        columns.lastErrors = server.requestFailures;
        columns.probeLatencyMs[slot] = server.latencyMs ?? NaN;
        const histogram = byKey.get(key);
        if (histogram) {
          const total = this.histogramDelta(histogram, columns.lastHistogram);
          columns.lastHistogram = { counts: [...histogram.counts], sum: histogram.sum, count: histogram.count };
          columns.p99Ms[slot] = histogramQuantile(LATENCY_BUCKETS, this.bucketDelta, total, 0.99) * 1000;
        } else columns.p99Ms[slot] = NaN;
        const state = (SERVER_STATES as readonly string[]).indexOf(server.state);
        columns.state[slot] = state < 0 ? 0 : state;
      }
    }
    // A server the configuration no longer names: its history goes with it.
    for (const [key, columns] of this.servers) if (!columns.seen) this.servers.delete(key);
  }

  /** Samples after `since` (epoch ms; 0: all), oldest first, as columns. */
  view(since = 0, now = Date.now()): SeriesView {
    const slots: number[] = [];
    const start = (this.head - this.filled + this.capacity) % this.capacity;
    for (let i = 0; i < this.filled; i++) {
      const slot = (start + i) % this.capacity;
      if (this.times[slot]! * 1000 > since) slots.push(slot);
    }
    const take = (column: ArrayLike<number>) => slots.map((slot) => column[slot]!);
    const nullable = (column: ArrayLike<number>) => slots.map((slot) => (Number.isNaN(column[slot]!) ? null : Math.round(column[slot]! * 1000) / 1000));
    const requests: Record<string, number[]> = {};
    STATUS_CLASSES.forEach((code, i) => (requests[code] = take(this.requests[i]!)));
    return {
      at: now,
      intervalMs: this.intervalMs,
      capacity: this.capacity,
      t: take(this.times),
      requests,
      latencyMs: { p50: nullable(this.p50), p95: nullable(this.p95), p99: nullable(this.p99) },
      bytesOut: take(this.bytesOut),
      bytesIn: take(this.bytesIn),
      retries: take(this.retries),
      hedges: { won: take(this.hedgesWon), lost: take(this.hedgesLost) },
      limited: take(this.limited),
      connections: take(this.connections),
      states: SERVER_STATES,
      servers: [...this.servers].map(([key, columns]) => {
        const [upstream, server] = key.split('\u0000') as [string, string];
        return { upstream, server, requests: take(columns.requests), errors: take(columns.errors), probeLatencyMs: nullable(columns.probeLatencyMs), p99Ms: nullable(columns.p99Ms), state: take(columns.state) };
      }),
      transitions: this.transitionLog.filter((transition) => transition.at > since),
    };
  }
}
