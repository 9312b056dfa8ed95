import { BasicAuth, CidrList } from '@wmproxy/core-net';
import { compileRules, type CompiledRule, type HeaderRule } from './headers.js';
import { RateLimiter, type RateLimitSpec } from './rate-limit.js';
import type { SharedCounters } from './cluster-limit.js';
import { staticLocation, type StaticOptions } from './static.js';
import type { ConnTakeover, LocationHandler } from './types.js';

export type { ConnTakeover, LocationHandler, LocationResponse } from './types.js';

/** A fixed answer instead of proxying (nginx `return`, Caddy `respond`). */
export interface FixedResponse {
  status: number;
  body?: string;
  headers?: Record<string, string>;
}

export interface LocationSpec {
  /** Path prefix (nginx `location /api/`). Default `/` when neither `exact` nor `regex` is given. */
  path?: string;
  /** Exact path (nginx `location = /health`). */
  exact?: string;
  /** Regular expression on the path (nginx `location ~ \.php$`); `regexFlags` e.g. `i`. */
  regex?: string;
  regexFlags?: string;
  /** A prefix location that, when it is the longest match, stops the regex search (nginx `^~`). */
  noRegex?: boolean;
  /** Only for these methods (upper case). */
  methods?: string[];
  /** Only for clients in these CIDR ranges. */
  clientIps?: string[];
  /** Name of the upstream group to proxy to. */
  upstream?: string;
  /** Answer with this instead of proxying. */
  respond?: FixedResponse;
  /** Serve with this handler. */
  handler?: LocationHandler;
  /** Hand the client connection over after the request head (a WebSocket-to-TCP bridge). */
  takeover?: ConnTakeover;
  /** Serve files (`@wmproxy/static` options: root, index, precompressed...). */
  static?: StaticOptions;
  /** Header rules applied to the request sent upstream and to the response sent back. */
  requestHeaders?: HeaderRule[];
  responseHeaders?: HeaderRule[];
  /** Rewrite the upstream Host header (default: pass the client's through). */
  upstreamHost?: string;
  /** Remove this prefix from the path before proxying (Caddy `handle_path`). */
  stripPrefix?: string;
  /** Rate / concurrency limit of this location (replaces the virtual host's; `false`: none). */
  rateLimit?: RateLimitSpec | false;
  /** Require HTTP Basic credentials (nginx `auth_basic`): 401 with a challenge otherwise. */
  basicAuth?: BasicAuthSpec;
}

/** Users and passwords of a location (nginx `auth_basic_user_file`, Caddy `basic_auth`, frp `httpUser`). */
export interface BasicAuthSpec {
  users: Record<string, string>;
  /** Realm of the challenge (default `wmproxy`). */
  realm?: string;
}

export interface VirtualHostSpec {
  /** Host names: exact (`api.example.com`) or wildcard (`*.example.com`). Empty: matches any host. */
  names?: string[];
  /** The server that answers when no name matches (nginx `default_server`). */
  default?: boolean;
  /** Rate / concurrency limit shared by the locations without their own (nginx `limit_req` at server level). */
  rateLimit?: RateLimitSpec;
  locations: LocationSpec[];
}

export interface CompiledLocation {
  spec: LocationSpec;
  kind: 'exact' | 'prefix' | 'regex';
  path: string;
  regex: RegExp | undefined;
  methods: Set<string> | undefined;
  clientIps: CidrList | undefined;
  /** Index in configuration order, for stable ordering. */
  order: number;
  requestRules: CompiledRule[];
  responseRules: CompiledRule[];
  /** `handler`, or the static-file handler built from `static`. */
  handler: LocationHandler | undefined;
  /** The location's rate limit, or its virtual host's. */
  limiter: RateLimiter | undefined;
  /** Credentials a request must carry (`basicAuth`). */
  auth: BasicAuth | undefined;
}

interface CompiledVhost {
  spec: VirtualHostSpec;
  exact: CompiledLocation[];
  /** Longest first. */
  prefixes: CompiledLocation[];
  regexes: CompiledLocation[];
}

/**
 * Chooses the virtual host and location of a request, with nginx's rules:
 *
 * 1. Virtual host: the exact name; else the longest matching wildcard
 *    (`*.example.com` matches `a.example.com` and `a.b.example.com`, not
 *    `example.com`); else the server marked `default`; else one without names.
 *    The Host header is compared without its port, case-insensitively.
 * 2. Location: an exact location (`exact`) that matches wins at once. Else
 *    the longest matching prefix is remembered; if it has `noRegex` it wins.
 *    Else regex locations are tried in configuration order and the first
 *    match wins; if none matches, the longest prefix wins.
 *    Locations whose method or client-IP conditions fail are skipped.
 */
export class Router {
  private readonly exactHosts = new Map<string, CompiledVhost>();
  private readonly wildcards: Array<{ suffix: string; vhost: CompiledVhost }> = [];
  private readonly fallback: CompiledVhost | undefined;
  /** Some virtual host has names (else every request goes to the fallback). */
  private readonly named: boolean;
  private lastHost: string | undefined;
  private lastVhost: CompiledVhost | undefined;
  /** Locations checked before any virtual host (ACME HTTP-01). */
  private readonly ahead: CompiledVhost | undefined;

  /** Rate limiters by where they are configured and how (a reload keeps those that stay, with their state). */
  readonly limiters = new Map<string, RateLimiter>();

  /**
   * `previous`: the router this one replaces on reload; its limiters that stay
   * are kept. `counters`: where `scope = "cluster"` limits count (Redis).
   * `ahead`: locations matched first, for every host (ACME HTTP-01).
   */
  constructor(vhosts: VirtualHostSpec[], previous?: Router, counters?: SharedCounters, ahead?: LocationSpec[]) {
    const limiter = (key: string, spec: RateLimitSpec): RateLimiter => {
      const full = `${key}|${JSON.stringify(spec)}`;
      const made = previous?.limiters.get(full) ?? new RateLimiter(spec, counters ? { counters, name: key } : undefined);
      this.limiters.set(full, made);
      return made;
    };
    let fallback: CompiledVhost | undefined;
    let anyHost: CompiledVhost | undefined;
    for (const spec of vhosts) {
      const compiled = compileVhost(spec, limiter);
      const names = spec.names ?? [];
      if (spec.default) {
        if (fallback) throw new Error('two virtual hosts are marked default');
        fallback = compiled;
      }
      if (names.length === 0) anyHost ??= compiled;
      for (const raw of names) {
        const name = raw.toLowerCase();
        if (name.startsWith('*.')) this.wildcards.push({ suffix: name.slice(1), vhost: compiled });
        else if (name.includes('*')) throw new Error(`unsupported host pattern "${raw}" (use *.example.com)`);
        else this.exactHosts.set(name, compiled);
      }
    }
    this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
    this.ahead = ahead && ahead.length > 0 ? compileVhost({ locations: ahead }, limiter) : undefined;
    this.fallback = fallback ?? anyHost;
    this.named = this.exactHosts.size > 0 || this.wildcards.length > 0;
  }

  /** Find the location for a request, or undefined (answer 404). */
  route(host: string | undefined, path: string, method: string, clientIp: string): CompiledLocation | undefined {
    if (this.ahead) {
      const first = matchLocation(this.ahead, path, method, clientIp);
      if (first) return first;
    }
    const vhost = this.vhostFor(host);
    return vhost ? matchLocation(vhost, path, method, clientIp) : undefined;
  }

  private vhostFor(hostHeader: string | undefined): CompiledVhost | undefined {
    // Without host names there is nothing to compare the Host with.
    if (!hostHeader || !this.named) return this.fallback;
    // A connection's requests, and most clients', repeat the same Host (the
    // parser hands out the same string): remember the last answer.
    if (hostHeader === this.lastHost) return this.lastVhost;
    const host = normaliseHost(hostHeader);
    let vhost = this.exactHosts.get(host);
    if (!vhost) {
      vhost = this.fallback;
      for (const wildcard of this.wildcards) {
        if (host.endsWith(wildcard.suffix)) {
          vhost = wildcard.vhost;
          break;
        }
      }
    }
    this.lastHost = hostHeader;
    this.lastVhost = vhost;
    return vhost;
  }
}

/** Lower-case, without the port or a trailing dot. */
export function normaliseHost(value: string): string {
  let host = value;
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    host = close > 0 ? host.slice(0, close + 1) : host;
  } else {
    const colon = host.indexOf(':');
    if (colon >= 0) host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  return host.toLowerCase();
}

function compileVhost(spec: VirtualHostSpec, limiter: (key: string, spec: RateLimitSpec) => RateLimiter): CompiledVhost {
  const names = (spec.names ?? []).join(',');
  const vhost: CompiledVhost = { spec, exact: [], prefixes: [], regexes: [] };
  const shared = spec.rateLimit ? limiter(`vhost ${names}`, spec.rateLimit) : undefined;
  spec.locations.forEach((location, order) => {
    if ([location.exact, location.regex, location.path].filter((v) => v !== undefined).length > 1) {
      throw new Error('a location has exactly one of path, exact or regex');
    }
    if ([location.upstream, location.respond, location.handler, location.static, location.takeover].filter((v) => v !== undefined).length !== 1) {
      throw new Error('a location has exactly one of upstream, respond, handler, static or takeover');
    }
    if (location.upstreamHost !== undefined && !/^[\x21-\x7e]+$/.test(location.upstreamHost)) throw new Error(`invalid upstreamHost "${location.upstreamHost}"`);
    if (location.stripPrefix !== undefined && !location.stripPrefix.startsWith('/')) throw new Error('stripPrefix must start with /');
    if (location.basicAuth !== undefined && Object.keys(location.basicAuth.users).length === 0) throw new Error('basicAuth needs at least one user');
    const base = {
      spec: location,
      methods: location.methods ? new Set(location.methods.map((m) => m.toUpperCase())) : undefined,
      clientIps: location.clientIps ? new CidrList(location.clientIps) : undefined,
      order,
      requestRules: compileRules(location.requestHeaders),
      responseRules: compileRules(location.responseHeaders),
      handler: location.handler ?? (location.static ? staticLocation(location.static) : undefined),
      auth: location.basicAuth ? new BasicAuth(location.basicAuth.users, location.basicAuth.realm) : undefined,
      limiter:
        location.rateLimit === false
          ? undefined
          : location.rateLimit
            ? limiter(`location ${names} ${location.exact !== undefined ? `=${location.exact}` : location.regex !== undefined ? `~${location.regex}` : location.path ?? '/'}`, location.rateLimit)
            : shared,
    };
    if (location.exact !== undefined) vhost.exact.push({ ...base, kind: 'exact', path: location.exact, regex: undefined });
    else if (location.regex !== undefined) vhost.regexes.push({ ...base, kind: 'regex', path: '', regex: new RegExp(location.regex, location.regexFlags) });
    else vhost.prefixes.push({ ...base, kind: 'prefix', path: location.path ?? '/', regex: undefined });
  });
  vhost.prefixes.sort((a, b) => b.path.length - a.path.length || a.order - b.order);
  return vhost;
}

function conditionsHold(location: CompiledLocation, method: string, clientIp: string): boolean {
  if (location.methods && !location.methods.has(method)) return false;
  if (location.clientIps && !location.clientIps.contains(clientIp)) return false;
  return true;
}

function matchLocation(vhost: CompiledVhost, path: string, method: string, clientIp: string): CompiledLocation | undefined {
  for (const location of vhost.exact) if (location.path === path && conditionsHold(location, method, clientIp)) return location;
  let prefix: CompiledLocation | undefined;
  for (const location of vhost.prefixes) {
    if (path.startsWith(location.path) && conditionsHold(location, method, clientIp)) {
      prefix = location;
      break;
    }
  }
  if (prefix?.spec.noRegex) return prefix;
  for (const location of vhost.regexes) if (location.regex!.test(path) && conditionsHold(location, method, clientIp)) return location;
  return prefix;
}
