import {
  Logger,
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
  type TlsServerOptions,
  transportMap,
  type TransportMap,
} from '@wmproxy/core-net';
import { HealthChecker, type HealthCheckerOptions, type TargetSpec } from '@wmproxy/health';
import { AccessLog, type AccessLogFormat, type AccessLogSink } from './access-log.js';
import { transportConnector, type Connector } from './engine/connector.js';
import { H2UpstreamTransport } from './engine/h2-upstream.js';
import type { SharedCounters } from './cluster-limit.js';
import { ListenerWire, type ListenerContext, type ProxyCore } from './engine/context.js';
import { DEFAULT_RETRIES, DEFAULT_TIMEOUTS, type RetryOptions, type TimeoutOptions } from './engine/options.js';
import { REVERSE_DEFAULTS } from './defaults.js';
import { ClientSession, crashed } from './engine/session.js';
import { DnsCache, type DnsOptions, type TtlResolver } from './dns.js';
import { Forwarding, type ForwardedOptions } from './headers.js';
import type { ReplayOptions } from './retry.js';
import { Router, type LocationSpec, type VirtualHostSpec } from './router.js';
import { StreamProxy, type StreamSpec } from './stream.js';
import { Upstream, UpstreamServer, type UpstreamServerSpec, type UpstreamSpec } from './upstream.js';

/** One HTTP listener (nginx `server {}`): addresses, optional TLS with SNI, virtual hosts. */
export interface ListenerSpec {
  /** Addresses to listen on: `127.0.0.1:8080`, `[::1]:8080`, `:8080` (all). */
  listen: string | string[];
  /** Serve HTTPS; `sni` picks certificates by server name. */
  tls?: TlsServerOptions;
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
  /** Where `scope = "cluster"` rate limits count, shared by every instance (`@wmproxy/cluster`'s Redis counters). */
  sharedCounters?: SharedCounters;
  /** Resolving upstream DNS names: cached per TTL (see dns.ts). `resolver` may be injected. */
  dns?: DnsOptions & { resolver?: TtlResolver };
  logger?: Logger;
  /** Access log: an AccessLog, or where to write (`-` = stdout, a file path, a sink) and the format. */
  accessLog?: AccessLog | { to: string | AccessLogSink; format?: AccessLogFormat };
  /** Graceful shutdown deadline (default 10 000 ms). */
  shutdownDeadlineMs?: number;
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
  readonly sharedCounters: SharedCounters | undefined;
  readonly logger: Logger;
  readonly accessLog: AccessLog | undefined;
  readonly sessions = new Set<ClientSession>();
  readonly health: HealthChecker;
  draining = false;
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
      for (const server of spec.servers) {
        const kind = server.transport ?? (server.tls ? 'tls' : 'tcp');
        if (this.transports[kind] === undefined) throw new Error(`upstream "${spec.name}": server ${server.address} names an unknown transport "${kind}"`);
      }
      if (old && sameJson(old.spec, spec)) built.set(spec.name, old);
      else built.set(spec.name, new Upstream(spec, this.health, old ? reuseServers(old, spec) : undefined));
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
    for (const upstream of this.upstreams.values()) {
      for (const server of upstream.servers) {
        const spec = upstream.spec.health;
        const target: TargetSpec = { ...spec, check: spec?.check ?? null, address: server.address, pool: upstream.poolOf(server) };
        // Sockets are probed by address as before; other transports carry their own probes. A gRPC
        // check speaks HTTP/2 itself, so an h2/h2c server (a socket underneath) is probed by address.
        const h2 = server.transport === 'h2' || server.transport === 'h2c';
        const grpc = spec?.check?.type === 'grpc' || spec?.check?.type === 'grpcs';
        if (server.transport !== 'tcp' && server.transport !== 'tls' && !(h2 && grpc)) target.transport = this.transports[server.transport];
        targets.push(target);
      }
    }
    return targets;
  }

  async start(): Promise<this> {
    for (const target of this.healthTargets()) this.health.add(target);
    try {
      for (const spec of this.options.servers ?? []) this.listeners.push(await this.openListener(planListener(spec, this)));
      for (const spec of this.options.streams ?? []) this.streams.push(await this.openStream(spec));
    } catch (error) {
      await this.close();
      throw error;
    }
    this.ticker.add(this.sweepJob);
    return this;
  }

  private async openListener(plan: ListenerPlan): Promise<Listener> {
    const listener: Listener = { server: undefined as unknown as Server, ctx: plan.ctx, spec: plan.spec, addresses: plan.addresses, tls: plan.tls };
    listener.server = new Server({
      addresses: parseAddressList(plan.addresses.join(',')),
      tls: plan.spec.tls,
      logger: this.logger,
      limits: plan.limits,
      onConnection: (conn: Conn) => {
        new ClientSession(conn, listener.ctx);
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
    // 1. Check and build everything.
    const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    const retries = checkRetries({ ...DEFAULT_RETRIES, ...options.retries });
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
    Object.assign(this.timeouts, timeouts);
    Object.assign(this.retries, retries);
    this.hedgeDelayMs = options.hedgeDelayMs ?? REVERSE_DEFAULTS.hedgeDelayMs;
    this.requestHedgeMs = options.requestHedgeMs ?? REVERSE_DEFAULTS.requestHedgeMs;
    this.hedges.budget = options.requestHedgeBudget ?? REVERSE_DEFAULTS.requestHedgeBudget;
    this.headLimits = options.headLimits ?? {};
    this.options = { ...options, health: this.options.health, connector: this.options.connector, dns: this.options.dns, logger: this.options.logger, accessLog: this.options.accessLog };
    const next: Listener[] = [];
    for (const plan of plans) {
      if (plan.keep) {
        const ctx = plan.keep.ctx;
        ctx.router = new Router(plan.spec.vhosts, ctx.router, this.sharedCounters, plan.spec.ahead); // compiled once already; now keeping the limits that stay
        ctx.forwarding = plan.ctx.forwarding;
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

  /** Stop accepting, let requests in flight finish (up to the deadline), close everything. */
  async close(): Promise<void> {
    this.draining = true;
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
    tls: spec.tls ? JSON.stringify(spec.tls) : '',
    ctx: { core, router: new Router(spec.vhosts, undefined, core.sharedCounters, spec.ahead), forwarding: new Forwarding(spec.forwarding), scheme: spec.tls ? 'https' : 'http', wire: new ListenerWire() },
  };
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Servers of `old` that a changed group keeps as they are (same address, options and pool settings). */
function reuseServers(old: Upstream, spec: UpstreamSpec): (server: UpstreamServerSpec) => UpstreamServer | undefined {
  if (!sameJson(old.spec.pool, spec.pool)) return () => undefined;
  const taken = new Set<UpstreamServer>();
  return (serverSpec) => {
    const index = old.spec.servers.findIndex((candidate, at) => !taken.has(old.servers[at]!) && sameJson(candidate, serverSpec));
    if (index < 0) return undefined;
    const server = old.servers[index]!;
    taken.add(server);
    return server;
  };
}

function sweep(proxy: ReverseProxy, now: number): void {
  proxy.dns.refreshExpired();
  for (const session of proxy.sessions) {
    try {
      session.checkDeadline(now);
    } catch (error) {
      crashed(session, error);
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
