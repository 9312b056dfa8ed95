import { isIP } from 'node:net';
import { bindUdp, formatHostPort, normaliseIp, toNetError } from '@wmproxy/core-net';
import type { Conn, LogFields, Logger, Resolver, UdpEndpoint, UdpPacketHandler } from '@wmproxy/core-net';
import { vetDestination, type DestinationPolicy } from './destination.js';
import { encodeUdpDatagram, readUdpDatagram, type SocksAddress } from './protocol.js';

export interface UdpAssociationOptions {
  /** The TCP connection that carried the request: the association ends with it. */
  control: Conn;
  /** IP the client-facing socket binds (IPv4 or IPv6 literal). */
  bindIp: string;
  /** The client's TCP address: datagrams are accepted from this IP only. */
  clientIp: string;
  /** DST.ADDR/DST.PORT of the request: where the client will send from (port 0: learn it from the first datagram). */
  announced: SocksAddress;
  policy: DestinationPolicy;
  idleTimeoutMs: number;
  logger: Logger;
  logFields: LogFields;
}

/** Names resolved per association, so a stream of datagrams costs one lookup. */
const DNS_CACHE_LIMIT = 64;
/** Targets a client may hear back from; beyond this the oldest are forgotten. */
const CONTACTED_LIMIT = 1024;

/**
 * One UDP ASSOCIATE (RFC 1928 section 7). The client-facing socket takes
 * datagrams only from the client's IP (and, once known, its port), strips the
 * SOCKS header and sends the payload to the target from an outbound socket
 * (one per address family, bound on first use); replies from targets the
 * client has sent to are wrapped in the header and sent back. Fragmented
 * datagrams (FRAG != 0) are dropped. Lives as long as its TCP control
 * connection, or until the idle timeout.
 */
export class UdpAssociation {
  readonly clientSocket: UdpEndpoint;
  private readonly options: UdpAssociationOptions;
  private readonly policy: DestinationPolicy;
  private readonly clientIp: string;
  private clientPort: number;
  private clientSendHost: string;
  private readonly outbound = new Map<4 | 6, Promise<UdpEndpoint>>();
  private readonly contacted = new Set<string>();
  private readonly dnsCache = new Map<string, Promise<string[]>>();
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private lastActivity = Date.now();
  private readonly startedAt = Date.now();
  readonly control: Conn;
  closed = false;
  datagramsUp = 0;
  datagramsDown = 0;
  bytesUp = 0;
  bytesDown = 0;
  dropped = 0;

  static async open(options: UdpAssociationOptions): Promise<UdpAssociation> {
    const socket = await bindUdp(options.bindIp, 0, clientSideHandler);
    return new UdpAssociation(socket, options);
  }

  private constructor(socket: UdpEndpoint, options: UdpAssociationOptions) {
    this.clientSocket = socket;
    socket.userData = this;
    this.options = options;
    this.control = options.control;
    this.clientIp = normaliseIp(options.clientIp);
    const socketFamily = isIP(options.bindIp) === 6 ? 6 : 4;
    // Send back in the family of the socket: a v4 client over a v6 socket is ::ffff:a.b.c.d.
    this.clientSendHost = socketFamily === 6 && isIP(this.clientIp) === 4 ? `::ffff:${this.clientIp}` : this.clientIp;
    this.clientPort = options.announced.port;
    this.policy = { ...options.policy, resolver: this.cachedResolver(options.policy.resolver) };
    if (options.idleTimeoutMs > 0) this.idleTimer = setTimeout(onIdle, options.idleTimeoutMs, this);
  }

  /** A datagram on the client-facing socket. */
  fromClient(data: Uint8Array, fromAddress: string, fromPort: number): void {
    if (this.closed) return;
    if (normaliseIp(fromAddress) !== this.clientIp) return this.drop('foreign source', fromAddress, fromPort);
    if (this.clientPort === 0) {
      this.clientPort = fromPort;
      this.clientSendHost = fromAddress;
    } else if (fromPort !== this.clientPort) return this.drop('foreign port', fromAddress, fromPort);
    const read = readUdpDatagram(data);
    if (read === 'fragmented' || read === 'malformed') return this.drop(read, fromAddress, fromPort);
    this.lastActivity = Date.now();
    void this.forward(read.address, read.data);
  }

  /** A datagram on an outbound socket: a target answering. */
  fromTarget(data: Uint8Array, fromAddress: string, fromPort: number): void {
    if (this.closed) return;
    const source = normaliseIp(fromAddress);
    if (!this.contacted.has(formatHostPort(source, fromPort))) return this.drop('unsolicited', fromAddress, fromPort);
    this.lastActivity = Date.now();
    this.datagramsDown++;
    this.bytesDown += data.byteLength;
    this.clientSocket.send(encodeUdpDatagram(source, fromPort, data), this.clientPort, this.clientSendHost);
  }

  /** Never rejects: a refused or unresolvable target drops the datagram. */
  private async forward(target: SocksAddress, payload: Uint8Array): Promise<void> {
    let ips: string[] | undefined;
    let socket: UdpEndpoint;
    try {
      ips = await vetDestination(this.policy, target.host, target.port, true);
      socket = await this.outboundSocket(isIP(ips![0]!) === 6 ? 6 : 4);
    } catch (error) {
      const netError = toNetError(error);
      this.drop(netError.code === 'EFORBIDDEN' ? 'denied' : 'unreachable', target.host, target.port, netError.message);
      return;
    }
    if (this.closed) return;
    const ip = ips![0]!;
    const key = formatHostPort(ip, target.port);
    if (!this.contacted.has(key)) {
      if (this.contacted.size >= CONTACTED_LIMIT) this.contacted.delete(this.contacted.values().next().value!);
      this.contacted.add(key);
    }
    this.datagramsUp++;
    this.bytesUp += payload.byteLength;
    socket.send(payload, target.port, ip);
  }

  private outboundSocket(family: 4 | 6): Promise<UdpEndpoint> {
    let socket = this.outbound.get(family);
    if (!socket) {
      socket = bindUdp(family === 6 ? '::' : '0.0.0.0', 0, targetSideHandler).then((endpoint) => {
        endpoint.userData = this;
        if (this.closed) endpoint.close();
        return endpoint;
      });
      this.outbound.set(family, socket);
    }
    return socket;
  }

  private cachedResolver(resolver: Resolver): Resolver {
    return (host) => {
      let pending = this.dnsCache.get(host);
      if (!pending) {
        if (this.dnsCache.size >= DNS_CACHE_LIMIT) this.dnsCache.clear();
        pending = resolver(host);
        pending.catch(() => this.dnsCache.delete(host));
        this.dnsCache.set(host, pending);
      }
      return pending;
    };
  }

  private drop(reason: string, address: string, port: number, detail?: string): void {
    this.dropped++;
    this.options.logger.debug('socks5 udp datagram dropped', {
      ...this.options.logFields,
      reason,
      peer: formatHostPort(address, port),
      detail,
    });
  }

  /** @internal */
  checkIdle(): boolean {
    const idleFor = Date.now() - this.lastActivity;
    if (idleFor >= this.options.idleTimeoutMs) return true;
    this.idleTimer = setTimeout(onIdle, this.options.idleTimeoutMs - idleFor, this);
    return false;
  }

  /** Close every socket of the association (its TCP connection closed, or it went idle). */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.clientSocket.close();
    for (const socket of this.outbound.values()) socket.then((endpoint) => endpoint.close(), () => undefined);
    this.options.logger.info('socks5 udp association closed', {
      ...this.options.logFields,
      reason,
      datagramsUp: this.datagramsUp,
      datagramsDown: this.datagramsDown,
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      dropped: this.dropped,
      durationMs: Date.now() - this.startedAt,
    });
  }

  /** @internal */
  logError(error: Error): void {
    this.options.logger.debug('socks5 udp socket error', { ...this.options.logFields, error: error.message });
  }
}

function onIdle(association: UdpAssociation): void {
  if (association.closed) return;
  if (association.checkIdle()) {
    association.close('idle');
    association.control.destroy();
  }
}

const clientSideHandler: UdpPacketHandler = {
  message(endpoint, data, fromAddress, fromPort) {
    (endpoint.userData as UdpAssociation | undefined)?.fromClient(data, fromAddress, fromPort);
  },
  error(endpoint, error) {
    logSocketError(endpoint, error);
  },
};

const targetSideHandler: UdpPacketHandler = {
  message(endpoint, data, fromAddress, fromPort) {
    (endpoint.userData as UdpAssociation | undefined)?.fromTarget(data, fromAddress, fromPort);
  },
  error(endpoint, error) {
    logSocketError(endpoint, error);
  },
};

function logSocketError(endpoint: UdpEndpoint, error: Error): void {
  (endpoint.userData as UdpAssociation | undefined)?.logError(error);
}
