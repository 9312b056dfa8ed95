/**
 * Every default of the reverse proxy in one place: the engine, config's
 * resolver, the config schema (and so wmproxy.schema.json and `--help`) and
 * the README tables read them from here (test/defaults.test.ts checks the
 * README; config's defaults test checks the schema and the resolver).
 */
import { DEFAULT_HTTP2_OPTIONS, DEFAULT_MAX_HEAD_SIZE } from '@wmproxy/core-net';
import { DEFAULT_RETRIES, DEFAULT_TIMEOUTS } from './engine/options.js';
import { DEFAULT_BODY_BUFFER } from './retry.js';
import { TRACING_DEFAULTS } from './trace.js';

export const REVERSE_DEFAULTS = Object.freeze({
  timeouts: DEFAULT_TIMEOUTS,
  retries: DEFAULT_RETRIES,
  /** Most request-body bytes kept to replay a request of `retries.methods`. */
  retryBodyBuffer: DEFAULT_BODY_BUFFER,
  /** Connect hedging delay (0: off). */
  hedgeDelayMs: 100,
  /** Request hedging ceiling (0: off); the delay adapts below it. */
  requestHedgeMs: 500,
  /** Request hedges earned per request. */
  requestHedgeBudget: 0.1,
  /** Largest request head. */
  maxHeadSize: DEFAULT_MAX_HEAD_SIZE,
  /** HTTP/2 on listeners: true (by ALPN over TLS), false, or "h2c" (also cleartext by prior knowledge). */
  http2: true as boolean | 'h2c',
  /** HTTP/2 session limits (streams, windows, header list, floods): core-net's. */
  http2Options: DEFAULT_HTTP2_OPTIONS,
  /** Graceful shutdown deadline on reload or stop. */
  shutdownDeadlineMs: 10_000,
  /** Status answered to a connection over a listener's limits (0: closed without an answer). */
  connectionLimitStatus: 503,
  /** Upstream DNS names: validity when no TTL is known, its bounds, record TTLs, and the DNS servers asked (none: the system's). */
  dns: Object.freeze({ ttlMs: 30_000, minTtlMs: 1_000, maxTtlMs: 300_000, recordTtl: false, servers: Object.freeze([]) as readonly string[] }),
  /**
   * Keep-alive connections to one upstream server. `maxIdle` only caps what
   * a burst already opened (LIFO, so the surplus times out after
   * `idleTimeoutMs`); too low a cap closes a connection per response once
   * concurrency exceeds it and opens a new one for the next request, the
   * churn pooling exists to avoid. 256 per server and process, as HAProxy
   * (`pool-max-conn` unlimited by default) leans, rather than nginx's small
   * per-worker cache that its docs size for a few workers.
   */
  pool: Object.freeze({ maxIdle: 256, idleTimeoutMs: 60_000 }),
  /** TCP/UDP streams: servers tried when connects fail; idle timeouts (TCP: a silent relay is closed; UDP: a silent client is forgotten). */
  stream: Object.freeze({ tries: 3, tcpIdleTimeoutMs: 600_000, udpIdleTimeoutMs: 60_000 }),
  /** Rate limits: burst above the rate, status of a refused request, clients remembered, requests in flight (0: no limit). */
  rateLimit: Object.freeze({ burst: 0, status: 503, maxKeys: 100_000, maxInFlight: 0 }),
  /** W3C trace context (off), the share of started traces sampled, `service.name`, and the OTLP exporter's queue, batch, interval and timeout. */
  tracing: TRACING_DEFAULTS,
});
