import type { ManagedCertificate } from '@wmproxy/acme';
/**
 * The control package's shared vocabulary: what the instance reports (status,
 * upstreams, events, reload results), what the cluster sends between
 * processes, and the two sides of the control API, in a file that imports no
 * module of this package, so that instance.ts, api.ts and cluster/* need not
 * import each other for types.
 */
import type { ClientSnapshot, MappingSnapshot, TunnelClientStatus, TunnelGuardStats } from '@wmproxy/tunnel';
import type { EventEmitter } from 'node:events';
import type { ConfigIssue, WmproxyConfig } from '@wmproxy/config';
import type { WorkerPoolView } from '@wmproxy/core-net';

/** An event of the `/events` stream and the dashboard. */
export interface InstanceEvent {
  type: 'transition' | 'eject' | 'uneject' | 'panic' | 'reload' | 'stop' | 'worker';
  at: number;
  [field: string]: unknown;
}

export interface ReloadResult {
  ok: boolean;
  /** Why it was rejected (the running configuration stays). */
  errors?: ConfigIssue[];
  message?: string;
  /** What changed, in words (`proxy "mixed": settings updated, socket kept`). */
  changes: string[];
  warnings: string[];
}

export interface ServiceStatus {
  kind: 'forward' | 'http' | 'stream' | 'ws-proxy' | 'control';
  name: string;
  listen: string[];
  /** Bound addresses (the real ports when 0 was asked). */
  addresses: string[];
  [field: string]: unknown;
}

/** The intranet tunnel of an instance: the server's clients and mappings, each client's session. */
export interface TunnelStatus {
  server?: { address: string; fingerprint: string | undefined; clients: ClientSnapshot[]; mappings: MappingSnapshot[]; http: string[]; https: string[]; guard: TunnelGuardStats };
  clients: Array<TunnelClientStatus & { service: string }>;
}

export interface StatusView {
  version: string;
  runtime: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  configFile: string;
  reloads: { ok: number; failed: number; last: string | undefined };
  services: ServiceStatus[];
  /** With `workers` > 1: each worker process. */
  workers?: WorkerView[];
  /** The intranet tunnel: the server's clients and mappings, each client's session. */
  tunnel?: TunnelStatus;
  /** With a configuration store (`run --store`): the store, this instance's view of it, every instance registered. */
  cluster?: ClusterView;
}

/** Instances sharing a configuration store (`@wmproxy/cluster` provides it). */
export interface ClusterView {
  store: string;
  /** False while the store is unreachable: the last good configuration keeps serving. */
  connected: boolean;
  /** Revision of the stored configuration this instance runs (0: none from the store). */
  revision: number;
  lastError?: string;
  members: Array<{ id: string; address: string; version: string; configRevision: number; health: { healthy: number; unhealthy: number }; since: string; updatedAt: string }>;
}

/** What an instance asks of its cluster membership. */
export interface ClusterSource {
  view(): ClusterView;
}

export interface UpstreamServerView {
  address: string;
  weight: number;
  backup: boolean;
  /** unknown | healthy | unhealthy (active checks), `ejected` overrides while passive checks keep it out. */
  state: string;
  available: boolean;
  ejected: boolean;
  /** While ejected: which detector (`consecutive_failures`, `stall`, `connect_stall`). */
  ejectKind: string | undefined;
  reason: string | undefined;
  successes: number;
  failures: number;
  latencyMs: number | undefined;
  lastResults: Array<{ ok: boolean; at: number; latencyMs: number; reason: string }>;
  check: string | undefined;
  activeRequests: number;
  idleConnections: number;
  requests: number;
  requestFailures: number;
}

export interface UpstreamView {
  name: string;
  policy: string;
  servers: UpstreamServerView[];
}

/** A worker process as core-net's WorkerPool sees it, plus what it serves. */
export interface WorkerView extends WorkerPoolView {
  openConnections: number;
}

/** What the control API asks of the instance it serves (Instance implements it). */
export interface ControlTarget {
  readonly stopping: boolean;
  /** Emits `event` with an InstanceEvent, and `sample` (epoch ms) after each sample of the time series. */
  readonly events: EventEmitter;
  readonly recentEvents: readonly InstanceEvent[];
  /** Collect the workers' counters and health before a read. */
  refresh(): Promise<void>;
  status(): StatusView;
  upstreams(): UpstreamView[];
  redactedConfig(): { file: string; warnings: string[]; config: unknown };
  prometheus(): string;
  /** The time series after `since` (epoch ms), for GET /series. */
  seriesView(since: number): SeriesView;
  /** Certificates managed by automatic HTTPS (ACME). */
  certificates?(): Promise<ManagedCertificate[]>;
  reload(): Promise<ReloadResult>;
  requestStop(): void;
}

/** What the instance keeps of its running control API (ControlServer implements it). */
export interface ControlApi {
  readonly address: string;
  configure(config: WmproxyConfig['control']): void;
  close(): Promise<void>;
}

/** One change of a server's availability, for the markers and the timeline. */
export interface SeriesTransition {
  at: number;
  target: string;
  /** transition: an active check changed state; eject/uneject: passive detection. */
  kind: 'transition' | 'eject' | 'uneject';
  from?: string;
  to: string;
  reason?: string;
}

/** Columns as sent by `GET /series` (null: no value that second, e.g. no request to take a percentile of). */
export interface SeriesView {
  at: number;
  intervalMs: number;
  capacity: number;
  /** Sample times, epoch seconds. */
  t: number[];
  requests: Record<string, number[]>;
  /** Request duration percentiles, milliseconds. */
  latencyMs: { p50: Array<number | null>; p95: Array<number | null>; p99: Array<number | null> };
  bytesOut: number[];
  /** Request bytes received per second. */
  bytesIn: number[];
  /** Retries (attempts after the first) per second. */
  retries: number[];
  /** Request hedges per second that won (served the response) and lost. */
  hedges: { won: number[]; lost: number[] };
  /** Rate-limited (refused) requests per second. */
  limited: number[];
  connections: number[];
  states: readonly string[];
  servers: Array<{ upstream: string; server: string; requests: number[]; errors: number[]; probeLatencyMs: Array<number | null>; p99Ms: Array<number | null>; state: number[] }>;
  transitions: SeriesTransition[];
}
