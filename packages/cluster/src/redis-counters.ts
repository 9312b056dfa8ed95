/**
 * The shared counters of `scope = "cluster"` rate limits, in Redis (Envoy
 * delegates global rate limiting to a Redis-backed service the same way).
 * One Lua script per key adds this instance's count to the window's counter
 * and reads the previous window's, atomically; a whole batch of keys goes
 * in one pipelined round trip. Counters expire two windows after their own.
 */
import { Redis } from 'ioredis';
import { silentLogger, type Logger } from '@wmproxy/core-net';
import { CLUSTER_DEFAULTS, type CounterSync, type CounterTotals, type SharedCounters } from '@wmproxy/reverse';

const WINDOW_SCRIPT = `
local current = redis.call('INCRBY', KEYS[1], ARGV[1])
if current == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local previous = redis.call('GET', KEYS[2])
return {current, tonumber(previous) or 0}
`;

export interface RedisCountersOptions {
  /** `redis://[user:pass@]host:port[/db]`. */
  url: string;
  /** Key prefix (default `wmproxy:rl:`). */
  prefix?: string;
  /** Instances sharing the limits, for the `local` fallback (default 1; `count()` may update it). */
  instances?: number | (() => number);
  /** A call not answered within this time fails, and the fallback applies (default 500 ms). */
  timeoutMs?: number;
  logger?: Logger;
}

export const DEFAULT_REDIS_TIMEOUT_MS = CLUSTER_DEFAULTS.redisTimeoutMs;

function instancesOf(options: Pick<RedisCountersOptions, 'instances'>): () => number {
  const instances = options.instances ?? 1;
  return typeof instances === 'function' ? instances : () => instances;
}

/** A Redis URL without its password, for logs. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_, auth: string) => `//${auth.includes(':') ? auth.slice(0, auth.indexOf(':')) + ':***' : '***'}@`);
}

type WindowClient = Redis & { wmproxyWindow(current: string, previous: string, add: number, ttlMs: number): Promise<[number, number]> };

export class RedisCounters implements SharedCounters {
  private client: WindowClient;
  private readonly prefix: string;
  private readonly logger: Logger;
  private instancesOf: () => number;
  private wasReachable = true;
  private options: RedisCountersOptions;

  constructor(options: RedisCountersOptions) {
    this.options = options;
    this.prefix = options.prefix ?? 'wmproxy:rl:';
    this.logger = options.logger ?? silentLogger;
    this.instancesOf = instancesOf(options);
    this.client = this.connect(options);
  }

  /** The URL of the Redis it counts in now. */
  get url(): string {
    return this.options.url;
  }

  /**
   * Count somewhere else from now on (a reload changed `[cluster] redis`):
   * a new connection takes the next sync; the old one answers what it has in
   * flight and closes. The limits keep their local view meanwhile, so they
   * hold across the switch; the new Redis's windows fill from the next sync.
   */
  reconfigure(options: Omit<RedisCountersOptions, 'prefix' | 'logger'>): void {
    this.instancesOf = instancesOf(options);
    const sameClient = options.url === this.options.url && options.timeoutMs === this.options.timeoutMs;
    this.options = { ...this.options, ...options };
    if (sameClient) return;
    const old = this.client;
    this.client = this.connect(this.options);
    this.logger.info('cluster rate limits: counting in another Redis', { redis: redactUrl(this.options.url) });
    old.removeAllListeners('ready');
    void old.quit().catch(() => old.disconnect());
  }

  private connect(options: RedisCountersOptions): WindowClient {
    const timeout = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    const client = new Redis(options.url, {
      // Fail at once while disconnected instead of queueing: the limiter falls back, requests never wait on Redis.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: timeout,
      commandTimeout: timeout,
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2_000),
      lazyConnect: false,
    }) as WindowClient;
    client.defineCommand('wmproxyWindow', { numberOfKeys: 2, lua: WINDOW_SCRIPT });
    client.on('error', (error: Error) => {
      if (client === this.client) this.note(false, error);
    });
    client.on('ready', () => this.note(true));
    return client;
  }

  get reachable(): boolean {
    return this.client.status === 'ready';
  }

  get instances(): number {
    return Math.max(1, this.instancesOf());
  }

  async sync(batch: readonly CounterSync[]): Promise<CounterTotals[]> {
    const pipeline = this.client.pipeline() as ReturnType<Redis['pipeline']> & { wmproxyWindow(current: string, previous: string, add: number, ttlMs: number): unknown };
    for (const entry of batch) {
      const base = this.prefix + entry.key;
      pipeline.wmproxyWindow(`${base}:${entry.window}`, `${base}:${entry.window - 1}`, entry.add, entry.windowMs * 3);
    }
    const results = await pipeline.exec();
    if (!results) throw new Error('redis: pipeline aborted');
    return results.map(([error, value]) => {
      if (error) throw error;
      const [current, previous] = value as [number, number];
      return { current: Number(current), previous: Number(previous) };
    });
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }

  private note(reachable: boolean, error?: Error): void {
    if (reachable === this.wasReachable) return;
    this.wasReachable = reachable;
    if (reachable) this.logger.info('redis reachable again: cluster rate limits shared');
    else this.logger.warn('redis unreachable: cluster rate limits fall back', { error: error?.message });
  }
}
