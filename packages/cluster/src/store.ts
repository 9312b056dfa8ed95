/**
 * The configuration of many instances, kept in etcd (APISIX's way: the store
 * is an existing, replicated engine; there is no home-made consensus here).
 *
 * Keys under the URL's prefix:
 *   `<prefix>/config`             {"format","text","pushedAt","by"}: the file as written
 *                                 (with its ${ENV} references; secrets stay on the instances)
 *   `<prefix>/members/<id>`       one per running instance, under a lease: it vanishes
 *                                 when the instance stops or dies
 *
 * A push is a compare-and-swap on the config key's revision, so two
 * operators pushing at once cannot overwrite each other unknowingly.
 */
import etcd3 from 'etcd3';
import type { Etcd3 as EtcdClient, Lease, Watcher } from 'etcd3';
import { silentLogger, type Logger } from '@wmproxy/core-net';

export type StoredFormat = 'toml' | 'yaml' | 'json';

export interface StoreUrl {
  hosts: string[];
  prefix: string;
  /** The URL without credentials, for logs and errors. */
  display: string;
}

export class StoreError extends Error {
  override readonly name = 'StoreError';
}

/** `etcd://host:2379[,host:2379...]/prefix` (the prefix defaults to `/wmproxy`). */
export function parseStoreUrl(text: string): StoreUrl {
  const match = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(text.trim());
  if (!match) throw new StoreError(`store "${text}": expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX`);
  const hosts = match[1]!.split(',').map((host) => host.trim());
  for (const host of hosts) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(host)) throw new StoreError(`store "${text}": "${host}" is not host:port`);
  }
  let prefix = (match[2] ?? '/wmproxy').replace(/\/+$/, '');
  if (prefix === '') prefix = '/wmproxy';
  return { hosts, prefix, display: `etcd://${hosts.join(',')}${prefix}` };
}

export interface StoredConfig {
  format: StoredFormat;
  text: string;
  /** etcd's mod_revision of the config key: what a compare-and-swap compares. */
  revision: number;
  pushedAt?: string;
  by?: string;
}

export interface MemberRecord {
  id: string;
  /** Where its control API or traffic listens (as it reports it). */
  address: string;
  version: string;
  /** Revision of the configuration it runs. */
  configRevision: number;
  health: { healthy: number; unhealthy: number };
  since: string;
  updatedAt: string;
}

export interface StoreOptions {
  logger?: Logger;
  /** Dial timeout per call (default 3 s): an unreachable store must not hang a push or a reload. */
  timeoutMs?: number;
}

export const DEFAULT_STORE_TIMEOUT_MS = 3_000;
export const DEFAULT_MEMBER_TTL_S = 10;

export class ConfigStore {
  readonly url: StoreUrl;
  private readonly client: EtcdClient;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private watcher: Watcher | undefined;
  private lease: Lease | undefined;
  private closed = false;

  constructor(url: string | StoreUrl, options: StoreOptions = {}) {
    this.url = typeof url === 'string' ? parseStoreUrl(url) : url;
    this.logger = options.logger ?? silentLogger;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    this.client = new etcd3.Etcd3({ hosts: this.url.hosts.map((host) => `http://${host}`), dialTimeout: this.timeoutMs });
  }

  private get configKey(): string {
    return `${this.url.prefix}/config`;
  }

  private get membersPrefix(): string {
    return `${this.url.prefix}/members/`;
  }

  /** The stored configuration, or undefined when nothing was pushed yet. */
  async read(): Promise<StoredConfig | undefined> {
    const response = await this.call('read', () => this.client.get(this.configKey).options({ deadline: this.deadline() }).exec());
    const kv = response.kvs[0];
    return kv === undefined ? undefined : decodeConfig(kv.value, Number(kv.mod_revision), this.url.display);
  }

  /**
   * Store `text` if the stored configuration is still at `expectRevision`
   * (0: nothing stored yet). Another push in between makes this one fail
   * with a StoreError saying so; nothing is overwritten.
   */
  async push(text: string, format: StoredFormat, expectRevision: number, by = 'wmproxy config push'): Promise<number> {
    const value = JSON.stringify({ format, text, pushedAt: new Date().toISOString(), by });
    const compare = expectRevision === 0 ? this.client.if(this.configKey, 'Create', '==', 0) : this.client.if(this.configKey, 'Mod', '==', expectRevision);
    const result = await this.call('push', () => compare.then(this.client.put(this.configKey).value(value)).options({ deadline: this.deadline() }).commit());
    if (!result.succeeded) {
      const now = await this.read();
      throw new StoreError(
        `${this.url.display}: the stored configuration changed meanwhile (expected revision ${expectRevision}, found ${now?.revision ?? 'none'}): ` +
          'someone else pushed; pull it, merge, and push again',
      );
    }
    return Number(result.header.revision);
  }

  /**
   * Follow the config key. `onChange` gets every new version (not the
   * current one: read that first). `onState` reports the watch losing and
   * regaining the store; the client reconnects by itself and resumes from
   * the last revision seen, so no version is missed.
   */
  async watch(onChange: (config: StoredConfig) => void, onState: (connected: boolean, error?: Error) => void): Promise<void> {
    const watcher = await this.client.watch().key(this.configKey).create();
    this.watcher = watcher;
    watcher.on('put', (kv) => {
      try {
        onChange(decodeConfig(kv.value, Number(kv.mod_revision), this.url.display));
      } catch (error) {
        this.logger.error('config store: unreadable configuration', { store: this.url.display, error: (error as Error).message });
      }
    });
    watcher.on('disconnected', (error) => onState(false, error));
    watcher.on('connected', () => onState(true));
    watcher.on('error', (error) => onState(false, error));
  }

  /** Register this instance under a lease (renewed by the client; gone TTL seconds after it stops renewing). */
  async register(member: MemberRecord, ttlSeconds = DEFAULT_MEMBER_TTL_S): Promise<void> {
    if (this.lease === undefined) {
      const lease = this.client.lease(ttlSeconds, { autoKeepAlive: true });
      lease.on('lost', (error) => {
        this.logger.warn('config store: membership lease lost; registering again', { store: this.url.display, error: error.message });
        if (this.lease === lease) this.lease = undefined;
        if (!this.closed) void this.register(member, ttlSeconds).catch(() => undefined);
      });
      this.lease = lease;
    }
    const lease = this.lease;
    await this.call('register', () => lease.put(`${this.membersPrefix}${member.id}`).value(JSON.stringify(member)).exec());
  }

  /** Every registered instance. */
  async members(): Promise<MemberRecord[]> {
    const all = await this.call('members', () => this.client.getAll().prefix(this.membersPrefix).options({ deadline: this.deadline() }).strings());
    const members: MemberRecord[] = [];
    for (const text of Object.values(all)) {
      try {
        members.push(JSON.parse(text) as MemberRecord);
      } catch {
        // Not ours: skip it.
      }
    }
    return members.sort((a, b) => a.id.localeCompare(b.id));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.watcher?.cancel().catch(() => undefined);
    await this.lease?.revoke().catch(() => undefined);
    this.client.close();
  }

  private deadline(): Date {
    return new Date(Date.now() + this.timeoutMs);
  }

  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (error instanceof StoreError) throw error;
      throw new StoreError(`${this.url.display}: ${what} failed: ${(error as Error).message}`);
    }
  }
}

function decodeConfig(value: Buffer, revision: number, store: string): StoredConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch {
    throw new StoreError(`${store}: the config key does not hold a wmproxy configuration (not JSON)`);
  }
  const record = parsed as Partial<StoredConfig>;
  if (typeof record.text !== 'string' || (record.format !== 'toml' && record.format !== 'yaml' && record.format !== 'json')) {
    throw new StoreError(`${store}: the config key does not hold a wmproxy configuration ({format, text})`);
  }
  return { format: record.format, text: record.text, revision, ...(record.pushedAt ? { pushedAt: record.pushedAt } : {}), ...(record.by ? { by: record.by } : {}) };
}
