import { formatHostPort, listenHost, type Address } from './address.js';
import { runtime as activeRuntime, runtimeReady } from './runtime/index.js';
import { LogBudget, silentLogger, type Logger } from './logger.js';
import { ConnLimit, type ConnLimitOptions, type HandshakeSlots } from './conn-limit.js';
import type { Conn, ConnTracker, Listener, TlsServerOptions } from './types.js';

export interface ServerOptions {
  addresses: Address[];
  tls?: TlsServerOptions;
  reusePort?: boolean;
  logger?: Logger;
  /** Connection limits of this listener (see conn-limit.ts); the process limit applies in any case. */
  limits?: ConnLimitOptions;
  /**
   * Connections not yet authenticated hold a slot of these from accept
   * (before TLS, on every runtime) until the owner calls `handshakes.done`;
   * over its bounds, or from a penalized source, a connection is closed at once.
   */
  handshakes?: HandshakeSlots;
  /** Called for every accepted connection; the server tracks it until it closes. */
  onConnection(conn: Conn): void;
}

let reusePortByDefault = false;

/**
 * Make every Server of this process bind with SO_REUSEPORT unless its
 * options say otherwise: the process is one of several workers sharing the
 * same listeners (the kernel spreads new connections between them).
 */
export function shareListenersByDefault(on: boolean): void {
  reusePortByDefault = on;
}

export interface ShutdownOptions {
  /** How long live connections may take to finish (default 10 s). Then they are closed. */
  deadlineMs?: number;
}

/** Refused TLS handshakes log up to this many lines per window, then the count of those not logged. */
const REFUSED_HANDSHAKE_LINES = 20;
const REFUSED_HANDSHAKE_WINDOW_MS = 10_000;

/**
 * Listens on several addresses, tracks every live connection, and shuts down
 * gracefully: stop accepting, wait for connections to finish up to a
 * deadline, then close the rest.
 */
export class Server implements ConnTracker {
  readonly listeners: Listener[] = [];
  private readonly live = new Set<Conn>();
  private readonly refusedHandshakes = new LogBudget(REFUSED_HANDSHAKE_LINES, REFUSED_HANDSHAKE_WINDOW_MS);
  private readonly options: ServerOptions;
  private readonly logger: Logger;
  /** Connection limits and counts of the accepted connections. */
  readonly limit: ConnLimit;
  private draining = false;
  private idleWaiters: Array<() => void> = [];

  constructor(options: ServerOptions) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.limit = new ConnLimit(this, this.logger, options.limits);
  }

  /** Replace the connection limits (a reload): open connections stay, new ones are checked against these. */
  setLimits(limits: ConnLimitOptions): void {
    this.limit.configure(limits);
  }

  get connectionCount(): number {
    return this.live.size;
  }

  /** Bound addresses as `host:port` (the real port when 0 was asked). */
  get boundAddresses(): string[] {
    return this.listeners.map((listener) => formatHostPort(listener.host, listener.port));
  }

  async start(): Promise<this> {
    await runtimeReady();
    const runtime = activeRuntime();
    try {
      for (const address of this.options.addresses) {
        const listener = await runtime.listen({
          host: listenHost(address),
          port: address.port,
          tls: this.options.tls,
          reusePort: this.options.reusePort ?? reusePortByDefault,
          handshakes: this.options.handshakes,
          onConnection: (conn, slotTaken) => this.accept(conn, slotTaken === true),
          onError: (error, peer) => this.onListenError(error, peer),
        });
        this.listeners.push(listener);
        this.logger.info('listening', { address: formatHostPort(listener.host, listener.port), runtime: runtime.name });
      }
    } catch (error) {
      this.stopAccepting();
      throw error;
    }
    return this;
  }

  /**
   * A refused TLS client (no or a wrong certificate under mutual TLS, a plain-text client, one that hung up
   * mid-handshake) is the client's fault: one clear line each, up to a budget, since a client can cause one per
   * connection; then the count of those not logged.
   */
  private onListenError(error: Error, peer: string | undefined): void {
    if (peer === undefined) return this.logger.warn('accept error', { error: error.message });
    const notLogged = this.refusedHandshakes.take();
    if (notLogged === undefined) return;
    this.logger.warn('tls handshake refused', { client: peer, error: error.message, ...(notLogged > 0 ? { notLogged } : {}) });
  }

  /** Track a connection until it closes (accepted ones are tracked already; add upstreams to drain them too). */
  track(conn: Conn): void {
    this.live.add(conn);
    conn.tracker = this;
  }
  untrack(conn: Conn): void {
    if (this.live.delete(conn) && this.live.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** `slotTaken`: the runtime took its handshake slot at accept (before TLS). */
  private accept(conn: Conn, slotTaken: boolean): void {
    const slots = this.options.handshakes;
    // Without slots nothing more than before is read per connection (its address only where slots count it).
    if (slots !== undefined) {
      if (!this.holdSlot(slots, conn, slotTaken)) return;
    } else {
      if (this.draining) {
        conn.destroy();
        return;
      }
      // Over a limit: refused (answered or closed) and never tracked. Admitted: its tracker is the limit, which releases its counts, then untracks it here.
      if (!this.limit.admit(conn)) return;
    }
    this.live.add(conn);
    this.options.onConnection(conn);
  }

  /** Admit `conn` holding a handshake slot (taken here unless the runtime took it before TLS), or close it and give the slot back. */
  private holdSlot(slots: HandshakeSlots, conn: Conn, slotTaken: boolean): boolean {
    const address = conn.remoteAddress;
    if (this.draining) {
      if (slotTaken) slots.giveBack(address);
      conn.destroy();
      return false;
    }
    // A penalized source, or too many handshakes: closed before anything else is counted.
    if (!slotTaken && !slots.take(address)) {
      conn.destroy();
      return false;
    }
    if (!this.limit.admit(conn)) {
      slots.giveBack(address);
      return false;
    }
    slots.hold(conn, address);
    return true;
  }

  stopAccepting(): void {
    for (const listener of this.listeners) listener.close();
    this.listeners.length = 0;
  }

  /** Graceful shutdown; resolves with how many connections had to be closed by force. */
  async shutdown(options: ShutdownOptions = {}): Promise<{ forced: number }> {
    this.draining = true;
    this.stopAccepting();
    if (this.live.size === 0) return { forced: 0 };
    const deadlineMs = options.deadlineMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(resolve, deadlineMs, 'expired');
    });
    const outcome = await Promise.race([idle, expired]);
    clearTimeout(timer);
    if (outcome !== 'expired') return { forced: 0 };
    const forced = this.live.size;
    this.logger.info('shutdown deadline passed, closing connections', { forced });
    for (const conn of [...this.live]) conn.destroy();
    return { forced };
  }
}
