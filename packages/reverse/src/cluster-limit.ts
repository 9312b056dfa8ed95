/**
 * A rate limit shared by every instance (`scope = "cluster"`): a sliding
 * window counter per key, kept in a shared store (Redis, see
 * `@wmproxy/cluster`), with the hot path never waiting on it.
 *
 * Each instance decides from its last view of the global counts plus what it
 * admitted since, and sends its local counts in one batched round trip at
 * most every `syncMs` (default 50 ms), getting the fresh totals back. The
 * store adds atomically (one script per key), so instances never lose each
 * other's counts; the only error is what the other instances admitted in
 * the last sync interval, bounded by rate × syncMs: at 100 r/s and 50 ms,
 * about 5 requests per window of 100. A key far below its limit is synced
 * less often, as long as all instances together, at the rate seen, could not
 * reach half of it before the next sync (at most every 5 s): the common
 * case, as most clients never come near their limit.
 *
 * While the store is unreachable the limit falls back, as configured, to
 * `local` (this instance's share of the limit, rate / instances), `open`
 * (no limit) or `closed` (every request refused).
 */

export interface CounterSync {
  /** The limit and the client key, as the store should name them. */
  key: string;
  /** Window index (time / windowMs). */
  window: number;
  windowMs: number;
  /** Requests this instance admitted in that window since its last sync. */
  add: number;
}

export interface CounterTotals {
  /** Every instance's count in the window, this sync's included. */
  current: number;
  /** Every instance's count in the window before. */
  previous: number;
}

/** What a cluster limit needs of the shared store (`@wmproxy/cluster`'s RedisCounters). */
export interface SharedCounters {
  /** Add and read many counters in one round trip; rejects when the store cannot be reached. */
  sync(batch: readonly CounterSync[]): Promise<CounterTotals[]>;
  /** False while the store is known to be unreachable. */
  readonly reachable: boolean;
  /** Instances sharing the limits (the `local` fallback takes 1/instances of the limit). */
  readonly instances: number;
}

export type ClusterFallback = 'local' | 'open' | 'closed';

export const CLUSTER_WINDOW_MS = 1_000;
export const CLUSTER_SYNC_MS = 50;
/** Keys far below their limit are synced up to this many times less often. */
const MAX_FAR_SYNC_FACTOR = 100;
/** Defaults of `[cluster]` (read by @wmproxy/config and @wmproxy/cluster). */
export const CLUSTER_DEFAULTS = Object.freeze({ instances: 1, redisTimeoutMs: 500 });

interface WindowEntry {
  window: number;
  /** Admitted here, not yet sent. */
  pending: number;
  /** Sent in the sync in flight. */
  sending: number;
  /** Global counts as of the last sync (this instance's sent counts included). */
  current: number;
  previous: number;
  syncedAt: number;
  /** A request came since the last sync: refresh the totals even if nothing was admitted. */
  touched: boolean;
  /** The window and count of admissions made in a window that ended before they were sent. */
  lateWindow: number;
  late: number;
}

export interface ClusterWindowOptions {
  /** Names this limit in the store (unique per location). */
  name: string;
  /** Requests per millisecond. */
  perMs: number;
  burst: number;
  maxKeys: number;
  syncMs?: number;
}

export type ClusterVerdict = 'admit' | 'refuse' | 'fallback';

export class ClusterWindow {
  /** Requests admitted per window, all instances together. */
  readonly limit: number;
  private readonly entries = new Map<string, WindowEntry>();
  private scheduled: ReturnType<typeof setTimeout> | undefined;
  private readonly syncMs: number;
  private syncing = false;
  /** A request came while a sync was in flight: sync again after it. */
  private dirty = false;

  constructor(
    private readonly store: SharedCounters,
    private readonly options: ClusterWindowOptions,
  ) {
    this.limit = options.perMs * CLUSTER_WINDOW_MS + options.burst;
    this.syncMs = options.syncMs ?? CLUSTER_SYNC_MS;
  }

  /** Decide for one request of `key`. `fallback`: the store is unreachable, apply the configured fallback. */
  take(key: string, now: number): ClusterVerdict {
    if (!this.store.reachable) return 'fallback';
    const window = Math.floor(now / CLUSTER_WINDOW_MS);
    const entries = this.entries;
    let entry = entries.get(key);
    if (entry) {
      entries.delete(key);
      if (entry.window !== window) this.roll(entry, window);
    } else {
      if (entries.size >= this.options.maxKeys) entries.delete(entries.keys().next().value!);
      entry = { window, pending: 0, sending: 0, current: 0, previous: 0, syncedAt: 0, touched: false, lateWindow: 0, late: 0 };
    }
    entries.set(key, entry);
    const elapsed = (now - window * CLUSTER_WINDOW_MS) / CLUSTER_WINDOW_MS;
    const estimate = entry.previous * (1 - elapsed) + entry.current + entry.pending + entry.sending;
    entry.touched = true;
    this.schedule();
    // What the other instances admit while this one's view is one sync old, kept as headroom: without it
    // each near-limit window overshoots by about (instances - 1) / instances × limit × syncMs / window.
    const instances = this.store.instances;
    const lag = instances > 1 ? ((instances - 1) / instances) * this.limit * (this.syncMs / CLUSTER_WINDOW_MS) : 0;
    if (estimate + 1 > this.limit - lag) return 'refuse';
    entry.pending++;
    return 'admit';
  }

  /** The window moved on: what was counted becomes the previous window's (when adjacent). */
  private roll(entry: WindowEntry, window: number): void {
    if (entry.pending > 0) {
      entry.lateWindow = entry.window;
      entry.late += entry.pending;
    }
    entry.previous = window === entry.window + 1 ? entry.current + entry.pending + entry.sending : 0;
    entry.current = 0;
    entry.pending = 0;
    entry.window = window;
  }

  private schedule(): void {
    if (this.syncing) {
      this.dirty = true;
      return;
    }
    if (this.scheduled !== undefined) return;
    this.scheduled = setTimeout(() => void this.flush(), this.syncMs);
    this.scheduled.unref?.();
  }

  /** Send what was admitted, read the totals back. */
  private async flush(): Promise<void> {
    this.scheduled = undefined;
    const now = Date.now();
    const batch: CounterSync[] = [];
    const sent: Array<{ entry: WindowEntry; count: number; window: number; late: boolean }> = [];
    for (const [key, entry] of this.entries) {
      if (entry.late > 0) {
        batch.push({ key: `${this.options.name}\u0000${key}`, window: entry.lateWindow, windowMs: CLUSTER_WINDOW_MS, add: entry.late });
        sent.push({ entry, count: entry.late, window: entry.lateWindow, late: true });
        entry.late = 0;
      }
      // Only keys asked about since the last sync: an idle key costs the store nothing.
      if (!entry.touched) continue;
      // A key far from its limit is synced less often, the farther the rarer (up to every 100 syncs): at
      // the rate seen, every instance together stays under half the limit until its next sync. The
      // common case (clients nowhere near their limit) then costs Redis, and this process, little.
      const seen = entry.previous + entry.current + entry.pending + entry.sending;
      const factor = Math.min(MAX_FAR_SYNC_FACTOR, Math.floor(this.limit / (2 * this.store.instances * (seen + 1))));
      if (factor > 1 && now - entry.syncedAt < factor * this.syncMs) continue;
      entry.touched = false;
      batch.push({ key: `${this.options.name}\u0000${key}`, window: entry.window, windowMs: CLUSTER_WINDOW_MS, add: entry.pending });
      sent.push({ entry, count: entry.pending, window: entry.window, late: false });
      entry.sending += entry.pending;
      entry.pending = 0;
    }
    if (batch.length === 0) return;
    this.syncing = true;
    try {
      const totals = await this.store.sync(batch);
      for (let i = 0; i < sent.length; i++) {
        const { entry, count, window, late } = sent[i]!;
        if (late) continue;
        entry.sending -= count;
        if (entry.window === window) {
          entry.current = totals[i]!.current;
          entry.previous = totals[i]!.previous;
          entry.syncedAt = now;
        }
      }
    } catch {
      // Unreachable: the counts stay with this instance (sent again next time), the fallback applies meanwhile.
      for (const { entry, count, window, late } of sent) {
        if (late) {
          entry.late += count;
          entry.lateWindow = window;
        } else {
          entry.sending -= count;
          if (entry.window === window) entry.pending += count;
        }
      }
    } finally {
      this.syncing = false;
    }
    if (this.dirty) {
      this.dirty = false;
      this.schedule();
    }
  }
}
