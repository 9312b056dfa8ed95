import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { formatHostPort, isValidHostname } from './address.js';
import { normaliseIp, parseIp, type CidrList } from './cidr.js';
import type { Resolver } from './connect.js';
import { NetError } from './errors.js';

/**
 * Destinations a proxy reachable from other hosts refuses unless told
 * otherwise: everything scoped to this host or its link, which a remote
 * client could not reach without the proxy. Private ranges (10/8, fc00::/7,
 * ...) stay allowed: reaching them is what many forward proxies are for.
 * docs/security.md gives the reasoning range by range.
 */
export const DEFAULT_DENY_DESTINATIONS: readonly string[] = Object.freeze([
  // This host. 0.0.0.0 and :: are dialled as loopback by the kernel.
  '0.0.0.0/8',
  '127.0.0.0/8',
  '::/128',
  '::1/128',
  // This link: link-local (cloud metadata at 169.254.169.254), multicast, limited broadcast.
  '169.254.0.0/16',
  'fe80::/10',
  '224.0.0.0/4',
  'ff00::/8',
  '255.255.255.255/32',
  // Cloud metadata services outside link-local: AWS over IPv6, Alibaba Cloud.
  'fd00:ec2::254/128',
  '100.100.100.200/32',
]);

/** Ports CONNECT may reach on a proxy reachable from other hosts, unless told otherwise: HTTPS and its usual alternate. */
export const DEFAULT_CONNECT_PORTS: readonly number[] = Object.freeze([443, 8443]);

const MASK32 = 0xffff_ffffn;
const LOOPBACK_V4 = 0x7f00_0001n;
const LOOPBACK_V6 = 1n;
/** The top 96 bits of 64:ff9b::/96, NAT64's well-known prefix (RFC 6052). */
const NAT64_PREFIX = 0x0064_ff9b_0000_0000_0000_0000n;
/** The top 96 bits of ::ffff:0:0:0/96, SIIT's IPv4-translated addresses (RFC 2765). */
const TRANSLATED_PREFIX = 0xffff_0000n;
/** The top 16 bits of 2002::/16, 6to4 (RFC 3056): the IPv4 address follows in the next 32. */
const SIX_TO_FOUR = 0x2002n;

/**
 * The IPv4 address an IPv6 address leads to, for the forms that embed one
 * at a fixed place: IPv4-compatible `::a.b.c.d` (which includes `::` and
 * `::1`), IPv4-translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and
 * 6to4 `2002:AABB:CCDD::/48`. (IPv4-mapped `::ffff:a.b.c.d` is read as IPv4
 * by `parseIp` already.) Teredo and NAT64 local-use prefixes are not decoded.
 */
export function embeddedIpv4(value: bigint): bigint | undefined {
  const high = value >> 32n;
  if (high === 0n || high === TRANSLATED_PREFIX || high === NAT64_PREFIX) return value & MASK32;
  if (value >> 112n === SIX_TO_FOUR) return (value >> 80n) & MASK32;
  return undefined;
}

/**
 * Whether a deny list refuses the IP `ip` (a literal, as a resolver returns
 * it). The address is matched as written, then as every address it stands
 * for: the IPv4 address an IPv6 form embeds, and loopback for the
 * unspecified address (connecting to 0.0.0.0 or :: reaches this host). So an
 * IPv4 rule covers every IPv6 spelling of its addresses. A string that is
 * not an IP literal is refused: nothing vouches for where it would go.
 */
export function isDeniedDestination(deny: CidrList, ip: string): boolean {
  const parsed = parseIp(ip);
  if (parsed === undefined) return true;
  let value = parsed.value;
  if (parsed.v6) {
    if (deny.matches(true, value)) return true;
    if (value === 0n && deny.matches(true, LOOPBACK_V6)) return true;
    const v4 = embeddedIpv4(value);
    if (v4 === undefined) return false;
    value = v4;
  }
  if (deny.matches(false, value)) return true;
  return value === 0n && deny.matches(false, LOOPBACK_V4);
}

/**
 * Ports of this process's own local endpoints (the control API) that no
 * proxy client may reach on any address of this host, whatever the deny
 * list says: a forward proxy on loopback has an empty deny list, and would
 * otherwise be a path from a proxy client to the control API. Counted, so
 * that two owners of one port release it independently.
 */
const protectedPorts = new Map<number, number>();

/** Refuse `port` on every address of this host as a proxy destination, until the returned function is called. */
export function protectLocalPort(port: number): () => void {
  protectedPorts.set(port, (protectedPorts.get(port) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const left = (protectedPorts.get(port) ?? 1) - 1;
    if (left > 0) protectedPorts.set(port, left);
    else protectedPorts.delete(port);
  };
}

const INTERFACE_REFRESH_MS = 10_000;
let interfaceAddresses: Set<string> | undefined;
let interfacesReadAt = 0;

/** Loopback, unspecified, or one of this host's interface addresses (in any IPv6 spelling of an IPv4 address). */
function isThisHost(ip: string): boolean {
  const parsed = parseIp(ip);
  if (parsed === undefined) return true;
  let value = parsed.value;
  let v6 = parsed.v6;
  if (v6) {
    if (value === 0n || value === LOOPBACK_V6) return true;
    const v4 = embeddedIpv4(value);
    if (v4 !== undefined) {
      value = v4;
      v6 = false;
    }
  }
  if (!v6 && (value === 0n || value >> 24n === 0x7fn)) return true;
  const now = Date.now();
  if (interfaceAddresses === undefined || now - interfacesReadAt > INTERFACE_REFRESH_MS) {
    interfaceAddresses = new Set();
    for (const list of Object.values(networkInterfaces())) {
      for (const entry of list ?? []) {
        const own = parseIp(entry.address.split('%')[0]!);
        if (own) interfaceAddresses.add(`${own.v6 ? 6 : 4}/${own.value}`);
      }
    }
    interfacesReadAt = now;
  }
  return interfaceAddresses.has(`${v6 ? 6 : 4}/${value}`);
}

/** A protected local port (see `protectLocalPort`) is refused on every address of this host. */
async function refuseProtected(host: string, port: number, resolver: Resolver): Promise<string[]> {
  const label = formatHostPort(host, port);
  let ips: string[];
  if (isIP(host) !== 0) ips = [normaliseIp(host)];
  else {
    if (!isValidHostname(host)) throw new NetError('ENOTFOUND', `"${host}" is not a valid host name`, { address: label });
    ips = await resolver(host);
    if (ips.length === 0) throw new NetError('ENOTFOUND', `no address for ${host}`, { address: label });
  }
  for (const ip of ips) {
    if (isThisHost(ip)) throw new NetError('EFORBIDDEN', `destination ${label} is this instance's control port`, { address: label });
  }
  return ips;
}

/**
 * Vet `host:port` against a deny list and say where to connect. A name is
 * resolved and every address it resolves to must pass (one denied address
 * refuses the name); the caller then dials exactly the returned addresses,
 * so a name cannot resolve to a permitted address for the check and a denied
 * one for the connect. IP literals are checked as written (they are dialled
 * as written). Returns undefined when there is nothing to check and `resolve`
 * is false (the caller's connector resolves). Port 0 is never a destination.
 * Throws NetError EFORBIDDEN for a refused target, ENOTFOUND for a name that
 * is malformed or does not resolve. A protected local port (the control
 * API's, see `protectLocalPort`) is refused on every address of this host.
 */
export async function resolveDestination(
  host: string,
  port: number,
  deny: CidrList | undefined,
  resolver: Resolver,
  resolve = false,
): Promise<string[] | undefined> {
  if (port < 1 || port > 65535 || !Number.isInteger(port)) {
    const label = formatHostPort(host, port);
    throw new NetError('EFORBIDDEN', `destination ${label}: port ${port} is not a destination port`, { address: label });
  }
  const checked = deny !== undefined && deny.size > 0 ? deny : undefined;
  if (protectedPorts.size > 0 && protectedPorts.has(port)) {
    const ips = await refuseProtected(host, port, resolver);
    if (checked) for (const ip of ips) if (isDeniedDestination(checked, ip)) throw new NetError('EFORBIDDEN', `destination ${formatHostPort(host, port)} is denied`, { address: formatHostPort(host, port) });
    return ips;
  }
  if (isIP(host) !== 0) {
    if (checked && isDeniedDestination(checked, host)) {
      const label = formatHostPort(host, port);
      throw new NetError('EFORBIDDEN', `destination ${label} is denied`, { address: label });
    }
    return checked || resolve ? [normaliseIp(host)] : undefined;
  }
  if (!isValidHostname(host)) {
    const label = formatHostPort(host, port);
    throw new NetError('ENOTFOUND', `"${host}" is not a valid host name`, { address: label });
  }
  if (!checked && !resolve) return undefined;
  const ips = await resolver(host);
  if (ips.length === 0) {
    const label = formatHostPort(host, port);
    throw new NetError('ENOTFOUND', `no address for ${host}`, { address: label });
  }
  if (checked) {
    for (const ip of ips) {
      if (isDeniedDestination(checked, ip)) {
        const label = formatHostPort(host, port);
        throw new NetError('EFORBIDDEN', `destination ${label} resolves to ${ip}, which is denied`, { address: label });
      }
    }
  }
  return ips;
}
