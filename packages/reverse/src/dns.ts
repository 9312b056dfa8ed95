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
}

interface Entry {
  addresses: string[];
  expiresAt: number;
  pending: Promise<string[]> | undefined;
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

export class DnsCache {
  readonly ttlMs: number;
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  /** Told when a name's addresses changed (not on the first resolution). */
  onChange: ((host: string, addresses: string[], previous: string[]) => void) | undefined;
  /** Clock (tests replace it). */
  now: () => number = Date.now;
  /** Resolutions made (for tests and snapshots). */
  lookups = 0;
  private readonly resolver: TtlResolver;
  private readonly entries = new Map<string, Entry>();
  private readonly logger: Logger;

  constructor(options: DnsOptions = {}, logger: Logger = silentLogger) {
    this.resolver = options.resolver ?? (options.recordTtl ? recordTtlResolver() : systemTtlResolver);
    this.ttlMs = options.ttlMs ?? REVERSE_DEFAULTS.dns.ttlMs;
    this.minTtlMs = options.minTtlMs ?? REVERSE_DEFAULTS.dns.minTtlMs;
    this.maxTtlMs = options.maxTtlMs ?? REVERSE_DEFAULTS.dns.maxTtlMs;
    if (!(this.minTtlMs >= 0 && this.maxTtlMs >= this.minTtlMs && this.ttlMs >= 0)) throw new Error('dns: need 0 <= minTtlMs <= maxTtlMs and ttlMs >= 0');
    this.logger = logger;
  }

  /** A core-net `Resolver` answering from the cache. */
  readonly resolve: Resolver = (host) => {
    const entry = this.entries.get(host);
    // Fresh, or being re-resolved (the last addresses serve meanwhile).
    if (entry && entry.addresses.length > 0 && (entry.pending || this.now() < entry.expiresAt)) return Promise.resolve(entry.addresses);
    return this.refresh(host);
  };

  /** Start re-resolving every expired name (called by the proxy's sweep). */
  refreshExpired(): void {
    const now = this.now();
    for (const [host, entry] of this.entries) if (!entry.pending && now >= entry.expiresAt) void this.refresh(host).catch(() => undefined);
  }

  /**
   * Re-resolve a cached name now, whatever its TTL: its server changed health
   * state, and a server that went down and came back may have moved (a
   * container or pod restarted with a new address). The health probe resolved
   * it afresh; traffic should not keep the old address until the TTL ends.
   */
  refreshNow(host: string): void {
    const entry = this.entries.get(host);
    if (entry && !entry.pending) void this.refresh(host).catch(() => undefined);
  }

  /** Cached addresses of a name (undefined when never resolved). */
  addresses(host: string): string[] | undefined {
    const entry = this.entries.get(host);
    return entry && entry.addresses.length > 0 ? [...entry.addresses] : undefined;
  }

  private refresh(host: string): Promise<string[]> {
    let entry = this.entries.get(host);
    if (entry?.pending) return entry.pending;
    if (!entry) {
      entry = { addresses: [], expiresAt: 0, pending: undefined };
      this.entries.set(host, entry);
    }
    const target = entry;
    const pending = this.query(host).then(
      (resolution) => {
        target.pending = undefined;
        const previous = target.addresses;
        target.addresses = resolution.addresses;
        const ttl = Math.min(this.maxTtlMs, Math.max(this.minTtlMs, resolution.ttlMs ?? this.ttlMs));
        target.expiresAt = this.now() + ttl;
        if (previous.length > 0 && !sameSet(previous, resolution.addresses)) {
          this.logger.info('upstream name resolved to new addresses', { host, addresses: resolution.addresses.join(' '), previous: previous.join(' ') });
          this.onChange?.(host, resolution.addresses, previous);
        }
        return target.addresses;
      },
      (error: unknown) => {
        target.pending = undefined;
        target.expiresAt = this.now() + this.minTtlMs;
        const message = (error as Error).message ?? String(error);
        if (target.addresses.length > 0) {
          this.logger.warn('upstream name re-resolution failed, keeping the last addresses', { host, addresses: target.addresses.join(' '), error: message });
          return target.addresses;
        }
        this.entries.delete(host);
        throw error instanceof NetError ? error : new NetError('ENOTFOUND', `cannot resolve ${host}: ${message}`, { address: host, cause: error });
      },
    );
    target.pending = pending;
    return pending;
  }

  private async query(host: string): Promise<Resolution> {
    this.lookups++;
    const answer = await this.resolver(host);
    const resolution = Array.isArray(answer) ? { addresses: answer } : answer;
    if (resolution.addresses.length === 0) throw new NetError('ENOTFOUND', `no address for ${host}`, { address: host });
    return resolution;
  }
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((address) => set.has(address));
}
