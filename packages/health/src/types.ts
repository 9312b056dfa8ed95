import type { Transport } from '@wmproxy/core-net';
/**
 * Public types of @wmproxy/health. Durations are numbers of milliseconds in
 * the API (`…Ms`); `parseDuration` turns `500ms`, `1s`, `2m` into them.
 */

/** Where a target stands. `unknown` until the first probe (or `initial`) decides. */
export type HealthState = 'unknown' | 'healthy' | 'unhealthy';

/** What real traffic saw, for passive checks (outlier detection). */
export type FailureKind = 'connect' | 'timeout' | 'status5xx';

/** A TCP check: the connect must succeed; optionally send bytes and expect a reply containing others. */
export interface TcpCheck {
  type: 'tcp';
  /** Bytes to send once connected (text, or hex when `encoding` is `hex`). */
  send?: string;
  /** Bytes the reply must contain (text, or hex when `encoding` is `hex`). */
  expect?: string;
  /** How `send`/`expect` are written (default `text`; `hex` accepts `0d0a`, `0d 0a`). */
  encoding?: 'text' | 'hex';
}

/** An HTTP or HTTPS check (a minimal HTTP/1.1 client, one connection per probe). */
export interface HttpCheck {
  type: 'http' | 'https';
  /** Request method (default GET). */
  method?: string;
  /** Request path and query (default `/`). */
  path?: string;
  /** Host header (default: the target's host[:port]); also the SNI name unless `servername` is set. */
  host?: string;
  /** Extra request headers. */
  headers?: Record<string, string> | Array<[string, string]>;
  /** Accepted statuses: `200-399` (default), `200,301-302`, or a list of [low, high] ranges. */
  expectStatus?: string | Array<[number, number]>;
  /** The body must contain this text, or match `/regex/flags`. */
  expectBody?: string;
  /** At most this many body bytes are read for `expectBody` (default 65536). */
  maxBodyBytes?: number;
  /** TLS: the SNI name and the name verified (default: `host`, else the target's host). */
  servername?: string;
  /** TLS: verify the certificate (default true). */
  tlsVerify?: boolean;
  /** TLS: extra CA certificates (PEM). */
  ca?: string | string[];
}

/**
 * A gRPC check (`grpc.health.v1.Health/Check` over HTTP/2): SERVING passes;
 * NOT_SERVING, an unknown service, a grpc-status other than OK or a timeout fail.
 */
export interface GrpcCheck {
  /** `grpc`: h2c by prior knowledge; `grpcs`: TLS with ALPN h2. */
  type: 'grpc' | 'grpcs';
  /** The service asked about (default '': the server as a whole). */
  service?: string;
  /** `:authority` sent (default: the target's host[:port]); also the SNI name unless `servername` is set. */
  authority?: string;
  /** TLS: the SNI name and the name verified. */
  servername?: string;
  /** TLS: verify the certificate (default true). */
  tlsVerify?: boolean;
  /** TLS: extra CA certificates (PEM). */
  ca?: string | string[];
}

export type CheckSpec = TcpCheck | HttpCheck | GrpcCheck;

/** Active-check timing and thresholds; each target may override the checker's defaults. */
export interface ActiveOptions {
  /** Time between probes (default 2000). */
  intervalMs: number;
  /** A probe fails after this long (default 1000; never longer than the interval). */
  timeoutMs: number;
  /** Consecutive successes to become healthy (default 2). */
  rise: number;
  /** Consecutive failures to become unhealthy (default 3). */
  fall: number;
  /** Random spread of each interval, as a fraction (default 0.1 = ±10 %). */
  jitter: number;
  /** Interval while a target is changing state (default: `intervalMs`; HAProxy fastinter). */
  fastIntervalMs: number;
  /** Interval while a target is unhealthy (default: `intervalMs`; HAProxy downinter). */
  downIntervalMs: number;
  /** State before the first probe (default `unknown`). */
  initial: HealthState;
  /** From `unknown`, the first probe decides (default true); false: `rise`/`fall` results are needed. */
  decideOnFirst: boolean;
  /** Results kept per target for `snapshot()` (default 10). */
  history: number;
}

/** One target to check. `address` is `host:port`; the same normalised address + check is probed once. */
export interface TargetSpec extends Partial<ActiveOptions> {
  address: string;
  /** What to probe (default `{ type: 'tcp' }`). `null`: no active check (passive only). */
  check?: CheckSpec | null;
  /** The group the target belongs to, for max-ejection and panic accounting (default `default`). */
  pool?: string;
  /**
   * How probes reach the target when it is not a plain socket address (a
   * tunnel mapping): TCP and HTTP checks then open their stream through it.
   * Default core-net's `connect` (TCP, or TLS for `https` checks).
   */
  transport?: Transport;
}

/** Passive checks (Envoy's outlier detection, Caddy's passive health checks). */
export interface PassiveOptions {
  /** Off when false (default true: real traffic reports are used). */
  enabled: boolean;
  /** Consecutive failures that eject a target (default 5). */
  consecutiveFailures: number;
  /** The failures must fall within this window (default 10 000 ms); older ones are forgotten. */
  windowMs: number;
  /** First ejection time; the n-th ejection lasts n × base (default 30 000 ms). */
  baseEjectionMs: number;
  /** Cap on the ejection time (default 300 000 ms). */
  maxEjectionMs: number;
  /** Most of a pool that may be ejected at once, in percent (default 10; at least one host may always be ejected). */
  maxEjectionPercent: number;
  /** Count 5xx responses as failures (default false). */
  count5xx: boolean;
}

/** Options of a HealthChecker. */
export interface HealthCheckerOptions {
  /** Defaults for every target's active checks. */
  active?: Partial<ActiveOptions>;
  passive?: Partial<PassiveOptions>;
  /** A recovered target's weight ramps from `slowStartMinPercent` to 100 % over this window (default 0: off). */
  slowStartMs?: number;
  /** Weight at the start of the slow-start window, in percent (default 10). */
  slowStartMinPercent?: number;
  /** Below this percentage of available targets a pool panics (default 50; 0 disables). */
  panicThreshold?: number;
  /** In panic, `open` sends traffic to every target (default), `closed` only to available ones. */
  failMode?: 'open' | 'closed';
  /** Most probes in flight at once (default 1024). */
  concurrency?: number;
  /**
   * Run the active checks here (default true). False makes a follower: the
   * checks are declared (keys, pools, passive state) but never probed, and
   * their state comes from `applyState()` — a worker process whose primary
   * probes each target once for every worker.
   */
  probe?: boolean;
}

/** One probe's outcome. */
export interface ProbeResult {
  ok: boolean;
  /** Epoch milliseconds when the probe started. */
  at: number;
  latencyMs: number;
  /** `200 OK`, `connected`, or why it failed: `ECONNREFUSED`, `timeout after 1000 ms`, `status 503 not in 200-399`… */
  reason: string;
  /** HTTP status, when one was received. */
  status?: number;
}

/** A state change of one target's active check. */
export interface TransitionEvent {
  /** The normalised address (`host:port`). */
  target: string;
  /** The deduplicated check's key (address + check). */
  key: string;
  /** The check, in words: `tcp`, `http GET /health`. */
  check: string;
  from: HealthState;
  to: HealthState;
  reason: string;
  /** Consecutive successes / failures at the time of the change. */
  successes: number;
  failures: number;
  latencyMs: number;
  at: number;
}

/**
 * Which detector ejected a target, as a bounded word for metric labels:
 * outlier detection (`consecutive_failures`, the last of them a connect
 * failure, a timeout or a 5xx) or stall detection (`stall`: lost request
 * hedges; `connect_stall`: lost connect races).
 */
export type EjectKind = 'consecutive_failures' | 'stall' | 'connect_stall';

/** Every `EjectKind`, in a fixed order (metrics list them all). */
export const EJECT_KINDS: readonly EjectKind[] = ['consecutive_failures', 'stall', 'connect_stall'];

/** A target taken out (or put back) by passive checks. */
export interface EjectionEvent {
  target: string;
  /** Which detector ejected it (on `uneject`: the one whose ejection ended). */
  kind: EjectKind;
  /** `5 consecutive connect failures`, `active check passed`, `ejection time elapsed`, `removed`. */
  reason: string;
  /** How many times the target has been ejected (drives the growing ejection time). */
  ejections: number;
  /** How long this ejection lasts (on `eject`). */
  durationMs: number;
  at: number;
}

/** A pool entering or leaving panic. */
export interface PanicEvent {
  pool: string;
  panic: boolean;
  available: number;
  total: number;
  at: number;
}

export interface HealthEventMap {
  transition: [TransitionEvent];
  eject: [EjectionEvent];
  uneject: [EjectionEvent];
  panic: [PanicEvent];
  /** Every probe result (noisy; for `wmproxy probe --watch` and debugging). */
  probe: [{ target: string; key: string; result: ProbeResult; state: HealthState }];
}

/** One check of one target in `snapshot()`. */
export interface CheckSnapshot {
  key: string;
  check: string;
  state: HealthState;
  successes: number;
  failures: number;
  inFlight: boolean;
  lastChange: number;
  /** Oldest first. */
  history: ProbeResult[];
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
}

/** One target in `snapshot()`. */
export interface TargetSnapshot {
  target: string;
  pools: string[];
  /** Combined active state (unhealthy if any check is). */
  state: HealthState;
  available: boolean;
  ejected: boolean;
  ejectedUntil?: number;
  /** Why it is ejected (`5 consecutive connect failures`, `stalled: 3 lost hedges in a row`), while it is. */
  ejectReason?: string;
  /** Which detector ejected it, while it is. */
  ejectKind?: EjectKind;
  ejections: number;
  passiveFailures: number;
  weightFactor: number;
  checks: CheckSnapshot[];
}

export interface PoolSnapshot {
  pool: string;
  total: number;
  available: number;
  panic: boolean;
}

export interface HealthSnapshot {
  at: number;
  targets: TargetSnapshot[];
  pools: PoolSnapshot[];
  probesInFlight: number;
  probesQueued: number;
}

/** Counters of a checker (`stats()`), for metrics. */
export interface HealthStats {
  targets: number;
  checks: number;
  /** Probes completed and failed since start. */
  probes: number;
  failures: number;
  inFlight: number;
  queued: number;
  /** How late probes started after their due time (timer slack plus waiting for a concurrency slot). */
  meanLatenessMs: number;
  maxLatenessMs: number;
}
