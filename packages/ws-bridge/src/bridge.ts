import { NetError, type Conn, type ConnHandler } from '@wmproxy/core-net';
import { Base64Decoder, encodeBase64 } from './base64.js';
import type { WsEndpoint, WsEvents } from './endpoint.js';
import {
  CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_INVALID_DATA, CLOSE_NO_STATUS, CLOSE_NORMAL, CLOSE_UNSUPPORTED_DATA, OP_TEXT,
  type DataOpcode,
} from './frame.js';

/** Small payload pieces of one read are gathered into one TCP write up to this size. */
const GATHER_LIMIT = 64 * 1024;
/** Pieces from this size on are written as they are, never copied into a gathered write. */
const SMALL_PIECE = 4 * 1024;

/** What happens to text messages when the subprotocol is not `base64`. */
export type TextPolicy = 'forward' | 'refuse';

export interface BridgeStats {
  /** Bytes from the WebSocket side to TCP, and back (payload bytes, after base64 decoding). */
  bytesToTcp: number;
  bytesToWs: number;
  /** The close code the WebSocket peer sent (1006: none). */
  wsCloseCode: number;
  /** How the TCP side ended: `fin` (clean), `reset` (an error on either side). */
  tcpEnd: 'fin' | 'reset';
  error?: Error;
}

export interface BridgeOptions {
  /** `base64`: messages carry base64 text both ways (websockify's `base64` subprotocol). */
  encoding: 'binary' | 'base64';
  text: TextPolicy;
  onClose?(bridge: Bridge, stats: BridgeStats): void;
}

/**
 * Relays one WebSocket and one TCP connection, with backpressure both ways
 * (whichever side's peer queue is above its high-water mark is paused until
 * that queue drains; nothing is buffered beyond the Conns' own queues) and
 * close mapping:
 *
 * | WebSocket                          | TCP                                |
 * |------------------------------------|------------------------------------|
 * | close 1000 / 1001 / no code        | FIN (after queued bytes)           |
 * | any other code, or none (1006)     | RST (Conn.reset), queue dropped    |
 * | close 1000 sent                    | FIN received                       |
 * | close 1011 sent                    | reset or error                     |
 */
export class Bridge implements WsEvents {
  readonly ws: WsEndpoint;
  readonly tcp: Conn;
  bytesToTcp = 0;
  bytesToWs = 0;
  private readonly base64: boolean;
  private readonly textPolicy: TextPolicy;
  private readonly decoder: Base64Decoder | undefined;
  /** The current message is base64 text to decode (or text to forward). */
  private decoding = false;
  private tcpClosed = false;
  private wsClosed = false;
  private tcpReset = false;
  private error: Error | undefined;
  private finished = false;
  private readonly onClose: BridgeOptions['onClose'];
  /**
   * Payload of the current read, written on `flush`: the open run of adjacent
   * views (the parser lays one read's payload out contiguously) joined as
   * start view + length, then the runs before it in `pending`.
   */
  private run: Uint8Array | undefined = undefined;
  private runLength = 0;
  private readonly pending: Uint8Array[] = [];
  /** What `flush` writes (reused: no array per read). */
  private readonly out: Uint8Array[] = [];

  constructor(ws: WsEndpoint, tcp: Conn, options: BridgeOptions) {
    this.ws = ws;
    this.tcp = tcp;
    this.base64 = options.encoding === 'base64';
    this.textPolicy = options.text;
    this.decoder = this.base64 ? new Base64Decoder() : undefined;
    this.onClose = options.onClose;
    ws.owner = this;
    tcp.userData = this;
  }

  start(unread?: Uint8Array): void {
    this.tcp.setHandler(tcpHandler);
    this.ws.start(this, unread);
  }

  /** Close both sides now (shutdown): a 1001 to the WebSocket peer, the TCP side closed. */
  abort(reason = 'server shutting down'): void {
    this.ws.close(CLOSE_GOING_AWAY, reason);
    this.tcpReset = true;
    this.tcp.reset(new NetError('EABORTED', reason));
  }

  // WebSocket → TCP.
  messageStart(ws: WsEndpoint, opcode: DataOpcode): void {
    if (opcode !== OP_TEXT) {
      this.decoding = false;
      return;
    }
    if (this.base64) {
      this.decoding = true;
      return;
    }
    if (this.textPolicy === 'refuse') this.failWs(CLOSE_UNSUPPORTED_DATA, 'text messages are refused: send binary');
    this.decoding = false;
    void ws;
  }
  messageData(_ws: WsEndpoint, bytes: Uint8Array): void {
    let out: Uint8Array | undefined = bytes;
    if (this.decoding) {
      out = this.decoder!.push(bytes);
      if (out === undefined) {
        this.failWs(CLOSE_INVALID_DATA, 'not base64');
        return;
      }
    }
    this.toTcp(out, !this.decoding);
  }
  messageEnd(_ws: WsEndpoint): void {
    if (!this.decoding) return;
    const rest = this.decoder!.end();
    if (rest === undefined) this.failWs(CLOSE_INVALID_DATA, 'base64 text ends inside a group');
    else this.toTcp(rest, false);
  }
  drain(_ws: WsEndpoint): void {
    this.tcp.resume();
  }
  peerClose(ws: WsEndpoint, code: number): void {
    if (this.tcpClosed) return;
    // Data that came in the same read as the close frame goes first.
    this.flush(ws);
    if (code === CLOSE_NORMAL || code === CLOSE_GOING_AWAY || code === CLOSE_NO_STATUS) this.tcp.end();
    else this.resetTcp(new NetError('ECONNRESET', `the WebSocket peer closed with ${code}`));
  }
  closed(ws: WsEndpoint, code: number, error: Error | undefined): void {
    this.wsClosed = true;
    if (!error) this.flush(ws);
    if (error) this.error ??= error;
    // No close frame (1006) or a failure: the TCP peer must not take it for a clean end.
    if (!this.tcpClosed) {
      if (error) this.resetTcp(error);
      else if (code === CLOSE_NORMAL || code === CLOSE_GOING_AWAY || code === CLOSE_NO_STATUS) this.tcp.end();
    }
    this.maybeFinish();
  }

  /** `joinable`: a view of the read chunk (not a decoded copy), that may continue the open run. */
  private toTcp(bytes: Uint8Array, joinable: boolean): void {
    if (bytes.length === 0 || this.tcpClosed) return;
    this.bytesToTcp += bytes.length;
    const run = this.run;
    if (run !== undefined) {
      if (joinable && bytes.buffer === run.buffer && bytes.byteOffset === run.byteOffset + this.runLength) {
        this.runLength += bytes.length;
        return;
      }
      this.pending.push(this.runLength === run.length ? run : new Uint8Array(run.buffer, run.byteOffset, this.runLength));
    }
    this.run = bytes;
    this.runLength = bytes.length;
  }

  /**
   * Write what one read of the WebSocket carried: its payload is usually one
   * run (one write, whatever the number of frames). Separate pieces (base64
   * decoded): runs of small ones gathered into one buffer each, large ones as
   * they are, all in one `writev` where the Conn has it, else one write each.
   */
  flush(_ws: WsEndpoint): void {
    const run = this.run;
    if (run === undefined) return;
    const pending = this.pending;
    pending.push(this.runLength === run.length ? run : new Uint8Array(run.buffer, run.byteOffset, this.runLength));
    this.run = undefined;
    let writable = true;
    if (this.tcpClosed) {
      // Nothing to write to any more.
    } else if (pending.length === 1) {
      writable = this.tcp.write(pending[0]!);
    } else {
      const out = this.out;
      let runStart = 0;
      let runBytes = 0;
      for (let i = 0; i <= pending.length; i++) {
        const piece = pending[i];
        if (piece !== undefined && piece.length < SMALL_PIECE && runBytes + piece.length <= GATHER_LIMIT) {
          runBytes += piece.length;
          continue;
        }
        // The run of small pieces before this one goes out together.
        if (i - runStart === 1) out.push(pending[runStart]!);
        else if (i - runStart > 1) out.push(Buffer.concat(pending.slice(runStart, i), runBytes));
        if (piece === undefined) break;
        if (piece.length >= SMALL_PIECE) {
          out.push(piece);
          runStart = i + 1;
          runBytes = 0;
        } else {
          runStart = i;
          runBytes = piece.length;
        }
      }
      if (out.length === 1) writable = this.tcp.write(out[0]!);
      else if (this.tcp.writev !== undefined) writable = this.tcp.writev(out);
      else for (const chunk of out) writable = this.tcp.write(chunk);
      out.length = 0;
    }
    pending.length = 0;
    if (!writable) this.ws.pause();
  }

  private failWs(code: number, reason: string): void {
    this.error ??= new NetError('EPROTO', `websocket ${code}: ${reason}`);
    this.ws.fail(code, reason);
    this.resetTcp(this.error);
  }

  private resetTcp(error: Error): void {
    this.pending.length = 0;
    this.run = undefined;
    this.tcpReset = true;
    this.tcp.reset(error);
  }

  // TCP → WebSocket.
  /** @internal */
  tcpData(chunk: Uint8Array): void {
    if (this.wsClosed || this.ws.closing) return;
    this.bytesToWs += chunk.length;
    const sent = this.base64 ? this.ws.sendText(encodeBase64(chunk)) : this.ws.sendBinary(chunk, this.tcp.readHeadroom ?? 0);
    if (!sent) this.tcp.pause();
  }
  /** @internal */
  tcpDrain(): void {
    this.ws.resume();
  }
  /** @internal */
  tcpEnd(): void {
    // FIN from the target: a clean close towards the WebSocket peer.
    this.ws.close(CLOSE_NORMAL);
  }
  /** @internal */
  tcpClose(error: Error | undefined): void {
    this.tcpClosed = true;
    if (error) {
      this.tcpReset = true;
      this.error ??= error;
      if (!this.wsClosed) this.ws.close(CLOSE_INTERNAL_ERROR, 'upstream connection failed');
    } else if (!this.wsClosed) this.ws.close(CLOSE_NORMAL);
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.finished || !this.tcpClosed || !this.wsClosed) return;
    this.finished = true;
    const stats: BridgeStats = {
      bytesToTcp: this.bytesToTcp,
      bytesToWs: this.bytesToWs,
      wsCloseCode: this.ws.closeCode,
      tcpEnd: this.tcpReset ? 'reset' : 'fin',
    };
    if (this.error) stats.error = this.error;
    this.onClose?.(this, stats);
  }
}

const tcpHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as Bridge).tcpData(chunk);
  },
  drain(conn) {
    (conn.userData as Bridge).tcpDrain();
  },
  end(conn) {
    (conn.userData as Bridge).tcpEnd();
  },
  close(conn, error) {
    (conn.userData as Bridge).tcpClose(error);
  },
};
