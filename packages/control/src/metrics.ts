/**
 * Counters and histograms of the instance, rendered in the Prometheus text
 * exposition format (version 0.0.4).
 */
import type { AccessRecord } from '@wmproxy/reverse';
import type { HistogramData } from './cluster/protocol.js';

export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const LATENCY_BUCKET_COUNT = LATENCY_BUCKETS.length;

/**
 * Per-server latency histograms kept at most: servers come from the
 * configuration (and /metrics renders only the configured ones), this caps
 * what reloads that rename servers can leave behind.
 */
export const MAX_SERVER_HISTOGRAMS = 1024;

export class Histogram {
  readonly counts = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  sum = 0;
  count = 0;

  static from(data: HistogramData): Histogram {
    const histogram = new Histogram();
    for (let i = 0; i < histogram.counts.length; i++) histogram.counts[i] = data.counts[i] ?? 0;
    histogram.sum = data.sum;
    histogram.count = data.count;
    return histogram;
  }

  data(): HistogramData {
    return { counts: [...this.counts], sum: this.sum, count: this.count };
  }

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (seconds <= LATENCY_BUCKETS[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }

  render(out: string[], name: string, labels: string): void {
    let cumulative = 0;
    const join = labels === '' ? '' : `${labels},`;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      cumulative += this.counts[i]!;
      out.push(`${name}_bucket{${join}le="${LATENCY_BUCKETS[i]}"} ${cumulative}`);
    }
    out.push(`${name}_bucket{${join}le="+Inf"} ${this.count}`);
    out.push(`${name}_sum${labels === '' ? '' : `{${labels}}`} ${this.sum}`);
    out.push(`${name}_count${labels === '' ? '' : `{${labels}}`} ${this.count}`);
  }
}

export function label(value: string | number): string {
  return String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function labels(pairs: Record<string, string | number>): string {
  return Object.entries(pairs)
    .map(([key, value]) => `${key}="${label(value)}"`)
    .join(',');
}

/** What the data plane reports, kept across reloads. */
export class Metrics {
  /** status class (`2xx`) → count */
  readonly requests = new Map<string, number>();
  readonly requestDuration = new Histogram();
  readonly upstreamDuration = new Histogram();
  bytesSent = 0;
  readonly transitions = new Map<string, number>();
  /** `target\0kind` → ejections (kind: an EjectKind of @wmproxy/health). */
  readonly ejections = new Map<string, number>();
  readonly probeLatency = new Histogram();
  readonly probes = new Map<string, number>();
  reloadsOk = 0;
  reloadsFailed = 0;
  /** Requests refused by a location's rate or concurrency limit, by reason. */
  readonly limited = new Map<string, number>();
  /** Request bytes received (heads and bodies). */
  bytesReceived = 0;
  /** Upstream attempts after the first, over all requests. */
  retries = 0;
  /** Request hedges that served the response, and those that did not. */
  hedgesWon = 0;
  hedgesLost = 0;
  /** `upstream\0server` → time from the first attempt to the end of the response of requests that server answered. */
  readonly serverDuration = new Map<string, Histogram>();

  observeRequest(record: AccessRecord): void {
    if (record.reason === 'rate_limited' || record.reason === 'concurrency_limited') this.limited.set(record.reason, (this.limited.get(record.reason) ?? 0) + 1);
    const key = `${Math.floor(record.status / 100)}xx`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    this.bytesSent += record.bytesSent;
    this.requestDuration.observe(record.totalTimeMs / 1000);
    if (record.upstreamTimeMs !== undefined) this.upstreamDuration.observe(record.upstreamTimeMs / 1000);
    this.bytesReceived += record.bytesReceived ?? 0;
    if (record.retries !== undefined) this.retries += record.retries;
    if (record.hedge === 'won') this.hedgesWon++;
    else if (record.hedge === 'lost') this.hedgesLost++;
    if (record.upstream !== undefined && record.upstreamAddr !== undefined && record.upstreamTimeMs !== undefined) {
      const key = `${record.upstream}\u0000${record.upstreamAddr}`;
      let histogram = this.serverDuration.get(key);
      if (histogram === undefined) {
        if (this.serverDuration.size >= MAX_SERVER_HISTOGRAMS) return;
        histogram = new Histogram();
        this.serverDuration.set(key, histogram);
      }
      histogram.observe(record.upstreamTimeMs / 1000);
    }
  }

  observeTransition(target: string, to: string): void {
    const key = `${target}\u0000${to}`;
    this.transitions.set(key, (this.transitions.get(key) ?? 0) + 1);
  }

  observeEjection(target: string, kind: string): void {
    const key = `${target}\u0000${kind}`;
    this.ejections.set(key, (this.ejections.get(key) ?? 0) + 1);
  }

  ejectionCount(target: string, kind: string): number {
    return this.ejections.get(`${target}\u0000${kind}`) ?? 0;
  }

  observeProbe(ok: boolean, latencyMs: number): void {
    const key = ok ? 'success' : 'failure';
    this.probes.set(key, (this.probes.get(key) ?? 0) + 1);
    this.probeLatency.observe(latencyMs / 1000);
  }
}

/** Accumulates `# HELP`/`# TYPE` headers and samples. */
export class Exposition {
  readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): this {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, pairs: Record<string, string | number>, value: number): this {
    const text = labels(pairs);
    this.lines.push(`${name}${text === '' ? '' : `{${text}}`} ${value}`);
    return this;
  }

  text(): string {
    return this.lines.join('\n') + '\n';
  }
}
