import { isIP } from 'node:net';
import { NetError, formatHostPort, isValidHostname, normaliseIp, type CidrList, type Conn, type Resolver } from '@wmproxy/core-net';

/**
 * Opens the upstream connection for a CONNECT. `addresses`, when given, are
 * the IPs the server already resolved and checked against its destination
 * policy: connect to one of them rather than resolving `host` again (so a
 * name cannot resolve to a permitted address for the check and a denied one
 * for the connect).
 */
export type Connector = (host: string, port: number, timeoutMs: number, addresses?: readonly string[]) => Promise<Conn>;

export interface DestinationPolicy {
  allow: ((host: string, port: number) => boolean) | undefined;
  deny: CidrList | undefined;
  resolver: Resolver;
}

/**
 * Check a target against the policy. Returns the resolved, permitted
 * addresses of a name when resolution was needed (a deny list is set, or
 * `resolve` asks for it), otherwise undefined. Throws NetError EFORBIDDEN for
 * a refused target and ENOTFOUND for a name that does not resolve.
 */
export async function vetDestination(
  policy: DestinationPolicy,
  host: string,
  port: number,
  resolve: boolean,
): Promise<string[] | undefined> {
  const label = formatHostPort(host, port);
  if (policy.allow && !policy.allow(host, port)) {
    throw new NetError('EFORBIDDEN', `destination ${label} is not allowed`, { address: label });
  }
  const deny = policy.deny && policy.deny.size > 0 ? policy.deny : undefined;
  if (isIP(host) !== 0) {
    if (deny?.contains(host)) throw new NetError('EFORBIDDEN', `destination ${label} is denied`, { address: label });
    return resolve ? [normaliseIp(host)] : undefined;
  }
  if (!isValidHostname(host)) throw new NetError('ENOTFOUND', `"${host}" is not a valid host name`, { address: label });
  if (!deny && !resolve) return undefined;
  const ips = await policy.resolver(host);
  if (ips.length === 0) throw new NetError('ENOTFOUND', `no address for ${host}`, { address: label });
  for (const ip of ips) {
    if (deny?.contains(ip)) {
      throw new NetError('EFORBIDDEN', `destination ${label} resolves to ${ip}, which is denied`, { address: label });
    }
  }
  return ips;
}

/**
 * Settle with `promise`, or fail with ETIMEDOUT after `ms`. A connection that
 * arrives after the deadline is closed, so nothing leaks.
 */
export function withConnectTimeout(promise: Promise<Conn>, ms: number, label: string): Promise<Conn> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expired = false;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true;
      reject(new NetError('ETIMEDOUT', `connect to ${label} timed out after ${ms} ms`, { address: label }));
    }, ms);
  });
  promise.then(
    (conn) => {
      if (expired) conn.destroy();
    },
    () => undefined,
  );
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
