import {
  Logger,
  Server,
  parseAddressList,
  silentLogger,
  type Conn,
  type HeadLimits,
  type TlsServerOptions,
} from '@wmproxy/core-net';
import { HealthChecker, type HealthCheckerOptions } from '@wmproxy/health';
import { AccessLog, type AccessLogFormat, type AccessLogSink } from './access-log.js';
import { defaultConnector, type Connector } from './engine/connector.js';
import type { ListenerContext, ProxyCore } from './engine/context.js';
import { DEFAULT_RETRIES, DEFAULT_TIMEOUTS, type RetryOptions, type TimeoutOptions } from './engine/options.js';
import { ClientSession, crashed } from './engine/session.js';
import { Forwarding, type ForwardedOptions } from './headers.js';
import { Router, type VirtualHostSpec } from './router.js';
import { StreamProxy, type StreamSpec } from './stream.js';
import { Upstream, type UpstreamServer, type UpstreamSpec } from './upstream.js';

/** One HTTP listener (nginx `server {}`): addresses, optional TLS with SNI, virtual hosts. */
export interface ListenerSpec {
  /** Addresses to listen on: `127.0.0.1:8080`, `[::1]:8080`, `:8080` (all). */
  listen: string | string[];
  /** Serve HTTPS; `sni` picks certificates by server name. */
  tls?: TlsServerOptions;
  vhosts: VirtualHostSpec[];
  /** X-Forwarded-* / Forwarded / X-Real-IP handling. */
  forwarding?: ForwardedOptions;
}

export interface ReverseProxyOptions {
  servers?: ListenerSpec[];
  upstreams: UpstreamSpec[];
  /** TCP and UDP stream listeners. */
  streams?: StreamSpec[];
  /** Health checker options (passive checks, panic threshold, slow start, defaults of active checks), or a checker to share. */
  health?: HealthCheckerOptions | HealthChecker;
  timeouts?: Partial<TimeoutOptions>;
  retries?: Partial<RetryOptions>;
  /** Connect hedging delay in ms (default 100; 0 disables). */
  hedgeDelayMs?: number;
  /**
   * Request hedging delay in ms (default 0: off): an idempotent request
   * without a body that has no response byte after this long is sent to a
   * second server too, and the first answer wins (Envoy's hedge_on_per_try_timeout).
   */
  requestHedgeMs?: number;
  /** Most request hedges in flight, as a share of client connections (default 0.1, at least one). */
  requestHedgeBudget?: number;
  /** Request-head limits (defaults: 64 KiB, 128 fields, 16 KiB target). */
  headLimits?: HeadLimits;
  /** How upstream connections are opened (tests inject delays here). */
  connector?: Connector;
  logger?: Logger;
  /** Access log: an AccessLog, or where to write (`-` = stdout, a file path, a sink) and the format. */
  accessLog?: AccessLog | { to: string | AccessLogSink; format?: AccessLogFormat };
  /** Graceful shutdown deadline (default 10 000 ms). */
  shutdownDeadlineMs?: number;
}

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
  readonly retries: RetryOptions;
  readonly hedgeDelayMs: number;
  readonly requestHedgeMs: number;
  readonly hedges: { inFlight: number; budget: number };
  readonly headLimits: HeadLimits;
  readonly connector: Connector;
  readonly logger: Logger;
  readonly accessLog: AccessLog | undefined;
  readonly sessions = new Set<ClientSession>();
  readonly health: HealthChecker;
  draining = false;
  private readonly ownsHealth: boolean;
  private readonly ownsAccessLog: boolean;
  private readonly listeners: Array<{ server: Server; ctx: ListenerContext }> = [];
  readonly streams: StreamProxy[] = [];
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private readonly options: ReverseProxyOptions;

  constructor(options: ReverseProxyOptions) {
    this.options = options;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.retries = { ...DEFAULT_RETRIES, ...options.retries };
    if (!(this.retries.tries >= 1)) throw new Error('retries.tries must be at least 1');
    this.hedgeDelayMs = options.hedgeDelayMs ?? 100;
    this.requestHedgeMs = options.requestHedgeMs ?? 0;
    this.hedges = { inFlight: 0, budget: options.requestHedgeBudget ?? 0.1 };
    this.headLimits = options.headLimits ?? {};
    this.connector = options.connector ?? defaultConnector;
    this.logger = options.logger ?? silentLogger;
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
    for (const spec of options.upstreams) {
      if (this.upstreams.has(spec.name)) throw new Error(`upstream "${spec.name}" is defined twice`);
      const upstream = new Upstream(spec, this.health);
      this.upstreams.set(spec.name, upstream);
    }
    for (const listener of options.servers ?? []) {
      for (const vhost of listener.vhosts) {
        for (const location of vhost.locations) {
          if (location.upstream && !this.upstreams.has(location.upstream)) throw new Error(`location refers to unknown upstream "${location.upstream}"`);
        }
      }
    }
    this.health.events.on('transition', (event) => {
      this.logger.info('upstream health', { target: event.target, from: event.from, to: event.to, reason: event.reason });
      if (event.to === 'unhealthy') this.markedDown(event.target);
    });
    this.health.events.on('eject', (event) => {
      this.logger.warn('upstream ejected', { target: event.target, reason: event.reason, ms: event.durationMs });
      this.markedDown(event.target);
    });
  }

  private markedDown(address: string): void {
    for (const upstream of this.upstreams.values()) {
      if (upstream.spec.shutdownSessionsOnDown) upstream.shutdownSessions(address);
      else for (const server of upstream.servers) if (server.address === address) server.pool.close();
    }
  }

  async start(): Promise<this> {
    // Health targets: one per server, in its upstream's pool (backups in their own).
    for (const upstream of this.upstreams.values()) {
      for (const server of upstream.servers) {
        const spec = upstream.spec.health;
        this.health.add({ ...spec, check: spec?.check ?? null, address: server.address, pool: upstream.poolOf(server) });
      }
    }
    try {
      for (const spec of this.options.servers ?? []) {
        const ctx: ListenerContext = {
          core: this,
          router: new Router(spec.vhosts),
          forwarding: new Forwarding(spec.forwarding),
          scheme: spec.tls ? 'https' : 'http',
        };
        const addresses = parseAddressList(Array.isArray(spec.listen) ? spec.listen.join(',') : spec.listen);
        const server = new Server({
          addresses,
          tls: spec.tls,
          logger: this.logger,
          onConnection: (conn: Conn) => {
            new ClientSession(conn, ctx);
          },
        });
        await server.start();
        this.listeners.push({ server, ctx });
      }
      for (const spec of this.options.streams ?? []) {
        const upstream = this.upstreams.get(spec.upstream);
        if (!upstream) throw new Error(`stream refers to unknown upstream "${spec.upstream}"`);
        const stream = new StreamProxy(spec, upstream, this);
        await stream.start();
        this.streams.push(stream);
      }
    } catch (error) {
      await this.close();
      throw error;
    }
    this.sweeper = setInterval(sweep, SWEEP_MS, this);
    return this;
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
    const deadlineMs = this.options.shutdownDeadlineMs ?? 10_000;
    await Promise.all([
      ...this.listeners.map((listener) => listener.server.shutdown({ deadlineMs })),
      ...this.streams.map((stream) => stream.close()),
    ]);
    this.listeners.length = 0;
    this.streams.length = 0;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const upstream of this.upstreams.values()) upstream.close();
    if (this.ownsHealth) await this.health.close();
    if (this.ownsAccessLog) await this.accessLog?.close();
  }
}

function sweep(proxy: ReverseProxy): void {
  const now = Date.now();
  for (const session of proxy.sessions) {
    try {
      session.checkDeadline(now);
    } catch (error) {
      crashed(session, error);
    }
  }
}

export { ClientSession };
