/** Timeouts of the HTTP data plane, in milliseconds (0 disables one). */
export interface TimeoutOptions {
  /** Connecting to an upstream server, all its addresses together (default 5 000; nginx proxy_connect_timeout 60 s). */
  connectMs: number;
  /** From the end of the request to the first byte of the response head (default 60 000; nginx proxy_read_timeout). */
  firstByteMs: number;
  /** Longest silence while a response body streams (default 60 000). */
  idleMs: number;
  /** Receiving a whole request head once its first byte arrived (default 10 000; nginx client_header_timeout 60 s). */
  clientHeaderMs: number;
  /** Longest silence while a request body streams (default 60 000; nginx client_body_timeout). */
  clientBodyMs: number;
  /** How long an idle client keep-alive connection is kept (default 75 000; nginx keepalive_timeout). */
  keepAliveMs: number;
  /** Idle timeout of upgraded (WebSocket) connections (default 3 600 000). */
  tunnelIdleMs: number;
  /** The whole exchange, from the request head to the end of the response (default 0: no limit; 504 if nothing was sent yet). */
  requestMs: number;
}

export const DEFAULT_TIMEOUTS: TimeoutOptions = {
  connectMs: 5_000,
  firstByteMs: 60_000,
  idleMs: 60_000,
  clientHeaderMs: 10_000,
  clientBodyMs: 60_000,
  keepAliveMs: 75_000,
  tunnelIdleMs: 3_600_000,
  requestMs: 0,
};

export interface RetryOptions {
  /** Most attempts per request, the first included (default 3; nginx proxy_next_upstream_tries). */
  tries: number;
  /** No new attempt after this long since the first (default 10 000; nginx proxy_next_upstream_timeout). */
  totalMs: number;
  /** Response statuses that make a request of `methods` try the next server (default 502, 503, 504). */
  onStatus: number[];
  /** Retry requests of `methods` after a first-byte timeout or a reset (default true). */
  onTimeout: boolean;
  /**
   * Methods that may be sent twice: replayed to the next server once the
   * request went out, and hedged (default the safe methods GET, HEAD,
   * OPTIONS, TRACE). PUT and DELETE are idempotent by RFC, but a slow DELETE
   * hedged to a second backend runs twice on a backend that is not; add them
   * where the backends honour it (nginx retries them by default; Envoy's
   * `retry_on` leaves the choice to the route).
   */
  methods: readonly string[];
  /**
   * Retry budget (Envoy's `retry_budget`): retries in flight to an upstream group
   * may be at most this percentage of its requests in flight (default 20)...
   */
  budgetPercent: number;
  /** ...or this many, whichever is more (default 3). Failed connects are not counted: nothing reached the server. */
  budgetMinConcurrency: number;
}

/** RFC 9110 section 9.2.1: the methods a client expects to have no effect on the server. */
export const SAFE_METHODS: readonly string[] = Object.freeze(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

export const DEFAULT_RETRIES: RetryOptions = {
  tries: 3,
  totalMs: 10_000,
  onStatus: [502, 503, 504],
  onTimeout: true,
  methods: SAFE_METHODS,
  budgetPercent: 20,
  budgetMinConcurrency: 3,
};
