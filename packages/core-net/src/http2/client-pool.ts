import { formatHostPort } from '../address.js';
import { connect, DEFAULT_CONNECT_TIMEOUT_MS, type Resolver } from '../connect.js';
import { NetError, toNetError, type NetErrorCode } from '../errors.js';
import { Ticker } from '../ticker.js';
import type { Transport } from '../transport.js';
import type { Conn, TlsClientOptions } from '../types.js';
import { ErrorCode } from './constants.js';
import type { Http2Headers } from './hpack/decoder.js';
import { Http2Session, type Http2Options, type Http2SessionHandler, type Http2Stream, type Http2StreamError, type Http2StreamHandler } from './session.js';
import type { Http2ResponseHead } from './validate.js';

/** How a pool reaches one origin and how long it keeps its connections. Defaults in `DEFAULT_HTTP2_POOL_OPTIONS`. */
export interface Http2PoolOptions {
  host: string;
  port: number;
  /** TLS with ALPN `h2` (true, or client options; `alpn` is always `['h2']`). Absent: h2c with prior knowledge. */
  tls?: boolean | TlsClientOptions;
  /** `:authority` of requests that give none (default `host:port`). */
  authority?: string;
  /** Most connections to the origin; a new one opens when every other has reached the server's MAX_CONCURRENT_STREAMS. */
  maxConnections: number;
  /** Connect, TLS handshake and the server's first SETTINGS, together. */
  connectTimeoutMs: number;
  /** A connection without streams for this long is closed with GOAWAY (0: never). */
  idleTimeoutMs: number;
  /** A connection that received nothing for this long is PINGed (0: never). */
  pingIntervalMs: number;
  /** A PING not answered within this is a dead connection: it is closed and its streams fail. */
  pingTimeoutMs: number;
  /** Calls waiting for a stream (every connection full or still connecting); more are refused with ELOCAL. */
  maxPending: number;
  /** Limits of each connection (`Http2Session` options; the pool manages idle connections itself). */
  session: Partial<Http2Options>;
  resolver?: Resolver;
  /**
   * Open byte streams through this transport (a tunnel mapping) instead of a
   * socket: HTTP/2 then runs by prior knowledge over what it gives, and `tls`
   * is not used (the transport secures its streams itself, or not).
   */
  transport?: Transport;
}

export const DEFAULT_HTTP2_POOL_OPTIONS = Object.freeze({
  maxConnections: 4,
  connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
  idleTimeoutMs: 60_000,
  pingIntervalMs: 30_000,
  pingTimeoutMs: 10_000,
  maxPending: 1024,
}) satisfies Partial<Http2PoolOptions>;

/** One request through the pool. Its fields become the stream's pseudo-headers and fields. */
export interface Http2PoolRequest {
  method: string;
  path: string;
  /** Default: the pool's authority. */
  authority?: string;
  /** Default `https` over TLS, else `http`. */
  scheme?: string;
  /** Regular fields, flat `[name, value, ...]`, lower-case names. */
  headers?: Http2Headers;
}

export interface Http2CallOptions {
  /**
   * The whole request body (none when absent), sent at once. Such a call is
   * replayed once on another connection if the server never processed it
   * (GOAWAY above its stream id, REFUSED_STREAM).
   */
  body?: Uint8Array;
  /** Request trailers, sent after `body`. */
  trailers?: Http2Headers;
  /** Stream the body yourself with `call.write` / `call.end` (with backpressure); not replayed. */
  stream?: boolean;
  /** The whole call, waiting for a stream included, fails with ETIMEDOUT after this (RST_STREAM CANCEL). */
  deadlineMs?: number;
  /** Aborting cancels the call (RST_STREAM CANCEL) with EABORTED. */
  signal?: AbortSignal;
  /** `call.userData` from the start (the handler may be told of a failure before `request` returns). */
  userData?: unknown;
}

export interface Http2CallHandler {
  /** The final response head arrived (`call.response`). */
  response?(call: Http2Call): void;
  /** Body bytes; the chunk is the handler's to keep. */
  data(call: Http2Call, chunk: Uint8Array): void;
  /** The server finished its side, with trailers if it sent any. */
  end?(call: Http2Call, trailers?: Http2Headers): void;
  /** `write` returned false and the stream can take more now. */
  drain?(call: Http2Call): void;
  /** The call is over, once: `error` set when it failed (connect, reset, deadline, cancel). */
  close(call: Http2Call, error?: Http2CallError): void;
}

/**
 * Why a call failed. `code` is core-net's (`ECONNREFUSED` when the
 * connection could not be made, `ETIMEDOUT` for the deadline or a dead
 * connection, `EABORTED` when cancelled, `ECONNRESET` when the stream or
 * connection was reset, `EPROTO` when the server broke HTTP/2 or TLS would
 * not agree on h2); `http2Code` the RST_STREAM/GOAWAY code when there was one.
 */
export class Http2CallError extends NetError {
  constructor(
    code: NetErrorCode,
    message: string,
    /** The server never processed the request (GOAWAY above its id, REFUSED_STREAM, or no connection): safe to retry elsewhere. */
    readonly notProcessed: boolean,
    readonly http2Code?: number,
    options?: { address?: string; cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'Http2CallError';
  }
}

/** A whole response (`Http2ClientPool.fetch`). */
export interface Http2FetchResponse extends Http2ResponseHead {
  body: Uint8Array;
  trailers: Http2Headers | undefined;
}

const EMPTY = new Uint8Array(0);
const NO_HEADERS: Http2Headers = [];

/**
 * One request/response exchange on the pool. Created by `pool.request`; it
 * waits for a stream when every connection is full, then lives on one
 * stream. `write`/`end` stream a request body (`stream: true`).
 */
export class Http2Call {
  response: Http2ResponseHead | undefined;
  trailers: Http2Headers | undefined;
  /** The stream, once the call got one. */
  stream: Http2Stream | undefined;
  closed = false;
  /** Arbitrary state for the owner. */
  userData: unknown = undefined;
  /** @internal */ attempts = 0;
  /** @internal */ timer: ReturnType<typeof setTimeout> | undefined;
  /** @internal */ queuedWrites: Uint8Array[] | undefined;
  /** @internal */ endRequested = false;
  /** @internal */ endTrailers: Http2Headers | undefined;
  /** @internal */ wantDrain = false;
  /** @internal */ paused = false;
  /** @internal */ connection: PoolConnection | undefined;

  constructor(
    readonly pool: Http2ClientPool,
    readonly head: Http2PoolRequest,
    readonly handler: Http2CallHandler,
    /** @internal */ readonly options: Http2CallOptions,
  ) {}

  /** Body bytes (calls opened with `stream: true`). False: wait for the handler's `drain`. */
  write(chunk: Uint8Array): boolean {
    if (this.closed || this.endRequested || !this.options.stream) return false;
    if (this.stream) return this.stream.write(chunk);
    (this.queuedWrites ??= []).push(chunk);
    this.wantDrain = true;
    return false;
  }

  /** Finish the request body, with trailers if given. */
  end(chunk?: Uint8Array, trailers?: Http2Headers): void {
    if (this.closed || this.endRequested || !this.options.stream) return;
    this.endRequested = true;
    if (this.stream) {
      this.stream.end(chunk, trailers);
      return;
    }
    if (chunk && chunk.byteLength > 0) (this.queuedWrites ??= []).push(chunk);
    this.endTrailers = trailers;
  }

  /** Stop reading the response (the server's window is not refilled). */
  pause(): void {
    this.paused = true;
    this.stream?.pause();
  }
  resume(): void {
    this.paused = false;
    this.stream?.resume();
  }

  /** Abort: RST_STREAM CANCEL, and `close` with EABORTED. */
  cancel(reason = 'cancelled'): void {
    this.pool.finish(this, new Http2CallError('EABORTED', reason, this.stream === undefined));
  }

  /** AbortSignal listener (an object, so no closure per call). @internal */
  handleEvent(): void {
    this.cancel('aborted by signal');
  }
}

/** One connection of a pool. @internal */
class PoolConnection {
  session: Http2Session | undefined;
  ready = false;
  /** Date.now() when the last stream closed; 0 while streams are open. */
  idleSince = 0;
  pingSentAt = 0;
  /** Why the pool gave up on the connection (PING unanswered): what its calls fail with. */
  failure: NetError | undefined;
  connectTimer: ReturnType<typeof setTimeout> | undefined;
  constructor(readonly pool: Http2ClientPool) {}
}

/**
 * HTTP/2 client connections to one origin (undici's Pool for h2): h2 over
 * TLS (ALPN) or h2c by prior knowledge; many streams per connection, and a
 * new connection only when every open one is at the server's
 * MAX_CONCURRENT_STREAMS; GOAWAY honoured (calls the server did not process
 * are replayed or reported as `notProcessed`); quiet connections PINGed and
 * dropped when the PING is not answered; idle ones closed. Per call: a
 * deadline, cancellation (RST_STREAM), a streamed body with backpressure,
 * trailers both ways.
 */
export class Http2ClientPool {
  readonly options: Http2PoolOptions;
  readonly authority: string;
  readonly scheme: 'http' | 'https';
  /** Counters for metrics and tests. */
  readonly stats = { connects: 0, connectFailures: 0, calls: 0, replayed: 0, pingTimeouts: 0 };
  private readonly conns: PoolConnection[] = [];
  private readonly pending: Http2Call[] = [];
  private connecting = 0;
  private closed = false;
  private readyWaiters: Array<{ resolve(): void; reject(error: Error): void }> = [];
  private readonly ticker: Ticker;
  private ticking = false;
  private readonly tick = (now: number): void => this.onTick(now);
  /** @internal */ readonly sessionHandler: Http2SessionHandler = sessionHandler;

  constructor(options: Partial<Http2PoolOptions> & Pick<Http2PoolOptions, 'host' | 'port'>) {
    this.options = { ...DEFAULT_HTTP2_POOL_OPTIONS, session: {}, ...options };
    const o = this.options;
    if (!(o.maxConnections >= 1)) throw new RangeError('maxConnections must be at least 1');
    this.authority = o.authority ?? formatHostPort(o.host, o.port);
    this.scheme = o.tls && !o.transport ? 'https' : 'http';
    const periods = [o.pingIntervalMs, o.pingTimeoutMs, o.idleTimeoutMs].filter((ms) => ms > 0);
    this.ticker = new Ticker(Math.max(20, Math.min(1000, ...periods.map((ms) => ms / 2))));
  }

  /** Connections open or opening. */
  get connections(): number {
    return this.conns.length;
  }

  /** Calls waiting for a stream. */
  get pendingCalls(): number {
    return this.pending.length;
  }

  /** Streams open over every connection. */
  get activeStreams(): number {
    let n = 0;
    for (const conn of this.conns) n += conn.session?.openStreams ?? 0;
    return n;
  }

  /** Start a call; its events arrive on `handler`. Never throws: failures reach `handler.close`. */
  request(head: Http2PoolRequest, handler: Http2CallHandler, options: Http2CallOptions = {}): Http2Call {
    const call = new Http2Call(this, head, handler, options);
    call.userData = options.userData;
    this.stats.calls++;
    if (this.closed) {
      queueMicrotask(() => this.finish(call, new Http2CallError('EABORTED', 'HTTP/2 pool closed', true)));
      return call;
    }
    if (options.signal) {
      if (options.signal.aborted) {
        queueMicrotask(() => call.cancel('aborted by signal'));
        return call;
      }
      options.signal.addEventListener('abort', call, { once: true });
    }
    if (options.deadlineMs !== undefined) {
      call.timer = setTimeout(onCallDeadline, Math.max(0, options.deadlineMs), call);
      (call.timer as { unref?: () => void }).unref?.();
    }
    this.place(call);
    return call;
  }

  /**
   * Resolves once some connection is ready (opening one if none is), or
   * rejects with why none could be made: how a transport built on the pool
   * tells a dead origin at connect time. Calls still queue for streams.
   */
  ready(): Promise<void> {
    if (this.closed) return Promise.reject(new NetError('EABORTED', 'HTTP/2 pool closed'));
    if (this.conns.some((conn) => conn.ready)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.readyWaiters.push({ resolve, reject });
      if (this.connecting === 0 && this.conns.length < this.options.maxConnections) void this.open();
    });
  }

  /** A whole exchange: the response body is collected up to `maxBytes` (default 1 MiB; more fails with EPROTO). */
  fetch(head: Http2PoolRequest, options: Omit<Http2CallOptions, 'stream'> & { maxBytes?: number } = {}): Promise<Http2FetchResponse> {
    return new Promise((resolve, reject) => {
      const collector = new Collector(options.maxBytes ?? 1024 * 1024, resolve, reject);
      this.request(head, collector, options);
    });
  }

  /** Graceful: calls waiting fail with EABORTED, open streams finish, then every connection ends (GOAWAY). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const call of this.pending.splice(0)) this.finish(call, new Http2CallError('EABORTED', 'HTTP/2 pool closed', true));
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(new NetError('EABORTED', 'HTTP/2 pool closed'));
    for (const conn of [...this.conns]) {
      if (conn.session) conn.session.close();
      else this.dropConnection(conn);
    }
    this.stopTicking();
  }

  /** Now: every call fails, every connection is dropped. */
  destroy(): void {
    this.close();
    for (const conn of [...this.conns]) conn.session?.destroy(new NetError('EABORTED', 'HTTP/2 pool destroyed'));
  }

  // ---- placing calls on streams ----

  private place(call: Http2Call): void {
    const conn = this.pick();
    if (conn) {
      this.attach(call, conn);
      return;
    }
    if (this.pending.length >= this.options.maxPending) {
      this.finish(call, new Http2CallError('ELOCAL', `more than ${this.options.maxPending} HTTP/2 calls waiting for ${this.authority}`, true));
      return;
    }
    this.pending.push(call);
    this.maybeOpen();
  }

  /** The first ready connection with a free stream: streams pack onto few connections, as h2 intends. */
  private pick(): PoolConnection | undefined {
    for (const conn of this.conns) {
      if (conn.ready && conn.session!.availableStreams > 0) return conn;
    }
    return undefined;
  }

  /** @internal Give waiting calls the streams that are free now; open a connection if some still wait. */
  dispatch(): void {
    while (this.pending.length > 0) {
      const conn = this.pick();
      if (!conn) break;
      this.attach(this.pending.shift()!, conn);
    }
    this.maybeOpen();
  }

  /** One connection at a time is opened: how many streams it brings is only known from its SETTINGS. */
  private maybeOpen(): void {
    if (this.closed || this.pending.length === 0 || this.connecting > 0 || this.conns.length >= this.options.maxConnections) return;
    void this.open();
  }

  private attach(call: Http2Call, conn: PoolConnection): void {
    const session = conn.session!;
    const { head, options } = call;
    const body = options.body;
    const endAtHead = !options.stream && (body === undefined || body.byteLength === 0) && !options.trailers;
    let stream: Http2Stream;
    try {
      stream = session.request(
        { method: head.method, scheme: head.scheme ?? this.scheme, authority: head.authority ?? this.authority, path: head.path, headers: head.headers ?? NO_HEADERS },
        endAtHead,
      );
    } catch (error) {
      // The session refused (ids exhausted): no stream was opened.
      this.finish(call, new Http2CallError('ECONNRESET', (error as Error).message, true, ErrorCode.REFUSED_STREAM));
      return;
    }
    call.attempts++;
    call.stream = stream;
    call.connection = conn;
    conn.idleSince = 0;
    stream.userData = call;
    stream.setHandler(callStreamHandler);
    if (call.paused) stream.pause();
    if (!options.stream) {
      if (!endAtHead) stream.end(body ?? EMPTY, options.trailers);
      return;
    }
    const queued = call.queuedWrites;
    call.queuedWrites = undefined;
    let below = true;
    if (queued) for (const chunk of queued) below = stream.write(chunk);
    if (call.endRequested) stream.end(undefined, call.endTrailers);
    else if (call.wantDrain && below) {
      call.wantDrain = false;
      call.handler.drain?.(call);
    }
  }

  /** @internal The stream of `call` closed. */
  streamClosed(call: Http2Call, error: Http2StreamError | undefined): void {
    const conn = call.connection;
    call.stream = undefined;
    call.connection = undefined;
    if (conn && conn.session && conn.session.openStreams === 0) conn.idleSince = Date.now();
    if (call.closed) {
      this.dispatch();
      return;
    }
    if (!error) {
      this.finish(call, undefined);
      this.dispatch();
      return;
    }
    const notProcessed = error.retryable && call.response === undefined;
    // A request known whole is sent again, once, on a connection that will process it.
    if (notProcessed && !call.options.stream && call.attempts < 2 && !this.closed) {
      this.stats.replayed++;
      this.place(call);
      this.dispatch();
      return;
    }
    const failure = conn?.failure;
    if (failure) this.finish(call, new Http2CallError(failure.code, `${failure.message} (${this.authority})`, false, undefined, { cause: error }));
    else this.finish(call, new Http2CallError('ECONNRESET', `${error.message} (${this.authority})`, notProcessed, error.code));
    this.dispatch();
  }

  /** @internal End a call once: timers and listeners released, its stream reset if still open, the handler told. */
  finish(call: Http2Call, error: Http2CallError | undefined): void {
    if (call.closed) return;
    call.closed = true;
    if (call.timer) clearTimeout(call.timer);
    call.options.signal?.removeEventListener('abort', call);
    if (call.stream) {
      if (!call.stream.closed) call.stream.reset(ErrorCode.CANCEL);
    } else {
      const at = this.pending.indexOf(call);
      if (at >= 0) this.pending.splice(at, 1);
    }
    call.handler.close(call, error);
  }

  // ---- connections ----

  private async open(): Promise<void> {
    const conn = new PoolConnection(this);
    this.conns.push(conn);
    this.connecting++;
    this.startTicking();
    const o = this.options;
    const started = Date.now();
    let socket: Conn;
    try {
      if (o.transport) socket = await o.transport.connect({ host: o.host, port: o.port }, o.connectTimeoutMs);
      else {
        const tls = o.tls ? { ...(o.tls === true ? {} : o.tls), alpn: ['h2'] } : undefined;
        socket = await connect({ host: o.host, port: o.port, timeoutMs: o.connectTimeoutMs, tls, resolver: o.resolver });
      }
    } catch (error) {
      this.connectFailed(conn, toNetError(error));
      return;
    }
    if (this.closed) {
      socket.destroy();
      this.connectFailed(conn, new NetError('EABORTED', 'HTTP/2 pool closed'));
      return;
    }
    if (o.tls && !o.transport && socket.alpnProtocol !== 'h2') {
      socket.destroy();
      this.connectFailed(conn, new NetError('EPROTO', `${this.authority} did not agree on h2 by ALPN (${socket.alpnProtocol ? `chose ${socket.alpnProtocol}` : 'none chosen'})`));
      return;
    }
    this.stats.connects++;
    const session = new Http2Session(socket, 'client', this.sessionHandler, { ...o.session, idleTimeoutMs: 0 });
    session.userData = conn;
    conn.session = session;
    conn.connectTimer = setTimeout(onSettingsTimeout, Math.max(0, o.connectTimeoutMs - (Date.now() - started)), conn);
    (conn.connectTimer as { unref?: () => void }).unref?.();
  }

  /** No connection: the calls waiting fail, unless a live connection will free streams for them. */
  private connectFailed(conn: PoolConnection, error: NetError): void {
    this.stats.connectFailures++;
    this.dropConnection(conn);
    if (this.conns.some((other) => other.ready)) return;
    const failure = new Http2CallError(error.code, error.message, true, undefined, { address: error.address ?? this.authority, cause: error });
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(failure);
    for (const call of this.pending.splice(0)) this.finish(call, failure);
  }

  /** @internal No new streams go to `conn` (closing, GOAWAY, dead); it stops counting towards `maxConnections`. */
  dropConnection(conn: PoolConnection): void {
    const at = this.conns.indexOf(conn);
    if (at < 0) return;
    this.conns.splice(at, 1);
    if (!conn.ready) this.connecting--;
    if (conn.connectTimer) clearTimeout(conn.connectTimer);
    if (this.conns.length === 0) this.stopTicking();
  }

  /** @internal */
  connectionReady(conn: PoolConnection): void {
    if (conn.ready) {
      this.dispatch(); // new SETTINGS may allow more streams
      return;
    }
    conn.ready = true;
    this.connecting--;
    conn.idleSince = Date.now();
    if (conn.connectTimer) clearTimeout(conn.connectTimer);
    for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
    this.dispatch();
  }

  /** @internal */
  connectionClosed(conn: PoolConnection, error: Error | undefined): void {
    const wasReady = conn.ready;
    if (!wasReady) {
      this.connectFailed(conn, error instanceof NetError ? error : new NetError('EPROTO', `${this.authority} closed the connection before its SETTINGS${error ? `: ${error.message}` : ''}`));
    } else {
      this.dropConnection(conn);
    }
    this.dispatch();
  }

  private startTicking(): void {
    if (this.ticking) return;
    this.ticking = true;
    this.ticker.add(this.tick);
  }

  private stopTicking(): void {
    if (!this.ticking) return;
    this.ticking = false;
    this.ticker.delete(this.tick);
  }

  private onTick(now: number): void {
    const o = this.options;
    for (const conn of [...this.conns]) {
      const session = conn.session;
      if (!conn.ready || !session || session.closed) continue;
      if (conn.pingSentAt > 0) {
        if (now - conn.pingSentAt > o.pingTimeoutMs) {
          this.stats.pingTimeouts++;
          this.dropConnection(conn);
          conn.failure = new NetError('ETIMEDOUT', `connection dead: PING not answered within ${o.pingTimeoutMs} ms`);
          session.destroy(conn.failure);
        }
        continue;
      }
      if (o.idleTimeoutMs > 0 && session.openStreams === 0 && conn.idleSince > 0 && now - conn.idleSince >= o.idleTimeoutMs) {
        this.dropConnection(conn);
        session.close();
        continue;
      }
      if (o.pingIntervalMs > 0 && now - session.lastReadAt >= o.pingIntervalMs) {
        conn.pingSentAt = now;
        session.ping().then(
          () => (conn.pingSentAt = 0),
          () => undefined,
        );
      }
    }
  }
}

const sessionHandler: Http2SessionHandler = {
  settings(session) {
    const conn = session.userData as PoolConnection;
    conn.pool.connectionReady(conn);
  },
  goaway(session) {
    // No new streams here: waiting calls need another connection, which may open now.
    const conn = session.userData as PoolConnection;
    conn.pool.dropConnection(conn);
    conn.pool.dispatch();
  },
  close(session, error) {
    const conn = session.userData as PoolConnection;
    conn.pool.connectionClosed(conn, error);
  },
};

function onSettingsTimeout(conn: PoolConnection): void {
  if (conn.ready) return;
  conn.session?.destroy(new NetError('ETIMEDOUT', `no HTTP/2 SETTINGS from ${conn.pool.authority} within ${conn.pool.options.connectTimeoutMs} ms`));
}

function onCallDeadline(call: Http2Call): void {
  call.timer = undefined;
  call.pool.finish(call, new Http2CallError('ETIMEDOUT', `HTTP/2 call to ${call.pool.authority} exceeded its ${call.options.deadlineMs} ms deadline`, call.stream === undefined && call.attempts === 0));
}

const callStreamHandler: Http2StreamHandler = {
  response(stream) {
    const call = stream.userData as Http2Call;
    if (call.closed) return;
    call.response = stream.response;
    call.handler.response?.(call);
  },
  data(stream, chunk) {
    const call = stream.userData as Http2Call;
    if (!call.closed) call.handler.data(call, chunk);
  },
  end(stream, trailers) {
    const call = stream.userData as Http2Call;
    if (call.closed) return;
    call.trailers = trailers;
    call.handler.end?.(call, trailers);
  },
  drain(stream) {
    const call = stream.userData as Http2Call;
    // Only a body still being written wants to hear (the codec may report one after END_STREAM was queued).
    if (!call.closed && call.options.stream && !call.endRequested) call.handler.drain?.(call);
  },
  close(stream, error) {
    const call = stream.userData as Http2Call;
    call.pool.streamClosed(call, error && error.code !== ErrorCode.NO_ERROR ? error : undefined);
  },
};

/** Collects a whole response for `fetch`. */
class Collector implements Http2CallHandler {
  private chunks: Uint8Array[] = [];
  private size = 0;
  constructor(
    private readonly maxBytes: number,
    private readonly resolve: (response: Http2FetchResponse) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  data(call: Http2Call, chunk: Uint8Array): void {
    this.size += chunk.byteLength;
    if (this.size > this.maxBytes) {
      call.pool.finish(call, new Http2CallError('EPROTO', `response body over ${this.maxBytes} bytes`, false));
      return;
    }
    this.chunks.push(chunk);
  }

  close(call: Http2Call, error?: Http2CallError): void {
    if (error) return this.reject(error);
    if (!call.response) return this.reject(new Http2CallError('EPROTO', 'stream ended without a response', false));
    let body: Uint8Array;
    if (this.chunks.length === 1) body = this.chunks[0]!;
    else {
      body = new Uint8Array(this.size);
      let at = 0;
      for (const chunk of this.chunks) {
        body.set(chunk, at);
        at += chunk.byteLength;
      }
    }
    this.resolve({ status: call.response.status, headers: call.response.headers, body, trailers: call.trailers });
  }
}
