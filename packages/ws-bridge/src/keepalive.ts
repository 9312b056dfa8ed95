import { NetError, Ticker } from '@wmproxy/core-net';
import type { Bridge } from './bridge.js';

export interface KeepaliveOptions {
  /** Ping a WebSocket peer silent for this long (0: never). */
  pingIntervalMs: number;
  /** A ping unanswered (no frame at all) for this long: the peer is dead, both sides are closed. */
  pongTimeoutMs: number;
  /** A close handshake or a TCP side still open this long after the WebSocket closed is cut. */
  closeTimeoutMs: number;
}

/**
 * The timers of every bridge of one listener on one Ticker: pings, the
 * dead-peer timeout and the close deadlines, without a timer per connection.
 */
export class Keepalive {
  private readonly bridges = new Set<Bridge>();
  private readonly ticker: Ticker;
  private readonly options: KeepaliveOptions;
  private readonly job = (now: number): void => this.tick(now);

  constructor(options: KeepaliveOptions) {
    this.options = options;
    const periods = [options.pingIntervalMs, options.pongTimeoutMs, options.closeTimeoutMs].filter((ms) => ms > 0);
    this.ticker = new Ticker(Math.max(20, Math.min(...periods) / 4));
  }

  get size(): number {
    return this.bridges.size;
  }

  add(bridge: Bridge): void {
    if (this.bridges.size === 0) this.ticker.add(this.job);
    this.bridges.add(bridge);
  }

  delete(bridge: Bridge): void {
    this.bridges.delete(bridge);
    if (this.bridges.size === 0) this.ticker.delete(this.job);
  }

  /** Every bridge, for a shutdown. */
  all(): Bridge[] {
    return [...this.bridges];
  }

  close(): void {
    this.ticker.close();
    this.bridges.clear();
  }

  private tick(now: number): void {
    const { pingIntervalMs, pongTimeoutMs, closeTimeoutMs } = this.options;
    for (const bridge of this.bridges) {
      const ws = bridge.ws;
      if (ws.conn.closed) {
        if (!bridge.tcp.closed && now - ws.lastReceived >= closeTimeoutMs) bridge.tcp.destroy(new NetError('ETIMEDOUT', 'TCP side still open after the WebSocket closed'));
        continue;
      }
      if (ws.closeSentAt !== 0) {
        if (now - ws.closeSentAt >= closeTimeoutMs) ws.destroy(new NetError('ETIMEDOUT', 'no answer to the close frame'));
        continue;
      }
      if (pingIntervalMs <= 0) continue;
      if (ws.pingSentAt !== 0) {
        if (now - ws.pingSentAt >= pongTimeoutMs) ws.destroy(new NetError('ETIMEDOUT', `no pong within ${pongTimeoutMs} ms: the peer is gone`));
      } else if (now - ws.lastReceived >= pingIntervalMs) ws.ping(now);
    }
  }
}
