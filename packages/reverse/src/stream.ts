import { bindUdp, parseAddressList, relay, Server, toNetError, type Conn, type UdpEndpoint, type UdpPacketHandler } from '@wmproxy/core-net';
import { connectHedged } from './engine/connector.js';
import type { ProxyCore } from './engine/context.js';
import type { SelectContext } from './policies/index.js';
import type { Upstream, UpstreamServer } from './upstream.js';

/** A TCP or UDP listener balanced over an upstream group (nginx `stream {}`, HAProxy `mode tcp`). */
export interface StreamSpec {
  protocol: 'tcp' | 'udp';
  listen: string | string[];
  upstream: string;
  /** TCP: most servers tried when connects fail (default 3). */
  tries?: number;
  /** TCP: close after this long without traffic (default 600 000); UDP: forget a client's session after this long (default 60 000). */
  idleTimeoutMs?: number;
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
 * reported to passive health), then bytes are relayed both ways.
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
  private udpSweeper: ReturnType<typeof setInterval> | undefined;

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
      this.server = new Server({ addresses, logger: this.core.logger, onConnection: (conn) => void this.acceptTcp(conn) });
      await this.server.start();
      return;
    }
    const handler: UdpPacketHandler = {
      message: (endpoint, data, address, port) => this.onClientDatagram(endpoint, data, address, port),
      error: (_endpoint, error) => this.core.logger.warn('udp listener error', { error: error.message }),
    };
    for (const address of addresses) this.udpListeners.push(await bindUdp(address.wildcard ? '::' : address.host, address.port, handler));
    const idle = this.spec.idleTimeoutMs ?? 60_000;
    this.udpSweeper = setInterval(() => this.expireUdp(Date.now() - idle), Math.max(50, Math.min(idle / 2, 5_000)));
  }

  private async acceptTcp(client: Conn): Promise<void> {
    const ctx = new StreamContext(client.remoteAddress);
    const tries = this.spec.tries ?? 3;
    const tried = new Set<UpstreamServer>();
    for (let attempt = 0; attempt < tries && !client.closed; attempt++) {
      const primary = this.upstream.pick(ctx, tried);
      if (!primary) break;
      primary.active++;
      try {
        const outcome = await connectHedged({
          primary,
          connector: this.core.connector,
          timeoutMs: this.core.timeouts.connectMs,
          hedgeDelayMs: this.core.hedgeDelayMs,
          pickSecond: () => this.upstream.pick(ctx, new Set([...tried, primary])),
          adopt: (_server, conn) => conn.destroy(),
          onFailure: (server, error) => {
            tried.add(server);
            this.core.reportFailure(this.upstream, server, error.code === 'ETIMEDOUT' ? 'timeout' : 'connect', error.message);
          },
        });
        const server = outcome.server;
        if (server !== primary) {
          primary.active--;
          server.active++;
        }
        server.requests++;
        if (client.closed) {
          outcome.conn.destroy();
          server.active--;
          return;
        }
        this.core.reportSuccess(this.upstream, server, 0);
        const tunnel = { abort: (error?: Error) => outcome.conn.destroy(error) };
        server.tunnels.add(tunnel);
        const stats = await relay(client, outcome.conn, { idleTimeoutMs: this.spec.idleTimeoutMs ?? 600_000 });
        server.tunnels.delete(tunnel);
        server.active--;
        this.core.logger.debug('tcp stream closed', { client: client.remoteAddress, upstream: server.address, up: stats.bytesUp, down: stats.bytesDown, reason: stats.reason });
        return;
      } catch (error) {
        primary.active--;
        tried.add(primary);
        this.core.logger.warn('tcp stream connect failed', { upstream: primary.address, error: toNetError(error).code });
      }
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
    for (const session of [...this.udpSessions.values()]) if (session.lastActivity < before) this.dropUdp(session);
  }

  get udpSessionCount(): number {
    return this.udpSessions.size;
  }

  async close(): Promise<void> {
    if (this.udpSweeper) clearInterval(this.udpSweeper);
    for (const session of [...this.udpSessions.values()]) this.dropUdp(session);
    for (const endpoint of this.udpListeners.splice(0)) endpoint.close();
    if (this.server) await this.server.shutdown({ deadlineMs: 1_000 });
  }
}
