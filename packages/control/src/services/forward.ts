/**
 * A forward-proxy port (HTTP, CONNECT, SOCKS5 on one listener). The instance
 * owns the listening socket; the ForwardProxy behind it is replaced on
 * reload, so the socket stays open, new connections get the new settings
 * and connections already open finish with the old ones.
 */
import { Server, formatHostPort, parseAddress, type Conn, type Logger } from '@wmproxy/core-net';
import { ForwardProxy, type ForwardProxyOptions } from '@wmproxy/http-proxy';
import type { ForwardProxyConfig } from '@wmproxy/config';

/** Canonical, order-free key of a listen list: the same key means the same sockets. */
export function listenKey(listen: readonly string[]): string {
  return listen
    .map((text) => {
      const address = parseAddress(text);
      return formatHostPort(address.wildcard ? '*' : address.host.toLowerCase(), address.port);
    })
    .sort()
    .join(',');
}

/** Which service a forward proxy is across reloads: its sockets, or its name when it asks for ephemeral ports. */
export function serviceKey(config: ForwardProxyConfig): string {
  const key = listenKey(config.listen);
  return /:0(,|$)/.test(key) ? `${key}#${config.name}` : key;
}

export function forwardOptions(config: ForwardProxyConfig, logger: Logger): ForwardProxyOptions {
  const hasPolicy = config.allow.length > 0 || config.deny.length > 0;
  return {
    flags: config.protocols,
    ...(config.users ? { users: config.users } : {}),
    ...(hasPolicy ? { clientPolicy: { allow: config.allow.length > 0 ? config.allow : undefined, deny: config.deny } } : {}),
    ...(config.denyDestinations.length > 0 ? { destinationDeny: config.denyDestinations } : {}),
    ...(config.parent ? { upstream: config.parent } : {}),
    connectTimeoutMs: config.connectTimeoutMs,
    headerTimeoutMs: config.headerTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    http: {
      realm: config.realm,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      maxHeadSize: config.maxHeadSize,
      via: config.via,
      ...(config.connectPorts ? { connectPorts: config.connectPorts } : {}),
    },
    socks5: { udp: config.udp, ...(config.udpBind ? { udpBind: config.udpBind } : {}) },
    logger,
  };
}

function connectionLimits(config: ForwardProxyConfig): { maxConnections: number; maxConnectionsPerIp: number } {
  return { maxConnections: config.maxConnections, maxConnectionsPerIp: config.maxConnectionsPerIp };
}

export class ForwardService {
  readonly kind = 'forward';
  readonly key: string;
  config: ForwardProxyConfig;
  private proxy: ForwardProxy;
  private readonly server: Server;
  /** Connections accepted since start. */
  accepted = 0;

  /** `logger`: this service's logger (`service` field and level set by the instance). */
  constructor(config: ForwardProxyConfig, logger: Logger) {
    this.key = serviceKey(config);
    this.config = config;
    const child = logger;
    this.proxy = new ForwardProxy(forwardOptions(config, child));
    this.server = new Server({
      addresses: config.listen.map((text) => parseAddress(text)),
      logger: child,
      limits: connectionLimits(config),
      onConnection: (conn: Conn) => {
        this.accepted++;
        this.proxy.handle(conn);
      },
    });
  }

  get name(): string {
    return this.config.name;
  }

  async start(): Promise<this> {
    await this.server.start();
    return this;
  }

  /** Build the proxy for new settings (throws on bad options, changing nothing). */
  prepare(config: ForwardProxyConfig, logger: Logger): ForwardProxy {
    return new ForwardProxy(forwardOptions(config, logger));
  }

  /** New settings for new connections; the listening socket is untouched. */
  commit(proxy: ForwardProxy, config: ForwardProxyConfig): void {
    this.proxy = proxy;
    this.config = config;
    this.server.setLimits(connectionLimits(config));
  }

  get addresses(): string[] {
    return this.server.boundAddresses;
  }

  get openConnections(): number {
    return this.server.connectionCount;
  }

  async stop(deadlineMs: number): Promise<void> {
    await this.server.shutdown({ deadlineMs });
  }
}
