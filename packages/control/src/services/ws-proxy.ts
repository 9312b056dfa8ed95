/**
 * The WebSocket ↔ TCP bridges of a configuration: every `[[ws_proxy]]` with
 * its own listener, and the ws2tcp endpoints behind `websocket_to_tcp`
 * locations of reverse-proxy servers. A bridge whose target is an upstream
 * group connects through the reverse proxy's pick-and-connect (balancing,
 * health checks, passive checks), asked at each connection: a reload of the
 * groups applies to the next connection.
 */
import { readFile } from 'node:fs/promises';
import { NetError, type Conn, type Logger } from '@wmproxy/core-net';
import { Tcp2WsServer, Ws2TcpServer, type Tcp2WsOptions, type Ws2TcpOptions } from '@wmproxy/ws-bridge';
import type { Ws2TcpConfig, WsProxyConfig } from '@wmproxy/config';

/** Opens a connection to a server of an upstream group (the reverse proxy's `connectUpstream`). */
export type UpstreamConnect = (upstream: string, clientIp: string, signal?: AbortSignal) => Promise<Conn>;

/** The ws2tcp options of a `[[ws_proxy]]` or a location, without listener settings. */
export function ws2tcpOptions(config: Ws2TcpConfig, connect: UpstreamConnect): Ws2TcpOptions {
  const upstream = config.upstream;
  return {
    ...(config.target !== undefined ? { target: config.target } : {}),
    ...(config.tokenFile !== undefined ? { tokenFile: config.tokenFile } : {}),
    ...(upstream !== undefined ? { connector: (request, _timeoutMs, signal) => connect(upstream, request.clientIp, signal) } : {}),
    origins: config.origins,
    ...(config.auth ? { auth: config.auth } : {}),
    subprotocols: config.subprotocols,
    text: config.text,
    pingIntervalMs: config.pingIntervalMs,
    pongTimeoutMs: config.pongTimeoutMs,
    maxMessageSize: config.maxMessageSize,
    connectTimeoutMs: config.connectTimeoutMs,
  };
}

type Bridge = Ws2TcpServer | Tcp2WsServer;

async function bridgeFor(config: WsProxyConfig, connect: UpstreamConnect, logger: Logger): Promise<Bridge> {
  const common = {
    listen: config.listen.join(','),
    pingIntervalMs: config.pingIntervalMs,
    pongTimeoutMs: config.pongTimeoutMs,
    maxMessageSize: config.maxMessageSize,
    connectTimeoutMs: config.connectTimeoutMs,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
    maxConnections: config.maxConnections,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    logger,
  };
  if (config.ws2tcp) {
    const ws = config.ws2tcp;
    const tls = ws.tls ? { cert: await readFile(ws.tls.cert, 'utf8'), key: await readFile(ws.tls.key, 'utf8') } : undefined;
    return new Ws2TcpServer({ ...common, ...ws2tcpOptions(ws, connect), path: ws.path, ...(tls ? { tls } : {}) });
  }
  const dial = config.tcp2ws!;
  const options: Tcp2WsOptions = {
    ...common,
    url: dial.url,
    insecure: dial.insecure,
    subprotocols: dial.subprotocols,
    headers: dial.headers,
    ...(dial.host !== undefined ? { host: dial.host } : {}),
    ...(dial.servername !== undefined ? { servername: dial.servername } : {}),
    ...(dial.origin !== undefined ? { origin: dial.origin } : {}),
    ...(dial.ca !== undefined ? { ca: await readFile(dial.ca, 'utf8') } : {}),
  };
  return new Tcp2WsServer(options);
}

interface Running {
  config: WsProxyConfig;
  /** The settings it runs with; a reload that changes them restarts it. */
  signature: string;
  bridge: Bridge;
}

/** Every `[[ws_proxy]]` of the configuration, started, reloaded and stopped together. */
export class WsProxyService {
  private readonly running = new Map<string, Running>();

  constructor(
    private readonly connect: UpstreamConnect,
    private readonly loggerFor: (name: string) => Logger,
  ) {}

  /**
   * Bring the running bridges to `next`: unchanged ones keep their sockets and
   * bridges; changed and removed ones drain (up to `deadlineMs`) before a
   * changed one starts again on its port. Returns the changes made.
   */
  async apply(next: WsProxyConfig[], deadlineMs: number): Promise<string[]> {
    const changes: string[] = [];
    const wanted = new Map(next.map((config) => [config.name, config]));
    for (const [name, running] of [...this.running]) {
      const config = wanted.get(name);
      if (config && signatureOf(config) === running.signature) continue;
      this.running.delete(name);
      await running.bridge.shutdown({ deadlineMs });
      if (!config) changes.push(`ws_proxy "${name}" stopped`);
    }
    for (const config of next) {
      if (this.running.has(config.name)) continue;
      const bridge = await bridgeFor(config, this.connect, this.loggerFor(config.name));
      await bridge.start();
      this.running.set(config.name, { config, signature: signatureOf(config), bridge });
      changes.push(`ws_proxy "${config.name}" (${config.mode}) on ${bridge.boundAddresses.join(', ')}`);
    }
    return changes;
  }

  status(): Array<{ kind: 'ws-proxy'; name: string; listen: string[]; addresses: string[]; mode: string; bridges: number }> {
    return [...this.running.values()].map(({ config, bridge }) => ({ kind: 'ws-proxy', name: config.name, listen: config.listen, addresses: bridge.boundAddresses, mode: config.mode, bridges: bridge.bridgeCount }));
  }

  async stop(deadlineMs: number): Promise<void> {
    const all = [...this.running.values()];
    this.running.clear();
    await Promise.all(all.map(({ bridge }) => bridge.shutdown({ deadlineMs })));
  }
}

function signatureOf(config: WsProxyConfig): string {
  return JSON.stringify(config);
}

/**
 * The ws2tcp endpoints of `websocket_to_tcp` locations (listener-less
 * Ws2TcpServers the reverse proxy hands connections to). An endpoint whose
 * settings stay across a reload is kept with its bridges; after a reload,
 * `sweep` drains the ones no location uses any more.
 */
export class WsLocationEndpoints {
  private live = new Map<string, Ws2TcpServer>();
  private used = new Set<string>();

  constructor(
    private readonly connect: UpstreamConnect,
    private readonly logger: Logger,
  ) {}

  /** A configuration is being built: what it uses is recorded from here. */
  begin(): void {
    this.used = new Set();
  }

  /** The endpoint of a location (`path`: its prefix, so that a token may be the segment below it). */
  endpoint(config: Ws2TcpConfig, path: string): Ws2TcpServer {
    const key = JSON.stringify([config, path]);
    this.used.add(key);
    let endpoint = this.live.get(key);
    if (!endpoint) {
      endpoint = new Ws2TcpServer({ ...ws2tcpOptions(config, this.connect), listen: [], path, logger: this.logger });
      // Loads the token file (the endpoint has no listener to start).
      void endpoint.start().catch((error: unknown) => this.logger.warn('websocket_to_tcp token file unreadable', { error: (error as Error).message }));
      this.live.set(key, endpoint);
    }
    return endpoint;
  }

  /** After the reverse proxy took a new configuration: drain the endpoints it no longer uses. */
  sweep(deadlineMs: number): void {
    for (const [key, endpoint] of [...this.live]) {
      if (this.used.has(key)) continue;
      this.live.delete(key);
      void endpoint.shutdown({ deadlineMs });
    }
  }

  async stop(deadlineMs: number): Promise<void> {
    const all = [...this.live.values()];
    this.live.clear();
    await Promise.all(all.map((endpoint) => endpoint.shutdown({ deadlineMs })));
  }
}

/** For a bridge whose upstream target needs a reverse proxy that is not running. */
export function noUpstreams(upstream: string): Promise<Conn> {
  return Promise.reject(new NetError('ECONNREFUSED', `upstream "${upstream}" is not running in this process`));
}
