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
} from '@wmproxy/core-net';
import { basicCredentials } from './auth.js';
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
}

export class ParentProxyError extends Error {
  override name = 'ParentProxyError';
}

/** Parse `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port` (`socks5h` is accepted as a synonym). */
export function parseParentProxy(url: string): ParentProxy {
  const match = /^([a-z0-9]+):\/\/(?:([^@/]*)@)?([^/@]+)\/?$/i.exec(url.trim());
  if (!match) throw new ParentProxyError(`invalid upstream proxy URL "${url}": expected http://[user:pass@]host:port or socks5://[user:pass@]host:port`);
  const scheme = match[1]!.toLowerCase();
  const kind = scheme === 'http' ? 'http' : scheme === 'socks5' || scheme === 'socks5h' ? 'socks5' : undefined;
  if (!kind) throw new ParentProxyError(`invalid upstream proxy URL "${url}": scheme must be http or socks5`);
  const address = parseAuthority(match[3]!, kind === 'http' ? 8080 : 1080);
  if (!address) throw new ParentProxyError(`invalid upstream proxy URL "${url}": bad host or port`);
  const parent: ParentProxy = { kind, host: address.host, port: address.port };
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

/** Connect directly, through core-net `connect` (every address tried, one deadline). */
export function directConnector(resolver?: Resolver): Connector {
  return (host, port, timeoutMs, addresses) => connect({ host, port, timeoutMs, resolver, addresses });
}

/** Reach targets through a parent proxy: CONNECT for an HTTP parent, a SOCKS5 CONNECT for a SOCKS5 parent. */
export function parentConnector(parent: ParentProxy, resolver?: Resolver): Connector {
  if (parent.kind === 'http') return (host, port, timeoutMs) => httpTunnel(parent, host, port, timeoutMs, resolver);
  return (host, port, timeoutMs) => socks5Tunnel(parent, host, port, timeoutMs);
}

function socks5Tunnel(parent: ParentProxy, host: string, port: number, timeoutMs: number): Promise<Conn> {
  const proxy: { host: string; port: number; username?: string; password?: string } = { host: parent.host, port: parent.port };
  if (parent.username !== undefined) {
    proxy.username = parent.username;
    proxy.password = parent.password ?? '';
  }
  return socks5Connect({ proxy, host, port, timeoutMs });
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
  const conn = await connect({ host: parent.host, port: parent.port, timeoutMs, resolver });
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
