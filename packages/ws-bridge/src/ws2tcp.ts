import {
  connect, formatHostPort, releaseConn, HeadBuffer, NetError, parseRequestHead, simpleResponse, toNetError,
  httpStatusFor,
  type Conn, type ConnHandler, type HeaderList, type Logger, type RequestHead, type TlsServerOptions,
} from '@wmproxy/core-net';
import { Bridge, type BridgeStats, type TextPolicy } from './bridge.js';
import { WS_BRIDGE_DEFAULTS } from './defaults.js';
import { WsEndpoint } from './endpoint.js';
import { authorized, challenge, checkUpgrade, isRefusal, switchingProtocols, type AuthOptions, type HandshakeRefusal } from './handshake.js';
import { BridgeListener, type BridgeListenerOptions } from './listener.js';
import { parseHostPort, TokenFile, type HostPort } from './tokens.js';

/** What a target connector is told about the upgrade it serves. */
export interface TargetRequest {
  clientIp: string;
  /** The request path without the query. */
  path: string;
  /** The token (query `token=`, or the path segment below `path`) when one was given. */
  token: string | undefined;
  headers: HeaderList;
}

/**
 * Opens the TCP side for an upgrade: an upstream group's pick-and-connect
 * (so its balancing and health checks apply), a transport, anything that
 * yields a Conn. Rejects with a NetError (answered 502/504, or 404 for a
 * `ENOTFOUND` of an unknown key).
 */
export type TargetConnector = (request: TargetRequest, timeoutMs: number, signal?: AbortSignal) => Promise<Conn>;

export interface Ws2TcpOptions extends BridgeListenerOptions {
  tls?: TlsServerOptions;
  /** Exactly one of `target`, `tokenFile`, `connector`. A fixed `host:port`. */
  target?: string | HostPort;
  /** websockify's token file: `token: host:port` lines; the token comes from `?token=` or the last path segment. */
  tokenFile?: string;
  connector?: TargetConnector;
  /** Upgrades are served at this path (a trailing `/` matches everything below it); default `/`. */
  path?: string;
  /** Origin allow-list (exact `scheme://host[:port]`, or `*`); empty or absent: any Origin. */
  origins?: string[];
  auth?: AuthOptions;
  /** Subprotocols accepted, in order of preference (default `binary`, `base64`). */
  subprotocols?: string[];
  text?: TextPolicy;
  maxMessageSize?: number;
  handshakeTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Called when a bridge ends (tests, metrics). */
  onBridgeClose?(stats: BridgeStats): void;
}

interface Pending {
  server: Ws2TcpServer;
  head: HeadBuffer;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * ws2tcp: accepts WebSocket upgrades and relays each to a TCP target as raw
 * bytes (websockify's job). Handshake problems are answered in HTTP with a
 * status and a log line: 404 (path or token), 403 (Origin), 401 (auth),
 * 400/426 (not a valid upgrade), 502/504 (the target).
 */
export class Ws2TcpServer extends BridgeListener {
  readonly options: Ws2TcpOptions;
  private readonly tokens: TokenFile | undefined;
  private readonly fixed: HostPort | undefined;
  private readonly connector: TargetConnector;
  private readonly path: string;
  private readonly prefix: boolean;
  private readonly subprotocols: string[];
  private readonly origins: Set<string> | undefined;
  private readonly maxMessageSize: number;
  private readonly connectTimeoutMs: number;
  private readonly handshakeTimeoutMs: number;

  constructor(options: Ws2TcpOptions) {
    super(options, options.tls);
    this.options = options;
    const sources = [options.target, options.tokenFile, options.connector].filter((value) => value !== undefined).length;
    if (sources !== 1) throw new Error('ws2tcp needs exactly one of target, tokenFile, connector');
    if (options.target !== undefined) {
      this.fixed = typeof options.target === 'string' ? parseHostPort(options.target) : options.target;
      if (!this.fixed) throw new Error(`ws2tcp target "${String(options.target)}" is not host:port`);
    }
    if (options.tokenFile !== undefined) {
      this.tokens = new TokenFile(options.tokenFile, (error) => this.logger.warn('token file unreadable, keeping the last good table', { file: options.tokenFile, error: error.message }));
    }
    this.connector = options.connector ?? ((request, timeoutMs, signal) => this.connectOwn(request, timeoutMs, signal));
    const path = options.path ?? WS_BRIDGE_DEFAULTS.path;
    if (!path.startsWith('/')) throw new Error(`ws2tcp path "${path}" must start with /`);
    this.path = path;
    this.prefix = path.endsWith('/');
    this.subprotocols = options.subprotocols ?? [...WS_BRIDGE_DEFAULTS.subprotocols];
    const unknown = this.subprotocols.find((name) => name !== 'binary' && name !== 'base64');
    if (unknown !== undefined) throw new Error(`ws2tcp subprotocol "${unknown}" is not binary or base64`);
    this.origins = options.origins && options.origins.length > 0 && !options.origins.includes('*') ? new Set(options.origins.map(normaliseOrigin)) : undefined;
    this.maxMessageSize = options.maxMessageSize ?? WS_BRIDGE_DEFAULTS.maxMessageSize;
    this.connectTimeoutMs = options.connectTimeoutMs ?? WS_BRIDGE_DEFAULTS.connectTimeoutMs;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? WS_BRIDGE_DEFAULTS.handshakeTimeoutMs;
  }

  override async start(): Promise<this> {
    await this.tokens?.load();
    return super.start();
  }

  /**
   * Serve a connection whose upgrade request was read elsewhere (a
   * reverse-proxy `websocket_to_tcp` location; reverse's `ConnTakeover`):
   * the same checks, answers and bridge as a connection of this listener.
   * `unread`: bytes that followed the head.
   */
  takeover(conn: Conn, head: RequestHead, unread: Uint8Array): void {
    releaseConn(conn, unread.byteLength > 0 ? unread : undefined);
    void this.upgrade(conn, head).catch((error: unknown) => {
      this.logger.warn('ws2tcp upgrade failed', { error: (error as Error).message });
      conn.destroy();
    });
  }

  protected accept(conn: Conn): void {
    const pending: Pending = { server: this, head: new HeadBuffer(), timer: setTimeout(onHandshakeTimeout, this.handshakeTimeoutMs, conn) };
    conn.userData = pending;
    conn.setHandler(handshakeHandler);
  }

  /** @internal The request head arrived whole. */
  async upgrade(conn: Conn, head: RequestHead): Promise<void> {
    const refusal = (status: number, why: string, headers?: HeaderList): void => this.refuse(conn, { status, why, headers }, head);
    const request = checkUpgrade(head);
    if (isRefusal(request)) return this.refuse(conn, request, head);
    const query = head.target.indexOf('?');
    const path = query < 0 ? head.target : head.target.slice(0, query);
    if (!path.startsWith('/')) return refusal(400, 'the request target must be a path');
    const below = this.match(path);
    if (below === undefined) return refusal(404, `no WebSocket endpoint at ${path}`);
    if (this.origins && (request.origin === undefined || !this.origins.has(normaliseOrigin(request.origin)))) {
      return refusal(403, `Origin ${request.origin ?? '(none)'} is not allowed`);
    }
    if (this.options.auth && !authorized(head.headers, this.options.auth)) {
      return refusal(401, 'credentials missing or wrong', challenge(this.options.auth));
    }
    let protocol: string | undefined;
    if (request.protocols.length > 0) {
      protocol = this.subprotocols.find((name) => request.protocols.includes(name));
      if (protocol === undefined) return refusal(400, `none of the subprotocols offered (${request.protocols.join(', ')}) is served: ${this.subprotocols.join(', ')}`);
    }
    const token = tokenOf(head.target, query, below);
    const target: TargetRequest = { clientIp: conn.remoteAddress, path, token, headers: head.headers };
    let tcp: Conn;
    try {
      tcp = await this.connector(target, this.connectTimeoutMs);
    } catch (error) {
      const failure = toNetError(error);
      if (conn.closed) return;
      if (failure.code === 'ENOTFOUND' && this.tokens) return refusal(404, failure.message);
      return refusal(httpStatusFor(failure.code) === 504 ? 504 : 502, `target: ${failure.message}`);
    }
    if (conn.closed) {
      tcp.destroy();
      return;
    }
    tcp.setNoDelay(true);
    conn.write(switchingProtocols(request.key, protocol));
    const ws = new WsEndpoint(conn, { role: 'server', maxMessageSize: this.maxMessageSize });
    const bridge = new Bridge(ws, tcp, {
      encoding: protocol === 'base64' ? 'base64' : 'binary',
      text: this.options.text ?? WS_BRIDGE_DEFAULTS.text,
      onClose: (done, stats) => this.bridgeClosed(done, stats),
    });
    this.keepalive.add(bridge);
    this.logger.debug('ws2tcp bridge open', { client: conn.remoteAddress, target: formatHostPort(tcp.remoteAddress, tcp.remotePort), protocol: protocol ?? '' });
    bridge.start();
  }

  private bridgeClosed(bridge: Bridge, stats: BridgeStats): void {
    this.keepalive.delete(bridge);
    const fields = { client: bridge.ws.conn.remoteAddress, toTcp: stats.bytesToTcp, toWs: stats.bytesToWs, wsClose: stats.wsCloseCode, tcp: stats.tcpEnd };
    if (stats.error && stats.error.message) this.logger.info('ws2tcp bridge closed', { ...fields, error: stats.error.message });
    else this.logger.debug('ws2tcp bridge closed', fields);
    this.options.onBridgeClose?.(stats);
  }

  /** The part of `path` below the configured path ('' when equal), or undefined when it does not match. */
  private match(path: string): string | undefined {
    if (path === this.path) return '';
    if (this.prefix) return path.startsWith(this.path) ? path.slice(this.path.length) : undefined;
    return path.startsWith(this.path + '/') ? path.slice(this.path.length + 1) : undefined;
  }

  private async connectOwn(request: TargetRequest, timeoutMs: number, signal?: AbortSignal): Promise<Conn> {
    let target = this.fixed;
    if (this.tokens) {
      if (request.token === undefined) throw new NetError('ENOTFOUND', 'no token in the request (?token= or the path)');
      target = await this.tokens.lookup(request.token);
      if (!target) throw new NetError('ENOTFOUND', `unknown token "${request.token.slice(0, 64)}"`);
    }
    return connect({ host: target!.host, port: target!.port, timeoutMs, signal });
  }

  /** @internal */
  refuse(conn: Conn, refusal: HandshakeRefusal, head: RequestHead | undefined): void {
    this.logger.info('ws2tcp upgrade refused', { client: conn.remoteAddress, status: refusal.status, why: refusal.why, target: head?.target.slice(0, 200) ?? '' });
    if (conn.closed) return;
    conn.setHandler(discardHandler);
    conn.write(simpleResponse(refusal.status, { headers: refusal.headers, body: `${refusal.why}\n` }));
    conn.end();
  }
}

/** `?token=` (websockify), else the first path segment below the endpoint path. */
function tokenOf(target: string, query: number, below: string): string | undefined {
  if (query >= 0) {
    const params = new URLSearchParams(target.slice(query + 1));
    const token = params.get('token');
    if (token !== null && token !== '') return token;
  }
  const segment = below.split('/')[0];
  if (segment === undefined || segment === '') return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function normaliseOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/$/, '');
}

function onHandshakeTimeout(conn: Conn): void {
  const pending = conn.userData as Pending;
  pending.server.logger.info('ws2tcp handshake timeout', { client: conn.remoteAddress });
  conn.destroy(new NetError('ETIMEDOUT', 'no complete upgrade request in time'));
}

const handshakeHandler: ConnHandler = {
  data(conn, chunk) {
    const pending = conn.userData as Pending;
    const view = pending.head.feed(chunk);
    const result = parseRequestHead(view, { maxHeadSize: WS_BRIDGE_DEFAULTS.maxHeadSize });
    if (result.kind === 'incomplete') {
      pending.head.keep(view);
      return;
    }
    clearTimeout(pending.timer);
    pending.head.clear();
    if (result.kind === 'error') {
      pending.server.refuse(conn, { status: result.status, why: 'malformed upgrade request' }, undefined);
      return;
    }
    // Bytes after the head (frames sent before our 101) wait in core-net's buffer, which pauses the socket when full.
    releaseConn(conn, view.subarray(result.consumed).slice());
    void pending.server.upgrade(conn, result.head).catch((error: unknown) => {
      pending.server.logger.warn('ws2tcp upgrade failed', { error: (error as Error).message });
      conn.destroy();
    });
  },
  close(conn) {
    clearTimeout((conn.userData as Pending).timer);
  },
};

const discardHandler: ConnHandler = {
  data() {},
  close() {},
};
