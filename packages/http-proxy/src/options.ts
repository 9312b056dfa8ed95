import {
  AccessPolicy,
  CidrList,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_HEAD_SIZE,
  DEFAULT_MAX_HEADERS,
  silentLogger,
  systemResolver,
  type HeadLimits,
  type Logger,
  type Resolver,
} from '@wmproxy/core-net';
import { HTTP_PROXY_DEFAULTS } from './defaults.js';
import { BasicAuth } from '@wmproxy/core-net';
import { directConnector, parentConnector, parseParentProxy, type Connector, type ParentProxy, type ParentTlsOptions } from './upstream.js';

/** Options of `HttpProxyServer` (every one optional; defaults in brackets). */
export interface HttpProxyOptions {
  /** Basic-auth users (name → password). When non-empty every request needs `Proxy-Authorization` [none: open]. */
  users?: Record<string, string>;
  /** Realm in `Proxy-Authenticate` ["wmproxy"]. */
  realm?: string;
  /** Client allow/deny by source IP (CIDR, IPv4/IPv6); refused clients get 403 and are closed [everyone]. */
  clientPolicy?: AccessPolicy | { allow?: readonly string[]; deny?: readonly string[] };
  /** Destinations to refuse with 403, checked on the resolved IPs (e.g. `127.0.0.0/8`, `::1`) [none]. */
  destinationDeny?: CidrList | readonly string[];
  /** Ports CONNECT may reach; others get 403 [any port]. */
  connectPorts?: readonly number[];
  /** Serve absolute-form requests (`GET http://...`) [true]; when false they get 405. */
  allowHttp?: boolean;
  /** Serve CONNECT tunnels [true]; when false they get 405. */
  allowConnect?: boolean;
  /** Parent proxy: `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port`, or over TLS `https://...` / `socks5+tls://...` [direct]. */
  upstream?: string;
  /** For a TLS parent: CA to verify it by, client certificate to present, server name [system CAs, no client certificate, the URL's host]. */
  upstreamTls?: ParentTlsOptions;
  /** Give up connecting to a target after this long: 504 [10 000 ms]. */
  connectTimeoutMs?: number;
  /** Close a client that has not sent a complete request head this long after connecting: 408 [30 000 ms]. */
  headerTimeoutMs?: number;
  /** Close an idle keep-alive client connection after this long between requests [60 000 ms]. */
  keepAliveTimeoutMs?: number;
  /** Close a tunnel or a stalled exchange with no traffic for this long [300 000 ms; 0 = never]. */
  idleTimeoutMs?: number;
  /** Largest request head: 431 [65 536 bytes]. */
  maxHeadSize?: number;
  /** Most header fields in a request: 431 [128]. */
  maxHeaders?: number;
  /** Value of the `Via` field added both ways; false to add none ["1.1 wmproxy"]. */
  via?: string | false;
  /** Opens target connections (tests inject slow or failing ones) [direct, or through `upstream`]. */
  connector?: Connector;
  /** Name resolution for destination checks and direct connects [system resolver]. */
  resolver?: Resolver;
  logger?: Logger;
}

export const DEFAULT_HEADER_TIMEOUT_MS = HTTP_PROXY_DEFAULTS.headerTimeoutMs;
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = HTTP_PROXY_DEFAULTS.keepAliveTimeoutMs;

/** Options with defaults applied, shared by every session of a server. */
export interface ProxyConfig {
  auth: BasicAuth | undefined;
  clientPolicy: AccessPolicy | undefined;
  destinationDeny: CidrList | undefined;
  connectPorts: ReadonlySet<number> | undefined;
  allowHttp: boolean;
  allowConnect: boolean;
  parent: ParentProxy | undefined;
  /** Reaches a target for CONNECT (and for plain requests unless the parent is an HTTP proxy). */
  connector: Connector;
  connectTimeoutMs: number;
  headerTimeoutMs: number;
  keepAliveTimeoutMs: number;
  idleTimeoutMs: number;
  limits: HeadLimits;
  via: string | undefined;
  resolver: Resolver;
  logger: Logger;
}

function duration(value: number | undefined, fallback: number, name: string, zeroOk = false): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (!zeroOk && value === 0)) throw new RangeError(`${name} must be a positive number of milliseconds`);
  return value;
}

export function resolveConfig(options: HttpProxyOptions): ProxyConfig {
  const resolver = options.resolver ?? systemResolver;
  const parent = options.upstream ? parseParentProxy(options.upstream, options.upstreamTls) : undefined;
  const policy = options.clientPolicy;
  const deny = options.destinationDeny;
  for (const port of options.connectPorts ?? []) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`connectPorts: ${port} is not a port`);
  }
  return {
    auth: options.users && Object.keys(options.users).length > 0 ? new BasicAuth(options.users, options.realm) : undefined,
    clientPolicy: policy === undefined ? undefined : policy instanceof AccessPolicy ? policy : new AccessPolicy(policy),
    destinationDeny: deny === undefined ? undefined : deny instanceof CidrList ? deny : new CidrList(deny),
    connectPorts: options.connectPorts && options.connectPorts.length > 0 ? new Set(options.connectPorts) : undefined,
    allowHttp: options.allowHttp ?? true,
    allowConnect: options.allowConnect ?? true,
    parent,
    connector: options.connector ?? (parent ? parentConnector(parent, resolver) : directConnector(resolver)),
    connectTimeoutMs: duration(options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 'connectTimeoutMs'),
    headerTimeoutMs: duration(options.headerTimeoutMs, DEFAULT_HEADER_TIMEOUT_MS, 'headerTimeoutMs'),
    keepAliveTimeoutMs: duration(options.keepAliveTimeoutMs, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, 'keepAliveTimeoutMs'),
    idleTimeoutMs: duration(options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS, 'idleTimeoutMs', true),
    limits: { maxHeadSize: options.maxHeadSize ?? DEFAULT_MAX_HEAD_SIZE, maxHeaders: options.maxHeaders ?? DEFAULT_MAX_HEADERS, requireHost: false },
    via: options.via === false ? undefined : options.via ?? HTTP_PROXY_DEFAULTS.via,
    resolver,
    logger: options.logger ?? silentLogger,
  };
}
