import { formatHostPort, type Conn, type TransportTarget } from '@wmproxy/core-net';
import type { LossVerdict, TargetSpec } from '@wmproxy/health';
import { ConnPool, type PoolOptions } from './pool.js';
import { getPolicy, type Policy, type PolicyName, type SelectContext } from './policies/index.js';

export interface UpstreamServerSpec {
  /** `host:port` (IP or DNS name; names are cached per TTL, see dns.ts). */
  address: string;
  /** Relative share of the traffic (default 1). */
  weight?: number;
  /** Most requests in flight at once (default 0: no limit). */
  maxConns?: number;
  /** Used only when no primary server is available (default false). */
  backup?: boolean;
  /** Connect with TLS (https:// upstream). */
  tls?: boolean;
  /** TLS server name to send and verify (default the host). */
  servername?: string;
  /** Verify the upstream certificate (default true). */
  tlsVerify?: boolean;
  /**
   * The transport that reaches it, by name in the proxy's transports: `tcp`
   * (default), `tls` (the default when `tls` is set), or one an embedder
   * adds (`tunnel`). Pools, policies and health do not look at it.
   */
  transport?: string;
}

/**
 * The view of health that load balancing needs; `@wmproxy/health`'s
 * HealthChecker provides it (see health.ts), and tests may pass their own.
 */
export interface HealthSource {
  /** False while the target is unhealthy or ejected (true for every target of a pool that panics and fails open). */
  isAvailable(target: string, pool?: string): boolean;
  /** Slow-start ramp, (0, 1] (1 when not ramping). */
  weightFactor?(target: string): number;
  /** Passive health: outcome of real traffic. */
  reportSuccess?(target: string): void;
  reportFailure?(target: string, kind: 'connect' | 'timeout' | 'status5xx'): void;
  /** Stall detection (hedge.ts reports into it): work sent at `sentAt` lost a hedge or connect race. */
  reportLostRace?(target: string, sentAt: number, minEjectMs: number, race?: 'response' | 'connect'): LossVerdict;
  /** Stall detection: work sent at `sentAt` was answered (or connected). */
  reportAnswer?(target: string, sentAt: number, race?: 'response' | 'connect'): void;
  answeredAfter?(target: string, sentAt: number): boolean;
  lostSinceAnswer?(target: string): boolean;
}

/** One server of an upstream group, with its keep-alive pool and balancing state; the target its transport connects to. */
export class UpstreamServer implements TransportTarget {
  /** What it was built from (a reload or a discovery update keeps a server whose spec is unchanged). */
  readonly spec: UpstreamServerSpec;
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  readonly maxConns: number;
  readonly backup: boolean;
  readonly tls: boolean;
  readonly servername: string | undefined;
  readonly tlsVerify: boolean;
  /** The name of its transport (see `UpstreamServerSpec.transport`). */
  readonly transport: string;
  readonly pool: ConnPool;
  /** Requests in flight (least-connections, max_conns). */
  active = 0;
  /** The group it serves now (a reload may hand the server to a new group object). */
  group: Upstream | undefined;
  /** Long-lived (upgraded) sessions, closed when the server is marked down if configured. */
  readonly tunnels = new Set<{ abort(error?: Error): void }>();
  /** Totals for snapshots. */
  requests = 0;
  failures = 0;

  constructor(spec: UpstreamServerSpec, pool: PoolOptions = {}) {
    this.spec = spec;
    const { host, port } = splitHostPort(spec.address, spec.tls ? 443 : 80);
    this.host = host;
    this.port = port;
    this.address = formatHostPort(host, port);
    this.weight = spec.weight ?? 1;
    if (!(this.weight > 0)) throw new Error(`weight of ${spec.address} must be positive`);
    this.maxConns = spec.maxConns ?? 0;
    this.backup = spec.backup ?? false;
    this.tls = spec.tls ?? false;
    this.servername = spec.servername;
    this.tlsVerify = spec.tlsVerify ?? true;
    this.transport = spec.transport ?? (this.tls ? 'tls' : 'tcp');
    this.pool = new ConnPool(pool);
  }

  get full(): boolean {
    return this.maxConns > 0 && this.active >= this.maxConns;
  }
}

/** `host:port`, `[v6]:port`, or a bare host with the default port. */
export function splitHostPort(text: string, defaultPort: number): { host: string; port: number } {
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new Error(`invalid address "${text}"`);
    const host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest === '') return { host, port: defaultPort };
    if (!/^:\d{1,5}$/.test(rest)) throw new Error(`invalid address "${text}"`);
    return { host, port: Number(rest.slice(1)) };
  }
  const colon = text.lastIndexOf(':');
  if (colon < 0 || text.indexOf(':') !== colon) return { host: text, port: defaultPort };
  const portText = text.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new Error(`invalid port in "${text}"`);
  return { host: text.slice(0, colon), port: Number(portText) };
}

export interface UpstreamSpec {
  name: string;
  servers: UpstreamServerSpec[];
  /** Load-balancing policy (default `round_robin`). */
  policy?: PolicyName;
  /** For `hash`: what to hash — `header:NAME`, `cookie:NAME`, `uri` or `ip` (default `uri`). */
  hashKey?: string;
  pool?: PoolOptions;
  /**
   * Active health check of every server (`@wmproxy/health` target options:
   * `check`, `intervalMs`, `timeoutMs`, `rise`, `fall`, `jitter`...). Without
   * `check` only passive checks (real traffic) apply.
   */
  health?: UpstreamHealthSpec;
  /** Close a server's upgraded (WebSocket) connections when it is marked down (HAProxy `on-marked-down shutdown-sessions`; default false). */
  shutdownSessionsOnDown?: boolean;
  /**
   * Service discovery: servers found by a discovery source (`srv`: DNS SRV
   * records; others by name in the proxy's `discovery`) join `servers`,
   * and leave when the source no longer lists them. See discovery.ts.
   */
  discover?: DiscoverSpec;
}

/** Where a group's servers are discovered. */
export interface DiscoverSpec {
  /** The source, by name: `srv` (built in), or one given in `ReverseProxyOptions.discovery` (`etcd`). */
  source: string;
  /** What the source looks up: an SRV name (`_http._tcp.app.internal`), a registry prefix (`/services/app`). */
  target: string;
  /** Options of every discovered server (its address and weight come from the source). */
  server?: Omit<UpstreamServerSpec, 'address'>;
}

export type UpstreamHealthSpec = Omit<TargetSpec, 'address' | 'pool'>;

/**
 * A named group of servers: a policy over the servers that health says are
 * available (undici's balanced pool layer). Backups are used only when no
 * primary is available. The panic threshold is the health checker's: its
 * pools are the group's name (primaries) and `NAME#backup`; when a pool
 * panics and fails open, every server of it counts as available.
 */
export class Upstream {
  readonly name: string;
  readonly servers: UpstreamServer[];
  policy: Policy;
  readonly hashKey: string;
  readonly spec: UpstreamSpec;
  health: HealthSource | undefined;
  /** Retries in flight to this group, counted against the retry budget (`RetryOptions.budgetPercent`). */
  retriesInFlight = 0;
  private readonly scratch: UpstreamServer[] = [];
  /** The health pool of the backups (built once: `poolOf` runs per server per pick). */
  private readonly backupPool: string;

  /** `reuse` may hand back an existing server object for a server spec (a reload keeps pools and counters). */
  /** `discovered`: servers a discovery source found so far (they join `spec.servers`). */
  constructor(spec: UpstreamSpec, health?: HealthSource, reuse?: (server: UpstreamServerSpec) => UpstreamServer | undefined, discovered: readonly UpstreamServerSpec[] = []) {
    this.name = spec.name;
    this.spec = spec;
    if (spec.servers.length === 0 && !spec.discover) throw new Error(`upstream "${spec.name}" has no servers`);
    this.servers = [...spec.servers, ...discovered].map((server) => reuse?.(server) ?? new UpstreamServer(server, spec.pool));
    for (const server of this.servers) server.group = this;
    this.policy = freshPolicy(spec);
    this.hashKey = spec.hashKey ?? 'uri';
    this.health = health;
    this.backupPool = `${this.name}#backup`;
  }

  /** The health-checker pool a server belongs to. */
  poolOf(server: UpstreamServer): string {
    return server.backup ? this.backupPool : this.name;
  }

  isAvailable(server: UpstreamServer): boolean {
    return this.health ? this.health.isAvailable(server.address, this.poolOf(server)) : true;
  }

  /** Effective weight: configured weight times the slow-start factor. */
  effectiveWeight(server: UpstreamServer): number {
    const factor = this.health?.weightFactor?.(server.address) ?? 1;
    return server.weight * Math.max(0.01, Math.min(1, factor));
  }

  /**
   * The servers a policy may choose from: the available ones (health: active
   * checks, outlier and stall ejections, panic) under their max_conns,
   * skipping `exclude` (servers this request already tried); the backups
   * only when no primary qualifies. Reuses one array: no allocation.
   */
  candidates(exclude?: ReadonlySet<UpstreamServer>): UpstreamServer[] {
    const list = this.scratch;
    list.length = 0;
    for (const server of this.servers) {
      if (server.backup || exclude?.has(server) || server.full || !this.isAvailable(server)) continue;
      list.push(server);
    }
    if (list.length > 0) return list;
    for (const server of this.servers) {
      if (!server.backup || exclude?.has(server) || server.full || !this.isAvailable(server)) continue;
      list.push(server);
    }
    return list;
  }

  /**
   * The one place a server is chosen, for HTTP requests and their hedges and
   * retries, TCP connections and their connect hedges, and UDP sessions:
   * every exclusion is applied here (see `candidates`), then the policy
   * chooses. O(servers), no allocation. Undefined when none may take it.
   */
  pick(ctx: SelectContext, exclude?: ReadonlySet<UpstreamServer>): UpstreamServer | undefined {
    const list = this.candidates(exclude);
    if (list.length === 0) return undefined;
    if (list.length === 1) return list[0];
    return this.policy.select(list, ctx, this);
  }

  /**
   * Make the servers exactly `specs` (a discovery update): a server whose
   * spec is unchanged stays the same object (its pool, counters and requests
   * in flight), new ones are created, and those gone are returned so that
   * the caller closes their idle connections; requests in flight to them
   * finish, since they hold the server. In place, so that streams and
   * sessions holding this group see the change.
   */
  replaceServers(specs: readonly UpstreamServerSpec[]): { added: UpstreamServer[]; removed: UpstreamServer[] } {
    const reuse = reuseFrom(this.servers);
    const next = specs.map((spec) => reuse(spec) ?? new UpstreamServer(spec, this.spec.pool));
    const kept = new Set(next);
    const removed = this.servers.filter((server) => !kept.has(server));
    const before = new Set(this.servers);
    const added = next.filter((server) => !before.has(server));
    if (added.length === 0 && removed.length === 0) return { added, removed };
    this.servers.length = 0;
    this.servers.push(...next);
    for (const server of next) server.group = this;
    // Balancing state is per server; start it afresh rather than keep slots of servers that left.
    this.policy = freshPolicy(this.spec);
    return { added, removed };
  }

  /** Close idle pooled connections. */
  close(): void {
    for (const server of this.servers) server.pool.close();
  }

  /** Close long-lived sessions of a server (HAProxy's on-marked-down shutdown-sessions). */
  shutdownSessions(address: string): number {
    let closed = 0;
    for (const server of this.servers) {
      if (server.address !== address) continue;
      for (const tunnel of [...server.tunnels]) {
        tunnel.abort(new Error(`upstream ${address} marked down`));
        closed++;
      }
      server.pool.close();
    }
    return closed;
  }

  snapshot(): Array<{ address: string; weight: number; backup: boolean; active: number; idle: number; available: boolean; requests: number; failures: number }> {
    return this.servers.map((server) => ({
      address: server.address,
      weight: server.weight,
      backup: server.backup,
      active: server.active,
      idle: server.pool.idleCount,
      available: this.isAvailable(server),
      requests: server.requests,
      failures: server.failures,
    }));
  }
}

function freshPolicy(spec: UpstreamSpec): Policy {
  const policy = getPolicy(spec.policy ?? 'round_robin');
  return policy.create?.() ?? policy;
}

/** Hands back, once each, the servers of `servers` built from a spec equal to the one asked for. */
export function reuseFrom(servers: readonly UpstreamServer[]): (spec: UpstreamServerSpec) => UpstreamServer | undefined {
  const taken = new Set<UpstreamServer>();
  return (spec) => {
    const text = JSON.stringify(spec);
    const found = servers.find((server) => !taken.has(server) && JSON.stringify(server.spec) === text);
    if (found) taken.add(found);
    return found;
  };
}

export type { Conn };
