import type { Conn, ConnHandler, ConnTracker } from './types.js';

let nextConnId = 1;

/**
 * Buffers what arrives before its owner installs a handler, pausing the
 * socket once `BUFFER_LIMIT` bytes are held so an idle owner cannot be flooded.
 */
const BUFFER_LIMIT = 64 * 1024;

interface BufferedState {
  chunks: Uint8Array[];
  size: number;
  ended: boolean;
}

const bufferingHandler: ConnHandler = {
  data(conn, chunk) {
    const buffered = ((conn as ConnBase).buffered ??= { chunks: [], size: 0, ended: false });
    buffered.chunks.push(chunk.slice());
    buffered.size += chunk.byteLength;
    if (buffered.size >= BUFFER_LIMIT) conn.pause();
  },
  end(conn) {
    ((conn as ConnBase).buffered ??= { chunks: [], size: 0, ended: false }).ended = true;
  },
  close() {
    // Nothing to do: the owner sees `closed` when it installs its handler.
  },
};

/** What both runtime connections share: ids, handler switching, buffering. */
export abstract class ConnBase implements Conn {
  readonly id = nextConnId++;
  handler: ConnHandler = bufferingHandler;
  /** What arrived before the owner's handler (allocated only then: most owners install theirs at once). */
  buffered: BufferedState | undefined = undefined;
  closed = false;
  closeError: Error | undefined;
  peerEnded = false;
  userData: unknown = undefined;
  tracker: ConnTracker | undefined = undefined;
  /** See Conn.readHeadroom: set by a runtime around the dispatch of a chunk it allocated with room before it. */
  readHeadroom = 0;

  abstract readonly remoteAddress: string;
  abstract readonly remotePort: number;
  abstract showPeer(address: string, port: number): void;
  abstract readonly localAddress: string;
  abstract readonly localPort: number;
  abstract readonly bytesRead: number;
  abstract readonly bytesWritten: number;
  abstract write(chunk: Uint8Array): boolean;
  abstract end(): void;
  abstract destroy(error?: Error): void;
  /** No RST to send below a stream that is not a TCP socket: close as `destroy` does. */
  reset(error?: Error): void {
    this.destroy(error);
  }
  abstract pause(): void;
  abstract resume(): void;
  abstract setNoDelay(noDelay?: boolean): void;

  setHandler(handler: ConnHandler, unread?: Uint8Array): void {
    const previous = this.handler;
    this.handler = handler;
    const held = previous === bufferingHandler ? this.buffered : undefined;
    this.buffered = undefined;
    if (unread && unread.byteLength > 0) handler.data(this, unread);
    if (held) {
      for (const chunk of held.chunks) {
        if (this.handler !== handler) {
          // The new handler switched again mid-replay; pass the rest on.
          this.handler.data(this, chunk);
        } else handler.data(this, chunk);
      }
      if (held.size >= BUFFER_LIMIT && !this.closed) this.resume();
      if (held.ended) this.handler.end?.(this);
    }
    if (this.closed) this.handler.close(this, this.closeError);
  }

  /** Runtime adapters call these. */
  dispatchData(chunk: Uint8Array): void {
    this.handler.data(this, chunk);
  }
  dispatchEnd(): void {
    if (this.peerEnded) return;
    this.peerEnded = true;
    this.handler.end?.(this);
  }
  dispatchClose(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = error;
    this.tracker?.untrack(this);
    this.handler.close(this, error);
  }
}

/**
 * Hand a connection back to the default buffering handler, as when it was
 * accepted: a protocol that has read a handshake on it (a SOCKS5 or HTTP
 * CONNECT reply) passes the socket on, and the next `setHandler` gets
 * `unread` first, then whatever arrived meanwhile, then the peer's FIN.
 */
export function releaseConn(conn: Conn, unread?: Uint8Array): void {
  conn.setHandler(bufferingHandler, unread);
  if (conn instanceof ConnBase && conn.peerEnded) (conn.buffered ??= { chunks: [], size: 0, ended: false }).ended = true;
}
