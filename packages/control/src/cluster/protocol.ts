/**
 * What the primary and its worker processes say to each other over the IPC
 * channel (JSON messages). The primary owns the configuration, the active
 * health checks and the control API; workers serve traffic, follow the
 * primary's health states and report their counters.
 */
import type { ManagedCertificate } from '@wmproxy/acme';
import type { HealthState } from '@wmproxy/health';
import type { WmproxyConfig } from '@wmproxy/config';
import type { InstanceEvent, ReloadResult, ServiceStatus } from '../types.js';

/** One active check's state, by the key both processes derive from the same configuration. */
export interface HealthEntry {
  key: string;
  state: HealthState;
  reason?: string;
}

export interface HistogramData {
  counts: number[];
  sum: number;
  count: number;
}

export interface UpstreamServerCounters {
  address: string;
  /** As the proxy runs it (discovered servers are not in the configuration). */
  weight?: number;
  backup?: boolean;
  available: boolean;
  active: number;
  idle: number;
  requests: number;
  failures: number;
}

/** A worker's counters: cumulative since it started, plus gauges. */
export interface WorkerCounters {
  /** Requests answered by the reverse proxy, by status class. */
  requests: Array<[string, number]>;
  bytesSent: number;
  requestDuration: HistogramData;
  upstreamDuration: HistogramData;
  upstreams: Record<string, UpstreamServerCounters[]>;
  /** Forward proxies by name: open connections (gauge) and accepted (counter). */
  forward: Array<{ name: string; open: number; accepted: number }>;
  /** Open reverse-proxy client connections (gauge). */
  sessions: number;
  /** Requests refused by rate or concurrency limits, by reason (absent from workers of older versions). */
  limited?: Array<[string, number]>;
  /** The certificates this process manages (automatic HTTPS): a state, merged by `mergeCertificates`, not summed. */
  certificates?: ManagedCertificate[];
  /** Request bytes received; retries; request hedges won and lost (absent from older workers). */
  bytesReceived?: number;
  retries?: number;
  hedges?: { won: number; lost: number };
  /** Per-server latency: `upstream\0server` and its histogram. */
  serverDuration?: Array<[string, HistogramData]>;
  /** The OTLP exporter's spans (absent: no export configured). */
  traceSpans?: { exported: number; dropped: number; failed: number };
}

export type PrimaryMessage =
  /** `quiet`: the primary's owner took over logging (a test's silent logger), so the worker logs nothing. */
  | { t: 'start'; index: number; config: WmproxyConfig; health: HealthEntry[]; quiet: boolean }
  | { t: 'health'; entries: HealthEntry[] }
  | { t: 'reload'; id: number; config: WmproxyConfig }
  | { t: 'collect'; id: number }
  | { t: 'reopen-logs' }
  | { t: 'stop' };

export type WorkerMessage =
  /** First message: the worker listens now (an ES module's early IPC messages would be lost). */
  | { t: 'hello' }
  | { t: 'ready'; services: ServiceStatus[] }
  | { t: 'failed'; message: string }
  | { t: 'reloaded'; id: number; result: ReloadResult; services: ServiceStatus[] }
  | { t: 'counters'; id?: number; counters: WorkerCounters }
  | { t: 'event'; event: InstanceEvent };

export function emptyHistogram(buckets: number): HistogramData {
  return { counts: new Array<number>(buckets).fill(0), sum: 0, count: 0 };
}

export function emptyCounters(buckets: number): WorkerCounters {
  return { requests: [], bytesSent: 0, requestDuration: emptyHistogram(buckets), upstreamDuration: emptyHistogram(buckets), upstreams: {}, forward: [], sessions: 0, bytesReceived: 0, retries: 0, hedges: { won: 0, lost: 0 }, serverDuration: [] };
}

function addHistogram(into: HistogramData, from: HistogramData): void {
  for (let i = 0; i < into.counts.length; i++) into.counts[i]! += from.counts[i] ?? 0;
  into.sum += from.sum;
  into.count += from.count;
}

/**
 * Sum workers' counters into one view of the instance. Gauges (open
 * connections, requests in flight, idle pool connections) add up; a server
 * is available only when every worker may use it.
 */
export function mergeCounters(parts: readonly WorkerCounters[], buckets: number): WorkerCounters {
  const total = emptyCounters(buckets);
  const requests = new Map<string, number>();
  const forward = new Map<string, { name: string; open: number; accepted: number }>();
  const limited = new Map<string, number>();
  const serverDuration = new Map<string, HistogramData>();
  for (const part of parts) {
    total.bytesReceived! += part.bytesReceived ?? 0;
    total.retries! += part.retries ?? 0;
    total.hedges!.won += part.hedges?.won ?? 0;
    total.hedges!.lost += part.hedges?.lost ?? 0;
    for (const [key, histogram] of part.serverDuration ?? []) {
      let into = serverDuration.get(key);
      if (!into) serverDuration.set(key, (into = emptyHistogram(buckets)));
      addHistogram(into, histogram);
    }
    if (part.traceSpans) {
      const spans = (total.traceSpans ??= { exported: 0, dropped: 0, failed: 0 });
      spans.exported += part.traceSpans.exported;
      spans.dropped += part.traceSpans.dropped;
      spans.failed += part.traceSpans.failed;
    }
    for (const [reason, count] of part.limited ?? []) limited.set(reason, (limited.get(reason) ?? 0) + count);
    for (const [code, count] of part.requests) requests.set(code, (requests.get(code) ?? 0) + count);
    total.bytesSent += part.bytesSent;
    addHistogram(total.requestDuration, part.requestDuration);
    addHistogram(total.upstreamDuration, part.upstreamDuration);
    total.sessions += part.sessions;
    for (const entry of part.forward) {
      const sum = forward.get(entry.name) ?? { name: entry.name, open: 0, accepted: 0 };
      sum.open += entry.open;
      sum.accepted += entry.accepted;
      forward.set(entry.name, sum);
    }
    for (const [name, servers] of Object.entries(part.upstreams)) {
      const into = (total.upstreams[name] ??= []);
      servers.forEach((server, index) => {
        const sum = into[index];
        if (!sum) into[index] = { ...server };
        else {
          sum.available &&= server.available;
          sum.active += server.active;
          sum.idle += server.idle;
          sum.requests += server.requests;
          sum.failures += server.failures;
        }
      });
    }
  }
  total.requests = [...requests];
  total.limited = [...limited];
  total.certificates = mergeCertificates(parts.flatMap((part) => part.certificates ?? []));
  total.serverDuration = [...serverDuration];
  total.forward = [...forward.values()];
  return total;
}

/** The cumulative part of a worker's counters, kept after it exits so that counters never go backwards. */
export function retiredPart(counters: WorkerCounters): WorkerCounters {
  const upstreams: Record<string, UpstreamServerCounters[]> = {};
  for (const [name, servers] of Object.entries(counters.upstreams)) {
    upstreams[name] = servers.map((server) => ({ ...server, available: true, active: 0, idle: 0 }));
  }
  return {
    ...counters,
    upstreams,
    forward: counters.forward.map((entry) => ({ ...entry, open: 0 })),
    sessions: 0,
    // A worker that exited manages nothing any more.
    certificates: [],
  };
}

const STATUS_RANK: Record<ManagedCertificate['status'], number> = { valid: 0, waiting: 1, renewing: 2, obtaining: 2, failing: 3 };

/**
 * One row per certificate from the rows of every process managing it
 * (each worker runs a manager over the shared storage; one of them orders).
 * The newest certificate's dates and issuer; the most pressing status
 * (failing, then under way, then waiting for another worker, then valid);
 * the longest run of failures with its error; the earliest next renewal or
 * retry among the processes not just waiting for another's order.
 */
export function mergeCertificates(rows: readonly ManagedCertificate[]): ManagedCertificate[] {
  const groups = new Map<string, ManagedCertificate[]>();
  for (const row of rows) {
    const key = [...row.names].sort().join(',');
    const group = groups.get(key);
    if (group) group.push(row);
    else groups.set(key, [row]);
  }
  const time = (iso: string | undefined): number => (iso === undefined ? Number.NaN : Date.parse(iso));
  return [...groups.values()].map((group) => {
    const newest = group.reduce((best, row) => (time(row.notAfter) > time(best.notAfter) || best.notAfter === undefined ? row : best));
    const failing = group.reduce((best, row) => (row.failures > best.failures ? row : best));
    const status = group.reduce((best, row) => (STATUS_RANK[row.status] > STATUS_RANK[best.status] ? row : best)).status;
    const planners = group.filter((row) => row.status !== 'waiting' && row.nextRenewal !== undefined);
    const next = (planners.length > 0 ? planners : group).reduce<string | undefined>((best, row) => (best === undefined || time(row.nextRenewal) < time(best) ? row.nextRenewal : best), undefined);
    return {
      names: [...group[0]!.names],
      status,
      issuer: newest.issuer,
      notBefore: newest.notBefore,
      notAfter: newest.notAfter,
      nextRenewal: next,
      failures: failing.failures,
      lastError: failing.failures > 0 ? failing.lastError : undefined,
    };
  });
}
