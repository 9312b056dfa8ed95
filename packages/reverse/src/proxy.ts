import {
  Logger,
  NetError,
  Server,
  Ticker,
  formatHostPort,
  parseAddress,
  parseAddressList,
  silentLogger,
  simpleResponse,
  type Conn,
  type ConnLimitOptions,
  type HeadLimits,
  type Http2Options,
  type TlsServerOptions,
  transportMap,
  type TransportMap,
} from '@wmproxy/core-net';
import { HealthChecker, type HealthCheckerOptions, type TargetSpec } from '@wmproxy/health';
import { AccessLog, type AccessLogFormat, type AccessLogSink } from './access-log.js';
import { transportConnector, type Connector } from './engine/connector.js';
import { H2UpstreamTransport } from './engine/h2-upstream.js';
import type { SharedCounters } from './cluster-limit.js';
import { ListenerWire, type ListenerContext, type ListenerHttp2, type LiveSession, type ProxyCore } from './engine/context.js';
import { Http2ClientConnection } from './engine/h2.js';
import { DEFAULT_RETRIES, DEFAULT_TIMEOUTS, type RetryOptions, type TimeoutOptions } from './engine/options.js';
import { REVERSE_DEFAULTS } from './defaults.js';
import { ClientSession } from './engine/session.js';
import { DnsCache, type DnsOptions, type TtlResolver } from './dns.js';
import { Forwarding, type ForwardedOptions } from './headers.js';
import type { ReplayOptions } from './retry.js';
import { Router, type LocationSpec, type VirtualHostSpec } from './router.js';
import { StreamProxy, connectUpstream, type StreamSpec } from './stream.js';
import { TRACING_DEFAULTS, TRACING_EXPORTERS, Tracer, type OtlpOptions, type SpanSink, type SpanSinkStats, type TracingOptions } from './trace.js';
import { Upstream, UpstreamServer, reuseFrom, type UpstreamServerSpec, type UpstreamSpec } from './upstream.js';
import { srvDiscovery, type DiscoveredServer, type DiscoveryMap, type DiscoveryWatch } from './discovery.js';

/** One HTTP listener (nginx `server {}`): addresses, optional TLS with SNI, virtual hosts. */
export interface ListenerSpec {
  /** Addresses to listen on: `127.0.0.1:8080`, `[::1]:8080`, `:8080` (all). */
  listen: string | string[];
  /** Serve HTTPS; `sni` picks certificates by server name. */
  tls?: TlsServerOptions;
  /**
   * HTTP/2 beside HTTP/1.1 (default true): over TLS by ALPN (`h2,http/1.1`,
   * 1.1 for clients that do not offer h2); `"h2c"` on a listener without TLS
   * also accepts cleartext HTTP/2 by prior knowledge (the client preface);
   * false: HTTP/1.1 only.
   */
  http2?: boolean | 'h2c';
  /** HTTP/2 session limits (core-net's `DEFAULT_HTTP2_OPTIONS`: concurrent streams, windows, header list, flood limits). */
  http2Options?: Partial<Http2Options>;
  vhosts: VirtualHostSpec[];
  /** Locations matched before every virtual host, whatever the Host (ACME HTTP-01 at /.well-known/acme-challenge/). */
  ahead?: LocationSpec[];
  /** X-Forwarded-* / Forwarded / X-Real-IP handling. */
  forwarding?: ForwardedOptions;
  /** Most client connections open at once on this listener (default 0: only the process limit, core-net's `setProcessConnectionLimit`; HAProxy frontend `maxconn`). */
  maxConnections?: number;
  /** Most client connections open at once from one IP address (default 0: no limit; nginx `limit_conn` on `$binary_remote_addr`). */
  maxConnectionsPerIp?: number;
  /** Status answered (with `Connection: close`, `Retry-After: 1`) to a connection over a limit before it is closed (default 503, as nginx `limit_conn_status`; 0: closed without an answer). */
  connectionLimitStatus?: number;
  /** Sees each accepted connection before it is served: a local front that hands its visitors over names them here (`Conn.showPeer`). */
  onAccept?: (conn: Conn) => void;
}

/** The connection limits of a listener spec, for core-net's Server. */
function listenerLimits(spec: ListenerSpec): ConnLimitOptions {
  const status = spec.connectionLimitStatus ?? REVERSE_DEFAULTS.connectionLimitStatus;
  if (status !== 0 && !(Number.isInteger(status) && status >= 400 && status <= 599)) throw new Error(`connectionLimitStatus must be 0 or a status from 400 to 599, got ${status}`);
  return {
    maxConnections: spec.maxConnections,
    maxConnectionsPerIp: spec.maxConnectionsPerIp,
    refusal: status === 0 ? undefined : simpleResponse(status, { headers: [['Retry-After', '1']], body: 'Too many connections; try again later.\n' }),
  };
}

export interface ReverseProxyOptions {
  servers?: ListenerSpec[];
  upstreams: UpstreamSpec[];
  /** TCP and UDP stream listeners. */
  streams?: StreamSpec[];
  /** Health checker options (passive checks, panic threshold, slow start, defaults of active checks), or a checker to share. */
  health?: HealthCheckerOptions | HealthChecker;
  timeouts?: Partial<TimeoutOptions>;
  /** Retry rules, and `bodyBuffer`: the most request-body bytes kept so that an idempotent request with a body can be replayed (default 64 KiB). */
  retries?: Partial<RetryOptions> & ReplayOptions;
  /** Connect hedging delay in ms (default 100; 0 disables). */
  hedgeDelayMs?: number;
  /**
   * Request hedging ceiling in ms (default 500; 0: off): an idempotent
   * request without a body that has no response byte after the server's
   * recent p99 first-byte time (at least 10 ms, at most this) is sent to a
   * second server too, and the first answer wins (Envoy's
   * hedge_on_per_try_timeout, with an adaptive delay). See engine/hedge.ts.
   */
  requestHedgeMs?: number;
  /** Request hedges earned per request (default 0.1), banked up to one second's worth. */
  requestHedgeBudget?: number;
  /** Request-head limits (defaults: 64 KiB, 128 fields, 16 KiB target). */
  headLimits?: HeadLimits;
  /**
   * Transports besides `tcp` and `tls` (which always exist and resolve names
   * through the DNS cache), by the name servers give in `transport`: a
   * tunnel, an HTTP/2 connection. Active health checks of those servers go
   * through the same transport.
   */
  transports?: TransportMap;
  /** How upstream connections are opened (tests inject delays here; default: the server's transport). */
  connector?: Connector;
  /**
   * Discovery sources besides the built-in `srv` (DNS SRV records through the
   * DNS cache), by the name a group's `discover.source` gives: `etcd`.
   */
  discovery?: DiscoveryMap;
  /** Where `scope = "cluster"` rate limits count, shared by every instance (`@wmproxy/cluster`'s Redis counters). */
  sharedCounters?: SharedCounters;
  /** Resolving upstream DNS names: cached per TTL (see dns.ts). `resolver` may be injected. */
  dns?: DnsOptions & { resolver?: TtlResolver };
  logger?: Logger;
  /** Access log: an AccessLog, or where to write (`-` = stdout, a file path, a sink) and the format. */
  accessLog?: AccessLog | { to: string | AccessLogSink; format?: AccessLogFormat };
  /** Graceful shutdown deadline (default 10 000 ms). */
  shutdownDeadlineMs?: number;
  /** W3C trace context and optional OTLP/HTTP export (trace.ts; default off). */
  tracing?: TracingSpec;
}

/** Tracing settings as given: unset ones are TRACING_DEFAULTS'. */
export type TracingSpec = Partial<Omit<TracingOptions, 'otlp'>> & { otlp?: Partial<OtlpOptions> & { endpoint: string } };

/** `spec` with its defaults, checked (throws on a bad ratio, endpoint or size). */
export function resolveTracing(spec: TracingSpec | undefined): TracingOptions {
  const d = TRACING_DEFAULTS;
  const options: TracingOptions = { enabled: spec?.enabled ?? d.enabled, sampleRatio: spec?.sampleRatio ?? d.sampleRatio, serviceName: spec?.serviceName ?? d.serviceName, exporter: spec?.exporter ?? d.exporter };
  if (!(options.sampleRatio >= 0 && options.sampleRatio <= 1)) throw new RangeError(`tracing sampleRatio must be from 0 to 1, got ${options.sampleRatio}`);
  if (!TRACING_EXPORTERS.includes(options.exporter)) throw new RangeError(`tracing exporter must be one of ${TRACING_EXPORTERS.join(', ')}, got ${options.exporter}`);
  if (spec?.otlp) {
    const otlp = { ...d.otlp, headers: {}, ...spec.otlp };
    const url = new URL(otlp.endpoint);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`tracing OTLP endpoint must be an http(s) URL, got ${otlp.endpoint}`);
    options.otlp = otlp;
  }
  return options;
}

/** Period of the proxy's one timer: request deadlines, DNS refresh, idle pool expiry. */
const SWEEP_MS = 100;

/**
 * The reverse proxy: HTTP listeners with virtual hosts and locations, upstream
 * groups balanced by health-aware policies, TCP/UDP stream listeners.
 *
 * ```ts
 * const proxy = await new ReverseProxy({
 *   upstreams: [{ name: 'app', servers: [{ address: '127.0.0.1:3001' }, { address: '127.0.0.1:3002' }],
 *                 health: { check: { type: 'http', path: '/healthz' }, intervalMs: 1000 } }],
 *   servers: [{ listen: '127.0.0.1:8080', vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }],
 * }).start();
 * ```
 */
export class ReverseProxy implements ProxyCore {
  readonly upstreams = new Map<string, Upstream>();
  readonly timeouts: TimeoutOptions;
  readonly retries: RetryOptions & ReplayOptions;
  hedgeDelayMs: number;
  requestHedgeMs: number;
  readonly hedges: { inFlight: number; budget: number };
  headLimits: HeadLimits;
  /** Upstream DNS names and their addresses, re-resolved per TTL. */
  readonly dns: DnsCache;
  readonly connector: Connector;
  readonly transports: TransportMap;
  private readonly h2Transports: H2UpstreamTransport[];
  /** Where cluster rate limits count; a reload may bring them (a `[cluster] redis` added). */
  sharedCounters: SharedCounters | undefined;
  readonly logger: Logger;
  readonly accessLog: AccessLog | undefined;
  readonly sessions = new Set<LiveSession>();
  readonly health: HealthChecker;
  draining = false;
  /** While tracing is on (see trace.ts); undefined: off. */
  tracer: Tracer | undefined = undefined;
  private spanSink: SpanSink | undefined = undefined;
  /** The export settings `spanSink` was built for. */
  private spanSinkKey = '';
  private readonly ownsHealth: boolean;
  private readonly ownsAccessLog: boolean;
  private readonly listeners: Listener[] = [];
  readonly streams: StreamProxy[] = [];
  /** The proxy's one timer: the deadline sweep and every pool's idle expiry run on its ticks. */
  readonly ticker = new Ticker(SWEEP_MS);
  private readonly sweepJob = (now: number): void => sweep(this, now);
  private options: ReverseProxyOptions;
  /** Listeners removed by a reload, draining. */
  private readonly retiring = new Set<Promise<unknown>>();
  private readonly healthHandlers: Array<[string, (...args: never[]) => void]> = [];
  private readonly discovery: DiscoveryMap;
  /** Each discovering group's watch and the servers it found, by group name. */
  private readonly watches = new Map<string, { key: string; watch: DiscoveryWatch; servers: UpstreamServerSpec[] }>();

  constructor(options: ReverseProxyOptions) {
    this.options = options;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.retries = checkRetries({ ...DEFAULT_RETRIES, ...options.retries });
    this.hedgeDelayMs = options.hedgeDelayMs ?? REVERSE_DEFAULTS.hedgeDelayMs;
    this.requestHedgeMs = options.requestHedgeMs ?? REVERSE_DEFAULTS.requestHedgeMs;
    this.hedges = { inFlight: 0, budget: options.requestHedgeBudget ?? REVERSE_DEFAULTS.requestHedgeBudget };
    this.headLimits = options.headLimits ?? {};
    this.logger = options.logger ?? silentLogger;
    this.dns = new DnsCache(options.dns, this.logger);
    this.dns.onChange = (host) => this.addressesChanged(host);
    // `h2://` and `h2c://` servers (engine/h2-upstream.ts); an embedder's transports of those names win.
    this.h2Transports = [new H2UpstreamTransport({ tls: true, resolver: this.dns.resolve }), new H2UpstreamTransport({ tls: false, resolver: this.dns.resolve })];
    this.transports = transportMap({ h2: this.h2Transports[0]!, h2c: this.h2Transports[1]!, ...options.transports }, this.dns.resolve);
    this.discovery = { srv: srvDiscovery(this.dns), ...options.discovery };
    this.sharedCounters = options.sharedCounters;
    this.connector = options.connector ?? transportConnector(this.transports);
    if (options.accessLog instanceof AccessLog) {
      this.accessLog = options.accessLog;
      this.ownsAccessLog = false;
    } else if (options.accessLog) {
      this.accessLog = new AccessLog(options.accessLog.to, options.accessLog.format);
      this.ownsAccessLog = true;
    } else this.ownsAccessLog = false;
    if (options.health instanceof HealthChecker) {
      this.health = options.health;
      this.ownsHealth = false;
    } else {
      this.health = new HealthChecker(options.health);
      this.ownsHealth = true;
    }
    for (const [name, upstream] of this.buildUpstreams(options)) this.upstreams.set(name, upstream);
    const onTransition = (event: { target: string; from: string; to: string; reason: string }): void => {
      this.logger.info('upstream health', { target: event.target, from: event.from, to: event.to, reason: event.reason });
      if (event.to === 'unhealthy') this.markedDown(event.target);
      if (event.to === 'unhealthy' || event.to === 'healthy') {
        const { host, family } = parseAddress(event.target);
        if (family === 0) this.dns.refreshNow(host);
      }
    };
    const onEject = (event: { target: string; reason: string; durationMs: number }): void => {
      this.logger.warn('upstream ejected', { target: event.target, reason: event.reason, ms: event.durationMs });
      this.markedDown(event.target);
    };
    this.health.events.on('transition', onTransition);
    this.health.events.on('eject', onEject);
    this.healthHandlers.push(['transition', onTransition], ['eject', onEject]);
  }

  /**
   * The upstream groups of `options`, checked (unique names, every location
   * and stream refers to one). A group whose spec is unchanged from the
   * running one is the same object; a changed group keeps the server objects
   * (pool, counters, connections in flight) of servers that stay as they were.
   */
  private buildUpstreams(options: ReverseProxyOptions): Map<string, Upstream> {
    const built = new Map<string, Upstream>();
    for (const spec of options.upstreams) {
      if (built.has(spec.name)) throw new Error(`upstream "${spec.name}" is defined twice`);
      const old = this.upstreams.get(spec.name);
      for (const server of [...spec.servers, ...(spec.discover ? [{ address: spec.discover.target, ...spec.discover.server }] : [])]) {
        const kind = server.transport ?? (server.tls ? 'tls' : 'tcp');
        if (this.transports[kind] === undefined) throw new Error(`upstream "${spec.name}": server ${server.address} names an unknown transport "${kind}"`);
      }
      if (spec.discover && this.discovery[spec.discover.source] === undefined) {
        throw new Error(`upstream "${spec.name}": unknown discovery source "${spec.discover.source}" (known: ${Object.keys(this.discovery).join(', ')})`);
      }
      if (old && sameJson(old.spec, spec)) built.set(spec.name, old);
      else {
        // Servers discovered so far stay, when the group still follows the same target.
        const watched = this.watches.get(spec.name);
        const discovered = watched && watched.key === discoveryKey(spec) ? watched.servers : [];
        built.set(spec.name, new Upstream(spec, this.health, old && sameJson(old.spec.pool, spec.pool) ? reuseFrom(old.servers) : undefined, discovered));
      }
    }
    for (const upstream of built.values()) for (const server of upstream.servers) server.pool.useTicker(this.ticker);
    for (const listener of options.servers ?? []) {
      for (const vhost of listener.vhosts) {
        for (const location of vhost.locations) {
          if (location.upstream && !built.has(location.upstream)) throw new Error(`location refers to unknown upstream "${location.upstream}"`);
        }
      }
    }
    for (const stream of options.streams ?? []) if (!built.has(stream.upstream)) throw new Error(`stream refers to unknown upstream "${stream.upstream}"`);
    return built;
  }

  /** Start following the discovery targets of the groups that have one; stop those no group follows any more. */
  private syncDiscovery(): void {
    for (const [name, entry] of this.watches) {
      const upstream = this.upstreams.get(name);
      if (upstream && discoveryKey(upstream.spec) === entry.key) continue;
      entry.watch.close();
      this.watches.delete(name);
    }
    for (const upstream of this.upstreams.values()) {
      const discover = upstream.spec.discover;
      if (!discover || this.watches.has(upstream.name)) continue;
      const key = discoveryKey(upstream.spec);
      const entry = { key, watch: undefined as unknown as DiscoveryWatch, servers: [] as UpstreamServerSpec[] };
      this.watches.set(upstream.name, entry);
      const logger = this.logger;
      entry.watch = this.discovery[discover.source]!.watch(discover.target, (found) => this.discovered(upstream.name, key, found), logger);
    }
  }

  private discoveredSpec(spec: UpstreamSpec, found: DiscoveredServer): UpstreamServerSpec {
    const template = spec.discover?.server ?? {};
    return { ...template, address: found.address, weight: found.weight ?? template.weight ?? 1, backup: found.backup ?? template.backup ?? false };
  }

  /**
   * A discovery source found a new list for a group: apply it in place. New
   * servers join with slow start (when configured) and the group's health
   * checks; servers that left lose their idle connections and finish what
   * they have in flight.
   */
  private discovered(name: string, key: string, found: DiscoveredServer[]): void {
    const entry = this.watches.get(name);
    const upstream = this.upstreams.get(name);
    if (!entry || entry.key !== key || !upstream || this.draining) return;
    entry.servers = found.map((server) => this.discoveredSpec(upstream.spec, server));
    let change: { added: UpstreamServer[]; removed: UpstreamServer[] };
    try {
      change = upstream.replaceServers([...upstream.spec.servers, ...entry.servers]);
    } catch (error) {
      this.logger.warn('discovery: unusable server list, keeping the last one', { upstream: name, error: (error as Error).message });
      return;
    }
    if (change.added.length === 0 && change.removed.length === 0) return;
    // Slow start is for servers joining a pool that serves already; the first ones found take the traffic at once.
    const joining = upstream.servers.length > change.added.length;
    for (const server of change.added) {
      server.pool.useTicker(this.ticker);
      this.health.add({ ...this.healthTarget(upstream, server), slowStart: joining });
    }
    const remaining = new Set<string>();
    for (const group of this.upstreams.values()) for (const server of group.servers) remaining.add(server.address);
    for (const server of change.removed) {
      server.pool.close();
      if (!remaining.has(server.address)) this.health.remove(server.address);
    }
    this.logger.info('upstream servers discovered', {
      upstream: name,
      servers: upstream.servers.map((server) => server.address).join(' '),
      added: change.added.map((server) => server.address).join(' '),
      removed: change.removed.map((server) => server.address).join(' '),
    });
  }

  /** The health targets of discovered servers (an embedder that owns the health checker adds them to its own targets on reload). */
  discoveredTargets(): TargetSpec[] {
    const targets: TargetSpec[] = [];
    for (const [name, entry] of this.watches) {
      const upstream = this.upstreams.get(name);
      if (!upstream) continue;
      const addresses = new Set(entry.servers.map((server) => server.address));
      for (const server of upstream.servers) if (addresses.has(server.address)) targets.push(this.healthTarget(upstream, server));
    }
    return targets;
  }

  /** A name's addresses changed: idle connections to the old ones go, so new requests use the new ones. */
  private addressesChanged(host: string): void {
    for (const upstream of this.upstreams.values()) for (const server of upstream.servers) if (server.host === host) server.pool.close();
  }

  private markedDown(address: string): void {
    for (const upstream of this.upstreams.values()) {
      if (upstream.spec.shutdownSessionsOnDown) upstream.shutdownSessions(address);
      else for (const server of upstream.servers) if (server.address === address) server.pool.close();
    }
  }

  /** Health targets: one per server, in its upstream's pool (backups in their own). */
  private healthTargets(): TargetSpec[] {
    const targets: TargetSpec[] = [];
    for (const upstream of this.upstreams.values()) for (const server of upstream.servers) targets.push(this.healthTarget(upstream, server));
    return targets;
  }

  private healthTarget(upstream: Upstream, server: UpstreamServer): TargetSpec {
    const spec = upstream.spec.health;
    const target: TargetSpec = { ...spec, check: spec?.check ?? null, address: server.address, pool: upstream.poolOf(server) };
    // Sockets are probed by address as before; other transports carry their own probes. A gRPC
    // check speaks HTTP/2 itself, so an h2/h2c server (a socket underneath) is probed by address.
    const h2 = server.transport === 'h2' || server.transport === 'h2c';
    const grpc = spec?.check?.type === 'grpc' || spec?.check?.type === 'grpcs';
    if (server.transport !== 'tcp' && server.transport !== 'tls' && !(h2 && grpc)) target.transport = this.transports[server.transport];
    return target;
  }

  async start(): Promise<this> {
    await this.applyTracing(resolveTracing(this.options.tracing));
    for (const target of this.healthTargets()) this.health.add(target);
    try {
      for (const spec of this.options.servers ?? []) this.listeners.push(await this.openListener(planListener(spec, this)));
      for (const spec of this.options.streams ?? []) this.streams.push(await this.openStream(spec));
    } catch (error) {
      await this.close();
      throw error;
    }
    this.ticker.add(this.sweepJob);
    this.syncDiscovery();
    return this;
  }

  private async openListener(plan: ListenerPlan): Promise<Listener> {
    const listener: Listener = { server: undefined as unknown as Server, ctx: plan.ctx, spec: plan.spec, addresses: plan.addresses, tls: plan.tls };
    listener.server = new Server({
      addresses: parseAddressList(plan.addresses.join(',')),
      tls: plan.spec.tls && listener.ctx.http2 !== undefined ? { ...plan.spec.tls, alpn: ALPN_H2 } : plan.spec.tls,
      logger: this.logger,
      limits: plan.limits,
      onConnection: (conn: Conn) => {
        listener.spec.onAccept?.(conn);
        const http2 = listener.ctx.http2;
        if (http2 !== undefined && conn.alpnProtocol === 'h2') new Http2ClientConnection(conn, listener.ctx, http2.options);
        else new ClientSession(conn, listener.ctx);
      },
    });
    await listener.server.start();
    return listener;
  }

  private async openStream(spec: StreamSpec): Promise<StreamProxy> {
    const stream = new StreamProxy(spec, this.upstreams.get(spec.upstream)!, this);
    await stream.start();
    return stream;
  }

  /**
   * Apply a new configuration in place (nginx's reload without new
   * workers). Everything is checked and built first: an invalid
   * configuration, or a new address that cannot be bound, throws and leaves
   * the running proxy untouched. Then:
   * - a listener whose addresses (and TLS settings) stay keeps its socket and
   *   its connections; its routes, forwarding and limits are replaced, so the
   *   next request on an open keep-alive connection already uses them, and
   *   WebSockets carry on;
   * - new listeners open; removed ones stop accepting, answer what they have
   *   in flight with `Connection: close` and close (within
   *   `shutdownDeadlineMs`); a listener whose TLS settings changed is reopened;
   * - an unchanged upstream group is kept as it is, a changed one keeps the
   *   pools and counters of its servers that stay; health targets follow;
   * - streams that stay as they were keep running; others are restarted;
   * - timeouts, retries, hedging and head limits take the new values.
   * `health`, `connector`, `dns`, `logger` and `accessLog` are those of the
   * constructor (not reloaded).
   */
  reload(options: ReverseProxyOptions): Promise<void> {
    // One reload at a time, in call order.
    const run = this.reloading.then(() => this.applyReload(options));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private reloading: Promise<unknown> = Promise.resolve();

  private async applyReload(options: ReverseProxyOptions): Promise<void> {
    if (this.draining) throw new Error('the proxy is closing');
    // 1. Check and build everything (with what the new options lend: counters, discovery sources).
    if (options.sharedCounters) this.sharedCounters = options.sharedCounters;
    if (options.discovery) Object.assign(this.discovery, options.discovery);
    const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    const retries = checkRetries({ ...DEFAULT_RETRIES, ...options.retries });
    const tracing = resolveTracing(options.tracing);
    const upstreams = this.buildUpstreams(options);
    const plans = (options.servers ?? []).map((spec) => planListener(spec, this));
    const unmatched = new Set(this.listeners);
    for (const plan of plans) {
      const key = plan.addresses.join(',');
      const old = [...unmatched].find((listener) => listener.addresses.join(',') === key || [...listener.server.boundAddresses].sort().join(',') === key);
      if (!old) continue;
      unmatched.delete(old);
      if (old.tls === plan.tls) plan.keep = old;
      else plan.replace = [old];
    }
    // A new address set that overlaps a listener being removed: that one must let go of its socket first.
    for (const plan of plans) {
      if (plan.keep || plan.replace) continue;
      const overlapping = [...unmatched].filter((listener) => listener.server.boundAddresses.some((address) => plan.addresses.includes(address)));
      if (overlapping.length === 0) continue;
      plan.replace = overlapping;
      for (const old of overlapping) unmatched.delete(old);
    }
    const seen = new Set<string>();
    for (const plan of plans) {
      for (const address of plan.addresses) {
        if (!address.endsWith(':0') && seen.has(address)) throw new Error(`${address} is used by two listeners`);
        seen.add(address);
      }
    }
    // 2. Open the new listeners; if one fails, nothing has changed yet.
    const opened: Listener[] = [];
    try {
      for (const plan of plans) if (!plan.keep && !plan.replace) opened.push((plan.opened = await this.openListener(plan)));
    } catch (error) {
      await Promise.all(opened.map((listener) => listener.server.shutdown({ deadlineMs: 0 })));
      throw error;
    }
    // 3. Commit.
    const retired: Upstream[] = [...this.upstreams.values()].filter((old) => upstreams.get(old.name) !== old);
    this.upstreams.clear();
    for (const [name, upstream] of upstreams) this.upstreams.set(name, upstream);
    const kept = new Set<UpstreamServer>();
    for (const upstream of upstreams.values()) for (const server of upstream.servers) kept.add(server);
    for (const old of retired) for (const server of old.servers) if (!kept.has(server)) server.pool.close();
    if (this.ownsHealth) this.health.replaceTargets(this.healthTargets());
    else for (const target of this.healthTargets()) this.health.add(target);
    this.syncDiscovery();
    Object.assign(this.timeouts, timeouts);
    Object.assign(this.retries, retries);
    this.hedgeDelayMs = options.hedgeDelayMs ?? REVERSE_DEFAULTS.hedgeDelayMs;
    this.requestHedgeMs = options.requestHedgeMs ?? REVERSE_DEFAULTS.requestHedgeMs;
    this.hedges.budget = options.requestHedgeBudget ?? REVERSE_DEFAULTS.requestHedgeBudget;
    this.headLimits = options.headLimits ?? {};
    await this.applyTracing(tracing);
    this.options = { ...options, health: this.options.health, connector: this.options.connector, dns: this.options.dns, logger: this.options.logger, accessLog: this.options.accessLog };
    const next: Listener[] = [];
    for (const plan of plans) {
      if (plan.keep) {
        const ctx = plan.keep.ctx;
        ctx.router = new Router(plan.spec.vhosts, ctx.router, this.sharedCounters, plan.spec.ahead); // compiled once already; now keeping the limits that stay
        ctx.forwarding = plan.ctx.forwarding;
        // Cleartext h2c on or off: for the next connections (those speaking it now go on).
        ctx.http2 = plan.ctx.http2;
        plan.keep.spec = plan.spec;
        plan.keep.addresses = plan.addresses;
        plan.keep.server.setLimits(plan.limits);
        next.push(plan.keep);
      } else if (plan.replace) {
        for (const old of plan.replace) {
          old.server.stopAccepting();
          this.retire(old);
        }
        next.push(await this.openListener(plan));
      } else next.push(plan.opened!);
    }
    for (const old of unmatched) {
      old.server.stopAccepting();
      this.retire(old);
    }
    this.listeners.length = 0;
    this.listeners.push(...next);
    // Streams: those that stay as they were keep running; the others restart (UDP sockets cannot be shared).
    const streams: Array<StreamProxy | StreamSpec> = (options.streams ?? []).map((spec) => {
      const index = this.streams.findIndex((stream) => sameJson(stream.spec, spec) && stream.upstream === this.upstreams.get(spec.upstream));
      return index < 0 ? spec : this.streams.splice(index, 1)[0]!;
    });
    await Promise.all(this.streams.map((stream) => stream.close()));
    this.streams.length = 0;
    for (const entry of streams) this.streams.push(entry instanceof StreamProxy ? entry : await this.openStream(entry));
    this.logger.info('reverse proxy reloaded', { listeners: this.listeners.length, upstreams: this.upstreams.size, streams: this.streams.length });
  }

  /** A listener left the configuration: its connections finish their request in flight with `Connection: close`, then it closes. */
  private retire(listener: Listener): void {
    listener.ctx.core = Object.create(this, { draining: { value: true } }) as ProxyCore;
    for (const session of [...this.sessions]) if (session.ctx === listener.ctx) session.drainIfIdle();
    const done = listener.server.shutdown({ deadlineMs: this.options.shutdownDeadlineMs ?? REVERSE_DEFAULTS.shutdownDeadlineMs }).finally(() => this.retiring.delete(done));
    this.retiring.add(done);
  }

  /** Bound HTTP addresses (`host:port`), in listener order. */
  get addresses(): string[] {
    return this.listeners.flatMap((listener) => listener.server.boundAddresses);
  }

  /**
   * Pick a server of upstream group `name` and connect to it (`connectUpstream`
   * in stream.ts: the group's policy, health, passive checks, connect hedging
   * and `tries` servers at most). For bridges that need a byte stream to a
   * group, such as ws2tcp's `connector`. Rejects with ENOTFOUND for an unknown group.
   */
  connectUpstream(name: string, clientIp: string, options: { tries?: number; signal?: AbortSignal } = {}): Promise<Conn> {
    const upstream = this.upstreams.get(name);
    if (!upstream) return Promise.reject(new NetError('ENOTFOUND', `no upstream "${name}"`));
    return connectUpstream(this, upstream, clientIp, options.tries ?? REVERSE_DEFAULTS.stream.tries, options.signal);
  }

  reportFailure(upstream: Upstream, server: UpstreamServer, kind: 'connect' | 'timeout' | 'status5xx', reason: string): void {
    void upstream;
    this.logger.debug('passive failure', { target: server.address, kind, reason });
    this.health.reportFailure(server.address, kind);
  }

  reportSuccess(_upstream: Upstream, server: UpstreamServer): void {
    this.health.reportSuccess(server.address);
  }

  /** Upstreams, servers, pools and health in one object (for the control API). */
  snapshot(): { upstreams: Record<string, ReturnType<Upstream['snapshot']>>; health: ReturnType<HealthChecker['snapshot']>; sessions: number } {
    const upstreams: Record<string, ReturnType<Upstream['snapshot']>> = {};
    for (const [name, upstream] of this.upstreams) upstreams[name] = upstream.snapshot();
    return { upstreams, health: this.health.snapshot(), sessions: this.sessions.size };
  }

  /**
   * Tracing on or off, and its exporter: wmproxy's OTLP module is imported
   * only when an endpoint is configured, the OpenTelemetry one (otel.ts, and
   * the SDK with an endpoint) only with exporter `otel`; a sink is kept
   * across reloads that leave its settings as they were (its queue and
   * counters go on).
   */
  private async applyTracing(options: TracingOptions): Promise<void> {
    const otel = options.exporter === 'otel';
    const key = options.enabled && (otel || options.otlp) ? JSON.stringify([options.exporter, options.otlp, options.serviceName, otel ? options.sampleRatio : 0]) : '';
    if (key !== this.spanSinkKey) {
      const old = this.spanSink;
      this.spanSink = undefined;
      this.spanSinkKey = '';
      if (old) void old.close();
      if (key !== '' && otel) {
        const { OtelSink } = await import('./otel.js');
        this.spanSink = await OtelSink.create(options, this.logger);
        this.spanSinkKey = key;
      } else if (key !== '') {
        const { OtlpExporter } = await import('./otlp.js');
        this.spanSink = new OtlpExporter(options.otlp!, options.serviceName, this.logger);
        this.spanSinkKey = key;
      }
    }
    this.tracer = options.enabled ? new Tracer(options, this.spanSink) : undefined;
  }

  /** Exported, dropped and failed spans of the exporter (undefined: no export configured). */
  traceStats(): SpanSinkStats | undefined {
    return this.spanSink?.stats();
  }

  /** Stop accepting, let requests in flight finish (up to the deadline), close everything. */
  async close(): Promise<void> {
    this.draining = true;
    for (const entry of this.watches.values()) entry.watch.close();
    this.watches.clear();
    for (const session of [...this.sessions]) session.drainIfIdle();
    const deadlineMs = this.options.shutdownDeadlineMs ?? REVERSE_DEFAULTS.shutdownDeadlineMs;
    await Promise.all([
      ...this.listeners.map((listener) => listener.server.shutdown({ deadlineMs })),
      ...this.streams.map((stream) => stream.close()),
      ...this.retiring,
    ]);
    this.listeners.length = 0;
    this.streams.length = 0;
    for (const upstream of this.upstreams.values()) upstream.close();
    for (const transport of this.h2Transports) transport.close();
    this.ticker.close();
    const events = this.health.events as unknown as { off(name: string, fn: (...args: never[]) => void): void };
    for (const [name, fn] of this.healthHandlers.splice(0)) events.off(name, fn);
    if (this.ownsHealth) await this.health.close();
    if (this.ownsAccessLog) await this.accessLog?.close();
    this.tracer = undefined;
    await this.spanSink?.close();
    this.spanSink = undefined;
    this.spanSinkKey = '';
  }
}

/** A listener's context; reload replaces its router and forwarding in place. */
type ListenerState = { -readonly [K in keyof ListenerContext]: ListenerContext[K] };

interface Listener {
  server: Server;
  ctx: ListenerState;
  spec: ListenerSpec;
  /** Configured addresses, normalised and sorted (the key a reload matches on). */
  addresses: string[];
  /** The TLS settings as JSON ('' for plain HTTP). */
  tls: string;
}

interface ListenerPlan {
  spec: ListenerSpec;
  limits: ConnLimitOptions;
  ctx: ListenerState;
  addresses: string[];
  tls: string;
  keep?: Listener;
  /** Listeners to close before this one opens (same addresses, other TLS settings or address set). */
  replace?: Listener[];
  opened?: Listener;
}

/** Compile a listener spec (routes, limits, forwarding): throws on a bad one. */
function planListener(spec: ListenerSpec, core: ProxyCore): ListenerPlan {
  const addresses = parseAddressList(Array.isArray(spec.listen) ? spec.listen.join(',') : spec.listen)
    .map((address) => formatHostPort(address.host, address.port))
    .sort();
  return {
    spec,
    limits: listenerLimits(spec),
    addresses,
    // HTTP/2 changes what TLS offers by ALPN: a TLS listener whose http2 changed is reopened like one whose TLS did.
    tls: spec.tls ? JSON.stringify([spec.tls, (spec.http2 ?? REVERSE_DEFAULTS.http2) !== false]) : '',
    ctx: {
      core,
      router: new Router(spec.vhosts, undefined, core.sharedCounters, spec.ahead),
      forwarding: new Forwarding(spec.forwarding),
      scheme: spec.tls ? 'https' : 'http',
      wire: new ListenerWire(),
      http2: listenerHttp2(spec),
    },
  };
}

const ALPN_H2 = ['h2', 'http/1.1'];

/** What a listener does with HTTP/2 (undefined: HTTP/1.1 only). */
function listenerHttp2(spec: ListenerSpec): ListenerHttp2 | undefined {
  const http2 = spec.http2 ?? REVERSE_DEFAULTS.http2;
  if (http2 === 'h2c' && spec.tls) throw new Error('http2 = "h2c" is for listeners without tls (over TLS, HTTP/2 is chosen by ALPN)');
  if (http2 === false || (http2 === true && !spec.tls)) return undefined;
  return { h2c: http2 === 'h2c', options: spec.http2Options ?? {} };
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What a group's discovery follows ('' when it discovers nothing). */
function discoveryKey(spec: UpstreamSpec): string {
  return spec.discover ? JSON.stringify([spec.discover.source, spec.discover.target, spec.discover.server ?? {}]) : '';
}

function sweep(proxy: ReverseProxy, now: number): void {
  proxy.dns.refreshExpired();
  for (const session of proxy.sessions) {
    try {
      session.checkDeadline(now);
    } catch (error) {
      session.crashed(error);
    }
  }
}

export { ClientSession };

function checkRetries<T extends RetryOptions>(retries: T): T {
  if (!(retries.tries >= 1)) throw new Error('retries.tries must be at least 1');
  if (!(retries.budgetPercent >= 0)) throw new Error('retries.budgetPercent must be 0 or more');
  if (!(Number.isInteger(retries.budgetMinConcurrency) && retries.budgetMinConcurrency >= 0)) throw new Error('retries.budgetMinConcurrency must be an integer, 0 or more');
  return retries;
}
