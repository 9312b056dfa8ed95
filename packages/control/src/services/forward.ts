/**
 * A forward-proxy port (HTTP, CONNECT, SOCKS5 on one listener). The instance
 * owns the listening socket; the ForwardProxy behind it is replaced on
 * reload, so the socket stays open, new connections get the new settings
 * and connections already open finish with the old ones.
 */
import { readFileSync } from 'node:fs';
import { Server, formatHostPort, parseAddress, type Conn, type Logger, type TlsServerOptions } from '@wmproxy/core-net';
import { ForwardProxy, type ForwardProxyOptions, type ParentTlsOptions } from '@wmproxy/http-proxy';
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

/** The TLS settings of a port, comparable across reloads (the files' paths). */
function tlsKey(config: ForwardProxyConfig): string {
  return config.tls ? `${config.tls.cert}\n${config.tls.key}\n${config.tls.clientCa ?? ''}` : '';
}

/** The TLS of the listening socket, read from its files. */
export function listenerTls(config: ForwardProxyConfig): TlsServerOptions | undefined {
  const tls = config.tls;
  if (!tls) return undefined;
  const options: TlsServerOptions = { cert: readFileSync(tls.cert, 'utf8'), key: readFileSync(tls.key, 'utf8') };
  if (tls.clientCa) options.clientCa = readFileSync(tls.clientCa, 'utf8');
  return options;
}

function parentTls(config: ForwardProxyConfig): ParentTlsOptions | undefined {
  const tls = config.parentTls;
  if (!tls) return undefined;
  const options: ParentTlsOptions = { verify: tls.verify };
  if (tls.ca) options.ca = readFileSync(tls.ca, 'utf8');
  if (tls.cert) options.cert = readFileSync(tls.cert, 'utf8');
  if (tls.key) options.key = readFileSync(tls.key, 'utf8');
  if (tls.servername) options.servername = tls.servername;
  return options;
}

export function forwardOptions(config: ForwardProxyConfig, logger: Logger): ForwardProxyOptions {
  const hasPolicy = config.allow.length > 0 || config.deny.length > 0;
  return {
    flags: config.protocols,
    ...(config.users ? { users: config.users } : {}),
    ...(hasPolicy ? { clientPolicy: { allow: config.allow.length > 0 ? config.allow : undefined, deny: config.deny } } : {}),
    ...(config.denyDestinations.length > 0 ? { destinationDeny: config.denyDestinations } : {}),
    ...(config.parent ? { upstream: config.parent } : {}),
    ...(config.parentTls ? { upstreamTls: parentTls(config) } : {}),
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
      tls: listenerTls(config),
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
    // TLS belongs to the listening socket, which a reload keeps (no moment without a listener): a change waits for a restart.
    if (tlsKey(config) !== tlsKey(this.config)) {
      throw new Error(`proxy "${config.name}": its TLS settings (tls.cert, tls.key, tls.client_ca) changed; they apply to a listening port only at start: restart to change them (reload refused, nothing changed)`);
    }
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
