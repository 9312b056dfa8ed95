import {
  CLIENT_PREFACE,
  ErrorCode,
  Http2Session,
  VirtualConn,
  http2RequestToHttp1Fields,
  lowerName,
  type Conn,
  type HeaderList,
  type Http2Headers,
  type Http2Options,
  type Http2SessionHandler,
  type Http2Stream,
  type Http2StreamError,
  type Http2StreamHandler,
  type RequestHead,
} from '@wmproxy/core-net';
import type { ListenerContext } from './context.js';
import { armHedgeTimer, hedgeTimerFired, keepHeld, passedDeadline, pauseSide, resumeSide, takeHeld, toRequestBody, type ClientSide } from './client-side.js';
import { Exchange } from './exchange.js';
import { FORWARDING_HEADERS } from '../headers.js';
import { Deadline, Phase, type ClientConnection, type Http2Responder } from './phase.js';

/*
 * The HTTP/2 request codec of the reverse proxy: one client connection is an
 * `Http2Session` (core-net's codec), each of its streams one request handed
 * to the same `Exchange` (exchange.ts) that serves HTTP/1.1 requests, so
 * routing, limits, balancing, retries, hedging, header rules, the access log
 * and health reports are the HTTP/1 ones. What differs is the wire: the
 * request head arrives decoded (translated to the HTTP/1 field list the
 * policy layer reads), the response head leaves as HEADERS (`respond`),
 * response bodies leave unframed as DATA, and the stream ends with
 * END_STREAM; a reset stream aborts its upstream attempt.
 */

const CRLF = new Uint8Array([13, 10]);
const LAST_CHUNK = new Uint8Array([48, 13, 10, 13, 10]);
/** An HTTP/2 request has no Connection field (validate.ts refuses one): one shared empty token list. */
const NO_TOKENS: string[] = [];

/** RFC 9113 §8.2.2: HTTP/1.1 fields that mean nothing on an HTTP/2 stream (and Host, which travels as :authority). */
const NOT_ON_H2 = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'te']);
/**
 * Fields a client's request trailers may not carry upstream (RFC 9110 §6.5.1):
 * framing, routing, credentials, and what the proxy's forwarding policy and
 * tracing own (a backend that merges trailers into the head would otherwise
 * read a spoofed X-Forwarded-For or a second Content-Length).
 */
const NOT_IN_REQUEST_TRAILERS = new Set([...NOT_ON_H2, ...FORWARDING_HEADERS, 'content-length', 'trailer', 'authorization', 'proxy-authorization', 'cookie', 'traceparent', 'tracestate', 'expect', 'range', 'max-forwards']);

/** True when `bytes` begin with the HTTP/2 client preface (as far as they go: `complete` false when too short to tell). */
export function startsWithPreface(bytes: Uint8Array): { match: boolean; complete: boolean } {
  const n = Math.min(bytes.byteLength, CLIENT_PREFACE.byteLength);
  for (let i = 0; i < n; i++) if (bytes[i] !== CLIENT_PREFACE[i]) return { match: false, complete: true };
  return { match: true, complete: n === CLIENT_PREFACE.byteLength };
}

/**
 * One HTTP/2 client connection: its session (SETTINGS, flow control,
 * limits) and its live streams. On shutdown or when its listener is retired
 * by a reload it sends GOAWAY: streams in flight finish, none is lost (a
 * stream the client opened after the GOAWAY is refused, which clients retry).
 */
export class Http2ClientConnection implements Http2SessionHandler {
  readonly session: Http2Session;
  readonly ctx: ListenerContext;

  constructor(conn: Conn, ctx: ListenerContext, options: Partial<Http2Options> | undefined, first?: Uint8Array) {
    this.ctx = ctx;
    ctx.core.sessions.add(this);
    // Without streams, the connection closes after the keep-alive timeout, as an idle HTTP/1 one does (as in nginx).
    this.session = new Http2Session(conn, 'server', this, { idleTimeoutMs: ctx.core.timeouts.keepAliveMs, ...options });
    this.session.userData = this;
    if (ctx.core.draining) this.session.close();
    if (first !== undefined && first.byteLength > 0) this.session.onConnData(first);
  }

  stream(stream: Http2Stream): void {
    if (this.ctx.core.draining) {
      // Arrived while the GOAWAY was on its way: not processed, the client retries it.
      stream.reset(ErrorCode.REFUSED_STREAM);
      return;
    }
    const client = new Http2ClientStream(stream, this.ctx);
    try {
      client.begin();
    } catch (error) {
      client.crashed(error);
    }
  }

  close(): void {
    this.ctx.core.sessions.delete(this);
  }

  /** On shutdown or retirement: GOAWAY, streams in flight finish. */
  drainIfIdle(): void {
    this.session.close();
  }

  /** The session keeps its own idle and stall timers; the streams' deadlines are their own sessions'. */
  checkDeadline(): void {}

  crashed(error: unknown): void {
    this.ctx.core.logger.error('HTTP/2 connection failed', { client: this.session.conn.remoteAddress, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    this.session.destroy();
  }
}

/**
 * One HTTP/2 stream as the client side of an `Exchange`: the exchange's
 * `session` and its `client` Conn in one object (one allocation per stream
 * besides the exchange). Writes are DATA, `destroy` is RST_STREAM CANCEL,
 * `pause`/`resume` hold the client's stream window (request-body backpressure).
 */
export class Http2ClientStream extends VirtualConn implements ClientConnection, ClientSide, Http2Responder {
  readonly client: Conn = this;
  readonly ctx: ListenerContext;
  readonly http2: Http2Responder = this;
  phase = Phase.Head;
  deadline = 0;
  deadlineKind = Deadline.None;
  exchange: Exchange | undefined = undefined;
  clientEnded = false;
  heldBytes = 0;
  held: Uint8Array[] | undefined = undefined;
  /** The request body is sent upstream chunked (no content-length): DATA frames are framed as chunks. */
  private chunkBody = false;
  clientPaused = false;
  hedgeTimerAt = 0;
  /** Our side ended while the client still sends: what it sends is read and dropped. */
  private discard = false;
  /** Response trailers (a chunked upstream body's, or a gRPC status): sent with END_STREAM. */
  private endTrailers: Http2Headers | undefined = undefined;
  /**
   * A head that ends the stream (an empty body, a trailers-only answer): sent by `exchangeDone`,
   * since ending the stream may close it at once, and the exchange must finish first.
   */
  private endingHead: Http2Headers | undefined = undefined;
  private endingStatus = 0;
  /** The request asked `expect: 100-continue` and has a body: 100 is sent once the body is wanted upstream. */
  private expectContinue = false;
  /** The final response head is sent: interim ones are dropped from then on. */
  private responded = false;

  constructor(
    readonly stream: Http2Stream,
    ctx: ListenerContext,
  ) {
    super();
    this.ctx = ctx;
    this.addressesOf(stream.session.conn);
    stream.userData = this;
  }

  get isClosed(): boolean {
    return this.phase === Phase.Closed;
  }

  /** Translate the request head and hand it to an exchange. */
  begin(): void {
    const stream = this.stream;
    const request = stream.request!;
    const ended = stream.inboxEnded;
    const contentLength = stream.expectedLength >= 0 ? stream.expectedLength : undefined;
    const chunked = contentLength === undefined && !ended;
    this.chunkBody = chunked;
    if (!ended) this.expectContinue = asksContinue(request.headers);
    const head: RequestHead = {
      method: request.method,
      target: request.path,
      version: '1.1',
      headers: http2RequestToHttp1Fields(request),
      // No body and no length: no Content-Length upstream either (a GET stays a GET).
      contentLength,
      chunked,
      framing: chunked ? 'chunked' : contentLength !== undefined && contentLength > 0 ? 'length' : 'none',
      keepAlive: true,
      connection: NO_TOKENS,
      upgrade: undefined,
      expectContinue: false,
      host: request.authority || undefined,
    };
    this.ctx.core.sessions.add(this);
    stream.setHandler(streamHandler);
    if (this.phase !== Phase.Head) return;
    const exchange = new Exchange(this, head, Date.now());
    this.exchange = exchange;
    exchange.start();
  }

  setDeadline(kind: Deadline, ms: number, now?: number): void {
    this.deadlineKind = ms > 0 ? kind : Deadline.None;
    this.deadline = ms > 0 ? (now ?? Date.now()) + ms : 0;
  }

  // ---------------------------------------------------------------- Http2StreamHandler (the client's side)

  onData(chunk: Uint8Array): void {
    if (this.discard || this.phase === Phase.Closed) return;
    if (!this.chunkBody) {
      this.onClientBytes(chunk);
      return;
    }
    // Chunked framing upstream: one chunk per DATA frame.
    const size = chunk.byteLength.toString(16);
    const framed = new Uint8Array(size.length + 4 + chunk.byteLength);
    for (let i = 0; i < size.length; i++) framed[i] = size.charCodeAt(i);
    framed[size.length] = 13;
    framed[size.length + 1] = 10;
    framed.set(chunk, size.length + 2);
    framed.set(CRLF, size.length + 2 + chunk.byteLength);
    this.onClientBytes(framed);
  }

  onEnd(trailers: Http2Headers | undefined): void {
    if (this.discard || this.phase === Phase.Closed) return;
    if (this.chunkBody) this.onClientBytes(trailers === undefined || trailers.length === 0 ? LAST_CHUNK : lastChunkWithTrailers(trailers));
    this.clientEnded = true;
    if (this.phase === Phase.Proxy) this.exchange?.abandonIncompleteBody();
  }

  onDrain(): void {
    this.exchange?.clientDrained();
  }

  onClose(error: Http2StreamError | undefined): void {
    this.phase = Phase.Closed;
    this.ctx.core.sessions.delete(this);
    const exchange = this.exchange;
    this.exchange = undefined;
    this.held = undefined;
    exchange?.clientClosed(false);
    this.dispatchClose(error);
  }

  private onClientBytes(bytes: Uint8Array): void {
    switch (this.phase) {
      case Phase.Proxy:
        if (!toRequestBody(this, bytes)) this.hold(bytes);
        return;
      case Phase.Head:
      case Phase.Connecting:
      case Phase.Local:
        this.hold(bytes);
        return;
      default:
        return;
    }
  }

  // ---------------------------------------------------------------- ClientConnection

  pauseClient(): void {
    pauseSide(this);
  }

  resumeClient(force = false): void {
    resumeSide(this, force);
  }

  hold(chunk: Uint8Array): void {
    // DATA chunks are ours to keep (the codec hands them over); chunk framing made a copy.
    if (chunk.byteLength > 0) keepHeld(this, chunk);
  }

  replayHeld(): void {
    // Called when an upstream wants the body (Exchange.bindUpstream): the client waiting for 100 may send it now,
    // without waiting for the upstream's own 100 (RFC 9110 §10.1.1), which is then not relayed twice.
    if (this.expectContinue) this.interim(100, NO_FIELDS);
    const chunks = takeHeld(this);
    if (chunks === undefined) return;
    for (let i = 0; i < chunks.length; i++) {
      if (this.phase === Phase.Closed) return;
      this.onClientBytes(chunks[i]!);
    }
  }

  exchangeDone(exchange: object, _keepAlive: boolean, _flushed: boolean): void {
    if (this.exchange === exchange) this.exchange = undefined;
    if (this.phase === Phase.Closed) return;
    this.phase = Phase.Closed;
    this.ctx.core.sessions.delete(this);
    this.held = undefined;
    this.heldBytes = 0;
    if (!this.clientEnded) {
      // RFC 9113 §8.1: the response is complete before the request: what the client still sends is read and dropped.
      this.discard = true;
      this.resumeClient(true);
    }
    if (this.endingHead !== undefined) this.stream.respond(this.endingStatus, this.endingHead, true);
    else this.stream.end(undefined, this.endTrailers);
  }

  becomeTunnel(): void {
    // An HTTP/2 request never carries Upgrade (validate.ts refuses it), so no 101 reaches here.
    this.stream.reset(ErrorCode.PROTOCOL_ERROR);
  }

  handOver(): Uint8Array {
    // The exchange answers takeover locations itself on HTTP/2 (see Exchange.route): never reached.
    this.stream.reset(ErrorCode.INTERNAL_ERROR);
    return new Uint8Array(0);
  }

  armHedgeTimer(at: number): void {
    armHedgeTimer(this, at);
  }

  hedgeDue(at: number): void {
    hedgeTimerFired(this, at);
  }

  /** Streams finish on shutdown: the connection's GOAWAY stops new ones. */
  drainIfIdle(): void {}

  checkDeadline(now: number): void {
    const kind = passedDeadline(this, now);
    if (kind !== Deadline.None) this.exchange?.deadlinePassed(kind, now);
  }

  crashed(error: unknown): void {
    this.ctx.core.logger.error('proxy stream failed', { client: this.remoteAddress, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    this.exchange?.up?.destroy();
    this.destroy();
  }

  // ---------------------------------------------------------------- Http2Responder

  respond(status: number, fields: HeaderList, endStream: boolean): void {
    this.responded = true;
    this.expectContinue = false;
    const out = toHttp2Fields(fields);
    if (endStream) {
      this.endingStatus = status;
      this.endingHead = out;
    } else this.stream.respond(status, out, false);
  }

  interim(status: number, fields: HeaderList): void {
    if (this.responded || this.stream.closed || status < 100 || status > 199 || status === 101) return;
    if (status === 100) {
      // One 100 per request: ours (sent early) or the upstream's.
      if (!this.expectContinue) return;
      this.expectContinue = false;
    }
    this.stream.respond(status, fields.length === 0 ? NO_H2_FIELDS : toHttp2Fields(fields), false);
  }

  trailers(fields: ReadonlyArray<readonly [string, string]>): void {
    const out: Http2Headers = [];
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i]!;
      const name = lowerName(field[0]);
      // Framing and routing fields are not allowed in trailers (RFC 9110 §6.5.1).
      if (NOT_ON_H2.has(name) || name === 'content-length' || name === 'trailer') continue;
      out.push(name, field[1]);
    }
    if (out.length > 0) this.endTrailers = out;
  }

  // ---------------------------------------------------------------- Conn (what the exchange writes to)

  write(chunk: Uint8Array): boolean {
    if (this.closed || this.stream.closed) return false;
    if (chunk.byteLength === 0) return true;
    this.bytesWritten += chunk.byteLength;
    return this.stream.write(chunk);
  }

  writeBody(bytes: Uint8Array, start: number, end: number): boolean {
    if (this.closed || this.stream.closed) return false;
    if (end <= start) return true;
    this.bytesWritten += end - start;
    return this.stream.writeRange(bytes, start, end);
  }

  /** The exchange ends the stream through `exchangeDone`. */
  end(): void {}

  destroy(error?: Error): void {
    if (this.closed) return;
    if (!this.stream.closed) this.stream.reset(ErrorCode.CANCEL);
    if (!this.closed) this.dispatchClose(error);
  }

  /** Holds the client's stream window: it stops sending. */
  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }
}

const NO_FIELDS: HeaderList = [];
const NO_H2_FIELDS: Http2Headers = [];

/** A response head's fields for HEADERS: names lower-cased, connection-specific ones dropped. */
function toHttp2Fields(fields: HeaderList): Http2Headers {
  const out: Http2Headers = [];
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    const name = lowerName(field[0]);
    if (NOT_ON_H2.has(name)) continue;
    out.push(name, field[1]);
  }
  return out;
}

/** True when an HTTP/2 request's fields (lower-case names) carry `expect: 100-continue`. */
function asksContinue(headers: Http2Headers): boolean {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === 'expect' && headers[i + 1]!.toLowerCase() === '100-continue') return true;
  }
  return false;
}

/** `0\r\n` + trailer fields + `\r\n`: an HTTP/2 request's trailers for a chunked HTTP/1.1 body. */
function lastChunkWithTrailers(trailers: Http2Headers): Uint8Array {
  let text = '0\r\n';
  for (let i = 0; i < trailers.length; i += 2) {
    const name = trailers[i]!;
    if (NOT_IN_REQUEST_TRAILERS.has(name)) continue;
    text += `${name}: ${trailers[i + 1]!}\r\n`;
  }
  return Buffer.from(`${text}\r\n`, 'latin1');
}

/** A stream's events go to its Http2ClientStream (`stream.userData`); a bug costs the stream, not the connection. */
const streamHandler: Http2StreamHandler = {
  data(stream, chunk) {
    const client = stream.userData as Http2ClientStream;
    try {
      client.onData(chunk);
    } catch (error) {
      client.crashed(error);
    }
  },
  end(stream, trailers) {
    const client = stream.userData as Http2ClientStream;
    try {
      client.onEnd(trailers);
    } catch (error) {
      client.crashed(error);
    }
  },
  drain(stream) {
    const client = stream.userData as Http2ClientStream;
    try {
      client.onDrain();
    } catch (error) {
      client.crashed(error);
    }
  },
  close(stream, error) {
    const client = stream.userData as Http2ClientStream;
    try {
      client.onClose(error);
    } catch (failure) {
      client.ctx.core.logger.error('proxy stream failed', { client: client.remoteAddress, error: String(failure) });
    }
  },
};
