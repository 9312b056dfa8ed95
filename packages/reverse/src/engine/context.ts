import { HeadMemo, type HeadLimits, type Http2Options, type Logger, type Ticker } from '@wmproxy/core-net';
import type { AccessLog } from '../access-log.js';
import type { Forwarding } from '../headers.js';
import type { Router } from '../router.js';
import type { Upstream, UpstreamServer } from '../upstream.js';
import type { Connector } from './connector.js';
import type { SharedCounters } from '../cluster-limit.js';
import type { Tracer } from '../trace.js';
import type { RetryOptions, TimeoutOptions } from './options.js';

/** What every client session of a proxy shares. */
export interface ProxyCore {
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly timeouts: TimeoutOptions;
  readonly retries: RetryOptions;
  /** Start a second connect after this long (0: no hedging). */
  readonly hedgeDelayMs: number;
  /** Send an idempotent bodiless request to a second server when no response byte came after this long (0: off). */
  readonly requestHedgeMs: number;
  /** Request hedges in flight, and the most allowed as a share of the client connections. */
  readonly hedges: { inFlight: number; budget: number };
  readonly headLimits: HeadLimits;
  readonly connector: Connector;
  /** The proxy's one timer facility: deadline sweep, pools' idle expiry, request and connect hedge delays. */
  readonly ticker: Ticker;
  /** Where `scope = "cluster"` rate limits count (undefined: none configured). */
  readonly sharedCounters: SharedCounters | undefined;
  readonly logger: Logger;
  readonly accessLog: AccessLog | undefined;
  /** While tracing is on (trace.ts); undefined: off, and the exchange does no tracing work. */
  readonly tracer: Tracer | undefined;
  /** Live sessions, for the timeout sweep. */
  readonly sessions: Set<LiveSession>;
  /** Shutting down: answer the current request and close. */
  readonly draining: boolean;
  reportFailure(upstream: Upstream, server: UpstreamServer, kind: 'connect' | 'timeout' | 'status5xx', reason: string): void;
  reportSuccess(upstream: Upstream, server: UpstreamServer, latencyMs: number): void;
}

/** A client connection (HTTP/1 session, HTTP/2 connection) or HTTP/2 stream the proxy's sweep and shutdown visit. */
export interface LiveSession {
  readonly ctx: ListenerContext;
  checkDeadline(now: number): void;
  /** Shutting down: close now when idle, else after what is in flight (HTTP/2: GOAWAY). */
  drainIfIdle(): void;
  crashed(error: unknown): void;
}

/** What the sessions of one listener share. */
export interface ListenerContext {
  readonly core: ProxyCore;
  readonly router: Router;
  readonly forwarding: Forwarding;
  readonly scheme: 'http' | 'https';
  readonly wire: ListenerWire;
  /** HTTP/2 on this listener: undefined (HTTP/1.1 only), or the session limits (h2 by ALPN over TLS; `h2c`: also by prior knowledge). */
  readonly http2: ListenerHttp2 | undefined;
}

export interface ListenerHttp2 {
  /** Accept cleartext HTTP/2 by prior knowledge (the client preface) beside HTTP/1.1. */
  readonly h2c: boolean;
  readonly options: Partial<Http2Options>;
}

/**
 * What the exchanges of one listener reuse from one request to the next,
 * kept per listener rather than per client connection so that an idle
 * connection holds none of it: the last heads composed (a keep-alive load
 * repeats them) and the last request line.
 */
export class ListenerWire {
  readonly requestMemo = new HeadMemo();
  readonly responseMemo = new HeadMemo();
  private lineMethod = '';
  private lineTarget = '';
  private line = '';

  /** `METHOD target HTTP/1.1\r\n`, reused while requests repeat it (the parser hands out the same strings). */
  requestLine(method: string, target: string): string {
    if (method !== this.lineMethod || target !== this.lineTarget) {
      this.lineMethod = method;
      this.lineTarget = target;
      this.line = `${method} ${target} HTTP/1.1\r\n`;
    }
    return this.line;
  }
}
