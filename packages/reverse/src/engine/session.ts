import { HeadBuffer, parseRequestHead, type Conn, type ConnHandler, type RequestHead } from '@wmproxy/core-net';
import type { ListenerContext } from './context.js';
import { Exchange, HOLD_LIMIT } from './exchange.js';
import { armHedgeTimer, hedgeTimerFired, keepHeld, passedDeadline, pauseSide, resumeSide, takeHeld, toRequestBody, type ClientSide } from './client-side.js';
import { Deadline, Phase, type ClientConnection } from './phase.js';
import { Http2ClientConnection, startsWithPreface } from './h2.js';

const EMPTY = new Uint8Array(0);

/**
 * One client connection of the HTTP reverse proxy (HAProxy's stream): its
 * state machine and nothing of any one request. It reads request heads
 * (core-net's parser), holds bytes that arrive while a request is being
 * served, keeps the connection's one deadline, and hands each request to an
 * `Exchange` (exchange.ts) that lives until the response ended. Between
 * requests a keep-alive connection holds its Conn, this object and, only
 * while a head is partial, the head's bytes.
 */
export class ClientSession implements ClientConnection, ClientSide {
  readonly client: Conn;
  readonly ctx: ListenerContext;
  readonly http2 = undefined;
  phase = Phase.Head;
  deadline = 0;
  deadlineKind = Deadline.None;
  /** The request being served (undefined between requests). */
  exchange: Exchange | undefined = undefined;
  /** A partial request head (only while one is partial). */
  private headBuf: HeadBuffer | undefined = undefined;
  /** Client bytes that arrived while they could not be read (a request is being served). */
  held: Uint8Array[] | undefined = undefined;
  heldBytes = 0;
  clientEnded = false;
  clientPaused = false;
  /** A local answer was written but not flushed: the next request is read once the client drains. */
  private localDone = false;
  /** Due time of this connection's earliest entry in the hedge timer (0: none). */
  hedgeTimerAt = 0;
  /** No request yet: the connection may still turn out to be h2c by prior knowledge. */
  private firstHead = true;

  constructor(client: Conn, ctx: ListenerContext) {
    this.client = client;
    this.ctx = ctx;
    client.userData = this;
    this.setDeadline(Deadline.KeepAlive, ctx.core.timeouts.keepAliveMs);
    ctx.core.sessions.add(this);
    client.setHandler(clientHandler);
  }

  get clientIp(): string {
    return this.client.remoteAddress;
  }

  get isClosed(): boolean {
    return this.phase === Phase.Closed;
  }

  /** `now` (Date.now()) saves a clock read for a caller that has it: a request reads the clock a few times, not a dozen. */
  setDeadline(kind: Deadline, ms: number, now?: number): void {
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
        if (!toRequestBody(this, chunk)) this.hold(chunk);
        return;
      case Phase.Connecting:
      case Phase.Local:
        this.hold(chunk);
        return;
      default:
        return;
    }
  }

  pauseClient(): void {
    pauseSide(this);
  }

  resumeClient(force = false): void {
    resumeSide(this, force);
  }

  hold(chunk: Uint8Array): void {
    // Socket chunks may be reused by the runtime: a copy is kept.
    if (chunk.byteLength > 0) keepHeld(this, chunk.slice());
  }

  /** Feed held bytes back through the state machine (after a phase change). */
  replayHeld(): void {
    const chunks = takeHeld(this);
    if (chunks === undefined) return;
    for (let i = 0; i < chunks.length; i++) {
      if (this.phase === Phase.Closed) return;
      this.onClientData(chunks[i]!);
    }
  }

  private readHead(chunk: Uint8Array): void {
    const buffer = this.headBuf;
    const view = buffer === undefined ? chunk : buffer.feed(chunk);
    if (this.firstHead && this.ctx.http2 !== undefined && this.toHttp2(view)) return;
    const result = parseRequestHead(view, this.ctx.core.headLimits);
    if (result.kind === 'incomplete') {
      if (this.clientEnded) {
        // Replayed bytes after the client's FIN: this head can never complete.
        this.headBuf = undefined;
        this.phase = Phase.Closed;
        this.client.destroy();
        return;
      }
      // The header timeout starts with the first byte and is not extended (slow-loris defence).
      if (buffer === undefined) this.setDeadline(Deadline.Header, this.ctx.core.timeouts.clientHeaderMs);
      (this.headBuf ??= new HeadBuffer()).keep(view);
      return;
    }
    // The buffer goes with the head: an idle connection keeps no head bytes.
    this.headBuf = undefined;
    if (result.kind === 'error') {
      this.begin(undefined, Date.now()).reject(result.status, result.reason);
      return;
    }
    const rest = view.byteLength > result.consumed ? view.subarray(result.consumed) : EMPTY;
    // `rest` may point into the head buffer's storage: hold (copy) it first; it precedes anything held.
    if (rest.byteLength > 0) {
      (this.held ??= []).unshift(rest.slice());
      this.heldBytes += rest.byteLength;
    }
    this.begin(result.head, Date.now(), result.consumed).start();
  }

  /**
   * The connection's first bytes: HTTP/2 when TLS chose h2 by ALPN (on Bun
   * the handshake ends after the connection is handed out, so it is asked
   * here), or, with h2c, when they are the client preface ("PRI" is no
   * HTTP/1 method). The connection then becomes an HTTP/2 one. False: HTTP/1.
   */
  private toHttp2(view: Uint8Array): boolean {
    if (this.client.alpnProtocol === 'h2') {
      this.upgradeToHttp2(view);
      return true;
    }
    if (!this.ctx.http2!.h2c || view[0] !== 0x50 /* P */) return false;
    const { match, complete } = startsWithPreface(view);
    if (!match) return false;
    if (!complete) {
      if (this.headBuf === undefined) this.setDeadline(Deadline.Header, this.ctx.core.timeouts.clientHeaderMs);
      (this.headBuf ??= new HeadBuffer()).keep(view);
      return true;
    }
    this.upgradeToHttp2(view);
    return true;
  }

  private upgradeToHttp2(view: Uint8Array): void {
    const first = view.slice();
    this.headBuf = undefined;
    this.phase = Phase.Closed;
    this.ctx.core.sessions.delete(this);
    new Http2ClientConnection(this.client, this.ctx, this.ctx.http2!.options, first);
  }

  private begin(head: RequestHead | undefined, now: number, headBytes = 0): Exchange {
    this.firstHead = false;
    const exchange = new Exchange(this, head, now, headBytes);
    this.exchange = exchange;
    return exchange;
  }

  onClientDrain(): void {
    const exchange = this.exchange;
    if (exchange !== undefined) {
      exchange.clientDrained();
      return;
    }
    if (this.phase === Phase.Local && this.localDone) {
      this.localDone = false;
      this.nextRequest();
    }
  }

  onClientEnd(): void {
    this.clientEnded = true;
    const exchange = this.exchange;
    if (exchange !== undefined) exchange.keepAlive = false;
    if (this.phase === Phase.Head) {
      if (this.held !== undefined) return;
      // Between requests: close. Mid-head: the head can never complete, so no wait for the header timeout.
      if (this.headBuf === undefined) this.client.end();
      else {
        this.headBuf = undefined;
        this.phase = Phase.Closed;
        this.client.destroy();
      }
      return;
    }
    if (this.phase === Phase.Proxy) exchange?.abandonIncompleteBody();
  }

  onClientClose(): void {
    const wasTunnel = this.phase === Phase.Tunnel;
    this.phase = Phase.Closed;
    this.ctx.core.sessions.delete(this);
    const exchange = this.exchange;
    this.exchange = undefined;
    this.held = undefined;
    this.headBuf = undefined;
    exchange?.clientClosed(wasTunnel);
  }

  // ---------------------------------------------------------------- between requests

  /**
   * The exchange ended (its response written, its log line out): drop it,
   * then read the next request (once the client took the answer, when it
   * was not flushed) or close.
   */
  exchangeDone(exchange: object, keepAlive: boolean, flushed: boolean, now?: number): void {
    if (this.exchange === exchange) this.exchange = undefined;
    if (!keepAlive) {
      this.phase = Phase.Closed;
      this.client.end();
      return;
    }
    if (flushed) this.nextRequest(now);
    else {
      this.phase = Phase.Local;
      this.localDone = true;
    }
  }

  private nextRequest(now?: number): void {
    this.phase = Phase.Head;
    this.setDeadline(Deadline.KeepAlive, this.ctx.core.timeouts.keepAliveMs, now);
    this.replayHeld();
    if (this.phase === Phase.Head && this.heldBytes < HOLD_LIMIT) this.resumeClient();
  }

  /** The exchange became a tunnel: held bytes go upstream, and the session lets go (a Relay owns both connections). */
  becomeTunnel(up: Conn): void {
    const held = this.letGo();
    if (held !== undefined) for (const chunk of held) up.write(chunk);
  }

  /** A location takes the connection over: this session lets go of it and returns the bytes held past the head. */
  handOver(): Uint8Array {
    const held = this.letGo();
    if (this.clientPaused) this.resumeClient();
    if (held === undefined) return EMPTY;
    return held.length === 1 ? held[0]! : Buffer.concat(held);
  }

  /** The connection stops being an HTTP session (a tunnel or a takeover): no deadline, no exchange; returns what it held. */
  private letGo(): Uint8Array[] | undefined {
    const held = this.held;
    this.held = undefined;
    this.heldBytes = 0;
    this.phase = Phase.Tunnel;
    this.exchange = undefined;
    this.setDeadline(Deadline.None, 0);
    this.ctx.core.sessions.delete(this);
    return held;
  }

  // ---------------------------------------------------------------- hedge timer (hedge.ts, client-side.ts)

  armHedgeTimer(at: number): void {
    armHedgeTimer(this, at);
  }

  hedgeDue(at: number): void {
    hedgeTimerFired(this, at);
  }

  // ---------------------------------------------------------------- timeouts

  /** On shutdown: close now if between requests (otherwise after the response in flight). */
  drainIfIdle(): void {
    if (this.exchange !== undefined) this.exchange.keepAlive = false;
    if (this.phase === Phase.Head && this.headBuf === undefined && this.held === undefined) {
      this.phase = Phase.Closed;
      this.client.end();
    }
  }

  /** Called by the proxy's sweep (its Ticker). */
  checkDeadline(now: number): void {
    const kind = passedDeadline(this, now);
    switch (kind) {
      case Deadline.None:
        return;
      case Deadline.KeepAlive:
        this.phase = Phase.Closed;
        this.client.end();
        return;
      case Deadline.Header:
        this.headBuf = undefined;
        this.begin(undefined, now).reject(408, 'client header timeout');
        return;
      default:
        this.exchange?.deadlinePassed(kind, now);
    }
  }

  /** A bug must cost one connection, never the process: log it and close both sides. */
  crashed(error: unknown): void {
    this.ctx.core.logger.error('proxy session failed', { client: this.clientIp, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    this.exchange?.up?.destroy();
    this.client.destroy();
  }
}

const clientHandler: ConnHandler = {
  data(conn, chunk) {
    const session = conn.userData as ClientSession;
    try {
      session.onClientData(chunk);
    } catch (error) {
      session.crashed(error);
    }
  },
  drain(conn) {
    const session = conn.userData as ClientSession;
    try {
      session.onClientDrain();
    } catch (error) {
      session.crashed(error);
    }
  },
  end(conn) {
    const session = conn.userData as ClientSession;
    try {
      session.onClientEnd();
    } catch (error) {
      session.crashed(error);
    }
  },
  close(conn) {
    const session = conn.userData as ClientSession;
    try {
      session.onClientClose();
    } catch (error) {
      session.crashed(error);
    }
  },
};
