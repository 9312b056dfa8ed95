import { NetError, formatHostPort, resolveDestination, type CidrList, type Conn, type Resolver } from '@wmproxy/core-net';

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
 * Check a target against the policy: `allow` on the target as the client
 * sent it, then core-net's `resolveDestination` (port 0 refused, the deny
 * list on every resolved address, IPv6 forms of IPv4 addresses and the
 * unspecified address included). Returns the resolved, permitted addresses
 * when resolution was needed (a deny list is set, or `resolve` asks for it),
 * otherwise undefined. Throws NetError EFORBIDDEN for a refused target and
 * ENOTFOUND for a name that does not resolve.
 */
export async function vetDestination(policy: DestinationPolicy, host: string, port: number, resolve: boolean): Promise<string[] | undefined> {
  if (policy.allow && !policy.allow(host, port)) {
    const label = formatHostPort(host, port);
    throw new NetError('EFORBIDDEN', `destination ${label} is not allowed`, { address: label });
  }
  return resolveDestination(host, port, policy.deny, policy.resolver, resolve);
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
