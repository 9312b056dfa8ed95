/**
 * Upstream DNS names, resolved once per TTL instead of on every new
 * connection (nginx's `resolver ... valid=` with `server ... resolve`,
 * HAProxy's `resolvers` with `hold valid`).
 *
 * Each name's addresses are cached for the record's TTL (when the resolver
 * reports one) or `ttlMs`, clamped to [`minTtlMs`, `maxTtlMs`]. Expired names
 * are re-resolved in the background by the proxy's sweep (so a warm
 * keep-alive pool still notices a change) or on the next connect. When a
 * re-resolution fails or returns nothing, the last good addresses stay in
 * use (stale-if-error) and it is tried again after `minTtlMs`. When the
 * addresses change, `onChange` is told (the proxy closes the idle pooled
 * connections of that name's servers, so new requests go to the new
 * addresses); pools and health stay keyed by the configured `name:port`.
 *
 * SRV record sets (`_http._tcp.app.internal`), for service discovery, are
 * cached the same way; node:dns does not report an SRV answer's TTL, so a
 * set is valid for `ttlMs` (clamped likewise) and re-resolved by the sweep.
 */
import { lookup, Resolver as DnsResolver } from 'node:dns/promises';
import { connect, NetError, silentLogger, type Logger, type Resolver } from '@wmproxy/core-net';
import type { Connector } from './engine/connector.js';
import { REVERSE_DEFAULTS } from './defaults.js';

/** What a resolver found: the addresses and, when known, how long they are valid. */
export interface Resolution {
  addresses: string[];
  ttlMs?: number;
}

/** Resolves a name; a plain list means "no TTL known" (`ttlMs` applies). */
export type TtlResolver = (host: string) => Promise<Resolution | string[]>;

export interface DnsOptions {
  /** How names are resolved (default: the system's resolver, getaddrinfo, which reports no TTL). */
  resolver?: TtlResolver;
  /** Use the records' TTLs: query DNS directly (A and AAAA) instead of getaddrinfo (default false). Ignored when `resolver` is given. */
  recordTtl?: boolean;
  /** Validity of addresses whose TTL is unknown (default 30 000 ms; nginx `resolver valid=`). */
  ttlMs?: number;
  /** Shortest validity, and the wait before retrying a failed re-resolution (default 1 000 ms). */
  minTtlMs?: number;
  /** Longest validity, whatever the record says (default 300 000 ms). */
  maxTtlMs?: number;
  /**
   * DNS servers to ask (`host:port`; default: the system's). Set, names are
   * resolved with their records' TTLs through them (as `recordTtl`), and so
   * are SRV records.
   */
  servers?: string[];
  /** How SRV record sets are resolved (default: node:dns through `servers`). */
  srvResolver?: SrvResolver;
}

/** getaddrinfo (hosts file, nsswitch), no TTL. */
const systemTtlResolver: TtlResolver = async (host) => {
  const records = await lookup(host, { all: true, verbatim: true });
  return records.map((record) => record.address);
};

/** A and AAAA records with their TTLs (node:dns), falling back to getaddrinfo for names DNS does not know (hosts file). */
export function recordTtlResolver(servers?: string[]): TtlResolver {
  const resolver = new DnsResolver();
  if (servers) resolver.setServers(servers);
  return async (host) => {
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(host, { ttl: true }), resolver.resolve6(host, { ttl: true })]);
    const records = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    if (records.length === 0) return systemTtlResolver(host);
    return { addresses: records.map((record) => record.address), ttlMs: Math.min(...records.map((record) => record.ttl)) * 1000 };
  };
}

/** One SRV record: where a service instance is, its priority (lower first) and weight. */
export interface SrvTarget {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

/** Resolves an SRV name; a plain list means "no TTL known" (`ttlMs` applies). */
export type SrvResolver = (name: string) => Promise<{ records: SrvTarget[]; ttlMs?: number } | SrvTarget[]>;

/** SRV records through node:dns (which reports no TTL for them). */
export function dnsSrvResolver(servers?: string[]): SrvResolver {
  const resolver = new DnsResolver();
  if (servers && servers.length > 0) resolver.setServers(servers);
  return async (name) => (await resolver.resolveSrv(name)).map((record) => ({ name: record.name.replace(/\.$/, ''), port: record.port, priority: record.priority, weight: record.weight }));
}

/** One cached answer: the last good value, until when it is valid, the re-resolution in flight. */
interface Entry<T> {
  value: T[];
  expiresAt: number;
  pending: Promise<T[]> | undefined;
}

/**
 * Answers kept per TTL, stale-if-error, refreshed in the background: what
 * the cache does for addresses and for SRV record sets alike.
 */
class TtlTable<T> {
  private readonly entries = new Map<string, Entry<T>>();

  constructor(
    private readonly cache: DnsCache,
    private readonly what: string,
    private readonly query: (key: string) => Promise<{ value: T[]; ttlMs?: number }>,
    private readonly same: (a: readonly T[], b: readonly T[]) => boolean,
    private readonly changed: (key: string, value: T[], previous: T[]) => void,
  ) {}

  get(key: string): Promise<T[]> {
    const entry = this.entries.get(key);
    // Fresh, or being re-resolved (the last answer serves meanwhile).
    if (entry && entry.value.length > 0 && (entry.pending || this.cache.now() < entry.expiresAt)) return Promise.resolve(entry.value);
    return this.refresh(key);
  }

  peek(key: string): T[] | undefined {
    const entry = this.entries.get(key);
    return entry && entry.value.length > 0 ? [...entry.value] : undefined;
  }

  refreshExpired(): void {
    const now = this.cache.now();
    for (const [key, entry] of this.entries) if (!entry.pending && now >= entry.expiresAt) void this.refresh(key).catch(() => undefined);
  }

  refreshNow(key: string): void {
    const entry = this.entries.get(key);
    if (entry && !entry.pending) void this.refresh(key).catch(() => undefined);
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  private refresh(key: string): Promise<T[]> {
    let entry = this.entries.get(key);
    if (entry?.pending) return entry.pending;
    if (!entry) {
      entry = { value: [], expiresAt: 0, pending: undefined };
      this.entries.set(key, entry);
    }
    const target = entry;
    const cache = this.cache;
    const pending = this.query(key).then(
      (answer) => {
        target.pending = undefined;
        const previous = target.value;
        target.value = answer.value;
        target.expiresAt = cache.now() + Math.min(cache.maxTtlMs, Math.max(cache.minTtlMs, answer.ttlMs ?? cache.ttlMs));
        if (previous.length > 0 && !this.same(previous, answer.value)) this.changed(key, answer.value, previous);
        return target.value;
      },
      (error: unknown) => {
        target.pending = undefined;
        target.expiresAt = cache.now() + cache.minTtlMs;
        const message = (error as Error).message ?? String(error);
        if (target.value.length > 0) {
          cache.logger.warn(`upstream ${this.what} re-resolution failed, keeping the last answer`, { name: key, error: message });
          return target.value;
        }
        this.entries.delete(key);
        throw error instanceof NetError ? error : new NetError('ENOTFOUND', `cannot resolve ${key}: ${message}`, { address: key, cause: error });
      },
    );
    target.pending = pending;
    return pending;
  }
}

export class DnsCache {
  readonly ttlMs: number;
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  /** Told when a name's addresses changed (not on the first resolution). */
  onChange: ((host: string, addresses: string[], previous: string[]) => void) | undefined;
  /** Told when an SRV name's records changed (not on the first resolution). */
  onSrvChange: ((name: string, records: SrvTarget[]) => void) | undefined;
  /** Clock (tests replace it). */
  now: () => number = Date.now;
  /** Resolutions made (for tests and snapshots). */
  lookups = 0;
  readonly logger: Logger;
  private readonly resolver: TtlResolver;
  private readonly srvResolver: SrvResolver;
  private readonly names: TtlTable<string>;
  private readonly services: TtlTable<SrvTarget>;

  constructor(options: DnsOptions = {}, logger: Logger = silentLogger) {
    const servers = options.servers && options.servers.length > 0 ? options.servers : undefined;
    this.resolver = options.resolver ?? (options.recordTtl || servers ? recordTtlResolver(servers) : systemTtlResolver);
    this.srvResolver = options.srvResolver ?? dnsSrvResolver(servers);
    this.ttlMs = options.ttlMs ?? REVERSE_DEFAULTS.dns.ttlMs;
    this.minTtlMs = options.minTtlMs ?? REVERSE_DEFAULTS.dns.minTtlMs;
    this.maxTtlMs = options.maxTtlMs ?? REVERSE_DEFAULTS.dns.maxTtlMs;
    if (!(this.minTtlMs >= 0 && this.maxTtlMs >= this.minTtlMs && this.ttlMs >= 0)) throw new Error('dns: need 0 <= minTtlMs <= maxTtlMs and ttlMs >= 0');
    this.logger = logger;
    this.names = new TtlTable<string>(this, 'name', (host) => this.queryAddresses(host), sameSet, (host, addresses, previous) => {
      this.logger.info('upstream name resolved to new addresses', { host, addresses: addresses.join(' '), previous: previous.join(' ') });
      this.onChange?.(host, addresses, previous);
    });
    this.services = new TtlTable<SrvTarget>(this, 'SRV', (name) => this.querySrv(name), sameSrv, (name, records) => {
      this.logger.info('upstream SRV records changed', { name, records: records.map((record) => `${record.name}:${record.port}`).join(' ') });
      this.onSrvChange?.(name, records);
    });
  }

  /** A core-net `Resolver` answering from the cache. */
  readonly resolve: Resolver = (host) => this.names.get(host);

  /** The SRV records of a name, from the cache (re-resolved once expired). */
  srv(name: string): Promise<SrvTarget[]> {
    return this.services.get(name);
  }

  /** Stop refreshing an SRV name nobody follows any more. */
  forgetSrv(name: string): void {
    this.services.forget(name);
  }

  /** Start re-resolving every expired name and SRV set (called by the proxy's sweep). */
  refreshExpired(): void {
    this.names.refreshExpired();
    this.services.refreshExpired();
  }

  /**
   * Re-resolve a cached name now, whatever its TTL: its server changed health
   * state, and a server that went down and came back may have moved (a
   * container or pod restarted with a new address). The health probe resolved
   * it afresh; traffic should not keep the old address until the TTL ends.
   */
  refreshNow(host: string): void {
    this.names.refreshNow(host);
  }

  /** Cached addresses of a name (undefined when never resolved). */
  addresses(host: string): string[] | undefined {
    return this.names.peek(host);
  }

  private async queryAddresses(host: string): Promise<{ value: string[]; ttlMs?: number }> {
    this.lookups++;
    const answer = await this.resolver(host);
    const resolution = Array.isArray(answer) ? { addresses: answer } : answer;
    if (resolution.addresses.length === 0) throw new NetError('ENOTFOUND', `no address for ${host}`, { address: host });
    return { value: resolution.addresses, ...(resolution.ttlMs !== undefined ? { ttlMs: resolution.ttlMs } : {}) };
  }

  private async querySrv(name: string): Promise<{ value: SrvTarget[]; ttlMs?: number }> {
    this.lookups++;
    const answer = await this.srvResolver(name);
    const resolution = Array.isArray(answer) ? { records: answer } : answer;
    if (resolution.records.length === 0) throw new NetError('ENOTFOUND', `no SRV record for ${name}`, { address: name });
    return { value: resolution.records, ...(resolution.ttlMs !== undefined ? { ttlMs: resolution.ttlMs } : {}) };
  }
}

function sameSrv(a: readonly SrvTarget[], b: readonly SrvTarget[]): boolean {
  const key = (record: SrvTarget): string => `${record.name}:${record.port}/${record.priority}/${record.weight}`;
  return sameSet(a.map(key), b.map(key));
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((address) => set.has(address));
}
