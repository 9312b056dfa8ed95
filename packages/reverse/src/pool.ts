import { Ticker, type Conn, type ConnHandler } from '@wmproxy/core-net';
import { REVERSE_DEFAULTS } from './defaults.js';

export interface PoolOptions {
  /** Idle keep-alive connections kept per server (default 256; 0 disables reuse). */
  maxIdle?: number;
  /** Close an idle connection after this long (default 60 s). */
  idleTimeoutMs?: number;
}

/** A request waiting for a connection of this server (while its own connect is in progress). */
export interface PoolWaiter {
  take(conn: Conn): void;
}

/** Installed on parked connections: any byte or FIN from an idle upstream means it is unusable. */
const idleHandler: ConnHandler = {
  data(conn) {
    conn.destroy();
  },
  end(conn) {
    conn.destroy();
  },
  close(conn) {
    (conn.userData as ConnPool | undefined)?.forget(conn);
  },
};

/**
 * Keep-alive connections to one upstream server (undici's pool layer):
 * last-in first-out so that a few warm connections carry the load and the
 * rest time out; bounded by `maxIdle`; an idle connection that the server
 * closes or writes to is dropped at once. A request that found no idle
 * connection may wait for one while its own connect is in progress (as Go's
 * transport does): whichever comes first serves it, and a connect that lost
 * the race is parked for the next request, so a burst does not open one
 * connection per request. Idle connections expire on the ticks of the
 * owner's Ticker (a proxy shares one among its pools, see `useTicker`), or of
 * the pool's own while it has none.
 */
export class ConnPool {
  private readonly idle: Conn[] = [];
  /** When each idle connection was parked (same order as `idle`; no object per release). */
  private readonly idleSince: number[] = [];
  private readonly waiters: PoolWaiter[] = [];
  readonly maxIdle: number;
  readonly idleTimeoutMs: number;
  private ticker: Ticker | undefined;
  private sweeping = false;
  private readonly sweep = (now: number): void => this.expire(now);
  /** Connections handed out by `acquire` that were reused (for stats). */
  reused = 0;

  constructor(options: PoolOptions = {}) {
    this.maxIdle = options.maxIdle ?? REVERSE_DEFAULTS.pool.maxIdle;
    this.idleTimeoutMs = options.idleTimeoutMs ?? REVERSE_DEFAULTS.pool.idleTimeoutMs;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** A parked connection, most recently used first, or undefined. */
  acquire(): Conn | undefined {
    while (this.idle.length > 0) {
      const conn = this.idle.pop()!;
      this.idleSince.pop();
      if (!conn.closed) {
        this.reused++;
        conn.userData = undefined;
        return conn;
      }
    }
    return undefined;
  }

  /** Be handed the next released connection (see `cancel`). */
  wait(waiter: PoolWaiter): void {
    this.waiters.push(waiter);
  }

  cancel(waiter: PoolWaiter): void {
    const index = this.waiters.indexOf(waiter);
    if (index >= 0) this.waiters.splice(index, 1);
  }

  /**
   * Give back a connection whose last exchange ended cleanly (not paused:
   * idle bytes or FIN must be seen): to the first waiter, else parked.
   * `now` (Date.now()) saves a clock read for a caller that has it.
   */
  release(conn: Conn, now = Date.now()): void {
    if (conn.closed) return;
    // Nobody waits in the steady state: no native `shift` call on an empty queue per response.
    const waiter = this.waiters.length > 0 ? this.waiters.shift() : undefined;
    if (waiter) {
      conn.userData = undefined;
      this.reused++;
      waiter.take(conn);
      return;
    }
    if (this.idle.length >= this.maxIdle) {
      conn.destroy();
      return;
    }
    conn.userData = this;
    conn.setHandler(idleHandler);
    this.idle.push(conn);
    this.idleSince.push(now);
    if (!this.sweeping && this.idleTimeoutMs > 0) {
      this.ticker ??= new Ticker(Math.max(50, Math.min(this.idleTimeoutMs / 2, 5_000)));
      this.ticker.add(this.sweep);
      this.sweeping = true;
    }
  }

  /** Expire idle connections on `ticker`'s ticks from now on (the owner's shared timer). */
  useTicker(ticker: Ticker): void {
    if (ticker === this.ticker) return;
    if (this.sweeping) {
      this.ticker!.delete(this.sweep);
      ticker.add(this.sweep);
    }
    this.ticker = ticker;
  }

  /** @internal */
  forget(conn: Conn): void {
    const index = this.idle.indexOf(conn);
    if (index >= 0) {
      this.idle.splice(index, 1);
      this.idleSince.splice(index, 1);
    }
  }

  /** @internal close connections idle for longer than the timeout. */
  expire(now: number): void {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      if (now - this.idleSince[i]! >= this.idleTimeoutMs) this.idle[i]!.destroy();
    }
    if (this.idle.length === 0) this.stopSweeper();
  }

  private stopSweeper(): void {
    if (this.sweeping) this.ticker!.delete(this.sweep);
    this.sweeping = false;
  }

  /** Close every idle connection. */
  close(): void {
    this.stopSweeper();
    this.idleSince.length = 0;
    for (const conn of this.idle.splice(0)) conn.destroy();
  }
}
