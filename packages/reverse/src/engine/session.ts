import { HeadBuffer, parseRequestHead, type Conn, type ConnHandler, type RequestHead } from '@wmproxy/core-net';
import type { ListenerContext } from './context.js';
import { Exchange, HOLD_LIMIT } from './exchange.js';
import { scheduleHedge } from './hedge.js';
import { Deadline, Phase, type ClientConnection } from './phase.js';

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
export class ClientSession implements ClientConnection {
  readonly client: Conn;
  readonly ctx: ListenerContext;
  phase = Phase.Head;
  deadline = 0;
  deadlineKind = Deadline.None;
  /** The request being served (undefined between requests). */
  exchange: Exchange | undefined = undefined;
  /** A partial request head (only while one is partial). */
  private headBuf: HeadBuffer | undefined = undefined;
  /** Client bytes that arrived while they could not be read (a request is being served). */
  private held: Uint8Array[] | undefined = undefined;
  heldBytes = 0;
  clientEnded = false;
  /** Pausing and resuming a socket can cost a system call: only when the state changes. */
  private clientPaused = false;
  /** A local answer was written but not flushed: the next request is read once the client drains. */
  private localDone = false;
  /** Due time of this connection's earliest entry in the hedge timer (0: none). */
  private hedgeTimerAt = 0;

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
      case Phase.Proxy: {
        const reader = this.exchange?.reqReader;
        if (reader && !reader.done) {
          this.exchange!.forwardRequestBody(chunk);
          return;
        }
        this.hold(chunk);
        return;
      }
      case Phase.Connecting:
      case Phase.Local:
        this.hold(chunk);
        return;
      default:
        return;
    }
  }

  pauseClient(): void {
    if (this.clientPaused) return;
    this.clientPaused = true;
    this.client.pause();
  }

  /** `force`: resume whatever this session thinks (a tunnel's relay reads from now on). */
  resumeClient(force = false): void {
    if (!this.clientPaused && !force) return;
    this.clientPaused = false;
    this.client.resume();
  }

  hold(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    (this.held ??= []).push(chunk.slice());
    this.heldBytes += chunk.byteLength;
    if (this.heldBytes >= HOLD_LIMIT) this.pauseClient();
  }

  /** Feed held bytes back through the state machine (after a phase change). */
  replayHeld(): void {
    const chunks = this.held;
    if (chunks === undefined) return;
    this.held = undefined;
    this.heldBytes = 0;
    for (let i = 0; i < chunks.length; i++) {
      if (this.phase === Phase.Closed) return;
      this.onClientData(chunks[i]!);
    }
  }

  private readHead(chunk: Uint8Array): void {
    const buffer = this.headBuf;
    const view = buffer === undefined ? chunk : buffer.feed(chunk);
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

  private begin(head: RequestHead | undefined, now: number, headBytes = 0): Exchange {
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
    const held = this.held;
    if (held !== undefined) for (const chunk of held) up.write(chunk);
    this.held = undefined;
    this.heldBytes = 0;
    this.phase = Phase.Tunnel;
    this.exchange = undefined;
    this.setDeadline(Deadline.None, 0);
    this.ctx.core.sessions.delete(this);
  }

  // ---------------------------------------------------------------- hedge timer (hedge.ts)

  /**
   * The exchange's request hedge is due at `at`. Most requests are answered
   * long before: while the connection has an entry in the hedge timer due no
   * later, no new one is added (that entry re-arms for the current deadline
   * when it fires), so a keep-alive connection costs the timer one entry per
   * hedge delay, not one per request.
   */
  armHedgeTimer(at: number): void {
    if (this.hedgeTimerAt !== 0 && this.hedgeTimerAt <= at) return;
    this.hedgeTimerAt = at;
    scheduleHedge(this.ctx.core.ticker, this, at);
  }

  /** The hedge timer: the exchange's hedge due at `at` may be due now. */
  hedgeDue(at: number): void {
    if (at === this.hedgeTimerAt) this.hedgeTimerAt = 0;
    try {
      this.exchange?.hedgeDue(at);
    } catch (error) {
      this.crashed(error);
    }
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
    let exchange = this.exchange;
    if (exchange !== undefined) {
      if (exchange.hedgeDeadline !== 0 && now >= exchange.hedgeDeadline) exchange.hedgeDue(now);
      exchange = this.exchange;
      if (exchange !== undefined && exchange.requestDeadline !== 0 && now >= exchange.requestDeadline) {
        exchange.requestTimedOut();
        return;
      }
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

/** A bug must cost one connection, never the process (the proxy's sweep calls this). */
export function crashed(session: ClientSession, error: unknown): void {
  session.crashed(error);
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
