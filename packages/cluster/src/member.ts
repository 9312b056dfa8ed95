/**
 * One instance following a configuration store: it starts from the stored
 * configuration, applies every new version through the same zero-loss reload
 * path as SIGHUP (an invalid one is refused and the running one stays),
 * registers itself under a lease, and keeps serving the last good
 * configuration while the store is unreachable, catching up when it returns.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { silentLogger, type Logger } from '@wmproxy/core-net';
import { ConfigStore, StoreError, type MemberRecord, type StoredConfig } from './store.js';

/** What the member asks of the instance it belongs to (control's Instance fits). */
export interface FollowingInstance<C> {
  reload(config: C): Promise<{ ok: boolean; message?: string }>;
  /** Health summary for the member record. */
  healthSummary(): { healthy: number; unhealthy: number };
  /** Where it can be reached (its control API, or its first listener). */
  address(): string;
}

export interface MemberOptions<C> {
  store: ConfigStore;
  /** Parse and validate a stored configuration (throws on an invalid one: it is refused). */
  parse(stored: StoredConfig): C;
  version: string;
  logger?: Logger;
  /** How often the member record and the member list are refreshed (default 5 s). */
  refreshMs?: number;
  id?: string;
}

export const DEFAULT_MEMBER_REFRESH_MS = 5_000;

export interface MemberView {
  store: string;
  connected: boolean;
  revision: number;
  lastError?: string;
  members: MemberRecord[];
}

export class ClusterMember<C> {
  readonly id: string;
  private readonly logger: Logger;
  private instance: FollowingInstance<C> | undefined;
  private revision = 0;
  private connected = true;
  private lastError: string | undefined;
  private members: MemberRecord[] = [];
  private readonly since = new Date().toISOString();
  private timer: ReturnType<typeof setInterval> | undefined;
  /** Versions are applied one at a time, newest last. */
  private applying: Promise<void> = Promise.resolve();

  constructor(private readonly options: MemberOptions<C>) {
    this.id = options.id ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.logger = options.logger ?? silentLogger;
  }

  /** The stored configuration, parsed (throws StoreError when there is none, a ConfigError when it is invalid). */
  async initial(): Promise<C> {
    const stored = await this.options.store.read();
    if (!stored) throw new StoreError(`${this.options.store.url.display}: no configuration stored yet (wmproxy config push -c FILE --store URL)`);
    const config = this.options.parse(stored);
    this.revision = stored.revision;
    return config;
  }

  /** The latest stored configuration, parsed: what SIGHUP and POST /reload load. */
  async latest(): Promise<C> {
    return this.initial();
  }

  /** Follow the store on behalf of `instance` (after it started with `initial()`). */
  async follow(instance: FollowingInstance<C>): Promise<void> {
    this.instance = instance;
    await this.options.store.watch(
      (stored) => this.offer(stored),
      (connected, error) => this.setConnected(connected, error),
    );
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.refreshMs ?? DEFAULT_MEMBER_REFRESH_MS);
    this.timer.unref();
  }

  view(): MemberView {
    return {
      store: this.options.store.url.display,
      connected: this.connected,
      revision: this.revision,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      members: this.members,
    };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.applying;
    await this.options.store.close();
  }

  private setConnected(connected: boolean, error?: Error): void {
    if (connected === this.connected) return;
    this.connected = connected;
    if (connected) {
      this.logger.info('config store reachable again', { store: this.options.store.url.display });
      // Catch up on anything pushed while away (the watch resumes too; this covers a compacted history).
      void this.refresh();
    } else {
      this.lastError = error?.message ?? 'unreachable';
      this.logger.warn('config store unreachable; serving the last good configuration', { store: this.options.store.url.display, error: this.lastError });
    }
  }

  private offer(stored: StoredConfig): void {
    this.applying = this.applying.then(() => this.apply(stored));
  }

  private async apply(stored: StoredConfig): Promise<void> {
    if (stored.revision <= this.revision || !this.instance) return;
    let config: C;
    try {
      config = this.options.parse(stored);
    } catch (error) {
      this.lastError = `revision ${stored.revision} refused: ${(error as Error).message.split('\n')[0]}`;
      this.logger.error('stored configuration refused, the running one stays', { revision: stored.revision, error: (error as Error).message });
      this.revision = stored.revision;
      return;
    }
    const result = await this.instance.reload(config);
    if (result.ok) {
      this.revision = stored.revision;
      this.lastError = undefined;
      this.logger.info('configuration from the store applied', { revision: stored.revision });
    } else {
      this.lastError = `revision ${stored.revision} rejected: ${result.message ?? ''}`;
      this.revision = stored.revision;
    }
    void this.register();
  }

  /** Re-read the store (catch up), re-register, refresh the member list. */
  private async refresh(): Promise<void> {
    try {
      const stored = await this.options.store.read();
      if (!this.connected) this.setConnected(true);
      if (stored) this.offer(stored);
      await this.register();
      this.members = await this.options.store.members();
    } catch (error) {
      this.setConnected(false, error as Error);
    }
  }

  private async register(): Promise<void> {
    if (!this.instance) return;
    const record: MemberRecord = {
      id: this.id,
      address: this.instance.address(),
      version: this.options.version,
      configRevision: this.revision,
      health: this.instance.healthSummary(),
      since: this.since,
      updatedAt: new Date().toISOString(),
    };
    await this.options.store.register(record);
  }
}
