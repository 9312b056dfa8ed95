import {
  BodyReader,
  HeadBuffer,
  HeadMemo,
  HOP_BY_HOP,
  composeHead,
  lowerName,
  NetError,
  Relay,
  STATUS_TEXT,
  getHeader,
  httpStatusFor,
  parseRequestHead,
  isValidHost,
  normalizePath,
  parseResponseHead,
  serializeResponseHead,
  toNetError,
  type Conn,
  type ConnHandler,
  type HeaderList,
  type RequestHead,
  type ResponseHead,
  type ResponseParseOptions,
} from '@wmproxy/core-net';
import type { AccessRecord } from '../access-log.js';
import { applyRules, FORWARDING_HEADERS, type RuleVariables } from '../headers.js';
import type { CompiledLocation, LocationResponse } from '../router.js';
import type { RateLimiter } from '../rate-limit.js';
import type { SelectContext } from '../policies/index.js';
import type { Upstream, UpstreamServer } from '../upstream.js';
import { connectHedged } from './connector.js';
import { answered, earnHedge, hedgeDelay, lostHedge, lostSinceAnswer, overtaken, refundHedge, scheduleHedge, spendHedge, HEDGE_RETRY_MS } from './hedge.js';
import type { ListenerContext } from './context.js';
import { bodyBufferLimit, retryAllowed, RetrySlot, type FailureKind } from '../retry.js';
import { Attempt, type AttemptOwner } from './attempt.js';

const enum Phase {
  Head,
  Connecting,
  Proxy,
  Local,
  Tunnel,
  Closed,
}

const enum Deadline {
  None,
  KeepAlive,
  Header,
  Body,
  FirstByte,
  Idle,
}


/** Held client bytes beyond this pause reading from the client. */
const HOLD_LIMIT = 64 * 1024;
const EMPTY = new Uint8Array(0);
const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
/** absolute-form request-target: authority, then path and query. */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^#]*)$/i;

/** What forwarding does with a field. */
const enum Field {
  Plain,
  HopByHop,
  Forwarding,
  Host,
  Length,
}
const fieldKinds = new Map<string, Field>();
/** Names come from clients: the cache is bounded (and longer names are not kept), like core-net's lowerName. */
const FIELD_KINDS_MAX = 4096;

/** A field's kind by its name as received: one lookup per field instead of lowering and three set lookups. */
function fieldKind(name: string): Field {
  let kind = fieldKinds.get(name);
  if (kind === undefined) {
    const lower = lowerName(name);
    kind = HOP_BY_HOP.has(lower) ? Field.HopByHop : FORWARDING_HEADERS.has(lower) ? Field.Forwarding : lower === 'host' ? Field.Host : lower === 'content-length' ? Field.Length : Field.Plain;
    if (name.length <= 64) {
      if (fieldKinds.size >= FIELD_KINDS_MAX) fieldKinds.clear();
      fieldKinds.set(name, kind);
    }
  }
  return kind;
}

/** Does Connection name a field other than the hop-by-hop ones (dropped anyway)? Only then is each field looked up in it. */
function namesOthers(connection: readonly string[]): boolean {
  for (let i = 0; i < connection.length; i++) if (!HOP_BY_HOP.has(connection[i]!)) return true;
  return false;
}

/** A response's fields without hop-by-hop ones (nor any Connection names). */
function endToEnd(head: ResponseHead): HeaderList {
  const connection = head.connection;
  const others = connection.length > 0 && namesOthers(connection);
  const fields: HeaderList = [];
  for (const field of head.headers) {
    if (fieldKind(field[0]) === Field.HopByHop || (others && connection.includes(lowerName(field[0])))) continue;
    fields.push(field);
  }
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

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/**
 * One client connection of the HTTP reverse proxy (HAProxy's stream): reads
 * request heads, routes, picks an upstream server, forwards the request and
 * streams both bodies with backpressure, then reads the next request.
 * Retries, connect hedging, passive health reports and the access log live
 * here; the upstream connection is borrowed from the server's keep-alive
 * pool and given back when the exchange ended cleanly.
 */
export class ClientSession implements SelectContext, AttemptOwner {
  readonly client: Conn;
  readonly ctx: ListenerContext;
  readonly clientIp: string;
  phase = Phase.Head;
  deadline = 0;
  deadlineKind = Deadline.None;
  private readonly headBuf = new HeadBuffer();
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private clientEnded = false;

  // The request being served.
  req: RequestHead | undefined;
  private location: CompiledLocation | undefined;
  private upstream: Upstream | undefined;
  private reqReader: BodyReader | undefined;
  private reqBodySent = false;
  private path = '';
  /** The authority of an absolute-form target: it replaces the client's Host upstream. */
  private authority: string | undefined;
  private upstreamTarget = '';
  private startedAt = 0;
  private clientKeepAlive = true;

  // The current attempt: its server lease, connection, connect and pool wait (attempt.ts).
  private attempt: Attempt | undefined;
  private tried: Set<UpstreamServer> | undefined;
  private attempts = 0;
  private firstAttemptAt = 0;
  private lastFailure: { status: number; reason: string } | undefined;
  private readonly respHeadBuf = new HeadBuffer();
  /** Options of the response parse, reused (one object less per response). */
  private readonly respOptions: ResponseParseOptions = { requestMethod: undefined };
  // Request hedging: a second copy of an idempotent request to another server, as a second attempt.
  private hedge: Attempt | undefined;
  private hedgeDeadline = 0;
  /** Due time of this session's earliest entry in the hedge timer (0: none). */
  private hedgeTimerAt = 0;
  /** The current attempt already counted as a lost hedge (hedge.ts), once is enough. */
  private lagCounted = false;
  private requestDeadline = 0;
  private respHead: ResponseHead | undefined;
  private respReader: BodyReader | undefined;
  private upDirty = false;
  private status = 0;
  private bytesSent = 0;
  private upstreamAddr: string | undefined;

  constructor(client: Conn, ctx: ListenerContext) {
    this.client = client;
    this.ctx = ctx;
    this.clientIp = client.remoteAddress;
    client.userData = this;
    this.setDeadline(Deadline.KeepAlive, ctx.core.timeouts.keepAliveMs);
    ctx.core.sessions.add(this);
    client.setHandler(clientHandler);
  }

  /** The current attempt's upstream connection. */
  get up(): Conn | undefined {
    return this.attempt?.conn;
  }

  get isClosed(): boolean {
    return this.phase === Phase.Closed;
  }

  // SelectContext
  get uri(): string {
    return this.req?.target ?? '';
  }
  header(lower: string): string | undefined {
    return this.req ? getHeader(this.req.headers, lower) : undefined;
  }

  /** `now` (Date.now()) saves a clock read for a caller that has it: a request reads the clock a few times, not a dozen. */
  private setDeadline(kind: Deadline, ms: number, now?: number): void {
    this.deadlineKind = ms > 0 ? kind : Deadline.None;
    this.deadline = ms > 0 ? (now ?? Date.now()) + ms : 0;
  }

  // ---------------------------------------------------------------- client side

  onClientData(chunk: Uint8Array): void {
    switch (this.phase) {
      case Phase.Head:
        this.readHead(chunk);
        return;
      case Phase.Proxy:
        if (this.reqReader && !this.reqReader.done) {
          this.forwardRequestBody(chunk);
          return;
        }
        this.hold(chunk);
        return;
      case Phase.Connecting:
      case Phase.Local:
        this.hold(chunk);
        return;
      default:
        return;
    }
  }

  // Pausing and resuming a socket can cost a system call: only when the state changes.
  private clientPaused = false;
  private upPaused = false;
  private pauseClient(): void {
    if (this.clientPaused) return;
    this.clientPaused = true;
    this.client.pause();
  }
  private resumeClient(): void {
    if (!this.clientPaused) return;
    this.clientPaused = false;
    this.client.resume();
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

  private hold(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.held.push(chunk.slice());
    this.heldBytes += chunk.byteLength;
    if (this.heldBytes >= HOLD_LIMIT) this.pauseClient();
  }

  /** Feed held bytes back through the state machine (after a phase change). */
  private replayHeld(): void {
    if (this.held.length === 0) return;
    const chunks = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (let i = 0; i < chunks.length; i++) {
      if (this.phase === Phase.Closed) return;
      this.onClientData(chunks[i]!);
    }
  }

  private readHead(chunk: Uint8Array): void {
    const wasEmpty = this.headBuf.size === 0;
    const view = this.headBuf.feed(chunk);
    const result = parseRequestHead(view, this.ctx.core.headLimits);
    if (result.kind === 'incomplete') {
      if (this.clientEnded) {
        // Replayed bytes after the client's FIN: this head can never complete.
        this.headBuf.clear();
        this.phase = Phase.Closed;
        this.client.destroy();
        return;
      }
      this.headBuf.keep(view);
      // The header timeout starts with the first byte and is not extended (slow-loris defence).
      if (wasEmpty) this.setDeadline(Deadline.Header, this.ctx.core.timeouts.clientHeaderMs);
      return;
    }
    if (result.kind === 'error') {
      this.headBuf.clear();
      this.startedAt = Date.now();
      this.rejectRequest(result.status, result.reason);
      return;
    }
    const rest = view.byteLength > result.consumed ? view.subarray(result.consumed) : EMPTY;
    // `rest` may point into headBuf's storage: hold (copy) it before clearing.
    if (rest.byteLength > 0) {
      this.held.unshift(rest.slice());
      this.heldBytes += rest.byteLength;
    }
    this.headBuf.clear();
    this.handleRequest(result.head);
  }

  /** Answer a malformed request and close: nothing after it can be trusted (smuggling). */
  private rejectRequest(status: number, reason: string): void {
    // `req` stays (when the head parsed): an answer to HEAD carries no content, even a 400.
    this.status = status;
    this.ctx.core.logger.warn('bad request', { client: this.clientIp, status, reason });
    this.clientKeepAlive = false;
    this.writeLocal(status, [['Content-Type', 'text/plain; charset=utf-8']], `${status} ${STATUS_TEXT[status] ?? ''}\n`, reason);
  }

  private handleRequest(head: RequestHead): void {
    this.req = head;
    this.startedAt = Date.now();
    this.status = 0;
    this.bytesSent = 0;
    this.reqBodySent = false;
    this.attempts = 0;
    this.tried = undefined;
    this.lastFailure = undefined;
    this.upstreamAddr = undefined;
    this.respHead = undefined;
    this.respReader = undefined;
    this.clientKeepAlive = head.keepAlive && !this.clientEnded && !this.ctx.core.draining;
    const requestMs = this.ctx.core.timeouts.requestMs;
    this.requestDeadline = requestMs > 0 ? this.startedAt + requestMs : 0;
    this.reqReader = head.framing === 'none' ? undefined : new BodyReader(head.framing, head.contentLength ?? 0);
    if (this.reqReader) this.startReplay(head);
    if (head.method === 'CONNECT') {
      // A 2xx would turn a pooled upstream connection into a tunnel the next request is written into.
      this.rejectRequest(405, 'CONNECT is not proxied by a reverse proxy');
      return;
    }
    let target = head.target;
    let host = head.host;
    this.authority = undefined;
    if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') {
      // absolute-form: the authority in the target wins over Host (RFC 9112 section 3.2.2),
      // and the Host sent upstream is regenerated from it.
      const match = ABSOLUTE_FORM.exec(target);
      if (!match || match[1]!.length === 0 || !isValidHost(match[1]!)) {
        this.rejectRequest(400, 'unsupported request-target form');
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
      this.rejectRequest(400, 'invalid request path');
      return;
    }
    if (path !== rawPath) target = q < 0 ? path : path + target.slice(q);
    this.path = path;
    const location = this.ctx.router.route(host, path, head.method, this.clientIp);
    this.location = location;
    if (!location) {
      this.writeLocal(404, [['Content-Type', 'text/plain; charset=utf-8']], '404 Not Found\n', 'no location matched');
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
      this.runHandler(location).catch((error: unknown) => crashed(this, error));
      return;
    }
    const upstream = this.ctx.core.upstreams.get(spec.upstream!);
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
    const pooled = server.pool.acquire();
    if (pooled) {
      this.bindUpstream(pooled, now);
      return;
    }
    this.phase = Phase.Connecting;
    this.setDeadline(Deadline.None, 0);
    this.pauseClient();
    const core = this.ctx.core;
    const controller = attempt.beginConnect();
    // Meanwhile, a connection another request releases may serve this one first (pooledConn).
    attempt.waitForPool();
    connectHedged({
      primary: server,
      upstream,
      connector: core.connector,
      ticker: core.ticker,
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
        this.resumeClient();
        try {
          this.bindUpstream(outcome.conn);
        } catch (error) {
          crashed(this, error);
        }
      },
      (error: unknown) => {
        if (!attempt.claimConnect(controller)) return;
        attempt.cancelWait();
        this.resumeClient();
        const netError = toNetError(error, server.address);
        try {
          this.failAttempt(netError.code === 'ETIMEDOUT' ? 'timeout' : 'connect', httpStatusFor(netError.code), `connect to ${server.address}: ${netError.code}`, false);
        } catch (failure) {
          crashed(this, failure);
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
    this.resumeClient();
    try {
      this.bindUpstream(conn);
    } catch (error) {
      crashed(this, error);
    }
  }

  private bindUpstream(conn: Conn, now = Date.now()): void {
    const req = this.req!;
    const attempt = this.attempt!;
    const server = attempt.server;
    attempt.conn = conn;
    this.upPaused = false;
    this.upDirty = false;
    this.upstreamAddr = server.address;
    conn.userData = this;
    conn.setHandler(upstreamHandler);
    this.phase = Phase.Proxy;
    let head: Uint8Array;
    try {
      head = this.buildUpstreamHead(req, server);
    } catch (error) {
      this.attempt = undefined;
      attempt.abort();
      this.respondError(500, `cannot build the upstream request: ${(error as Error).message}`);
      return;
    }
    conn.write(head);
    if (this.replay && this.replayBytes > 0) for (const piece of this.replay) conn.write(piece);
    if (this.reqReader && !this.reqReader.done) {
      attempt.sentAt = 0;
      this.setDeadline(Deadline.Body, this.ctx.core.timeouts.clientBodyMs, now);
      this.replayHeld();
      if (this.phase === Phase.Proxy && this.clientEnded) this.abandonIncompleteBody();
      if (this.phase === Phase.Proxy && this.heldBytes < HOLD_LIMIT) this.resumeClient();
    } else {
      this.setDeadline(Deadline.FirstByte, this.ctx.core.timeouts.firstByteMs, now);
      const core = this.ctx.core;
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

  private forwardedFor: string | undefined;
  private forwardedFields: HeaderList | undefined;

  private buildUpstreamHead(req: RequestHead, server: UpstreamServer): Uint8Array {
    const location = this.location!.spec;
    const forwarding = this.ctx.forwarding;
    const trusted = forwarding.isTrusted(this.clientIp);
    let incoming: Map<string, string> | undefined;
    const fields: HeaderList = [];
    const connection = req.connection;
    const others = connection.length > 0 && namesOthers(connection);
    let hasHost = false;
    let lengthPlaced = false;
    for (const field of req.headers) {
      const kind = fieldKind(field[0]);
      if (kind === Field.HopByHop || (others && connection.includes(lowerName(field[0])))) continue;
      if (kind === Field.Forwarding) {
        if (trusted) {
          const lower = lowerName(field[0]);
          incoming ??= new Map();
          const previous = incoming.get(lower);
          incoming.set(lower, previous ? `${previous}, ${field[1]}` : field[1]);
        }
        continue;
      }
      if (kind === Field.Host) {
        hasHost = true;
        const host = location.upstreamHost ?? this.authority;
        if (host !== undefined) {
          fields.push(['Host', host]);
          continue;
        }
      }
      if (kind === Field.Length) {
        // One normalised value (`5, 5` is 5): the next hop must not read the framing differently.
        if (!lengthPlaced && req.contentLength !== undefined) fields.push(['Content-Length', String(req.contentLength)]);
        lengthPlaced = true;
        continue;
      }
      fields.push(field);
    }
    if (!hasHost) fields.push(['Host', location.upstreamHost ?? this.authority ?? server.address]);
    if (req.chunked) fields.push(['Transfer-Encoding', 'chunked']);
    if (req.upgrade !== undefined) {
      fields.push(['Connection', 'Upgrade']);
      fields.push(['Upgrade', req.upgrade]);
    }
    if (trusted) forwarding.append(fields, this.clientIp, this.ctx.scheme, this.authority ?? req.host ?? '', incoming);
    else {
      // Per connection the forwarding fields only change with the Host: build them once.
      const host = this.authority ?? req.host ?? '';
      if (this.forwardedFor !== host || this.forwardedFields === undefined) {
        this.forwardedFields = [];
        forwarding.append(this.forwardedFields, this.clientIp, this.ctx.scheme, host, undefined);
        this.forwardedFor = host;
      }
      for (const field of this.forwardedFields) fields.push(field);
    }
    if (this.location!.requestRules.length > 0) applyRules(fields, this.location!.requestRules, this.variables());
    // A view of core-net's shared compose buffer (no re-validation: every field
    // came from the strict parser, checked configuration, or variables of those).
    // The callers write it at once.
    return this.requestMemo.compose(this.requestLine(req.method), fields);
  }

  /** A keep-alive connection's request and response heads mostly repeat: composed from the last ones' bytes. */
  private readonly requestMemo = new HeadMemo();
  private readonly responseMemo = new HeadMemo();

  // The last request line built: a connection's requests often repeat it (the parser hands out the same strings).
  private lineMethod = '';
  private lineTarget = '';
  private line = '';

  private requestLine(method: string): string {
    if (method !== this.lineMethod || this.upstreamTarget !== this.lineTarget) {
      this.lineMethod = method;
      this.lineTarget = this.upstreamTarget;
      this.line = `${method} ${this.upstreamTarget} HTTP/1.1\r\n`;
    }
    return this.line;
  }

  private variables(): RuleVariables {
    const req = this.req;
    return {
      client_ip: this.clientIp,
      client_port: this.client.remotePort,
      host: this.authority ?? req?.host ?? '',
      uri: req?.target ?? '',
      method: req?.method ?? '',
      scheme: this.ctx.scheme,
      upstream_addr: this.upstreamAddr ?? '',
      status: this.status,
      server_port: this.client.localPort,
    };
  }

  private forwardRequestBody(chunk: Uint8Array): void {
    const reader = this.reqReader!;
    const taken = reader.push(chunk);
    if (taken < 0) {
      this.clientKeepAlive = false;
      this.abortUpstream();
      if (this.status === 0 && this.respHead === undefined) this.rejectRequest(400, `bad request body: ${reader.error}`);
      else this.client.destroy();
      return;
    }
    if (taken > 0) {
      this.reqBodySent = true;
      if (this.replay) this.keepForReplay(taken === chunk.byteLength ? chunk : chunk.subarray(0, taken));
      if (!this.up!.write(taken === chunk.byteLength ? chunk : chunk.subarray(0, taken))) this.pauseClient();
    }
    if (reader.done) {
      if (taken < chunk.byteLength) this.hold(chunk.subarray(taken));
      if (this.respHead === undefined) this.setDeadline(Deadline.FirstByte, this.ctx.core.timeouts.firstByteMs);
    } else if (this.respHead === undefined) this.setDeadline(Deadline.Body, this.ctx.core.timeouts.clientBodyMs);
  }

  onClientDrain(): void {
    const waiter = this.drainWaiter;
    if (waiter) {
      this.drainWaiter = undefined;
      waiter();
      return;
    }
    if (this.phase === Phase.Proxy && this.up && this.respHead) {
      this.resumeUp();
      this.setDeadline(Deadline.Idle, this.ctx.core.timeouts.idleMs);
    } else if (this.phase === Phase.Local && this.localDone) {
      this.localDone = false;
      this.nextRequest();
    }
  }

  onClientEnd(): void {
    this.clientEnded = true;
    this.clientKeepAlive = false;
    if (this.phase === Phase.Head) {
      if (this.held.length > 0) return;
      // Between requests: close. Mid-head: the head can never complete, so no wait for the header timeout.
      if (this.headBuf.size === 0) this.client.end();
      else {
        this.headBuf.clear();
        this.phase = Phase.Closed;
        this.client.destroy();
      }
      return;
    }
    if (this.phase === Phase.Proxy) this.abandonIncompleteBody();
  }

  /**
   * The client ended its side while its request body was still owed: the
   * request can never complete, so the upstream exchange stops now instead of
   * holding a server connection for the body timeout. The server did nothing
   * wrong and is not blamed. (While connecting, held bytes may yet complete
   * the body: bindUpstream asks again once they went out.)
   */
  private abandonIncompleteBody(): void {
    const reader = this.reqReader;
    if (!this.clientEnded || !reader || reader.done || this.respHead !== undefined || this.held.length > 0) return;
    this.ctx.core.logger.info('client closed before sending the whole request body', { client: this.clientIp, upstream: this.upstreamAddr });
    this.abortUpstream();
    this.respondError(400, 'client closed before sending the whole request body');
  }

  onClientClose(): void {
    this.requestEnded();
    const waiter = this.drainWaiter;
    this.drainWaiter = undefined;
    const wasTunnel = this.phase === Phase.Tunnel;
    this.phase = Phase.Closed;
    this.ctx.core.sessions.delete(this);
    if (wasTunnel) return;
    waiter?.();
    if (this.attempt || this.hedge) this.abortUpstream();
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
    if (this.phase !== Phase.Proxy || this.respHead || !attempt?.conn || this.respHeadBuf.size > 0) return;
    // Hedging budget (hedge.ts): a share of the requests plus a burst, so that a
    // stalled server's requests are all hedged while an everywhere-slow pool is
    // not sent twice the load. Refused: ask again later (backing off), not never.
    // A request stuck on a server that lost a hedge since its last answer is hedged whatever the budget.
    const core = this.ctx.core;
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
          crashed(this, error);
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

  /**
   * The request hedge is due at `at`. Most requests are answered long before:
   * while the session has an entry in the hedge timer due no later, no new
   * one is added (that entry re-arms for the current deadline when it fires),
   * so a keep-alive connection costs the timer one entry per hedge delay, not
   * one per request.
   */
  private armHedge(at: number): void {
    this.hedgeDeadline = at;
    if (this.hedgeTimerAt !== 0 && this.hedgeTimerAt <= at) return;
    this.hedgeTimerAt = at;
    scheduleHedge(this.ctx.core.ticker, this, at);
  }

  /** The hedge timer (hedge.ts): the hedge due at `at` may be due now. */
  hedgeDue(at: number): void {
    if (at === this.hedgeTimerAt) this.hedgeTimerAt = 0;
    if (this.hedgeDeadline === 0) return;
    // An earlier request's timer entry: wait on for this request's deadline (unless it passed meanwhile).
    if (this.hedgeDeadline > at && this.hedgeDeadline > Date.now()) {
      this.armHedge(this.hedgeDeadline);
      return;
    }
    try {
      this.startRequestHedge();
    } catch (error) {
      crashed(this, error);
    }
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
    const core = this.ctx.core;
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
      conn.write(this.buildUpstreamHead(this.req!, hedge.server));
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
    this.ctx.core.hedges.inFlight--;
    hedge.abort();
  }

  /** The hedge answered first (or the original failed): it becomes the attempt, the original is aborted. */
  private promoteHedge(): void {
    const loser = this.attempt!;
    const winner = this.hedge!;
    this.attempt = winner;
    this.hedge = undefined;
    this.ctx.core.hedges.inFlight--;
    this.upstreamAddr = winner.server.address;
    winner.sentAt = 0;
    this.upPaused = false;
    this.upDirty = false;
    this.respHeadBuf.clear();
    loser.abort();
    this.ctx.core.logger.debug('request hedge won', { client: this.clientIp, slow: loser.server.address, upstream: this.upstreamAddr });
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
    if (this.respHead) {
      this.forwardResponseBody(chunk, 0);
      return;
    }
    let view = this.respHeadBuf.feed(chunk);
    for (;;) {
      this.respOptions.requestMethod = this.req!.method;
      const result = parseResponseHead(view, this.respOptions);
      if (result.kind === 'incomplete') {
        this.respHeadBuf.keep(view);
        return;
      }
      if (result.kind === 'error') {
        this.respHeadBuf.clear();
        this.failAttempt('bad', 502, `bad response from ${this.upstreamAddr}: ${result.reason}`, true);
        return;
      }
      const head = result.head;
      if (head.status >= 100 && head.status < 200) {
        if (head.status === 101) {
          if (this.req!.upgrade === undefined) {
            this.respHeadBuf.clear();
            this.failAttempt('bad', 502, `101 from ${this.upstreamAddr} without an upgrade request`, false);
            return;
          }
          const rest = view.subarray(result.consumed).slice();
          this.respHeadBuf.clear();
          this.startTunnel(head, rest);
          return;
        }
        // Interim responses (100 Continue, 103 Early Hints) go to HTTP/1.1 clients, rebuilt as
        // HTTP/1.1 without hop-by-hop fields (the upstream's version and Connection are its own).
        if (this.req!.version === '1.1') this.client.write(composeHead(statusLine(head.status, head.reason), endToEnd(head)));
        const rest = view.subarray(result.consumed).slice();
        this.respHeadBuf.clear();
        if (rest.byteLength === 0) return;
        view = this.respHeadBuf.feed(rest);
        continue;
      }
      // `view` may be the chunk or respHeadBuf's storage: both stay valid for
      // this call, and onResponseHead consumes the body bytes synchronously.
      this.respHeadBuf.clear();
      this.onResponseHead(head, view, result.consumed);
      return;
    }
  }

  /** The response head came; the body bytes that came with it are `chunk` from `start`. */
  private onResponseHead(head: ResponseHead, chunk: Uint8Array, start: number): void {
    const core = this.ctx.core;
    if (core.retries.onStatus.includes(head.status) && this.canRetry('status')) {
      this.failAttempt('status', head.status, `status ${head.status} from ${this.upstreamAddr}`, true);
      return;
    }
    this.retrySlot.release();
    this.respHead = head;
    this.status = head.status;
    const reader = new BodyReader(head.framing, head.contentLength ?? 0);
    this.respReader = reader;
    if (head.framing === 'close' || (this.reqReader && !this.reqReader.done)) this.clientKeepAlive = false;
    const fields: HeaderList = [];
    const connection = head.connection;
    const others = connection.length > 0 && namesOthers(connection);
    let lengthPlaced = false;
    for (const field of head.headers) {
      const kind = fieldKind(field[0]);
      if (kind === Field.HopByHop || (others && connection.includes(lowerName(field[0])))) continue;
      if (kind === Field.Length) {
        // As for requests: one normalised Content-Length reaches the client.
        if (!lengthPlaced && head.contentLength !== undefined) fields.push(['Content-Length', String(head.contentLength)]);
        lengthPlaced = true;
        continue;
      }
      fields.push(field);
    }
    // An HTTP/1.0 client cannot read chunked: decode it and delimit by closing.
    this.dechunk = head.chunked && this.req!.version === '1.0';
    if (this.dechunk) this.clientKeepAlive = false;
    else if (head.chunked) fields.push(['Transfer-Encoding', 'chunked']);
    if (!this.clientKeepAlive) fields.push(['Connection', 'close']);
    else if (this.req!.version === '1.0') fields.push(['Connection', 'keep-alive']);
    if (this.location!.responseRules.length > 0) applyRules(fields, this.location!.responseRules, this.variables());
    // The head goes out with the first body bytes in one write (one syscall less per response).
    this.forwardResponseBody(chunk, start, statusLine(head.status, head.reason), fields);
  }

  private dechunk = false;

  /** ChunkSink: decoded body pieces for an HTTP/1.0 client. */
  onChunkData(piece: Uint8Array): void {
    this.bytesSent += piece.byteLength;
    if (!this.client.write(piece)) this.pauseUp();
  }

  /**
   * Forward body bytes (`whole` from `start`: no view is made of a chunk that
   * also held the head); with `statusLine`, the response head (`fields`) goes
   * first, in the same write.
   */
  private forwardResponseBody(whole: Uint8Array, start: number, statusLine?: string, fields?: HeaderList): void {
    const reader = this.respReader!;
    if (this.dechunk) {
      const chunk = start === 0 ? whole : whole.subarray(start);
      if (statusLine !== undefined) {
        const head = composeHead(statusLine, fields!);
        this.bytesSent += head.byteLength;
        this.client.write(head);
      }
      const taken = chunk.byteLength === 0 ? 0 : reader.push(chunk, this);
      if (taken < 0) {
        this.abortUpstream();
        this.client.destroy();
        return;
      }
      if (reader.done) {
        if (taken < chunk.byteLength) this.upDirty = true;
        this.finishExchange();
      } else if (taken > 0 || statusLine !== undefined) this.setDeadline(Deadline.Idle, this.ctx.core.timeouts.idleMs);
      return;
    }
    const available = whole.byteLength - start;
    const taken = available === 0 ? 0 : reader.push(whole, undefined, start);
    if (taken < 0) {
      this.ctx.core.logger.warn('bad response body', { upstream: this.upstreamAddr, reason: reader.error });
      this.abortUpstream();
      this.client.destroy();
      return;
    }
    if (taken > 0 || statusLine !== undefined) {
      const out =
        statusLine !== undefined
          ? this.responseMemo.compose(statusLine, fields!, taken === 0 ? undefined : whole, start, start + taken)
          : start === 0 && taken === whole.byteLength
            ? whole
            : whole.subarray(start, start + taken);
      this.bytesSent += out.byteLength;
      if (!this.client.write(out)) this.pauseUp();
    }
    // A complete response (the usual case: head and body in one chunk) needs no idle deadline.
    if (reader.done) {
      if (taken < available) this.upDirty = true;
      this.finishExchange();
    } else if (taken > 0 || statusLine !== undefined) this.setDeadline(Deadline.Idle, this.ctx.core.timeouts.idleMs);
  }

  onUpstreamDrain(conn: Conn): void {
    if (conn === this.up && this.phase === Phase.Proxy && this.reqReader && !this.reqReader.done) this.resumeClient();
  }

  onUpstreamEnd(conn: Conn): void {
    if (conn !== this.up) return;
    if (this.respReader?.framing === 'close') {
      this.finishExchange();
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
    if (this.respHead) {
      if (this.respReader?.framing === 'close' && !error) {
        this.finishExchange();
        return;
      }
      // Truncated response: the client must see it fail, not a short body.
      this.ctx.core.logger.warn('upstream closed mid-response', { upstream: this.upstreamAddr, error: error?.message });
      this.ctx.core.reportFailure(this.upstream!, attempt.server, 'connect', 'closed mid-response');
      this.attempt = undefined;
      attempt.release();
      this.client.destroy();
      return;
    }
    const reason = `${this.upstreamAddr} closed the connection before responding${error ? ` (${toNetError(error).code})` : ''}`;
    this.failAttempt('reset', 502, reason, true);
  }

  // ---------------------------------------------------------------- retries and errors

  private canRetry(kind: FailureKind): boolean {
    if (this.phase === Phase.Closed) return false;
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
      this.ctx.core.retries,
    );
  }

  /**
   * An attempt failed: tell passive health, then try the next server when
   * allowed, or answer `status`. `report` is false for connect failures
   * (the connector reported them already).
   */
  private failAttempt(kind: FailureKind, status: number, reason: string, report: boolean): void {
    const server = this.attempt?.server;
    const upstream = this.upstream!;
    if (server) {
      this.attempt!.fail();
      if (report) this.ctx.core.reportFailure(upstream, server, kind === 'status' ? 'status5xx' : kind === 'timeout' ? 'timeout' : 'connect', reason);
      (this.tried ??= new Set()).add(server);
    }
    this.abortUpstream();
    this.lastFailure = { status, reason };
    this.ctx.core.logger.warn('upstream attempt failed', { client: this.clientIp, upstream: server?.address, reason, attempt: this.attempts });
    if (this.canRetry(kind)) {
      // A failed connect sent nothing: moving on costs the servers nothing, so it is not budgeted.
      if (kind === 'connect' || this.retrySlot.take(upstream, this.ctx.core.retries)) {
        this.tryNext(Date.now());
        return;
      }
      this.ctx.core.logger.warn('retry budget exhausted', { client: this.clientIp, upstream: upstream.name, retriesInFlight: upstream.retriesInFlight });
      reason = `${reason}; not retried: retry budget exhausted`;
    }
    this.respondError(status, reason);
  }

  /** This request's slot in its upstream's retry budget (retry.ts), held from its first budgeted retry until it ends. */
  private readonly retrySlot = new RetrySlot();

  /** Drop the current attempt (its connection is not reusable) and any hedge. */
  private abortUpstream(): void {
    if (this.hedge) this.dropHedge();
    this.hedgeDeadline = 0;
    this.respHeadBuf.clear();
    const attempt = this.attempt;
    this.attempt = undefined;
    attempt?.abort();
  }

  private respondError(status: number, reason: string): void {
    if (this.phase === Phase.Closed) return;
    if (this.respHead) {
      this.client.destroy();
      return;
    }
    if (this.reqReader && !this.reqReader.done) this.clientKeepAlive = false;
    this.writeLocal(status, [['Content-Type', 'text/plain; charset=utf-8']], `${status} ${STATUS_TEXT[status] ?? ''}\n`, reason);
  }

  // ---------------------------------------------------------------- local responses

  private localDone = false;

  /** Answer from the proxy itself (fixed response, error), then go on with the next request or close. */
  private writeLocal(status: number, headers: HeaderList, body: string | Uint8Array, reason: string | undefined): void {
    this.phase = Phase.Local;
    this.status = status;
    const req = this.req;
    // A request body we did not read makes the connection unusable.
    if (this.reqReader && !this.reqReader.done) this.clientKeepAlive = false;
    const payload = typeof body === 'string' ? Buffer.from(body) : body;
    const fields: HeaderList = [...headers];
    const bodyless = req?.method === 'HEAD' || status === 204 || status === 304;
    if (status !== 204 && status !== 304) fields.push(['Content-Length', String(payload.byteLength)]);
    if (!this.clientKeepAlive) fields.push(['Connection', 'close']);
    else if (req?.version === '1.0') fields.push(['Connection', 'keep-alive']);
    if (this.location && this.location.responseRules.length > 0) applyRules(fields, this.location.responseRules, this.variables());
    const head = serializeResponseHead(status, STATUS_TEXT[status] ?? 'Unknown', fields);
    this.bytesSent = head.byteLength + (bodyless ? 0 : payload.byteLength);
    let flushed = this.client.write(head);
    if (!bodyless && payload.byteLength > 0) flushed = this.client.write(payload) && flushed;
    if (reason) this.ctx.core.logger.info('local response', { client: this.clientIp, status, reason });
    this.logAccess(reason);
    this.resetRequest();
    if (!this.clientKeepAlive) {
      this.phase = Phase.Closed;
      this.client.end();
      return;
    }
    if (flushed) this.nextRequest();
    else this.localDone = true;
  }

  private drainWaiter: (() => void) | undefined;

  /** Run a location handler (static files) and stream its body with backpressure. */
  private async runHandler(location: CompiledLocation): Promise<void> {
    this.phase = Phase.Local;
    this.setDeadline(Deadline.None, 0);
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
      if (!this.isClosed) this.writeLocal(500, [['Content-Type', 'text/plain; charset=utf-8']], '500 Internal Server Error\n', (error as Error).message);
      return;
    }
    if (this.isClosed) return;
    let body: AsyncIterable<Uint8Array> | Uint8Array[];
    let bodyLength: number | undefined;
    if (response.body === undefined || typeof response.body === 'string' || response.body instanceof Uint8Array) {
      const bytes = typeof response.body === 'string' ? Buffer.from(response.body) : (response.body ?? EMPTY);
      body = req.method === 'HEAD' ? [] : [bytes];
      bodyLength = bytes.byteLength;
    } else body = response.body;
    // Streamed body: Content-Length when known, else chunked.
    if (this.reqReader && !this.reqReader.done) this.clientKeepAlive = false;
    let length = response.length;
    const fields: HeaderList = [];
    if (bodyLength !== undefined && length === undefined && response.status !== 204 && response.status !== 304) length = bodyLength;
    for (const field of response.headers) {
      const lower = field[0].toLowerCase();
      if (lower === 'content-length') length = Number(field[1]);
      else if (lower !== 'transfer-encoding' && lower !== 'connection') fields.push(field);
    }
    const chunked = length === undefined && req.method !== 'HEAD' && response.status !== 204 && response.status !== 304;
    if (length !== undefined) fields.push(['Content-Length', String(length)]);
    else if (chunked) fields.push(['Transfer-Encoding', 'chunked']);
    if (chunked && req.version === '1.0') this.clientKeepAlive = false;
    if (!this.clientKeepAlive) fields.push(['Connection', 'close']);
    else if (req.version === '1.0') fields.push(['Connection', 'keep-alive']);
    if (location.responseRules.length > 0) applyRules(fields, location.responseRules, this.variables());
    this.status = response.status;
    const head = serializeResponseHead(response.status, STATUS_TEXT[response.status] ?? 'Unknown', fields);
    this.bytesSent = head.byteLength;
    this.client.write(head);
    try {
      for await (const piece of body) {
        if (this.isClosed) return;
        if (piece.byteLength === 0) continue;
        this.bytesSent += piece.byteLength;
        const flushed = chunked ? this.client.write(concat(Buffer.from(`${piece.byteLength.toString(16)}\r\n`, 'latin1'), piece)) && this.client.write(CRLF) : this.client.write(piece);
        if (!flushed) await new Promise<void>((resolve) => (this.drainWaiter = resolve));
      }
    } catch (error) {
      this.ctx.core.logger.warn('location handler body failed', { error: (error as Error).message });
      this.client.destroy();
      return;
    }
    if (this.isClosed) return;
    if (chunked) this.client.write(LAST_CHUNK);
    this.responseDone();
  }

  // ---------------------------------------------------------------- end of an exchange

  private finishExchange(): void {
    if (this.hedge) this.dropHedge();
    this.hedgeDeadline = 0;
    const core = this.ctx.core;
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
      const reusable =
        !this.upDirty && this.respHead!.keepAlive && this.respReader!.framing !== 'close' && (!this.reqReader || this.reqReader.done) && !up.closed && server;
      if (reusable) {
        if (this.upPaused) up.resume();
        server.pool.release(up, now);
      } else up.destroy();
      this.upPaused = false;
    }
    attempt?.release();
    // A connection closing after this response keeps an idle deadline until the client goes.
    if (!this.clientKeepAlive) this.setDeadline(Deadline.Idle, core.timeouts.idleMs, now);
    this.responseDone(now);
  }

  /** The response is complete: log it, then read the next request or close. */
  private responseDone(now?: number): void {
    this.logAccess(undefined);
    this.resetRequest();
    if (!this.clientKeepAlive) {
      this.phase = Phase.Closed;
      this.client.end();
      return;
    }
    this.nextRequest(now);
  }

  private resetRequest(): void {
    this.requestDeadline = 0;
    this.respHead = undefined;
    this.respReader = undefined;
    this.upstream = undefined;
  }

  private nextRequest(now?: number): void {
    this.phase = Phase.Head;
    this.req = undefined;
    this.reqReader = undefined;
    this.location = undefined;
    this.setDeadline(Deadline.KeepAlive, this.ctx.core.timeouts.keepAliveMs, now);
    this.replayHeld();
    if (this.phase === Phase.Head && this.heldBytes < HOLD_LIMIT) this.resumeClient();
  }

  // ---------------------------------------------------------------- rate limits (rate-limit.ts)

  private limiter: RateLimiter | undefined;

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

  /** The request is over (answered, or the client left): free its limit slot and replay buffer. */
  private requestEnded(): void {
    this.limiter?.release();
    this.limiter = undefined;
    this.retrySlot.release();
    this.replay = undefined;
  }

  // ---------------------------------------------------------------- request body replay buffer (retry.ts)

  /** A copy of the request body sent so far, while it fits `retries.bodyBuffer` (undefined: not kept). */
  private replay: Uint8Array[] | undefined;
  private replayBytes = 0;

  private startReplay(head: RequestHead): void {
    const limit = bodyBufferLimit(this.ctx.core.retries);
    const fits = limit > 0 && this.ctx.core.retries.methods.includes(head.method) && (head.contentLength === undefined || head.contentLength <= limit);
    this.replay = fits ? [] : undefined;
    this.replayBytes = 0;
  }

  private keepForReplay(piece: Uint8Array): void {
    this.replayBytes += piece.byteLength;
    if (this.replayBytes > bodyBufferLimit(this.ctx.core.retries)) this.replay = undefined;
    else this.replay!.push(piece.slice());
  }

  private logAccess(reason: string | undefined): void {
    this.requestEnded();
    const log = this.ctx.core.accessLog;
    if (!log) return;
    const req = this.req;
    const now = Date.now();
    const record: AccessRecord = {
      clientIp: this.clientIp,
      startedAt: this.startedAt || now,
      method: req?.method ?? '-',
      target: req?.target ?? '-',
      version: req?.version ?? '1.1',
      host: this.authority ?? req?.host ?? '',
      status: this.status,
      bytesSent: this.bytesSent,
      referer: req ? getHeader(req.headers, 'referer') : undefined,
      userAgent: req ? getHeader(req.headers, 'user-agent') : undefined,
      upstreamAddr: this.upstreamAddr,
      upstreamTimeMs: this.upstreamAddr ? now - this.firstAttemptAt : undefined,
      totalTimeMs: now - (this.startedAt || now),
    };
    if (reason) record.reason = reason;
    log.log(record);
  }

  // ---------------------------------------------------------------- WebSocket and other upgrades

  private startTunnel(head: ResponseHead, rest: Uint8Array): void {
    // The attempt's lease lasts as long as the tunnel; the session lets go of both.
    const attempt = this.attempt!;
    this.attempt = undefined;
    const up = attempt.detach()!;
    const server = attempt.server;
    const upstream = this.upstream!;
    const core = this.ctx.core;
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
    this.client.write(bytes);
    if (rest.byteLength > 0) this.client.write(rest);
    for (const chunk of this.held) up.write(chunk);
    this.held = [];
    this.heldBytes = 0;
    this.phase = Phase.Tunnel;
    this.retrySlot.release();
    this.setDeadline(Deadline.None, 0);
    core.sessions.delete(this);
    core.reportSuccess(upstream, server, Date.now() - this.firstAttemptAt);
    const startedAt = this.startedAt;
    const relay = new Relay(this.client, up, {
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
    this.clientPaused = false;
    this.client.resume();
    up.resume();
  }

  // ---------------------------------------------------------------- timeouts

  /** The whole-request timeout passed: 504 if nothing was answered yet, else cut the connection. */
  private requestTimedOut(): void {
    this.requestDeadline = 0;
    this.deadline = 0;
    this.deadlineKind = Deadline.None;
    const reason = `request not complete within ${this.ctx.core.timeouts.requestMs} ms`;
    if (this.attempt?.connecting) {
      // Nothing reached the server yet: it is not blamed.
      this.attempt.abort();
      this.attempt = undefined;
    }
    if (this.phase === Phase.Tunnel || this.phase === Phase.Closed) return;
    if (this.status === 0 && this.respHead === undefined && (this.phase === Phase.Proxy || this.phase === Phase.Connecting)) {
      // A client still sending its body made the request late, not the server.
      const bodyOwed = this.reqReader !== undefined && !this.reqReader.done;
      if (this.attempt && !bodyOwed) this.ctx.core.reportFailure(this.upstream!, this.attempt.server, 'timeout', reason);
      this.abortUpstream();
      this.clientKeepAlive = false;
      this.respondError(504, reason);
      return;
    }
    this.ctx.core.logger.warn('request timeout', { client: this.clientIp, upstream: this.upstreamAddr, reason });
    this.abortUpstream();
    this.client.destroy();
  }

  /** On shutdown: close now if between requests (otherwise after the response in flight). */
  drainIfIdle(): void {
    this.clientKeepAlive = false;
    if (this.phase === Phase.Head && this.headBuf.size === 0 && this.held.length === 0) {
      this.phase = Phase.Closed;
      this.client.end();
    }
  }

  /** Called by the proxy's sweep timer. */
  checkDeadline(now: number): void {
    if (this.hedgeDeadline !== 0 && now >= this.hedgeDeadline) this.startRequestHedge();
    if (this.requestDeadline !== 0 && now >= this.requestDeadline) {
      this.requestTimedOut();
      return;
    }
    if (this.deadline === 0 || now < this.deadline) return;
    const kind = this.deadlineKind;
    this.deadline = 0;
    this.deadlineKind = Deadline.None;
    switch (kind) {
      case Deadline.KeepAlive:
        this.phase = Phase.Closed;
        this.client.end();
        return;
      case Deadline.Header:
        this.clientKeepAlive = false;
        this.startedAt = now;
        this.rejectRequest(408, 'client header timeout');
        return;
      case Deadline.Body:
        this.clientKeepAlive = false;
        this.abortUpstream();
        this.respondError(408, 'client body timeout');
        return;
      case Deadline.FirstByte:
        if (this.ctx.core.requestHedgeMs > 0 && this.attempt && !this.lagCounted) lostHedge(this.upstream!, this.attempt.server, this.attempt.sentAt, now);
        if (this.hedge?.conn) {
          // The original timed out; the hedge gets its own first-byte timeout.
          this.ctx.core.reportFailure(this.upstream!, this.attempt!.server, 'timeout', 'first-byte timeout');
          this.promoteHedge();
          this.setDeadline(Deadline.FirstByte, this.ctx.core.timeouts.firstByteMs);
          return;
        }
        this.failAttempt('timeout', 504, `no response from ${this.upstreamAddr} within ${this.ctx.core.timeouts.firstByteMs} ms`, true);
        return;
      case Deadline.Idle:
        this.ctx.core.logger.warn('upstream idle timeout', { upstream: this.upstreamAddr });
        this.abortUpstream();
        this.client.destroy(new NetError('EIDLE', 'upstream idle timeout'));
        return;
      default:
        return;
    }
  }
}

/** A bug must cost one connection, never the process: log it and close both sides. */
export function crashed(session: ClientSession, error: unknown): void {
  session.ctx.core.logger.error('proxy session failed', { client: session.clientIp, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  session.up?.destroy();
  session.client.destroy();
}

const clientHandler: ConnHandler = {
  data(conn, chunk) {
    const session = conn.userData as ClientSession;
    try {
      session.onClientData(chunk);
    } catch (error) {
      crashed(session, error);
    }
  },
  drain(conn) {
    const session = conn.userData as ClientSession;
    try {
      session.onClientDrain();
    } catch (error) {
      crashed(session, error);
    }
  },
  end(conn) {
    const session = conn.userData as ClientSession;
    try {
      session.onClientEnd();
    } catch (error) {
      crashed(session, error);
    }
  },
  close(conn) {
    const session = conn.userData as ClientSession;
    try {
      session.onClientClose();
    } catch (error) {
      crashed(session, error);
    }
  },
};

const upstreamHandler: ConnHandler = {
  data(conn, chunk) {
    const session = conn.userData as ClientSession;
    try {
      session.onUpstreamData(conn, chunk);
    } catch (error) {
      crashed(session, error);
    }
  },
  drain(conn) {
    const session = conn.userData as ClientSession;
    try {
      session.onUpstreamDrain(conn);
    } catch (error) {
      crashed(session, error);
    }
  },
  end(conn) {
    const session = conn.userData as ClientSession;
    try {
      session.onUpstreamEnd(conn);
    } catch (error) {
      crashed(session, error);
    }
  },
  close(conn, error) {
    const session = conn.userData as ClientSession;
    try {
      session.onUpstreamClose(conn, error);
    } catch (failure) {
      crashed(session, failure);
    }
  },
};
