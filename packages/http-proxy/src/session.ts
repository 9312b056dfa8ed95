import {
  BodyReader,
  FIELD_POLICY,
  FRAMING_DECHUNK,
  FRAMING_KEEP_ALIVE,
  FieldKinds,
  HeadBuffer,
  NetError,
  Relay,
  ResponseHeadReader,
  Ticker,
  WIRE_KINDS,
  connectionReusable,
  forwardFields,
  formatHostPort,
  httpStatusFor,
  parseRequestHead,
  requestFraming,
  resolveDestination,
  responseFraming,
  serializeRequestHead,
  serializeResponseHead,
  simpleResponse,
  toNetError,
  type Conn,
  type ConnHandler,
  type HeaderList,
  type LogFields,
  type RelayStats,
  type RequestHead,
  type ResponseHead,
  type ResponseHeadSink,
} from '@wmproxy/core-net';
import type { ProxyConfig } from './options.js';
import { parseAbsoluteTarget, parseConnectTarget, TargetError, type Target } from './target.js';
import { connectParent, withTimeout } from './upstream.js';

/** How long a refused client may take to read its answer before the socket is closed. */
const LINGER_MS = 2_000;
/** Methods a request may be sent again with after a connection failed (RFC 9110 section 9.2.2). */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const CONNECT_ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');
/** The client's Host is replaced by the target's (it goes first). */
const REQUEST_KINDS = new FieldKinds({ host: FIELD_POLICY });
/** How often the sessions' deadlines are checked. */
const SWEEP_MS = 100;

/**
 * The timer of one proxy's sessions: each session has one deadline (header,
 * keep-alive, idle or linger), checked on the ticks of one core-net Ticker
 * per proxy instead of a timer per connection.
 */
export class SessionClock {
  private readonly sessions = new Set<Session>();
  private readonly ticker = new Ticker(SWEEP_MS);
  private readonly job = (now: number): void => {
    for (const session of this.sessions) {
      if (session.deadline === 0 || now < session.deadline) continue;
      session.deadline = 0;
      try {
        session.onTimer();
      } catch (error) {
        session.crashed(error);
      }
    }
  };

  get size(): number {
    return this.sessions.size;
  }

  watch(session: Session): void {
    if (this.sessions.size === 0) this.ticker.add(this.job);
    this.sessions.add(session);
  }

  unwatch(session: Session): void {
    if (!this.sessions.delete(session)) return;
    if (this.sessions.size === 0) this.ticker.delete(this.job);
  }
}

const enum Phase {
  /** Reading a request head (header or keep-alive timeout armed). */
  Head,
  /** Deciding or connecting; client paused, its bytes held. */
  Connecting,
  /** Streaming the request body upstream. */
  Body,
  /** Request sent; waiting for the response to finish. Client paused. */
  AwaitResponse,
  /** Handed to a Relay (CONNECT or 101 upgrade). */
  Tunnel,
  /** An answer was sent and the connection is ending. */
  Closing,
  Closed,
}

const enum Response {
  /** No exchange on the upstream (idle or none). */
  Idle,
  Head,
  Body,
  Done,
}

/**
 * One client connection of the HTTP proxy, from its first byte until it
 * closes or becomes a tunnel: reads request heads, applies the policies,
 * (re)uses one upstream connection at a time and streams bodies both ways
 * with backpressure. Events arrive through the shared handler objects below.
 */
export class Session implements ResponseHeadSink {
  readonly config: ProxyConfig;
  readonly client: Conn;
  readonly fields: LogFields;
  phase = Phase.Head;
  private readonly clock: SessionClock;
  /** A partial request head (only while one is partial). */
  private headBuffer: HeadBuffer | undefined = undefined;
  private held: Uint8Array[] = [];
  /** When the session's one timer fires (Date.now() ms; 0: not armed), on the proxy's SessionClock. */
  deadline = 0;
  private lastActivity = Date.now();
  private clientEnded = false;
  private requests = 0;
  // The current exchange.
  private request: RequestHead | undefined;
  private requestBody: BodyReader | undefined;
  private requestBytes: Uint8Array | undefined;
  private target: Target | undefined;
  private retried = false;
  private responseStarted = false;
  private clientKeepAlive = false;
  private dechunk = false;
  // The upstream connection (reused while requests go to the same place).
  private upstream: Conn | undefined;
  private upstreamKey = '';
  private upstreamReused = false;
  private responsePhase = Response.Idle;
  private readonly responseHeads = new ResponseHeadReader();
  private response: ResponseHead | undefined;
  private responseBody: BodyReader | undefined;

  constructor(config: ProxyConfig, client: Conn, clock: SessionClock) {
    this.config = config;
    this.client = client;
    this.clock = clock;
    this.fields = { conn: client.id, client: formatHostPort(client.remoteAddress, client.remotePort) };
    clock.watch(this);
    this.setTimer(config.headerTimeoutMs);
  }

  private setTimer(ms: number): void {
    this.deadline = Date.now() + ms;
  }

  private clearTimer(): void {
    this.deadline = 0;
  }

  /** A bug costs this connection, never the process. */
  crashed(error: unknown): void {
    this.config.logger.error('http proxy session failed', { ...this.fields, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    this.dropUpstream();
    this.client.destroy();
  }

  // ---- client side -------------------------------------------------------

  onClientData(chunk: Uint8Array): void {
    this.lastActivity = Date.now();
    switch (this.phase) {
      case Phase.Head:
        this.readHead(chunk);
        return;
      case Phase.Body:
        this.readRequestBody(chunk);
        return;
      case Phase.Connecting:
      case Phase.AwaitResponse:
        this.held.push(chunk.slice());
        this.client.pause();
        return;
      default:
      // Closing: the answer is sent; whatever else the client says is dropped.
    }
  }

  onClientEnd(): void {
    this.clientEnded = true;
    if (this.phase === Phase.Head) {
      if (this.headBuffer === undefined && this.held.length === 0) this.closeClient();
      else this.destroy('client closed in the middle of a request head');
    } else if (this.phase === Phase.Body && this.requestBody && !this.requestBody.done) {
      this.destroy('client closed in the middle of a request body');
    }
  }

  onClientDrain(): void {
    if (this.responsePhase === Response.Body) this.upstream?.resume();
  }

  onClientClose(): void {
    if (this.phase !== Phase.Tunnel && this.requests > 0) {
      const client = this.client;
      this.config.logger.info('http client closed', { ...this.fields, requests: this.requests, bytesIn: client.bytesRead, bytesOut: client.bytesWritten });
    }
    this.phase = Phase.Closed;
    this.clearTimer();
    this.clock.unwatch(this);
    this.headBuffer = undefined;
    this.dropUpstream();
  }

  private readHead(chunk: Uint8Array): void {
    const view = this.headBuffer === undefined ? chunk : this.headBuffer.feed(chunk);
    const result = parseRequestHead(view, this.config.limits);
    if (result.kind === 'incomplete') {
      (this.headBuffer ??= new HeadBuffer()).keep(view);
      return;
    }
    // The buffer goes with the head: an idle keep-alive connection keeps no head bytes.
    this.headBuffer = undefined;
    if (result.kind === 'error') {
      this.answerAndClose(result.status, `bad request head: ${result.reason}`);
      return;
    }
    const rest = view.subarray(result.consumed);
    // What followed the head precedes anything still held (held chunks arrived later).
    if (rest.length > 0) this.held.unshift(rest.slice());
    this.onRequest(result.head);
  }

  private onRequest(head: RequestHead): void {
    this.clearTimer();
    this.requests++;
    this.request = head;
    this.phase = Phase.Connecting;
    this.client.pause();
    const config = this.config;
    const isConnect = head.method === 'CONNECT';
    if (isConnect ? !config.allowConnect : !config.allowHttp) {
      this.answerAndClose(405, `${isConnect ? 'CONNECT' : 'plain HTTP'} is disabled on this port`);
      return;
    }
    // RFC 9110 section 9.3.6: CONNECT has no content; a body would be written into the tunnel.
    // (`Content-Length: 0`, which some clients send, carries none.)
    if (isConnect && head.framing !== 'none' && (head.framing !== 'length' || head.contentLength !== 0)) {
      this.answerAndClose(400, 'CONNECT request with a body', 'A CONNECT request has no content.\n');
      return;
    }
    if (!isConnect && (head.target.charCodeAt(0) === 0x2f || head.target === '*')) {
      this.answerAndClose(400, 'origin-form request to the proxy itself', 'This is wmproxy, a forward proxy: send absolute-form requests (GET http://host/path) or CONNECT.\n');
      return;
    }
    if (config.auth) {
      let credentials: string | undefined;
      for (const [name, value] of head.headers) {
        if (name.length === 19 && name.toLowerCase() === 'proxy-authorization') credentials = value;
      }
      const user = config.auth.check(credentials);
      if (user === undefined) {
        this.challenge(head, credentials === undefined ? 'missing' : 'wrong');
        return;
      }
      this.fields.user = user;
    }
    if (isConnect) void this.startTunnel(head);
    else void this.startForward(head);
  }

  /** 407; keeps the connection when there is no body to skip. */
  private challenge(head: RequestHead, why: string): void {
    const auth = this.config.auth!;
    this.config.logger.info('proxy authentication required', { ...this.fields, method: head.method, target: head.target, credentials: why });
    const keep = head.framing === 'none' && head.keepAlive && !this.clientEnded;
    const answer = simpleResponse(407, { headers: [['Proxy-Authenticate', auth.challenge]], close: !keep });
    if (!keep) {
      this.answerAndClose(0, '', undefined, answer);
      return;
    }
    this.client.write(answer);
    this.nextRequest();
  }

  // ---- CONNECT -----------------------------------------------------------

  private async startTunnel(head: RequestHead): Promise<void> {
    let target: { host: string; port: number; authority: string };
    try {
      target = parseConnectTarget(head.target);
    } catch (error) {
      this.answerAndClose(400, (error as Error).message);
      return;
    }
    if (this.config.connectPorts && !this.config.connectPorts.has(target.port)) {
      this.answerAndClose(403, `CONNECT to port ${target.port} is not allowed`);
      return;
    }
    let upstream: Conn;
    try {
      upstream = await this.open(target.host, target.port, false);
    } catch (error) {
      this.upstreamFailed(error, target.authority);
      return;
    }
    if (this.phase !== Phase.Connecting) {
      upstream.destroy();
      return;
    }
    this.dropUpstream();
    this.phase = Phase.Tunnel;
    this.clearTimer();
    this.clock.unwatch(this);
    this.client.write(CONNECT_ESTABLISHED);
    this.config.logger.info('tunnel open', { ...this.fields, target: target.authority });
    this.startRelay(upstream, target.authority);
  }

  /** Hand both connections to a Relay; bytes the client sent early go first. */
  private startRelay(upstream: Conn, label: string): void {
    for (const chunk of this.held) upstream.write(chunk);
    this.held = [];
    const fields = { ...this.fields, target: label };
    const logger = this.config.logger;
    new Relay(this.client, upstream, {
      idleTimeoutMs: this.config.idleTimeoutMs,
      onClose: (stats: RelayStats) =>
        logger.info('tunnel closed', { ...fields, up: stats.bytesUp, down: stats.bytesDown, ms: stats.durationMs, reason: stats.reason, error: stats.error?.message }),
    });
    if (this.clientEnded) upstream.end();
    this.client.resume();
    upstream.resume();
  }

  // ---- absolute-form requests ---------------------------------------------

  private async startForward(head: RequestHead): Promise<void> {
    const config = this.config;
    let target: Target;
    try {
      target = parseAbsoluteTarget(head.target);
    } catch (error) {
      if (!(error instanceof TargetError)) throw error;
      this.answerAndClose(400, error.message);
      return;
    }
    this.target = target;
    this.requestBody = new BodyReader(head.framing, head.contentLength);
    this.retried = false;
    const viaParent = config.parent?.kind === 'http';
    this.requestBytes = this.upstreamRequest(head, target, viaParent);
    const key = viaParent ? 'parent' : target.authority;
    const idle = this.upstream && !this.upstream.closed && this.upstreamKey === key && this.responsePhase !== Response.Head && this.responsePhase !== Response.Body;
    if (idle) {
      this.upstreamReused = true;
      this.sendRequest();
      return;
    }
    this.dropUpstream();
    await this.connectAndSend(key);
  }

  private async connectAndSend(key: string): Promise<void> {
    const target = this.target!;
    let upstream: Conn;
    try {
      upstream = await this.open(target.host, target.port, this.config.parent?.kind === 'http');
    } catch (error) {
      this.upstreamFailed(error, target.authority);
      return;
    }
    if (this.phase !== Phase.Connecting) {
      upstream.destroy();
      return;
    }
    this.upstream = upstream;
    this.upstreamKey = key;
    this.upstreamReused = false;
    upstream.userData = this;
    upstream.setHandler(upstreamHandler);
    this.sendRequest();
  }

  /** The head sent upstream: end-to-end fields and framing (core-net), Host from the target (first), Via added. */
  private upstreamRequest(head: RequestHead, target: Target, viaParent: boolean): Uint8Array {
    const headers: HeaderList = [['Host', target.hostHeader]];
    forwardFields(head, REQUEST_KINDS, headers);
    requestFraming(head, headers);
    if (this.config.via) headers.push(['Via', this.config.via]);
    if (viaParent && this.config.parent?.authorization) headers.push(['Proxy-Authorization', this.config.parent.authorization]);
    const requestTarget = viaParent ? `http://${target.hostHeader}${target.path}` : target.path;
    return serializeRequestHead(head.method, requestTarget, headers);
  }

  private sendRequest(): void {
    const upstream = this.upstream!;
    this.responsePhase = Response.Head;
    this.responseHeads.clear();
    this.response = undefined;
    this.responseStarted = false;
    upstream.write(this.requestBytes!);
    this.phase = this.requestBody!.done ? Phase.AwaitResponse : Phase.Body;
    this.lastActivity = Date.now();
    if (this.config.idleTimeoutMs > 0) this.setTimer(this.config.idleTimeoutMs);
    else this.clearTimer();
    this.replayHeld();
    if (this.phase !== Phase.Body) return;
    if (this.clientEnded) {
      // The client's FIN came while connecting: the body can never complete, so free the upstream now.
      this.destroy('client closed in the middle of a request body');
      return;
    }
    this.client.resume();
  }

  private readRequestBody(chunk: Uint8Array): void {
    const body = this.requestBody!;
    const consumed = body.push(chunk);
    if (consumed < 0) {
      this.answerAndClose(400, `bad chunked request body: ${body.error}`);
      return;
    }
    const upstream = this.upstream!;
    if (consumed > 0 && !upstream.write(consumed === chunk.length ? chunk : chunk.subarray(0, consumed))) this.client.pause();
    if (!body.done) return;
    if (consumed < chunk.length) this.held.unshift(chunk.slice(consumed));
    this.client.pause();
    this.phase = Phase.AwaitResponse;
  }

  // ---- upstream side -----------------------------------------------------

  onUpstreamData(conn: Conn, chunk: Uint8Array): void {
    if (conn !== this.upstream) return;
    this.lastActivity = Date.now();
    switch (this.responsePhase) {
      case Response.Head:
        this.responseHeads.push(chunk, this.request!.method, this);
        return;
      case Response.Body:
        this.readResponseBody(chunk);
        return;
      default:
        // An idle upstream must not talk: it cannot be trusted with the next request.
        this.dropUpstream();
    }
  }

  onUpstreamDrain(conn: Conn): void {
    if (conn === this.upstream && this.phase === Phase.Body) this.client.resume();
  }

  /** The upstream sent FIN: nothing more will come, so treat it as closed. */
  onUpstreamEnd(conn: Conn): void {
    if (conn !== this.upstream) return;
    this.onUpstreamClose(conn, undefined);
    conn.destroy();
  }

  onUpstreamClose(conn: Conn, error: Error | undefined): void {
    if (conn !== this.upstream) return;
    this.upstream = undefined;
    switch (this.responsePhase) {
      case Response.Head: {
        const body = this.requestBody!;
        // A reused keep-alive connection the server closed just as we sent: retry once on a fresh one,
        // if the method is idempotent (RFC 9110 section 9.2.2: a proxy MUST NOT retry others; the
        // server may have acted on the request before closing).
        if (this.upstreamReused && !this.retried && this.responseHeads.pending === 0 && body.framing === 'none' && IDEMPOTENT.has(this.request!.method)) {
          this.retried = true;
          this.phase = Phase.Connecting;
          void this.connectAndSend(this.upstreamKey);
          return;
        }
        this.upstreamFailed(error ?? new NetError('ECONNRESET', 'upstream closed before responding'), this.target?.authority ?? '');
        return;
      }
      case Response.Body:
        if (this.responseBody!.framing === 'close' && !error) {
          this.responsePhase = Response.Done;
          this.finishExchange(true);
        } else {
          this.destroy(`upstream closed in the middle of a response body${error ? `: ${error.message}` : ''}`);
        }
        return;
      default:
    }
  }

  /** ResponseHeadSink: a malformed response head. */
  onBadHead(reason: string): void {
    this.dropUpstream();
    this.answerAndClose(502, `bad response from ${this.target?.authority}: ${reason}`);
  }

  /** ResponseHeadSink: interim responses (100 Continue, 103 Early Hints) go to HTTP/1.1 clients as they come. */
  onInterim(head: ResponseHead): void {
    if (this.request!.version === '1.1') this.client.write(serializeResponseHead(head.status, head.reason, this.responseHeaders(head)));
  }

  /** ResponseHeadSink: the final head (or 101), with what followed it in `chunk` from `start`. */
  onFinal(head: ResponseHead, chunk: Uint8Array, start: number): void {
    const request = this.request!;
    const rest = chunk.subarray(start);
    if (head.status === 407 && this.config.parent?.kind === 'http') {
      // The parent refused our credentials: the client cannot fix that, so it is a gateway error.
      this.dropUpstream();
      this.answerAndClose(502, 'the parent proxy refused our credentials (407)');
      return;
    }
    if (head.status === 101) {
      this.upgrade(head, rest);
      return;
    }
    this.response = head;
    this.responseStarted = true;
    const headers = this.responseHeaders(head);
    // An HTTP/1.0 client cannot read chunked: core-net decides to decode it and delimit by closing.
    const framing = responseFraming(head.contentLength, head.chunked, request.version, request.keepAlive && head.framing !== 'close' && !this.clientEnded, headers);
    this.dechunk = (framing & FRAMING_DECHUNK) !== 0;
    this.clientKeepAlive = (framing & FRAMING_KEEP_ALIVE) !== 0;
    this.client.write(serializeResponseHead(head.status, head.reason, headers));
    this.responseBody = new BodyReader(head.framing, head.contentLength);
    this.responsePhase = Response.Body;
    this.config.logger.debug('request', { ...this.fields, method: request.method, target: request.target, status: head.status });
    if (this.responseBody.done) this.responseDone(rest);
    else if (rest.length > 0) this.readResponseBody(rest);
  }

  private responseHeaders(head: ResponseHead): HeaderList {
    const headers: HeaderList = [];
    forwardFields(head, WIRE_KINDS, headers);
    if (this.config.via) headers.push(['Via', this.config.via]);
    return headers;
  }

  private readResponseBody(chunk: Uint8Array): void {
    const body = this.responseBody!;
    const consumed = body.push(chunk, this.dechunk ? this : undefined);
    if (consumed < 0) {
      this.destroy(`bad chunked response from ${this.target?.authority}: ${body.error}`);
      return;
    }
    if (!this.dechunk && consumed > 0 && !this.client.write(consumed === chunk.length ? chunk : chunk.subarray(0, consumed))) {
      this.upstream?.pause();
    }
    if (body.done) this.responseDone(chunk.subarray(consumed));
  }

  /** Sink for de-chunking a response to an HTTP/1.0 client. */
  onChunkData(piece: Uint8Array): void {
    if (!this.client.write(piece)) this.upstream?.pause();
  }

  private responseDone(rest: Uint8Array): void {
    this.responsePhase = Response.Done;
    const reusable = connectionReusable(this.response!, this.phase !== Phase.Body, rest.length > 0);
    if (this.phase === Phase.Body) {
      // The server answered before the request body ended: the client connection cannot continue.
      this.clientKeepAlive = false;
      this.finishExchange(false);
      return;
    }
    this.finishExchange(reusable);
  }

  private finishExchange(upstreamReusable: boolean): void {
    if (!upstreamReusable) this.dropUpstream();
    else this.upstream?.resume();
    if (this.clientKeepAlive && this.requestBody?.done && !this.clientEnded) this.nextRequest();
    else this.closeClient();
  }

  private upgrade(head: ResponseHead, rest: Uint8Array): void {
    const upstream = this.upstream!;
    if (this.request!.upgrade === undefined || this.phase !== Phase.AwaitResponse) {
      this.dropUpstream();
      this.answerAndClose(502, 'upstream switched protocols without an upgrade request');
      return;
    }
    const headers = this.responseHeaders(head);
    headers.push(['Connection', 'Upgrade']);
    if (head.upgrade !== undefined) headers.push(['Upgrade', head.upgrade]);
    this.client.write(serializeResponseHead(101, head.reason, headers));
    if (rest.length > 0) this.client.write(rest);
    this.upstream = undefined;
    this.phase = Phase.Tunnel;
    this.clearTimer();
    this.clock.unwatch(this);
    this.startRelay(upstream, this.target?.authority ?? '');
  }

  // ---- shared steps --------------------------------------------------------

  /**
   * Check the destination, then connect (directly, through the connector, or
   * to an HTTP parent); name resolution and connecting share one deadline.
   */
  private open(host: string, port: number, toHttpParent: boolean): Promise<Conn> {
    return withTimeout(this.checkAndConnect(host, port, toHttpParent), this.config.connectTimeoutMs, formatHostPort(host, port));
  }

  private async checkAndConnect(host: string, port: number, toHttpParent: boolean): Promise<Conn> {
    const config = this.config;
    // The vetted addresses are the ones dialled (no second lookup to rebind).
    const addresses = await resolveDestination(host, port, config.destinationDeny, config.resolver);
    if (toHttpParent) {
      return connectParent(config.parent!, config.connectTimeoutMs, config.resolver);
    }
    return config.connector(host, port, config.connectTimeoutMs, config.parent ? undefined : addresses);
  }

  private upstreamFailed(error: unknown, label: string): void {
    const netError = toNetError(error, label);
    this.answerAndClose(httpStatusFor(netError.code), `upstream ${label}: ${netError.message}`, `${netError.code}: cannot reach ${label}\n`);
  }

  /** Back to reading the next request on a keep-alive connection. */
  private nextRequest(): void {
    this.phase = Phase.Head;
    this.request = undefined;
    this.requestBody = undefined;
    this.responseBody = undefined;
    this.response = undefined;
    this.target = undefined;
    this.setTimer(this.config.keepAliveTimeoutMs);
    this.replayHeld();
    if (this.phase === Phase.Head) this.client.resume();
  }

  private replayHeld(): void {
    while (this.held.length > 0 && (this.phase === Phase.Head || this.phase === Phase.Body)) {
      const chunk = this.held.shift()!;
      this.onClientData(chunk);
    }
  }

  /**
   * Answer with `status` (or the prepared `answer`) and close gracefully:
   * FIN after the answer, read and drop what the client still sends, and
   * destroy after a short linger.
   */
  private answerAndClose(status: number, reason: string, body?: string, answer?: Uint8Array): void {
    if (this.phase >= Phase.Closing) return;
    this.dropUpstream();
    if (this.responseStarted) {
      this.destroy(reason);
      return;
    }
    if (status !== 0) {
      const fields = { ...this.fields, status, reason, method: this.request?.method, target: this.request?.target };
      if (status >= 500) this.config.logger.warn('proxy error', fields);
      else this.config.logger.info('request refused', fields);
    }
    this.client.write(answer ?? simpleResponse(status, { body, head: this.request?.method === 'HEAD' }));
    this.closeClient();
  }

  private closeClient(): void {
    this.phase = Phase.Closing;
    this.held = [];
    this.dropUpstream();
    this.client.end();
    this.client.resume();
    this.setTimer(LINGER_MS);
  }

  private destroy(reason: string): void {
    if (this.phase === Phase.Closed) return;
    this.config.logger.warn('connection aborted', { ...this.fields, reason });
    this.phase = Phase.Closing;
    this.dropUpstream();
    this.client.destroy();
  }

  private dropUpstream(): void {
    const upstream = this.upstream;
    if (!upstream) return;
    this.upstream = undefined;
    this.responsePhase = Response.Idle;
    upstream.destroy();
  }

  /** @internal The one timer (on the SessionClock): header / keep-alive timeout, exchange idle timeout, or linger. */
  onTimer(): void {
    switch (this.phase) {
      case Phase.Head:
        // A started head gets 408; a connection that said nothing is just closed (as nginx does).
        if (this.headBuffer !== undefined) {
          this.answerAndClose(408, `no complete request head within ${this.requests === 0 ? this.config.headerTimeoutMs : this.config.keepAliveTimeoutMs} ms`);
        } else this.closeClient();
        return;
      case Phase.Body:
      case Phase.AwaitResponse: {
        const idleFor = Date.now() - this.lastActivity;
        if (idleFor < this.config.idleTimeoutMs) {
          this.setTimer(this.config.idleTimeoutMs - idleFor);
          return;
        }
        if (this.responseStarted) this.destroy('exchange idle timeout');
        else this.answerAndClose(504, `no response from ${this.target?.authority} within ${this.config.idleTimeoutMs} ms`);
        return;
      }
      case Phase.Closing:
        this.client.destroy();
        return;
      default:
    }
  }
}

export const clientHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as Session).onClientData(chunk);
  },
  drain(conn) {
    (conn.userData as Session).onClientDrain();
  },
  end(conn) {
    (conn.userData as Session).onClientEnd();
  },
  close(conn) {
    (conn.userData as Session).onClientClose();
  },
};

const upstreamHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as Session).onUpstreamData(conn, chunk);
  },
  drain(conn) {
    (conn.userData as Session).onUpstreamDrain(conn);
  },
  end(conn) {
    (conn.userData as Session).onUpstreamEnd(conn);
  },
  close(conn, error) {
    (conn.userData as Session).onUpstreamClose(conn, error);
  },
};

/** Answer a connection refused before any parsing (client policy) and close it after a short linger. */
export function refuse(conn: Conn, answer: Uint8Array): void {
  conn.userData = setTimeout(destroyConn, LINGER_MS, conn);
  conn.setHandler(discardHandler);
  conn.write(answer);
  conn.end();
}

function destroyConn(conn: Conn): void {
  conn.destroy();
}

const discardHandler: ConnHandler = {
  data() {
    // dropped
  },
  close(conn) {
    clearTimeout(conn.userData as ReturnType<typeof setTimeout>);
  },
};
