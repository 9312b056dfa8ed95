import type { Conn } from '@wmproxy/core-net';
import type { PoolWaiter } from '../pool.js';
import type { Span } from '../trace.js';
import type { UpstreamServer } from '../upstream.js';

/** Who an attempt hands a connection released by another request to (the session; no closure per attempt). */
export interface AttemptOwner {
  pooledConn(attempt: Attempt, conn: Conn): void;
}

/**
 * One try of a request on one upstream server: a lease on the server and
 * everything it holds there. Creating it counts the request (`active`,
 * `requests`) once; `release()` gives `active` back exactly once, whatever
 * path the exchange took, so no caller balances counters by hand. A request
 * hedge is a second Attempt: promoting it swaps two references, and the
 * loser is `abort()`ed.
 */
export class Attempt implements PoolWaiter {
  /** The leased server (changes only through `switchTo`). */
  server: UpstreamServer;
  /** The upstream connection, once bound. */
  conn: Conn | undefined = undefined;
  /** The connect in progress (undefined: none, or no longer wanted). */
  connectAbort: AbortController | undefined = undefined;
  /** When the request head went out (performance.now(); 0: not yet, or its first byte came). */
  sentAt = 0;
  /** While tracing is on: this attempt's client span, ended with the lease. */
  span: Span | undefined = undefined;
  private readonly owner: AttemptOwner;
  private waiting = false;
  private released = false;
  private failed = false;

  constructor(server: UpstreamServer, owner: AttemptOwner) {
    this.server = server;
    this.owner = owner;
    server.active++;
    server.requests++;
  }

  /** The lease is still held. */
  get leased(): boolean {
    return !this.released;
  }

  /** A connect is in progress for this attempt. */
  get connecting(): boolean {
    return this.connectAbort !== undefined;
  }

  /** A connect for this attempt begins: abort it through the controller's signal. */
  beginConnect(): AbortController {
    const controller = new AbortController();
    this.connectAbort = controller;
    return controller;
  }

  /**
   * The connect of `controller` settled: is its result still wanted (not
   * aborted, not beaten by a pooled connection)? Claims it if so.
   */
  claimConnect(controller: AbortController): boolean {
    if (this.connectAbort !== controller) return false;
    this.connectAbort = undefined;
    return true;
  }

  /** Be handed a connection another request releases to this server meanwhile. */
  waitForPool(): void {
    this.waiting = true;
    this.server.pool.wait(this);
  }

  /** PoolWaiter: a released connection beats the connect, which goes on and parks its own. */
  take(conn: Conn): void {
    this.waiting = false;
    if (this.connectAbort === undefined || this.released) {
      this.server.pool.release(conn);
      return;
    }
    this.connectAbort = undefined;
    this.owner.pooledConn(this, conn);
  }

  cancelWait(): void {
    if (!this.waiting) return;
    this.waiting = false;
    this.server.pool.cancel(this);
  }

  /** The connect hedge's winner was another server: the lease moves there. */
  switchTo(server: UpstreamServer): void {
    if (server === this.server) return;
    this.cancelWait();
    if (!this.released) {
      this.server.active--;
      server.active++;
      server.requests++;
    }
    this.server = server;
  }

  /** Count this attempt as a failure of its server (once). */
  fail(): void {
    if (this.failed) return;
    this.failed = true;
    this.server.failures++;
  }

  /** The connection leaves the attempt (to the pool or a tunnel); the lease stays until `release`. */
  detach(): Conn | undefined {
    const conn = this.conn;
    this.conn = undefined;
    return conn;
  }

  /** Give the lease back (idempotent). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.server.active--;
    if (this.span !== undefined) this.endSpan(this.span);
  }

  private endSpan(span: Span): void {
    span.set('server.address', this.server.address);
    if (this.failed && !span.error) span.fail('attempt failed');
    span.end();
  }

  /** Stop everything this attempt holds: its connect, its place in the pool's queue, its connection, its lease. */
  abort(): void {
    const controller = this.connectAbort;
    this.connectAbort = undefined;
    controller?.abort();
    this.cancelWait();
    const conn = this.conn;
    this.conn = undefined;
    conn?.destroy();
    this.release();
  }
}
