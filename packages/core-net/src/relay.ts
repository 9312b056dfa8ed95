import { NetError } from './errors.js';
import type { Conn, ConnHandler } from './types.js';

export const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000;

export interface RelayStats {
  /** Bytes from the client to the upstream, and back. */
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
  /** Why it ended: both sides finished, one side's error, or the idle timeout. */
  reason: 'done' | 'idle' | 'error' | 'aborted';
  error?: Error;
}

export interface RelayOptions {
  /** Close both sides after this long without a byte either way (default 5 min; 0 = never). */
  idleTimeoutMs?: number;
  /**
   * When a side dies of an error, abort the other with `reset()` (a TCP RST)
   * rather than `destroy()` (a FIN where the runtime closes gracefully):
   * for a peer that must read the failure as one, e.g. a tunnel's raw data
   * connection standing in for the failed side.
   */
  resetOnError?: boolean;
  onClose?(stats: RelayStats): void;
}

/**
 * Pipe two connections both ways with backpressure (a side whose peer's
 * queue is full is paused until it drains), half-close (a FIN is passed on,
 * the other direction keeps flowing) and an idle timeout. Memory per relay
 * is bounded by the connections' high-water marks.
 */
export class Relay {
  readonly client: Conn;
  readonly upstream: Conn;
  bytesUp = 0;
  bytesDown = 0;
  private readonly startedAt = Date.now();
  private lastActivity = this.startedAt;
  private readonly idleTimeoutMs: number;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private finished = false;
  private failure: Error | undefined;
  private reason: RelayStats['reason'] = 'done';
  private readonly onClose: ((stats: RelayStats) => void) | undefined;
  private readonly resetOnError: boolean;

  constructor(client: Conn, upstream: Conn, options: RelayOptions = {}) {
    this.client = client;
    this.upstream = upstream;
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.onClose = options.onClose;
    this.resetOnError = options.resetOnError ?? false;
    client.userData = this;
    upstream.userData = this;
    if (this.idleTimeoutMs > 0) this.idleTimer = setTimeout(onIdleTimer, this.idleTimeoutMs, this);
    upstream.setHandler(relayHandler);
    client.setHandler(relayHandler);
  }

  /** Close both sides now (for example on shutdown or when an upstream is marked down). */
  abort(error?: Error): void {
    this.reason = 'aborted';
    this.failure ??= error;
    this.client.destroy(error);
    this.upstream.destroy(error);
  }

  /** @internal */
  peerOf(conn: Conn): Conn {
    return conn === this.client ? this.upstream : this.client;
  }
  /** @internal */
  touch(bytes: number, fromClient: boolean): void {
    this.lastActivity = Date.now();
    if (fromClient) this.bytesUp += bytes;
    else this.bytesDown += bytes;
  }
  /** @internal */
  checkIdle(): void {
    if (this.finished) return;
    const idleFor = Date.now() - this.lastActivity;
    if (idleFor >= this.idleTimeoutMs) {
      this.reason = 'idle';
      const error = new NetError('EIDLE', `no traffic for ${this.idleTimeoutMs} ms`);
      this.failure = error;
      this.client.destroy(error);
      this.upstream.destroy(error);
      return;
    }
    this.idleTimer = setTimeout(onIdleTimer, this.idleTimeoutMs - idleFor, this);
  }
  /** @internal */
  sideClosed(conn: Conn, error: Error | undefined): void {
    if (error && !this.failure) {
      this.failure = error;
      if (this.reason === 'done') this.reason = 'error';
    }
    const peer = this.peerOf(conn);
    if (!peer.closed) {
      // Flush what the peer still has queued, then FIN; an error kills it.
      if (error) {
        if (this.resetOnError) peer.reset(error);
        else peer.destroy(error);
      } else {
        peer.end();
        // The peer may be paused for this side's drain, which will not come: reading again, it sees its
        // FIN and closes (what it still sends has nowhere to go and destroys it, see relayHandler.data).
        peer.resume();
      }
      return;
    }
    this.finish();
  }
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.idleTimer);
    const stats: RelayStats = {
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      durationMs: Date.now() - this.startedAt,
      reason: this.reason,
    };
    if (this.failure) stats.error = this.failure;
    this.onClose?.(stats);
  }
}

function onIdleTimer(relay: Relay): void {
  relay.checkIdle();
}

const relayHandler: ConnHandler = {
  data(conn, chunk) {
    const relay = conn.userData as Relay;
    relay.touch(chunk.byteLength, conn === relay.client);
    const peer = relay.peerOf(conn);
    if (!peer.write(chunk)) {
      if (peer.closed) conn.destroy();
      else conn.pause();
    }
  },
  drain(conn) {
    const relay = conn.userData as Relay;
    relay.peerOf(conn).resume();
  },
  end(conn) {
    const relay = conn.userData as Relay;
    relay.peerOf(conn).end();
  },
  close(conn, error) {
    (conn.userData as Relay).sideClosed(conn, error);
  },
};

/** Relay `client` and `upstream` until both are done; resolves with the counters. */
export function relay(client: Conn, upstream: Conn, options: Omit<RelayOptions, 'onClose'> = {}): Promise<RelayStats> {
  return new Promise((resolve) => {
    new Relay(client, upstream, { ...options, onClose: resolve });
  });
}
