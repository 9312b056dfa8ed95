/**
 * @wmproxy/health: active (TCP, HTTP, HTTPS, gRPC) and passive health checks with
 * HAProxy's rise/fall, Envoy's outlier detection and panic threshold, and
 * nginx's slow start. See README.md for every option and its equivalents.
 */
export { HealthChecker, type Race } from './checker.js';
export type {
  ActiveOptions,
  CheckSnapshot,
  CheckSpec,
  EjectionEvent,
  EjectKind,
  FailureKind,
  HealthCheckerOptions,
  HealthEventMap,
  HealthSnapshot,
  HealthState,
  HealthStats,
  HttpCheck,
  GrpcCheck,
  PanicEvent,
  PassiveOptions,
  PoolSnapshot,
  ProbeResult,
  TargetSnapshot,
  TargetSpec,
  TcpCheck,
  TransitionEvent,
} from './types.js';
export { EJECT_KINDS } from './types.js';
export { parseDuration, formatDuration, DurationError, MAX_DURATION_MS } from './duration.js';
export { parseStatusRanges, statusMatches, formatStatusRanges, StatusSpecError, DEFAULT_STATUS, type StatusRanges } from './status.js';
export {
  normaliseAddress,
  parseTargetUrl,
  parseBodyMatch,
  resolveCheck,
  describeCheck,
  checkKey,
  TargetError,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_GRPC_SERVICE,
  MAX_GRPC_SERVICE_LENGTH,
  type ResolvedGrpcCheck,
  type ResolvedCheck,
  type ResolvedHttpCheck,
  type ResolvedTcpCheck,
} from './target.js';
export { HEALTH_DEFAULTS, DEFAULT_ACTIVE, DEFAULT_PASSIVE, DEFAULT_PANIC_THRESHOLD, DEFAULT_CONCURRENCY, HealthOptionError, resolveActive } from './options.js';
export { RiseFall } from './state.js';
export { Scheduler, type Job } from './scheduler.js';
export {
  runProbe,
  probeTcp,
  probeHttp,
  probeGrpc,
  encodeHealthCheckRequest,
  decodeHealthCheckRequest,
  encodeHealthCheckResponse,
  decodeHealthCheckResponse,
  servingStatusName,
  ServingStatus,
  HEALTH_CHECK_PATH,
} from './probes/index.js';
export { slowStartFactor } from './slow-start.js';
export { maxEjected, inPanic } from './passive.js';
export { Stall, STALL_AFTER, STALL_EJECT_MS, STALL_EJECT_MAX_MS, type LossVerdict } from './stall.js';
export { runProbes, type ProbeRunOptions, type ProbeRunReport, type ProbeOutcome, type ProbeTarget } from './run.js';
export { formatTable, toJUnit, type TableRow } from './report.js';
