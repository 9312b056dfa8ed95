import { parseAddressList, Server, silentLogger, type Address, type Conn, type Logger, type TlsServerOptions } from '@wmproxy/core-net';
import { WS_BRIDGE_DEFAULTS } from './defaults.js';
import { Keepalive } from './keepalive.js';

/** What ws2tcp and tcp2ws listeners share. */
export interface BridgeListenerOptions {
  /**
   * Addresses to listen on (`ip:port`, comma-separated), default 127.0.0.1:8080.
   * `[]`: no listener of its own; connections come from elsewhere (ws2tcp's
   * `takeover`, from a reverse-proxy location).
   */
  listen?: string | Address[];
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  closeTimeoutMs?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  logger?: Logger;
}

/** A listener whose connections become bridges: the Server, the keepalive of its bridges, and shutdown. */
export abstract class BridgeListener {
  readonly logger: Logger;
  protected readonly server: Server | undefined;
  protected readonly keepalive: Keepalive;

  constructor(options: BridgeListenerOptions, tls?: TlsServerOptions) {
    this.logger = options.logger ?? silentLogger;
    this.keepalive = new Keepalive({
      pingIntervalMs: options.pingIntervalMs ?? WS_BRIDGE_DEFAULTS.pingIntervalMs,
      pongTimeoutMs: options.pongTimeoutMs ?? WS_BRIDGE_DEFAULTS.pongTimeoutMs,
      closeTimeoutMs: options.closeTimeoutMs ?? WS_BRIDGE_DEFAULTS.closeTimeoutMs,
    });
    const listen = options.listen ?? WS_BRIDGE_DEFAULTS.listen;
    const addresses = typeof listen === 'string' ? parseAddressList(listen) : listen;
    this.server = addresses.length === 0 ? undefined : new Server({
      addresses,
      tls,
      logger: this.logger,
      limits: { maxConnections: options.maxConnections, maxConnectionsPerIp: options.maxConnectionsPerIp },
      onConnection: (conn) => this.accept(conn),
    });
  }

  protected abstract accept(conn: Conn): void;

  async start(): Promise<this> {
    await this.server?.start();
    return this;
  }

  get boundAddresses(): string[] {
    return this.server?.boundAddresses ?? [];
  }
  get connectionCount(): number {
    return this.server?.connectionCount ?? this.keepalive.size;
  }
  /** Bridges open now. */
  get bridgeCount(): number {
    return this.keepalive.size;
  }

  /** Stop accepting, send 1001 to every WebSocket peer, wait for connections up to the deadline. */
  async shutdown(options: { deadlineMs?: number } = {}): Promise<{ forced: number }> {
    this.server?.stopAccepting();
    for (const bridge of this.keepalive.all()) bridge.abort();
    const result = (await this.server?.shutdown(options)) ?? { forced: 0 };
    this.keepalive.close();
    return result;
  }
}
