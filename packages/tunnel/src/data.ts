/**
 * Data connections (rathole's pool): extra connections from a client to the
 * server's tunnel port, each carrying one visitor as raw bytes, so that TCP,
 * not the mux's framing and credit, does the flow control.
 *
 *   client → HELLO     flags DATA_CONNECTION: "WMTU" version(1) clientNonce(32) sessionId
 *   server → CHALLENGE version(1) serverNonce(32) serverId
 *   client → AUTH      HMAC-SHA256(token, "wmtunnel-data:" sessionId | clientNonce | serverNonce | serverId)
 *   server → AUTH_OK   HMAC-SHA256(token, "wmtunnel-data-server:" sessionId | serverNonce | clientNonce | serverId)
 *            or ERROR  reason (then close)
 *   ... idle: server → PING, client → PONG (each heartbeat) ...
 *   server → OPEN      the mux OPEN's JSON (mapping, visitor)
 *   client → OPEN_OK   then raw bytes both ways, or OPEN_FAIL reason (then close)
 *   or, promotion (a client whose session HELLO carried HELLO_CAN_MOVE):
 *   server → MOVE      u32 id of a mux stream that proved bulk
 *   client → OPEN_OK   then its MOVED marker on the mux, its bytes of the stream here;
 *                      or OPEN_FAIL (no such stream: it ended there)
 *   server             on OPEN_OK: its MOVED marker on the mux, its bytes here
 *
 * Promotion keeps each direction in order: its sender writes MOVED on the
 * mux stream behind its last DATA frame and its later bytes on the data
 * connection; its receiver reads the mux up to the marker, then the data
 * connection (holding what comes there first). A direction that ended
 * before the move finishes on the mux (TunnelStream.move).
 *
 * The MAC is keyed by the token of the session's credential and binds the
 * session id and a fresh server nonce: a data connection is accepted only for
 * a live session, by a client holding that session's token, and a captured
 * AUTH is worthless on another connection.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { NetError, type Conn, type ConnHandler } from '@wmproxy/core-net';
import { FrameQueue, FrameType, HEADER_SIZE, encodeFrame, readU32, type FrameType as FrameTypeT } from './frame.js';

/** HELLO flag: this connection is a data connection of an existing session. */
export const DATA_CONNECTION_FLAG = 2;
/** Most idle data connections a server keeps per session, whatever it is configured to. */
export const MAX_DATA_POOL = 256;
const MAX_FRAME = 4096;

export function dataMac(token: string, side: 'client' | 'server', sessionId: string, first: Uint8Array, second: Uint8Array, serverId: string): Buffer {
  const label = side === 'client' ? 'wmtunnel-data:' : 'wmtunnel-data-server:';
  return createHmac('sha256', token).update(label + sessionId).update(first).update(second).update(serverId).digest();
}

export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

export interface DataFrame {
  type: FrameTypeT;
  flags: number;
  payload: Uint8Array;
}

/**
 * Reads the few small frames a data connection starts with, then steps
 * aside: once `detach()` is called (from within a frame callback or later),
 * no byte more is parsed and `detach()` returns what followed the last frame,
 * for the relay to deliver first.
 */
export class DataLink {
  readonly conn: Conn;
  /** Frames go here when set; else they queue for `next()`. */
  onFrame: ((link: DataLink, frame: DataFrame) => void) | undefined;
  onClose: ((link: DataLink, error: Error | undefined) => void) | undefined;
  /** The owner's state (the server's session). */
  userSession: unknown;
  /** When the last frame arrived (idle liveness). */
  lastSeen = Date.now();
  private buffer: Uint8Array | undefined;
  private readonly frames = new FrameQueue<DataFrame>(
    'tunnel data connection',
    (error) => this.close(error),
    () => this.close(new NetError('EPROTO', 'tunnel data connection: too many frames')),
  );
  private detached = false;
  private reported = false;

  constructor(conn: Conn, first?: Uint8Array) {
    this.conn = conn;
    conn.userData = this;
    conn.setNoDelay(true);
    conn.setHandler(linkHandler);
    if (first) this.push(first);
  }

  get closed(): boolean {
    return this.conn.closed || this.frames.failure !== undefined;
  }

  /** False: the peer is not reading (the connection's write backlog is past its high-water mark). */
  send(type: FrameTypeT, payload?: Uint8Array, flags = 0): boolean {
    return !this.conn.closed && this.conn.write(encodeFrame(type, flags, 0, payload));
  }

  /** Refuse with a reason (the peer reads an ERROR frame, or OPEN_FAIL), then close. */
  fail(reason: string, type: FrameTypeT = FrameType.ERROR): void {
    this.send(type, Buffer.from(reason.slice(0, 512)));
    // end(), not destroy(): the reason must reach the peer.
    endThenDestroy(this.conn);
    this.frames.fail(new NetError('EAUTH', reason));
  }

  close(error?: Error): void {
    this.frames.fail(error ?? new NetError('ECONNRESET', 'tunnel data connection closed'));
    if (!this.conn.closed) this.conn.destroy(error);
  }

  /** The next frame, within `timeoutMs` (the connection is closed on timeout). */
  next(timeoutMs: number, what: string): Promise<DataFrame> {
    return this.frames.next(timeoutMs, what);
  }

  /**
   * From now on frames go to `onFrame`, starting with any that came with the
   * last awaited one (a server may send OPEN right behind AUTH_OK).
   */
  listen(onFrame: (link: DataLink, frame: DataFrame) => void, onClose: (link: DataLink, error: Error | undefined) => void): void {
    this.onFrame = onFrame;
    this.onClose = onClose;
    for (let frame = this.frames.take(); frame !== undefined && this.onFrame === onFrame; frame = this.frames.take()) onFrame(this, frame);
  }

  /** Stop parsing; returns the bytes that followed the last frame (if any). The caller installs the next handler. */
  detach(): Uint8Array | undefined {
    this.detached = true;
    this.onFrame = undefined;
    this.onClose = undefined;
    // Copied: it may be a view of a chunk the runtime reuses.
    const rest = this.buffer === undefined ? undefined : new Uint8Array(this.buffer);
    this.buffer = undefined;
    this.conn.userData = undefined;
    return rest;
  }

  /** @internal */
  push(chunk: Uint8Array): void {
    let data = chunk;
    if (this.buffer) {
      data = new Uint8Array(this.buffer.byteLength + chunk.byteLength);
      data.set(this.buffer, 0);
      data.set(chunk, this.buffer.byteLength);
      this.buffer = undefined;
    }
    let offset = 0;
    while (!this.detached && data.byteLength - offset >= HEADER_SIZE) {
      const length = readU32(data, offset + 6);
      if (length > MAX_FRAME) {
        this.close(new NetError('EPROTO', `tunnel data connection: frame of ${length} bytes`));
        return;
      }
      if (data.byteLength - offset < HEADER_SIZE + length) break;
      // Copied: the chunk may be a view the caller's buffer backs.
      const frame: DataFrame = { type: data[offset] as FrameTypeT, flags: data[offset + 1]!, payload: data.slice(offset + HEADER_SIZE, offset + HEADER_SIZE + length) };
      offset += HEADER_SIZE + length;
      // What follows this frame stays the buffer while it is handled: a detach() there takes it.
      this.buffer = offset < data.byteLength ? data.subarray(offset) : undefined;
      this.deliver(frame);
      if (this.frames.failure || this.detached) return;
    }
    this.buffer = offset < data.byteLength ? data.slice(offset) : undefined;
  }

  private deliver(frame: DataFrame): void {
    this.lastSeen = Date.now();
    if (this.onFrame) {
      this.onFrame(this, frame);
      return;
    }
    this.frames.push(frame);
  }

  /** @internal */
  closedByPeer(error: Error | undefined): void {
    if (this.reported) return;
    this.reported = true;
    const onClose = this.onClose;
    this.close(error);
    onClose?.(this, error);
  }
}

const linkHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as DataLink).push(chunk);
  },
  end(conn) {
    // No half-close before the relay starts: the peer gave up on this connection.
    (conn.userData as DataLink).closedByPeer(undefined);
  },
  close(conn, error) {
    (conn.userData as DataLink | undefined)?.closedByPeer(error);
  },
};

/** A connection we end waits this long for its peer's close, then is destroyed (a peer that never closes). */
const END_LINGER_MS = 1000;

/** End `conn` (what was written reaches the peer) and destroy it after END_LINGER_MS if the peer has not closed. */
export function endThenDestroy(conn: Conn): void {
  conn.end();
  setTimeout(destroyConn, END_LINGER_MS, conn).unref?.();
}

function destroyConn(conn: Conn): void {
  conn.destroy();
}

/**
 * Wait for a new connection's first two bytes (a HELLO's type and flags tell
 * a data connection from a session) and hand them on with what is left of
 * `timeoutMs` (the handshake's budget: a peer trickling its first bytes does
 * not get a second full timeout); the connection is closed if they do not
 * come within `timeoutMs`.
 */
export function peekFirstBytes(conn: Conn, timeoutMs: number, done: (conn: Conn, bytes: Uint8Array, remainingMs: number) => void): void {
  const state: Peek = { bytes: undefined, done, deadline: Date.now() + timeoutMs, timer: setTimeout(destroyConn, timeoutMs, conn) };
  conn.userData = state;
  conn.setHandler(peekHandler);
}

interface Peek {
  bytes: Uint8Array | undefined;
  done: (conn: Conn, bytes: Uint8Array, remainingMs: number) => void;
  deadline: number;
  timer: ReturnType<typeof setTimeout>;
}

const peekHandler: ConnHandler = {
  data(conn, chunk) {
    const state = conn.userData as Peek;
    let bytes = chunk;
    if (state.bytes) {
      bytes = new Uint8Array(state.bytes.byteLength + chunk.byteLength);
      bytes.set(state.bytes, 0);
      bytes.set(chunk, state.bytes.byteLength);
    }
    if (bytes.byteLength < 2) {
      state.bytes = new Uint8Array(bytes);
      return;
    }
    clearTimeout(state.timer);
    conn.userData = undefined;
    state.done(conn, bytes, Math.max(1, state.deadline - Date.now()));
  },
  end(conn) {
    // A peer that half-closed before its first two bytes will never send them: it held its handshake slot until the timeout.
    conn.destroy();
  },
  close(conn) {
    const state = conn.userData as Peek | undefined;
    if (state) clearTimeout(state.timer);
  },
};
