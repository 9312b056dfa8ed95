/**
 * Service discovery: where an upstream group's servers come from when they
 * are not written in the configuration (nginx Plus `server ... service=`
 * with `resolve`, HAProxy `server-template` over SRV, Envoy's EDS).
 *
 * A source follows one target and hands over the complete list of servers
 * each time it changes. The proxy applies a list to the group in place
 * (`Upstream.replaceServers`): servers that stay keep their pools, new ones
 * join under slow start and the group's health checks, and servers that
 * leave finish the requests they have in flight.
 *
 * `srv` is built in: SRV records through the proxy's DNS cache, re-resolved
 * when they expire. Others (`etcd`, in `@wmproxy/cluster`) are given in
 * `ReverseProxyOptions.discovery`.
 */
import { formatHostPort, type Logger } from '@wmproxy/core-net';
import type { DnsCache, SrvTarget } from './dns.js';

/** A server as a source found it. */
export interface DiscoveredServer {
  /** `host:port`. */
  address: string;
  /** Relative share (default: the group's server template, else 1). */
  weight?: number;
  /** Used only when no primary is available (SRV records of a higher priority). */
  backup?: boolean;
}

export interface DiscoveryWatch {
  close(): void;
}

export interface DiscoverySource {
  /**
   * Follow `target`: `update` gets the complete list each time it changes,
   * the first as soon as it is known. A source that cannot reach its
   * backend keeps quiet (the last list stays in use) and retries.
   */
  watch(target: string, update: (servers: DiscoveredServer[]) => void, logger: Logger): DiscoveryWatch;
}

export type DiscoveryMap = Record<string, DiscoverySource>;

/**
 * SRV records as servers (RFC 2782): the lowest priority present is the
 * primaries, higher ones are backups; weight 0 counts as 1 (weights here
 * are positive).
 */
export function srvServers(records: readonly SrvTarget[]): DiscoveredServer[] {
  if (records.length === 0) return [];
  let lowest = Infinity;
  for (const record of records) lowest = Math.min(lowest, record.priority);
  return records
    .map((record) => ({ address: formatHostPort(record.name, record.port), weight: Math.max(1, record.weight), backup: record.priority !== lowest }))
    .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

/** The built-in `srv` source over a DNS cache (which it tells about changes: it takes the cache's `onSrvChange`). */
export function srvDiscovery(dns: DnsCache): DiscoverySource {
  const followers = new Map<string, Set<(servers: DiscoveredServer[]) => void>>();
  dns.onSrvChange = (name, records) => {
    const servers = srvServers(records);
    for (const update of followers.get(name) ?? []) update(servers);
  };
  return {
    watch(name, update, logger) {
      let closed = false;
      let retry: ReturnType<typeof setTimeout> | undefined;
      const set = followers.get(name) ?? new Set();
      followers.set(name, set);
      set.add(update);
      // The first answer; until there is one, retry (a failed first resolution is not cached, so the sweep would not).
      const first = (): void => {
        dns.srv(name).then(
          (records) => {
            if (!closed) update(srvServers(records));
          },
          (error: Error) => {
            if (closed) return;
            logger.warn('SRV discovery: no answer yet; retrying', { name, error: error.message });
            retry = setTimeout(first, Math.max(dns.minTtlMs, 100));
            retry.unref?.();
          },
        );
      };
      first();
      return {
        close() {
          closed = true;
          clearTimeout(retry);
          set.delete(update);
          if (set.size === 0) {
            followers.delete(name);
            dns.forgetSrv(name);
          }
        },
      };
    },
  };
}
