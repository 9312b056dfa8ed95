/**
 * The configuration after validation and defaults: durations in
 * milliseconds, sizes in bytes, lists where the file allowed one-or-many,
 * inherited settings copied down, paths made absolute. Names follow the
 * options of the packages that run each part (`@wmproxy/http-proxy`,
 * `@wmproxy/socks5`, `@wmproxy/reverse`, `@wmproxy/health`, `@wmproxy/static`).
 */
import type { Mapping, PortRange } from '@wmproxy/tunnel';
import type { LogLevel } from '@wmproxy/core-net';
import type { CheckSpec, HealthCheckerOptions, HealthState } from '@wmproxy/health';
import type { DnsOptions, HeaderRule, LocationSpec, RateLimitSpec, ReplayOptions, RetryOptions, TimeoutOptions, TracingOptions } from '@wmproxy/reverse';
import type { ConfigFile } from './schema.js';

export type Protocol = 'http' | 'https' | 'socks5';

export interface LogConfig {
  level: LogLevel;
  /** Level per logger name (a forward proxy's name, or `reverse`). */
  levels: Record<string, LogLevel>;
  format: 'text' | 'json';
  /** `-` for standard error, else an absolute path. */
  file: string;
  /** `-` for standard output, an absolute path, or undefined (off). */
  accessLog: string | undefined;
  accessFormat: 'combined' | 'json';
}

export interface ControlConfig {
  enabled: boolean;
  listen: string;
  token: string | undefined;
  /** Extra names the Host header may carry (lowercase, without port), besides the listen address and localhost. */
  allowedHosts: string[];
}

export interface ForwardProxyConfig {
  name: string;
  listen: string[];
  protocols: Protocol[];
  /** Users and passwords; undefined: no authentication. */
  users: Record<string, string> | undefined;
  realm: string;
  allow: string[];
  deny: string[];
  denyDestinations: string[];
  connectPorts: number[] | undefined;
  parent: string | undefined;
  /** Files (absolute paths) and checks for a TLS parent. */
  parentTls: { ca?: string; cert?: string; key?: string; servername?: string; verify: boolean } | undefined;
  /** The port speaks TLS with these files (absolute paths); `clientCa`: mutual TLS. */
  tls: { cert: string; key: string; clientCa?: string } | undefined;
  udp: boolean;
  udpBind: string | undefined;
  connectTimeoutMs: number;
  headerTimeoutMs: number;
  keepAliveTimeoutMs: number;
  idleTimeoutMs: number;
  maxHeadSize: number;
  via: string | false;
  /** Connection limits of the port (0: none beyond the process limit / no per-IP limit). */
  maxConnections: number;
  maxConnectionsPerIp: number;
}

export interface UpstreamServerConfig {
  address: string;
  weight: number;
  maxConns: number;
  backup: boolean;
  tls: boolean;
  servername: string | undefined;
  tlsVerify: boolean;
  /** HTTP/2 to the server (h2 with `tls`, else h2c); absent: HTTP/1.1. */
  protocol?: 'h2';
}

/** Per-target health options (`@wmproxy/health` TargetSpec without address/pool). */
export interface UpstreamHealthConfig {
  /** null: no active check (passive only). */
  check: CheckSpec | null;
  intervalMs?: number;
  timeoutMs?: number;
  rise?: number;
  fall?: number;
  jitter?: number;
  fastIntervalMs?: number;
  downIntervalMs?: number;
  initial?: HealthState;
}

export interface UpstreamConfig {
  name: string;
  servers: UpstreamServerConfig[];
  /** Service discovery (`servers = "srv+NAME"` or `"etcd+/PREFIX"`): the servers found join `servers`. */
  discover?: { source: 'srv' | 'etcd'; target: string };
  policy: 'round_robin' | 'least_conn' | 'random_two' | 'ip_hash' | 'hash' | 'first';
  hashKey: string;
  health: UpstreamHealthConfig;
  pool: { maxIdle: number; idleTimeoutMs: number };
  shutdownSessionsOnDown: boolean;
}

export type HeaderRuleConfig = HeaderRule;

export interface StaticConfig {
  /** Absolute directory. */
  root: string;
  index: string[];
  browse: boolean;
  spa: boolean;
  tryFiles: string[] | undefined;
  notFound: string | undefined;
  precompressed: boolean;
  hide: string[];
  dotfiles: boolean;
  cacheControl: Record<string, string>;
  cors: boolean;
}

/** What a ws2tcp endpoint accepts and where it relays (`[[ws_proxy]]` in mode ws2tcp, and `websocket_to_tcp` locations). */
export interface Ws2TcpConfig {
  /** Exactly one of `target` (`host:port`), `upstream` (a group's name), `tokenFile` (absolute path). */
  target: string | undefined;
  upstream: string | undefined;
  tokenFile: string | undefined;
  /** Allowed Origins (empty: any). */
  origins: string[];
  auth: { basic?: Array<{ user: string; pass: string }>; bearer?: string[] } | undefined;
  subprotocols: Array<'binary' | 'base64'>;
  text: 'refuse' | 'forward';
  pingIntervalMs: number;
  pongTimeoutMs: number;
  maxMessageSize: number;
  connectTimeoutMs: number;
}

/** A `[[ws_proxy]]`: a WebSocket ↔ TCP bridge with its own listener. */
export interface WsProxyConfig {
  name: string;
  mode: 'ws2tcp' | 'tcp2ws' | 'tcp2wss';
  listen: string[];
  /** ws2tcp only (undefined for tcp2ws). */
  ws2tcp: (Ws2TcpConfig & { path: string; tls: { cert: string; key: string } | undefined }) | undefined;
  /** tcp2ws / tcp2wss only. */
  tcp2ws: { url: string; host: string | undefined; servername: string | undefined; ca: string | undefined; insecure: boolean; origin: string | undefined; headers: Array<[string, string]>; subprotocols: string[] } | undefined;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  maxMessageSize: number;
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
}

/** A location as `@wmproxy/reverse` takes it, with the static-files settings instead of a handler and the inherited header rules resolved. */
export type LocationConfig = Omit<LocationSpec, 'handler' | 'takeover' | 'static' | 'requestHeaders' | 'responseHeaders'> & {
  static?: StaticConfig;
  /** Upgrade and bridge to TCP (the control package builds the ws2tcp endpoint). */
  websocketToTcp?: Ws2TcpConfig;
  /** Inherited rules first ([reverse], then the server), then the location's own. */
  requestHeaders: HeaderRuleConfig[];
  responseHeaders: HeaderRuleConfig[];
};

export interface HttpServerConfig {
  name: string;
  listen: string[];
  serverNames: string[];
  default: boolean;
  /** Absolute paths of the PEM files, or `auto` (ACME, `WmproxyConfig.acme`). */
  tls: { cert: string; key: string } | 'auto' | undefined;
  /** HTTP/2: by ALPN over TLS (true), also cleartext by prior knowledge ("h2c"), or off (false). */
  http2: boolean | 'h2c';
  trustedProxies: string[];
  /** Request limit shared by the locations without their own. */
  rateLimit: RateLimitSpec | undefined;
  /** Connection limits of the listener (the same on every server of a port; 0: none beyond the process limit / no per-IP limit). */
  maxConnections: number;
  maxConnectionsPerIp: number;
  /** Status answered to a connection over a limit (0: closed without an answer). */
  connectionLimitStatus: number;
  locations: LocationConfig[];
}

export interface ReverseConfig {
  /** `@wmproxy/reverse` timeouts, in milliseconds (unset ones are REVERSE_DEFAULTS'). */
  timeouts: TimeoutOptions;
  /** `bodyBuffer`: the replay buffer for request bodies, in bytes. */
  retries: RetryOptions & Required<ReplayOptions>;
  hedgeDelayMs: number;
  /** Request hedging: ceiling of the adaptive delay in ms (0: off), and hedges earned per request. */
  requestHedgeMs: number;
  requestHedgeBudget: number;
  /** Upstream DNS names: cache validity (ms) and whether record TTLs are used. */
  dns: Required<Omit<DnsOptions, 'resolver' | 'srvResolver'>>;
  maxHeadSize: number;
  shutdownTimeoutMs: number;
  /** `[reverse.tracing]`: `@wmproxy/reverse`'s TracingOptions (otlp only with an endpoint). */
  tracing: TracingConfig;
}

export type TracingConfig = TracingOptions;

export interface StreamConfig {
  name: string;
  listen: string[];
  protocol: 'tcp' | 'udp';
  upstream: string;
  tries: number;
  idleTimeoutMs: number;
  /** TCP connection limits (0: none beyond the process limit / no per-IP limit). */
  maxConnections: number;
  maxConnectionsPerIp: number;
}

/** `[acme]`, with defaults (set when a server has `tls = "auto"` or the section is present). */
export interface AcmeConfig {
  email: string | undefined;
  /** Directory URL. */
  directory: string;
  /** Absolute path of a PEM CA file for the directory's HTTPS. */
  caRoot: string | undefined;
  challenges: Array<'tls-alpn-01' | 'http-01'>;
  /** Absolute path. */
  storage: string;
  /** Renew this many ms before expiry (undefined: a third of the lifetime). */
  renewBeforeMs: number | undefined;
  /** An order not complete after this long fails (and is retried with backoff). */
  orderTimeoutMs: number;
  redirect: boolean;
  httpPort: number;
}

/** A port range of a tunnel allow list. */
export type TunnelPortRange = PortRange;

export interface TunnelServerConfig {
  listen: string;
  token: string | undefined;
  clients: Array<{ name: string; token: string; allowPorts?: TunnelPortRange[]; allowDomains?: string[] }>;
  allowPorts: TunnelPortRange[] | undefined;
  allowDomains: string[] | undefined;
  publicHost: string | undefined;
  /** false: plain TCP; 'self-signed': made and kept in `stateDir`; else PEM file paths. */
  tls: false | 'self-signed' | { cert: string; key: string; clientCa?: string };
  stateDir: string;
  heartbeatMs: number;
  /** Idle data connections per client (`data_pool`); undefined: the tunnel server's default. */
  dataPool: number | undefined;
  /** Most visitors per client on data connections at once (`data_max_busy`); undefined: the tunnel server's default. */
  dataMaxBusy: number | undefined;
  /** Bytes within a second that move a visitor to a data connection (`data_promote_bytes`); undefined: the tunnel server's default. */
  dataPromoteBytes: number | undefined;
  /** Unauthenticated connections on the tunnel port, in all and per address (`max_handshakes`, `max_handshakes_per_ip`); undefined: the tunnel server's defaults. */
  maxHandshakes: number | undefined;
  maxHandshakesPerIp: number | undefined;
  /** Per-source penalties on failed logins (`auth_penalty`), in core-net's SourcePenaltyOptions; undefined keys: core-net's defaults. */
  authPenalty: { enabled?: boolean; allowance?: number; firstMs?: number; maxMs?: number; maxSources?: number; exempt?: string[] };
  visitorWaitMs: number;
  drainMs: number;
  /** Web front of http/https mappings (see @wmproxy/tunnel's TunnelWeb). */
  httpListen: string | undefined;
  httpsListen: string | undefined;
  https: { cert: string; key: string } | undefined;
  /** `https_tls = "auto"`: http mappings on `httpsListen` get ACME certificates for their exact domains (see `[acme]`). */
  httpsAuto: boolean;
  httpPolicy: 'round_robin' | 'least_conn' | 'random_two' | 'ip_hash' | 'hash' | 'first';
  httpHealth: { path: string; intervalMs: number; rise: number; fall: number } | undefined;
  /** Limits of each public port (web and tcp/proxy mappings); 0: none. */
  maxConnections: number;
  maxConnectionsPerIp: number;
}

/** One tunnel mapping: @wmproxy/tunnel's `Mapping`. */
export type TunnelMappingConfig = Mapping;

export interface TunnelClientConfig {
  /** Service name (`tunnel-client-N`). */
  service: string;
  server: string;
  token: string;
  name: string | undefined;
  /** false: plain TCP; else what to verify the server against (PEM paths, a fingerprint, or the system CAs). */
  tls: false | { ca?: string; fingerprint?: string; servername?: string; cert?: string; key?: string };
  mappings: TunnelMappingConfig[];
  /** Who may use `proxy` mappings (undefined: no users or allow list). */
  proxy: { users?: Record<string, string>; allow?: string[] } | undefined;
  /** `proxy` mappings may be served without users or an allow list. */
  openProxy: boolean;
}

export interface TunnelConfig {
  server: TunnelServerConfig | undefined;
  clients: TunnelClientConfig[];
}

/** What several instances share (`[cluster]`). */
export interface ClusterConfig {
  /** Redis URL of `scope = "cluster"` rate limits (undefined: none). */
  redis: string | undefined;
  /** etcd URL (`etcd://HOST:PORT[,...]/PREFIX`) the instance follows, and whose registry `etcd+` discovery reads (undefined: none). */
  store: string | undefined;
  instances: number;
  redisTimeoutMs: number;
}

export interface WmproxyConfig {
  /** The file it came from (`<default>` for the embedded one). */
  file: string;
  /** Directory relative paths were resolved against. */
  baseDir: string;
  workers: number | 'auto';
  /** Most client connections open at once per process over every listener (core-net `setProcessConnectionLimit`; 0: no limit). */
  maxConnections: number;
  log: LogConfig;
  control: ControlConfig;
  cluster: ClusterConfig;
  /** Options of the one HealthChecker shared by every upstream. */
  health: HealthCheckerOptions;
  reverse: ReverseConfig;
  proxies: ForwardProxyConfig[];
  upstreams: UpstreamConfig[];
  servers: HttpServerConfig[];
  streams: StreamConfig[];
  /** WebSocket ↔ TCP bridges with their own listeners (`[[ws_proxy]]`). */
  wsProxies: WsProxyConfig[];
  acme: AcmeConfig | undefined;
  /** The intranet tunnel's server and clients. */
  tunnel: TunnelConfig;
  /** Warnings (e.g. keys of the original format without an equivalent). */
  warnings: string[];
  /** The file as written (after conversion from the original format), for `GET /config` through `redactConfig`. */
  source: ConfigFile;
}
