/**
 * The public HTTP side of a tunnel server: http mappings served by the
 * reverse proxy engine, by Host (exact or `*.wildcard`) and path prefix.
 * Every client serving a mapping is one server of an upstream group, so a
 * mapping served by several clients gets the engine's balancing policies,
 * active health checks of the local service through the tunnel, passive
 * ejection, retries and hedging. Clients joining or leaving change the
 * groups by an in-place reload (no request in flight is lost); a client
 * that vanishes is out of the rotation at once, and a request already
 * headed to it fails over like a refused connect.
 *
 * (frp balances a group of proxies at random and checks health with its own
 * probes; rathole rejected load balancing across clients.)
 */
import { formatHostPort, NetError, silentLogger, type Conn, type Logger, type TlsServerOptions, type Transport, type TransportTarget } from '@wmproxy/core-net';
import type { HealthCheckerOptions } from '@wmproxy/health';
import {
  ReverseProxy,
  type ListenerSpec,
  type LocationSpec,
  type PolicyName,
  type ReverseProxyOptions,
  type UpstreamHealthSpec,
  type UpstreamSpec,
  type VirtualHostSpec,
} from '@wmproxy/reverse';
import type { MappingSnapshot, TunnelServer } from './server.js';
import type { Handoffs } from './tls-front.js';

export interface TunnelHttpOptions {
  /** Where http mappings are served (plain HTTP). */
  listen?: string | string[];
  /** Where http mappings are served over TLS, terminated here (the server's certificate for the mappings' domains). */
  tlsListen?: string | string[];
  tls?: TlsServerOptions;
  /** The visitors a TunnelTlsFront hands to `tlsListen` over loopback (the same object as its `handoffs`). */
  handoffs?: Handoffs;
  /** Locations matched before every mapping on `listen` (automatic HTTPS's HTTP-01 answers). */
  ahead?: LocationSpec[];
  /** Balancing among the clients serving one mapping (default `round_robin`). */
  policy?: PolicyName;
  /** Active checks of each client's local service, through the tunnel (default: passive checks only). */
  health?: UpstreamHealthSpec;
  /** The engine's health checker options (passive ejection, panic threshold, ...). */
  healthOptions?: HealthCheckerOptions;
  retries?: ReverseProxyOptions['retries'];
  timeouts?: ReverseProxyOptions['timeouts'];
  accessLog?: ReverseProxyOptions['accessLog'];
  /** Connection limits of the `listen` port (not `tlsListen`, which the TLS front hands connections to from loopback). */
  limits?: Pick<ListenerSpec, 'maxConnections' | 'maxConnectionsPerIp'>;
  logger?: Logger;
}

/** The upstream group of an http mapping. */
export const groupName = (mapping: string): string => `tunnel:${mapping}`;

/**
 * A core-net transport to one client of one mapping. Servers of the groups
 * are named `<client id>.<mapping>.tunnel` (a host name, so that health
 * checks and logs treat them as addresses); the name is looked up, never
 * parsed, so a mapping name cannot smuggle another client's id.
 */
class ClientTransport implements Transport {
  readonly kind = 'tunnel';
  readonly targets = new Map<string, { mapping: string; client: string }>();
  constructor(private readonly server: TunnelServer) {}

  connect(target: TransportTarget, timeoutMs: number, signal?: AbortSignal): Promise<Conn> {
    const route = this.targets.get(target.host);
    if (route === undefined) return Promise.reject(new NetError('ECONNREFUSED', `no tunnel client behind ${target.host}`, { address: target.host }));
    return this.server.openStream(route.mapping, { address: '', port: 0 }, { client: route.client, wait: false, timeoutMs, signal });
  }
}

const SERVER_SUFFIX = '.tunnel';

/** A label for a mapping name in a host name: only letters, digits and hyphens. */
function label(mapping: string): string {
  const cleaned = mapping.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '');
  return cleaned.slice(0, 40) || 'm';
}

/** Serves a tunnel server's http mappings through the reverse proxy engine. */
export class TunnelHttpFront {
  private readonly transport: ClientTransport;
  private readonly logger: Logger;
  private proxy: ReverseProxy | undefined;
  private pending: Promise<void> = Promise.resolve();
  private dirty = false;
  private readonly onChange = (): void => this.schedule();
  private closed = false;

  constructor(
    private readonly server: TunnelServer,
    private readonly options: TunnelHttpOptions,
  ) {
    this.transport = new ClientTransport(server);
    this.logger = options.logger ?? silentLogger;
    if (options.tlsListen !== undefined && options.tls === undefined) throw new Error('tunnel http: tlsListen needs a certificate (tls)');
  }

  /** Bound addresses: plain HTTP first, then TLS. */
  get addresses(): string[] {
    return this.proxy?.addresses ?? [];
  }

  /** The engine (its upstream groups, health checker and metrics). */
  get engine(): ReverseProxy | undefined {
    return this.proxy;
  }

  async start(): Promise<this> {
    this.proxy = new ReverseProxy(this.build());
    await this.proxy.start();
    this.server.on('mappings-changed', this.onChange);
    this.server.on('client-joined', this.onChange);
    this.server.on('client-left', this.onChange);
    return this;
  }

  /** Apply the current mappings now (normally done on every server event). */
  sync(): Promise<void> {
    this.schedule();
    return this.pending;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.server.off('mappings-changed', this.onChange);
    this.server.off('client-joined', this.onChange);
    this.server.off('client-left', this.onChange);
    await this.pending;
    await this.proxy?.close();
  }

  /** Coalesce bursts of events (a client joining announces several mappings) into one reload. */
  private schedule(): void {
    if (this.dirty || this.closed || this.proxy === undefined) return;
    this.dirty = true;
    this.pending = this.pending.then(async () => {
      await Promise.resolve();
      this.dirty = false;
      if (this.closed || this.proxy === undefined) return;
      try {
        await this.proxy.reload(this.build());
      } catch (error) {
        this.logger.error('tunnel http: applying mappings failed', { error: (error as Error).message });
      }
    });
  }

  /** The engine's configuration for the mappings and clients of now. */
  private build(): ReverseProxyOptions {
    const mappings = this.server.mappings({ secrets: true }).filter((entry) => entry.mapping.kind === 'http');
    const upstreams: UpstreamSpec[] = [];
    const byDomain = new Map<string, LocationSpec[]>();
    this.transport.targets.clear();
    for (const entry of mappings) {
      const location = this.location(entry, upstreams);
      for (const domain of entry.mapping.domains ?? []) {
        const key = domain.toLowerCase();
        let locations = byDomain.get(key);
        if (!locations) byDomain.set(key, (locations = []));
        locations.push(location);
      }
    }
    const vhosts: VirtualHostSpec[] = [...byDomain].map(([domain, locations]) => ({ names: [domain], locations }));
    // Nothing matched: say so (the engine would answer 404 too, but without the reason).
    vhosts.push({ default: true, locations: [{ path: '/', respond: { status: 404, body: 'no tunnel mapping serves this host\n' } }] });
    const servers: ListenerSpec[] = [];
    if (this.options.listen !== undefined) servers.push({ listen: this.options.listen, vhosts, ...this.options.limits, ...(this.options.ahead ? { ahead: this.options.ahead } : {}) });
    if (this.options.tlsListen !== undefined) servers.push({ listen: this.options.tlsListen, tls: this.options.tls, vhosts, ...(this.options.handoffs ? { onAccept: this.options.handoffs.onAccept } : {}) });
    return {
      servers,
      upstreams,
      transports: { tunnel: this.transport },
      ...(this.options.healthOptions ? { health: this.options.healthOptions } : {}),
      ...(this.options.retries ? { retries: this.options.retries } : {}),
      ...(this.options.timeouts ? { timeouts: this.options.timeouts } : {}),
      // No connect hedging: opening a tunnel stream is one round trip over a live connection, not a SYN that can vanish.
      hedgeDelayMs: 0,
      ...(this.options.accessLog ? { accessLog: this.options.accessLog } : {}),
      logger: this.logger,
    };
  }

  private location(entry: MappingSnapshot, upstreams: UpstreamSpec[]): LocationSpec {
    const mapping = entry.mapping;
    // The mapping's own rules, applied by the engine like a location's.
    const rules: LocationSpec = { path: mapping.path ?? '/' };
    if (mapping.basicAuth) rules.basicAuth = mapping.basicAuth;
    if (mapping.requestHeaders) rules.requestHeaders = mapping.requestHeaders;
    if (mapping.responseHeaders) rules.responseHeaders = mapping.responseHeaders;
    if (entry.clients.length === 0) {
      return { ...rules, respond: { status: 503, headers: { 'retry-after': '1' }, body: `no tunnel client serving "${mapping.name}" is connected\n` } };
    }
    const servers = entry.clients.map((client) => {
      const host = `${client.toLowerCase()}.${label(mapping.name)}${SERVER_SUFFIX}`;
      this.transport.targets.set(host, { mapping: mapping.name, client });
      return { address: formatHostPort(host, 80), transport: 'tunnel' };
    });
    const name = groupName(mapping.name);
    upstreams.push({
      name,
      servers,
      policy: this.options.policy ?? 'round_robin',
      ...(this.options.health ? { health: this.options.health } : {}),
    });
    return { ...rules, upstream: name };
  }
}
