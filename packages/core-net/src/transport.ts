import { connect, type Resolver } from './connect.js';
import type { Conn } from './types.js';

/**
 * Where a transport opens a byte stream to. IP transports use `host:port`;
 * others address something else by `key` (a tunnel mapping, an HTTP/2
 * connection's authority) and may ignore the rest.
 */
export interface TransportTarget {
  readonly host: string;
  readonly port: number;
  /** TLS transports: the name sent as SNI and verified (default the host). */
  readonly servername?: string;
  /** TLS transports: verify the peer certificate (default true). */
  readonly tlsVerify?: boolean;
  readonly key?: string;
}

/**
 * How a byte stream to an upstream is obtained: the one contract between
 * the proxies' policy layers (pools, hedging, health, balancing) and the
 * ways of reaching a server (TCP, TLS, a tunnel stream, an HTTP/2 stream).
 * Like undici's `dispatch`, it is one method; everything above it holds a
 * `Conn` and does not know which transport produced it.
 */
export interface Transport {
  /** A short name for logs and metrics: `tcp`, `tls`, `tunnel`... */
  readonly kind: string;
  /** Open a stream. Rejects with a `NetError` (ECONNREFUSED, ETIMEDOUT, EABORTED...); a transport with nothing to reach (no tunnel client serving a mapping) rejects with ECONNREFUSED, at once. */
  connect(target: TransportTarget, timeoutMs: number, signal?: AbortSignal): Promise<Conn>;
}

export interface SocketTransportOptions {
  tls: boolean;
  /** How names are resolved (default the system resolver); a TTL cache plugs in here. */
  resolver?: Resolver;
  /** Extra CA certificates for TLS (PEM). */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
}

class SocketTransport implements Transport {
  readonly kind: string;
  constructor(private readonly options: SocketTransportOptions) {
    this.kind = options.tls ? 'tls' : 'tcp';
  }

  connect(target: TransportTarget, timeoutMs: number, signal?: AbortSignal): Promise<Conn> {
    const { tls, resolver, ca } = this.options;
    return connect({
      host: target.host,
      port: target.port,
      timeoutMs,
      signal,
      resolver,
      tls: tls ? { servername: target.servername, rejectUnauthorized: target.tlsVerify ?? true, ca } : undefined,
    });
  }
}

/** TCP or TLS over core-net's `connect` (every address of a name tried in turn). */
export function socketTransport(options: SocketTransportOptions): Transport {
  return new SocketTransport(options);
}

export const tcpTransport: Transport = socketTransport({ tls: false });
export const tlsTransport: Transport = socketTransport({ tls: true });

/** The transports a proxy knows by scheme name; `tcp` and `tls` are always there. */
export type TransportMap = Readonly<Record<string, Transport>>;

export function transportMap(extra: TransportMap = {}, resolver?: Resolver): TransportMap {
  const base = resolver ? { tcp: socketTransport({ tls: false, resolver }), tls: socketTransport({ tls: true, resolver }) } : { tcp: tcpTransport, tls: tlsTransport };
  return { ...base, ...extra };
}
