/**
 * The public TLS port of a tunnel server. Each connection's ClientHello is
 * read without terminating TLS: a server name that an `https` mapping
 * serves is passed through, bytes untouched, to a client of that mapping
 * (the local service holds the certificate: SNI passthrough); any other
 * name goes to the terminating listener when there is one (http mappings
 * served over TLS with the tunnel server's certificate), or is closed.
 */
import {
  connect,
  formatHostPort,
  isLoopback,
  parseAddress,
  parseAddressList,
  relay,
  releaseConn,
  Server,
  silentLogger,
  type Conn,
  type ConnHandler,
  type ConnLimitOptions,
  type Logger,
} from '@wmproxy/core-net';
import { readClientHelloSni, MAX_CLIENT_HELLO_BYTES } from './sni.js';
import type { TunnelServer } from './server.js';
import { DEFAULT_RELAY_IDLE_MS } from './server.js';

/**
 * What one connection may hold before its ClientHello is read. Real hellos
 * are a few hundred bytes to about 2 KiB (post-quantum key shares included);
 * the budget leaves room for large extensions and keeps a port full of
 * half-open hellos cheap (and `limits.maxConnectionsPerIp` keeps one address
 * from filling it).
 */
export const DEFAULT_HELLO_TIMEOUT_MS = 5_000;
export const DEFAULT_MAX_HELLO_BYTES = 8 * 1024;

/** Unmatched entries past this many are swept of closed connections. */
const HANDOFF_SWEEP_AT = 1024;

interface Handoff {
  address: string;
  port: number;
  carrier: Conn;
}

/**
 * Visitors the TLS port hands to the terminating listener over loopback,
 * matched by the loopback port of the hand-over connection, so that the
 * engine there shows the visitor (X-Forwarded-For, X-Real-IP, logs, limits)
 * and not 127.0.0.1. Either side may come first: on Node the listener sees
 * a connection once its TLS handshake is done, on Bun once it is accepted.
 */
export class Handoffs {
  private readonly named = new Map<number, Handoff>();
  private readonly accepted = new Map<number, Conn>();

  /** The TLS port: `carrier` (its connection to the terminating listener) carries the visitor `address`:`port`. */
  name(carrier: Conn, address: string, port: number): void {
    const key = carrier.localPort;
    const conn = this.accepted.get(key);
    if (conn !== undefined) {
      this.accepted.delete(key);
      if (!conn.closed) return conn.showPeer?.(address, port);
    }
    if (this.named.size >= HANDOFF_SWEEP_AT) for (const [at, entry] of this.named) if (entry.carrier.closed) this.named.delete(at);
    this.named.set(key, { address, port, carrier });
  }

  /** The terminating listener's `onAccept`. */
  readonly onAccept = (conn: Conn): void => {
    if (!isLoopback(conn.remoteAddress)) return;
    const key = conn.remotePort;
    const entry = this.named.get(key);
    if (entry !== undefined) {
      this.named.delete(key);
      if (!entry.carrier.closed) return conn.showPeer?.(entry.address, entry.port);
    }
    if (this.accepted.size >= HANDOFF_SWEEP_AT) for (const [at, open] of this.accepted) if (open.closed) this.accepted.delete(at);
    this.accepted.set(key, conn);
  };
}

export interface TunnelTlsOptions {
  listen: string | string[];
  /** `host:port` of the listener that terminates TLS for names no https mapping passes through (TunnelHttpFront's `tlsListen`). */
  terminate?: string;
  /** Shared with the terminating listener (TunnelHttpFront's `handoffs`): it shows the visitors handed over, not 127.0.0.1. */
  handoffs?: Handoffs;
  /** A client must send its ClientHello within this time (default 5 s). */
  helloTimeoutMs?: number;
  /** Most bytes held while waiting for a whole ClientHello (default 8 KiB). */
  maxHelloBytes?: number;
  /** Connection limits of the port (per client IP, in all), as on the other listeners. */
  limits?: ConnLimitOptions;
  relayIdleMs?: number;
  logger?: Logger;
}

/** Per connection, until its ClientHello is read. */
class Pending {
  chunks: Uint8Array[] = [];
  size = 0;
  timer: ReturnType<typeof setTimeout> | undefined;
  done = false;
  constructor(readonly front: TunnelTlsFront) {}

  bytes(): Uint8Array {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
  }
}

const helloHandler: ConnHandler = {
  data(conn, chunk) {
    const pending = conn.userData as Pending;
    pending.chunks.push(chunk);
    pending.size += chunk.byteLength;
    pending.front.onHelloBytes(conn, pending, chunk.byteLength);
  },
  end(conn) {
    conn.destroy();
  },
  close(conn) {
    const pending = conn.userData as Pending | undefined;
    if (pending) pending.front.settled(pending);
  },
};

function onHelloTimeout(conn: Conn): void {
  (conn.userData as Pending).front.refuse(conn, 'no ClientHello in time');
}

export class TunnelTlsFront {
  private readonly server: Server;
  private readonly logger: Logger;
  private readonly terminate: { host: string; port: number } | undefined;
  private readonly maxHelloBytes: number;
  /** Connections whose ClientHello is not read yet, and the bytes they hold. */
  private pending = 0;
  private pendingBytes = 0;

  constructor(
    private readonly tunnel: TunnelServer,
    private readonly options: TunnelTlsOptions,
  ) {
    this.logger = options.logger ?? silentLogger;
    if (options.terminate !== undefined) {
      const address = parseAddress(options.terminate);
      this.terminate = { host: address.host, port: address.port };
    }
    this.server = new Server({
      addresses: (Array.isArray(options.listen) ? options.listen : [options.listen]).flatMap((entry) => parseAddressList(entry)),
      onConnection: (conn) => this.accept(conn),
      logger: this.logger,
      ...(options.limits ? { limits: options.limits } : {}),
    });
    this.maxHelloBytes = options.maxHelloBytes ?? DEFAULT_MAX_HELLO_BYTES;
  }

  get addresses(): string[] {
    return this.server.boundAddresses;
  }

  /** Connections waiting for their ClientHello, and the bytes they hold (bounded by the limits and the hello budget). */
  get waiting(): { connections: number; bytes: number } {
    return { connections: this.pending, bytes: this.pendingBytes };
  }

  async start(): Promise<this> {
    await this.server.start();
    return this;
  }

  async close(deadlineMs = 1000): Promise<void> {
    await this.server.shutdown({ deadlineMs });
  }

  private accept(conn: Conn): void {
    const pending = new Pending(this);
    conn.userData = pending;
    this.pending++;
    pending.timer = setTimeout(onHelloTimeout, this.options.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS, conn);
    conn.setHandler(helloHandler);
  }

  /** @internal */
  onHelloBytes(conn: Conn, pending: Pending, added: number): void {
    this.pendingBytes += added;
    if (pending.size > Math.min(this.maxHelloBytes, MAX_CLIENT_HELLO_BYTES + 1024)) return this.refuse(conn, `ClientHello over ${this.maxHelloBytes} bytes`);
    const result = readClientHelloSni(pending.bytes());
    if (result.kind === 'partial') return;
    this.settled(pending);
    conn.pause();
    if (result.kind === 'invalid') return this.refuse(conn, result.reason);
    const name = result.kind === 'sni' ? result.name : undefined;
    let mapping = name === undefined ? undefined : this.tunnel.matchHttp('https', name);
    // An http mapping that names the host more closely (exact against an https wildcard) is terminated, as the HTTP port would route it.
    if (mapping !== undefined && this.terminate !== undefined && this.tunnel.hostScore('http', name!) > this.tunnel.hostScore('https', name!)) mapping = undefined;
    if (mapping !== undefined) void this.passThrough(conn, pending, mapping.name, name!);
    else if (this.terminate !== undefined) void this.toTerminator(conn, pending);
    else this.refuse(conn, name === undefined ? 'no server name (SNI), and no terminating listener' : `no https mapping serves "${name}"`);
  }

  /** @internal The hello is read, or its connection is gone: stop counting it (once). */
  settled(pending: Pending): void {
    if (pending.done) return;
    pending.done = true;
    clearTimeout(pending.timer);
    pending.timer = undefined;
    this.pending--;
    this.pendingBytes -= pending.size;
  }

  /** @internal */
  refuse(conn: Conn, reason: string): void {
    this.logger.info('tunnel tls: connection refused', { client: formatHostPort(conn.remoteAddress, conn.remotePort), reason });
    conn.destroy();
  }

  private async passThrough(conn: Conn, pending: Pending, mapping: string, name: string): Promise<void> {
    let stream: Conn;
    try {
      stream = await this.tunnel.openStream(mapping, { address: conn.remoteAddress, port: conn.remotePort, localAddress: conn.localAddress, localPort: conn.localPort });
    } catch (error) {
      return this.refuse(conn, `https mapping "${mapping}" for "${name}": ${(error as Error).message}`);
    }
    this.splice(conn, pending, stream);
  }

  private async toTerminator(conn: Conn, pending: Pending): Promise<void> {
    let upstream: Conn;
    try {
      upstream = await connect({ host: this.terminate!.host, port: this.terminate!.port, timeoutMs: 5000 });
    } catch (error) {
      return this.refuse(conn, `terminating listener: ${(error as Error).message}`);
    }
    // Named before the ClientHello goes out: the listener serves no request before that.
    if (!conn.closed) this.options.handoffs?.name(upstream, conn.remoteAddress, conn.remotePort);
    this.splice(conn, pending, upstream);
  }

  /** Relay with the ClientHello bytes first. */
  private splice(conn: Conn, pending: Pending, upstream: Conn): void {
    if (conn.closed) {
      upstream.destroy();
      return;
    }
    releaseConn(conn, pending.bytes());
    conn.userData = undefined;
    conn.resume();
    relay(conn, upstream, { idleTimeoutMs: this.options.relayIdleMs ?? DEFAULT_RELAY_IDLE_MS });
  }
}
