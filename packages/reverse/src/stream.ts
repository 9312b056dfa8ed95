import {
  bindUdp, NetError, parseAddressList, Relay, releaseConn, Server, toNetError,
  type Conn, type ConnHandler, type RelayStats, type UdpEndpoint, type UdpPacketHandler,
} from '@wmproxy/core-net';
import { connectHedged } from './engine/connector.js';
import type { ProxyCore } from './engine/context.js';
import type { SelectContext } from './policies/index.js';
import type { Upstream, UpstreamServer } from './upstream.js';
import { REVERSE_DEFAULTS } from './defaults.js';

/** A TCP or UDP listener balanced over an upstream group (nginx `stream {}`, HAProxy `mode tcp`). */
export interface StreamSpec {
  protocol: 'tcp' | 'udp';
  listen: string | string[];
  upstream: string;
  /** TCP: most servers tried when connects fail (default 3). */
  tries?: number;
  /** TCP: close after this long without traffic (default 600 000); UDP: forget a client's session after this long (default 60 000). */
  idleTimeoutMs?: number;
  /** TCP: most client connections open at once on this listener (default 0: only the process limit; nginx stream `worker_connections`, HAProxy `maxconn`); over it a connection is closed at once. */
  maxConnections?: number;
  /** TCP: most client connections open at once from one IP address (default 0: no limit; nginx stream `limit_conn`). */
  maxConnectionsPerIp?: number;
}

class StreamContext implements SelectContext {
  constructor(readonly clientIp: string) {}
  get uri(): string {
    return '';
  }
  header(): string | undefined {
    return undefined;
  }
}

interface UdpSession {
  key: string;
  clientAddress: string;
  clientPort: number;
  server: UpstreamServer;
  /** The session's own socket towards the server (undefined while it is being bound). */
  socket: UdpEndpoint | undefined;
  /** Datagrams that arrived before the socket was bound. */
  queue: Uint8Array[];
  lastActivity: number;
}

/**
 * TCP: each connection goes to a server chosen by the group's policy among
 * the available ones; a failed connect moves on to the next server (and is
 * reported to passive health), then bytes are relayed both ways. A server
 * that accepts and then closes before either side sent a byte counts as a
 * failed connect too: nothing was exchanged, so the next server is tried.
 * (Docker's userland proxy and kube-proxy in userspace mode answer a refusal
 * that way, and so do servers at their connection limit.)
 * UDP: each client address gets a session with its own upstream socket, so
 * replies find their way back; sessions idle for `idleTimeoutMs` are closed.
 */
export class StreamProxy {
  readonly spec: StreamSpec;
  readonly upstream: Upstream;
  private readonly core: ProxyCore;
  private server: Server | undefined;
  private readonly udpListeners: UdpEndpoint[] = [];
  private readonly udpSessions = new Map<string, UdpSession>();
  /** Expires idle UDP sessions on the proxy's ticker (set while UDP listeners run). */
  private udpSweep: ((now: number) => void) | undefined;

  constructor(spec: StreamSpec, upstream: Upstream, core: ProxyCore) {
    this.spec = spec;
    this.upstream = upstream;
    this.core = core;
  }

  get addresses(): string[] {
    if (this.server) return this.server.boundAddresses;
    return this.udpListeners.map((endpoint) => (endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`));
  }

  async start(): Promise<void> {
    const addresses = parseAddressList(Array.isArray(this.spec.listen) ? this.spec.listen.join(',') : this.spec.listen);
    if (this.spec.protocol === 'tcp') {
      this.server = new Server({
        addresses,
        logger: this.core.logger,
        limits: { maxConnections: this.spec.maxConnections, maxConnectionsPerIp: this.spec.maxConnectionsPerIp },
        onConnection: (conn) => void this.acceptTcp(conn),
      });
      await this.server.start();
      return;
    }
    const handler: UdpPacketHandler = {
      message: (endpoint, data, address, port) => this.onClientDatagram(endpoint, data, address, port),
      error: (_endpoint, error) => this.core.logger.warn('udp listener error', { error: error.message }),
    };
    for (const address of addresses) this.udpListeners.push(await bindUdp(address.wildcard ? '::' : address.host, address.port, handler));
    const idle = this.spec.idleTimeoutMs ?? REVERSE_DEFAULTS.stream.udpIdleTimeoutMs;
    // Sessions are swept every half idle time (50 ms to 5 s), on the proxy's ticks.
    const every = Math.max(50, Math.min(idle / 2, 5_000));
    let next = 0;
    this.udpSweep = (now) => {
      if (now < next) return;
      next = now + every;
      this.expireUdp(now - idle);
    };
    this.core.ticker.add(this.udpSweep);
  }

  private async acceptTcp(client: Conn): Promise<void> {
    const ctx = new StreamContext(client.remoteAddress);
    const tries = this.spec.tries ?? REVERSE_DEFAULTS.stream.tries;
    const tried = new Set<UpstreamServer>();
    for (let attempt = 0; attempt < tries && !client.closed; attempt++) {
      let picked: Picked | undefined;
      try {
        picked = await pickAndConnect(this.core, this.upstream, ctx, tried);
      } catch (error) {
        this.core.logger.warn('tcp stream connect failed', { upstream: (error as PickError).server?.address ?? '', error: toNetError(error).code });
        continue;
      }
      if (!picked) break;
      const { server, conn } = picked;
      server.requests++;
      if (client.closed) {
        conn.destroy();
        server.active--;
        return;
      }
      const tunnel = { abort: (error?: Error) => conn.destroy(error) };
      server.tunnels.add(tunnel);
      const exchange = await firstExchange(client, conn, this.spec.idleTimeoutMs ?? REVERSE_DEFAULTS.stream.tcpIdleTimeoutMs);
      server.tunnels.delete(tunnel);
      server.active--;
      if (exchange.kind === 'empty') {
        tried.add(server);
        this.core.reportFailure(this.upstream, server, 'connect', exchange.reason);
        this.core.logger.warn('tcp stream upstream closed before any byte', { upstream: server.address, reason: exchange.reason });
        continue;
      }
      this.core.reportSuccess(this.upstream, server, 0);
      if (exchange.kind === 'relayed') {
        const { stats } = exchange;
        this.core.logger.debug('tcp stream closed', { client: client.remoteAddress, upstream: server.address, up: stats.bytesUp, down: stats.bytesDown, reason: stats.reason });
      }
      return;
    }
    client.destroy();
  }

  private onClientDatagram(listener: UdpEndpoint, data: Uint8Array, address: string, port: number): void {
    const key = `${address}|${port}`;
    let session = this.udpSessions.get(key);
    if (!session) {
      const server = this.upstream.pick(new StreamContext(address));
      if (!server) return;
      const pending: UdpSession = { key, clientAddress: address, clientPort: port, server, socket: undefined, queue: [data.slice()], lastActivity: Date.now() };
      this.udpSessions.set(key, pending);
      server.active++;
      const family = server.host.includes(':') ? '::' : '0.0.0.0';
      bindUdp(family, 0, {
        message: (_endpoint, reply) => {
          pending.lastActivity = Date.now();
          listener.send(reply, pending.clientPort, pending.clientAddress);
        },
      }).then(
        (socket) => {
          pending.socket = socket;
          if (!this.udpSessions.has(key)) {
            socket.close();
            return;
          }
          for (const datagram of pending.queue) socket.send(datagram, server.port, server.host);
          pending.queue.length = 0;
        },
        (error: unknown) => {
          this.core.logger.warn('udp upstream socket failed', { error: (error as Error).message });
          this.dropUdp(pending);
        },
      );
      return;
    }
    session.lastActivity = Date.now();
    if (session.socket) session.socket.send(data, session.server.port, session.server.host);
    else session.queue.push(data.slice());
  }

  private dropUdp(session: UdpSession): void {
    if (this.udpSessions.get(session.key) !== session) return;
    this.udpSessions.delete(session.key);
    session.server.active--;
    session.socket?.close();
  }

  private expireUdp(before: number): void {
    // Deleting the entry being visited is safe in a Map iteration.
    for (const session of this.udpSessions.values()) if (session.lastActivity < before) this.dropUdp(session);
  }

  get udpSessionCount(): number {
    return this.udpSessions.size;
  }

  async close(): Promise<void> {
    if (this.udpSweep) this.core.ticker.delete(this.udpSweep);
    for (const session of [...this.udpSessions.values()]) this.dropUdp(session);
    for (const endpoint of this.udpListeners.splice(0)) endpoint.close();
    if (this.server) await this.server.shutdown({ deadlineMs: 1_000 });
  }
}

/** A server of the group and a connection to it; the server's `active` counts it until the caller releases it. */
interface Picked {
  server: UpstreamServer;
  conn: Conn;
}

/** A failed connect, naming the server it was to. */
type PickError = Error & { server?: UpstreamServer };

/**
 * One pick and (hedged) connect: the group's policy chooses among its
 * available servers not in `tried`; a failed connect is reported to passive
 * health, its server added to `tried`, and the error thrown (with `server`).
 * Undefined when no server is left. On success the server's `active` counts
 * the connection: the caller decrements it when done.
 */
async function pickAndConnect(core: ProxyCore, upstream: Upstream, ctx: SelectContext, tried: Set<UpstreamServer>, signal?: AbortSignal): Promise<Picked | undefined> {
  const primary = upstream.pick(ctx, tried);
  if (!primary) return undefined;
  primary.active++;
  try {
    const outcome = await connectHedged({
      primary,
      upstream,
      connector: core.connector,
      ticker: core.ticker,
      timeoutMs: core.timeouts.connectMs,
      hedgeDelayMs: core.hedgeDelayMs,
      pickSecond: () => upstream.pick(ctx, new Set([...tried, primary])),
      adopt: (_server, conn) => conn.destroy(),
      onFailure: (server, error) => {
        tried.add(server);
        if (error.code !== 'ELOCAL') core.reportFailure(upstream, server, error.code === 'ETIMEDOUT' ? 'timeout' : 'connect', error.message);
      },
      signal,
    });
    if (outcome.server !== primary) {
      primary.active--;
      outcome.server.active++;
    }
    return { server: outcome.server, conn: outcome.conn };
  } catch (error) {
    primary.active--;
    tried.add(primary);
    (error as PickError).server = primary;
    throw error;
  }
}

/**
 * Pick-and-connect for whoever needs a byte stream to an upstream group
 * (a WebSocket-to-TCP bridge): up to `tries` servers chosen by the group's
 * policy among the healthy ones, failed connects reported to passive health,
 * the connected server reported healthy. The Conn counts as one of the
 * server's active connections until it closes (its `tracker`), and is cut
 * when the server is marked down under `shutdown_sessions_on_down`. Rejects
 * with the last NetError, or ECONNREFUSED when no server is available.
 */
export async function connectUpstream(core: ProxyCore, upstream: Upstream, clientIp: string, tries: number, signal?: AbortSignal): Promise<Conn> {
  const ctx = new StreamContext(clientIp);
  const tried = new Set<UpstreamServer>();
  let last: unknown;
  for (let attempt = 0; attempt < tries && !signal?.aborted; attempt++) {
    let picked: Picked | undefined;
    try {
      picked = await pickAndConnect(core, upstream, ctx, tried, signal);
    } catch (error) {
      last = error;
      continue;
    }
    if (!picked) break;
    const { server, conn } = picked;
    server.requests++;
    core.reportSuccess(upstream, server, 0);
    const tunnel = { abort: (error?: Error) => conn.destroy(error) };
    server.tunnels.add(tunnel);
    conn.tracker = {
      untrack() {
        server.active--;
        server.tunnels.delete(tunnel);
      },
    };
    return conn;
  }
  if (last !== undefined) throw toNetError(last);
  throw new NetError('ECONNREFUSED', `no available server in upstream "${upstream.name}"`);
}

/** How a connection ended: relayed, refused in effect (`empty`), or closed before the first byte by the client or the idle timeout. */
type Exchange = { kind: 'relayed'; stats: RelayStats } | { kind: 'empty'; reason: string } | { kind: 'closed' };

interface Gate {
  client: Conn;
  upstream: Conn;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  idleTimeoutMs: number;
  done(exchange: Exchange): void;
}

/**
 * Hold both connections until the first byte either way, then relay. An
 * upstream that ends or fails before that exchanged nothing: the caller may
 * try another server for the same client. The first chunk is written by the
 * gate, the rest by the relay; ordering holds because the relay's handlers
 * replace the gate's within the same callback.
 */
function firstExchange(client: Conn, upstream: Conn, idleTimeoutMs: number): Promise<Exchange> {
  return new Promise((resolve) => {
    const gate: Gate = { client, upstream, idleTimer: undefined, idleTimeoutMs, done: resolve };
    if (idleTimeoutMs > 0) gate.idleTimer = setTimeout(gateIdle, idleTimeoutMs, gate);
    client.userData = gate;
    upstream.userData = gate;
    upstream.setHandler(gateHandler);
    client.setHandler(gateHandler);
  });
}

function startRelay(gate: Gate): void {
  clearTimeout(gate.idleTimer);
  new Relay(gate.client, gate.upstream, { idleTimeoutMs: gate.idleTimeoutMs, onClose: (stats) => gate.done({ kind: 'relayed', stats }) });
}

/** The upstream is gone with nothing exchanged: the client waits (buffered) for the next server. */
function emptied(gate: Gate, reason: string): void {
  if (gate.client.userData !== gate) return; // already settled
  clearTimeout(gate.idleTimer);
  gate.client.userData = undefined;
  releaseConn(gate.client);
  gate.upstream.destroy();
  gate.done({ kind: 'empty', reason });
}

/** Settled without an exchange: whatever the upstream does next is not a failure. */
function closed(gate: Gate): void {
  if (gate.client.userData !== gate) return;
  clearTimeout(gate.idleTimer);
  gate.client.userData = undefined;
  gate.done({ kind: 'closed' });
  gate.upstream.destroy();
}

function gateIdle(gate: Gate): void {
  closed(gate);
  gate.client.destroy();
}

// A settled gate leaves `userData` unset on the client: late events are ignored.
const gateHandler: ConnHandler = {
  data(conn, chunk) {
    const gate = conn.userData as Gate | undefined;
    if (!gate) return;
    (conn === gate.client ? gate.upstream : gate.client).write(chunk);
    startRelay(gate);
  },
  end(conn) {
    const gate = conn.userData as Gate | undefined;
    if (!gate) return;
    if (conn === gate.upstream) {
      // Closed without a byte either way: as good as refused.
      emptied(gate, 'closed before any byte');
      return;
    }
    // The client half-closed without sending: pass it on, the reply may still come.
    gate.upstream.end();
    startRelay(gate);
  },
  close(conn, error) {
    const gate = conn.userData as Gate | undefined;
    if (!gate) return;
    if (conn === gate.upstream) {
      emptied(gate, error ? `${toNetError(error).code} before any byte` : 'closed before any byte');
      return;
    }
    closed(gate);
  },
};
