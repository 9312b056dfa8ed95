import { socks5Connect } from '@wmproxy/socks5';
import {
  HeadBuffer,
  NetError,
  connect,
  formatHostPort,
  releaseConn,
  parseResponseHead,
  serializeRequestHead,
  toNetError,
  type Conn,
  type ConnHandler,
  type HeaderList,
  type Resolver,
  type TlsClientOptions,
  type Transport,
  type TransportTarget,
} from '@wmproxy/core-net';
import { basicCredentials } from '@wmproxy/core-net';
import { parseAuthority } from './target.js';

/**
 * Opens a TCP connection to a target for CONNECT tunnels and plain requests.
 * `addresses`, when given, are IPs already resolved and checked against the
 * destination policy: connect to them rather than resolving `host` again.
 * (Same shape as `@wmproxy/socks5`'s Connector, so one can serve both.)
 */
export type Connector = (host: string, port: number, timeoutMs: number, addresses?: readonly string[]) => Promise<Conn>;

/** A parent proxy to chain through. */
export interface ParentProxy {
  kind: 'http' | 'socks5';
  host: string;
  port: number;
  username?: string;
  password?: string;
  /** `Basic ...` for an HTTP parent with credentials. */
  authorization?: string;
  /** The parent is reached over TLS (`https://`, `socks5+tls://`): how its certificate is verified and which one we present. */
  tls?: TlsClientOptions;
}

/** How a TLS parent is trusted and what we show it (`--upstream-ca`, `--upstream-cert`, `--upstream-key`). */
export interface ParentTlsOptions {
  /** CA certificates (PEM) the parent's certificate must chain to [the system's trusted CAs]. */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** Client certificate and key (PEM) for a parent that asks for one (mutual TLS) [none]. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Name sent as SNI and verified in the parent's certificate [the URL's host]. */
  servername?: string;
  /** Verify the parent's certificate [true]. Turning it off lets anyone on the path read the traffic. */
  verify?: boolean;
}

const PARENT_SCHEMES: Readonly<Record<string, { kind: ParentProxy['kind']; tls: boolean; port: number }>> = {
  http: { kind: 'http', tls: false, port: 8080 },
  https: { kind: 'http', tls: true, port: 443 },
  socks5: { kind: 'socks5', tls: false, port: 1080 },
  socks5h: { kind: 'socks5', tls: false, port: 1080 },
  'socks5+tls': { kind: 'socks5', tls: true, port: 1080 },
};

export class ParentProxyError extends Error {
  override name = 'ParentProxyError';
}

/**
 * Parse `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port`
 * (`socks5h` is accepted as a synonym), or their TLS forms `https://` and
 * `socks5+tls://`, which `tls` configures. TLS options with a plain-text
 * parent are refused: they would silently protect nothing.
 */
export function parseParentProxy(url: string, tls?: ParentTlsOptions): ParentProxy {
  const match = /^([a-z0-9+]+):\/\/(?:([^@/]*)@)?([^/@]+)\/?$/i.exec(url.trim());
  if (!match) throw new ParentProxyError(`invalid upstream proxy URL "${url}": expected http(s)://[user:pass@]host:port or socks5(+tls)://[user:pass@]host:port`);
  const scheme = PARENT_SCHEMES[match[1]!.toLowerCase()];
  if (!scheme) throw new ParentProxyError(`invalid upstream proxy URL "${url}": scheme must be http, https, socks5 or socks5+tls`);
  const kind = scheme.kind;
  const address = parseAuthority(match[3]!, scheme.port);
  if (!address) throw new ParentProxyError(`invalid upstream proxy URL "${url}": bad host or port`);
  const parent: ParentProxy = { kind, host: address.host, port: address.port };
  if (scheme.tls) parent.tls = parentTls(tls);
  else if (tls && (tls.ca !== undefined || tls.cert !== undefined || tls.key !== undefined || tls.servername !== undefined)) {
    throw new ParentProxyError(`upstream TLS options (CA, client certificate, server name) need an https:// or socks5+tls:// upstream, not "${match[1]}://"`);
  }
  if (match[2] !== undefined) {
    const colon = match[2].indexOf(':');
    const decode = (text: string): string => {
      try {
        return decodeURIComponent(text);
      } catch {
        throw new ParentProxyError(`invalid upstream proxy URL "${url}": bad percent-encoding in credentials`);
      }
    };
    parent.username = decode(colon < 0 ? match[2] : match[2].slice(0, colon));
    parent.password = colon < 0 ? '' : decode(match[2].slice(colon + 1));
    if (kind === 'http') parent.authorization = basicCredentials(parent.username, parent.password);
  }
  return parent;
}

function parentTls(options: ParentTlsOptions = {}): TlsClientOptions {
  if ((options.cert === undefined) !== (options.key === undefined)) throw new ParentProxyError('an upstream client certificate needs both its certificate and its key');
  const tls: TlsClientOptions = { rejectUnauthorized: options.verify ?? true };
  if (options.ca !== undefined) tls.ca = options.ca;
  if (options.cert !== undefined) tls.cert = options.cert;
  if (options.key !== undefined) tls.key = options.key;
  if (options.servername !== undefined) tls.servername = options.servername;
  return tls;
}

/**
 * Open the connection to the parent itself (TLS when it is a TLS parent).
 * Errors name the parent: a refused certificate reads `parent proxy
 * 127.0.0.1:8443: TLS verification of ... failed: ...` (EPROTO: a 502).
 */
export async function connectParent(parent: ParentProxy, timeoutMs: number, resolver?: Resolver): Promise<Conn> {
  try {
    return await connect({ host: parent.host, port: parent.port, timeoutMs, resolver, tls: parent.tls });
  } catch (error) {
    const netError = toNetError(error);
    const label = formatHostPort(parent.host, parent.port);
    throw new NetError(netError.code, `parent proxy ${label}: ${netError.message}`, { address: label, cause: error });
  }
}

/** Connect directly, through core-net `connect` (every address tried, one deadline). */
export function directConnector(resolver?: Resolver): Connector {
  return (host, port, timeoutMs, addresses) => connect({ host, port, timeoutMs, resolver, addresses });
}

/** Reach targets through a parent proxy: CONNECT for an HTTP parent, a SOCKS5 CONNECT for a SOCKS5 parent. */
export function parentConnector(parent: ParentProxy, resolver?: Resolver): Connector {
  if (parent.kind === 'http') return (host, port, timeoutMs) => httpTunnel(parent, host, port, timeoutMs, resolver);
  return (host, port, timeoutMs) => socks5Tunnel(parent, host, port, timeoutMs);
}

/**
 * A parent proxy as a core-net `Transport`: each stream is a tunnel through
 * the parent (CONNECT, or a SOCKS5 CONNECT; inside TLS for `https://` and
 * `socks5+tls://` parents) to the target's `host:port`. A reverse proxy given
 * `transports: { parent: parentTransport(parent) }` reaches servers named
 * `parent://host:port` through it.
 */
export function parentTransport(parent: ParentProxy, resolver?: Resolver): Transport {
  return new ParentTransport(parent, parentConnector(parent, resolver));
}

class ParentTransport implements Transport {
  readonly kind: string;
  constructor(
    parent: ParentProxy,
    private readonly connector: Connector,
  ) {
    this.kind = `${parent.kind}${parent.tls ? '+tls' : ''}-parent`;
  }

  connect(target: TransportTarget, timeoutMs: number, signal?: AbortSignal): Promise<Conn> {
    if (signal?.aborted) return Promise.reject(new NetError('EABORTED', `connect to ${formatHostPort(target.host, target.port)} aborted`));
    return withTimeout(this.connector(target.host, target.port, timeoutMs), timeoutMs, formatHostPort(target.host, target.port));
  }
}

function socks5Tunnel(parent: ParentProxy, host: string, port: number, timeoutMs: number): Promise<Conn> {
  const proxy: { host: string; port: number; username?: string; password?: string } = { host: parent.host, port: parent.port };
  if (parent.username !== undefined) {
    proxy.username = parent.username;
    proxy.password = parent.password ?? '';
  }
  return socks5Connect({ proxy, host, port, timeoutMs, tls: parent.tls });
}

/** Per-attempt state of a CONNECT handshake with an HTTP parent. */
interface TunnelAttempt {
  buffer: HeadBuffer;
  label: string;
  settled: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  resolve(conn: Conn): void;
  reject(error: Error): void;
}

const tunnelHandler: ConnHandler = {
  data(conn, chunk) {
    const attempt = conn.userData as TunnelAttempt;
    const view = attempt.buffer.feed(chunk);
    const result = parseResponseHead(view, { requestMethod: 'CONNECT' });
    if (result.kind === 'incomplete') {
      attempt.buffer.keep(view);
      return;
    }
    attempt.buffer.clear();
    if (result.kind === 'error') {
      failTunnel(conn, attempt, new NetError('EPROTO', `parent proxy sent a bad response: ${result.reason}`, { address: attempt.label }));
      return;
    }
    const status = result.head.status;
    if (status < 200 || status > 299) {
      failTunnel(conn, attempt, new NetError(status === 407 ? 'EPROTO' : 'ECONNREFUSED', `parent proxy answered ${status} to CONNECT ${attempt.label}`, { address: attempt.label }));
      return;
    }
    attempt.settled = true;
    clearTimeout(attempt.timer);
    // Bytes the target sent right after the 200 (an SSH banner) stay queued for the next owner.
    conn.userData = undefined;
    releaseConn(conn, view.subarray(result.consumed));
    attempt.resolve(conn);
  },
  end(conn) {
    // The parent hung up before answering: finish closing; `close` reports it (with the error, if one came first).
    conn.end();
  },
  close(conn, error) {
    const attempt = conn.userData as TunnelAttempt | undefined;
    if (attempt && !attempt.settled) failTunnel(conn, attempt, toNetError(error ?? new NetError('ECONNRESET', 'parent proxy closed the connection'), attempt.label));
  },
};

function failTunnel(conn: Conn, attempt: TunnelAttempt, error: Error): void {
  if (attempt.settled) return;
  attempt.settled = true;
  clearTimeout(attempt.timer);
  conn.destroy();
  attempt.reject(error);
}

function onTunnelTimeout(conn: Conn): void {
  const attempt = conn.userData as TunnelAttempt;
  failTunnel(conn, attempt, new NetError('ETIMEDOUT', `parent proxy did not answer CONNECT ${attempt.label} in time`, { address: attempt.label }));
}

/** Open a tunnel to `host:port` through an HTTP parent proxy with CONNECT. */
export async function httpTunnel(parent: ParentProxy, host: string, port: number, timeoutMs: number, resolver?: Resolver): Promise<Conn> {
  const started = Date.now();
  const conn = await connectParent(parent, timeoutMs, resolver);
  const label = formatHostPort(host, port);
  const headers: HeaderList = [['Host', label]];
  if (parent.authorization) headers.push(['Proxy-Authorization', parent.authorization]);
  return new Promise<Conn>((resolve, reject) => {
    const attempt: TunnelAttempt = { buffer: new HeadBuffer(), label, settled: false, timer: undefined, resolve, reject };
    attempt.timer = setTimeout(onTunnelTimeout, Math.max(1, timeoutMs - (Date.now() - started)), conn);
    conn.userData = attempt;
    conn.setHandler(tunnelHandler);
    conn.write(serializeRequestHead('CONNECT', label, headers));
  });
}

/**
 * Settle with `promise`, or fail with ETIMEDOUT after `ms`; a connection
 * that arrives after the deadline is closed.
 */
export function withTimeout(promise: Promise<Conn>, ms: number, label: string): Promise<Conn> {
  return new Promise<Conn>((resolve, reject) => {
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      reject(new NetError('ETIMEDOUT', `connect to ${label} timed out after ${ms} ms`, { address: label }));
    }, ms);
    promise.then(
      (conn) => {
        clearTimeout(timer);
        if (expired) conn.destroy();
        else resolve(conn);
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (!expired) reject(toNetError(error, label));
      },
    );
  });
}
