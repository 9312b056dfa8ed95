/**
 * The schema of a wmproxy configuration file (TypeBox, so it is both the
 * validator and the published JSON Schema). Keys are snake_case, as in the
 * original wmproxy and in TOML at large. Durations are strings with a unit
 * (`500ms`, `10s`, `2m`, `1m30s`), sizes are bytes or strings with a unit
 * (`64k`, `10m`, `1g`), addresses are `ip:port`, `[v6]:port`, `host:port` or
 * `:port` (every local address), as `@wmproxy/core-net` parses them.
 *
 * Every key has a description; `x-expected` says in words what a value must
 * look like, for error messages ("expected a duration such as 500ms, 10s or 2m").
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { CORE_NET_DEFAULTS } from '@wmproxy/core-net';
import { DEFAULT_ACTIVE, DEFAULT_CONCURRENCY, DEFAULT_GRPC_SERVICE, DEFAULT_PANIC_THRESHOLD, DEFAULT_PASSIVE, HEALTH_DEFAULTS, MAX_GRPC_SERVICE_LENGTH } from '@wmproxy/health';
import { HTTP_PROXY_DEFAULTS } from '@wmproxy/http-proxy';
import { SOCKS5_DEFAULTS } from '@wmproxy/socks5';
import { STATIC_DEFAULTS } from '@wmproxy/static';
import { CONTROL_DEFAULTS } from './control-defaults.js';
import { CLUSTER_DEFAULTS, REVERSE_DEFAULTS, TRACING_EXPORTERS } from '@wmproxy/reverse';
import { ACME_DEFAULTS } from '@wmproxy/acme';
import { WS_BRIDGE_DEFAULTS } from '@wmproxy/ws-bridge';
import { durationText, sizeText } from './units.js';

// Defaults come from the packages that apply them (test/defaults.test.ts checks the READMEs against them).
const R = REVERSE_DEFAULTS;
const T = REVERSE_DEFAULTS.timeouts;

const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))+$';
const SIZE_PATTERN = '^[0-9]+(\\.[0-9]+)?\\s*([kKmMgG]([iI]?[bB])?|[bB])?$';

export const Duration = (description: string, defaultValue?: string) =>
  Type.String({
    pattern: DURATION_PATTERN,
    // The pattern cannot bound the value: the format refuses what a timer cannot wait (over 24.8 days).
    format: 'wmproxy-duration',
    description,
    ...(defaultValue !== undefined ? { default: defaultValue } : {}),
    examples: ['500ms', '10s', '2m'],
    'x-expected': 'a duration such as 500ms, 10s or 2m, at most 24d',
  });

export const Size = (description: string, defaultValue?: string) =>
  // Bounded like parseSize: a byte count above 2^53 is no longer exact.
  Type.Union([Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), Type.String({ pattern: SIZE_PATTERN, format: 'wmproxy-size' })], {
    description,
    ...(defaultValue !== undefined ? { default: defaultValue } : {}),
    examples: ['64k', '10m'],
    'x-expected': 'a size in bytes or with a unit, such as 65536, 64k or 10m',
  });

/** One address: checked by core-net's parser (registered as the `wmproxy-address` format). */
export const AddressString = (description: string, defaultValue?: string) =>
  Type.String({
    format: 'wmproxy-address',
    description,
    ...(defaultValue !== undefined ? { default: defaultValue } : {}),
    'x-expected': 'an address such as 127.0.0.1:8080, [::1]:8080 or :8080',
  });

/** One address or a list of them. */
export const Listen = (description: string, defaultValue?: string) =>
  Type.Union([AddressString('address'), Type.Array(AddressString('address'), { minItems: 1 })], {
    description,
    ...(defaultValue !== undefined ? { default: defaultValue } : {}),
    'x-expected': 'an address such as 127.0.0.1:8080, or a list of addresses',
  });

export const Cidrs = (description: string) =>
  Type.Array(Type.String({ format: 'wmproxy-cidr', 'x-expected': 'an IP address or CIDR range such as 10.0.0.0/8 or ::1' }), {
    description,
    'x-expected': 'a list of IP addresses or CIDR ranges',
  });

const Port = Type.Integer({ minimum: 1, maximum: 65535 });
const Enum = <T extends string>(values: readonly T[], options: Record<string, unknown>) =>
  Type.Union(
    values.map((value) => Type.Literal(value)),
    { ...options, 'x-expected': `one of ${values.map((value) => JSON.stringify(value)).join(', ')}` },
  );
const Strict = { additionalProperties: false } as const;

/** Connection limits of one listener (core-net's ConnLimit): over one, a new connection is refused at once. */
const ListenerLimits = {
  max_connections: Type.Optional(
    Type.Integer({ minimum: 0, description: 'Most client connections open at once on this listener; more are refused at once (HAProxy frontend `maxconn`). `0`: only the process-wide `max_connections`.', default: 0 }),
  ),
  max_connections_per_ip: Type.Optional(
    Type.Integer({ minimum: 0, description: 'Most client connections open at once from one IP address; more are refused at once (nginx `limit_conn` on `$binary_remote_addr`, HAProxy `src_conn_cur`). `0`: no limit.', default: 0 }),
  ),
};

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export const POLICY_NAMES = ['round_robin', 'least_conn', 'random_two', 'ip_hash', 'hash', 'first'] as const;
export const PROTOCOLS = ['http', 'https', 'socks5'] as const;

// ---------------------------------------------------------------- logging
export const LogSchema = Type.Object(
  {
    level: Type.Optional(Enum(LOG_LEVELS, { description: 'Error log level.', default: 'info' })),
    levels: Type.Optional(
      Type.Record(Type.String({ minLength: 1 }), Enum(LOG_LEVELS, {}), {
        description: 'Level per logger, overriding `level`: a `[[proxy]]` name, or `reverse` (servers, upstreams, streams). E.g. `{ reverse = "debug" }`.',
      }),
    ),
    format: Type.Optional(Enum(['text', 'json'] as const, { description: 'Error log format: one `key=value` line per event, or JSON lines.', default: 'text' })),
    file: Type.Optional(Type.String({ description: 'Error log destination: `-` (standard error) or a file path (reopened on SIGUSR1).', default: '-' })),
    access_log: Type.Optional(
      Type.String({ description: 'Access log of the reverse proxy: `-` (standard output), a file path (reopened on SIGUSR1) or `off`.', default: 'off' }),
    ),
    access_format: Type.Optional(Enum(['combined', 'json'] as const, { description: 'Access log format: nginx "combined" plus upstream fields, or JSON lines.', default: 'combined' })),
  },
  { ...Strict, description: 'Logging (global).' },
);

// ---------------------------------------------------------------- control API
export const ControlSchema = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean({ description: 'Serve the control API and dashboard.', default: CONTROL_DEFAULTS.enabled })),
    listen: Type.Optional(AddressString('Address of the control API and dashboard (the original wmproxy\'s control port).', CONTROL_DEFAULTS.listen)),
    token: Type.Optional(
      Type.String({
        minLength: 8,
        description: 'Bearer token. Required when `listen` is not a loopback address; when set, every mutating endpoint (and every endpoint on a non-loopback bind) needs `Authorization: Bearer TOKEN`.',
        'x-expected': 'a string of at least 8 characters',
      }),
    ),
    allowed_hosts: Type.Optional(
      Type.Array(
        Type.String({
          // A name or an IP, without a port (`host:port` has one colon; an IPv6 literal has two or more, or brackets).
          pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*|[^\\s/:@\\[\\]]+)$',
          'x-expected': 'a host name or IP address without a port, such as wmproxy.internal or 10.0.0.5',
        }),
        {
          description: 'Names the `Host` header of a request may carry besides the listen address, `localhost`, `127.0.0.1` and `[::1]` (any port): requests naming another host get 421 unless they carry the token (DNS-rebinding protection). Add the name you reach the dashboard by, e.g. through a reverse proxy.',
          default: [],
        },
      ),
    ),
  },
  { ...Strict, description: 'The control API (GET /status, /upstreams, /config, /metrics, /events; POST /reload, /stop) and the dashboard at /.' },
);

// ---------------------------------------------------------------- forward proxies
export const ForwardProxySchema = Type.Object(
  {
    name: Type.Optional(Type.String({ description: 'Name in logs, /status and metrics (default `proxy-N`).' })),
    listen: Listen('Addresses of the mixed port; the first byte of each connection tells HTTP (absolute-form and CONNECT) from SOCKS5.', '127.0.0.1:8090'),
    protocols: Type.Optional(
      Type.Array(Enum(PROTOCOLS, {}), {
        uniqueItems: true,
        minItems: 1,
        description: 'Protocols served on the port: `http` (absolute-form requests), `https` (CONNECT tunnels), `socks5` (the original\'s `flag` 1, 2, 4).',
        default: [...HTTP_PROXY_DEFAULTS.protocols],
      }),
    ),
    users: Type.Optional(
      Type.Record(Type.String({ minLength: 1 }), Type.String(), { description: 'Users and passwords (Basic `Proxy-Authorization` for HTTP, RFC 1929 for SOCKS5). Empty: no authentication.' }),
    ),
    realm: Type.Optional(Type.String({ description: 'Realm sent in `Proxy-Authenticate`.', default: HTTP_PROXY_DEFAULTS.realm })),
    allow: Type.Optional(Cidrs('Clients allowed to use the proxy (CIDR). Empty: everyone not denied.')),
    deny: Type.Optional(Cidrs('Clients refused (CIDR); wins over `allow`.')),
    deny_destinations: Type.Optional(Cidrs('Destinations refused (checked on every resolved IP; IPv6 spellings of an IPv4 address and 0.0.0.0 / :: count as what they reach). Default when a `listen` address is not loopback: this host and its link, where the control API listens — `0.0.0.0/8`, `127.0.0.0/8`, `::/128`, `::1/128`, link-local `169.254.0.0/16` and `fe80::/10` (cloud metadata), multicast `224.0.0.0/4` and `ff00::/8`, `255.255.255.255/32`, and the metadata services `fd00:ec2::254/128` and `100.100.100.200/32`; none otherwise. An explicit list replaces the default; `[]` allows everything.')),
    connect_ports: Type.Optional(Type.Array(Port, { description: 'Ports CONNECT may reach. Default: `[443, 8443]` when a `listen` address is not loopback (Squid\'s SSL_ports), any otherwise; `[]` allows any port.' })),
    parent: Type.Optional(
      Type.String({
        pattern: '^(https?|socks5|socks5\\+tls)://',
        description: 'Parent proxy to chain through: `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port`; over TLS `https://...` or `socks5+tls://...` (see `parent_tls`).',
        'x-expected': 'a proxy URL such as http://127.0.0.1:3128, https://proxy.example:8443, socks5://127.0.0.1:1080 or socks5+tls://proxy.example:1443',
      }),
    ),
    parent_tls: Type.Optional(
      Type.Object(
        {
          ca: Type.Optional(Type.String({ description: 'CA certificate(s) (PEM file) the parent\'s certificate must chain to. Default: the system\'s CAs.' })),
          cert: Type.Optional(Type.String({ description: 'Client certificate (PEM file) shown to a parent that asks for one (mutual TLS); with `key`.' })),
          key: Type.Optional(Type.String({ description: 'Private key (PEM file) of `cert`.' })),
          server_name: Type.Optional(Type.String({ minLength: 1, description: 'Name sent as SNI and expected in the parent\'s certificate. Default: the host of `parent`.' })),
          verify: Type.Optional(Type.Boolean({ description: 'Verify the parent\'s certificate; false lets anyone on the path read the traffic.', default: true })),
        },
        { ...Strict, description: 'How a TLS parent (`https://`, `socks5+tls://`) is verified and which client certificate it is shown (the original\'s `ts`, `two_way_tls`, `cert`, `key`, `domain`).' },
      ),
    ),
    tls: Type.Optional(
      Type.Object(
        {
          cert: Type.String({ description: 'Certificate chain file (PEM).' }),
          key: Type.String({ description: 'Private key file (PEM).' }),
          client_ca: Type.Optional(Type.String({ description: 'CA certificate(s) (PEM file) client certificates must chain to: clients without one fail the handshake (mutual TLS). Counts as authentication for a non-loopback `listen`.' })),
        },
        { ...Strict, description: 'Serve the port inside TLS (an HTTPS proxy; SOCKS5 in TLS): the handshake first, then the first-byte dispatch (the original\'s `tc`, `two_way_tls`, `cert`, `key`).' },
      ),
    ),
    udp: Type.Optional(Type.Boolean({ description: 'Serve SOCKS5 UDP ASSOCIATE.', default: SOCKS5_DEFAULTS.udp })),
    udp_bind: Type.Optional(Type.String({ format: 'wmproxy-ip', description: 'IP the SOCKS5 UDP relay sockets bind to (default: the address the client connected to).', 'x-expected': 'an IP address' })),
    connect_timeout: Type.Optional(Duration('Give up connecting to a target after this long (HTTP 504, SOCKS5 reply 0x06).', durationText(HTTP_PROXY_DEFAULTS.connectTimeoutMs))),
    header_timeout: Type.Optional(Duration('A client must send its request head (or SOCKS5 handshake) within this time.', durationText(HTTP_PROXY_DEFAULTS.headerTimeoutMs))),
    keepalive_timeout: Type.Optional(Duration('Close an idle keep-alive client connection after this long.', durationText(HTTP_PROXY_DEFAULTS.keepAliveTimeoutMs))),
    idle_timeout: Type.Optional(Duration('Close a tunnel or relay without traffic for this long (`0s`: never).', durationText(HTTP_PROXY_DEFAULTS.idleTimeoutMs))),
    max_header_size: Type.Optional(Size('Largest request head (HTTP 431 above it).', sizeText(HTTP_PROXY_DEFAULTS.maxHeadSize))),
    via: Type.Optional(Type.Union([Type.String(), Type.Literal(false)], { description: 'Value of the `Via` header added, or false for none.', default: HTTP_PROXY_DEFAULTS.via })),
    insecure_open: Type.Optional(
      Type.Boolean({ description: 'Allow a non-loopback listen address without users or an allow list (an open proxy).', default: false }),
    ),
    ...ListenerLimits,
  },
  { ...Strict, description: 'A forward proxy port serving HTTP, HTTPS (CONNECT) and SOCKS5.' },
);

// ---------------------------------------------------------------- health checks
const ActiveTiming = {
  interval: Type.Optional(Duration('Time between probes of a target.', durationText(DEFAULT_ACTIVE.intervalMs))),
  timeout: Type.Optional(Duration('A probe fails after this long (never longer than the interval).', durationText(DEFAULT_ACTIVE.timeoutMs))),
  rise: Type.Optional(Type.Integer({ minimum: 1, description: 'Consecutive successes to become healthy.', default: DEFAULT_ACTIVE.rise })),
  fall: Type.Optional(Type.Integer({ minimum: 1, description: 'Consecutive failures to become unhealthy.', default: DEFAULT_ACTIVE.fall })),
  jitter: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Random spread of each interval, as a fraction.', default: DEFAULT_ACTIVE.jitter })),
  fast_interval: Type.Optional(Duration('Interval while a target is changing state (HAProxy fastinter; default: `interval`).')),
  down_interval: Type.Optional(Duration('Interval while a target is unhealthy (HAProxy downinter; default: `interval`).')),
  initial: Type.Optional(Enum(['unknown', 'healthy', 'unhealthy'] as const, { description: 'State before the first probe.', default: DEFAULT_ACTIVE.initial })),
};

export const HealthCheckSchema = Type.Object(
  {
    type: Type.Optional(Enum(['tcp', 'http', 'https', 'grpc', 'grpcs'] as const, { description: 'What a probe does: a TCP connect (optionally send/expect), an HTTP(S) request, or a gRPC `grpc.health.v1.Health/Check` call (`grpc`: h2c, `grpcs`: TLS).', default: 'tcp' })),
    ...ActiveTiming,
    send: Type.Optional(Type.String({ description: 'TCP: bytes to send once connected.' })),
    expect: Type.Optional(Type.String({ description: 'TCP: bytes the reply must contain.' })),
    encoding: Type.Optional(Enum(['text', 'hex'] as const, { description: 'TCP: how `send`/`expect` are written.', default: 'text' })),
    method: Type.Optional(Type.String({ description: 'HTTP: request method.', default: 'GET' })),
    path: Type.Optional(Type.String({ pattern: '^/', description: 'HTTP: request path and query.', default: '/', 'x-expected': 'a path starting with /' })),
    host: Type.Optional(Type.String({ description: 'HTTP: Host header (and SNI) sent; gRPC: the :authority (and SNI) (default: the server\'s address).' })),
    headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'HTTP: extra request headers.' })),
    expect_status: Type.Optional(
      Type.String({ pattern: '^\\s*[1-5][0-9]{2}(\\s*-\\s*[1-5][0-9]{2})?(\\s*,\\s*[1-5][0-9]{2}(\\s*-\\s*[1-5][0-9]{2})?)*\\s*$', description: 'HTTP: statuses that pass, e.g. `200-299,301`.', default: '200-399', 'x-expected': 'status codes or ranges such as 200-299,301' }),
    ),
    expect_body: Type.Optional(Type.String({ description: 'HTTP: the body must contain this text, or match `/regex/flags`.' })),
    tls_verify: Type.Optional(Type.Boolean({ description: 'HTTPS, gRPCS: verify the certificate.', default: true })),
    service: Type.Optional(Type.String({ maxLength: MAX_GRPC_SERVICE_LENGTH, pattern: '^[^\\x00-\\x1f\\x7f]*$', description: 'gRPC: the service asked about (`\'\'`: the server as a whole).', default: DEFAULT_GRPC_SERVICE, 'x-expected': 'a service name such as my.pkg.Users' })),
  },
  { ...Strict, description: 'An active health check.' },
);

export const PassiveSchema = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean({ description: 'Use failures seen by real traffic (outlier detection).', default: DEFAULT_PASSIVE.enabled })),
    consecutive_failures: Type.Optional(Type.Integer({ minimum: 1, description: 'Consecutive failures that eject a server.', default: DEFAULT_PASSIVE.consecutiveFailures })),
    window: Type.Optional(Duration('The failures must fall within this window.', durationText(DEFAULT_PASSIVE.windowMs))),
    ejection_time: Type.Optional(Duration('First ejection time; the n-th lasts n times this.', durationText(DEFAULT_PASSIVE.baseEjectionMs))),
    max_ejection_time: Type.Optional(Duration('Cap on the ejection time.', durationText(DEFAULT_PASSIVE.maxEjectionMs))),
    max_ejection_percent: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: 'Most of a group that may be ejected at once, in percent.', default: DEFAULT_PASSIVE.maxEjectionPercent })),
    count_5xx: Type.Optional(Type.Boolean({ description: 'Count 5xx responses as failures.', default: DEFAULT_PASSIVE.count5xx })),
  },
  { ...Strict, description: 'Passive health checks (Envoy outlier detection, nginx max_fails/fail_timeout).' },
);

export const HealthSchema = Type.Object(
  {
    ...ActiveTiming,
    panic_threshold: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: 'Below this percentage of available servers a group panics (0 disables).', default: DEFAULT_PANIC_THRESHOLD })),
    fail_mode: Type.Optional(Enum(['open', 'closed'] as const, { description: 'In panic, `open` sends traffic to every server, `closed` only to available ones.', default: HEALTH_DEFAULTS.failMode })),
    slow_start: Type.Optional(Duration('A recovered server\'s weight, or that of a server discovery adds to a serving group, ramps up over this window (`0s`: off).', durationText(HEALTH_DEFAULTS.slowStartMs))),
    concurrency: Type.Optional(Type.Integer({ minimum: 1, description: 'Most probes in flight at once.', default: DEFAULT_CONCURRENCY })),
    passive: Type.Optional(PassiveSchema),
  },
  { ...Strict, description: 'Defaults of every health check, the panic threshold and passive checks (global).' },
);

// ---------------------------------------------------------------- upstreams
export const UpstreamServerSchema = Type.Union(
  [
    AddressString('`host:port` of the server.'),
    Type.Object(
      {
        address: AddressString('`host:port` of the server (IP or DNS name).'),
        weight: Type.Optional(Type.Integer({ minimum: 1, description: 'Relative share of the traffic.', default: 1 })),
        max_conns: Type.Optional(Type.Integer({ minimum: 0, description: 'Most requests in flight at once (0: no limit).', default: 0 })),
        backup: Type.Optional(Type.Boolean({ description: 'Used only when no primary server is available.', default: false })),
        tls: Type.Optional(Type.Boolean({ description: 'Connect with TLS.', default: false })),
        servername: Type.Optional(Type.String({ description: 'TLS server name to send and verify (default: the host).' })),
        tls_verify: Type.Optional(Type.Boolean({ description: 'Verify the server\'s certificate.', default: true })),
        protocol: Type.Optional(Enum(['http/1.1', 'h2'] as const, { description: 'HTTP version spoken to the server: `h2` is HTTP/2 over TLS (ALPN) with `tls = true`, h2c by prior knowledge without; many requests share one connection.', default: 'http/1.1' })),
      },
      Strict,
    ),
  ],
  { description: 'A server: `host:port`, or a table with `address` and options.', 'x-expected': 'an address such as 127.0.0.1:3000, or a table with `address`' },
);

export const UpstreamSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'Name that locations and streams refer to.' }),
    servers: Type.Union(
      [
        Type.Array(UpstreamServerSchema, { minItems: 1 }),
        Type.String({
          pattern: '^(srv\\+[A-Za-z0-9_.-]+\\.?|etcd\\+/[^\\s]*)$',
          description: 'Service discovery: `srv+_http._tcp.app.internal` (DNS SRV records through the DNS cache) or `etcd+/services/app` (servers registered under leases in `[cluster] store`\'s etcd).',
        }),
      ],
      {
        description: 'The servers of the group: a list, or a discovery source (`srv+NAME`, `etcd+/PREFIX`) whose servers join and leave at run time (with slow start).',
        'x-expected': 'a list of servers, or "srv+NAME" / "etcd+/PREFIX"',
      },
    ),
    policy: Type.Optional(Enum(POLICY_NAMES, { description: 'Load-balancing policy.', default: 'round_robin' })),
    hash_key: Type.Optional(
      Type.String({ pattern: '^(uri|ip|header:.+|cookie:.+)$', description: 'For `hash`: `uri`, `ip`, `header:NAME` or `cookie:NAME`.', default: 'uri', 'x-expected': 'uri, ip, header:NAME or cookie:NAME' }),
    ),
    health_check: Type.Optional(
      Type.Union([HealthCheckSchema, Type.Literal(false)], {
        description: 'Active check of every server. Default: a TCP connect every 2 s. `false`: passive checks only.',
        'x-expected': 'a health check table, or false',
      }),
    ),
    keepalive: Type.Optional(Type.Integer({ minimum: 0, description: 'Idle keep-alive connections kept per server (0 disables reuse).', default: R.pool.maxIdle })),
    keepalive_timeout: Type.Optional(Duration('Close an idle upstream connection after this long.', durationText(R.pool.idleTimeoutMs))),
    shutdown_sessions_on_down: Type.Optional(Type.Boolean({ description: 'Close a server\'s WebSocket connections when it is marked down.', default: false })),
  },
  { ...Strict, description: 'A named group of servers, balanced and health-checked.' },
);

// ---------------------------------------------------------------- HTTP reverse proxy
export const HeaderRulesSchema = Type.Array(
  Type.Union([
    Type.String({ pattern: '^\\s*(set|add|add_if_missing|remove|[+?-])?\\s*\\S' }),
    Type.Object(
      {
        op: Enum(['set', 'add', 'add_if_missing', 'remove'] as const, {}),
        name: Type.String({ minLength: 1 }),
        value: Type.Optional(Type.String()),
      },
      Strict,
    ),
  ]),
  {
    description: 'Header rules: `"set NAME VALUE"`, `"add NAME VALUE"`, `"add_if_missing NAME VALUE"`, `"remove NAME"` (or `+`, `?`, `-` as in the original), or tables `{ op, name, value }`. Values may use {client_ip}, {host}, {uri}, {method}, {scheme}, {upstream_addr}, {status}.',
    'x-expected': 'a list of rules such as "set X-Real-IP {client_ip}"',
  },
);

export const StaticSchema = Type.Object(
  {
    root: Type.String({ minLength: 1, description: 'Directory to serve (relative paths are relative to the configuration file).' }),
    index: Type.Optional(Type.Array(Type.String(), { description: 'Index files of a directory.', default: [...STATIC_DEFAULTS.index] })),
    browse: Type.Optional(Type.Boolean({ description: 'List directories without an index file.', default: STATIC_DEFAULTS.browse })),
    spa: Type.Optional(Type.Boolean({ description: 'Answer unknown paths with the root index file (single-page apps).', default: STATIC_DEFAULTS.spa })),
    try_files: Type.Optional(Type.Array(Type.String(), { description: 'Candidates tried in order (`{path}`, `{path}.html`, `/fallback.html`, `=404`).' })),
    not_found: Type.Optional(Type.String({ description: 'File sent with 404 for a missing path.' })),
    precompressed: Type.Optional(Type.Boolean({ description: 'Serve `.br`, `.zst`, `.gz` siblings by Accept-Encoding.', default: STATIC_DEFAULTS.precompressed })),
    hide: Type.Optional(Type.Array(Type.String(), { description: 'Globs of paths never served.' })),
    dotfiles: Type.Optional(Type.Boolean({ description: 'Serve dot-files (`.well-known` is always served).', default: STATIC_DEFAULTS.dotfiles === 'allow' })),
    cache_control: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Cache-Control by glob, e.g. `{ "*.js" = "public, max-age=31536000, immutable" }`.' })),
    cors: Type.Optional(Type.Boolean({ description: 'Add `Access-Control-Allow-Origin: *`.', default: STATIC_DEFAULTS.cors })),
  },
  { ...Strict, description: 'Serve files from a directory (`@wmproxy/static`).' },
);

export const RespondSchema = Type.Object(
  {
    status: Type.Integer({ minimum: 100, maximum: 599, description: 'Status code.' }),
    body: Type.Optional(Type.String({ description: 'Body text.' })),
    headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Response headers.' })),
  },
  { ...Strict, description: 'A fixed response (nginx `return`, Caddy `respond`).' },
);

export const RateLimitSchema = Type.Object(
  {
    rate: Type.Optional(
      Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?r/[smh]$', description: 'Sustained rate per key: `100r/s`, `6000r/m` or `10r/h` (nginx `limit_req_zone ... rate=`).', 'x-expected': 'a rate such as 100r/s or 6000r/m' }),
    ),
    burst: Type.Optional(Type.Integer({ minimum: 0, description: 'Requests allowed above the rate in a burst, answered without delay (nginx `burst=` with `nodelay`).', default: R.rateLimit.burst })),
    key: Type.Optional(
      Type.String({ pattern: '^(ip|host|uri|header:.+)$', description: 'What identifies a client: `ip`, `host`, `uri` or `header:NAME` (a request without the key is not limited).', default: 'ip', 'x-expected': 'ip, host, uri or header:NAME' }),
    ),
    status: Type.Optional(Type.Integer({ minimum: 400, maximum: 599, description: 'Status of a refused request (with `Retry-After`); 429 is the other usual choice.', default: R.rateLimit.status })),
    max_keys: Type.Optional(Type.Integer({ minimum: 1, description: 'Most clients remembered at once; the least recently seen is forgotten first.', default: R.rateLimit.maxKeys })),
    max_in_flight: Type.Optional(Type.Integer({ minimum: 0, description: 'Most requests in flight at once through this limit, all clients together (0: no limit).', default: R.rateLimit.maxInFlight })),
    scope: Type.Optional(
      Enum(['local', 'cluster'] as const, { description: '`local`: each instance counts alone. `cluster`: the rate holds across every instance sharing `[cluster] redis` (a sliding window per key in Redis; the hot path never waits on it).', default: 'local' }),
    ),
    fallback: Type.Optional(
      Enum(['local', 'open', 'closed'] as const, { description: 'With `scope = "cluster"`, while Redis is unreachable: `local` (this instance\'s share, rate / `[cluster] instances`), `open` (no limit) or `closed` (refuse).', default: 'local' }),
    ),
  },
  { ...Strict, description: 'A request limit (nginx `limit_req` with `nodelay`): over `rate` + `burst`, or over `max_in_flight`, requests are refused at once with `status` and `Retry-After`. Needs `rate` or `max_in_flight`.' },
);

// ---------------------------------------------------------------- WebSocket bridges (ws2tcp keys; [[ws_proxy]] below)
const W = WS_BRIDGE_DEFAULTS;

export const WsAuthSchema = Type.Object(
  {
    users: Type.Optional(Type.Record(Type.String({ minLength: 1, pattern: '^[^:]+$' }), Type.String(), { description: 'HTTP Basic users and passwords (RFC 7617).', 'x-expected': 'a table of user = "password"' })),
    bearer: Type.Optional(Type.Array(Type.String({ minLength: 8 }), { minItems: 1, description: 'Bearer tokens accepted in `Authorization` (RFC 6750), at least 8 characters each.' })),
  },
  { ...Strict, description: 'Credentials a WebSocket client must send (401 with `WWW-Authenticate` otherwise); compared in constant time.' },
);

/** What a ws2tcp endpoint accepts and where it relays: shared by `[[ws_proxy]]` (mode ws2tcp) and the `websocket_to_tcp` location. */
const Ws2TcpKeys = {
  target: Type.Optional(AddressString('The TCP target `host:port` (websockify\'s target). Exactly one of `target`, `upstream`, `token_file`.')),
  upstream: Type.Optional(Type.String({ minLength: 1, description: 'An upstream group as the target: its balancing policy, health checks and passive checks choose the server of each connection.' })),
  token_file: Type.Optional(Type.String({ description: 'websockify token file (`token: host:port` lines; relative to this file), re-read when it changes; the token comes from `?token=` or the path segment below `path`.' })),
  origins: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Origins allowed (`https://app.example`, exact; `*`: any). Default: any Origin. Others get 403.' })),
  auth: Type.Optional(WsAuthSchema),
  subprotocols: Type.Optional(Type.Array(Enum(['binary', 'base64'] as const, {}), { minItems: 1, uniqueItems: true, description: 'Subprotocols served, in order of preference (noVNC/websockify).', default: [...W.subprotocols] })),
  text: Type.Optional(Enum(['refuse', 'forward'] as const, { description: 'Text messages without the base64 subprotocol: refused with close 1003 (as websockify does) or forwarded as bytes.', default: W.text })),
  ping: Type.Optional(Duration('Ping a silent WebSocket peer after this long (`0s`: never).', durationText(W.pingIntervalMs))),
  pong_timeout: Type.Optional(Duration('Close both sides when nothing comes back this long after a ping.', durationText(W.pongTimeoutMs))),
  // `16MiB`, not `16m`: that reads as sixteen minutes too.
  max_message: Type.Optional(Size('Largest message accepted (close 1009 above, checked from each frame header).', sizeText(W.maxMessageSize).replace(/m$/, 'MiB'))),
  connect_timeout: Type.Optional(Duration('Reaching the TCP target (502/504 after).', durationText(W.connectTimeoutMs))),
};

export const WebSocketToTcpSchema = Type.Object(
  {
    ...Ws2TcpKeys,
  },
  { ...Strict, description: 'Upgrade WebSocket requests of this location and relay each to a TCP target as raw bytes (ws2tcp, websockify behind a reverse-proxy server).' },
);

export const LocationSchema = Type.Object(
  {
    path: Type.Optional(Type.String({ pattern: '^/', description: 'Path prefix (nginx `location /api/`). Default `/` when neither `exact` nor `regex` is set.', 'x-expected': 'a path starting with /' })),
    exact: Type.Optional(Type.String({ pattern: '^/', description: 'Exact path (nginx `location = /health`).', 'x-expected': 'a path starting with /' })),
    regex: Type.Optional(Type.String({ format: 'wmproxy-regex', description: 'Regular expression on the path (nginx `location ~`).', 'x-expected': 'a valid regular expression' })),
    regex_flags: Type.Optional(Type.String({ pattern: '^[imsu]*$', description: 'Regex flags, e.g. `i` (nginx `~*`).' })),
    no_regex: Type.Optional(Type.Boolean({ description: 'When this prefix is the longest match, skip regex locations (nginx `^~`).', default: false })),
    methods: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z]+$' }), { description: 'Only for these methods.' })),
    client_ips: Type.Optional(Cidrs('Only for clients in these ranges.')),
    upstream: Type.Optional(Type.String({ minLength: 1, description: 'Proxy to this upstream group.' })),
    static: Type.Optional(StaticSchema),
    respond: Type.Optional(RespondSchema),
    websocket_to_tcp: Type.Optional(WebSocketToTcpSchema),
    request_headers: Type.Optional(HeaderRulesSchema),
    response_headers: Type.Optional(HeaderRulesSchema),
    upstream_host: Type.Optional(Type.String({ description: 'Host header sent upstream (default: the client\'s).' })),
    strip_prefix: Type.Optional(Type.String({ pattern: '^/', description: 'Remove this prefix from the path before proxying.', 'x-expected': 'a path starting with /' })),
    rate_limit: Type.Optional(
      Type.Union([RateLimitSchema, Type.Literal(false)], { description: 'Request limit of this location, replacing the server\'s (`false`: none).', 'x-expected': 'a rate_limit table, or false' }),
    ),
  },
  { ...Strict, description: 'A location: which requests (path, method, client) and what to do (upstream, static, respond, websocket_to_tcp). Exactly one of `upstream`, `static`, `respond`, `websocket_to_tcp`.' },
);

export const TlsSchema = Type.Object(
  {
    cert: Type.String({ description: 'Certificate chain file (PEM).' }),
    key: Type.String({ description: 'Private key file (PEM).' }),
  },
  { ...Strict, description: 'TLS certificate of the server.' },
);

export const HttpServerSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ description: 'Name in logs and /status (default `server-N`).' })),
    listen: Listen('Addresses to listen on. Servers with the same `listen` share the port as virtual hosts.'),
    server_name: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Host names (exact or `*.example.com`). Empty: any host.' })),
    default: Type.Optional(Type.Boolean({ description: 'Answer requests whose Host matches no server of this port (nginx `default_server`).', default: false })),
    tls: Type.Optional(
      Type.Union([TlsSchema, Type.Literal('auto')], {
        description: 'HTTPS: a certificate and key, or `"auto"`: certificates for every `server_name`, obtained and renewed by ACME (see `[acme]`).',
        'x-expected': 'a table with cert and key, or "auto"',
      }),
    ),
    http2: Type.Optional(
      Type.Union([Type.Boolean(), Type.Literal('h2c')], {
        description:
          'HTTP/2 beside HTTP/1.1: `true` offers h2 by ALPN (`h2,http/1.1`) on a `tls` server; `"h2c"` (servers without `tls`) also accepts cleartext HTTP/2 by prior knowledge; `false`: HTTP/1.1 only. Servers sharing a port must agree.',
        default: REVERSE_DEFAULTS.http2,
        'x-expected': 'true, false or "h2c"',
      }),
    ),
    trusted_proxies: Type.Optional(Cidrs('Peers whose X-Forwarded-* headers are kept and extended (inherits `[reverse]`).')),
    request_headers: Type.Optional(HeaderRulesSchema),
    response_headers: Type.Optional(HeaderRulesSchema),
    rate_limit: Type.Optional(RateLimitSchema),
    ...ListenerLimits,
    connection_limit_status: Type.Optional(
      Type.Union([Type.Literal(0), Type.Integer({ minimum: 400, maximum: 599 })], {
        description: 'Status answered (with `Connection: close` and `Retry-After: 1`) to a connection over `max_connections` or `max_connections_per_ip` before it is closed (nginx `limit_conn_status`); `0`: closed without an answer. Servers sharing a port must agree on the limits.',
        default: REVERSE_DEFAULTS.connectionLimitStatus,
        'x-expected': '0 or a status from 400 to 599',
      }),
    ),
    location: Type.Array(LocationSchema, { minItems: 1, description: 'Locations, matched with nginx\'s rules.' }),
  },
  { ...Strict, description: 'An HTTP(S) reverse-proxy server (nginx `server {}`).' },
);

const TD = REVERSE_DEFAULTS.tracing;
export const TracingSchema = Type.Object(
  {
    enabled: Type.Optional(
      Type.Boolean({
        description:
          'Take part in W3C trace context: each request is a span of its own (the `traceparent` sent upstream names it, per attempt, as the parent; `tracestate` passes unchanged), a request without a valid `traceparent` starts a trace, and the access log has the trace id. Off: `traceparent` passes through untouched and the log shows the client\'s trace id.',
        default: TD.enabled,
      }),
    ),
    sample_ratio: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Share of the traces the proxy starts that are sampled (exported); a trace from the client keeps its sampled flag.', default: TD.sampleRatio })),
    service_name: Type.Optional(Type.String({ minLength: 1, description: '`service.name` of exported spans.', default: TD.serviceName })),
    exporter: Type.Optional(
      Enum(TRACING_EXPORTERS, {
        description:
          'Who builds and sends spans. `wmproxy`: its own OTLP/HTTP JSON exporter (only with `otlp_endpoint`; the cheapest). `otel`: the OpenTelemetry API (`@opentelemetry/api`), imported only then: with `otlp_endpoint`, an SDK TracerProvider of wmproxy\'s own (BatchSpanProcessor and the SDK\'s OTLP/HTTP exporter); without, the process\'s global TracerProvider (an embedding application\'s).',
        default: TD.exporter,
      }),
    ),
    otlp_endpoint: Type.Optional(
      Type.String({
        pattern: '^https?://',
        description: 'Export sampled spans (one per request, one per upstream attempt: first, retry, hedge) to this OTLP/HTTP collector URL with JSON encoding, e.g. `http://127.0.0.1:4318/v1/traces`. Unset: no export.',
        'x-expected': 'an http(s) URL',
      }),
    ),
    otlp_headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Extra headers of export requests (an API key).' })),
    otlp_queue_size: Type.Optional(Type.Integer({ minimum: 1, description: 'Spans waiting for export; beyond, spans are dropped (and counted in `wmproxy_trace_spans_dropped_total`).', default: TD.otlp.queueSize })),
    otlp_batch_size: Type.Optional(Type.Integer({ minimum: 1, description: 'Most spans per export request.', default: TD.otlp.batchSize })),
    otlp_interval: Type.Optional(Duration('Send queued spans at least this often.', durationText(TD.otlp.intervalMs))),
    otlp_timeout: Type.Optional(Duration('One export request\'s time limit; its spans are counted as failed after it.', durationText(TD.otlp.timeoutMs))),
  },
  { ...Strict, description: 'Trace propagation and export of the reverse proxy (`[reverse.tracing]`).' },
);

export const ReverseSchema = Type.Object(
  {
    connect_timeout: Type.Optional(Duration('Connecting to an upstream server (nginx proxy_connect_timeout).', durationText(T.connectMs))),
    read_timeout: Type.Optional(Duration('From the end of the request to the first byte of the response (nginx proxy_read_timeout).', durationText(T.firstByteMs))),
    idle_timeout: Type.Optional(Duration('Longest silence while a response body streams.', durationText(T.idleMs))),
    client_header_timeout: Type.Optional(Duration('Receiving a request head once it started (nginx client_header_timeout).', durationText(T.clientHeaderMs))),
    client_body_timeout: Type.Optional(Duration('Longest silence while a request body streams (nginx client_body_timeout).', durationText(T.clientBodyMs))),
    keepalive_timeout: Type.Optional(Duration('How long an idle client keep-alive connection is kept (nginx keepalive_timeout).', durationText(T.keepAliveMs))),
    tunnel_idle_timeout: Type.Optional(Duration('Idle timeout of WebSocket connections.', durationText(T.tunnelIdleMs))),
    request_timeout: Type.Optional(Duration('The whole exchange, from the request head to the end of the response (`0s`: no limit; 504 when nothing was sent yet).', durationText(T.requestMs))),
    retries: Type.Optional(Type.Integer({ minimum: 1, description: 'Most attempts per request, the first included (nginx proxy_next_upstream_tries).', default: R.retries.tries })),
    retry_timeout: Type.Optional(Duration('No new attempt after this long (nginx proxy_next_upstream_timeout).', durationText(R.retries.totalMs))),
    retry_on_status: Type.Optional(Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { description: 'Statuses that make an idempotent request try the next server.', default: [...R.retries.onStatus] })),
    retry_methods: Type.Optional(
      Type.Array(Type.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", 'x-expected': 'an HTTP method such as GET' }), {
        description:
          'Methods that may be sent twice: retried once the request went out, and hedged. Default the safe methods; add PUT and DELETE only where the backends really are idempotent (nginx retries them by default).',
        default: [...R.retries.methods],
      }),
    ),
    retry_budget_percent: Type.Optional(
      Type.Number({
        minimum: 0,
        description: 'Retry budget: retries in flight to an upstream may be at most this percentage of its requests in flight, or `retry_budget_min_concurrency`, whichever is more; failed connects are not counted (nothing reached the server).',
        default: R.retries.budgetPercent,
      }),
    ),
    retry_budget_min_concurrency: Type.Optional(Type.Integer({ minimum: 0, description: 'Retries in flight the retry budget always allows per upstream.', default: R.retries.budgetMinConcurrency })),
    retry_body_buffer: Type.Optional(Size('Request bodies up to this size are kept so that a request of `retry_methods` can be replayed to the next server; larger ones are streamed and not retried (`0`: never).', sizeText(R.retryBodyBuffer))),
    hedge_delay: Type.Optional(Duration('Race a second connect to another server when the first has not completed after this long (`0s`: off).', durationText(R.hedgeDelayMs))),
    hedge_request: Type.Optional(
      Duration(
        'Request hedging: an idempotent request without a body that has no response byte after the server\'s recent p99 first-byte time (at least 10 ms, at most this) is also sent to another server; the first answer wins, and a server that keeps losing is skipped (`0s`: off).',
        durationText(R.requestHedgeMs),
      ),
    ),
    hedge_request_budget: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Request hedges earned per request (0.1: at most about one hedge per ten requests, banked up to one second\'s worth).', default: R.requestHedgeBudget })),
    resolve_ttl: Type.Optional(Duration('How long the addresses of an upstream DNS name are used when the resolver gives no TTL (nginx `resolver valid=`).', durationText(R.dns.ttlMs))),
    resolve_min_ttl: Type.Optional(Duration('Shortest time addresses are cached, and the wait before retrying a failed re-resolution (the last good addresses stay in use).', durationText(R.dns.minTtlMs))),
    resolve_max_ttl: Type.Optional(Duration('Longest time addresses are cached, whatever the record says.', durationText(R.dns.maxTtlMs))),
    resolvers: Type.Optional(
      Type.Array(AddressString('A DNS server, `host:port` (nginx `resolver`).'), {
        description: 'DNS servers for upstream names and SRV discovery (default: the system\'s). Set, names are resolved with their records\' TTLs through them.',
      }),
    ),
    resolve_record_ttl: Type.Optional(Type.Boolean({ description: 'Query DNS directly (A and AAAA) and use the records\' TTLs, instead of the system resolver (hosts file, nsswitch) with `resolve_ttl`.', default: R.dns.recordTtl })),
    max_header_size: Type.Optional(Size('Largest request head (431 above).', sizeText(R.maxHeadSize))),
    trusted_proxies: Type.Optional(Cidrs('Peers whose X-Forwarded-* headers are kept (inherited by servers).')),
    request_headers: Type.Optional(HeaderRulesSchema),
    response_headers: Type.Optional(HeaderRulesSchema),
    shutdown_timeout: Type.Optional(Duration('How long in-flight requests may take to finish on reload or stop.', durationText(R.shutdownDeadlineMs))),
    tracing: Type.Optional(TracingSchema),
  },
  { ...Strict, description: 'Settings of every reverse-proxy server; `request_headers`, `response_headers` and `trusted_proxies` are inherited by servers and locations (rules of the outer level apply first).' },
);

// ---------------------------------------------------------------- streams
export const StreamSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ description: 'Name in logs and /status (default `stream-N`).' })),
    listen: Listen('Addresses to listen on.'),
    protocol: Type.Optional(Enum(['tcp', 'udp'] as const, { description: 'TCP connections or UDP datagrams.', default: 'tcp' })),
    upstream: Type.String({ minLength: 1, description: 'Upstream group to balance over.' }),
    tries: Type.Optional(Type.Integer({ minimum: 1, description: 'TCP: most servers tried when connects fail.', default: R.stream.tries })),
    idle_timeout: Type.Optional(Duration(`TCP: close after this long without traffic (default ${durationText(R.stream.tcpIdleTimeoutMs)}); UDP: forget a client after this long (default ${durationText(R.stream.udpIdleTimeoutMs)}).`)),
    ...ListenerLimits,
  },
  { ...Strict, description: 'A TCP or UDP stream listener (nginx `stream {}`).' },
);

export const AcmeSchema = Type.Object(
  {
    email: Type.Optional(Type.String({ pattern: '^[^\\s@]+@[^\\s@]+$', description: 'Account contact: the CA sends expiry warnings here.', 'x-expected': 'an e-mail address' })),
    directory: Type.Optional(
      Type.String({
        pattern: '^(production|staging|https?://\\S+)$',
        description: '`production` (Let\'s Encrypt), `staging` (Let\'s Encrypt\'s test CA: untrusted certificates, high rate limits) or the directory URL of another ACME CA.',
        default: 'production',
        'x-expected': '"production", "staging" or an ACME directory URL',
      }),
    ),
    ca_root: Type.Optional(Type.String({ description: 'PEM file of the CA certificate the directory\'s HTTPS chains to (a private ACME CA such as Pebble or step-ca).' })),
    challenges: Type.Optional(
      Type.Array(Enum(['tls-alpn-01', 'http-01'] as const, { description: 'challenge type' }), {
        minItems: 1,
        uniqueItems: true,
        description: 'Challenge types in order of preference: `tls-alpn-01` needs the TLS port (443) reachable from the CA, `http-01` port 80.',
        default: [...ACME_DEFAULTS.challenges],
      }),
    ),
    storage: Type.Optional(Type.String({ description: 'Directory of account keys, certificates and locks (created 0700, files 0600). Instances sharing it order each certificate once.', default: ACME_DEFAULTS.storage })),
    // Not a timer: longer than Duration's 24-day bound is fine (30d is usual).
    renew_before: Type.Optional(
      Type.String({ pattern: DURATION_PATTERN, description: 'Renew this long before expiry (default: when a third of the lifetime is left, with a little jitter).', examples: ['30d', '720h'], 'x-expected': 'a duration such as 30d or 720h' }),
    ),
    order_timeout: Type.Optional(Duration('An order not complete after this long (a CA that never validates, a stuck poll) fails with an error and is retried with backoff.', durationText(ACME_DEFAULTS.orderTimeoutMs))),
    redirect: Type.Optional(Type.Boolean({ description: 'Listen on `http_port` and redirect to HTTPS (answering HTTP-01 there too) when a server has `tls = "auto"` (or the tunnel server `https_tls = "auto"` without `http_listen`) and nothing else uses that port.', default: ACME_DEFAULTS.redirect })),
    http_port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'Port of the automatic redirect listener, where the CA sends HTTP-01 requests (80; another only behind a port forward or with a test CA).', default: ACME_DEFAULTS.httpPort })),
  },
  { ...Strict, description: 'Automatic HTTPS (ACME, RFC 8555) for servers with `tls = "auto"`.' },
);

// ---------------------------------------------------------------- tunnel
const PortRangeText = Type.Union([Port, Type.String({ pattern: '^\\s*\\d{1,5}(\\s*-\\s*\\d{1,5})?(\\s*,\\s*\\d{1,5}(\\s*-\\s*\\d{1,5})?)*\\s*$' })], {
  'x-expected': 'a port or a range such as 15000-15999',
});

export const TunnelCredentialSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'Name of the client in logs, /status and metrics.' }),
    token: Type.String({ minLength: 8, description: 'Its secret (challenge/response: never sent in clear).' }),
    allow_ports: Type.Optional(Type.Array(PortRangeText, { description: 'Public ports it may ask for (default: the server-wide `allow_ports`).' })),
    allow_domains: Type.Optional(Type.Array(Type.String(), { description: 'Domains it may serve over http/https, `*.example.com` allowed (default: the server-wide `allow_domains`).' })),
  },
  { ...Strict, description: 'One client credential (frp per-user tokens; rathole per-service tokens).' },
);

export const TunnelServerSchema = Type.Object(
  {
    listen: Type.Optional(AddressString('Where tunnel clients connect (default 127.0.0.1:7000).')),
    token: Type.Optional(Type.String({ minLength: 8, description: 'Shared secret of every client (or give per-client `clients`).' })),
    clients: Type.Optional(Type.Array(TunnelCredentialSchema, { description: 'Per-client tokens with their own allowed ports and domains.' })),
    allow_ports: Type.Optional(Type.Array(PortRangeText, { description: 'Public ports any client may ask for (default: any; frp `allowPorts`).' })),
    allow_domains: Type.Optional(Type.Array(Type.String(), { description: 'Domains any client may serve over http/https (default: any).' })),
    public_host: Type.Optional(Type.String({ description: 'IP address public tcp/udp/proxy mapping ports bind on (default: the host of `listen`).' })),
    cert: Type.Optional(Type.String({ description: 'TLS certificate (PEM) clients see; default: a self-signed one kept in `state_dir`.' })),
    key: Type.Optional(Type.String({ description: 'Private key (PEM) of `cert`.' })),
    client_ca: Type.Optional(Type.String({ description: 'Require client certificates signed by this CA (PEM): mutual TLS (the original `two_way_tls`).' })),
    state_dir: Type.Optional(Type.String({ description: 'Directory of the self-signed certificate (relative to the file).', default: 'tunnel-state' })),
    plain: Type.Optional(Type.Boolean({ description: 'No TLS (only behind another TLS layer or on loopback).', default: false })),
    heartbeat: Type.Optional(Duration('Ping interval both ways; a peer silent for two is dropped.', '10s')),
    data_pool: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 256,
        default: 4,
        description:
          'Idle data connections each client keeps open to the server (rathole\'s pool; see the tunnel README for the figures). A visitor starts on the session\'s multiplexed connection; a bulk one (4 MiB within a second) moves to an idle data connection and travels on it as raw bytes (TLS and TCP flow control, no framing). Clients that do not support the move take one at open instead. `0`: always the multiplexed connection.',
      }),
    ),
    data_max_busy: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 65535,
        default: 16,
        description:
          'Most visitors one client carries on data connections at once; beyond, visitors ride the multiplexed connection although idle data connections wait. A data connection is a TLS connection in both processes per visitor: this bounds what visitors piled up idle cost. `0`: data connections are never used.',
      }),
    ),
    data_promote_bytes: Type.Optional(
      Size(
        'With a pool, a visitor that moves this many bytes (both ways together) within a second moves from the multiplexed connection to an idle data connection, in order both ways. `0`: a visitor takes an idle data connection at open instead (costs small requests and time to first byte; see the tunnel README).',
        '4MiB',
      ),
    ),
    max_handshakes: Type.Optional(
      Type.Integer({
        minimum: 0,
        default: 1024,
        description:
          'Most connections on the tunnel port not yet authenticated, every address together (sshd `MaxStartups`); beyond, a new one is closed at once (one log line per 10 s). A flood that never authenticates holds at most this many descriptors, each up to the handshake timeout. `0`: no limit.',
      }),
    ),
    max_handshakes_per_ip: Type.Optional(
      Type.Integer({ minimum: 0, default: 64, description: 'Most connections on the tunnel port not yet authenticated from one IP address; beyond, a new one is closed at once. `0`: no limit.' }),
    ),
    auth_penalty: Type.Optional(
      Type.Object(
        {
          enabled: Type.Optional(Type.Boolean({ default: true, description: 'Penalize sources that fail to authenticate (OpenSSH `PerSourcePenalties`).' })),
          allowance: Type.Optional(Type.Integer({ minimum: 0, default: 2, description: 'Failed logins a source may make before its first penalty (`0`: the first failure is penalized).' })),
          first: Type.Optional(Duration('The first penalty; each further failure doubles it, up to `max`.', '30s')),
          max: Type.Optional(Duration('The longest penalty; a source that has not failed for this long (and is not penalized) starts again from zero failures.', '10m')),
          max_sources: Type.Optional(
            Type.Integer({
              minimum: 1,
              default: 65536,
              description:
                'Sources tracked at most, for IPv4 and for IPv6 each (sshd `max-sources4/6`). Full, sources not penalized make room; full of penalties, a new failing source is not tracked (sshd\'s permissive overflow: refusing everyone would let a spray of addresses lock every client out) and the handshake limits still bound it.',
            }),
          ),
          exempt: Type.Optional(Cidrs('Addresses or ranges never penalized (sshd `PerSourcePenaltyExemptList`; default none, loopback included).')),
        },
        {
          additionalProperties: false,
          description:
            'Per-source penalties on failed logins (a wrong token on a session, a wrong proof on a data connection). A source (an IPv4 address, an IPv6 /64) that fails more than `allowance` times is refused for `first`, doubling with each further failure up to `max`: while penalized, its connections to the tunnel port are closed at accept, before TLS. One warn line when a source enters a penalty (`tunnel auth penalty: source penalized client=… failures=… seconds=…`, for fail2ban); refusals are counted and logged once per 10 s. A successful login changes nothing.',
        },
      ),
    ),
    visitor_wait: Type.Optional(Duration('How long a visitor waits for an absent client before being closed.', '0s')),
    drain: Type.Optional(Duration('How long open streams may take to finish on stop.', '10s')),
    max_connections: Type.Optional(
      Type.Integer({ minimum: 0, description: 'Most visitor connections open at once on each public port (`http_listen`, `https_listen`, tcp and proxy mapping ports). `0`: only the process-wide `max_connections`.', default: 0 }),
    ),
    max_connections_per_ip: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: 'Most visitor connections open at once from one IP address on each public port (`http_listen`, `https_listen`, tcp and proxy mapping ports); more are refused at once. `0`: no limit.',
        default: 0,
      }),
    ),
    http_listen: Type.Optional(AddressString('Serve http mappings here, by Host and path, through the reverse proxy engine: the clients of one mapping form a balanced, health-checked upstream group.')),
    https_listen: Type.Optional(AddressString('Serve https mappings here by SNI passthrough (and http mappings over TLS with `https_cert`).')),
    https_cert: Type.Optional(Type.String({ description: 'Certificate (PEM) of http mappings served on `https_listen` (TLS terminated here).' })),
    https_key: Type.Optional(Type.String({ description: 'Private key (PEM) of `https_cert`.' })),
    https_tls: Type.Optional(
      Type.Literal('auto', {
        description: '`"auto"`: serve http mappings on `https_listen` with certificates obtained and renewed by ACME (see `[acme]`) for the exact domains of the mappings whose clients are connected; needs `allow_domains`.',
        'x-expected': '"auto"',
      }),
    ),
    http_policy: Type.Optional(Enum(['round_robin', 'least_conn', 'random_two', 'ip_hash', 'hash', 'first'] as const, { description: 'Balancing among the clients of one http mapping.', default: 'round_robin' })),
    http_health: Type.Optional(
      Type.Object(
        {
          path: Type.String({ description: 'GET this path of each client\'s local service, through its tunnel.' }),
          interval: Type.Optional(Duration('Time between checks.', '2s')),
          rise: Type.Optional(Type.Integer({ minimum: 1, description: 'Passing checks that bring a client back.', default: 2 })),
          fall: Type.Optional(Type.Integer({ minimum: 1, description: 'Failing checks that take a client out.', default: 3 })),
        },
        { ...Strict, description: 'Active health checks of http mappings (default: passive checks only).' },
      ),
    ),
  },
  { ...Strict, description: 'The public side of the intranet tunnel (`wmproxy tunnel server`; frps; the original `center_addr`).' },
);

export const TunnelMappingSchema = Type.Union(
  [
    Type.String({ description: 'A map spec: `db=tcp:127.0.0.1:5432:15432`, `dns=udp:127.0.0.1:53:15353`, `out=proxy::18090`, `web=http:127.0.0.1:8080@app.example.com`.' }),
    Type.Object(
      {
        name: Type.String({ minLength: 1, description: 'Name (several clients serving one name form a group).' }),
        kind: Enum(['tcp', 'udp', 'http', 'https', 'proxy'] as const, { description: 'What is exposed.' }),
        local: Type.Optional(Type.String({ description: 'Local service `host:port` (not for proxy).' })),
        remote_port: Type.Optional(Port),
        domains: Type.Optional(Type.Array(Type.String(), { description: 'http/https: names or `*.example.com`.' })),
        path: Type.Optional(Type.String({ description: 'http/https: path prefix.' })),
        proxy_protocol: Type.Optional(Enum(['v1', 'v2'] as const, { description: 'Send a PROXY protocol header to the local service.' })),
        basic_auth: Type.Optional(
          Type.Record(Type.String({ minLength: 1, pattern: '^[^:]+$' }), Type.String(), { description: 'http: users and passwords visitors must send (HTTP Basic, checked on the server; frp `httpUser`/`httpPassword`).' }),
        ),
        basic_auth_realm: Type.Optional(Type.String({ maxLength: 128, description: 'http: realm of the Basic challenge.', default: 'wmproxy' })),
        request_headers: Type.Optional(HeaderRulesSchema),
        response_headers: Type.Optional(HeaderRulesSchema),
      },
      Strict,
    ),
  ],
  { 'x-expected': 'a map spec string or a mapping table' },
);

export const TunnelClientSchema = Type.Object(
  {
    server: Type.String({ minLength: 3, description: 'Tunnel server `host:port`.' }),
    token: Type.String({ minLength: 8, description: 'Secret shared with the server.' }),
    name: Type.Optional(Type.String({ description: 'Name shown in the server logs.' })),
    ca: Type.Optional(Type.String({ description: 'CA certificate (PEM) to verify the server against.' })),
    fingerprint: Type.Optional(Type.String({ description: 'Pin the server certificate by SHA-256 fingerprint (`SHA256:<base64>` or hex).' })),
    servername: Type.Optional(Type.String({ description: 'Name verified in the server certificate (default the server host).' })),
    cert: Type.Optional(Type.String({ description: 'Client certificate (PEM) for mutual TLS.' })),
    key: Type.Optional(Type.String({ description: 'Private key (PEM) of `cert`.' })),
    plain: Type.Optional(Type.Boolean({ description: 'No TLS (only for a server with `plain = true`).', default: false })),
    mappings: Type.Array(TunnelMappingSchema, { minItems: 1, description: 'What this client exposes.' }),
    proxy_users: Type.Optional(
      Type.Record(Type.String({ minLength: 1, pattern: '^[^:]+$' }), Type.String(), { description: '`proxy` mappings: users and passwords a visitor must give (Basic `Proxy-Authorization` for HTTP, RFC 1929 for SOCKS5).' }),
    ),
    proxy_allow: Type.Optional(Cidrs('`proxy` mappings: visitor addresses served (CIDR). Empty: everyone.')),
    proxy_insecure_open: Type.Optional(
      Type.Boolean({ description: 'Serve `proxy` mappings without `proxy_users` or `proxy_allow`: an open proxy into this network for anyone who reaches the public port.', default: false }),
    ),
  },
  { ...Strict, description: 'The private side of the intranet tunnel (`wmproxy tunnel client`; frpc; the original `[proxy] server`).' },
);

export const TunnelSchema = Type.Object(
  {
    server: Type.Optional(TunnelServerSchema),
    client: Type.Optional(Type.Union([TunnelClientSchema, Type.Array(TunnelClientSchema)], { 'x-expected': 'a client table or a list of them' })),
  },
  { ...Strict, description: 'Intranet tunnelling (内网穿透): a server on a public host, clients behind NAT.' },
);

// ---------------------------------------------------------------- WebSocket bridges
export const WsProxySchema = Type.Object(
  {
    name: Type.Optional(Type.String({ description: 'Name in logs and /status (default `ws-proxy-N`).' })),
    mode: Enum(['ws2tcp', 'tcp2ws', 'tcp2wss'] as const, { description: '`ws2tcp`: WebSocket clients in, TCP out (websockify). `tcp2ws` / `tcp2wss`: TCP clients in, each a WebSocket client connection to `url` out.' }),
    listen: Listen('Addresses to listen on.', W.listen),
    ...Ws2TcpKeys,
    path: Type.Optional(Type.String({ pattern: '^/', description: 'ws2tcp: serve upgrades at this path (a trailing `/` matches everything below it; 404 elsewhere).', default: W.path, 'x-expected': 'a path starting with /' })),
    tls: Type.Optional(TlsSchema),
    url: Type.Optional(Type.String({ pattern: '^wss?://', description: 'tcp2ws / tcp2wss: the WebSocket URL each TCP connection is bridged to; its path and query are sent as they are.', 'x-expected': 'a ws:// or wss:// URL' })),
    host: Type.Optional(Type.String({ minLength: 1, description: 'tcp2ws: `Host` to send instead of the URL\'s authority.' })),
    server_name: Type.Optional(Type.String({ minLength: 1, description: 'tcp2wss: TLS server name (SNI, and the name verified) instead of the URL\'s host.' })),
    ca: Type.Optional(Type.String({ description: 'tcp2wss: CA certificate(s) (PEM file) the server\'s certificate must chain to, besides the system\'s.' })),
    insecure: Type.Optional(Type.Boolean({ description: 'tcp2wss: do not verify the server\'s certificate (anyone on the path can read the traffic).', default: false })),
    origin: Type.Optional(Type.String({ minLength: 1, description: 'tcp2ws: the `Origin` to send.' })),
    headers: Type.Optional(Type.Record(Type.String({ minLength: 1 }), Type.String(), { description: 'tcp2ws: extra request fields of the upgrade.' })),
    offer: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'tcp2ws: subprotocols offered in `Sec-WebSocket-Protocol`.' })),
    handshake_timeout: Type.Optional(Duration('The upgrade request (ws2tcp) or the 101 answer (tcp2ws) must come within this time.', durationText(W.handshakeTimeoutMs))),
    ...ListenerLimits,
  },
  { ...Strict, description: 'A WebSocket ↔ TCP bridge (`wmproxy ws-proxy`; the original\'s `[[stream.server]] bind_mode`).' },
);

// ---------------------------------------------------------------- the file
export const ClusterSchema = Type.Object(
  {
    store: Type.Optional(
      Type.String({
        pattern: '^etcd://',
        description: 'etcd holding the shared configuration (`etcd://HOST:PORT[,...]/PREFIX`): `wmproxy run -c FILE` follows it as with `--store` (this file serves until something is pushed or while etcd is unreachable at start), and `servers = "etcd+/PREFIX"` discovers the servers registered there.',
        'x-expected': 'an etcd:// URL',
      }),
    ),
    redis: Type.Optional(Type.String({ pattern: '^rediss?://', description: 'Redis holding the counters of `scope = "cluster"` rate limits: `redis://[user:pass@]host:port[/db]`.', 'x-expected': 'a redis:// URL' })),
    instances: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024, description: 'Instances sharing the limits: with Redis unreachable, a `fallback = "local"` limit allows rate / instances here.', default: CLUSTER_DEFAULTS.instances })),
    redis_timeout: Type.Optional(Duration('A Redis call not answered within this time fails, and the fallback applies.', durationText(CLUSTER_DEFAULTS.redisTimeoutMs))),
  },
  { ...Strict, description: 'What several instances share (`wmproxy run --store` shares the configuration itself).' },
);

export const ConfigSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String({ description: 'JSON Schema of this file (for editors).' })),
    workers: Type.Optional(
      Type.Union([Type.Literal('auto'), Type.Integer({ minimum: 1, maximum: 256 })], {
        description: 'Processes sharing the listeners (nginx worker_processes). `auto`: one per core.',
        default: CONTROL_DEFAULTS.workers,
        'x-expected': '"auto" or a number of processes',
      }),
    ),
    max_connections: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: 'Most client connections each process keeps open at once over every listener (HAProxy global `maxconn`, nginx `worker_connections`); more are refused at once. The default keeps two descriptors per connection (client and upstream) under a 20 000 file-descriptor limit with room to spare. `0`: no limit.',
        default: CORE_NET_DEFAULTS.processMaxConnections,
      }),
    ),
    log: Type.Optional(LogSchema),
    control: Type.Optional(ControlSchema),
    cluster: Type.Optional(ClusterSchema),
    health: Type.Optional(HealthSchema),
    reverse: Type.Optional(ReverseSchema),
    proxy: Type.Optional(Type.Array(ForwardProxySchema, { description: 'Forward proxies (`[[proxy]]`).' })),
    upstream: Type.Optional(Type.Array(UpstreamSchema, { description: 'Upstream groups (`[[upstream]]`).' })),
    server: Type.Optional(Type.Array(HttpServerSchema, { description: 'Reverse-proxy servers (`[[server]]`).' })),
    stream: Type.Optional(Type.Array(StreamSchema, { description: 'TCP/UDP streams (`[[stream]]`).' })),
    ws_proxy: Type.Optional(Type.Array(WsProxySchema, { description: 'WebSocket ↔ TCP bridges (`[[ws_proxy]]`).' })),
    acme: Type.Optional(AcmeSchema),
    tunnel: Type.Optional(TunnelSchema),
  },
  {
    ...Strict,
    $id: 'https://wmproxy.dev/wmproxy.schema.json',
    title: 'wmproxy configuration',
    description: 'One file for every wmproxy service: forward proxies, reverse-proxy servers, upstreams with health checks, static files, TCP/UDP streams, the control API and logging.',
  },
);

/** The file as written (before defaults). */
export type ConfigFile = Static<typeof ConfigSchema>;
export type ForwardProxyFile = Static<typeof ForwardProxySchema>;
export type UpstreamFile = Static<typeof UpstreamSchema>;
export type HttpServerFile = Static<typeof HttpServerSchema>;
export type LocationFile = Static<typeof LocationSchema>;
export type RateLimitFile = Static<typeof RateLimitSchema>;
export type StreamFile = Static<typeof StreamSchema>;
export type WsProxyFile = Static<typeof WsProxySchema>;
export type WebSocketToTcpFile = Static<typeof WebSocketToTcpSchema>;
export type TunnelFile = Static<typeof TunnelSchema>;
export type TunnelClientFile = Static<typeof TunnelClientSchema>;
export type TunnelServerFile = Static<typeof TunnelServerSchema>;
export type HealthCheckFile = Static<typeof HealthCheckSchema>;
export type HeaderRulesFile = Static<typeof HeaderRulesSchema>;
export type StaticFile = Static<typeof StaticSchema>;
export type AcmeFile = Static<typeof AcmeSchema>;
export type TracingFile = Static<typeof TracingSchema>;
export type { TSchema };
