import { Socks5Server } from '@wmproxy/socks5';
import {
  AccessPolicy,
  CidrList,
  Server,
  releaseConn,
  parseAddressList,
  simpleResponse,
  type Address,
  type Conn,
  type ConnHandler,
  type Logger,
  type TlsServerOptions,
} from '@wmproxy/core-net';
import { resolveConfig, DEFAULT_HEADER_TIMEOUT_MS, type HttpProxyOptions } from './options.js';
import { HttpProxyServer } from './server.js';
import { refuse } from './session.js';
import type { Connector, ParentTlsOptions } from './upstream.js';
import { HTTP_PROXY_DEFAULTS } from './defaults.js';

/** What a mixed port serves: plain HTTP proxying, CONNECT (HTTPS) tunnels, SOCKS5. */
export type ForwardFlag = 'http' | 'https' | 'socks5';

/** Options for SOCKS5 on the mixed port (see `@wmproxy/socks5`); users, policies, logger and upstream are shared. */
export interface ForwardSocks5Options {
  /** Serve UDP ASSOCIATE [true]. */
  udp?: boolean;
  /** IP to bind UDP relay sockets on [the IP the client connected to]. */
  udpBind?: string;
  /** Close a client that has not finished the SOCKS5 handshake in this time [10 000 ms]. */
  handshakeTimeoutMs?: number;
}

/** Options of the mixed port (`wmproxy proxy`). */
export interface ForwardProxyOptions {
  /** Protocols served on the port [all three]. A disabled HTTP kind is answered 405; a disabled SOCKS5 is closed. */
  flags?: readonly ForwardFlag[];
  /** Users for both HTTP Basic auth and SOCKS5 username/password (RFC 1929) [none: open]. */
  users?: Record<string, string>;
  /** Client allow/deny by source IP, checked before the first byte is read [everyone]. */
  clientPolicy?: AccessPolicy | { allow?: readonly string[]; deny?: readonly string[] };
  /** Destinations refused (403 / SOCKS 0x02), checked on resolved IPs [none]. */
  destinationDeny?: CidrList | readonly string[];
  /** Parent proxy for every kind: `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port`, over TLS `https://` or `socks5+tls://` [direct]. */
  upstream?: string;
  /** How a TLS parent is verified and which client certificate it is shown [system CAs, none]. */
  upstreamTls?: ParentTlsOptions;
  /** Give up on a target after this long (504 / SOCKS 0x06) [10 000 ms]. */
  connectTimeoutMs?: number;
  /** Close a client that sends nothing (no first byte, or no complete head) in this time [30 000 ms]. */
  headerTimeoutMs?: number;
  /** Close a tunnel with no traffic for this long [300 000 ms; 0 = never]. */
  idleTimeoutMs?: number;
  /** Further HTTP-only options (limits, Via, CONNECT ports, keep-alive timeout...). */
  http?: Omit<HttpProxyOptions, 'users' | 'clientPolicy' | 'destinationDeny' | 'upstream' | 'upstreamTls' | 'logger' | 'allowHttp' | 'allowConnect'>;
  /** Further SOCKS5-only options. */
  socks5?: ForwardSocks5Options;
  /** Opens target connections for both HTTP and SOCKS5 [direct, or through `upstream`]. */
  connector?: Connector;
  logger?: Logger;
}

/** Per-connection state while waiting for the first byte. */
interface Sniff {
  proxy: ForwardProxy;
  timer: ReturnType<typeof setTimeout>;
}

const sniffHandler: ConnHandler = {
  data(conn, chunk) {
    const sniff = conn.userData as Sniff;
    clearTimeout(sniff.timer);
    sniff.proxy.dispatch(conn, chunk);
  },
  end(conn) {
    // Closed before saying anything.
    clearTimeout((conn.userData as Sniff).timer);
    conn.destroy();
  },
  close(conn) {
    clearTimeout((conn.userData as Sniff).timer);
  },
};

function onSniffTimeout(conn: Conn): void {
  conn.destroy();
}

/**
 * The mixed port of the original wmproxy: one listener serving HTTP proxy
 * requests, CONNECT tunnels and SOCKS5, told apart by the first byte (0x05
 * is SOCKS5, anything else HTTP). The client allow/deny check comes first,
 * for every kind.
 */
export class ForwardProxy {
  readonly flags: ReadonlySet<ForwardFlag>;
  private readonly http: HttpProxyServer | undefined;
  private readonly socks: Socks5Server | undefined;
  private readonly clientPolicy: AccessPolicy | undefined;
  private readonly headerTimeoutMs: number;
  private readonly logger: Logger | undefined;

  constructor(options: ForwardProxyOptions = {}) {
    const flags = new Set<ForwardFlag>(options.flags ?? ['http', 'https', 'socks5']);
    for (const flag of flags) if (flag !== 'http' && flag !== 'https' && flag !== 'socks5') throw new RangeError(`unknown flag "${String(flag)}" (use http, https, socks5)`);
    if (flags.size === 0) throw new RangeError('flags: enable at least one of http, https, socks5');
    this.flags = flags;
    const policy = options.clientPolicy;
    this.clientPolicy = policy === undefined ? undefined : policy instanceof AccessPolicy ? policy : new AccessPolicy(policy);
    this.headerTimeoutMs = options.headerTimeoutMs ?? options.http?.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS;
    this.logger = options.logger;
    const destinationDeny = options.destinationDeny === undefined ? undefined : options.destinationDeny instanceof CidrList ? options.destinationDeny : new CidrList(options.destinationDeny);
    const httpOptions: HttpProxyOptions = {
      ...options.http,
      users: options.users,
      destinationDeny,
      upstream: options.upstream,
      upstreamTls: options.upstreamTls,
      connectTimeoutMs: options.connectTimeoutMs ?? options.http?.connectTimeoutMs,
      headerTimeoutMs: this.headerTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs ?? options.http?.idleTimeoutMs,
      connector: options.connector ?? options.http?.connector,
      logger: options.logger,
      allowHttp: flags.has('http'),
      allowConnect: flags.has('https'),
    };
    if (flags.has('http') || flags.has('https')) this.http = new HttpProxyServer(httpOptions);
    if (flags.has('socks5')) {
      // The same connector as HTTP, so SOCKS5 clients also chain through `upstream`.
      const connector = resolveConfig({ ...httpOptions, logger: undefined }).connector;
      this.socks = new Socks5Server({
        users: options.users,
        destinationDeny,
        connectTimeoutMs: options.connectTimeoutMs,
        idleTimeoutMs: options.idleTimeoutMs,
        connector,
        logger: options.logger,
        ...options.socks5,
      });
    }
  }

  /** Take over an accepted connection (`unread`: bytes already read from it). */
  handle(conn: Conn, unread?: Uint8Array): void {
    if (this.clientPolicy && !this.clientPolicy.permits(conn.remoteAddress)) {
      this.logger?.info('client refused by policy', { conn: conn.id, client: conn.remoteAddress });
      // The protocol is unknown yet: HTTP clients get a readable 403, SOCKS5 ones a closed socket.
      refuse(conn, this.http ? simpleResponse(403, { body: 'Your address is not allowed to use this proxy.\n' }) : new Uint8Array(0));
      return;
    }
    const sniff: Sniff = { proxy: this, timer: setTimeout(onSniffTimeout, this.headerTimeoutMs, conn) };
    conn.userData = sniff;
    conn.setHandler(sniffHandler, unread);
  }

  /** @internal Route by the first byte. */
  dispatch(conn: Conn, first: Uint8Array): void {
    if (first[0] === 0x05) {
      if (!this.socks) {
        this.logger?.info('socks5 is disabled on this port', { conn: conn.id, client: conn.remoteAddress });
        conn.destroy();
        return;
      }
      releaseConn(conn, first);
      this.socks.handle(conn);
      return;
    }
    if (!this.http) {
      this.logger?.info('http is disabled on this port', { conn: conn.id, client: conn.remoteAddress });
      refuse(conn, simpleResponse(405, { body: 'This port serves SOCKS5 only.\n' }));
      return;
    }
    this.http.handle(conn, first);
  }
}

/** Options of `createForwardProxyServer`: the proxy's plus where to listen. */
export interface ForwardProxyServerOptions extends ForwardProxyOptions {
  /** Addresses to listen on: a list (`127.0.0.1:8090, [::1]:8090`) or parsed addresses ["127.0.0.1:8090"]. */
  bind?: string | Address[];
  /** Most client connections open at once on the port (default 0: only the process limit, core-net's `setProcessConnectionLimit`; Squid `max_filedescriptors`, HAProxy `maxconn`). */
  maxConnections?: number;
  /** Most client connections open at once from one IP address (default 0: no limit; Squid `maxconn` ACL, nginx `limit_conn`). */
  maxConnectionsPerIp?: number;
  /**
   * Serve the port over TLS (an HTTPS proxy, SOCKS5 inside TLS): the
   * handshake comes first, then the first-byte dispatch inside it. With
   * `clientCa`, clients must present a certificate it signed (mutual TLS);
   * others fail the handshake and are logged [plain TCP].
   */
  tls?: TlsServerOptions;
}

export const DEFAULT_FORWARD_BIND = HTTP_PROXY_DEFAULTS.bind;

/** A core-net Server running a ForwardProxy on every accepted connection (call `start()`). */
export function createForwardProxyServer(options: ForwardProxyServerOptions = {}): Server {
  const proxy = new ForwardProxy(options);
  const bind = options.bind ?? DEFAULT_FORWARD_BIND;
  const addresses = typeof bind === 'string' ? parseAddressList(bind) : bind;
  // Over a limit a connection is closed without a byte: the port also speaks SOCKS5, so an HTTP 503 could be garbage to the client.
  const limits = { maxConnections: options.maxConnections, maxConnectionsPerIp: options.maxConnectionsPerIp };
  return new Server({ addresses, tls: options.tls, logger: options.logger, limits, onConnection: (conn) => proxy.handle(conn) });
}
