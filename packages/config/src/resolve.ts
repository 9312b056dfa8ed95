/**
 * From a schema-valid file to a WmproxyConfig: defaults, units, inheritance,
 * and the checks a schema cannot express (references between sections,
 * address conflicts, open proxies, missing files). Every problem found is
 * added to the issue list; nothing stops at the first.
 */
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { isIP } from 'node:net';
import { ACME_DEFAULTS, ACME_DIRECTORIES } from '@wmproxy/acme';
import { CORE_NET_DEFAULTS, DEFAULT_DENY_DESTINATIONS, formatHostPort, isLoopback, isValidHostname, normaliseFingerprint, parseAddress } from '@wmproxy/core-net';
import { HTTP_PROXY_DEFAULTS } from '@wmproxy/http-proxy';
import { SOCKS5_DEFAULTS } from '@wmproxy/socks5';
import { STATIC_DEFAULTS } from '@wmproxy/static';
import { WS_BRIDGE_DEFAULTS } from '@wmproxy/ws-bridge';
import { DEFAULT_TUNNEL_LISTEN, MappingError, parseMapSpec, parsePortRanges, validateMapping, type Mapping } from '@wmproxy/tunnel';
import { CONTROL_DEFAULTS } from './control-defaults.js';
import type { CheckSpec, HealthCheckerOptions } from '@wmproxy/health';
import { describeValue, type IssueList } from './errors.js';
import type {
  ConfigFile,
  ForwardProxyFile,
  HeaderRulesFile,
  HealthCheckFile,
  HttpServerFile,
  LocationFile,
  RateLimitFile,
  StreamFile,
  WebSocketToTcpFile,
  WsProxyFile,
  UpstreamFile,
  TunnelClientFile,
  TunnelServerFile,
  TracingFile,
} from './schema.js';
import { CLUSTER_DEFAULTS, REVERSE_DEFAULTS, type RateLimitSpec } from '@wmproxy/reverse';
import type {
  AcmeConfig,
  ForwardProxyConfig,
  HeaderRuleConfig,
  HttpServerConfig,
  LocationConfig,
  ReverseConfig,
  StaticConfig,
  StreamConfig,
  Ws2TcpConfig,
  WsProxyConfig,
  UpstreamConfig,
  UpstreamHealthConfig,
  WmproxyConfig,
  TunnelClientConfig,
  TunnelConfig,
  TunnelMappingConfig,
  TunnelPortRange,
  TunnelServerConfig,
  TracingConfig,
} from './types.js';
import { durationMs, parseDuration, parseSize } from './units.js';


export const DEFAULT_CONTROL_LISTEN = CONTROL_DEFAULTS.listen;
export const DEFAULT_PROXY_LISTEN = HTTP_PROXY_DEFAULTS.bind;

const list = (value: string | string[] | undefined): string[] => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

/** Canonical `host:port` of a listen address, to find two services on one port (port 0 never conflicts). */
function listenKey(address: string): string | undefined {
  const parsed = parseAddress(address);
  if (parsed.port === 0) return undefined;
  return formatHostPort(parsed.wildcard ? '*' : parsed.host.toLowerCase(), parsed.port);
}

const RULE_OPS: Record<string, HeaderRuleConfig['op']> = {
  set: 'set',
  add: 'add',
  add_if_missing: 'add_if_missing',
  remove: 'remove',
  '+': 'add',
  '?': 'add_if_missing',
  '-': 'remove',
};
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `"set X-Real-IP {client_ip}"`, `"+ Via wmproxy"`, `"- Server"`, `"X-A value"` (set). */
export function parseHeaderRule(text: string): HeaderRuleConfig | string {
  const trimmed = text.trim();
  const first = /^(\S+)\s*/.exec(trimmed);
  if (!first) return 'a rule such as "set NAME VALUE"';
  let op = RULE_OPS[first[1]!];
  let rest = trimmed.slice(first[0].length);
  if (!op) {
    op = 'set';
    rest = trimmed;
  }
  const nameMatch = /^(\S+)\s*/.exec(rest);
  if (!nameMatch) return `a header name after "${first[1]}"`;
  const name = nameMatch[1]!;
  const value = stripQuotes(rest.slice(nameMatch[0].length));
  if (!TOKEN.test(name)) return 'a valid header name';
  if (op === 'remove') return { op, name };
  if (value === '') return `a value for header ${name}`;
  return { op, name, value };
}

function stripQuotes(text: string): string {
  const trimmed = text.trim();
  if (trimmed.length >= 2 && (trimmed[0] === '"' || trimmed[0] === "'") && trimmed.endsWith(trimmed[0]!)) return trimmed.slice(1, -1);
  return trimmed;
}

const LONG_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** A duration the schema's pattern accepted, without parseDuration's timer bound (`renew_before = "30d"` is no timer). */
function longDurationMs(text: string): number {
  let total = 0;
  for (const part of text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)/g)) total += Number(part[1]) * LONG_UNITS[part[2]!]!;
  return total;
}

class Resolver {
  /** Listen key → who uses it, to report conflicts. */
  private readonly tcpListeners = new Map<string, string>();
  private readonly udpListeners = new Map<string, string>();

  /** `[cluster] redis`, read first: `scope = "cluster"` rate limits need it. */
  private readonly clusterRedis: string | undefined;

  constructor(
    private readonly file: ConfigFile,
    private readonly issues: IssueList,
    private readonly baseDir: string,
  ) {
    this.clusterRedis = file.cluster?.redis;
  }

  private claim(addresses: string[], owner: string, path: Array<string | number>, udp = false): void {
    const table = udp ? this.udpListeners : this.tcpListeners;
    addresses.forEach((address, index) => {
      let key: string | undefined;
      try {
        key = listenKey(address);
      } catch {
        return; // reported by the schema
      }
      if (key === undefined) return;
      const other = table.get(key);
      if (other !== undefined && other !== owner) {
        this.issues.add([...path, ...(addresses.length > 1 ? [index] : [])], `an address no other service listens on (${other} has it)`, JSON.stringify(address));
      } else table.set(key, owner);
    });
  }

  private path(base: string): string {
    return isAbsolute(base) ? base : resolvePath(this.baseDir, base);
  }

  resolve(): Omit<WmproxyConfig, 'file' | 'warnings' | 'source'> {
    const file = this.file;
    const log = file.log ?? {};
    const control = file.control ?? {};
    const controlListen = control.listen ?? DEFAULT_CONTROL_LISTEN;
    const controlEnabled = control.enabled ?? CONTROL_DEFAULTS.enabled;
    if (controlEnabled) {
      this.claim([controlListen], 'control', ['control', 'listen']);
      try {
        const host = parseAddress(controlListen);
        if ((host.wildcard || !isLoopback(host.host)) && control.token === undefined) {
          this.issues.add(['control', 'token'], `a token, since control.listen ${controlListen} is not a loopback address`, 'nothing');
        }
      } catch {
        /* reported by the schema */
      }
    }
    const upstreams = (file.upstream ?? []).map((upstream, index) => this.upstream(upstream, index));
    const names = new Set<string>();
    upstreams.forEach((upstream, index) => {
      if (names.has(upstream.name)) this.issues.add(['upstream', index, 'name'], 'a name used by no other upstream', JSON.stringify(upstream.name));
      names.add(upstream.name);
    });
    const reverse = this.reverse();
    const servers = this.servers(names);
    const streams = (file.stream ?? []).map((stream, index) => this.stream(stream, index, names));
    const wsProxies = (file.ws_proxy ?? []).map((bridge, index) => this.wsProxy(bridge, index, names));
    const proxies = (file.proxy ?? []).map((proxy, index) => this.proxy(proxy, index));
    // Service names identify listeners in /status, metrics and across reloads.
    const serviceNames = new Map<string, string>();
    const named: Array<[string, Array<string | number>]> = [
      ...proxies.map((proxy, index): [string, Array<string | number>] => [proxy.name, ['proxy', index, 'name']]),
      ...servers.map((server, index): [string, Array<string | number>] => [server.name, ['server', index, 'name']]),
      ...streams.map((stream, index): [string, Array<string | number>] => [stream.name, ['stream', index, 'name']]),
      ...wsProxies.map((bridge, index): [string, Array<string | number>] => [bridge.name, ['ws_proxy', index, 'name']]),
    ];
    for (const [name, path] of named) {
      const other = serviceNames.get(name);
      if (other !== undefined) this.issues.add(path, `a name no other service has (${other} is "${name}")`, JSON.stringify(name));
      else serviceNames.set(name, path.slice(0, 2).map((part) => (typeof part === 'number' ? `[${part}]` : part)).join(''));
    }
    const tunnel = this.tunnel();
    return {
      baseDir: this.baseDir,
      workers: file.workers ?? CONTROL_DEFAULTS.workers,
      maxConnections: file.max_connections ?? CORE_NET_DEFAULTS.processMaxConnections,
      log: {
        level: log.level ?? 'info',
        levels: log.levels ?? {},
        format: log.format ?? 'text',
        file: log.file === undefined || log.file === '-' ? '-' : this.path(log.file),
        accessLog: log.access_log === undefined || log.access_log === 'off' ? undefined : log.access_log === '-' ? '-' : this.path(log.access_log),
        accessFormat: log.access_format ?? 'combined',
      },
      control: { enabled: controlEnabled, listen: controlListen, token: control.token, allowedHosts: (control.allowed_hosts ?? CONTROL_DEFAULTS.allowedHosts).map((name) => name.toLowerCase()) },
      cluster: { redis: this.clusterRedis, store: file.cluster?.store, instances: file.cluster?.instances ?? CLUSTER_DEFAULTS.instances, redisTimeoutMs: durationMs(file.cluster?.redis_timeout, CLUSTER_DEFAULTS.redisTimeoutMs) },
      health: this.health(),
      reverse,
      proxies,
      upstreams,
      servers,
      streams,
      wsProxies,
      tunnel,
      acme: this.acme(servers, tunnel),
    };
  }

  private acme(servers: HttpServerConfig[], tunnel: TunnelConfig): AcmeConfig | undefined {
    const acme = this.file.acme;
    if (!acme && !servers.some((server) => server.tls === 'auto') && !tunnel.server?.httpsAuto) return undefined;
    const spec = acme ?? {};
    const directory = spec.directory ?? 'production';
    const caRoot = spec.ca_root === undefined ? undefined : this.path(spec.ca_root);
    if (caRoot !== undefined) this.fileExists(caRoot, ['acme', 'ca_root']);
    return {
      email: spec.email,
      directory: directory === 'production' || directory === 'staging' ? ACME_DIRECTORIES[directory] : directory,
      caRoot,
      challenges: spec.challenges ?? [...ACME_DEFAULTS.challenges],
      storage: this.path(spec.storage ?? ACME_DEFAULTS.storage),
      renewBeforeMs: spec.renew_before === undefined ? undefined : longDurationMs(spec.renew_before),
      orderTimeoutMs: durationMs(spec.order_timeout, ACME_DEFAULTS.orderTimeoutMs),
      redirect: spec.redirect ?? ACME_DEFAULTS.redirect,
      httpPort: spec.http_port ?? ACME_DEFAULTS.httpPort,
    };
  }

  private tunnel(): TunnelConfig {
    const file = this.file.tunnel ?? {};
    const clients = file.client === undefined ? [] : Array.isArray(file.client) ? file.client : [file.client];
    return {
      server: file.server ? this.tunnelServer(file.server) : undefined,
      clients: clients.map((client, index) => this.tunnelClient(client, Array.isArray(file.client) ? ['tunnel', 'client', index] : ['tunnel', 'client'], index)),
    };
  }

  /** `auth_penalty` as core-net's SourcePenaltyOptions (what is not set stays core-net's default). */
  private authPenalty(spec: { enabled?: boolean; allowance?: number; first?: string; max?: string; max_sources?: number; exempt?: string[] } | undefined): TunnelServerConfig['authPenalty'] {
    const out: TunnelServerConfig['authPenalty'] = {};
    if (spec === undefined) return out;
    if (spec.enabled !== undefined) out.enabled = spec.enabled;
    if (spec.allowance !== undefined) out.allowance = spec.allowance;
    if (spec.first !== undefined) out.firstMs = parseDuration(spec.first);
    if (spec.max !== undefined) out.maxMs = parseDuration(spec.max);
    if (spec.max_sources !== undefined) out.maxSources = spec.max_sources;
    if (spec.exempt !== undefined) out.exempt = spec.exempt;
    return out;
  }

  private portRanges(values: Array<number | string> | undefined, path: Array<string | number>): TunnelPortRange[] | undefined {
    if (values === undefined) return undefined;
    const out: TunnelPortRange[] = [];
    values.forEach((value, index) => {
      try {
        out.push(...parsePortRanges(String(value)));
      } catch (error) {
        this.issues.add([...path, index], 'a port or a range such as 15000-15999', `${JSON.stringify(value)} (${(error as Error).message})`);
      }
    });
    return out;
  }

  private tunnelServer(server: TunnelServerFile): TunnelServerConfig {
    const path = ['tunnel', 'server'];
    const listen = server.listen ?? DEFAULT_TUNNEL_LISTEN;
    this.claim([listen], 'tunnel server', [...path, 'listen']);
    if (!server.token && !(server.clients && server.clients.length > 0)) this.issues.add([...path, 'token'], 'a token, or per-client tokens in clients', 'nothing');
    const plain = server.plain ?? false;
    if (plain && (server.cert || server.client_ca)) this.issues.add([...path, 'plain'], 'plain = false when cert or client_ca is set', 'true');
    if ((server.cert === undefined) !== (server.key === undefined)) this.issues.add([...path, server.cert === undefined ? 'cert' : 'key'], `cert and key together (${server.cert === undefined ? 'key' : 'cert'} is set)`, 'nothing');
    let tls: TunnelServerConfig['tls'] = plain ? false : 'self-signed';
    if (!plain && server.cert && server.key) {
      tls = { cert: this.path(server.cert), key: this.path(server.key) };
      this.fileExists(tls.cert, [...path, 'cert']);
      this.fileExists(tls.key, [...path, 'key']);
      if (server.client_ca) {
        tls.clientCa = this.path(server.client_ca);
        this.fileExists(tls.clientCa, [...path, 'client_ca']);
      }
    } else if (server.client_ca) this.issues.add([...path, 'client_ca'], 'cert and key as well (mutual TLS needs a server certificate from a file)', JSON.stringify(server.client_ca));
    const names = new Set<string>();
    const clients = (server.clients ?? []).map((client, index) => {
      if (names.has(client.name)) this.issues.add([...path, 'clients', index, 'name'], 'a name used by no other client', JSON.stringify(client.name));
      names.add(client.name);
      const out: TunnelServerConfig['clients'][number] = { name: client.name, token: client.token };
      const ranges = this.portRanges(client.allow_ports, [...path, 'clients', index, 'allow_ports']);
      if (ranges) out.allowPorts = ranges;
      if (client.allow_domains) out.allowDomains = client.allow_domains;
      return out;
    });
    return {
      listen,
      token: server.token,
      clients,
      allowPorts: this.portRanges(server.allow_ports, [...path, 'allow_ports']),
      allowDomains: server.allow_domains,
      publicHost: server.public_host,
      tls,
      stateDir: this.path(server.state_dir ?? 'tunnel-state'),
      heartbeatMs: durationMs(server.heartbeat, 10_000),
      dataPool: server.data_pool,
      dataMaxBusy: server.data_max_busy,
      dataPromoteBytes: server.data_promote_bytes === undefined ? undefined : parseSize(server.data_promote_bytes),
      maxHandshakes: server.max_handshakes,
      maxHandshakesPerIp: server.max_handshakes_per_ip,
      authPenalty: this.authPenalty(server.auth_penalty),
      maxConnections: server.max_connections ?? 0,
      maxConnectionsPerIp: server.max_connections_per_ip ?? 0,
      visitorWaitMs: durationMs(server.visitor_wait, 0),
      drainMs: durationMs(server.drain, 10_000),
      ...this.tunnelWeb(server, path),
    };
  }

  private tunnelWeb(server: TunnelServerFile, path: string[]): Pick<TunnelServerConfig, 'httpListen' | 'httpsListen' | 'https' | 'httpsAuto' | 'httpPolicy' | 'httpHealth'> {
    if (server.http_listen !== undefined) this.claim([server.http_listen], 'tunnel http', [...path, 'http_listen']);
    if (server.https_listen !== undefined) this.claim([server.https_listen], 'tunnel https', [...path, 'https_listen']);
    if ((server.https_cert === undefined) !== (server.https_key === undefined)) {
      const given = server.https_cert === undefined ? 'https_key' : 'https_cert';
      this.issues.add([...path, given], `${given === 'https_key' ? 'https_cert' : 'https_key'} as well (they go together)`, 'only one of them');
    }
    let https: TunnelServerConfig['https'];
    if (server.https_cert !== undefined && server.https_key !== undefined) {
      if (server.https_listen === undefined) this.issues.add([...path, 'https_cert'], 'https_listen as well (where the certificate is served)', 'no https_listen');
      https = { cert: this.path(server.https_cert), key: this.path(server.https_key) };
      this.fileExists(https.cert, [...path, 'https_cert']);
      this.fileExists(https.key, [...path, 'https_key']);
    }
    const httpsAuto = server.https_tls === 'auto';
    if (httpsAuto) {
      if (server.https_listen === undefined) this.issues.add([...path, 'https_tls'], 'https_listen as well (where the certificates are served)', 'no https_listen');
      if (https !== undefined) this.issues.add([...path, 'https_tls'], 'either https_tls = "auto" or https_cert/https_key, not both', '"auto" and a certificate');
      // Certificates are ordered for whatever domains clients announce: without a list, any token holder could make this server order any name.
      const open = server.allow_domains === undefined && (server.token !== undefined || (server.clients ?? []).some((client) => client.allow_domains === undefined));
      if (open) this.issues.add([...path, 'allow_domains'], 'the domains clients may serve (with https_tls = "auto", certificates are ordered for the domains clients announce)', 'no list (any domain)');
    }
    const health = server.http_health;
    return {
      httpListen: server.http_listen,
      httpsListen: server.https_listen,
      https,
      httpsAuto,
      httpPolicy: server.http_policy ?? 'round_robin',
      httpHealth: health ? { path: health.path, intervalMs: durationMs(health.interval, 2_000), rise: health.rise ?? 2, fall: health.fall ?? 3 } : undefined,
    };
  }

  private tunnelClient(client: TunnelClientFile, path: Array<string | number>, index: number): TunnelClientConfig {
    if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(client.server)) this.issues.add([...path, 'server'], 'host:port of the tunnel server', JSON.stringify(client.server));
    const plain = client.plain ?? false;
    if (client.ca && client.fingerprint) this.issues.add([...path, 'fingerprint'], 'either ca or fingerprint, not both', JSON.stringify(client.fingerprint));
    if ((client.cert === undefined) !== (client.key === undefined)) this.issues.add([...path, client.cert === undefined ? 'cert' : 'key'], `cert and key together (${client.cert === undefined ? 'key' : 'cert'} is set)`, 'nothing');
    let tls: TunnelClientConfig['tls'] = false;
    if (!plain) {
      tls = {};
      if (client.ca) {
        tls.ca = this.path(client.ca);
        this.fileExists(tls.ca, [...path, 'ca']);
      }
      if (client.fingerprint) {
        try {
          tls.fingerprint = normaliseFingerprint(client.fingerprint);
        } catch (error) {
          this.issues.add([...path, 'fingerprint'], 'a SHA-256 fingerprint: SHA256:<base64> or 64 hex digits', JSON.stringify(client.fingerprint));
        }
      }
      if (client.servername) tls.servername = client.servername;
      if (client.cert && client.key) {
        tls.cert = this.path(client.cert);
        tls.key = this.path(client.key);
        this.fileExists(tls.cert, [...path, 'cert']);
        this.fileExists(tls.key, [...path, 'key']);
      }
    } else if (client.ca || client.fingerprint || client.cert) this.issues.add([...path, 'plain'], 'plain = false when TLS settings are given', 'true');
    const mappings: TunnelMappingConfig[] = [];
    const names = new Set<string>();
    client.mappings.forEach((entry, at) => {
      const where = [...path, 'mappings', at];
      try {
        const mapping = typeof entry === 'string' ? parseMapSpec(entry) : validateMapping(mappingFromTable(entry, (rules, key) => this.rules(rules, [...where, key])));
        if (names.has(mapping.name)) this.issues.add([...where, ...(typeof entry === 'string' ? [] : ['name'])], 'a mapping name used once per client', JSON.stringify(mapping.name));
        names.add(mapping.name);
        mappings.push(mapping);
      } catch (error) {
        this.issues.add(where, 'a valid mapping', (error as Error).message);
      }
    });
    const users = client.proxy_users && Object.keys(client.proxy_users).length > 0 ? client.proxy_users : undefined;
    const allow = client.proxy_allow && client.proxy_allow.length > 0 ? client.proxy_allow : undefined;
    const openProxy = client.proxy_insecure_open ?? false;
    if (mappings.some((mapping) => mapping.kind === 'proxy') && users === undefined && allow === undefined && !openProxy) {
      this.issues.add([...path, 'proxy_users'], "users (or proxy_allow, or proxy_insecure_open = true): a proxy mapping would be an open proxy into this network for anyone who reaches the server's public port", 'nothing');
    }
    const proxy = users || allow ? { ...(users ? { users } : {}), ...(allow ? { allow } : {}) } : undefined;
    return { service: `tunnel-client-${index}`, server: client.server, token: client.token, name: client.name, tls, mappings, proxy, openProxy };
  }

  private health(): HealthCheckerOptions {
    const health = this.file.health ?? {};
    const passive = health.passive ?? {};
    const active: NonNullable<HealthCheckerOptions['active']> = {};
    if (health.interval !== undefined) active.intervalMs = parseDuration(health.interval);
    if (health.timeout !== undefined) active.timeoutMs = parseDuration(health.timeout);
    if (health.rise !== undefined) active.rise = health.rise;
    if (health.fall !== undefined) active.fall = health.fall;
    if (health.jitter !== undefined) active.jitter = health.jitter;
    if (health.fast_interval !== undefined) active.fastIntervalMs = parseDuration(health.fast_interval);
    if (health.down_interval !== undefined) active.downIntervalMs = parseDuration(health.down_interval);
    if (health.initial !== undefined) active.initial = health.initial;
    this.checkTimeout(active.intervalMs, active.timeoutMs, ['health', 'timeout']);
    const options: HealthCheckerOptions = {
      active,
      passive: {
        ...(passive.enabled !== undefined ? { enabled: passive.enabled } : {}),
        ...(passive.consecutive_failures !== undefined ? { consecutiveFailures: passive.consecutive_failures } : {}),
        ...(passive.window !== undefined ? { windowMs: parseDuration(passive.window) } : {}),
        ...(passive.ejection_time !== undefined ? { baseEjectionMs: parseDuration(passive.ejection_time) } : {}),
        ...(passive.max_ejection_time !== undefined ? { maxEjectionMs: parseDuration(passive.max_ejection_time) } : {}),
        ...(passive.max_ejection_percent !== undefined ? { maxEjectionPercent: passive.max_ejection_percent } : {}),
        ...(passive.count_5xx !== undefined ? { count5xx: passive.count_5xx } : {}),
      },
    };
    if (health.panic_threshold !== undefined) options.panicThreshold = health.panic_threshold;
    if (health.fail_mode !== undefined) options.failMode = health.fail_mode;
    if (health.slow_start !== undefined) options.slowStartMs = parseDuration(health.slow_start);
    if (health.concurrency !== undefined) options.concurrency = health.concurrency;
    return options;
  }

  private checkTimeout(intervalMs: number | undefined, timeoutMs: number | undefined, path: Array<string | number>): void {
    if (intervalMs !== undefined && timeoutMs !== undefined && timeoutMs > intervalMs) {
      this.issues.add(path, `a timeout no longer than the interval (${intervalMs} ms)`, `${timeoutMs} ms`);
    }
  }

  private upstream(upstream: UpstreamFile, index: number): UpstreamConfig {
    const path = ['upstream', index];
    const discovery = typeof upstream.servers === 'string' ? upstream.servers : undefined;
    let discover: UpstreamConfig['discover'];
    if (discovery !== undefined) {
      const plus = discovery.indexOf('+');
      discover = { source: discovery.slice(0, plus) as 'srv' | 'etcd', target: discovery.slice(plus + 1).replace(/\.$/, '') };
      if (discover.source === 'etcd' && this.file.cluster?.store === undefined) this.issues.add([...path, 'servers'], 'a `[cluster] store` (etcd) for `etcd+` discovery', JSON.stringify(discovery));
    }
    return {
      name: upstream.name,
      ...(discover ? { discover } : {}),
      // (`?? []`: a list the schema rejected is gone by the time the cross-checks run.)
      servers: (typeof upstream.servers === 'string' ? [] : (upstream.servers ?? [])).map((server) =>
        typeof server === 'string'
          ? { address: server, weight: 1, maxConns: 0, backup: false, tls: false, servername: undefined, tlsVerify: true }
          : {
              address: server.address,
              weight: server.weight ?? 1,
              maxConns: server.max_conns ?? 0,
              backup: server.backup ?? false,
              tls: server.tls ?? false,
              servername: server.servername,
              tlsVerify: server.tls_verify ?? true,
              ...(server.protocol === 'h2' ? { protocol: 'h2' as const } : {}),
            },
      ),
      policy: upstream.policy ?? 'round_robin',
      hashKey: upstream.hash_key ?? 'uri',
      health: this.healthCheck(upstream.health_check, [...path, 'health_check']),
      pool: { maxIdle: upstream.keepalive ?? REVERSE_DEFAULTS.pool.maxIdle, idleTimeoutMs: durationMs(upstream.keepalive_timeout, REVERSE_DEFAULTS.pool.idleTimeoutMs) },
      shutdownSessionsOnDown: upstream.shutdown_sessions_on_down ?? false,
    };
  }

  /** Every server is checked actively by default (a TCP connect); `false` leaves passive checks only. */
  private healthCheck(check: HealthCheckFile | false | undefined, path: Array<string | number>): UpstreamHealthConfig {
    if (check === false) return { check: null };
    const spec = check ?? {};
    const type = spec.type ?? 'tcp';
    let probe: CheckSpec;
    if (type !== 'grpc' && type !== 'grpcs' && spec.service !== undefined) {
      this.issues.add([...path, 'service'], `no gRPC option in a ${type} check (set type = "grpc")`, describeValue(spec.service));
    }
    if (type === 'tcp') {
      for (const key of ['method', 'path', 'host', 'headers', 'expect_status', 'expect_body', 'tls_verify'] as const) {
        if (spec[key] !== undefined) this.issues.add([...path, key], 'no HTTP option in a tcp check (set type = "http")', describeValue(spec[key]));
      }
      probe = { type: 'tcp', ...(spec.send !== undefined ? { send: spec.send } : {}), ...(spec.expect !== undefined ? { expect: spec.expect } : {}), ...(spec.encoding ? { encoding: spec.encoding } : {}) };
    } else if (type === 'grpc' || type === 'grpcs') {
      for (const key of ['send', 'expect', 'encoding', 'method', 'path', 'headers', 'expect_status', 'expect_body'] as const) {
        if (spec[key] !== undefined) this.issues.add([...path, key], `not an option of a ${type} check (service, host, tls_verify)`, describeValue(spec[key]));
      }
      if (type === 'grpc' && spec.tls_verify !== undefined) this.issues.add([...path, 'tls_verify'], 'no TLS in a grpc check (set type = "grpcs")', describeValue(spec.tls_verify));
      probe = {
        type,
        ...(spec.service !== undefined ? { service: spec.service } : {}),
        ...(spec.host !== undefined ? { authority: spec.host } : {}),
        ...(spec.tls_verify !== undefined ? { tlsVerify: spec.tls_verify } : {}),
      };
    } else {
      for (const key of ['send', 'expect', 'encoding'] as const) {
        if (spec[key] !== undefined) this.issues.add([...path, key], 'no TCP option in an http check', describeValue(spec[key]));
      }
      probe = {
        type,
        ...(spec.method !== undefined ? { method: spec.method.toUpperCase() } : {}),
        ...(spec.path !== undefined ? { path: spec.path } : {}),
        ...(spec.host !== undefined ? { host: spec.host } : {}),
        ...(spec.headers !== undefined ? { headers: spec.headers } : {}),
        ...(spec.expect_status !== undefined ? { expectStatus: spec.expect_status } : {}),
        ...(spec.expect_body !== undefined ? { expectBody: spec.expect_body } : {}),
        ...(spec.tls_verify !== undefined ? { tlsVerify: spec.tls_verify } : {}),
      };
    }
    const health: UpstreamHealthConfig = { check: probe };
    if (spec.interval !== undefined) health.intervalMs = parseDuration(spec.interval);
    if (spec.timeout !== undefined) health.timeoutMs = parseDuration(spec.timeout);
    if (spec.rise !== undefined) health.rise = spec.rise;
    if (spec.fall !== undefined) health.fall = spec.fall;
    if (spec.jitter !== undefined) health.jitter = spec.jitter;
    if (spec.fast_interval !== undefined) health.fastIntervalMs = parseDuration(spec.fast_interval);
    if (spec.down_interval !== undefined) health.downIntervalMs = parseDuration(spec.down_interval);
    if (spec.initial !== undefined) health.initial = spec.initial;
    this.checkTimeout(health.intervalMs, health.timeoutMs, [...path, 'timeout']);
    return health;
  }

  private reverse(): ReverseConfig {
    const reverse = this.file.reverse ?? {};
    const { timeouts, retries, dns } = REVERSE_DEFAULTS;
    return {
      timeouts: {
        connectMs: durationMs(reverse.connect_timeout, timeouts.connectMs),
        firstByteMs: durationMs(reverse.read_timeout, timeouts.firstByteMs),
        idleMs: durationMs(reverse.idle_timeout, timeouts.idleMs),
        clientHeaderMs: durationMs(reverse.client_header_timeout, timeouts.clientHeaderMs),
        clientBodyMs: durationMs(reverse.client_body_timeout, timeouts.clientBodyMs),
        keepAliveMs: durationMs(reverse.keepalive_timeout, timeouts.keepAliveMs),
        tunnelIdleMs: durationMs(reverse.tunnel_idle_timeout, timeouts.tunnelIdleMs),
        requestMs: durationMs(reverse.request_timeout, timeouts.requestMs),
      },
      retries: {
        tries: reverse.retries ?? retries.tries,
        totalMs: durationMs(reverse.retry_timeout, retries.totalMs),
        onStatus: reverse.retry_on_status ?? [...retries.onStatus],
        onTimeout: retries.onTimeout,
        methods: reverse.retry_methods ?? [...retries.methods],
        budgetPercent: reverse.retry_budget_percent ?? retries.budgetPercent,
        budgetMinConcurrency: reverse.retry_budget_min_concurrency ?? retries.budgetMinConcurrency,
        bodyBuffer: reverse.retry_body_buffer === undefined ? REVERSE_DEFAULTS.retryBodyBuffer : parseSize(reverse.retry_body_buffer),
      },
      hedgeDelayMs: durationMs(reverse.hedge_delay, REVERSE_DEFAULTS.hedgeDelayMs),
      requestHedgeMs: durationMs(reverse.hedge_request, REVERSE_DEFAULTS.requestHedgeMs),
      requestHedgeBudget: reverse.hedge_request_budget ?? REVERSE_DEFAULTS.requestHedgeBudget,
      dns: {
        ttlMs: durationMs(reverse.resolve_ttl, dns.ttlMs),
        minTtlMs: durationMs(reverse.resolve_min_ttl, dns.minTtlMs),
        maxTtlMs: durationMs(reverse.resolve_max_ttl, dns.maxTtlMs),
        recordTtl: reverse.resolve_record_ttl ?? dns.recordTtl,
        servers: reverse.resolvers ?? [...dns.servers],
      },
      maxHeadSize: reverse.max_header_size === undefined ? REVERSE_DEFAULTS.maxHeadSize : parseSize(reverse.max_header_size),
      shutdownTimeoutMs: durationMs(reverse.shutdown_timeout, REVERSE_DEFAULTS.shutdownDeadlineMs),
      tracing: tracingConfig(reverse.tracing),
    };
  }

  private rules(rules: HeaderRulesFile | undefined, path: Array<string | number>): HeaderRuleConfig[] {
    if (!rules) return [];
    const out: HeaderRuleConfig[] = [];
    rules.forEach((rule, index) => {
      if (typeof rule !== 'string') {
        if (rule.op !== 'remove' && rule.value === undefined) this.issues.add([...path, index, 'value'], `a value for ${rule.op} ${rule.name}`, 'nothing');
        else out.push(rule.op === 'remove' ? { op: rule.op, name: rule.name } : { op: rule.op, name: rule.name, value: rule.value! });
        return;
      }
      const parsed = parseHeaderRule(rule);
      if (typeof parsed === 'string') this.issues.add([...path, index], parsed, describeValue(rule));
      else out.push(parsed);
    });
    return out;
  }

  private servers(upstreams: Set<string>): HttpServerConfig[] {
    const reverse = this.file.reverse ?? {};
    const globalRequest = this.rules(reverse.request_headers, ['reverse', 'request_headers']);
    const globalResponse = this.rules(reverse.response_headers, ['reverse', 'response_headers']);
    const servers = (this.file.server ?? []).map((server, index) => this.server(server, index, upstreams, globalRequest, globalResponse));
    // Servers sharing a port are virtual hosts of one listener: the same address set, one default, TLS on all or none.
    const groups = new Map<string, number[]>();
    servers.forEach((server, index) => {
      const key = server.listen.map((address) => listenKey(address) ?? `${address}#${index}`).sort().join(',');
      groups.set(key, [...(groups.get(key) ?? []), index]);
    });
    for (const members of groups.values()) {
      const defaults = members.filter((index) => servers[index]!.default);
      if (defaults.length > 1) this.issues.add(['server', defaults[1]!, 'default'], `one default server per port (server[${defaults[0]}] is the default)`, 'true');
      const tls = members.filter((index) => servers[index]!.tls !== undefined);
      if (tls.length > 0 && tls.length < members.length) {
        const plain = members.find((index) => servers[index]!.tls === undefined)!;
        this.issues.add(['server', plain, 'tls'], `TLS settings, as server[${tls[0]}] on the same port has them`, 'nothing');
      }
      // One listener, one set of connection limits.
      const first = servers[members[0]!]!;
      for (const index of members.slice(1)) {
        const server = servers[index]!;
        for (const [key, field] of [['max_connections', 'maxConnections'], ['max_connections_per_ip', 'maxConnectionsPerIp'], ['connection_limit_status', 'connectionLimitStatus']] as const) {
          if (server[field] !== first[field]) this.issues.add(['server', index, key], `${first[field]}, as server[${members[0]}] on the same port (one listener has one set of connection limits)`, String(server[field]));
        }
        if (server.http2 !== first.http2) this.issues.add(['server', index, 'http2'], `${JSON.stringify(first.http2)}, as server[${members[0]}] on the same port (one listener speaks one set of protocols)`, JSON.stringify(server.http2));
      }
      const owner = `server[${members[0]}]`;
      for (const index of members) this.claim(servers[index]!.listen, owner, ['server', index, 'listen']);
    }
    return servers;
  }

  private server(server: HttpServerFile, index: number, upstreams: Set<string>, globalRequest: HeaderRuleConfig[], globalResponse: HeaderRuleConfig[]): HttpServerConfig {
    const path = ['server', index];
    const request = [...globalRequest, ...this.rules(server.request_headers, [...path, 'request_headers'])];
    const response = [...globalResponse, ...this.rules(server.response_headers, [...path, 'response_headers'])];
    let tls: HttpServerConfig['tls'];
    if (server.tls === 'auto') {
      tls = 'auto';
      // ACME validates DNS names over HTTP-01/TLS-ALPN-01: not IPs, not wildcards (DNS-01 only), not an empty list.
      if (!server.server_name || server.server_name.length === 0) this.issues.add([...path, 'server_name'], 'the host names to obtain certificates for, with tls = "auto"', 'nothing');
      (server.server_name ?? []).forEach((name, at) => {
        if (name.includes('*')) this.issues.add([...path, 'server_name', at], 'a host name without a wildcard with tls = "auto" (wildcard certificates need DNS-01, which wmproxy does not answer)', JSON.stringify(name));
        else if (!isValidHostname(name) || isIP(name) !== 0 || !name.includes('.')) this.issues.add([...path, 'server_name', at], 'a public DNS name (such as example.com) with tls = "auto"', JSON.stringify(name));
      });
    } else if (server.tls) {
      tls = { cert: this.path(server.tls.cert), key: this.path(server.tls.key) };
      this.fileExists(tls.cert, [...path, 'tls', 'cert']);
      this.fileExists(tls.key, [...path, 'tls', 'key']);
    }
    const http2 = server.http2 ?? REVERSE_DEFAULTS.http2;
    if (http2 === 'h2c' && server.tls !== undefined) this.issues.add([...path, 'http2'], 'true or false on a server with tls (over TLS, HTTP/2 is chosen by ALPN; "h2c" is for servers without tls)', '"h2c"');
    return {
      name: server.name ?? `server-${index}`,
      listen: list(server.listen),
      serverNames: (server.server_name ?? []).map((name) => name.toLowerCase()),
      default: server.default ?? false,
      tls,
      http2,
      trustedProxies: server.trusted_proxies ?? this.file.reverse?.trusted_proxies ?? [],
      rateLimit: server.rate_limit ? this.rateLimit(server.rate_limit, [...path, 'rate_limit']) : undefined,
      maxConnections: server.max_connections ?? 0,
      maxConnectionsPerIp: server.max_connections_per_ip ?? 0,
      connectionLimitStatus: server.connection_limit_status ?? REVERSE_DEFAULTS.connectionLimitStatus,
      locations: server.location.map((location, at) => this.location(location, [...path, 'location', at], upstreams, request, response)),
    };
  }

  private fileExists(file: string, path: Array<string | number>, directory = false): void {
    let ok = false;
    try {
      ok = existsSync(file) && statSync(file).isDirectory() === directory;
    } catch {
      ok = false;
    }
    if (!ok) this.issues.add(path, directory ? 'an existing directory' : 'an existing file', `${JSON.stringify(file)} (${existsSync(file) ? (directory ? 'not a directory' : 'a directory') : 'missing'})`);
  }

  private location(location: LocationFile, path: Array<string | number>, upstreams: Set<string>, request: HeaderRuleConfig[], response: HeaderRuleConfig[]): LocationConfig {
    const matchers = (['path', 'exact', 'regex'] as const).filter((key) => location[key] !== undefined);
    if (matchers.length > 1) this.issues.add([...path, matchers[1]!], `only one of path, exact, regex (${matchers[0]} is set)`, describeValue(location[matchers[1]!]));
    const actions = (['upstream', 'static', 'respond', 'websocket_to_tcp'] as const).filter((key) => location[key] !== undefined);
    if (actions.length === 0) this.issues.add(path, 'one of upstream, static, respond, websocket_to_tcp', 'none of them');
    if (actions.length > 1) this.issues.add([...path, actions[1]!], `only one of upstream, static, respond, websocket_to_tcp (${actions[0]} is set)`, describeValue(location[actions[1]!]));
    if (location.upstream !== undefined && !upstreams.has(location.upstream)) {
      this.issues.add([...path, 'upstream'], this.knownUpstreams(upstreams), JSON.stringify(location.upstream));
    }
    let staticConfig: StaticConfig | undefined;
    if (location.static) {
      const spec = location.static;
      const root = this.path(spec.root);
      this.fileExists(root, [...path, 'static', 'root'], true);
      staticConfig = {
        root,
        index: spec.index ?? [...STATIC_DEFAULTS.index],
        browse: spec.browse ?? STATIC_DEFAULTS.browse,
        spa: spec.spa ?? STATIC_DEFAULTS.spa,
        tryFiles: spec.try_files,
        notFound: spec.not_found,
        precompressed: spec.precompressed ?? STATIC_DEFAULTS.precompressed,
        hide: spec.hide ?? [],
        dotfiles: spec.dotfiles ?? STATIC_DEFAULTS.dotfiles === 'allow',
        cacheControl: spec.cache_control ?? {},
        cors: spec.cors ?? STATIC_DEFAULTS.cors,
      };
    }
    const out: LocationConfig = {
      requestHeaders: [...request, ...this.rules(location.request_headers, [...path, 'request_headers'])],
      responseHeaders: [...response, ...this.rules(location.response_headers, [...path, 'response_headers'])],
    };
    if (location.path !== undefined) out.path = location.path;
    if (location.exact !== undefined) out.exact = location.exact;
    if (location.regex !== undefined) out.regex = location.regex;
    if (location.regex_flags !== undefined) out.regexFlags = location.regex_flags;
    if (location.no_regex !== undefined) out.noRegex = location.no_regex;
    if (location.methods !== undefined) out.methods = location.methods.map((method) => method.toUpperCase());
    if (location.client_ips !== undefined) out.clientIps = location.client_ips;
    if (location.upstream !== undefined) out.upstream = location.upstream;
    if (staticConfig) out.static = staticConfig;
    if (location.respond !== undefined) out.respond = location.respond;
    if (location.websocket_to_tcp !== undefined) out.websocketToTcp = this.ws2tcp(location.websocket_to_tcp, [...path, 'websocket_to_tcp'], upstreams);
    if (location.upstream_host !== undefined) out.upstreamHost = location.upstream_host;
    if (location.strip_prefix !== undefined) out.stripPrefix = location.strip_prefix;
    if (location.rate_limit !== undefined) out.rateLimit = location.rate_limit === false ? false : this.rateLimit(location.rate_limit, [...path, 'rate_limit']);
    return out;
  }

  private rateLimit(limit: RateLimitFile, path: Array<string | number>): RateLimitSpec {
    if (limit.rate === undefined && !limit.max_in_flight) this.issues.add(path, 'a `rate` or a `max_in_flight` above 0', 'neither');
    const spec: RateLimitSpec = {};
    if (limit.rate !== undefined) spec.rate = limit.rate;
    if (limit.burst !== undefined) spec.burst = limit.burst;
    if (limit.key !== undefined) spec.key = limit.key;
    if (limit.status !== undefined) spec.status = limit.status;
    if (limit.max_keys !== undefined) spec.maxKeys = limit.max_keys;
    if (limit.max_in_flight !== undefined) spec.maxInFlight = limit.max_in_flight;
    if (limit.scope !== undefined) spec.scope = limit.scope;
    if (limit.fallback !== undefined) spec.fallback = limit.fallback;
    if (limit.scope === 'cluster' && this.clusterRedis === undefined) this.issues.add([...path, 'scope'], 'a `[cluster] redis` URL to share the counts in', '"cluster" without one');
    return spec;
  }

  /** The ws2tcp keys of a `[[ws_proxy]]` or a `websocket_to_tcp` location. */
  private ws2tcp(spec: WebSocketToTcpFile, path: Array<string | number>, upstreams: Set<string>): Ws2TcpConfig {
    const sources = (['target', 'upstream', 'token_file'] as const).filter((key) => spec[key] !== undefined);
    if (sources.length === 0) this.issues.add(path, 'one of target, upstream, token_file', 'none of them');
    if (sources.length > 1) this.issues.add([...path, sources[1]!], `only one of target, upstream, token_file (${sources[0]} is set)`, JSON.stringify(spec[sources[1]!]));
    if (spec.upstream !== undefined && !upstreams.has(spec.upstream)) this.issues.add([...path, 'upstream'], this.knownUpstreams(upstreams), JSON.stringify(spec.upstream));
    if (spec.upstream !== undefined && this.file.workers !== undefined && this.file.workers !== 1) {
      this.issues.add([...path, 'upstream'], 'a `target` or `token_file` with `workers` other than 1 (an upstream target is served by the process that balances that group)', JSON.stringify(spec.upstream));
    }
    const tokenFile = spec.token_file === undefined ? undefined : this.path(spec.token_file);
    if (tokenFile !== undefined) this.fileExists(tokenFile, [...path, 'token_file']);
    const basic = spec.auth?.users ? Object.entries(spec.auth.users).map(([user, pass]) => ({ user, pass })) : [];
    const auth = basic.length > 0 || spec.auth?.bearer ? { ...(basic.length > 0 ? { basic } : {}), ...(spec.auth?.bearer ? { bearer: spec.auth.bearer } : {}) } : undefined;
    return {
      target: spec.target,
      upstream: spec.upstream,
      tokenFile,
      origins: spec.origins ?? [],
      auth,
      subprotocols: spec.subprotocols ?? [...(WS_BRIDGE_DEFAULTS.subprotocols as Array<'binary' | 'base64'>)],
      text: spec.text ?? WS_BRIDGE_DEFAULTS.text,
      pingIntervalMs: durationMs(spec.ping, WS_BRIDGE_DEFAULTS.pingIntervalMs),
      pongTimeoutMs: durationMs(spec.pong_timeout, WS_BRIDGE_DEFAULTS.pongTimeoutMs),
      maxMessageSize: spec.max_message === undefined ? WS_BRIDGE_DEFAULTS.maxMessageSize : parseSize(spec.max_message),
      connectTimeoutMs: durationMs(spec.connect_timeout, WS_BRIDGE_DEFAULTS.connectTimeoutMs),
    };
  }

  private wsProxy(bridge: WsProxyFile, index: number, upstreams: Set<string>): WsProxyConfig {
    const path = ['ws_proxy', index];
    const name = bridge.name ?? `ws-proxy-${index}`;
    const listen = list(bridge.listen ?? WS_BRIDGE_DEFAULTS.listen);
    this.claim(listen, `ws_proxy "${name}"`, [...path, 'listen']);
    const ws2tcpOnly = ['target', 'upstream', 'token_file', 'path', 'origins', 'auth', 'subprotocols', 'text', 'tls'] as const;
    const tcp2wsOnly = ['url', 'host', 'server_name', 'ca', 'insecure', 'origin', 'headers', 'offer'] as const;
    const common = {
      name,
      mode: bridge.mode,
      listen,
      pingIntervalMs: durationMs(bridge.ping, WS_BRIDGE_DEFAULTS.pingIntervalMs),
      pongTimeoutMs: durationMs(bridge.pong_timeout, WS_BRIDGE_DEFAULTS.pongTimeoutMs),
      maxMessageSize: bridge.max_message === undefined ? WS_BRIDGE_DEFAULTS.maxMessageSize : parseSize(bridge.max_message),
      connectTimeoutMs: durationMs(bridge.connect_timeout, WS_BRIDGE_DEFAULTS.connectTimeoutMs),
      handshakeTimeoutMs: durationMs(bridge.handshake_timeout, WS_BRIDGE_DEFAULTS.handshakeTimeoutMs),
      maxConnections: bridge.max_connections ?? 0,
      maxConnectionsPerIp: bridge.max_connections_per_ip ?? 0,
    };
    if (bridge.mode === 'ws2tcp') {
      for (const key of tcp2wsOnly) if (bridge[key] !== undefined) this.issues.add([...path, key], 'a key of mode tcp2ws or tcp2wss only (this bridge is ws2tcp)', describeValue(bridge[key]));
      let tls: { cert: string; key: string } | undefined;
      if (bridge.tls) {
        tls = { cert: this.path(bridge.tls.cert), key: this.path(bridge.tls.key) };
        this.fileExists(tls.cert, [...path, 'tls', 'cert']);
        this.fileExists(tls.key, [...path, 'tls', 'key']);
      }
      return { ...common, ws2tcp: { ...this.ws2tcp(bridge, path, upstreams), path: bridge.path ?? WS_BRIDGE_DEFAULTS.path, tls }, tcp2ws: undefined };
    }
    // Another mode is the schema's error.
    if (bridge.mode !== 'tcp2ws' && bridge.mode !== 'tcp2wss') return { ...common, ws2tcp: undefined, tcp2ws: undefined };
    for (const key of ws2tcpOnly) if (bridge[key] !== undefined) this.issues.add([...path, key], `a key of mode ws2tcp only (this bridge is ${bridge.mode})`, describeValue(bridge[key]));
    const scheme = bridge.mode === 'tcp2wss' ? 'wss://' : 'ws://';
    if (bridge.url === undefined) this.issues.add([...path, 'url'], `the ${scheme} URL to bridge to`, 'nothing');
    else if (!bridge.url.toLowerCase().startsWith(scheme)) this.issues.add([...path, 'url'], `a ${scheme} URL (mode ${bridge.mode})`, JSON.stringify(bridge.url));
    if (bridge.mode === 'tcp2ws') {
      for (const key of ['server_name', 'ca', 'insecure'] as const) if (bridge[key] !== undefined) this.issues.add([...path, key], 'a key of mode tcp2wss only (TLS)', describeValue(bridge[key]));
    }
    const ca = bridge.ca === undefined ? undefined : this.path(bridge.ca);
    if (ca !== undefined) this.fileExists(ca, [...path, 'ca']);
    return {
      ...common,
      ws2tcp: undefined,
      tcp2ws: {
        url: bridge.url ?? '',
        host: bridge.host,
        servername: bridge.server_name,
        ca,
        insecure: bridge.insecure ?? false,
        origin: bridge.origin,
        headers: Object.entries(bridge.headers ?? {}),
        subprotocols: bridge.offer ?? [],
      },
    };
  }

  private knownUpstreams(upstreams: Set<string>): string {
    return upstreams.size === 0 ? 'the name of an upstream (none is defined)' : `the name of an upstream (${[...upstreams].map((name) => JSON.stringify(name)).join(', ')})`;
  }

  private stream(stream: StreamFile, index: number, upstreams: Set<string>): StreamConfig {
    const path = ['stream', index];
    const protocol = stream.protocol ?? 'tcp';
    const listen = list(stream.listen);
    const name = stream.name ?? `stream-${index}`;
    this.claim(listen, name, [...path, 'listen'], protocol === 'udp');
    if (!upstreams.has(stream.upstream)) this.issues.add([...path, 'upstream'], this.knownUpstreams(upstreams), JSON.stringify(stream.upstream));
    if (protocol === 'udp') {
      for (const key of ['max_connections', 'max_connections_per_ip'] as const) {
        if (stream[key]) this.issues.add([...path, key], 'no connection limit on a udp stream (UDP has no connections)', String(stream[key]));
      }
    }
    return {
      name,
      listen,
      protocol,
      upstream: stream.upstream,
      tries: stream.tries ?? REVERSE_DEFAULTS.stream.tries,
      idleTimeoutMs: durationMs(stream.idle_timeout, protocol === 'udp' ? REVERSE_DEFAULTS.stream.udpIdleTimeoutMs : REVERSE_DEFAULTS.stream.tcpIdleTimeoutMs),
      maxConnections: stream.max_connections ?? 0,
      maxConnectionsPerIp: stream.max_connections_per_ip ?? 0,
    };
  }

  private proxy(proxy: ForwardProxyFile, index: number): ForwardProxyConfig {
    const path = ['proxy', index];
    const name = proxy.name ?? `proxy-${index}`;
    const listen = list(proxy.listen);
    this.claim(listen, name, [...path, 'listen']);
    const users = proxy.users && Object.keys(proxy.users).length > 0 ? proxy.users : undefined;
    const exposed = listen.map((address) => {
      try {
        const parsed = parseAddress(address);
        return parsed.wildcard || !isLoopback(parsed.host);
      } catch {
        return false; // reported by the schema
      }
    });
    let tls: ForwardProxyConfig['tls'];
    if (proxy.tls) {
      tls = { cert: this.path(proxy.tls.cert), key: this.path(proxy.tls.key) };
      this.fileExists(tls.cert, [...path, 'tls', 'cert']);
      this.fileExists(tls.key, [...path, 'tls', 'key']);
      if (proxy.tls.client_ca !== undefined) {
        tls.clientCa = this.path(proxy.tls.client_ca);
        this.fileExists(tls.clientCa, [...path, 'tls', 'client_ca']);
      }
    }
    let parentTls: ForwardProxyConfig['parentTls'];
    if (proxy.parent_tls) {
      const given = proxy.parent_tls;
      if (!proxy.parent || !/^(https|socks5\+tls):\/\//i.test(proxy.parent)) this.issues.add([...path, 'parent_tls'], 'a TLS parent (https:// or socks5+tls://) in `parent`', proxy.parent ? JSON.stringify(proxy.parent) : 'no parent');
      if ((given.cert === undefined) !== (given.key === undefined)) this.issues.add([...path, 'parent_tls', given.cert === undefined ? 'key' : 'cert'], 'both cert and key (a client certificate needs its key)', 'only one of them');
      parentTls = { verify: given.verify ?? true };
      for (const key of ['ca', 'cert', 'key'] as const) {
        const file = given[key];
        if (file === undefined) continue;
        parentTls[key] = this.path(file);
        this.fileExists(parentTls[key]!, [...path, 'parent_tls', key]);
      }
      if (given.server_name !== undefined) parentTls.servername = given.server_name;
    }
    if (!proxy.insecure_open && !users && !(proxy.allow && proxy.allow.length > 0) && !tls?.clientCa) {
      exposed.forEach((open, at) => {
        if (open) this.issues.add([...path, 'listen', ...(listen.length > 1 ? [at] : [])], 'a loopback address, or users / an allow list / tls.client_ca / insecure_open = true for an open proxy', JSON.stringify(listen[at]));
      });
    }
    return {
      name,
      listen,
      protocols: proxy.protocols ?? [...HTTP_PROXY_DEFAULTS.protocols],
      users,
      realm: proxy.realm ?? HTTP_PROXY_DEFAULTS.realm,
      allow: proxy.allow ?? [],
      deny: proxy.deny ?? [],
      // Reachable from other hosts: keep its clients off this host and its link
      // (the control API, local databases, cloud metadata) and CONNECT on HTTPS
      // ports unless told otherwise (Squid's to_localhost and SSL_ports).
      denyDestinations: proxy.deny_destinations ?? (exposed.includes(true) ? [...DEFAULT_DENY_DESTINATIONS] : []),
      connectPorts: proxy.connect_ports ?? (exposed.includes(true) ? [...CORE_NET_DEFAULTS.connectPorts] : undefined),
      parent: proxy.parent,
      parentTls,
      tls,
      udp: proxy.udp ?? SOCKS5_DEFAULTS.udp,
      udpBind: proxy.udp_bind,
      connectTimeoutMs: durationMs(proxy.connect_timeout, HTTP_PROXY_DEFAULTS.connectTimeoutMs),
      headerTimeoutMs: durationMs(proxy.header_timeout, HTTP_PROXY_DEFAULTS.headerTimeoutMs),
      keepAliveTimeoutMs: durationMs(proxy.keepalive_timeout, HTTP_PROXY_DEFAULTS.keepAliveTimeoutMs),
      idleTimeoutMs: durationMs(proxy.idle_timeout, HTTP_PROXY_DEFAULTS.idleTimeoutMs),
      maxHeadSize: proxy.max_header_size === undefined ? HTTP_PROXY_DEFAULTS.maxHeadSize : parseSize(proxy.max_header_size),
      via: proxy.via ?? HTTP_PROXY_DEFAULTS.via,
      maxConnections: proxy.max_connections ?? 0,
      maxConnectionsPerIp: proxy.max_connections_per_ip ?? 0,
    };
  }
}

/** A `[[tunnel.client.mappings]]` table as a tunnel Mapping. */
function mappingFromTable(
  entry: Exclude<TunnelClientFile['mappings'][number], string>,
  rules: (rules: HeaderRulesFile, key: string) => HeaderRuleConfig[],
): Mapping {
  const mapping: Mapping = { name: entry.name, kind: entry.kind };
  if (entry.local !== undefined) {
    const colon = entry.local.lastIndexOf(':');
    if (colon <= 0) throw new MappingError(`${entry.name}: local must be host:port`);
    mapping.localHost = entry.local.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    mapping.localPort = Number(entry.local.slice(colon + 1));
  }
  if (entry.remote_port !== undefined) mapping.remotePort = entry.remote_port;
  if (entry.domains !== undefined) mapping.domains = entry.domains.map((domain) => domain.toLowerCase());
  if (entry.path !== undefined) mapping.path = entry.path;
  if (entry.proxy_protocol !== undefined) mapping.proxyProtocol = entry.proxy_protocol === 'v1' ? 1 : 2;
  if (entry.basic_auth !== undefined) mapping.basicAuth = { users: entry.basic_auth, ...(entry.basic_auth_realm !== undefined ? { realm: entry.basic_auth_realm } : {}) };
  if (entry.request_headers !== undefined) mapping.requestHeaders = rules(entry.request_headers, 'request_headers');
  if (entry.response_headers !== undefined) mapping.responseHeaders = rules(entry.response_headers, 'response_headers');
  return mapping;
}

/** Defaults and cross-checks of a schema-valid file. Issues go to `issues`; the result is only meaningful when none was added. */
export function resolveConfig(file: ConfigFile, issues: IssueList, baseDir: string): Omit<WmproxyConfig, 'file' | 'warnings' | 'source'> {
  return new Resolver(file, issues, baseDir).resolve();
}


/** `[reverse.tracing]` with REVERSE_DEFAULTS.tracing for what it leaves unset. */
function tracingConfig(file: TracingFile | undefined): TracingConfig {
  const d = REVERSE_DEFAULTS.tracing;
  const config: TracingConfig = { enabled: file?.enabled ?? d.enabled, sampleRatio: file?.sample_ratio ?? d.sampleRatio, serviceName: file?.service_name ?? d.serviceName, exporter: file?.exporter ?? d.exporter };
  if (file?.otlp_endpoint !== undefined) {
    config.otlp = {
      endpoint: file.otlp_endpoint,
      headers: file.otlp_headers ?? {},
      queueSize: file.otlp_queue_size ?? d.otlp.queueSize,
      batchSize: file.otlp_batch_size ?? d.otlp.batchSize,
      intervalMs: durationMs(file.otlp_interval, d.otlp.intervalMs),
      timeoutMs: durationMs(file.otlp_timeout, d.otlp.timeoutMs),
    };
  }
  return config;
}
