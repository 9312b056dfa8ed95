/**
 * @wmproxy/reverse: the reverse proxy. HTTP listeners with virtual hosts and
 * locations, upstream groups balanced by health-aware policies with retries
 * and connect hedging, WebSocket pass-through, TCP/UDP stream proxying,
 * W3C trace context with optional OTLP/HTTP export (wmproxy's otlp.ts or the
 * OpenTelemetry API and SDK through otel.ts, each loaded on demand).
 */
export { ReverseProxy, resolveTracing, type ReverseProxyOptions, type ListenerSpec, type TracingSpec } from './proxy.js';
export {
  Tracer,
  RequestTrace,
  Span,
  SpanKind,
  TRACING_DEFAULTS,
  TRACING_EXPORTERS,
  parseTraceparent,
  traceIdOf,
  newTraceId,
  newSpanId,
  type TracingOptions,
  type TracingExporter,
  type LiveSpan,
  type OtlpOptions,
  type SpanData,
  type SpanSink,
  type SpanSinkStats,
  type ParsedTraceparent,
} from './trace.js';
export { Upstream, UpstreamServer, splitHostPort, type UpstreamSpec, type UpstreamServerSpec, type UpstreamHealthSpec, type HealthSource, type DiscoverSpec } from './upstream.js';
export { srvDiscovery, srvServers, type DiscoverySource, type DiscoveryWatch, type DiscoveryMap, type DiscoveredServer } from './discovery.js';
export { ConnPool, type PoolOptions } from './pool.js';
export { Router, normaliseHost, type LocationSpec, type BasicAuthSpec, type VirtualHostSpec, type FixedResponse, type LocationHandler, type ConnTakeover, type CompiledLocation } from './router.js';
export {
  Forwarding,
  applyRules,
  compileRules,
  parseHeaderRule,
  type ForwardedOptions,
  type HeaderRule,
  type HeaderList,
  type RuleVariables,
} from './headers.js';
export { AccessLog, formatAccess, timeLocal, type AccessRecord, type AccessLogFormat, type AccessLogSink } from './access-log.js';
export { StreamProxy, connectUpstream, type StreamSpec } from './stream.js';
export { connectHedged, defaultConnector, transportConnector, type Connector, type HedgeRequest, type HedgeOutcome } from './engine/connector.js';
export { DnsCache, recordTtlResolver, dnsSrvResolver, type DnsOptions, type Resolution, type TtlResolver, type SrvResolver, type SrvTarget } from './dns.js';
export { RateLimiter, parseRate, type RateLimitSpec, type LimitContext, type Refusal, type SharedLimit } from './rate-limit.js';
export { ClusterWindow, CLUSTER_WINDOW_MS, CLUSTER_SYNC_MS, CLUSTER_DEFAULTS, type SharedCounters, type CounterSync, type CounterTotals, type ClusterFallback } from './cluster-limit.js';
export { retryAllowed, bodyBufferLimit, DEFAULT_BODY_BUFFER, type RetryState, type FailureKind, type ReplayOptions } from './retry.js';
export { REVERSE_DEFAULTS } from './defaults.js';
export { DEFAULT_TIMEOUTS, DEFAULT_RETRIES, SAFE_METHODS, type TimeoutOptions, type RetryOptions } from './engine/options.js';
export { POLICIES, POLICY_NAMES, getPolicy, roundRobin, leastConn, randomTwo, ipHash, hash, first, type Policy, type PolicyName, type SelectContext } from './policies/index.js';
