/**
 * A service registry in etcd (the `etcd+` discovery of upstream groups):
 * backends register under a prefix, each under a lease, and vanish when it
 * expires, so a backend that dies leaves every group within the lease's TTL
 * without anyone deregistering it (what Kubernetes endpoints, Consul and
 * APISIX's etcd discovery give).
 *
 *   `<prefix>/<host:port>`   {"address","weight","registeredAt"} under the registrant's lease
 *
 * `discovery()` is the `@wmproxy/reverse` source: it reads the prefix, then
 * watches it from the revision read, so that no change between the two is
 * missed; the client resumes a broken watch where it stopped.
 */
import etcd3 from 'etcd3';
import type { Etcd3 as EtcdClient, Lease, Watcher } from 'etcd3';
import { silentLogger, type Logger } from '@wmproxy/core-net';
import type { DiscoveredServer, DiscoverySource } from '@wmproxy/reverse';
import { parseStoreUrl, StoreError, DEFAULT_STORE_TIMEOUT_MS, type StoreUrl } from './store.js';

export interface ServiceRecord {
  address: string;
  weight?: number;
  registeredAt: string;
}

export interface RegistryOptions {
  logger?: Logger;
  /** Dial timeout (default 3 s). */
  timeoutMs?: number;
}

/** Lease TTL of a registration (s): a registrant that stops renewing is gone this long after. */
export const DEFAULT_SERVICE_TTL_S = 10;

/** `/services/app` → `/services/app/` (the keys of its servers); refuses what is not an absolute prefix. */
export function servicePrefix(prefix: string): string {
  const trimmed = prefix.trim().replace(/\/+$/, '');
  if (!trimmed.startsWith('/') || trimmed.length < 2 || /\s/.test(trimmed)) throw new StoreError(`service prefix "${prefix}": expected an absolute path such as /services/app`);
  return `${trimmed}/`;
}

/** A registration's value, or undefined when it is not one of ours. */
export function parseServiceRecord(value: string): DiscoveredServer | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const record = parsed as Partial<ServiceRecord>;
  if (typeof record.address !== 'string' || !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(record.address)) return undefined;
  const port = Number(record.address.slice(record.address.lastIndexOf(':') + 1));
  if (!(port >= 1 && port <= 65535)) return undefined;
  const weight = record.weight;
  return { address: record.address, ...(typeof weight === 'number' && Number.isInteger(weight) && weight >= 1 && weight <= 1000 ? { weight } : {}) };
}

export class ServiceRegistry {
  readonly url: StoreUrl;
  private readonly client: EtcdClient;
  private readonly logger: Logger;
  private readonly leases = new Set<Lease>();
  private readonly watchers = new Set<Watcher>();
  private closed = false;

  /** `url`: the etcd hosts (`etcd://HOST:PORT[,...]`; the path is not used). */
  constructor(url: string | StoreUrl, options: RegistryOptions = {}) {
    this.url = typeof url === 'string' ? parseStoreUrl(url) : url;
    this.logger = options.logger ?? silentLogger;
    this.client = new etcd3.Etcd3({ hosts: this.url.hosts.map((host) => `http://${host}`), dialTimeout: options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS });
  }

  /**
   * Register `address` under `prefix` for as long as this process renews the
   * lease (automatically); registered again under a new lease if the lease is
   * lost (etcd was away longer than the TTL). `close()` revokes it: gone at once.
   */
  async register(prefix: string, address: string, options: { weight?: number; ttlSeconds?: number } = {}): Promise<void> {
    const key = servicePrefix(prefix) + address;
    const value = JSON.stringify({ address, ...(options.weight !== undefined ? { weight: options.weight } : {}), registeredAt: new Date().toISOString() } satisfies ServiceRecord);
    if (parseServiceRecord(value) === undefined) throw new StoreError(`register: "${address}" is not host:port`);
    const lease = this.client.lease(options.ttlSeconds ?? DEFAULT_SERVICE_TTL_S, { autoKeepAlive: true });
    this.leases.add(lease);
    lease.on('lost', (error) => {
      this.leases.delete(lease);
      if (this.closed) return;
      this.logger.warn('service registry: lease lost; registering again', { key, error: error.message });
      const again = (): void => {
        if (this.closed) return;
        this.register(prefix, address, options).catch(() => setTimeout(again, 1_000).unref());
      };
      again();
    });
    try {
      await lease.put(key).value(value).exec();
    } catch (error) {
      throw new StoreError(`${this.url.display}: register ${key} failed: ${(error as Error).message}`);
    }
  }

  /** The servers registered under `prefix` now. */
  async list(prefix: string): Promise<DiscoveredServer[]> {
    return [...(await this.read(servicePrefix(prefix))).servers.values()];
  }

  /** The `etcd` discovery source of `@wmproxy/reverse` over this registry. */
  discovery(): DiscoverySource {
    return {
      watch: (prefix, update, logger) => {
        let stopped = false;
        let watcher: Watcher | undefined;
        let retry: ReturnType<typeof setTimeout> | undefined;
        const servers = new Map<string, DiscoveredServer>();
        const publish = (): void => update([...servers.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0)));
        const start = async (): Promise<void> => {
          const keys = servicePrefix(prefix);
          const first = await this.read(keys);
          if (stopped) return;
          for (const [key, server] of first.servers) servers.set(key, server);
          publish();
          const created = await this.client.watch().prefix(keys).startRevision(String(first.revision + 1)).create();
          if (stopped) {
            await created.cancel().catch(() => undefined);
            return;
          }
          watcher = created;
          this.watchers.add(created);
          created.on('put', (kv) => {
            const server = parseServiceRecord(kv.value.toString('utf8'));
            if (server) servers.set(kv.key.toString('utf8'), server);
            else servers.delete(kv.key.toString('utf8'));
            publish();
          });
          created.on('delete', (kv) => {
            if (servers.delete(kv.key.toString('utf8'))) publish();
          });
          created.on('disconnected', (error) => logger.warn('etcd discovery: watch lost; the last servers stay in use', { prefix, error: error.message }));
        };
        const attempt = (): void => {
          start().catch((error: Error) => {
            if (stopped) return;
            logger.warn('etcd discovery: registry unreachable; retrying', { prefix, error: error.message });
            retry = setTimeout(attempt, 1_000);
            retry.unref?.();
          });
        };
        attempt();
        return {
          close: () => {
            stopped = true;
            clearTimeout(retry);
            if (watcher) {
              this.watchers.delete(watcher);
              void watcher.cancel().catch(() => undefined);
            }
          },
        };
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.watchers].map((watcher) => watcher.cancel().catch(() => undefined)));
    await Promise.all([...this.leases].map((lease) => lease.revoke().catch(() => undefined)));
    this.client.close();
  }

  private async read(keys: string): Promise<{ servers: Map<string, DiscoveredServer>; revision: number }> {
    const response = await this.client.getAll().prefix(keys).exec();
    const servers = new Map<string, DiscoveredServer>();
    for (const kv of response.kvs) {
      const server = parseServiceRecord(kv.value.toString('utf8'));
      if (server) servers.set(kv.key.toString('utf8'), server);
    }
    return { servers, revision: Number(response.header.revision) };
  }
}
