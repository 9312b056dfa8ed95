import {
  BodyReader,
  HeadBuffer,
  Http2ClientPool,
  NetError,
  STATUS_TEXT,
  VirtualConn,
  formatHostPort,
  http1FieldsToHttp2,
  parseRequestHead,
  type Conn,
  type Http2Call,
  type Http2CallError,
  type Http2CallHandler,
  type Http2Headers,
  type Http2PoolOptions,
  type Resolver,
  type Transport,
  type TransportTarget,
} from '@wmproxy/core-net';

/*
 * HTTP/2 upstreams (`h2://` over TLS with ALPN, `h2c://` by prior knowledge)
 * as a core-net Transport: `connect` hands the engine a Conn that speaks
 * HTTP/1.1 on its side, and each request written into it becomes one stream
 * on a shared per-server `Http2ClientPool` (many streams per connection,
 * more connections at MAX_CONCURRENT_STREAMS). The HTTP/1.1 engine
 * (exchange.ts) — routing, retries, hedging, health, header rules, access
 * log — is unchanged; this file is the codec beside it. Fields cross with
 * the RFC 9113 rules of core-net's translate.ts: connection-specific fields
 * dropped, Host → `:authority`, `TE` only as `trailers`.
 */

export interface H2UpstreamOptions {
  /** TLS with ALPN h2 (`h2://`); false: h2c with prior knowledge (`h2c://`). */
  tls: boolean;
  resolver?: Resolver;
  /** Pool options for every server (connections, PING, idle close). */
  pool?: Partial<Omit<Http2PoolOptions, 'host' | 'port' | 'tls' | 'resolver'>>;
}

/** Request heads the engine writes are small; anything larger is not one of ours. */
const MAX_HEAD = 64 * 1024;
const CRLF = '\r\n';
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

/** The transport behind `h2://` and `h2c://` server URLs. `close()` ends every pool. */
export class H2UpstreamTransport implements Transport {
  readonly kind: string;
  private readonly pools = new Map<string, Http2ClientPool>();

  constructor(private readonly options: H2UpstreamOptions) {
    this.kind = options.tls ? 'h2' : 'h2c';
  }

  /** The pool of one server (by address and TLS identity). */
  poolFor(target: TransportTarget, connectTimeoutMs: number): Http2ClientPool {
    const key = `${formatHostPort(target.host, target.port)} ${target.servername ?? ''} ${target.tlsVerify === false ? 'insecure' : ''}`;
    let pool = this.pools.get(key);
    if (!pool) {
      const o = this.options;
      pool = new Http2ClientPool({
        ...o.pool,
        host: target.host,
        port: target.port,
        connectTimeoutMs,
        ...(o.resolver ? { resolver: o.resolver } : {}),
        ...(o.tls ? { tls: { ...(target.servername ? { servername: target.servername } : {}), rejectUnauthorized: target.tlsVerify ?? true } } : {}),
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  async connect(target: TransportTarget, timeoutMs: number, signal?: AbortSignal): Promise<Conn> {
    const pool = this.poolFor(target, timeoutMs);
    if (signal?.aborted) throw new NetError('EABORTED', `connect to ${pool.authority} aborted`);
    // A dead origin fails here, as a socket connect would: the engine's failover and health see a connect failure.
    await pool.ready();
    return new H1OverH2Conn(pool);
  }

  close(): void {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
  }
}

/**
 * One "connection" of the HTTP/1.1 engine: it parses the request the
 * engine writes, sends it as an HTTP/2 stream, and delivers the answer as an
 * HTTP/1.1 response (chunked when the server gave no content-length, its
 * trailers in the last chunk). Keep-alive: the next request is the next stream.
 */
class H1OverH2Conn extends VirtualConn {
  private readonly head = new HeadBuffer();
  private body: BodyReader | undefined;
  private call: Http2Call | undefined;
  private chunked = false;
  private noBody = false;
  private paused = false;
  private readonly sink = { onChunkData: (piece: Uint8Array): void => void this.sendBody(piece) };
  private blocked = false;

  constructor(readonly pool: Http2ClientPool) {
    super();
    this.remoteAddress = pool.options.host;
    this.remotePort = pool.options.port;
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed) return false;
    this.bytesWritten += chunk.byteLength;
    let at = 0;
    while (at < chunk.byteLength && !this.closed) {
      if (this.body) {
        const taken = this.body.push(chunk, this.sink, at);
        if (taken < 0) return this.fail(new NetError('EPROTO', `bad request body for ${this.pool.authority}: ${this.body.error}`));
        at += taken;
        if (this.body.done) this.finishRequestBody();
        if (taken === 0 && at < chunk.byteLength) return this.fail(new NetError('EPROTO', 'bytes after a request whose response is pending'));
        continue;
      }
      if (this.call) return this.fail(new NetError('EPROTO', 'a second request before the response ended'));
      const view = this.head.feed(at === 0 ? chunk : chunk.subarray(at));
      const parsed = parseRequestHead(view, { maxHeadSize: MAX_HEAD });
      if (parsed.kind === 'incomplete') {
        this.head.keep(view);
        return true;
      }
      this.head.clear();
      if (parsed.kind === 'error') return this.fail(new NetError('EPROTO', `request head for ${this.pool.authority}: ${parsed.reason}`));
      const req = parsed.head;
      if (req.upgrade !== undefined) return this.fail(new NetError('EPROTO', `Upgrade (${req.upgrade}) is not carried over HTTP/2 upstreams`));
      // What remains of this chunk after the head (view may be the held copy).
      const rest = view.subarray(parsed.consumed);
      const whole = req.framing === 'none';
      this.noBody = req.method === 'HEAD';
      const headers = http1FieldsToHttp2(req.headers);
      // The engine drops TE (hop-by-hop on HTTP/1.1); gRPC servers may require `te: trailers` (as nginx's grpc_pass sends).
      if (wantsTeTrailers(headers)) headers.push('te', 'trailers');
      this.call = this.pool.request(
        { method: req.method, path: req.target, authority: req.host ?? this.pool.authority, headers },
        callHandler,
        whole ? { userData: this } : { stream: true, userData: this },
      );
      // Failed before returning (the pool refused at once): the engine sees a failed connection.
      if (this.call.closed) return this.fail(new NetError('ECONNRESET', `no HTTP/2 stream to ${this.pool.authority}`));
      if (whole) return rest.byteLength === 0 || this.fail(new NetError('EPROTO', 'bytes after a request without a body'));
      this.body = new BodyReader(req.framing, req.contentLength ?? 0);
      if (this.body.done) this.finishRequestBody();
      chunk = rest;
      at = 0;
    }
    return !this.blocked;
  }

  private sendBody(piece: Uint8Array): void {
    // The call copies nothing: a socket's read buffer is the engine's to keep, so copy once here.
    if (this.call && !this.call.write(Uint8Array.prototype.slice.call(piece))) this.blocked = true;
  }

  private finishRequestBody(): void {
    const trailers = this.body!.trailers;
    this.body = undefined;
    const h2Trailers: Http2Headers | undefined = trailers.length > 0 ? http1FieldsToHttp2(trailers as Array<[string, string]>) : undefined;
    this.call?.end(undefined, h2Trailers);
  }

  private fail(error: NetError): false {
    this.destroy(error);
    return false;
  }

  // ---- the stream's events (callHandler) ----

  onResponse(call: Http2Call): void {
    const head = call.response!;
    const status = head.status;
    let text = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}${CRLF}`;
    let length = false;
    const fields = head.headers;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i]!;
      if (name === 'content-length') length = true;
      text += `${name}: ${fields[i + 1]!}${CRLF}`;
    }
    this.noBody ||= status === 204 || status === 304;
    if (call.stream?.remoteEnded === true && !this.noBody && !length) {
      // HEADERS with END_STREAM (gRPC's trailers-only answer): an empty body by length, so that
      // the engine answers an HTTP/2 client with one HEADERS frame with END_STREAM too.
      this.noBody = true;
      text += `content-length: 0${CRLF}`;
    }
    this.chunked = !this.noBody && !length;
    if (this.chunked) text += `transfer-encoding: chunked${CRLF}`;
    text += CRLF;
    this.deliver(Buffer.from(text, 'latin1'));
  }

  onData(chunk: Uint8Array): void {
    if (this.noBody || chunk.byteLength === 0) return;
    if (this.chunked) this.deliver(Buffer.from(`${chunk.byteLength.toString(16)}${CRLF}`, 'latin1'));
    this.deliver(chunk);
    if (this.chunked) this.deliver(Buffer.from(CRLF, 'latin1'));
  }

  onEnd(trailers?: Http2Headers): void {
    if (!this.chunked) return;
    if (!trailers || trailers.length === 0) {
      this.deliver(LAST_CHUNK);
      return;
    }
    let text = `0${CRLF}`;
    for (let i = 0; i < trailers.length; i += 2) text += `${trailers[i]!}: ${trailers[i + 1]!}${CRLF}`;
    this.deliver(Buffer.from(text + CRLF, 'latin1'));
  }

  onDrain(): void {
    if (!this.blocked) return;
    this.blocked = false;
    this.handler.drain?.(this);
  }

  onClose(call: Http2Call, error?: Http2CallError): void {
    if (call !== this.call) return;
    this.call = undefined;
    this.body = undefined;
    this.blocked = false;
    // A failed stream is a failed connection to the engine (it retries by its own rules); a finished one stays for keep-alive.
    if (error && !this.closed) this.dispatchClose(error);
  }

  private deliver(bytes: Uint8Array): void {
    if (this.closed) return;
    this.bytesRead += bytes.byteLength;
    this.dispatchData(bytes);
  }

  end(): void {
    // The engine half-closes: no more requests on this "connection".
    if (!this.call) this.destroy();
  }

  destroy(error?: Error): void {
    if (this.closed) return;
    const call = this.call;
    this.call = undefined;
    call?.cancel('upstream connection closed by the proxy');
    this.dispatchClose(error);
  }

  pause(): void {
    this.paused = true;
    this.call?.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.call?.resume();
  }
}

const callHandler: Http2CallHandler = {
  response(call) {
    (call.userData as H1OverH2Conn).onResponse(call);
  },
  data(call, chunk) {
    (call.userData as H1OverH2Conn).onData(chunk);
  },
  end(call, trailers) {
    (call.userData as H1OverH2Conn).onEnd(trailers);
  },
  drain(call) {
    (call.userData as H1OverH2Conn).onDrain();
  },
  close(call, error) {
    (call.userData as H1OverH2Conn).onClose(call, error);
  },
};

/** A gRPC request (`content-type: application/grpc[+proto|;...]`, not gRPC-Web) without `te: trailers` yet. */
function wantsTeTrailers(headers: Http2Headers): boolean {
  let grpc = false;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name === 'te') return false;
    if (name === 'content-type') {
      const value = headers[i + 1]!;
      grpc = value.startsWith('application/grpc') && !value.startsWith('application/grpc-web');
    }
  }
  return grpc;
}
