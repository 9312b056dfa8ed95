/**
 * Connection limits, checked when a listener accepts: at most
 * `maxConnections` open connections on the listener (all clients together),
 * at most `maxConnectionsPerIp` from one client address, and at most the
 * process limit over every listener of the process (HAProxy's global
 * `maxconn`, frontend `maxconn` and a `src_conn_cur` stick-table rule; nginx's
 * `worker_connections` and `limit_conn`).
 *
 * A connection over a limit is refused at once: closed without a byte, or,
 * when the listener has `refusal` bytes (an HTTP listener's 503), answered
 * with them and closed. It never reaches the protocol, holds no upstream
 * connection and is not counted. Refusals are logged at most once a second
 * per listener, with how many there were since the previous line.
 *
 * Open connections are counted per client address in a map whose entries go
 * at zero, so it holds at most one entry per open connection.
 */
import { LogBudget, type Logger } from './logger.js';
import { sourceOf, type SourcePenalties } from './penalty.js';
import type { Conn, ConnHandler, ConnTracker } from './types.js';

/**
 * The default process limit. Each proxied connection can hold two file
 * descriptors (the client's and one upstream or tunnel target), and the
 * process needs some for listeners, idle upstream pools, health checks and
 * logs: with the usual hard limit of 20 000 descriptors (which Bun and Node
 * raise their soft limit to at start), 9 000 clients use at most 18 000 and
 * leave 2 000 spare, so accepting and connecting never fail with EMFILE (a
 * failed upstream connect would count against a healthy server).
 */
export const DEFAULT_PROCESS_MAX_CONNECTIONS = 9_000;

/** A refused connection that was sent `refusal` bytes is closed after this long if its peer has not closed first. */
const LINGER_MS = 2_000;
/** At most this many refused connections per listener wait for their answer to reach the peer; more are closed at once. */
const MAX_LINGERING = 128;
/** At most one "refusing connections" line per listener in this interval. */
const LOG_INTERVAL_MS = 1_000;

export interface ConnLimitOptions {
  /** Most connections open at once on this listener, every client together (0 or absent: only the process limit). */
  maxConnections?: number;
  /** Most connections open at once from one client IP address (0 or absent: no limit). */
  maxConnectionsPerIp?: number;
  /** Bytes sent to a refused connection before it is closed (e.g. an HTTP 503 with `Connection: close`); absent: closed at once. */
  refusal?: Uint8Array;
}

/**
 * How many of something are open (connections, handshakes under way), in all
 * and by client address, with the check against bounds on both. Entries go
 * at zero, so the map holds at most one entry per open one.
 */
export class AddressCounts {
  total = 0;
  private readonly byAddress = new Map<string, number>();

  /** Addresses with at least one open. */
  get addresses(): number {
    return this.byAddress.size;
  }

  of(address: string): number {
    return this.byAddress.get(address) ?? 0;
  }

  /** The bound one more from `address` would pass: `max` in all ('all'), `maxPerAddress` ('address'); 0: no bound. */
  over(address: string, max: number, maxPerAddress: number): 'all' | 'address' | undefined {
    if (max > 0 && this.total >= max) return 'all';
    if (maxPerAddress > 0 && this.of(address) >= maxPerAddress) return 'address';
    return undefined;
  }

  add(address: string): void {
    this.byAddress.set(address, this.of(address) + 1);
    this.total++;
  }

  remove(address: string): void {
    const left = this.of(address) - 1;
    if (left > 0) this.byAddress.set(address, left);
    else this.byAddress.delete(address);
    this.total--;
  }
}

/** Which limit refused a connection. */
export type ConnLimitKind = 'process' | 'listener' | 'client';

let processOpen = 0;
let processMax = DEFAULT_PROCESS_MAX_CONNECTIONS;

/**
 * Set the most client connections this process keeps open at once over
 * every listener (0: no limit). Connections already open stay; only new ones
 * are refused while the count is at or above the limit.
 */
export function setProcessConnectionLimit(max: number): void {
  processMax = checkCount(max, 'process connection limit');
}

/** The process limit and how many accepted connections are open now, over every listener. */
export function processConnections(): { open: number; max: number } {
  return { open: processOpen, max: processMax };
}

function checkCount(value: number | undefined, name: string): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number, 0 or more (got ${value})`);
  return value;
}

/**
 * The limits of one listener (a core-net Server) and its counts. It is the
 * tracker of every connection it admitted: their close releases the counts,
 * then tells the owner (`owner.untrack`).
 */
export class ConnLimit implements ConnTracker {
  maxConnections = 0;
  maxConnectionsPerIp = 0;
  refusal: Uint8Array | undefined = undefined;
  /** Connections refused since start. */
  refused = 0;
  private readonly counts = new AddressCounts();
  private lingering = 0;
  private readonly logBudget = new LogBudget(1, LOG_INTERVAL_MS);

  constructor(
    private readonly owner: ConnTracker,
    private readonly logger: Logger,
    options: ConnLimitOptions = {},
  ) {
    this.configure(options);
  }

  /** New limits (a reload): connections already open stay, new ones are checked against these. */
  configure(options: ConnLimitOptions): void {
    this.maxConnections = checkCount(options.maxConnections, 'maxConnections');
    this.maxConnectionsPerIp = checkCount(options.maxConnectionsPerIp, 'maxConnectionsPerIp');
    this.refusal = options.refusal;
  }

  /** Admitted connections open now. */
  get open(): number {
    return this.counts.total;
  }

  /** Client addresses with at least one open connection. */
  get clients(): number {
    return this.counts.addresses;
  }

  /** Open connections from `ip`. */
  openFrom(ip: string): number {
    return this.counts.of(ip);
  }

  /**
   * Count a just-accepted connection and become its tracker, or refuse it
   * (answered and closed) and return false.
   */
  admit(conn: Conn): boolean {
    const ip = conn.remoteAddress;
    let over: ConnLimitKind | undefined;
    if (processMax > 0 && processOpen >= processMax) over = 'process';
    else {
      const bound = this.counts.over(ip, this.maxConnections, this.maxConnectionsPerIp);
      if (bound !== undefined) over = bound === 'all' ? 'listener' : 'client';
    }
    if (over !== undefined) {
      this.refuse(conn, over, ip);
      return false;
    }
    this.counts.add(ip);
    processOpen++;
    conn.tracker = this;
    return true;
  }

  /** An admitted connection stands for another peer now: counted under its address (not refused: it is open already). */
  readdress(conn: Conn, previous: string): void {
    this.counts.remove(previous);
    this.counts.add(conn.remoteAddress);
  }

  /** An admitted connection closed (called once, by the connection). */
  untrack(conn: Conn): void {
    this.counts.remove(conn.remoteAddress);
    processOpen--;
    this.owner.untrack(conn);
  }

  private refuse(conn: Conn, over: ConnLimitKind, ip: string): void {
    this.refused++;
    const dropped = this.logBudget.take();
    if (dropped !== undefined) {
      this.logger.warn('connection limit reached, refusing connections', {
        limit: over,
        max: over === 'process' ? processMax : over === 'listener' ? this.maxConnections : this.maxConnectionsPerIp,
        client: ip,
        refused: dropped + 1,
        open: this.open,
        local: conn.localPort,
      });
    }
    const refusal = this.refusal;
    if (refusal === undefined || this.lingering >= MAX_LINGERING) {
      conn.destroy();
      return;
    }
    // Answer, send FIN, and read (and drop) what the client sends until it
    // closes: closing with its request unread would reset the connection,
    // and the reset can reach the client before it has read the answer.
    this.lingering++;
    conn.userData = this;
    conn.setHandler(lingerHandler);
    conn.write(refusal);
    conn.end();
    setTimeout(destroyConn, LINGER_MS, conn).unref?.();
  }

  /** @internal A refused connection that was answered has closed. */
  lingerDone(): void {
    this.lingering--;
  }
}

function destroyConn(conn: Conn): void {
  conn.destroy();
}

/** Handler of a refused connection after its answer: drop what arrives, close when the peer is done. */
const lingerHandler: ConnHandler = {
  data() {},
  end(conn) {
    conn.destroy();
  },
  close(conn) {
    (conn.userData as ConnLimit).lingerDone();
    conn.userData = undefined;
  },
};

/** Handshake refusals over the limits log one line per this interval, with their count. */
const HANDSHAKE_REFUSAL_LOG_MS = 10_000;

export interface HandshakeSlotOptions {
  /** Connections not yet established, every address together (0: no limit). */
  max?: number;
  /** Connections not yet established from one address (0: no limit). */
  maxPerIp?: number;
  /** Sources that failed to authenticate are refused at accept while penalized (see penalty.ts). */
  penalties?: SourcePenalties;
}

/**
 * A listener's connections that have not authenticated yet (sshd's
 * MaxStartups, per source too), each holding one slot from its accept (before
 * TLS where node:tls serves the port: the runtime takes the slot then and the
 * connection carries it on) until its owner calls `done` or it closes. A new
 * connection over a bound, or from a penalized source, is closed at once.
 * Give one to `ServerOptions.handshakes`.
 */
export class HandshakeSlots implements ConnTracker {
  max = 0;
  maxPerIp = 0;
  penalties: SourcePenalties | undefined = undefined;
  /** Connections refused over the bounds since start (penalized sources count in their SourcePenalties). */
  refused = 0;
  private readonly counts = new AddressCounts();
  /** Connections holding a slot: the address counted and the tracker given back at `done`. */
  private readonly held = new Map<Conn, { address: string; next: ConnTracker | undefined }>();
  private readonly refusals = new LogBudget(1, HANDSHAKE_REFUSAL_LOG_MS);

  constructor(
    private readonly logger: Logger,
    /** Names the service in log lines. */
    private readonly service: string,
    options: HandshakeSlotOptions = {},
  ) {
    this.configure(options);
  }

  configure(options: HandshakeSlotOptions): void {
    this.max = checkCount(options.max, 'max handshakes');
    this.maxPerIp = checkCount(options.maxPerIp, 'max handshakes per IP');
    this.penalties = options.penalties;
  }

  /** Connections holding a slot now. */
  get pending(): number {
    return this.counts.total;
  }

  /**
   * @internal At accept (core-net): take a slot for a connection from `address`, or false (the caller closes it).
   * Counted per source as penalties are (an IPv6 /64), or one host would hold every slot with its own addresses.
   */
  take(address: string): boolean {
    if (this.penalties?.refuses(address)) return false;
    const source = sourceKey(address);
    const over = this.counts.over(source, this.max, this.maxPerIp);
    if (over !== undefined) {
      this.refused++;
      const dropped = this.refusals.take();
      if (dropped !== undefined) this.logger.warn(`${this.service} handshakes over the limit: connections closed`, { peer: address, limit: over, max: over === 'all' ? this.max : this.maxPerIp, refused: dropped + 1 });
      return false;
    }
    this.counts.add(source);
    return true;
  }

  /** @internal A slot taken whose connection closed before it was held. */
  giveBack(address: string): void {
    this.counts.remove(sourceKey(address));
  }

  /** @internal The accepted `conn` holds its slot until `done` or its close (this stands in front of its tracker). */
  hold(conn: Conn, address: string): void {
    this.held.set(conn, { address: sourceKey(address), next: conn.tracker });
    conn.tracker = this;
  }

  /** A connection holding a slot shows another peer: its slot stays where it was taken; the trackers behind it move their counts. */
  readdress(conn: Conn, previous: string): void {
    this.held.get(conn)?.next?.readdress?.(conn, previous);
  }

  /** `conn` authenticated (or is no longer a handshake): its slot is free. */
  done(conn: Conn): void {
    const entry = this.held.get(conn);
    if (entry === undefined) return;
    this.held.delete(conn);
    if (conn.tracker === this) conn.tracker = entry.next;
    this.counts.remove(entry.address);
  }

  /** @internal A connection closed during its handshake. */
  untrack(conn: Conn): void {
    const next = this.held.get(conn)?.next;
    this.done(conn);
    next?.untrack(conn);
  }
}

/** The key a handshake slot counts under: the source penalties use (an IPv4 address, an IPv6 /64). */
function sourceKey(address: string): string {
  return sourceOf(address)?.key ?? address;
}
