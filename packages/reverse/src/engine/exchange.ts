import {
  BodyReader,
  FRAMING_DECHUNK,
  FRAMING_KEEP_ALIVE,
  NetError,
  Relay,
  ResponseHeadReader,
  STATUS_TEXT,
  WIRE_KINDS,
  composeHead,
  connectionReusable,
  encodeGrpcTimeout,
  forwardFields,
  getHeader,
  httpStatusFor,
  isValidHost,
  normalizePath,
  responseFraming,
  serializeResponseHead,
  toNetError,
  type Conn,
  type ConnHandler,
  type HeaderList,
  type RequestHead,
  type ResponseHead,
  type ResponseHeadSink,
} from '@wmproxy/core-net';
import type { AccessRecord } from '../access-log.js';
import { applyRules, type RuleVariables } from '../headers.js';
import { upstreamRequestHead } from './request-head.js';
import type { CompiledLocation, ConnTakeover, LocationResponse } from '../router.js';
import type { RateLimiter } from '../rate-limit.js';
import type { SelectContext } from '../policies/index.js';
import type { Upstream, UpstreamServer } from '../upstream.js';
import { bodyBufferLimit, retryAllowed, RetrySlot, type FailureKind } from '../retry.js';
import { connectHedged } from './connector.js';
import { answered, earnHedge, hedgeDelay, lostHedge, lostSinceAnswer, overtaken, refundHedge, spendHedge, HEDGE_RETRY_MS } from './hedge.js';
import { Attempt, type AttemptOwner } from './attempt.js';
import type { RequestTrace, Span } from '../trace.js';
import { traceIdOf } from '../trace.js';
import { Deadline, Phase, type ClientConnection } from './phase.js';
import { grpcPublicMessage, grpcStatusFields, grpcStatusForHttp, grpcTimeoutMs, isGrpcRequest, isUnavailableAnswer } from './grpc.js';

/** Held client bytes beyond this pause reading from the client. */
export const HOLD_LIMIT = 64 * 1024;
const EMPTY = new Uint8Array(0);
const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
/** absolute-form request-target: authority, then path and query. */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^#]*)$/i;

/** A response's end-to-end fields (core-net forwardFields: no hop-by-hop ones, no framing). */
function endToEnd(head: ResponseHead): HeaderList {
  const fields: HeaderList = [];
  forwardFields(head, WIRE_KINDS, fields);
  return fields;
}

/** Status lines by status, for the reason last seen with it: upstreams send the same few. */
const statusLines = new Array<{ reason: string; line: string } | undefined>(1000).fill(undefined);

function statusLine(status: number, reason: string): string {
  const cached = statusLines[status];
  if (cached !== undefined && cached.reason === reason) return cached.line;
  const line = `HTTP/1.1 ${status} ${reason}\r\n`;
  statusLines[status] = { reason, line };
  return line;
}

/** A copy of `chunk` from `start` (a Buffer's `slice` would be a view of a read buffer that is reused). */
function copyFrom(chunk: Uint8Array, start: number): Uint8Array {
  return Uint8Array.prototype.slice.call(chunk, start);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/** Live exchanges of this process (a test reads it: an idle keep-alive connection holds none). */
let liveExchanges = 0;
export function exchangeCount(): number {
  return liveExchanges;
}

/**
 * One request on a client connection, from its head to the end of its
 * response (or the tunnel it became): routing, rate limit, local answers,
 * the upstream attempts (retries with their budget, request hedging), the
 * HTTP/1 exchange with the server (core-net's `ResponseHeadReader` and
 * `BodyReader` frame the messages), passive health reports and the access
 * log. Created when a head arrives and dropped when the response ended, so
 * that a keep-alive connection between requests holds none of this.
 */
export class Exchange implements SelectContext, AttemptOwner, ResponseHeadSink {
  readonly session: ClientConnection;
  /** undefined: the head did not parse (the answer is a 400 or 408). */
  readonly req: RequestHead | undefined;
  startedAt: number;
  /** The client connection stays open after this exchange. */
  keepAlive: boolean;
  status = 0;
  bytesSent = 0;
  /** Request bytes from the client: the head, then body bytes as they are forwarded. */
  bytesReceived: number;
  /** While tracing is on: this request's trace (the proxy's span and its attempts'). */
  trace: RequestTrace | undefined = undefined;
  /** Request hedges sent, and won (the hedge answered first or carried on). */
  private hedgesSent = 0;
  private hedgesWon = 0;
  /** The request body, while one is owed. */
  reqReader: BodyReader | undefined = undefined;
  private reqBodySent = false;
  private ended = false;
  private location: CompiledLocation | undefined = undefined;
  private upstream: Upstream | undefined = undefined;
  private path = '';
  /** The authority of an absolute-form target: it replaces the client's Host upstream. */
  private authority: string | undefined = undefined;
  private upstreamTarget = '';
  private limiter: RateLimiter | undefined = undefined;
  /** When set, the whole request must be over by then. */
  requestDeadline = 0;
  /** A gRPC call on an HTTP/2 stream: the proxy's own failures are answered as gRPC statuses (grpc.ts). */
  private grpc = false;
  /** `requestDeadline` comes from the call's grpc-timeout (shorter than the request timeout). */
  private grpcDeadline = false;

  // The current attempt: its server lease, connection, connect and pool wait (attempt.ts).
  private attempt: Attempt | undefined = undefined;
  private tried: Set<UpstreamServer> | undefined = undefined;
  private attempts = 0;
  private firstAttemptAt = 0;
  private lastFailure: { status: number; reason: string } | undefined = undefined;
  /** This request's slot in its upstream's retry budget (retry.ts), from its first budgeted retry until it ends. */
  private retrySlot: RetrySlot | undefined = undefined;
  // Request hedging: a second copy of an idempotent request to another server, as a second attempt.
  private hedge: Attempt | undefined = undefined;
  hedgeDeadline = 0;
  /** The current attempt already counted as a lost hedge (hedge.ts), once is enough. */
  private lagCounted = false;

  // The response.
  private readonly respHeads = new ResponseHeadReader();
  private respHead: ResponseHead | undefined = undefined;
  private respReader: BodyReader | undefined = undefined;
  /** The upstream sent more than it framed: its connection is not reused. */
  private upDirty = false;
  private upPaused = false;
  private dechunk = false;
  private upstreamAddr: string | undefined = undefined;
  /** A location handler waits for the client to drain. */
  private drainWaiter: (() => void) | undefined = undefined;

  /** A copy of the request body sent so far, while it fits `retries.bodyBuffer` (undefined: not kept). */
  private replay: Uint8Array[] | undefined = undefined;
  private replayBytes = 0;

  constructor(session: ClientConnection, head: RequestHead | undefined, now: number, headBytes = 0) {
    this.session = session;
    this.req = head;
    this.startedAt = now;
    this.bytesReceived = headBytes;
    this.keepAlive = head !== undefined && head.keepAlive && !session.clientEnded && !session.ctx.core.draining;
    liveExchanges++;
  }

  /** The current attempt's upstream connection. */
  get up(): Conn | undefined {
    return this.attempt?.conn;
  }

  /** The response head came (the client is being answered by the server). */
  get responding(): boolean {
    return this.respHead !== undefined;
  }

  // SelectContext
  get clientIp(): string {
    return this.session.client.remoteAddress;
  }
  get uri(): string {
    return this.req?.target ?? '';
  }
  header(lower: string): string | undefined {
    return this.req ? getHeader(this.req.headers, lower) : undefined;
  }

  // ---------------------------------------------------------------- routing

  /** Serve the request: route it, then answer locally or start the first upstream attempt. */
  start(): void {
    const head = this.req!;
    const session = this.session;
    const core = session.ctx.core;
    const requestMs = core.timeouts.requestMs;
    const tracer = core.tracer;
    if (tracer !== undefined) this.trace = tracer.start(getHeader(head.headers, 'traceparent'), head.method);
    this.requestDeadline = requestMs > 0 ? this.startedAt + requestMs : 0;
    if (session.http2 !== undefined && isGrpcRequest(head)) {
      this.grpc = true;
      // The call's deadline, capped by the request timeout (a hostile `99999999H` changes nothing).
      const timeoutMs = grpcTimeoutMs(head);
      if (timeoutMs !== undefined && (this.requestDeadline === 0 || timeoutMs < requestMs)) {
        this.requestDeadline = this.startedAt + timeoutMs;
        this.grpcDeadline = true;
      }
    }
    if (head.framing !== 'none') {
      this.reqReader = new BodyReader(head.framing, head.contentLength ?? 0);
      this.startReplay(head);
    }
    if (head.method === 'CONNECT') {
      // A 2xx would turn a pooled upstream connection into a tunnel the next request is written into.
      this.reject(405, 'CONNECT is not proxied by a reverse proxy');
      return;
    }
    let target = head.target;
    let host = head.host;
    if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') {
      // absolute-form: the authority in the target wins over Host (RFC 9112 section 3.2.2),
      // and the Host sent upstream is regenerated from it.
      const match = ABSOLUTE_FORM.exec(target);
      if (!match || match[1]!.length === 0 || !isValidHost(match[1]!)) {
        this.reject(400, 'unsupported request-target form');
        return;
      }
      host = match[1];
      this.authority = host;
      target = match[2]!.charCodeAt(0) === 47 ? match[2]! : `/${match[2]}`;
    }
    const q = target.indexOf('?');
    const rawPath = q < 0 ? target : target.slice(0, q);
    // Matched and forwarded as normalised, so the upstream reads the path the location rules saw.
    const path = target === '*' ? rawPath : normalizePath(rawPath);
    if (path === undefined) {
      this.reject(400, 'invalid request path');
      return;
    }
    if (path !== rawPath) target = q < 0 ? path : path + target.slice(q);
    this.path = path;
    const location = session.ctx.router.route(host, path, head.method, this.clientIp);
    this.location = location;
    if (!location) {
      this.writeLocal(404, [['Content-Type', 'text/plain; charset=utf-8']], '404 Not Found\n', 'no location matched');
      return;
    }
    if (location.auth && location.auth.check(this.header('authorization')) === undefined) {
      const fields: HeaderList = [['WWW-Authenticate', location.auth.challenge], ['Content-Type', 'text/plain; charset=utf-8']];
      this.writeLocal(401, fields, '401 Unauthorized\n', 'basic auth: no valid credentials');
      return;
    }
    if (location.limiter && this.refusedByLimit(location.limiter)) return;
    const spec = location.spec;
    if (spec.respond) {
      const fields: HeaderList = spec.respond.headers ? Object.entries(spec.respond.headers) : [];
      this.writeLocal(spec.respond.status, fields, spec.respond.body ?? '', undefined);
      return;
    }
    if (location.handler) {
      this.runHandler(location).catch((error: unknown) => session.crashed(error));
      return;
    }
    if (spec.takeover) {
      // Takers speak HTTP/1.1 on the raw connection (a WebSocket upgrade); an HTTP/2 stream has none to give.
      if (session.http2 !== undefined) this.writeLocal(400, [['Content-Type', 'text/plain; charset=utf-8']], 'this location needs HTTP/1.1 (a WebSocket upgrade)\n', 'takeover location over HTTP/2');
      else this.handOver(spec.takeover, head);
      return;
    }
    const upstream = core.upstreams.get(spec.upstream!);
    if (!upstream) {
      this.writeLocal(502, [['Content-Type', 'text/plain; charset=utf-8']], '502 Bad Gateway\n', `unknown upstream ${spec.upstream}`);
      return;
    }
    this.upstream = upstream;
    this.upstreamTarget = target;
    if (spec.stripPrefix && path.startsWith(spec.stripPrefix)) {
      const stripped = target.slice(spec.stripPrefix.length);
      this.upstreamTarget = stripped.startsWith('/') ? stripped : `/${stripped}`;
    }
    this.firstAttemptAt = this.startedAt;
    this.tryNext(this.startedAt);
  }

  /** Answer a malformed request and close: nothing after it can be trusted (smuggling). */
  reject(status: number, reason: string): void {
    // `req` stays (when the head parsed): an answer to HEAD carries no content, even a 400.
    this.status = status;
    this.session.ctx.core.logger.warn('bad request', { client: this.clientIp, status, reason });
    this.keepAlive = false;
    this.writeLocal(status, [['Content-Type', 'text/plain; charset=utf-8']], `${status} ${STATUS_TEXT[status] ?? ''}\n`, reason);
  }

  // ---------------------------------------------------------------- choosing and connecting

  /** Try the next server: a new attempt, on a pooled connection or a (hedged) connect. */
  private tryNext(now: number): void {
    const upstream = this.upstream!;
    const server = upstream.pick(this, this.tried);
    if (!server) {
      const failure = this.lastFailure ?? { status: 503, reason: `no available server in upstream "${upstream.name}"` };
      this.respondError(failure.status, failure.reason);
      return;
    }
    this.attempts++;
    const attempt = new Attempt(server, this);
    this.attempt = attempt;
    if (this.trace !== undefined) attempt.span = this.trace.attempt(this.attempts === 1 ? 'attempt' : 'retry');
    const pooled = server.pool.acquire();
    if (pooled) {
      this.bindUpstream(pooled, now);
      return;
    }
    const session = this.session;
    session.phase = Phase.Connecting;
    session.setDeadline(Deadline.None, 0);
    session.pauseClient();
    const core = session.ctx.core;
    const controller = attempt.beginConnect();
    // Meanwhile, a connection another request releases may serve this one first (pooledConn).
    attempt.waitForPool();
    connectHedged({
      primary: server,
      upstream,
      ticker: core.ticker,
      connector: core.connector,
      timeoutMs: core.timeouts.connectMs,
      hedgeDelayMs: core.hedgeDelayMs,
      signal: controller.signal,
      pickSecond: () => {
        const exclude = new Set(this.tried);
        exclude.add(server);
        return upstream.pick(this, exclude);
      },
      adopt: (other, conn) => other.pool.release(conn),
      onFailure: (failed, error) => {
        // Out of descriptors or ports here is the proxy's own failure, not the server's.
        if (error.code !== 'ELOCAL') core.reportFailure(upstream, failed, error.code === 'ETIMEDOUT' ? 'timeout' : 'connect', error.message);
        (this.tried ??= new Set()).add(failed);
      },
    }).then(
      (outcome) => {
        if (!attempt.claimConnect(controller)) {
          outcome.server.pool.release(outcome.conn);
          return;
        }
        attempt.cancelWait();
        attempt.switchTo(outcome.server);
        session.resumeClient();
        try {
          this.bindUpstream(outcome.conn);
        } catch (error) {
          session.crashed(error);
        }
      },
      (error: unknown) => {
        if (!attempt.claimConnect(controller)) return;
        attempt.cancelWait();
        session.resumeClient();
        const netError = toNetError(error, server.address);
        try {
          // A gRPC call whose connect timed out sent nothing: UNAVAILABLE, and free to try the next server.
          const timedOut = netError.code === 'ETIMEDOUT' && !this.grpc;
          this.failAttempt(timedOut ? 'timeout' : 'connect', this.grpc ? 503 : httpStatusFor(netError.code), `connect to ${server.address}: ${netError.code}`, false);
        } catch (failure) {
          session.crashed(failure);
        }
      },
    );
  }

  /** AttemptOwner: a connection another request released beat the connect; the connect goes on and parks its own. */
  pooledConn(attempt: Attempt, conn: Conn): void {
    if (attempt !== this.attempt) {
      attempt.server.pool.release(conn);
      return;
    }
    this.session.resumeClient();
    try {
      this.bindUpstream(conn);
    } catch (error) {
      this.session.crashed(error);
    }
  }

  private bindUpstream(conn: Conn, now = Date.now()): void {
    const req = this.req!;
    const attempt = this.attempt!;
    const server = attempt.server;
    const session = this.session;
    attempt.conn = conn;
    this.upPaused = false;
    this.upDirty = false;
    this.upstreamAddr = server.address;
    conn.userData = this;
    conn.setHandler(upstreamHandler);
    session.phase = Phase.Proxy;
    let head: Uint8Array;
    try {
      head = this.upstreamHead(req, server, attempt.span);
    } catch (error) {
      this.attempt = undefined;
      attempt.abort();
      this.respondError(500, `cannot build the upstream request: ${(error as Error).message}`);
      return;
    }
    conn.write(head);
    if (this.replay && this.replayBytes > 0) for (const piece of this.replay) conn.write(piece);
    const core = session.ctx.core;
    if (this.reqReader && !this.reqReader.done) {
      attempt.sentAt = 0;
      session.setDeadline(Deadline.Body, core.timeouts.clientBodyMs, now);
      session.replayHeld();
      if (session.phase === Phase.Proxy && session.clientEnded) this.abandonIncompleteBody();
      if (session.phase === Phase.Proxy && session.heldBytes < HOLD_LIMIT) session.resumeClient();
    } else {
      session.setDeadline(Deadline.FirstByte, core.timeouts.firstByteMs, now);
      const hedgeMs = core.requestHedgeMs;
      // First-byte times feed the adaptive hedge delay and stall detection; without hedging, neither.
      attempt.sentAt = hedgeMs > 0 ? performance.now() : 0;
      this.lagCounted = false;
      if (hedgeMs > 0 && this.hedge === undefined && req.upgrade === undefined && this.reqReader === undefined && core.retries.methods.includes(req.method)) {
        // Adaptive delay (hedge.ts): the upstream's recent p99 first-byte time, at most requestHedgeMs.
        if (this.attempts === 1) earnHedge(core.hedges, core.hedges.budget, now);
        this.armHedge(now + hedgeDelay(this.upstream!, hedgeMs));
      }
    }
  }

  /** The request head for `server` (request-head.ts); with `span` (tracing), its traceparent names that span as the parent. */
  private upstreamHead(req: RequestHead, server: UpstreamServer, span: Span | undefined): Uint8Array {
    // A call's deadline leaves as what is left of it (the attempt may be a retry or a hedge).
    const grpcTimeout = this.grpc && this.requestDeadline > 0 ? encodeGrpcTimeout(this.requestDeadline - Date.now()) : undefined;
    return upstreamRequestHead(this.session.ctx, this.location!, req, this.upstreamTarget, this.clientIp, this.authority, server.address, span, this, grpcTimeout);
  }

  /** The values of header-rule variables for this request (request-head.ts, response rules). */
  variables(): RuleVariables {
    const req = this.req;
    const client = this.session.client;
    return {
      client_ip: this.clientIp,
      client_port: client.remotePort,
      host: this.authority ?? req?.host ?? '',
      uri: req?.target ?? '',
      method: req?.method ?? '',
      scheme: this.session.ctx.scheme,
      upstream_addr: this.upstreamAddr ?? '',
      status: this.status,
      server_port: client.localPort,
    };
  }

  /** Request body bytes from the client, while the body is owed. */
  forwardRequestBody(chunk: Uint8Array): void {
    const reader = this.reqReader!;
    const session = this.session;
    const taken = reader.push(chunk);
    if (taken < 0) {
      this.keepAlive = false;
      this.abortUpstream();
      if (this.status === 0 && this.respHead === undefined) this.reject(400, `bad request body: ${reader.error}`);
      else session.client.destroy();
      return;
    }
    if (taken > 0) {
      this.bytesReceived += taken;
      this.reqBodySent = true;
      const piece = taken === chunk.byteLength ? chunk : chunk.subarray(0, taken);
      if (this.replay) this.keepForReplay(piece);
      if (!this.up!.write(piece)) session.pauseClient();
    }
    const timeouts = session.ctx.core.timeouts;
    if (reader.done) {
      if (taken < chunk.byteLength) session.hold(chunk.subarray(taken));
      if (this.respHead === undefined) session.setDeadline(Deadline.FirstByte, timeouts.firstByteMs);
    } else if (this.respHead === undefined) session.setDeadline(Deadline.Body, timeouts.clientBodyMs);
  }

  /** The client can take more: a handler waiting on it goes on, or the upstream is read again. */
  clientDrained(): boolean {
    const waiter = this.drainWaiter;
    if (waiter) {
      this.drainWaiter = undefined;
      waiter();
      return true;
    }
    if (this.session.phase === Phase.Proxy && this.up && this.respHead) {
      this.resumeUp();
      this.session.setDeadline(Deadline.Idle, this.session.ctx.core.timeouts.idleMs);
      return true;
    }
    return false;
  }

  /**
   * The client ended its side while its request body was still owed: the
   * request can never complete, so the upstream exchange stops now instead of
   * holding a server connection for the body timeout. The server did nothing
   * wrong and is not blamed. (While connecting, held bytes may yet complete
   * the body: bindUpstream asks again once they went out.)
   */
  abandonIncompleteBody(): void {
    const reader = this.reqReader;
    if (!this.session.clientEnded || !reader || reader.done || this.respHead !== undefined || this.session.heldBytes > 0) return;
    this.session.ctx.core.logger.info('client closed before sending the whole request body', { client: this.clientIp, upstream: this.upstreamAddr });
    this.abortUpstream();
    this.respondError(400, 'client closed before sending the whole request body');
  }

  /** The client connection closed: free everything this exchange holds. */
  clientClosed(tunnel: boolean): void {
    this.requestEnded();
    const waiter = this.drainWaiter;
    this.drainWaiter = undefined;
    if (tunnel) return;
    waiter?.();
    if (this.attempt || this.hedge) this.abortUpstream();
  }

  private pauseUp(): void {
    if (this.upPaused || !this.up) return;
    this.upPaused = true;
    this.up.pause();
  }
  private resumeUp(): void {
    if (!this.upPaused) return;
    this.upPaused = false;
    this.up?.resume();
  }

  // ---------------------------------------------------------------- request hedging

  /**
   * No response byte after `requestHedgeMs`: send the same (idempotent,
   * bodiless) request to another server; the first to answer serves it and
   * the other connection is closed.
   */
  private startRequestHedge(): void {
    this.hedgeDeadline = 0;
    const attempt = this.attempt;
    if (this.session.phase !== Phase.Proxy || this.respHead || !attempt?.conn || this.respHeads.pending > 0) return;
    // Hedging budget (hedge.ts): a share of the requests plus a burst, so that a
    // stalled server's requests are all hedged while an everywhere-slow pool is
    // not sent twice the load. Refused: ask again later (backing off), not never.
    // A request stuck on a server that lost a hedge since its last answer is hedged whatever the budget.
    const core = this.session.ctx.core;
    const sentAt = attempt.sentAt;
    let spent = false;
    if (!lostSinceAnswer(attempt.server, Date.now())) {
      spent = spendHedge(core.hedges);
      // No token; but if other servers answered requests sent after this one, this server lags.
      if (!spent && !this.lagCounted && sentAt !== 0 && overtaken(this.upstream!, attempt.server, sentAt)) {
        this.lagging(attempt.server, sentAt, 'other servers answered later requests');
      }
      if (!spent && !lostSinceAnswer(attempt.server, Date.now())) {
        this.armHedge(Date.now() + (sentAt === 0 ? HEDGE_RETRY_MS : Math.max(HEDGE_RETRY_MS, Math.round(performance.now() - sentAt))));
        return;
      }
    }
    const exclude = new Set(this.tried);
    exclude.add(attempt.server);
    const server = this.upstream!.pick(this, exclude);
    if (!server) {
      if (spent) refundHedge(core.hedges);
      return;
    }
    const hedge = new Attempt(server, this);
    this.hedge = hedge;
    this.hedgesSent++;
    if (this.trace !== undefined) hedge.span = this.trace.attempt('hedge');
    core.hedges.inFlight++;
    const pooled = server.pool.acquire();
    if (pooled) {
      this.bindHedge(hedge, pooled);
      return;
    }
    const controller = hedge.beginConnect();
    core.connector(server, core.timeouts.connectMs, controller.signal).then(
      (conn) => {
        if (!hedge.claimConnect(controller)) {
          server.pool.release(conn);
          return;
        }
        try {
          this.bindHedge(hedge, conn);
        } catch (error) {
          this.session.crashed(error);
        }
      },
      (error: unknown) => {
        if (!hedge.claimConnect(controller)) return;
        const netError = toNetError(error, server.address);
        if (netError.code !== 'ELOCAL') core.reportFailure(this.upstream!, server, netError.code === 'ETIMEDOUT' ? 'timeout' : 'connect', netError.message);
        this.dropHedge();
      },
    );
  }

  /** The request hedge is due at `at` (the session keeps one timer entry for its exchanges). */
  private armHedge(at: number): void {
    this.hedgeDeadline = at;
    this.session.armHedgeTimer(at);
  }

  /** The hedge timer (hedge.ts, through the session): the hedge due at `at` may be due now. */
  hedgeDue(at: number): void {
    if (this.hedgeDeadline === 0) return;
    // An earlier request's timer entry: wait on for this request's deadline (unless it passed meanwhile).
    if (this.hedgeDeadline > at && this.hedgeDeadline > Date.now()) {
      this.armHedge(this.hedgeDeadline);
      return;
    }
    this.startRequestHedge();
  }

  /**
   * The hedge answered first: the original server sent nothing within the
   * hedge delay. A passive-health failure, and a step towards skipping it.
   */
  private hedgeWon(): void {
    const slow = this.attempt!.server;
    const counted = this.lagCounted;
    // The original counts as lagging only when the hedge answered sooner than the original
    // had waited when it was hedged. A hedge that took longer says the whole pool (or this
    // proxy, or the network) was slow at that moment, and which answer was read first is
    // chance; counting it would eject healthy servers of an overloaded pool.
    const sentAt = this.attempt!.sentAt;
    const hedgeSentAt = this.hedge!.sentAt;
    const now = performance.now();
    const fair = sentAt !== 0 && now - hedgeSentAt < hedgeSentAt - sentAt;
    this.promoteHedge();
    // The winner's answer is a latency sample and a sign of life like any other.
    answered(this.upstream!, this.attempt!.server, hedgeSentAt, now);
    if (!counted && fair) this.lagging(slow, sentAt, `${this.upstreamAddr} answered the hedge first`);
  }

  /** `server` sent no first byte within the hedge delay while others answered: passive health and stall detection. */
  private lagging(server: UpstreamServer, sentAt: number, why: string): void {
    this.lagCounted = true;
    const core = this.session.ctx.core;
    const upstream = this.upstream!;
    const verdict = lostHedge(upstream, server, sentAt, Date.now());
    // One slow moment delays every request in flight: it is one failure, not one per request.
    if (verdict === 'ignored') return;
    core.reportFailure(upstream, server, 'timeout', `no first byte within the hedge delay; ${why}`);
    if (verdict === 'skipped') core.logger.warn('upstream stalled, skipped for a while', { upstream: server.address, why });
  }

  private bindHedge(hedge: Attempt, conn: Conn): void {
    hedge.conn = conn;
    hedge.sentAt = performance.now();
    conn.userData = this;
    conn.setHandler(upstreamHandler);
    try {
      conn.write(this.upstreamHead(this.req!, hedge.server, hedge.span));
    } catch {
      this.dropHedge();
    }
  }

  /** Forget the hedge (the original answered first, or the exchange ended): the loser is aborted. */
  private dropHedge(): void {
    this.hedgeDeadline = 0;
    const hedge = this.hedge;
    if (!hedge) return;
    this.hedge = undefined;
    this.session.ctx.core.hedges.inFlight--;
    hedge.abort();
  }

  /** The hedge answered first (or the original failed): it becomes the attempt, the original is aborted. */
  private promoteHedge(): void {
    const loser = this.attempt!;
    const winner = this.hedge!;
    this.attempt = winner;
    this.hedge = undefined;
    this.hedgesWon++;
    loser.span?.set('wmproxy.outcome', 'lost_to_hedge');
    const core = this.session.ctx.core;
    core.hedges.inFlight--;
    this.upstreamAddr = winner.server.address;
    winner.sentAt = 0;
    this.upPaused = false;
    this.upDirty = false;
    this.respHeads.clear();
    loser.abort();
    core.logger.debug('request hedge won', { client: this.clientIp, slow: loser.server.address, upstream: this.upstreamAddr });
  }

  // ---------------------------------------------------------------- upstream side

  onUpstreamData(conn: Conn, chunk: Uint8Array): void {
    if (conn === this.hedge?.conn) this.hedgeWon();
    else if (conn !== this.up) {
      conn.destroy();
      return;
    } else if (this.hedge) this.dropHedge();
    const attempt = this.attempt!;
    if (attempt.sentAt !== 0) {
      // First byte of this attempt: a latency sample and a sign of life (hedge.ts).
      answered(this.upstream!, attempt.server, attempt.sentAt, performance.now());
      attempt.sentAt = 0;
    }
    if (this.respHead) this.forwardResponseBody(chunk, 0);
    else this.respHeads.push(chunk, this.req!.method, this);
  }

  /** ResponseHeadSink: interim responses (100 Continue, 103 Early Hints) go to HTTP/1.1 and HTTP/2 clients. */
  onInterim(head: ResponseHead): void {
    // Rebuilt without hop-by-hop fields (the upstream's version and Connection are its own).
    const http2 = this.session.http2;
    if (http2 !== undefined) http2.interim(head.status, endToEnd(head));
    else if (this.req!.version === '1.1') this.session.client.write(composeHead(statusLine(head.status, head.reason), endToEnd(head)));
  }

  /** ResponseHeadSink: a malformed head. */
  onBadHead(reason: string): void {
    this.failAttempt('bad', 502, `bad response from ${this.upstreamAddr}: ${reason}`, true);
  }

  /** ResponseHeadSink: the final head (or 101); the body bytes that came with it are `chunk` from `start`. */
  onFinal(head: ResponseHead, chunk: Uint8Array, start: number): void {
    this.attempt!.span?.set('http.response.status_code', head.status);
    if (head.status === 101) {
      if (this.req!.upgrade === undefined) {
        this.failAttempt('bad', 502, `101 from ${this.upstreamAddr} without an upgrade request`, false);
        return;
      }
      this.startTunnel(head, copyFrom(chunk, start));
      return;
    }
    const core = this.session.ctx.core;
    if (this.grpc && isUnavailableAnswer(head) && this.canRetry('unavailable')) {
      this.failAttempt('unavailable', 503, `UNAVAILABLE from ${this.upstreamAddr}: ${getHeader(head.headers, 'grpc-message') ?? ''}`, true);
      return;
    }
    if (core.retries.onStatus.includes(head.status) && this.canRetry('status')) {
      this.failAttempt('status', head.status, `status ${head.status} from ${this.upstreamAddr}`, true);
      return;
    }
    this.retrySlot?.release();
    this.respHead = head;
    this.status = head.status;
    const reader = new BodyReader(head.framing, head.contentLength ?? 0);
    this.respReader = reader;
    const req = this.req!;
    if (head.framing === 'close' || (this.reqReader && !this.reqReader.done)) this.keepAlive = false;
    const fields = endToEnd(head);
    if (this.session.http2 !== undefined) {
      // HTTP/2 frames the body itself (DATA, END_STREAM): a chunked body is decoded.
      if (head.contentLength !== undefined) fields.push(['Content-Length', String(head.contentLength)]);
      this.dechunk = head.chunked;
    } else {
      // An HTTP/1.0 client cannot read chunked: core-net decides to decode it and delimit by closing.
      const framing = responseFraming(head.contentLength, head.chunked, req.version, this.keepAlive, fields);
      this.dechunk = (framing & FRAMING_DECHUNK) !== 0;
      this.keepAlive = (framing & FRAMING_KEEP_ALIVE) !== 0;
    }
    if (this.location!.responseRules.length > 0) applyRules(fields, this.location!.responseRules, this.variables());
    // The head goes out with the first body bytes in one write (one syscall less per response).
    this.forwardResponseBody(chunk, start, statusLine(head.status, head.reason), fields);
  }

  /** ChunkSink: decoded body pieces for an HTTP/1.0 client. */
  onChunkData(piece: Uint8Array): void {
    this.bytesSent += piece.byteLength;
    if (!this.session.client.write(piece)) this.pauseUp();
  }

  /**
   * Forward body bytes (`whole` from `start`: no view is made of a chunk that
   * also held the head); with `statusLine`, the response head (`fields`) goes
   * first, in the same write.
   */
  private forwardResponseBody(whole: Uint8Array, start: number, statusLine?: string, fields?: HeaderList): void {
    const reader = this.respReader!;
    const session = this.session;
    const client = session.client;
    if (this.dechunk) {
      const chunk = start === 0 ? whole : whole.subarray(start);
      if (statusLine !== undefined) {
        if (session.http2 !== undefined) session.http2.respond(this.status, fields!, false);
        else {
          const head = composeHead(statusLine, fields!);
          this.bytesSent += head.byteLength;
          client.write(head);
        }
      }
      const taken = chunk.byteLength === 0 ? 0 : reader.push(chunk, this);
      if (taken < 0) {
        this.abortUpstream();
        client.destroy();
        return;
      }
      if (reader.done) {
        if (taken < chunk.byteLength) this.upDirty = true;
        this.finish();
      } else if (taken > 0 || statusLine !== undefined) session.setDeadline(Deadline.Idle, session.ctx.core.timeouts.idleMs);
      return;
    }
    const available = whole.byteLength - start;
    const taken = available === 0 ? 0 : reader.push(whole, undefined, start);
    if (taken < 0) {
      session.ctx.core.logger.warn('bad response body', { upstream: this.upstreamAddr, reason: reader.error });
      this.abortUpstream();
      client.destroy();
      return;
    }
    if (session.http2 !== undefined) {
      // An empty complete body (gRPC's trailers-only answer among them): one HEADERS frame with END_STREAM.
      if (statusLine !== undefined) session.http2.respond(this.status, fields!, taken === 0 && reader.done);
      if (taken > 0) {
        this.bytesSent += taken;
        if (!session.http2.writeBody(whole, start, start + taken)) this.pauseUp();
      }
    } else if (taken > 0 || statusLine !== undefined) {
      const out =
        statusLine !== undefined
          ? session.ctx.wire.responseMemo.compose(statusLine, fields!, taken === 0 ? undefined : whole, start, start + taken)
          : start === 0 && taken === whole.byteLength
            ? whole
            : whole.subarray(start, start + taken);
      this.bytesSent += out.byteLength;
      if (!client.write(out)) this.pauseUp();
    }
    // A complete response (the usual case: head and body in one chunk) needs no idle deadline.
    if (reader.done) {
      if (taken < available) this.upDirty = true;
      this.finish();
    } else if (taken > 0 || statusLine !== undefined) session.setDeadline(Deadline.Idle, session.ctx.core.timeouts.idleMs);
  }

  onUpstreamDrain(conn: Conn): void {
    if (conn === this.up && this.session.phase === Phase.Proxy && this.reqReader && !this.reqReader.done) this.session.resumeClient();
  }

  onUpstreamEnd(conn: Conn): void {
    if (conn !== this.up) return;
    if (this.respReader?.framing === 'close') {
      this.finish();
      return;
    }
    // A FIN before the response is complete: nothing more will come.
    conn.destroy();
  }

  onUpstreamClose(conn: Conn, error: Error | undefined): void {
    const hedge = this.hedge;
    if (hedge && conn === hedge.conn) {
      hedge.conn = undefined;
      this.dropHedge();
      return;
    }
    const attempt = this.attempt;
    if (!attempt || conn !== attempt.conn) return;
    attempt.conn = undefined;
    if (hedge?.conn && !this.respHead) {
      // The original died before answering: the hedge carries on.
      attempt.fail();
      this.promoteHedge();
      return;
    }
    const core = this.session.ctx.core;
    if (this.respHead) {
      if (this.respReader?.framing === 'close' && !error) {
        this.finish();
        return;
      }
      // Truncated response: the client must see it fail, not a short body.
      core.logger.warn('upstream closed mid-response', { upstream: this.upstreamAddr, error: error?.message });
      core.reportFailure(this.upstream!, attempt.server, 'connect', 'closed mid-response');
      this.attempt = undefined;
      attempt.release();
      if (this.grpc) this.endGrpc(grpcStatusForHttp(502), `${this.upstreamAddr} closed the stream mid-response`);
      else this.session.client.destroy();
      return;
    }
    const reason = `${this.upstreamAddr} closed the connection before responding${error ? ` (${toNetError(error).code})` : ''}`;
    // An HTTP/2 stream that never reached the server (no connection could be made, REFUSED_STREAM, GOAWAY
    // above it): for a gRPC call, as a failed connect, retried outside the budget (many calls may wait on one connect).
    const refused = this.grpc && (error as { notProcessed?: boolean } | undefined)?.notProcessed === true;
    // Any other loss before the response head is UNAVAILABLE to a gRPC client, which gRPC retries before response
    // headers (gRFC A6): so does the proxy, within the budget, whatever the method list says.
    this.failAttempt(refused ? 'connect' : 'reset', 502, reason, true, refused || !this.grpc ? undefined : 'unavailable');
  }

  // ---------------------------------------------------------------- retries and errors

  private canRetry(kind: FailureKind): boolean {
    if (this.session.phase === Phase.Closed) return false;
    return retryAllowed(
      {
        kind,
        attempts: this.attempts,
        elapsedMs: Date.now() - this.firstAttemptAt,
        method: this.req!.method,
        hasBody: this.reqReader !== undefined,
        bodyReplayable: this.replay !== undefined,
        bodySent: this.reqBodySent,
        responseStarted: this.respHead !== undefined || this.status !== 0,
      },
      this.session.ctx.core.retries,
    );
  }

  /**
   * An attempt failed: tell passive health, then try the next server when
   * allowed, or answer `status`. `report` is false for connect failures
   * (the connector reported them already).
   */
  private failAttempt(kind: FailureKind, status: number, reason: string, report: boolean, retryAs: FailureKind = kind): void {
    const server = this.attempt?.server;
    const upstream = this.upstream!;
    const core = this.session.ctx.core;
    if (server) {
      this.attempt!.fail();
      this.attempt!.span?.fail(reason);
      if (report) core.reportFailure(upstream, server, kind === 'status' || kind === 'unavailable' ? 'status5xx' : kind === 'timeout' ? 'timeout' : 'connect', reason);
      (this.tried ??= new Set()).add(server);
    }
    this.abortUpstream();
    this.lastFailure = { status, reason };
    core.logger.warn('upstream attempt failed', { client: this.clientIp, upstream: server?.address, reason, attempt: this.attempts });
    if (this.canRetry(retryAs)) {
      // A failed connect sent nothing: moving on costs the servers nothing, so it is not budgeted.
      if (retryAs === 'connect' || (this.retrySlot ??= new RetrySlot()).take(upstream, core.retries)) {
        this.tryNext(Date.now());
        return;
      }
      core.logger.warn('retry budget exhausted', { client: this.clientIp, upstream: upstream.name, retriesInFlight: upstream.retriesInFlight });
      reason = `${reason}; not retried: retry budget exhausted`;
    }
    this.respondError(status, reason);
  }

  /** Drop the current attempt (its connection is not reusable) and any hedge. */
  abortUpstream(): void {
    if (this.hedge) this.dropHedge();
    this.hedgeDeadline = 0;
    this.respHeads.clear();
    const attempt = this.attempt;
    this.attempt = undefined;
    attempt?.abort();
  }

  respondError(status: number, reason: string): void {
    if (this.session.phase === Phase.Closed) return;
    if (this.respHead) {
      if (this.grpc) this.endGrpc(grpcStatusForHttp(status), reason);
      else this.session.client.destroy();
      return;
    }
    if (this.reqReader && !this.reqReader.done) this.keepAlive = false;
    this.writeLocal(status, [['Content-Type', 'text/plain; charset=utf-8']], `${status} ${STATUS_TEXT[status] ?? ''}\n`, reason);
  }

  // ---------------------------------------------------------------- local responses

  /** Answer from the proxy itself (fixed response, error), then go on with the next request or close. */
  private writeLocal(status: number, headers: HeaderList, body: string | Uint8Array, reason: string | undefined): void {
    const session = this.session;
    if (this.grpc && status >= 400) {
      this.endGrpc(this.grpcDeadline && status === 504 ? 4 : grpcStatusForHttp(status), reason ?? `${status} ${STATUS_TEXT[status] ?? ''}`);
      return;
    }
    session.phase = Phase.Local;
    this.status = status;
    const req = this.req;
    // A request body we did not read makes the connection unusable.
    if (this.reqReader && !this.reqReader.done) this.keepAlive = false;
    const payload = typeof body === 'string' ? Buffer.from(body) : body;
    const fields: HeaderList = [...headers];
    const bodyless = req?.method === 'HEAD' || status === 204 || status === 304;
    responseFraming(status !== 204 && status !== 304 ? payload.byteLength : undefined, false, req?.version ?? '1.1', this.keepAlive, fields);
    if (this.location && this.location.responseRules.length > 0) applyRules(fields, this.location.responseRules, this.variables());
    if (session.http2 !== undefined) {
      const empty = bodyless || payload.byteLength === 0;
      session.http2.respond(status, fields, false);
      this.bytesSent = empty ? 0 : payload.byteLength;
      const flushed = empty || session.client.write(payload);
      if (reason) session.ctx.core.logger.info('local response', { client: this.clientIp, status, reason });
      this.logAccess(reason);
      session.exchangeDone(this, this.keepAlive, flushed);
      return;
    }
    const head = serializeResponseHead(status, STATUS_TEXT[status] ?? 'Unknown', fields);
    this.bytesSent = head.byteLength + (bodyless ? 0 : payload.byteLength);
    let flushed = session.client.write(head);
    if (!bodyless && payload.byteLength > 0) flushed = session.client.write(payload) && flushed;
    if (reason) session.ctx.core.logger.info('local response', { client: this.clientIp, status, reason });
    this.logAccess(reason);
    session.exchangeDone(this, this.keepAlive, flushed);
  }

  /** Run a location handler (static files) and stream its body with backpressure. */
  private async runHandler(location: CompiledLocation): Promise<void> {
    const session = this.session;
    session.phase = Phase.Local;
    session.setDeadline(Deadline.None, 0);
    const req = this.req!;
    let response: LocationResponse;
    try {
      response = await location.handler!.handle({
        method: req.method,
        target: req.target,
        uri: req.target,
        path: this.path,
        header: (lower) => getHeader(req.headers, lower),
      });
    } catch (error) {
      if (!session.isClosed) this.writeLocal(500, [['Content-Type', 'text/plain; charset=utf-8']], '500 Internal Server Error\n', (error as Error).message);
      return;
    }
    if (session.isClosed) return;
    let body: AsyncIterable<Uint8Array> | Uint8Array[];
    let bodyLength: number | undefined;
    if (response.body === undefined || typeof response.body === 'string' || response.body instanceof Uint8Array) {
      const bytes = typeof response.body === 'string' ? Buffer.from(response.body) : (response.body ?? EMPTY);
      body = req.method === 'HEAD' ? [] : [bytes];
      bodyLength = bytes.byteLength;
    } else body = response.body;
    // Streamed body: Content-Length when known, else chunked.
    if (this.reqReader && !this.reqReader.done) this.keepAlive = false;
    let length = response.length;
    const fields: HeaderList = [];
    if (bodyLength !== undefined && length === undefined && response.status !== 204 && response.status !== 304) length = bodyLength;
    for (const field of response.headers) {
      const lower = field[0].toLowerCase();
      if (lower === 'content-length') length = Number(field[1]);
      else if (lower !== 'transfer-encoding' && lower !== 'connection') fields.push(field);
    }
    const unframed = length === undefined && req.method !== 'HEAD' && response.status !== 204 && response.status !== 304 && session.http2 === undefined;
    // Chunked unless the client is HTTP/1.0, which gets the plain body delimited by closing.
    const framing = responseFraming(length, unframed, req.version, this.keepAlive, fields);
    this.keepAlive = (framing & FRAMING_KEEP_ALIVE) !== 0;
    const chunked = unframed && (framing & FRAMING_DECHUNK) === 0;
    if (location.responseRules.length > 0) applyRules(fields, location.responseRules, this.variables());
    this.status = response.status;
    const client = session.client;
    if (session.http2 !== undefined) {
      session.http2.respond(response.status, fields, false);
      this.bytesSent = 0;
    } else {
      const head = serializeResponseHead(response.status, STATUS_TEXT[response.status] ?? 'Unknown', fields);
      this.bytesSent = head.byteLength;
      client.write(head);
    }
    try {
      for await (const piece of body) {
        if (session.isClosed) return;
        if (piece.byteLength === 0) continue;
        this.bytesSent += piece.byteLength;
        const flushed = chunked ? client.write(concat(Buffer.from(`${piece.byteLength.toString(16)}\r\n`, 'latin1'), piece)) && client.write(CRLF) : client.write(piece);
        if (!flushed) await new Promise<void>((resolve) => (this.drainWaiter = resolve));
      }
    } catch (error) {
      session.ctx.core.logger.warn('location handler body failed', { error: (error as Error).message });
      client.destroy();
      return;
    }
    if (session.isClosed) return;
    if (chunked) client.write(LAST_CHUNK);
    this.logAccess(undefined);
    session.exchangeDone(this, this.keepAlive, true);
  }

  // ---------------------------------------------------------------- end of an exchange

  /** The response is complete: the upstream connection goes back to its pool (when reusable), health hears, the log is written. */
  private finish(): void {
    if (this.hedge) this.dropHedge();
    this.hedgeDeadline = 0;
    const session = this.session;
    const core = session.ctx.core;
    const attempt = this.attempt;
    this.attempt = undefined;
    const server = attempt?.server;
    const up = attempt?.detach();
    const upstream = this.upstream!;
    const now = Date.now();
    if (server) {
      if (this.status >= 500) core.reportFailure(upstream, server, 'status5xx', `status ${this.status}`);
      else core.reportSuccess(upstream, server, now - this.firstAttemptAt);
    }
    if (up) {
      if (server && !up.closed && connectionReusable(this.respHead!, !this.reqReader || this.reqReader.done, this.upDirty)) {
        if (this.upPaused) up.resume();
        server.pool.release(up, now);
      } else up.destroy();
      this.upPaused = false;
    }
    attempt?.release();
    // A connection closing after this response keeps an idle deadline until the client goes.
    if (!this.keepAlive) session.setDeadline(Deadline.Idle, core.timeouts.idleMs, now);
    // A chunked body's trailers (gRPC's status among them) end the HTTP/2 stream; an HTTP/1.1 client got them in the last chunk.
    if (session.http2 !== undefined && this.dechunk && this.respReader!.trailers.length > 0) session.http2.trailers(this.respReader!.trailers);
    this.logAccess(undefined);
    session.exchangeDone(this, this.keepAlive, true, now);
  }

  // ---------------------------------------------------------------- rate limits (rate-limit.ts)

  /** Admit the request under its location's limit, or answer the refusal (503/429 with Retry-After). */
  private refusedByLimit(limiter: RateLimiter): boolean {
    const refusal = limiter.admit(this);
    if (!refusal) {
      this.limiter = limiter;
      return false;
    }
    const fields: HeaderList = [['Retry-After', String(refusal.retryAfter)], ['Content-Type', 'text/plain; charset=utf-8']];
    this.writeLocal(refusal.status, fields, `${refusal.status} ${STATUS_TEXT[refusal.status] ?? ''}\n`, refusal.reason);
    return true;
  }

  /** The request is over (answered, or the client left): free its limit slot and replay buffer (once). */
  private requestEnded(): void {
    if (this.ended) return;
    this.ended = true;
    liveExchanges--;
    this.limiter?.release();
    this.limiter = undefined;
    this.retrySlot?.release();
    this.replay = undefined;
    this.requestDeadline = 0;
    if (this.trace !== undefined) this.endTrace();
  }

  /** The proxy's span ends with the request (its attempts ended as they were released). */
  private endTrace(): void {
    const span = this.trace!.span;
    if (!span.recording) return;
    const req = this.req!;
    span.set('http.request.method', req.method);
    span.set('url.path', this.path || req.target);
    span.set('client.address', this.clientIp);
    if (this.status !== 0) span.set('http.response.status_code', this.status);
    if (this.upstream !== undefined) span.set('wmproxy.upstream', this.upstream.name);
    if (this.upstreamAddr !== undefined) span.set('server.address', this.upstreamAddr);
    if (this.attempts > 1) span.set('wmproxy.retries', this.attempts - 1);
    if (this.hedgesSent > 0) span.set('wmproxy.hedge', this.hedgesWon > 0 ? 'won' : 'lost');
    if (this.status >= 500 || this.status === 0) span.fail(this.lastFailure?.reason ?? (this.status === 0 ? 'client closed before the response' : `status ${this.status}`));
    span.end();
  }

  // ---------------------------------------------------------------- request body replay buffer (retry.ts)

  private startReplay(head: RequestHead): void {
    const retries = this.session.ctx.core.retries;
    const limit = bodyBufferLimit(retries);
    // A gRPC call is kept too: it is replayed only when the server did not take it (UNAVAILABLE, refused).
    const fits = limit > 0 && (retries.methods.includes(head.method) || this.grpc) && (head.contentLength === undefined || head.contentLength <= limit);
    this.replay = fits ? [] : undefined;
    this.replayBytes = 0;
  }

  private keepForReplay(piece: Uint8Array): void {
    this.replayBytes += piece.byteLength;
    if (this.replayBytes > bodyBufferLimit(this.session.ctx.core.retries)) this.replay = undefined;
    else this.replay!.push(piece.slice());
  }

  private logAccess(reason: string | undefined): void {
    this.requestEnded();
    const log = this.session.ctx.core.accessLog;
    if (!log) return;
    const req = this.req;
    const now = Date.now();
    const record: AccessRecord = {
      clientIp: this.clientIp,
      startedAt: this.startedAt || now,
      method: req?.method ?? '-',
      target: req?.target ?? '-',
      version: this.session.http2 !== undefined ? '2.0' : (req?.version ?? '1.1'),
      host: this.authority ?? req?.host ?? '',
      status: this.status,
      bytesSent: this.bytesSent,
      referer: req ? getHeader(req.headers, 'referer') : undefined,
      userAgent: req ? getHeader(req.headers, 'user-agent') : undefined,
      upstreamAddr: this.upstreamAddr,
      upstreamTimeMs: this.upstreamAddr ? now - this.firstAttemptAt : undefined,
      totalTimeMs: now - (this.startedAt || now),
      bytesReceived: this.bytesReceived,
      traceId: this.trace !== undefined ? this.trace.traceId : req ? traceIdOf(getHeader(req.headers, 'traceparent')) : undefined,
    };
    if (this.upstream !== undefined) record.upstream = this.upstream.name;
    if (this.attempts > 1) record.retries = this.attempts - 1;
    if (this.hedgesSent > 0) record.hedge = this.hedgesWon > 0 ? 'won' : 'lost';
    if (reason) record.reason = reason;
    log.log(record);
  }

  // ---------------------------------------------------------------- WebSocket and other upgrades

  private startTunnel(head: ResponseHead, rest: Uint8Array): void {
    // The attempt's lease lasts as long as the tunnel; the exchange lets go of both.
    const attempt = this.attempt!;
    this.attempt = undefined;
    const up = attempt.detach()!;
    const server = attempt.server;
    const upstream = this.upstream!;
    const session = this.session;
    const core = session.ctx.core;
    const fields: HeaderList = [];
    for (const field of head.headers) {
      const lower = field[0].toLowerCase();
      if (lower === 'connection' || lower === 'upgrade' || lower === 'keep-alive' || lower === 'proxy-connection') continue;
      fields.push(field);
    }
    fields.push(['Connection', 'Upgrade']);
    fields.push(['Upgrade', head.upgrade ?? this.req!.upgrade ?? 'websocket']);
    if (this.location!.responseRules.length > 0) applyRules(fields, this.location!.responseRules, this.variables());
    this.status = 101;
    const bytes = serializeResponseHead(101, head.reason || 'Switching Protocols', fields);
    const client = session.client;
    client.write(bytes);
    if (rest.byteLength > 0) client.write(rest);
    session.becomeTunnel(up);
    this.retrySlot?.release();
    core.reportSuccess(upstream, server, Date.now() - this.firstAttemptAt);
    const startedAt = this.startedAt;
    const relay = new Relay(client, up, {
      idleTimeoutMs: core.timeouts.tunnelIdleMs,
      onClose: (stats) => {
        server.tunnels.delete(relay);
        attempt.release();
        this.bytesSent = bytes.byteLength + stats.bytesDown;
        this.startedAt = startedAt;
        this.logAccess(stats.reason === 'done' ? undefined : `tunnel ${stats.reason}`);
      },
    });
    server.tunnels.add(relay);
    session.resumeClient(true);
    up.resume();
  }

  /** A `takeover` location: the connection and what was read past the head go to the taker; this exchange ends here. */
  private handOver(taker: ConnTakeover, head: RequestHead): void {
    const session = this.session;
    const unread = session.handOver();
    this.status = 101;
    this.requestEnded();
    taker.takeover(session.client, head, unread);
  }

  // ---------------------------------------------------------------- timeouts

  /** The whole-request timeout passed: 504 if nothing was answered yet, else cut the connection. */
  requestTimedOut(): void {
    this.requestDeadline = 0;
    const session = this.session;
    session.setDeadline(Deadline.None, 0);
    const core = session.ctx.core;
    const reason = this.grpcDeadline ? `deadline exceeded (grpc-timeout ${this.header('grpc-timeout')})` : `request not complete within ${core.timeouts.requestMs} ms`;
    if (this.attempt?.connecting) {
      // Nothing reached the server yet: it is not blamed.
      this.attempt.abort();
      this.attempt = undefined;
    }
    const phase = session.phase;
    if (phase === Phase.Tunnel || phase === Phase.Closed) return;
    if (this.status === 0 && this.respHead === undefined && (phase === Phase.Proxy || phase === Phase.Connecting)) {
      // A client still sending its body made the request late, not the server.
      const bodyOwed = this.reqReader !== undefined && !this.reqReader.done;
      if (this.attempt && !bodyOwed) core.reportFailure(this.upstream!, this.attempt.server, 'timeout', reason);
      this.abortUpstream();
      this.keepAlive = false;
      this.respondError(504, reason);
      return;
    }
    core.logger.warn('request timeout', { client: this.clientIp, upstream: this.upstreamAddr, reason });
    this.abortUpstream();
    if (this.grpc) this.endGrpc(4, reason);
    else session.client.destroy();
  }

  /**
   * The proxy ends a gRPC call itself: before any response, HTTP 200 with a
   * trailers-only answer; after the response head, the stream ends with
   * trailers. Either way with `grpc-status` and `grpc-message`, which a gRPC
   * client reads (an error page or a reset would be UNKNOWN or CANCELLED to it).
   */
  private endGrpc(code: number, message: string): void {
    const session = this.session;
    const http2 = session.http2!;
    if (session.phase === Phase.Closed) return;
    if (this.attempt || this.hedge) this.abortUpstream();
    // The client's own deadline may be named back to it; anything else stays in the log.
    const told = code === 4 && this.grpcDeadline ? `deadline exceeded (grpc-timeout ${this.header('grpc-timeout')})` : grpcPublicMessage(code);
    const status = grpcStatusFields(code, told);
    if (this.respHead === undefined) {
      this.status = 200;
      session.phase = Phase.Local;
      http2.respond(200, [['content-type', 'application/grpc'], ...status], true);
    } else http2.trailers(status);
    // A request body still owed is read and dropped by the stream (exchangeDone).
    this.keepAlive = false;
    session.ctx.core.logger.info('gRPC call ended by the proxy', { client: this.clientIp, upstream: this.upstreamAddr, grpcStatus: code, reason: message });
    this.logAccess(message);
    session.exchangeDone(this, false, true);
  }

  /** The session's deadline of an exchange kind passed. */
  deadlinePassed(kind: Deadline, now: number): void {
    const session = this.session;
    const core = session.ctx.core;
    switch (kind) {
      case Deadline.Body:
        this.keepAlive = false;
        this.abortUpstream();
        this.respondError(408, 'client body timeout');
        return;
      case Deadline.FirstByte:
        if (core.requestHedgeMs > 0 && this.attempt && !this.lagCounted) lostHedge(this.upstream!, this.attempt.server, this.attempt.sentAt, now);
        if (this.hedge?.conn) {
          // The original timed out; the hedge gets its own first-byte timeout.
          core.reportFailure(this.upstream!, this.attempt!.server, 'timeout', 'first-byte timeout');
          this.promoteHedge();
          session.setDeadline(Deadline.FirstByte, core.timeouts.firstByteMs);
          return;
        }
        this.failAttempt('timeout', 504, `no response from ${this.upstreamAddr} within ${core.timeouts.firstByteMs} ms`, true);
        return;
      case Deadline.Idle:
        core.logger.warn('upstream idle timeout', { upstream: this.upstreamAddr });
        this.abortUpstream();
        session.client.destroy(new NetError('EIDLE', 'upstream idle timeout'));
        return;
      default:
        return;
    }
  }
}

/** Upstream connections' events go to the exchange that holds them (`conn.userData`). */
const upstreamHandler: ConnHandler = {
  data(conn, chunk) {
    const exchange = conn.userData as Exchange;
    try {
      exchange.onUpstreamData(conn, chunk);
    } catch (error) {
      exchange.session.crashed(error);
    }
  },
  drain(conn) {
    const exchange = conn.userData as Exchange;
    try {
      exchange.onUpstreamDrain(conn);
    } catch (error) {
      exchange.session.crashed(error);
    }
  },
  end(conn) {
    const exchange = conn.userData as Exchange;
    try {
      exchange.onUpstreamEnd(conn);
    } catch (error) {
      exchange.session.crashed(error);
    }
  },
  close(conn, error) {
    const exchange = conn.userData as Exchange;
    try {
      exchange.onUpstreamClose(conn, error);
    } catch (failure) {
      exchange.session.crashed(failure);
    }
  },
};
