import { NetError, type Conn, type ConnHandler } from '@wmproxy/core-net';
import {
  CLOSE_ABNORMAL, CLOSE_NO_STATUS, FrameParser, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
  closePayload, encodeFrame, frameHeader, frameInHeadroom, parseClosePayload,
  type ControlOpcode, type DataOpcode, type FrameSink,
} from './frame.js';

/** What a WebSocket endpoint reports to its owner (the bridge). */
export interface WsEvents {
  messageStart(ws: WsEndpoint, opcode: DataOpcode): void;
  messageData(ws: WsEndpoint, bytes: Uint8Array): void;
  messageEnd(ws: WsEndpoint): void;
  /** The write queue fell below the high-water mark after a send returned false. */
  drain(ws: WsEndpoint): void;
  /** One read's frames have all been delivered (a bridge writes what they carried in one go). */
  flush(ws: WsEndpoint): void;
  /** The peer sent a close frame (1005 when it carried no code). */
  peerClose(ws: WsEndpoint, code: number, reason: string): void;
  /**
   * The TCP connection under the WebSocket is gone. `code` is the close code
   * received, or 1006 when none was (the peer vanished, a ping went
   * unanswered, or this side failed the connection); `error` is set then.
   */
  closed(ws: WsEndpoint, code: number, error: Error | undefined): void;
}

export interface WsEndpointOptions {
  role: 'server' | 'client';
  maxMessageSize: number;
  validateUtf8?: boolean;
}

/**
 * One WebSocket connection over a core-net Conn: frames out, parsed frames
 * in, pings answered, the close handshake. Sends return what `Conn.write`
 * returns (false above the high-water mark: wait for `drain`), so the
 * owner's backpressure is the Conn's.
 */
export class WsEndpoint implements FrameSink {
  readonly conn: Conn;
  readonly role: 'server' | 'client';
  /** Owner's state. */
  owner: unknown = undefined;
  /** Clock reading of the last frame received; the keepalive reads it. */
  lastReceived = Date.now();
  /** When our unanswered ping went out (0: none outstanding). */
  pingSentAt = 0;
  /** When our close frame went out (0: not yet). */
  closeSentAt = 0;
  closeReceived = false;
  /** The close code received (1006 until one is). */
  closeCode = CLOSE_ABNORMAL;
  private readonly parser: FrameParser;
  private readonly masked: boolean;
  private events: WsEvents | undefined;
  private failure: Error | undefined;

  constructor(conn: Conn, options: WsEndpointOptions) {
    this.conn = conn;
    this.role = options.role;
    this.masked = options.role === 'client';
    const parserOptions = { role: options.role, maxMessageSize: options.maxMessageSize, validateUtf8: options.validateUtf8 ?? true };
    this.parser = new FrameParser(this, parserOptions);
  }

  /** Start reading; `unread` is what followed the handshake in the same read. */
  start(events: WsEvents, unread?: Uint8Array): void {
    this.events = events;
    this.conn.userData = this;
    this.conn.setHandler(endpointHandler, unread);
  }

  get closing(): boolean {
    return this.closeSentAt !== 0;
  }

  /**
   * `bytes` may be queued as is (not copied): the caller must not reuse it.
   * `headroom`: bytes just before `bytes` in its buffer that are the caller's
   * (Conn.readHeadroom); the frame header is written there, header and
   * payload leave in one write with no copy (a client's payload is masked in
   * place: with headroom, `bytes` is the caller's read chunk, its own).
   */
  sendBinary(bytes: Uint8Array, headroom = 0): boolean {
    const frame = headroom > 0 ? frameInHeadroom(OP_BINARY, bytes, headroom, this.masked) : undefined;
    if (frame !== undefined) return this.conn.write(frame);
    // A server's large payload goes out behind its own header: no copy of the payload.
    if (!this.masked && bytes.length >= COPY_LIMIT) {
      // Two writes, not Conn.writev nor a copy: on Node both cost more CPU per GiB (bench/ws-bridge.mjs, download).
      this.conn.write(frameHeader(OP_BINARY, bytes.length));
      return this.conn.write(bytes);
    }
    return this.conn.write(encodeFrame(OP_BINARY, bytes, true, this.masked));
  }

  sendText(utf8: Uint8Array): boolean {
    return this.conn.write(encodeFrame(OP_TEXT, utf8, true, this.masked));
  }

  ping(now: number): void {
    this.pingSentAt = now;
    this.conn.write(encodeFrame(OP_PING, EMPTY_PAYLOAD, true, this.masked));
  }

  /** Start the close handshake; the TCP connection ends once the peer answers (or the owner's deadline passes). */
  close(code: number, reason = ''): void {
    if (this.closeSentAt !== 0 || this.conn.closed) return;
    this.closeSentAt = Date.now();
    this.conn.write(encodeFrame(OP_CLOSE, closePayload(code, reason), true, this.masked));
    // The server ends TCP first (RFC 6455 5.5.1); a client waits for it, under the owner's deadline.
    if (this.closeReceived && this.role === 'server') this.conn.end();
  }

  /** Fail the connection (RFC 6455 7.1.7): a close frame with `code`, no more reading, then end. */
  fail(code: number, reason: string): void {
    this.failure ??= new NetError('EPROTO', `websocket ${code}: ${reason}`);
    // Not paused: the peer's FIN must still be read (Bun sees no FIN on a paused socket); the halted parser drops data.
    this.parser.halt();
    this.conn.resume();
    if (this.closeSentAt === 0 && !this.conn.closed) {
      this.closeSentAt = Date.now();
      this.conn.write(encodeFrame(OP_CLOSE, closePayload(code, reason), true, this.masked));
    }
    this.conn.end();
  }

  /** Drop the connection without a close frame (dead peer, shutdown by force). */
  destroy(error: Error): void {
    this.failure ??= error;
    this.parser.halt();
    this.conn.destroy(error);
  }

  pause(): void {
    this.conn.pause();
  }
  resume(): void {
    if (!this.parser.failed) this.conn.resume();
  }

  // FrameSink: called by the parser.
  messageStart(opcode: DataOpcode): void {
    this.events!.messageStart(this, opcode);
  }
  messageData(bytes: Uint8Array): void {
    this.events!.messageData(this, bytes);
  }
  messageEnd(): void {
    this.events!.messageEnd(this);
  }
  control(opcode: ControlOpcode, payload: Uint8Array): void {
    if (opcode === OP_PING) {
      if (this.closeSentAt === 0) this.conn.write(encodeFrame(OP_PONG, payload, true, this.masked));
      return;
    }
    if (opcode === OP_PONG) {
      this.pingSentAt = 0;
      return;
    }
    const parsed = parseClosePayload(payload);
    if (!parsed.ok) {
      this.fail(parsed.failCode, parsed.why);
      return;
    }
    this.closeReceived = true;
    this.closeCode = parsed.code;
    this.parser.halt();
    const echo = parsed.code === CLOSE_NO_STATUS ? 1000 : parsed.code;
    const alreadySent = this.closeSentAt !== 0;
    this.events!.peerClose(this, parsed.code, parsed.reason);
    if (!alreadySent) this.close(echo);
    else if (this.role === 'server') this.conn.end();
  }

  /** @internal */
  onData(chunk: Uint8Array): void {
    this.lastReceived = Date.now();
    this.pingSentAt = 0;
    const code = this.parser.push(chunk);
    this.events!.flush(this);
    if (code !== 0) this.fail(code, this.parser.reason);
  }
  /** @internal */
  onDrain(): void {
    this.events?.drain(this);
  }
  /** @internal */
  onClose(error: Error | undefined): void {
    const code = this.closeReceived ? this.closeCode : CLOSE_ABNORMAL;
    const why = this.failure ?? error ?? (this.closeReceived ? undefined : new NetError('ECONNRESET', 'the WebSocket connection closed without a close frame'));
    this.events?.closed(this, code, why);
  }
}

const EMPTY_PAYLOAD = new Uint8Array(0);
/** Payloads from this size on are sent without copying them next to their header. */
const COPY_LIMIT = 16 * 1024;

const endpointHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as WsEndpoint).onData(chunk);
  },
  drain(conn) {
    (conn.userData as WsEndpoint).onDrain();
  },
  end(conn) {
    // A FIN without a close frame: nothing more will come. Finish our side.
    const ws = conn.userData as WsEndpoint;
    if (!ws.closeReceived) ws.destroy(new NetError('ECONNRESET', 'the peer ended the TCP connection without a close frame'));
    else conn.end();
  },
  close(conn, error) {
    (conn.userData as WsEndpoint).onClose(error);
  },
};
