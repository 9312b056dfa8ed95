/**
 * Streams over one connection, with per-stream credit-based flow control.
 *
 * - Each stream may have at most one window of unacknowledged bytes in
 *   flight; the receiver returns credit (WINDOW_UPDATE) once half of it was
 *   handed to the stream's reader. A paused reader therefore holds at most one
 *   window, and its sender simply stops: the shared connection never waits on
 *   one stream (no head-of-line blocking).
 * - The window starts at `initialWindow` and doubles, up to `maxWindow`, while
 *   the reader consumes half a window faster than two round trips: then the
 *   window, not the reader, limits the stream (as QUIC and HTTP/2 stacks
 *   auto-tune theirs). Only a stream being read grows; a stalled one keeps
 *   the window it had.
 * - The writer runs once per event-loop turn (setImmediate: every stream that
 *   got data in one poll shares its writes; a microtask per stream cost a TLS
 *   record and a send per request under many small requests). It takes up to
 *   one frame (256 KiB) per stream per round, round-robin, and stops when the
 *   connection reports backpressure (`write()` false), continuing on `drain`.
 * - Control frames (credit, pings, opens, resets) go first; datagrams next,
 *   dropped rather than queued without bound when the connection is saturated.
 */
import { NetError, VirtualConn, isComposed, type Conn, type ConnHandler, type Logger } from '@wmproxy/core-net';
import {
  DEFAULT_MAX_FRAME_SIZE,
  Flag,
  FrameDecoder,
  FrameType,
  HEADER_SIZE,
  MAX_DATA_PAYLOAD,
  ProtocolError,
  decodeReason,
  encodeFrame,
  encodeText,
  frameTypeName,
  readU32,
  u32,
  writeHeader,
  type FrameSink,
} from './frame.js';

export const DEFAULT_INITIAL_WINDOW = 256 * 1024;
/** Largest window a fast stream grows to: the most a stream that stalls later can hold. */
export const DEFAULT_MAX_WINDOW = 8 * 1024 * 1024;
/** Round trip assumed before a ping measured one, and the floor of the growth test (event loops add their own latency). */
const MIN_GROWTH_RTT_MS = 1;
/** Bytes a stream's writer may queue before `write()` returns false. */
export const DEFAULT_STREAM_HIGH_WATER = 256 * 1024;
export const DEFAULT_MAX_STREAMS = 4096;
export const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
/** One write to the connection carries at most about this much. */
const BATCH_BYTES = 256 * 1024;
/** TLS's largest record: writes of whole multiples of it leave no short records. */
const TLS_RECORD = 16 * 1024;
/** A payload view at least this large is written as it is rather than copied into its batch. */
const DIRECT_WRITE = 32 * 1024;
/** Control frames queued while the connection is saturated; beyond it the peer is not reading at all. */
const CONTROL_QUEUE_LIMIT = 1024 * 1024;
const DATAGRAM_QUEUE_LIMIT = 512 * 1024;
const MAX_WINDOW = 0x7fffffff;

export interface MuxOptions {
  /** Stream id parity: the client opens odd ids, the server even ones. */
  side: 'client' | 'server';
  initialWindow?: number;
  /** Largest window a stream may grow to (default 8 MiB; set it to `initialWindow` for a fixed window). */
  maxWindow?: number;
  streamHighWater?: number;
  /** Most streams the peer may have open at once (beyond: OPEN_FAIL). */
  maxStreams?: number;
  maxFrameSize?: number;
  logger?: Logger;
}

export interface MuxEvents {
  /** A stream-0 frame the mux does not handle itself (handshake, MAPPINGS, ERROR). */
  control?(mux: Mux, type: FrameType, flags: number, payload: Uint8Array): void;
  /** The peer opened a stream: call `stream.accept()` or `stream.reject(reason)`. */
  open?(mux: Mux, stream: TunnelStream, flags: number, payload: Uint8Array): void;
  /** A datagram of flow `id` (opened by an OPEN with the DATAGRAM_FLOW flag). */
  datagram?(mux: Mux, id: number, payload: Uint8Array): void;
  /** The peer sent GOAWAY: open no new streams. */
  goaway?(mux: Mux, reason: string): void;
  /** The session is gone (every stream closed with it). */
  close?(mux: Mux, error?: Error): void;
  /** A stream moved `promoteBytes` (both ways together) since `promoteSince`: it may move to a data connection (`TunnelStream.move`). */
  bulk?(mux: Mux, stream: TunnelStream): void;
}

export interface MuxStats {
  streams: number;
  /** Streams this side opened since the session started. */
  opened: number;
  /** Bytes written by streams but not yet sent (waiting for credit or the connection). */
  queuedBytes: number;
  /** Bytes received but not yet read (paused streams). */
  bufferedBytes: number;
  datagramsDropped: number;
  rttMs: number | undefined;
}

interface PendingOpen {
  resolve(stream: TunnelStream): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** One multiplexed session over `conn`. */
export class Mux implements FrameSink {
  readonly conn: Conn;
  readonly side: 'client' | 'server';
  readonly initialWindow: number;
  readonly maxWindow: number;
  readonly streamHighWater: number;
  readonly maxStreams: number;
  /** Stream frames are refused until the handshake marks the session established. */
  established = false;
  closed = false;
  /** We sent GOAWAY: no new streams either way. */
  goingAway = false;
  /** The peer sent GOAWAY. */
  peerGoingAway = false;
  rttMs: number | undefined;
  datagramsDropped = 0;
  /** When the last frame arrived (any frame proves the peer alive). */
  lastSeen = Date.now();
  /** Streams opened from now on report `bulk` once they moved this many bytes (0: never). */
  promoteBytes = 0;
  private readonly decoder: FrameDecoder;
  private readonly logger: Logger | undefined;
  private events: MuxEvents = {};
  readonly streams = new Map<number, TunnelStream>();
  /**
   * Of `streams`, those moved to a data connection that wait for the other
   * direction's marker: their owner counts that connection already, so one
   * visitor's open streams are `streams.size - carried` plus its busy data connections.
   */
  carried = 0;
  private readonly pendingOpens = new Map<number, PendingOpen>();
  private nextId: number;
  private opened = 0;
  private lastPeerId = 0;
  private peerStreams = 0;
  private control: Uint8Array[] = [];
  private controlBytes = 0;
  /** A PONG waits in `control`: a PING meanwhile needs no answer of its own (a peer pinging without reading queued one per PING). */
  private pongQueued = false;
  private datagrams: Uint8Array[] = [];
  private datagramBytes = 0;
  private ready: TunnelStream[] = [];
  private blocked = false;
  private flushScheduled = false;
  private flushing = false;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private pingSentAt = 0;
  private closeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Why `closeSoon` was called: reported when the connection then closes. */
  private closeReason: Error | undefined;
  private readonly boundFlush = (): void => this.flush();
  /** Paused streams that kept views of the chunk being decoded (settled once it is; see `TunnelStream.keepView`). */
  private viewHolders: TunnelStream[] = [];

  constructor(conn: Conn, options: MuxOptions) {
    this.conn = conn;
    this.side = options.side;
    this.initialWindow = options.initialWindow ?? DEFAULT_INITIAL_WINDOW;
    this.maxWindow = Math.max(this.initialWindow, options.maxWindow ?? DEFAULT_MAX_WINDOW);
    this.streamHighWater = options.streamHighWater ?? DEFAULT_STREAM_HIGH_WATER;
    this.maxStreams = options.maxStreams ?? DEFAULT_MAX_STREAMS;
    this.decoder = new FrameDecoder(Math.max(options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE, MAX_DATA_PAYLOAD));
    this.logger = options.logger;
    this.nextId = options.side === 'client' ? 1 : 2;
    conn.userData = this;
    conn.setNoDelay(true);
    conn.setHandler(muxConnHandler);
  }

  setEvents(events: MuxEvents): void {
    this.events = events;
  }

  // ---- sending ------------------------------------------------------------

  /** Queue a control frame (sent before any stream data). */
  sendControl(type: FrameType, streamId: number, payload?: Uint8Array, flags = 0): void {
    if (this.closed) return;
    const frame = encodeFrame(type, flags, streamId, payload);
    this.control.push(frame);
    this.controlBytes += frame.byteLength;
    if (this.controlBytes > CONTROL_QUEUE_LIMIT) {
      this.destroy(new NetError('ECONNRESET', 'tunnel peer stopped reading (control queue full)'));
      return;
    }
    this.scheduleFlush();
  }

  /** Send one datagram of flow `id`; dropped (counted) when the connection is saturated. Returns whether it was queued. */
  sendDatagram(id: number, payload: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.datagramBytes + payload.byteLength > DATAGRAM_QUEUE_LIMIT) {
      this.datagramsDropped++;
      return false;
    }
    const frame = encodeFrame(FrameType.DATAGRAM, 0, id, payload);
    this.datagrams.push(frame);
    this.datagramBytes += frame.byteLength;
    this.scheduleFlush();
    return true;
  }

  /** @internal A stream has something to send. */
  markReady(stream: TunnelStream): void {
    if (stream.inReady || this.closed) return;
    stream.inReady = true;
    this.ready.push(stream);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.blocked || this.closed) return;
    this.flushScheduled = true;
    setImmediate(this.boundFlush);
  }

  /** Write batches until nothing is left or the connection pushes back. */
  flush(): void {
    this.flushScheduled = false;
    if (this.flushing || this.closed) return;
    this.flushing = true;
    const drained: TunnelStream[] = [];
    const finished: TunnelStream[] = [];
    try {
      while (!this.blocked && !this.closed) {
        const frames: Uint8Array[] = [];
        let total = 0;
        while (this.control.length > 0) {
          const frame = this.control.shift()!;
          frames.push(frame);
          total += frame.byteLength;
        }
        this.controlBytes = 0;
        this.pongQueued = false;
        while (this.datagrams.length > 0 && total < BATCH_BYTES) {
          const frame = this.datagrams.shift()!;
          this.datagramBytes -= frame.byteLength;
          frames.push(frame);
          total += frame.byteLength;
        }
        // Round-robin: each ready stream gives one frame (up to 64 KiB) per turn.
        while (this.ready.length > 0 && total < BATCH_BYTES) {
          const stream = this.ready.shift()!;
          stream.inReady = false;
          const take = stream.sendable();
          if (take > 0) {
            // Header, then the queued chunks themselves (views, not copies): large
            // ones are written as they are, small ones coalesced with their neighbours.
            const header = new Uint8Array(HEADER_SIZE);
            writeHeader(header, 0, FrameType.DATA, 0, stream.sid, take);
            frames.push(header);
            stream.takeViews(take, frames);
            total += HEADER_SIZE + take;
            if (stream.needsDrain()) drained.push(stream);
          }
          if (stream.finDue()) {
            stream.finSent = true;
            frames.push(encodeFrame(FrameType.FIN, 0, stream.sid));
            total += HEADER_SIZE;
            finished.push(stream);
          } else if (stream.sendable() > 0) {
            stream.inReady = true;
            this.ready.push(stream);
          }
        }
        if (frames.length === 0) break;
        this.writeFrames(frames);
      }
    } finally {
      this.flushing = false;
    }
    for (const stream of drained) stream.afterSend();
    for (const stream of finished) stream.maybeFinish();
    // Control frames queued by drain handlers go out in the next turn.
    if (this.control.length > 0 || (this.ready.length > 0 && !this.blocked)) this.scheduleFlush();
  }

  /**
   * A batch's pieces (control frames, DATA headers, payload views) go out in
   * as few writes as keep TLS records full. Small pieces are copied together:
   * over TLS each write is at least one record and, on Bun, one send, so a
   * 10-byte DATA header written apart from its payload cost a record and a
   * syscall of its own. A large payload view is not copied: the small pieces
   * before it take just enough of its first bytes to fill whole 16 KiB
   * records (one write), and the rest of the view is written as it is. Copying
   * every payload byte into one buffer cost about as much CPU as a kernel copy.
   */
  private writeFrames(frames: Uint8Array[]): void {
    if (frames.length === 1) return this.writeOut(frames[0]!);
    let first = 0;
    let small = 0;
    for (let i = 0; i < frames.length; i++) {
      const piece = frames[i]!;
      if (piece.byteLength < DIRECT_WRITE) {
        small += piece.byteLength;
        continue;
      }
      let fill = 0;
      if (small > 0) {
        fill = (TLS_RECORD - (small % TLS_RECORD)) % TLS_RECORD;
        this.writeOut(gather(frames, first, i, small, piece.subarray(0, fill)));
      }
      this.writeOut(fill === 0 ? piece : piece.subarray(fill));
      first = i + 1;
      small = 0;
    }
    if (first < frames.length) this.writeOut(first === frames.length - 1 ? frames[first]! : gather(frames, first, frames.length, small, undefined));
  }

  private writeOut(chunk: Uint8Array): void {
    if (!this.conn.write(chunk)) this.blocked = true;
  }

  // ---- streams ------------------------------------------------------------

  /**
   * Open a stream; resolves on the peer's OPEN_OK, rejects with a NetError on
   * OPEN_FAIL (ECONNREFUSED with the peer's reason), timeout or abort.
   */
  open(payload: Uint8Array, options: { timeoutMs?: number; signal?: AbortSignal; flags?: number } = {}): Promise<TunnelStream> {
    if (this.closed) return Promise.reject(new NetError('ECONNRESET', 'tunnel session is closed'));
    if (this.goingAway || this.peerGoingAway) return Promise.reject(new NetError('ECONNREFUSED', 'tunnel session is going away'));
    const id = this.nextId;
    this.nextId += 2;
    this.opened++;
    const stream = new TunnelStream(this, id);
    this.streams.set(id, stream);
    this.sendControl(FrameType.OPEN, id, payload, options.flags ?? 0);
    if ((options.flags ?? 0) & Flag.DATAGRAM_FLOW) {
      stream.accepted = true;
      return Promise.resolve(stream);
    }
    return new Promise<TunnelStream>((resolve, reject) => {
      const pending: PendingOpen = { resolve, reject, timer: undefined, signal: options.signal, onAbort: undefined };
      const timeoutMs = options.timeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
      pending.timer = setTimeout(() => this.failOpen(id, new NetError('ETIMEDOUT', `tunnel stream open timed out after ${timeoutMs} ms`), true), timeoutMs);
      if (options.signal) {
        pending.onAbort = () => this.failOpen(id, new NetError('EABORTED', 'tunnel stream open aborted'), true);
        options.signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.pendingOpens.set(id, pending);
    });
  }

  private settleOpen(id: number): PendingOpen | undefined {
    const pending = this.pendingOpens.get(id);
    if (!pending) return undefined;
    this.pendingOpens.delete(id);
    clearTimeout(pending.timer);
    if (pending.onAbort) pending.signal?.removeEventListener('abort', pending.onAbort);
    return pending;
  }

  private failOpen(id: number, error: Error, reset: boolean): void {
    const pending = this.settleOpen(id);
    const stream = this.streams.get(id);
    if (stream) {
      if (reset) this.sendControl(FrameType.RST, id);
      stream.rstSent = true;
      stream.destroy(error);
    }
    pending?.reject(error);
  }

  /** @internal */
  forget(stream: TunnelStream): void {
    if (this.streams.get(stream.sid) !== stream) return;
    this.streams.delete(stream.sid);
    if (stream.carrier !== undefined) this.carried--;
    if ((stream.sid & 1) === (this.side === 'client' ? 0 : 1)) this.peerStreams--;
  }

  // ---- receiving ----------------------------------------------------------

  /** @internal */
  onData(chunk: Uint8Array): void {
    try {
      this.decoder.push(chunk, this);
    } catch (error) {
      if (error instanceof ProtocolError) this.protocolError(error.message);
      else throw error;
    } finally {
      if (this.viewHolders.length > 0) {
        for (const stream of this.viewHolders) stream.settleViews();
        this.viewHolders.length = 0;
      }
    }
  }

  /** @internal A stream crossed its `promoteAt`: reported once (the owner may set a new `promoteAt`). */
  bulk(stream: TunnelStream): void {
    stream.promoteAt = Infinity;
    this.events.bulk?.(this, stream);
  }

  /** @internal A paused stream kept a view of the chunk being decoded. */
  holdsViews(stream: TunnelStream): void {
    this.viewHolders.push(stream);
  }

  frame(type: FrameType, flags: number, id: number, payload: Uint8Array): void {
    if (this.closed) return;
    this.lastSeen = Date.now();
    switch (type) {
      case FrameType.DATA:
        return this.onStreamData(id, payload);
      case FrameType.WINDOW_UPDATE: {
        const stream = this.stream(id);
        if (!stream) return;
        const credit = stream.credit + readU32(payload);
        if (credit > MAX_WINDOW) return this.protocolError(`window of stream ${id} overflowed`);
        stream.credit = credit;
        if (stream.sendable() > 0) this.markReady(stream);
        return;
      }
      case FrameType.FIN: {
        const stream = this.stream(id);
        if (stream?.recvMoved) return this.protocolError(`FIN after MOVED on stream ${id}`);
        stream?.onPeerFin();
        return;
      }
      case FrameType.MOVED: {
        const stream = this.stream(id);
        if (!stream) return;
        if (!stream.canReceiveMoved()) return this.protocolError(`unexpected MOVED on stream ${id}`);
        stream.onPeerMoved();
        return;
      }
      case FrameType.RST: {
        const stream = this.stream(id);
        if (!stream) return;
        const reason = payload.byteLength > 0 ? decodeReason(payload) : 'reset by peer';
        const pending = this.settleOpen(id);
        const error = new NetError(pending ? 'ECONNREFUSED' : 'ECONNRESET', `tunnel stream ${reason}`);
        stream.rstSent = true;
        stream.destroy(error);
        pending?.reject(error);
        return;
      }
      case FrameType.OPEN:
        return this.onOpen(id, flags, payload);
      case FrameType.OPEN_OK: {
        const pending = this.settleOpen(id);
        const stream = this.streams.get(id);
        if (!pending || !stream) return;
        stream.accepted = true;
        pending.resolve(stream);
        if (stream.sendable() > 0 || stream.finDue()) this.markReady(stream);
        return;
      }
      case FrameType.OPEN_FAIL: {
        const reason = payload.byteLength > 0 ? decodeReason(payload) : 'refused';
        this.failOpen(id, new NetError('ECONNREFUSED', reason), false);
        return;
      }
      case FrameType.PING:
        if (id !== 0) return this.protocolError('PING on a stream');
        // One PONG answers every PING before it (a PONG only proves we are alive): the queue holds one at most.
        if (this.pongQueued) return;
        this.pongQueued = true;
        this.sendControl(FrameType.PONG, 0, payload);
        return;
      case FrameType.PONG:
        if (this.pingSentAt > 0) {
          this.rttMs = Date.now() - this.pingSentAt;
          this.pingSentAt = 0;
        }
        return;
      case FrameType.GOAWAY:
        this.peerGoingAway = true;
        this.events.goaway?.(this, payload.byteLength > 0 ? decodeReason(payload) : 'going away');
        return;
      case FrameType.DATAGRAM:
        if (!this.established) return this.protocolError('DATAGRAM before the handshake');
        this.events.datagram?.(this, id, payload);
        return;
      default:
        if (id !== 0) return this.protocolError(`${frameTypeName(type)} on stream ${id}`);
        this.events.control?.(this, type, flags, payload);
    }
  }

  private stream(id: number): TunnelStream | undefined {
    if (!this.established) {
      this.protocolError('stream frame before the handshake');
      return undefined;
    }
    // Unknown ids are streams already closed here: late frames are dropped.
    return this.streams.get(id);
  }

  private onStreamData(id: number, payload: Uint8Array): void {
    const stream = this.stream(id);
    if (!stream) return;
    if (payload.byteLength > stream.window) return this.protocolError(`stream ${id} sent past its flow-control window`);
    if (stream.peerEnded || stream.recvMoved) return this.protocolError(`DATA after ${stream.recvMoved ? 'MOVED' : 'FIN'} on stream ${id}`);
    stream.window -= payload.byteLength;
    stream.onPeerData(payload);
  }

  private onOpen(id: number, flags: number, payload: Uint8Array): void {
    if (!this.established) return this.protocolError('OPEN before the handshake');
    const peerParity = this.side === 'client' ? 0 : 1;
    if (id === 0 || (id & 1) !== peerParity || id <= this.lastPeerId) return this.protocolError(`OPEN with invalid stream id ${id}`);
    this.lastPeerId = id;
    if (this.goingAway) {
      this.sendControl(FrameType.OPEN_FAIL, id, encodeText('going away'));
      return;
    }
    if (this.peerStreams >= this.maxStreams) {
      this.sendControl(FrameType.OPEN_FAIL, id, encodeText(`too many streams (limit ${this.maxStreams})`));
      return;
    }
    const stream = new TunnelStream(this, id);
    this.streams.set(id, stream);
    this.peerStreams++;
    if (flags & Flag.DATAGRAM_FLOW) stream.accepted = true;
    if (!this.events.open) {
      stream.reject('this side accepts no streams');
      return;
    }
    this.events.open(this, stream, flags, payload);
  }

  /** The peer broke the protocol: say why (GOAWAY), log it, close. */
  protocolError(reason: string): void {
    if (this.closed) return;
    this.decoder.kill();
    // Before the handshake it is the handshake's failure, which its owner logs (a flood of junk connections logged each twice).
    if (this.established) this.logger?.warn('tunnel protocol error', { peer: this.conn.remoteAddress, reason });
    else this.logger?.debug('tunnel protocol error', { peer: this.conn.remoteAddress, reason });
    this.goAway(`protocol error: ${reason}`);
    this.closeSoon(new NetError('EPROTO', `tunnel protocol error: ${reason}`));
  }

  /** Tell the peer no new streams will be accepted (existing ones continue). */
  goAway(reason: string): void {
    if (this.closed) return;
    this.goingAway = true;
    this.sendControl(FrameType.GOAWAY, 0, encodeText(reason));
  }

  /** Send an ERROR frame (handshake refusals) and close once it is out. */
  fail(reason: string): void {
    if (this.closed) return;
    this.sendControl(FrameType.ERROR, 0, encodeText(reason));
    this.closeSoon(new NetError('EAUTH', reason));
  }

  /** Flush what is queued, half-close, and destroy shortly after in any case. */
  closeSoon(error?: Error): void {
    if (this.closed || this.closeTimer) return;
    this.closeReason = error;
    this.flush();
    this.conn.end();
    this.closeTimer = setTimeout(() => this.destroy(error), 1000);
    this.closeTimer.unref?.();
  }

  // ---- liveness -------------------------------------------------------------

  /**
   * PING every `intervalMs`; a peer silent for two intervals is dead (the
   * session is destroyed with ETIMEDOUT). Any frame counts as a sign of life.
   */
  startHeartbeat(intervalMs: number): void {
    this.stopHeartbeat();
    const half = Math.max(1, Math.floor(intervalMs / 2));
    let tick = 0;
    this.lastSeen = Date.now();
    this.heartbeat = setInterval(() => {
      const silent = Date.now() - this.lastSeen;
      if (silent >= 2 * intervalMs) {
        this.logger?.warn('tunnel peer is silent: closing the session', { peer: this.conn.remoteAddress, silentMs: silent });
        this.destroy(new NetError('ETIMEDOUT', `tunnel peer silent for ${silent} ms (heartbeat ${intervalMs} ms)`));
        return;
      }
      if (tick++ % 2 === 0) this.ping();
    }, half);
    this.heartbeat.unref?.();
  }

  stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  ping(): void {
    if (this.pingSentAt === 0) this.pingSentAt = Date.now();
    const payload = new Uint8Array(8);
    new DataView(payload.buffer).setFloat64(0, this.pingSentAt);
    this.sendControl(FrameType.PING, 0, payload);
  }

  // ---- lifecycle ------------------------------------------------------------

  stats(): MuxStats {
    let queuedBytes = 0;
    let bufferedBytes = 0;
    for (const stream of this.streams.values()) {
      queuedBytes += stream.queued;
      bufferedBytes += stream.inboxBytes;
    }
    return { streams: this.streams.size, opened: this.opened, queuedBytes, bufferedBytes, datagramsDropped: this.datagramsDropped, rttMs: this.rttMs };
  }

  /** @internal */
  onDrain(): void {
    this.blocked = false;
    this.flush();
  }

  destroy(error?: Error): void {
    if (this.closed) return;
    this.conn.destroy(error);
    this.onClosed(error);
  }

  /** @internal */
  onClosed(error?: Error): void {
    if (this.closed) return;
    error ??= this.closeReason;
    this.closed = true;
    this.decoder.kill();
    this.stopHeartbeat();
    clearTimeout(this.closeTimer);
    const reason = error ?? new NetError('ECONNRESET', 'tunnel connection closed');
    for (const id of [...this.pendingOpens.keys()]) this.settleOpen(id)?.reject(reason);
    for (const stream of [...this.streams.values()]) {
      stream.rstSent = true;
      stream.destroy(reason instanceof NetError ? reason : new NetError('ECONNRESET', reason.message, { cause: reason }));
    }
    this.control = [];
    this.datagrams = [];
    this.ready = [];
    this.events.close?.(this, error);
  }
}

/** `frames[from..to)` (`size` bytes), then `tail`, in one new buffer. */
function gather(frames: Uint8Array[], from: number, to: number, size: number, tail: Uint8Array | undefined): Uint8Array {
  // Not zero-filled: every byte is copied in below.
  const out = Buffer.allocUnsafe(size + (tail?.byteLength ?? 0));
  let at = 0;
  for (let i = from; i < to; i++) {
    out.set(frames[i]!, at);
    at += frames[i]!.byteLength;
  }
  if (tail) out.set(tail, at);
  return out;
}

/** Replace the views of `buffer` in `inbox` from `from` on (they are consecutive) by copies (`new Uint8Array`: a Buffer's slice() is a view). */
function copyViews(inbox: Uint8Array[], from: number, buffer: ArrayBufferLike): void {
  for (let i = from; i < inbox.length && inbox[i]!.buffer === buffer; i++) inbox[i] = new Uint8Array(inbox[i]!);
}

const muxConnHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as Mux).onData(chunk);
  },
  drain(conn) {
    (conn.userData as Mux).onDrain();
  },
  end(conn) {
    // The peer will send nothing more: the session is over once our side is flushed.
    const mux = conn.userData as Mux;
    mux.closeSoon(new NetError('ECONNRESET', 'tunnel peer closed the connection'));
  },
  close(conn, error) {
    (conn.userData as Mux).onClosed(error);
  },
};

/**
 * One stream of a session: a core-net Conn, so relays and the reverse proxy
 * use it like a socket. `remoteAddress` is the visitor the stream carries
 * (set by the tunnel from the OPEN request) or the tunnel peer.
 */
export class TunnelStream extends VirtualConn {
  readonly mux: Mux;
  /** Stream id on the wire. */
  readonly sid: number;
  /** The peer accepted the stream (OPEN_OK seen or sent). */
  accepted = false;
  // send side
  /** Bytes the peer still accepts (its window for us). */
  credit: number;
  private sendQueue: Uint8Array[] = [];
  /** Offset into sendQueue[0] already sent. */
  private sendOffset = 0;
  queued = 0;
  private endRequested = false;
  finSent = false;
  rstSent = false;
  private wantDrain = false;
  inReady = false;
  // receive side
  /** Credit we still grant the peer. */
  window: number;
  /** Bytes handed to the reader since the last WINDOW_UPDATE. */
  private consumed = 0;
  /** The receive window this stream grants (grows while the reader keeps up). */
  windowSize: number;
  private lastUpdateAt = 0;
  private inbox: Uint8Array[] = [];
  inboxBytes = 0;
  private paused = false;
  private peerFin = false;
  private delivering = false;
  /** The chunk (its buffer) of which this paused stream keeps views in the current read, from inbox index `viewsFrom`, `viewBytes` in all. */
  private viewBuffer: ArrayBufferLike | undefined = undefined;
  private viewsFrom = 0;
  private viewBytes = 0;
  // promotion to a data connection (`move`)
  /** Bytes (both ways together) at which the mux reports this stream as bulk (Infinity: never). */
  promoteAt: number;
  /** When the bytes counted towards `promoteAt` started (the owner judges the rate). */
  promoteSince = 0;
  /** A data connection was asked to carry this stream (the server awaits the client's answer). */
  moving = false;
  /** The data connection this stream moved to. */
  carrier: Conn | undefined = undefined;
  /** Our bytes go on the carrier (our MOVED marker is queued on the mux behind our last DATA). */
  private sendMoved = false;
  /** The peer's MOVED marker came: its bytes from now on come on the carrier. */
  recvMoved = false;
  /** Carrier bytes that came before the peer's marker: they follow whatever the mux still delivers. */
  private early: Uint8Array[] | undefined = undefined;
  private carrierEnded = false;
  private carrierClosed = false;
  /** Neither direction uses the mux any more: the stream left the session (and outlives it). */
  private offMux = false;

  constructor(mux: Mux, id: number) {
    super();
    this.mux = mux;
    this.sid = id;
    this.credit = mux.initialWindow;
    this.window = mux.initialWindow;
    this.windowSize = mux.initialWindow;
    this.promoteAt = Infinity;
    if (mux.promoteBytes > 0) {
      this.promoteAt = mux.promoteBytes;
      this.promoteSince = Date.now();
    }
    this.remoteAddress = mux.conn.remoteAddress;
    this.remotePort = mux.conn.remotePort;
    this.localAddress = mux.conn.localAddress;
    this.localPort = mux.conn.localPort;
  }

  /** The wire id (`id` is core-net's process-unique Conn id). */
  get streamId(): number {
    return this.sid;
  }

  /** Accept a stream the peer opened. */
  accept(): this {
    if (this.accepted || this.closed) return this;
    this.accepted = true;
    this.mux.sendControl(FrameType.OPEN_OK, this.sid);
    return this;
  }

  /** Refuse a stream the peer opened, with a reason the peer logs. */
  reject(reason: string): void {
    if (this.closed) return;
    this.mux.sendControl(FrameType.OPEN_FAIL, this.sid, encodeText(reason.slice(0, 512)));
    this.rstSent = true;
    this.destroy();
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed || this.endRequested) return false;
    if (this.sendMoved) {
      this.bytesWritten += chunk.byteLength;
      return this.carrier!.write(chunk);
    }
    if (chunk.byteLength === 0) return this.queued < this.mux.streamHighWater;
    // The shared compose buffer is reused by the next head composed, possibly
    // before the writer's turn: copied (a Buffer's slice() is a view, not a copy).
    this.sendQueue.push(isComposed(chunk) ? new Uint8Array(chunk) : chunk);
    this.queued += chunk.byteLength;
    if (this.credit > 0 && this.accepted) this.mux.markReady(this);
    if (this.queued >= this.mux.streamHighWater) {
      this.wantDrain = true;
      return false;
    }
    return true;
  }

  end(): void {
    if (this.closed || this.endRequested) return;
    this.endRequested = true;
    if (this.sendMoved) {
      this.finSent = true;
      this.carrier!.end();
      this.maybeFinish();
      return;
    }
    this.mux.markReady(this);
  }

  destroy(error?: Error): void {
    if (this.closed) return;
    if (!this.rstSent && !(this.finSent && this.peerFin)) {
      this.rstSent = true;
      if (!this.offMux) this.mux.sendControl(FrameType.RST, this.sid);
      // A reset, not a FIN: the peer must not take a cut stream for a finished one.
      if (this.carrier !== undefined && !this.carrierClosed) {
        this.carrierClosed = true;
        this.carrier.reset(error ?? new NetError('ECONNRESET', `tunnel stream ${this.sid} reset`));
      }
    } else if (this.carrier !== undefined && !this.carrierClosed) {
      // Both directions done, the carrier not closed yet (a peer that keeps it open): closed here.
      this.carrierClosed = true;
      this.carrier.destroy(error);
    }
    this.sendQueue = [];
    this.queued = 0;
    this.inbox = [];
    this.inboxBytes = 0;
    this.mux.forget(this);
    this.dispatchClose(error);
  }

  pause(): void {
    this.paused = true;
    if (this.recvMoved) this.carrier?.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.deliver();
    if (this.recvMoved && !this.paused && !this.closed) this.carrier?.resume();
  }

  /** Bytes that may go out now. */
  sendable(): number {
    if (!this.accepted) return 0;
    return Math.min(this.credit, this.queued, MAX_DATA_PAYLOAD);
  }

  /** FIN goes out once everything written was sent. */
  finDue(): boolean {
    return this.endRequested && !this.finSent && this.queued === 0 && this.accepted;
  }

  /** Append views of the next `n` queued bytes to `out` and account for them. */
  takeViews(n: number, out: Uint8Array[]): void {
    let left = n;
    while (left > 0) {
      const head = this.sendQueue[0]!;
      const available = head.byteLength - this.sendOffset;
      if (available <= left) {
        out.push(this.sendOffset === 0 ? head : head.subarray(this.sendOffset));
        left -= available;
        this.sendQueue.shift();
        this.sendOffset = 0;
      } else {
        out.push(head.subarray(this.sendOffset, this.sendOffset + left));
        this.sendOffset += left;
        left = 0;
      }
    }
    this.queued -= n;
    this.credit -= n;
    this.bytesWritten += n;
    if (this.bytesWritten + this.bytesRead >= this.promoteAt) this.mux.bulk(this);
  }

  needsDrain(): boolean {
    return this.wantDrain && this.queued < this.mux.streamHighWater;
  }

  /** @internal After a batch went out: tell a writer waiting for room. */
  afterSend(): void {
    if (!this.wantDrain || this.closed || this.queued >= this.mux.streamHighWater) return;
    this.wantDrain = false;
    this.handler.drain?.(this);
  }

  /** @internal */
  onPeerData(payload: Uint8Array): void {
    if (this.closed) return;
    this.bytesRead += payload.byteLength;
    if (this.bytesWritten + this.bytesRead >= this.promoteAt) this.mux.bulk(this);
    if (this.paused || this.inboxBytes > 0) {
      this.keepView(payload);
      return;
    }
    this.consume(payload.byteLength);
    this.dispatchData(payload);
  }

  /**
   * A view pins the whole received chunk while the reader is paused. What a
   * paused stream keeps of one chunk stays a view only when it is at least
   * half of that chunk (so a paused stream holds at most twice its window),
   * and is copied otherwise: once the chunk is decoded (`settleViews`), since
   * one read of bulk data carries the tail of a frame, a whole frame and the
   * head of the next, each less than half of it but together nearly all.
   * (Judged piece by piece, half the bytes of a paused bulk stream were copied.)
   */
  private keepView(payload: Uint8Array): void {
    if (this.viewBuffer !== payload.buffer) {
      if (this.viewBuffer === undefined) this.mux.holdsViews(this);
      else this.settleViews();
      this.viewBuffer = payload.buffer;
      this.viewsFrom = this.inbox.length;
      this.viewBytes = 0;
    }
    this.inbox.push(payload);
    this.inboxBytes += payload.byteLength;
    this.viewBytes += payload.byteLength;
  }

  /** @internal The chunk is decoded: copy this stream's views of it unless they are at least half of it. */
  settleViews(): void {
    const buffer = this.viewBuffer;
    if (buffer === undefined) return;
    this.viewBuffer = undefined;
    if (this.viewBytes * 2 >= buffer.byteLength) return;
    copyViews(this.inbox, this.viewsFrom, buffer);
  }

  /** @internal */
  onPeerFin(): void {
    if (this.peerFin || this.closed) return;
    this.peerFin = true;
    this.deliver();
  }

  private deliver(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (!this.paused && !this.closed && this.inbox.length > 0) {
        const chunk = this.inbox.shift()!;
        this.inboxBytes -= chunk.byteLength;
        this.consume(chunk.byteLength);
        this.dispatchData(chunk);
      }
      // Paused again part way through the views of one chunk: what is left of
      // them may be less than half of it (the rest was kept for being together
      // at least half). The views of later chunks are whole.
      const front = this.inbox[0];
      if (front !== undefined && this.viewBuffer === undefined && front.byteLength * 2 < front.buffer.byteLength) {
        let bytes = 0;
        for (let i = 0; i < this.inbox.length && this.inbox[i]!.buffer === front.buffer; i++) bytes += this.inbox[i]!.byteLength;
        if (bytes * 2 < front.buffer.byteLength) copyViews(this.inbox, 0, front.buffer);
      }
      if (!this.paused && !this.closed && this.peerFin && this.inbox.length === 0 && !this.peerEnded) {
        this.dispatchEnd();
        this.maybeFinish();
      }
    } finally {
      this.delivering = false;
    }
  }

  private consume(n: number): void {
    this.consumed += n;
    // After the peer's MOVED it sends nothing more on the mux: no credit to return.
    if (this.consumed < this.windowSize / 2 || this.peerFin || this.recvMoved) return;
    let increment = this.consumed;
    const now = Date.now();
    if (this.windowSize < this.mux.maxWindow && now - this.lastUpdateAt < 2 * Math.max(this.mux.rttMs ?? MIN_GROWTH_RTT_MS, MIN_GROWTH_RTT_MS)) {
      const grown = Math.min(this.windowSize * 2, this.mux.maxWindow);
      increment += grown - this.windowSize;
      this.windowSize = grown;
    }
    this.lastUpdateAt = now;
    this.window += increment;
    this.mux.sendControl(FrameType.WINDOW_UPDATE, this.sid, u32(increment));
    this.consumed = 0;
  }

  /** @internal Both directions finished: the stream is done (once its carrier, if any, closed too). */
  maybeFinish(): void {
    if (this.closed) return;
    if (this.carrier !== undefined) this.leaveMux();
    if (!this.finSent || !this.peerEnded) return;
    if (this.carrier !== undefined && !this.carrierClosed) return;
    this.mux.forget(this);
    this.dispatchClose(undefined);
  }

  // ---- promotion ------------------------------------------------------------

  /**
   * Continue on `carrier`, a data connection that both sides agreed carries
   * this stream now (`unread`: carrier bytes already read past the
   * hand-over). Our direction, unless it already ended on the mux, moves:
   * the MOVED marker goes on the mux behind every DATA frame already written,
   * then what waited for credit and all later writes go on the carrier. The
   * peer's bytes come on the carrier once its marker arrived; carrier bytes
   * before that wait (the carrier paused). A direction that ended on the mux
   * ends on the carrier at once, so that the carrier closes when both are done.
   */
  move(carrier: Conn, unread: Uint8Array | undefined): void {
    this.moving = false;
    this.carrier = carrier;
    if (this.mux.streams.get(this.sid) === this) this.mux.carried++;
    carrier.userData = this;
    let drain = false;
    if (!this.endRequested) {
      this.mux.sendControl(FrameType.MOVED, this.sid);
      this.sendMoved = true;
      let ok = true;
      for (let i = 0; i < this.sendQueue.length; i++) {
        const chunk = this.sendQueue[i]!;
        ok = carrier.write(i === 0 && this.sendOffset > 0 ? chunk.subarray(this.sendOffset) : chunk);
      }
      this.bytesWritten += this.queued;
      this.sendQueue = [];
      this.sendOffset = 0;
      this.queued = 0;
      // A writer waiting for room: the carrier's drain tells it, or now if the carrier took everything.
      drain = this.wantDrain && ok;
      this.wantDrain = false;
    } else carrier.end();
    if (this.recvMoved && this.paused) carrier.pause();
    carrier.setHandler(carrierHandler, unread);
    if (this.closed) return;
    this.leaveMux();
    if (drain) this.handler.drain?.(this);
  }

  /** @internal May the peer's MOVED marker come now? */
  canReceiveMoved(): boolean {
    return (this.carrier !== undefined || this.moving) && !this.recvMoved && !this.peerFin;
  }

  /** @internal The peer's marker: its bytes continue on the carrier (those that came early go after the mux's). */
  onPeerMoved(): void {
    this.recvMoved = true;
    const early = this.early;
    this.early = undefined;
    if (early !== undefined) {
      for (const chunk of early) {
        this.inbox.push(chunk);
        this.inboxBytes += chunk.byteLength;
      }
    }
    if (this.carrierEnded) this.peerFin = true;
    this.deliver();
    if (this.closed) return;
    // The reader's pause holds the carrier from now on (it may have paused before the carrier did).
    if (this.paused) this.carrier?.pause();
    else this.carrier?.resume();
    if (this.carrier !== undefined) this.leaveMux();
  }

  /** Neither direction needs the mux now: the session forgets the stream (its close no longer resets it). */
  private leaveMux(): void {
    if (this.offMux || !(this.sendMoved || this.finSent) || !(this.recvMoved || this.peerFin)) return;
    this.offMux = true;
    this.mux.forget(this);
  }

  /** @internal */
  onCarrierData(chunk: Uint8Array): void {
    if (this.closed) return;
    this.bytesRead += chunk.byteLength;
    if (!this.recvMoved) {
      if (this.peerFin) return this.destroy(new NetError('EPROTO', `tunnel stream ${this.sid}: data connection bytes after a FIN on the mux`));
      (this.early ??= []).push(chunk);
      this.carrier!.pause();
      return;
    }
    if (this.paused || this.inboxBytes > 0) {
      this.inbox.push(chunk);
      this.inboxBytes += chunk.byteLength;
      return;
    }
    this.dispatchData(chunk);
  }

  /** @internal The carrier's FIN: the peer's end once its marker came (before, it waits for it; after a mux FIN, it is expected). */
  onCarrierEnd(): void {
    this.carrierEnded = true;
    if (this.recvMoved) this.onPeerFin();
  }

  /** @internal */
  onCarrierDrain(): void {
    if (this.sendMoved && !this.closed) this.handler.drain?.(this);
  }

  /** @internal The carrier closed: a reset of the stream unless nothing more was to pass on it. */
  onCarrierClose(error: Error | undefined): void {
    if (this.carrierClosed) return;
    this.carrierClosed = true;
    if (this.closed) return;
    // A clean close is the peer's FIN too: Bun reports none for a socket that had half-closed itself (a reset comes with an error).
    if (error === undefined && !this.carrierEnded) {
      this.onCarrierEnd();
      if (this.closed) return;
    }
    const needed = (this.sendMoved && !this.finSent) || ((this.recvMoved || !this.peerFin) && !this.carrierEnded);
    if (needed) {
      this.destroy(new NetError('ECONNRESET', `tunnel stream ${this.sid}: its data connection ${error ? `failed: ${error.message}` : 'closed'}`, error ? { cause: error } : undefined));
      return;
    }
    this.maybeFinish();
  }
}

const carrierHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as TunnelStream).onCarrierData(chunk);
  },
  drain(conn) {
    (conn.userData as TunnelStream).onCarrierDrain();
  },
  end(conn) {
    (conn.userData as TunnelStream).onCarrierEnd();
  },
  close(conn, error) {
    (conn.userData as TunnelStream).onCarrierClose(error);
  },
};
