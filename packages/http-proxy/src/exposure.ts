import { isLoopback, type Address } from '@wmproxy/core-net';

export interface ExposureOptions {
  users?: Record<string, string>;
  allow?: readonly string[];
  /** Clients must present a certificate from a CA the operator chose (mutual TLS): that is authentication too. */
  clientCertificates?: boolean;
  /** The operator accepts an open proxy on a public address. */
  insecureOpen?: boolean;
}

/** The first address other hosts can reach (a wildcard or a non-loopback IP or name), if any. */
export function exposedAddress(addresses: readonly Address[]): Address | undefined {
  return addresses.find((address) => address.wildcard || !isLoopback(address.host));
}

/**
 * An open proxy on a reachable address is abused within hours, so a
 * non-loopback listener needs credentials or a client allow-list unless the
 * operator says otherwise. Returns why the set-up is refused, or undefined.
 */
export function openProxyRefusal(addresses: readonly Address[], options: ExposureOptions): string | undefined {
  if (options.insecureOpen) return undefined;
  const guarded = (options.users !== undefined && Object.keys(options.users).length > 0) || (options.allow?.length ?? 0) > 0 || options.clientCertificates === true;
  if (guarded) return undefined;
  const exposed = exposedAddress(addresses);
  if (!exposed) return undefined;
  const where = exposed.wildcard ? `:${exposed.port} (every address)` : `${exposed.host}:${exposed.port}`;
  return `refusing to run an open proxy on ${where}: add --user/--pass, --allow CIDR or --client-ca FILE, or pass --insecure-open`;
}
