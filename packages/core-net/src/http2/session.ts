import type { Conn, ConnHandler } from '../types.js';
import { Ticker } from '../ticker.js';
import {
  CLIENT_PREFACE,
  DEFAULT_HEADER_TABLE_SIZE,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW_SIZE,
  ErrorCode,
  errorName,
  Http2Error,
  MAX_ALLOWED_FRAME_SIZE,
  MAX_WINDOW_SIZE,
  SettingId,
} from './constants.js';
import { FrameParser, FrameWriter, type FrameHandler } from './frames.js';
import { HpackDecoder, type Http2Headers } from './hpack/decoder.js';
import { HpackEncoder } from './hpack/encoder.js';
import { validateRequest, validateResponse, validateTrailers, type FieldFacts, type Http2RequestHead, type Http2ResponseHead } from './validate.js';

/** Every limit of a session, with the defaults in `DEFAULT_HTTP2_OPTIONS`. */
export interface Http2Options {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we announce; streams past it are refused with REFUSED_STREAM. */
  maxConcurrentStreams: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE we announce: bytes a peer may send on one stream before we read them. */
  initialWindowSize: number;
  /** Our connection receive window: bytes a peer may have unread across all streams. */
  connectionWindowSize: number;
  /** SETTINGS_MAX_FRAME_SIZE we accept. */
  maxFrameSize: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: a longer decoded header list is refused (431 to a request). */
  maxHeaderListSize: number;
  /** Cap on one header block's encoded size across CONTINUATIONs (CONTINUATION flood). */
  maxHeaderBlockSize: number;
  /** Cap on CONTINUATION frames in one header block. */
  maxContinuationFrames: number;
  /** HPACK dynamic table we let the peer use (SETTINGS_HEADER_TABLE_SIZE) and use ourselves at most. */
  headerTableSize: number;
  /** Streams the peer may reset, or have refused, per second (rapid reset, CVE-2023-44487). */
  maxResetsPerSecond: number;
  /** SETTINGS, PING, PRIORITY, empty DATA/CONTINUATION and frames on closed streams per second. */
  maxControlFramesPerSecond: number;
  /** Bytes queued towards a peer that does not read, before the connection is dropped. */
  maxOutputBuffered: number;
  /** Per-stream send queue above which `write` returns false. */
  streamHighWaterMark: number;
  /** Close a connection without streams after this long without a frame (GOAWAY NO_ERROR). 0: never. */
  idleTimeoutMs: number;
  /** Reset a stream whose send window stays closed this long with data waiting (slow read). 0: never. */
  stallTimeoutMs: number;
}

export const DEFAULT_HTTP2_OPTIONS: Readonly<Http2Options> = Object.freeze({
  maxConcurrentStreams: 128,
  initialWindowSize: 256 * 1024,
  connectionWindowSize: 1024 * 1024,
  maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
  maxHeaderListSize: 64 * 1024,
  maxHeaderBlockSize: 128 * 1024,
  maxContinuationFrames: 64,
  headerTableSize: DEFAULT_HEADER_TABLE_SIZE,
  maxResetsPerSecond: 200,
  maxControlFramesPerSecond: 1000,
  maxOutputBuffered: 1024 * 1024,
  streamHighWaterMark: 64 * 1024,
  idleTimeoutMs: 120_000,
  stallTimeoutMs: 60_000,
});

export interface Http2SessionHandler {
  /** Server: a new request. Install a stream handler (`stream.setHandler`) to read its body. */
  stream?(stream: Http2Stream): void;
  /** The peer's SETTINGS were applied (the first ones make a client connection ready: its stream limit is known). */
  settings?(session: Http2Session): void;
  /** The peer sent GOAWAY: no new streams; streams above `lastStreamId` were not processed. */
  goaway?(session: Http2Session, code: number, lastStreamId: number): void;
  /** The connection is gone (every stream was closed first). */
  close?(session: Http2Session, error?: Error): void;
}

export interface Http2StreamHandler {
  /** Client: the final response head arrived (`stream.response`). */
  response?(stream: Http2Stream): void;
  /** Body bytes. The chunk is the handler's to keep. */
  data(stream: Http2Stream, chunk: Uint8Array): void;
  /** The peer finished its side (END_STREAM), with trailers if it sent any. */
  end?(stream: Http2Stream, trailers?: Http2Headers): void;
  /** The send queue fell below the high-water mark after `write` returned false. */
  drain?(stream: Http2Stream): void;
  /** The stream is finished. `error` is set when it was reset (by either side) or its connection died. */
  close(stream: Http2Stream, error?: Http2StreamError): void;
}

/** Why a stream ended early: an RST_STREAM code, or the connection going away. */
export class Http2StreamError extends Error {
  constructor(
    readonly code: number,
    message: string,
    /** True when the peer never processed the stream (REFUSED_STREAM, or above a GOAWAY's last id): safe to retry. */
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'Http2StreamError';
  }
}

// Stream states (RFC 9113 §5.1), one side at a time.
const OPEN = 0;
const ENDED = 1;

let sessionTicker: Ticker | undefined;
function ticker(): Ticker {
  sessionTicker ??= new Ticker(1000);
  return sessionTicker;
}

const EMPTY = new Uint8Array(0);

/** Events in the current one-second window: `hit(limit)` is false once more than `limit` happened. */
class SecondCounter {
  private start = 0;
  private count = 0;

  hit(limit: number): boolean {
    const now = Date.now();
    if (now - this.start >= 1000) {
      this.start = now;
      this.count = 0;
    }
    return ++this.count <= limit;
  }
}
const te = new TextEncoder();

/**
 * One HTTP/2 stream. Server side: `request` is set, answer with `respond`,
 * `write`, `end`. Client side: created by `session.request`, `response` is
 * set when the head arrives. Both: `reset(code)`.
 */
export class Http2Stream {
  handler: Http2StreamHandler | undefined;
  /** Arbitrary per-stream state for the owner. */
  userData: unknown = undefined;
  request: Http2RequestHead | undefined;
  response: Http2ResponseHead | undefined;
  trailers: Http2Headers | undefined;
  /** @internal */ recv = OPEN;
  /** @internal */ send = OPEN;
  /** @internal */ headersSent = false;
  closed = false;
  /** @internal */ sendWindow: number;
  /** @internal */ recvWindow: number;
  /** @internal */ recvUnacked = 0;
  /** @internal */ expectedLength = -1;
  /** @internal */ receivedLength = 0;
  /** @internal */ queue: Uint8Array[] = [];
  /** @internal */ queued = 0;
  /** @internal */ endQueued = false;
  /** @internal */ trailersQueued: Http2Headers | undefined;
  /** @internal */ wantDrain = false;
  /** @internal */ stalledSince = 0;
  // What arrived while no handler was installed or reading was paused.
  /** @internal */ inbox: Uint8Array[] | undefined;
  /** @internal */ inboxEnded = false;
  /** @internal */ paused = false;
  /** @internal */ headRequest = false;

  constructor(
    readonly session: Http2Session,
    readonly id: number,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** The peer sent END_STREAM (a client reading a response head with it: a trailers-only answer). */
  get remoteEnded(): boolean {
    return this.recv === ENDED;
  }

  /** Install the handler; body bytes and the end that arrived before are delivered now. */
  setHandler(handler: Http2StreamHandler): void {
    this.handler = handler;
    if (!this.paused) this.session.deliverInbox(this);
  }

  /** Stop delivering body bytes: the peer's window is not refilled, so it stops sending. */
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.session.deliverInbox(this);
  }

  /** Server: send the response head. `endStream` for a response without a body. */
  respond(status: number, headers: Http2Headers = [], endStream = false): void {
    this.session.sendResponse(this, status, headers, endStream);
  }

  /** Queue body bytes. Returns false above the high-water mark: wait for the handler's `drain`. */
  write(chunk: Uint8Array): boolean {
    return this.session.sendData(this, chunk, false);
  }

  /** `write(bytes.subarray(start, end))`, framed at once when the windows allow (no view made), else copied. */
  writeRange(bytes: Uint8Array, start: number, end: number): boolean {
    return this.session.sendDataRange(this, bytes, start, end);
  }

  /** Finish our side, optionally with a last chunk and trailers. */
  end(chunk?: Uint8Array, trailers?: Http2Headers): void {
    this.session.endStream(this, chunk, trailers);
  }

  /** Abort the stream with RST_STREAM (default CANCEL). */
  reset(code: number = ErrorCode.CANCEL): void {
    this.session.resetStream(this, code, true);
  }

  /** Bytes queued but not yet framed (waiting for flow-control window or the socket). */
  get bufferedAmount(): number {
    return this.queued;
  }
}

/**
 * One HTTP/2 connection over a core-net `Conn`, server or client side
 * (RFC 9113): preface and SETTINGS, HPACK, flow control on both windows,
 * stream states, limits and floods answered with RST_STREAM or GOAWAY.
 * Everything one read produces is written in one socket write.
 */
export class Http2Session implements FrameHandler {
  readonly options: Http2Options;
  readonly streams = new Map<number, Http2Stream>();
  /** Arbitrary per-connection state for the owner. */
  userData: unknown = undefined;
  closed = false;
  /** Counters for metrics and tests. */
  readonly stats = { streams: 0, refused: 0, resets: 0, goawayCode: -1 };

  private readonly parser: FrameParser;
  private readonly out = new FrameWriter();
  private readonly decoder: HpackDecoder;
  private readonly encoder: HpackEncoder;
  private readonly isServer: boolean;
  private prefaceLeft: number;
  // Peer settings.
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  private peerInitialWindow = DEFAULT_WINDOW_SIZE;
  private peerMaxStreams = Number.POSITIVE_INFINITY;
  private peerSettingsSeen = false;
  // Our settings take effect for receive windows once acknowledged.
  private localInitialWindow = DEFAULT_WINDOW_SIZE;
  private settingsUnacked = 0;
  private connSendWindow = DEFAULT_WINDOW_SIZE;
  private connRecvWindow: number;
  private connRecvUnacked = 0;
  private lastPeerStreamId = 0;
  private nextStreamId: number;
  /** Streams with queued data waiting for window or socket. */
  private readonly sending = new Set<Http2Stream>();
  private socketBlocked = false;
  private bufferedWhileBlocked = 0;
  private inRead = false;
  /** @internal queued in `flushQueue` for the end of this event-loop turn. */
  flushScheduled = false;
  private goawaySent = false;
  private goawayLastId = MAX_WINDOW_SIZE;
  private goawayReceived = false;
  private readonly resets = new SecondCounter();
  private readonly controls = new SecondCounter();
  private lastActivity = Date.now();
  private readonly tick = (now: number): void => this.onTick(now);
  private closeError: Error | undefined;
  private activeStreams = 0;
  /** The last streams we reset or refused, whose late frames are expected (a small ring). */
  private readonly recentlyReset: number[] = new Array<number>(32).fill(0);
  private recentlyResetAt = 0;

  constructor(
    readonly conn: Conn,
    readonly role: 'server' | 'client',
    private readonly handler: Http2SessionHandler,
    options: Partial<Http2Options> = {},
  ) {
    this.options = { ...DEFAULT_HTTP2_OPTIONS, ...options };
    const o = this.options;
    if (o.maxFrameSize < DEFAULT_MAX_FRAME_SIZE || o.maxFrameSize > MAX_ALLOWED_FRAME_SIZE) throw new RangeError('maxFrameSize out of range');
    if (o.initialWindowSize > MAX_WINDOW_SIZE || o.connectionWindowSize > MAX_WINDOW_SIZE) throw new RangeError('window above 2^31-1');
    this.isServer = role === 'server';
    this.prefaceLeft = this.isServer ? CLIENT_PREFACE.byteLength : 0;
    this.nextStreamId = this.isServer ? 2 : 1;
    this.parser = new FrameParser(this, {
      maxFrameSize: o.maxFrameSize,
      maxHeaderBlockSize: o.maxHeaderBlockSize,
      maxContinuationFrames: o.maxContinuationFrames,
    });
    this.decoder = new HpackDecoder({ maxTableSize: o.headerTableSize, maxHeaderListSize: o.maxHeaderListSize });
    this.encoder = new HpackEncoder({ maxTableSize: o.headerTableSize });
    this.connRecvWindow = o.connectionWindowSize;

    if (!this.isServer) this.out.raw(CLIENT_PREFACE);
    const settings: Array<[number, number]> = [
      [SettingId.MAX_CONCURRENT_STREAMS, o.maxConcurrentStreams],
      [SettingId.INITIAL_WINDOW_SIZE, o.initialWindowSize],
      [SettingId.MAX_HEADER_LIST_SIZE, o.maxHeaderListSize],
    ];
    if (!this.isServer) settings.push([SettingId.ENABLE_PUSH, 0]);
    if (o.maxFrameSize !== DEFAULT_MAX_FRAME_SIZE) settings.push([SettingId.MAX_FRAME_SIZE, o.maxFrameSize]);
    if (o.headerTableSize !== DEFAULT_HEADER_TABLE_SIZE) settings.push([SettingId.HEADER_TABLE_SIZE, o.headerTableSize]);
    this.out.settings(settings);
    this.settingsUnacked++;
    if (o.connectionWindowSize > DEFAULT_WINDOW_SIZE) this.out.windowUpdate(0, o.connectionWindowSize - DEFAULT_WINDOW_SIZE);
    else this.connRecvWindow = DEFAULT_WINDOW_SIZE;
    conn.userData = this;
    conn.setHandler(connHandler);
    ticker().add(this.tick);
    this.flush();
  }

  /** Client: streams that may still be opened now. */
  get availableStreams(): number {
    if (this.closed || this.goawayReceived || this.goawaySent) return 0;
    return Math.max(0, Math.min(this.peerMaxStreams, 2 ** 30) - this.activeStreams);
  }

  /** When the last bytes arrived from the peer (Date.now()): a pool PINGs connections quiet for long. */
  get lastReadAt(): number {
    return this.lastActivity;
  }

  /** True once the peer's first SETTINGS arrived. */
  get settingsReceived(): boolean {
    return this.peerSettingsSeen;
  }

  /** Streams open now. */
  get openStreams(): number {
    return this.activeStreams;
  }

  /**
   * Client: open a stream with a request head. Throws when the peer's
   * MAX_CONCURRENT_STREAMS is reached or GOAWAY was received (check `availableStreams`).
   */
  request(head: Http2RequestHead, endStream = false): Http2Stream {
    if (this.isServer) throw new Error('request() is for client sessions');
    if (this.availableStreams <= 0) throw new Http2StreamError(ErrorCode.REFUSED_STREAM, 'no stream available on this connection', true);
    if (this.nextStreamId > MAX_WINDOW_SIZE) throw new Http2StreamError(ErrorCode.REFUSED_STREAM, 'stream ids exhausted', true);
    const stream = new Http2Stream(this, this.nextStreamId, this.peerInitialWindow, this.localInitialWindow);
    this.nextStreamId += 2;
    this.streams.set(stream.id, stream);
    this.activeStreams++;
    this.stats.streams++;
    stream.headRequest = head.method === 'HEAD';
    const e = this.encoder;
    e.begin();
    e.field(':method', head.method);
    if (head.method !== 'CONNECT') {
      e.field(':scheme', head.scheme);
      e.field(':path', head.path);
    }
    if (head.authority) e.field(':authority', head.authority);
    for (let i = 0; i < head.headers.length; i += 2) e.field(head.headers[i]!, head.headers[i + 1]!);
    this.out.headers(stream.id, e.finish(), endStream, this.peerMaxFrameSize);
    stream.headersSent = true;
    if (endStream) stream.send = ENDED;
    this.scheduleFlush();
    return stream;
  }

  /**
   * Send PING and resolve with the round trip in milliseconds when the peer
   * acknowledges it (keep-alive and liveness of idle upstream connections);
   * rejects if the connection closes first.
   */
  ping(): Promise<number> {
    if (this.closed) return Promise.reject(new Error('HTTP/2 connection closed'));
    const id = ++this.pingCounter;
    const payload = new Uint8Array(8);
    new DataView(payload.buffer).setUint32(4, id);
    this.out.ping(false, payload);
    this.scheduleFlush();
    return new Promise((resolve, reject) => this.pings.set(id, { start: performance.now(), resolve, reject }));
  }
  private pingCounter = 0;
  private readonly pings = new Map<number, { start: number; resolve(rtt: number): void; reject(error: Error): void }>();

  /**
   * Graceful close: GOAWAY with the last stream we will process; streams in
   * flight finish, then the connection ends. `destroy()` for the hard way.
   */
  close(code: number = ErrorCode.NO_ERROR): void {
    if (this.closed) return;
    if (!this.goawaySent) this.sendGoaway(code, '');
    this.maybeFinish();
  }

  /** Close now: every stream gets an error. */
  destroy(error?: Error): void {
    if (this.closed) return;
    this.closeError ??= error;
    this.conn.destroy(error);
  }

  // ---- reading ----

  /** @internal */
  onConnData(chunk: Uint8Array): void {
    if (this.closed) return;
    this.lastActivity = Date.now();
    this.inRead = true;
    try {
      if (this.prefaceLeft > 0) {
        const offset = CLIENT_PREFACE.byteLength - this.prefaceLeft;
        const n = Math.min(this.prefaceLeft, chunk.byteLength);
        for (let i = 0; i < n; i++) {
          if (chunk[i] !== CLIENT_PREFACE[offset + i]) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, 'invalid connection preface');
        }
        this.prefaceLeft -= n;
        if (n === chunk.byteLength) return;
        chunk = chunk.subarray(n);
      }
      this.parser.push(chunk);
    } catch (error) {
      this.connectionError(error);
    } finally {
      this.inRead = false;
      this.flush();
    }
  }

  onData(streamId: number, data: Uint8Array, endStream: boolean, flowLength: number): void {
    this.connRecvWindow -= flowLength;
    if (this.connRecvWindow < 0) throw new Http2Error(ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    if (data.byteLength === 0 && !endStream) this.countControl();
    const stream = this.streams.get(streamId);
    if (!stream) {
      this.closedStreamFrame(streamId, 'DATA');
      this.credit(undefined, flowLength);
      return;
    }
    if (stream.recv === ENDED) {
      this.credit(undefined, flowLength);
      this.streamError(stream, ErrorCode.STREAM_CLOSED, 'DATA after END_STREAM');
      return;
    }
    stream.recvWindow -= flowLength;
    if (stream.recvWindow < 0) {
      this.credit(undefined, flowLength);
      this.streamError(stream, ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the stream window');
      return;
    }
    // Padding is consumed at once.
    if (flowLength > data.byteLength) this.credit(stream, flowLength - data.byteLength);
    stream.receivedLength += data.byteLength;
    if (stream.expectedLength >= 0 && (stream.receivedLength > stream.expectedLength || (endStream && stream.receivedLength !== stream.expectedLength))) {
      this.credit(undefined, data.byteLength);
      this.streamError(stream, ErrorCode.PROTOCOL_ERROR, 'body length differs from content-length');
      return;
    }
    if (endStream) stream.recv = ENDED;
    if (data.byteLength > 0) {
      if (stream.handler && !stream.paused && !stream.inbox) {
        stream.handler.data(stream, data);
        this.credit(stream, data.byteLength);
      } else {
        (stream.inbox ??= []).push(data);
      }
    }
    if (endStream) this.peerEnded(stream, undefined);
  }

  onHeaders(streamId: number, block: Uint8Array, endStream: boolean): void {
    const fields: Http2Headers = [];
    // Always decode: the HPACK table must follow the peer's, whatever we do with the stream.
    const { tooLarge } = this.decoder.decode(block, fields);
    const stream = this.streams.get(streamId);
    if (stream) {
      this.headersOnStream(stream, fields, tooLarge, endStream);
      return;
    }
    if (!this.isServer) {
      this.closedStreamFrame(streamId, 'HEADERS');
      return;
    }
    if ((streamId & 1) === 0) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, `client stream id ${streamId} is even`);
    if (streamId <= this.lastPeerStreamId) {
      // Trailers racing our reset are fine; anything else reuses an old id (RFC 9113 §5.1.1).
      if (this.recentlyReset.includes(streamId)) return;
      throw new Http2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS on closed stream ${streamId}`);
    }
    this.lastPeerStreamId = streamId;
    if (this.goawaySent && streamId > this.goawayLastId) {
      this.sendRst(streamId, ErrorCode.REFUSED_STREAM);
      return;
    }
    if (this.activeStreams >= this.options.maxConcurrentStreams) {
      this.stats.refused++;
      this.countReset();
      this.sendRst(streamId, ErrorCode.REFUSED_STREAM);
      return;
    }
    const created = new Http2Stream(this, streamId, this.peerInitialWindow, this.localInitialWindow);
    if (tooLarge) {
      // RFC 9113 §10.5.1: answer 431 rather than just dropping the stream.
      this.streams.set(streamId, created);
      this.activeStreams++;
      created.recv = ENDED;
      this.countReset();
      this.sendResponse(created, 431, [], true);
      if (!endStream) this.resetStream(created, ErrorCode.NO_ERROR, false);
      return;
    }
    const facts: FieldFacts = { contentLength: -1 };
    const head = validateRequest(fields, facts);
    if (typeof head === 'string') {
      this.countReset();
      this.sendRst(streamId, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    created.request = head;
    created.expectedLength = facts.contentLength;
    if (endStream && facts.contentLength > 0) {
      this.countReset();
      this.sendRst(streamId, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    this.streams.set(streamId, created);
    this.activeStreams++;
    this.stats.streams++;
    if (endStream) {
      created.recv = ENDED;
      created.inboxEnded = true;
    }
    this.handler.stream?.(created);
  }

  private headersOnStream(stream: Http2Stream, fields: Http2Headers, tooLarge: boolean, endStream: boolean): void {
    if (stream.recv === ENDED) {
      this.streamError(stream, ErrorCode.STREAM_CLOSED, 'HEADERS after END_STREAM');
      return;
    }
    if (tooLarge) {
      this.streamError(stream, ErrorCode.PROTOCOL_ERROR, 'header list too large');
      return;
    }
    if (!this.isServer && !stream.response) {
      const facts: FieldFacts = { contentLength: -1 };
      const head = validateResponse(fields, facts);
      if (typeof head === 'string') {
        this.streamError(stream, ErrorCode.PROTOCOL_ERROR, head);
        return;
      }
      if (head.status < 200) {
        // Informational (1xx): a final response follows.
        if (endStream) this.streamError(stream, ErrorCode.PROTOCOL_ERROR, 'END_STREAM on a 1xx response');
        return;
      }
      const noBody = stream.headRequest || head.status === 204 || head.status === 304;
      // RFC 9113 §8.1.1: a body that ends with its head is empty, whatever content-length said.
      if (endStream && !noBody && facts.contentLength > 0) {
        this.streamError(stream, ErrorCode.PROTOCOL_ERROR, 'body length differs from content-length');
        return;
      }
      stream.response = head;
      stream.expectedLength = noBody ? -1 : facts.contentLength;
      if (endStream) stream.recv = ENDED;
      stream.handler?.response?.(stream);
      if (endStream) this.peerEnded(stream, undefined);
      return;
    }
    // Trailers: must end the stream and carry no pseudo-headers.
    if (!endStream) {
      this.streamError(stream, ErrorCode.PROTOCOL_ERROR, 'a second HEADERS without END_STREAM');
      return;
    }
    const trailers = validateTrailers(fields);
    if (typeof trailers === 'string') {
      this.streamError(stream, ErrorCode.PROTOCOL_ERROR, trailers);
      return;
    }
    if (stream.expectedLength >= 0 && stream.receivedLength !== stream.expectedLength) {
      this.streamError(stream, ErrorCode.PROTOCOL_ERROR, 'body length differs from content-length');
      return;
    }
    stream.recv = ENDED;
    this.peerEnded(stream, trailers);
  }

  onPriority(): void {
    this.countControl();
  }

  onRstStream(streamId: number, code: number): void {
    const stream = this.streams.get(streamId);
    if (!stream) {
      if (this.isIdle(streamId)) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
      this.countControl();
      return;
    }
    this.countReset();
    this.finishStream(stream, new Http2StreamError(code, `stream reset by peer (${errorName(code)})`, code === ErrorCode.REFUSED_STREAM));
  }

  onSettings(ack: boolean, payload: Uint8Array): void {
    this.countControl();
    if (ack) {
      if (this.settingsUnacked === 0) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, 'unexpected SETTINGS ACK');
      this.settingsUnacked--;
      const delta = this.options.initialWindowSize - this.localInitialWindow;
      if (delta !== 0) {
        this.localInitialWindow = this.options.initialWindowSize;
        for (const stream of this.streams.values()) stream.recvWindow += delta;
      }
      return;
    }
    for (let at = 0; at < payload.byteLength; at += 6) {
      const id = (payload[at]! << 8) | payload[at + 1]!;
      const value = ((payload[at + 2]! << 24) | (payload[at + 3]! << 16) | (payload[at + 4]! << 8) | payload[at + 5]!) >>> 0;
      switch (id) {
        case SettingId.HEADER_TABLE_SIZE:
          this.encoder.setPeerMaxTableSize(value);
          break;
        case SettingId.ENABLE_PUSH:
          if (value > 1 || (this.isServer === false && value !== 0)) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, 'invalid ENABLE_PUSH');
          break;
        case SettingId.MAX_CONCURRENT_STREAMS:
          this.peerMaxStreams = value;
          break;
        case SettingId.INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW_SIZE) throw new Http2Error(ErrorCode.FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE above 2^31-1');
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const stream of this.streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW_SIZE) throw new Http2Error(ErrorCode.FLOW_CONTROL_ERROR, 'stream window above 2^31-1');
          }
          if (delta > 0) this.pump();
          break;
        }
        case SettingId.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_ALLOWED_FRAME_SIZE) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, 'invalid MAX_FRAME_SIZE');
          this.peerMaxFrameSize = value;
          break;
        default:
          // MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored (§6.5.2).
          break;
      }
    }
    this.peerSettingsSeen = true;
    this.out.settingsAck();
    this.handler.settings?.(this);
  }

  onPushPromise(): void {
    // We never enable push (clients) and clients never push (servers).
    throw new Http2Error(ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE not enabled');
  }

  onPing(ack: boolean, payload: Uint8Array): void {
    this.countControl();
    if (!ack) {
      this.out.ping(true, payload);
      return;
    }
    const id = ((payload[4]! << 24) | (payload[5]! << 16) | (payload[6]! << 8) | payload[7]!) >>> 0;
    const waiter = this.pings.get(id);
    if (waiter) {
      this.pings.delete(id);
      waiter.resolve(performance.now() - waiter.start);
    }
  }

  onGoaway(lastStreamId: number, code: number): void {
    this.goawayReceived = true;
    if (!this.isServer) {
      // Streams we opened above lastStreamId were not processed: safe to retry elsewhere.
      for (const stream of [...this.streams.values()]) {
        if (stream.id > lastStreamId) {
          this.finishStream(stream, new Http2StreamError(ErrorCode.REFUSED_STREAM, `not processed before GOAWAY (${errorName(code)})`, true));
        }
      }
    }
    this.handler.goaway?.(this, code, lastStreamId);
    if (code !== ErrorCode.NO_ERROR && !this.goawaySent) this.sendGoaway(ErrorCode.NO_ERROR, '');
    this.maybeFinish();
  }

  onWindowUpdate(streamId: number, increment: number): void {
    if (streamId === 0) {
      this.connSendWindow += increment;
      if (this.connSendWindow > MAX_WINDOW_SIZE) throw new Http2Error(ErrorCode.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      this.pump();
      return;
    }
    const stream = this.streams.get(streamId);
    if (!stream) {
      if (this.isIdle(streamId)) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${streamId}`);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW_SIZE) {
      this.streamError(stream, ErrorCode.FLOW_CONTROL_ERROR, 'stream window above 2^31-1');
      return;
    }
    if (stream.queued > 0 || stream.endQueued) this.pumpStream(stream);
  }

  onStreamError(error: Http2Error): void {
    const stream = this.streams.get(error.streamId);
    if (stream) this.streamError(stream, error.code, error.message);
    else if (this.isIdle(error.streamId)) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, `frame on idle stream ${error.streamId}`);
    else this.sendRst(error.streamId, error.code);
  }

  /** A stream id the peer could not have used yet. */
  private isIdle(streamId: number): boolean {
    const peerInitiated = (streamId & 1) === (this.isServer ? 1 : 0);
    return peerInitiated ? streamId > this.lastPeerStreamId : streamId >= this.nextStreamId;
  }

  /** A frame for a stream not in the table: idle is a connection error; closed is counted and answered. */
  private closedStreamFrame(streamId: number, what: string): void {
    if (this.isIdle(streamId)) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, `${what} on idle stream ${streamId}`);
    this.countControl();
    this.sendRst(streamId, ErrorCode.STREAM_CLOSED);
  }

  private countReset(): void {
    if (!this.resets.hit(this.options.maxResetsPerSecond)) throw new Http2Error(ErrorCode.ENHANCE_YOUR_CALM, 'too many streams reset or refused');
  }

  private countControl(): void {
    if (!this.controls.hit(this.options.maxControlFramesPerSecond)) throw new Http2Error(ErrorCode.ENHANCE_YOUR_CALM, 'control frame flood');
  }

  private peerEnded(stream: Http2Stream, trailers: Http2Headers | undefined): void {
    stream.trailers = trailers;
    if (stream.handler && !stream.paused && !stream.inbox) {
      stream.handler.end?.(stream, trailers);
    } else {
      stream.inboxEnded = true;
    }
    if (stream.send === ENDED && !stream.inbox) this.finishStream(stream, undefined);
  }

  /** @internal deliver what waited for a handler or a resume. */
  deliverInbox(stream: Http2Stream): void {
    const handler = stream.handler;
    if (!handler) return;
    const inbox = stream.inbox;
    if (inbox) {
      while (inbox.length > 0 && !stream.paused && stream.handler === handler && !stream.closed) {
        const chunk = inbox.shift()!;
        handler.data(stream, chunk);
        this.credit(stream, chunk.byteLength);
      }
      if (inbox.length > 0) {
        this.scheduleFlush();
        return;
      }
      stream.inbox = undefined;
    }
    if (stream.inboxEnded && !stream.closed) {
      stream.inboxEnded = false;
      handler.end?.(stream, stream.trailers);
      if (stream.send === ENDED) this.finishStream(stream, undefined);
    }
    this.scheduleFlush();
  }

  /** Consumed bytes refill the windows once half of one is used. */
  private credit(stream: Http2Stream | undefined, n: number): void {
    if (n === 0) return;
    this.connRecvUnacked += n;
    if (this.connRecvUnacked >= this.options.connectionWindowSize / 2) {
      this.out.windowUpdate(0, this.connRecvUnacked);
      this.connRecvWindow += this.connRecvUnacked;
      this.connRecvUnacked = 0;
    }
    if (!stream || stream.recv === ENDED || stream.closed) return;
    stream.recvUnacked += n;
    if (stream.recvUnacked >= this.localInitialWindow / 2) {
      this.out.windowUpdate(stream.id, stream.recvUnacked);
      stream.recvWindow += stream.recvUnacked;
      stream.recvUnacked = 0;
    }
  }

  // ---- writing ----

  /** @internal */
  sendResponse(stream: Http2Stream, status: number, headers: Http2Headers, endStream: boolean): void {
    if (!this.isServer) throw new Error('respond() is for server streams');
    if (stream.closed) return;
    if (stream.headersSent && status >= 200) throw new Error(`stream ${stream.id}: response head already sent`);
    const final = status >= 200;
    this.out.headers(stream.id, this.encoder.encodeResponse(status, headers), endStream && final, this.peerMaxFrameSize);
    if (final) stream.headersSent = true;
    if (endStream && final) this.sentEnd(stream);
    this.scheduleFlush();
  }

  /** @internal */
  sendData(stream: Http2Stream, chunk: Uint8Array, end: boolean): boolean {
    if (stream.closed || stream.send === ENDED || stream.endQueued) return false;
    if (!stream.headersSent) throw new Error(`stream ${stream.id}: body before the head`);
    if (chunk.byteLength > 0) {
      stream.queue.push(chunk);
      stream.queued += chunk.byteLength;
    }
    if (end) stream.endQueued = true;
    this.pumpStream(stream);
    const below = stream.queued < this.options.streamHighWaterMark;
    if (!below) stream.wantDrain = true;
    return below;
  }

  /** @internal */
  sendDataRange(stream: Http2Stream, bytes: Uint8Array, start: number, end: number): boolean {
    const length = end - start;
    if (stream.queued === 0 && !stream.closed && stream.send !== ENDED && !stream.endQueued && stream.headersSent && !this.socketBlocked && length > 0) {
      if (length <= stream.sendWindow && length <= this.connSendWindow && length <= this.peerMaxFrameSize) {
        // The usual response body: one DATA frame now, straight from the caller's bytes.
        stream.sendWindow -= length;
        this.connSendWindow -= length;
        this.out.dataRange(stream.id, bytes, start, end);
        this.scheduleFlush();
        return true;
      }
    }
    // Queued, or larger than a window or frame: a copy, as the caller's bytes are valid during the call only.
    return this.sendData(stream, bytes.slice(start, end), false);
  }

  /** @internal */
  endStream(stream: Http2Stream, chunk: Uint8Array | undefined, trailers: Http2Headers | undefined): void {
    if (stream.closed || stream.send === ENDED || stream.endQueued) return;
    if (!stream.headersSent) {
      if (this.isServer) this.sendResponse(stream, 200, [], false);
      else throw new Error(`stream ${stream.id}: end before the head`);
    }
    stream.trailersQueued = trailers;
    this.sendData(stream, chunk ?? EMPTY, true);
  }

  /** Frame as much of a stream's queue as the windows and the socket allow. */
  private pumpStream(stream: Http2Stream, maxFrames = Number.POSITIVE_INFINITY): boolean {
    const maxFrame = this.peerMaxFrameSize;
    let frames = 0;
    while (stream.queued > 0) {
      if (this.socketBlocked || frames >= maxFrames) break;
      const allowed = Math.min(stream.sendWindow, this.connSendWindow, maxFrame);
      if (allowed <= 0) break;
      const head = stream.queue[0]!;
      let piece: Uint8Array;
      if (head.byteLength <= allowed) {
        piece = head;
        stream.queue.shift();
      } else {
        piece = head.subarray(0, allowed);
        stream.queue[0] = head.subarray(allowed);
      }
      frames++;
      stream.queued -= piece.byteLength;
      stream.sendWindow -= piece.byteLength;
      this.connSendWindow -= piece.byteLength;
      const last = stream.queued === 0 && stream.endQueued && !stream.trailersQueued;
      this.out.data(stream.id, piece, last);
      if (last) {
        this.sentEnd(stream);
        this.scheduleFlush();
        return true;
      }
    }
    if (stream.queued === 0 && stream.endQueued && stream.send !== ENDED) {
      if (stream.trailersQueued) {
        const e = this.encoder;
        e.begin();
        for (let i = 0; i < stream.trailersQueued.length; i += 2) e.field(stream.trailersQueued[i]!, stream.trailersQueued[i + 1]!);
        this.out.headers(stream.id, e.finish(), true, this.peerMaxFrameSize);
      } else {
        this.out.data(stream.id, EMPTY, true);
      }
      this.sentEnd(stream);
      this.scheduleFlush();
      return true;
    }
    if (stream.queued > 0) {
      if (!this.sending.has(stream) || stream.sendWindow > 0) stream.stalledSince = Date.now();
      this.sending.add(stream);
    } else {
      this.sending.delete(stream);
    }
    this.scheduleFlush();
    if (stream.wantDrain && stream.queued < this.options.streamHighWaterMark) {
      stream.wantDrain = false;
      stream.handler?.drain?.(stream);
    }
    return frames > 0;
  }

  private sentEnd(stream: Http2Stream): void {
    stream.send = ENDED;
    stream.endQueued = false;
    this.sending.delete(stream);
    if (stream.recv === ENDED) {
      // Both sides done; a body nobody read is dropped with the stream.
      this.finishStream(stream, undefined);
      return;
    }
    // RFC 9113 §8.1: the response is complete; the rest of the request is not needed.
    // Not for CONNECT, where END_STREAM is a half-close of the tunnel (§8.5).
    if (this.isServer && stream.request?.method !== 'CONNECT') {
      this.sendRst(stream.id, ErrorCode.NO_ERROR);
      this.finishStream(stream, undefined);
    }
  }

  /** Pump every stream waiting for window or socket, one frame each per pass, so that none starves the others. */
  private pump(): void {
    let progressed = true;
    while (progressed && this.sending.size > 0 && !this.socketBlocked && this.connSendWindow > 0) {
      progressed = false;
      // A Set may lose its current member while iterating; that is safe.
      for (const stream of this.sending) {
        if (this.pumpStream(stream, 1)) progressed = true;
        if (this.socketBlocked || this.connSendWindow <= 0) break;
      }
    }
  }

  /** @internal */
  resetStream(stream: Http2Stream, code: number, local: boolean): void {
    if (stream.closed) return;
    this.sendRst(stream.id, code);
    this.scheduleFlush();
    this.finishStream(stream, new Http2StreamError(code, local ? `stream reset (${errorName(code)})` : `stream error (${errorName(code)})`));
  }

  private streamError(stream: Http2Stream, code: number, message: string): void {
    if (stream.closed) return;
    this.sendRst(stream.id, code);
    this.finishStream(stream, new Http2StreamError(code, message));
  }

  private finishStream(stream: Http2Stream, error: Http2StreamError | undefined): void {
    if (stream.closed) return;
    stream.closed = true;
    this.streams.delete(stream.id);
    this.sending.delete(stream);
    this.activeStreams--;
    if (error) this.stats.resets++;
    // Bytes still unread are no longer owed to anyone: give the connection window back.
    if (stream.inbox) {
      let unread = 0;
      for (const chunk of stream.inbox) unread += chunk.byteLength;
      stream.inbox = undefined;
      this.credit(undefined, unread);
    }
    stream.queue.length = 0;
    stream.queued = 0;
    stream.handler?.close(stream, error);
    this.maybeFinish();
  }

  private sendRst(streamId: number, code: number): void {
    this.out.rstStream(streamId, code);
    this.recentlyReset[this.recentlyResetAt] = streamId;
    this.recentlyResetAt = (this.recentlyResetAt + 1) % this.recentlyReset.length;
  }

  private sendGoaway(code: number, debug: string): void {
    this.goawaySent = true;
    this.goawayLastId = this.lastPeerStreamId;
    this.stats.goawayCode = code;
    this.out.goaway(this.lastPeerStreamId, code, debug ? te.encode(debug.slice(0, 200)) : undefined);
    this.scheduleFlush();
  }

  /** After GOAWAY (either way), end the connection once no stream is left. */
  private maybeFinish(): void {
    if (this.closed || this.activeStreams > 0) return;
    if (!this.goawaySent && !this.goawayReceived) return;
    this.flush();
    this.conn.end();
  }

  private connectionError(error: unknown): void {
    const h2 = error instanceof Http2Error ? error : new Http2Error(ErrorCode.INTERNAL_ERROR, String(error));
    this.parser.stop();
    this.closeError = h2;
    if (!this.goawaySent || h2.code !== ErrorCode.NO_ERROR) this.sendGoaway(h2.code, h2.message);
    this.flush();
    this.conn.end();
    // Do not wait for a peer that keeps the socket open: the ticker destroys it later.
    this.closing = Date.now();
  }
  private closing = 0;

  private scheduleFlush(): void {
    if (this.inRead || this.flushScheduled) return;
    this.flushScheduled = true;
    flushQueue.push(this);
    if (!flushArmed) {
      flushArmed = true;
      setImmediate(flushQueued);
    }
  }

  /** @internal */
  flush(): void {
    if (this.out.length === 0 || this.closed) return;
    const bytes = this.out.take();
    if (this.socketBlocked) {
      this.bufferedWhileBlocked += bytes.byteLength;
      if (this.bufferedWhileBlocked > this.options.maxOutputBuffered) {
        this.destroy(new Http2Error(ErrorCode.ENHANCE_YOUR_CALM, 'peer does not read'));
        return;
      }
    }
    if (!this.conn.write(bytes)) this.socketBlocked = true;
  }

  /** @internal */
  onConnDrain(): void {
    this.socketBlocked = false;
    this.bufferedWhileBlocked = 0;
    this.pump();
    this.flush();
  }

  /** @internal */
  onConnEnd(): void {
    // The peer will send nothing more: streams still waiting for it cannot finish.
    this.goawayReceived = true;
    for (const stream of [...this.streams.values()]) {
      if (stream.recv !== ENDED) this.finishStream(stream, new Http2StreamError(ErrorCode.CANCEL, 'connection closed by peer'));
    }
    this.maybeFinish();
  }

  /** @internal */
  onConnClose(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    ticker().delete(this.tick);
    const reason = this.closeError ?? error;
    for (const waiter of this.pings.values()) waiter.reject(new Error(`HTTP/2 connection closed before PING was answered`));
    this.pings.clear();
    for (const stream of [...this.streams.values()]) {
      this.finishStreamOnClose(stream, reason);
    }
    this.handler.close?.(this, reason);
  }

  private finishStreamOnClose(stream: Http2Stream, reason: Error | undefined): void {
    if (stream.closed) return;
    stream.closed = true;
    this.streams.delete(stream.id);
    this.activeStreams--;
    const retryable = !this.isServer && !stream.response && this.goawayReceived;
    stream.handler?.close(stream, new Http2StreamError(ErrorCode.CANCEL, `connection closed${reason ? `: ${reason.message}` : ''}`, retryable));
  }

  private onTick(now: number): void {
    if (this.closed) return;
    if (this.closing > 0) {
      if (now - this.closing > 5000) this.conn.destroy();
      return;
    }
    const o = this.options;
    if (o.idleTimeoutMs > 0 && this.activeStreams === 0 && now - this.lastActivity > o.idleTimeoutMs) {
      this.close();
      this.closing = now;
      return;
    }
    if (o.stallTimeoutMs > 0 && this.sending.size > 0) {
      for (const stream of [...this.sending]) {
        if (now - stream.stalledSince > o.stallTimeoutMs && stream.sendWindow <= 0) {
          this.resetStream(stream, ErrorCode.CANCEL, true);
        }
      }
    }
    if (!this.peerSettingsSeen && now - this.lastActivity > 10_000) this.destroy(new Http2Error(ErrorCode.SETTINGS_TIMEOUT, 'no SETTINGS from peer'));
  }
}

/*
 * Frames produced outside a read of the session's own socket (a response
 * whose upstream answered, a window update) are written at the end of the
 * event-loop turn, after every socket that was ready in it was read: one
 * socket write (one TLS record) per session per turn, however many streams
 * answered in it, not one per stream (a microtask would run after each read).
 */
let flushQueue: Http2Session[] = [];
let flushSpare: Http2Session[] = [];
let flushArmed = false;

function flushQueued(): void {
  flushArmed = false;
  const queue = flushQueue;
  flushQueue = flushSpare;
  for (let i = 0; i < queue.length; i++) {
    const session = queue[i]!;
    session.flushScheduled = false;
    try {
      session.flush();
    } catch (error) {
      session.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  }
  queue.length = 0;
  flushSpare = queue;
}

const connHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as Http2Session).onConnData(chunk);
  },
  drain(conn) {
    (conn.userData as Http2Session).onConnDrain();
  },
  end(conn) {
    (conn.userData as Http2Session).onConnEnd();
  },
  close(conn, error) {
    (conn.userData as Http2Session).onConnClose(error);
  },
};
