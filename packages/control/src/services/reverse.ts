/**
 * The reverse proxy of a configuration: every `[[server]]` (grouped by port
 * into virtual hosts), every `[[upstream]]` and every `[[stream]]`, run by
 * one `@wmproxy/reverse` ReverseProxy that shares the instance's
 * HealthChecker (so health state survives reloads).
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@wmproxy/core-net';
import type { HealthChecker, TargetSpec } from '@wmproxy/health';
import { ReverseProxy, type AccessLog, type ListenerSpec, type LocationSpec, type ReverseProxyOptions, type StreamSpec, type UpstreamSpec } from '@wmproxy/reverse';
import { upstreamTargets, type HttpServerConfig, type LocationConfig, type UpstreamConfig, type WmproxyConfig } from '@wmproxy/config';
import { listenKey } from './forward.js';
import { staticOptions } from './static-location.js';
import { handoffRuntime } from '../handoff.js';

function location(config: LocationConfig): LocationSpec {
  const spec: LocationSpec = {};
  if (config.path !== undefined) spec.path = config.path;
  if (config.exact !== undefined) spec.exact = config.exact;
  if (config.regex !== undefined) spec.regex = config.regex;
  if (config.regexFlags !== undefined) spec.regexFlags = config.regexFlags;
  if (config.noRegex !== undefined) spec.noRegex = config.noRegex;
  if (config.methods !== undefined) spec.methods = config.methods;
  if (config.clientIps !== undefined) spec.clientIps = config.clientIps;
  if (config.upstream !== undefined) spec.upstream = config.upstream;
  if (config.respond !== undefined) spec.respond = config.respond;
  if (config.static !== undefined) spec.static = staticOptions(config.static);
  if (config.requestHeaders.length > 0) spec.requestHeaders = config.requestHeaders;
  if (config.responseHeaders.length > 0) spec.responseHeaders = config.responseHeaders;
  if (config.upstreamHost !== undefined) spec.upstreamHost = config.upstreamHost;
  if (config.stripPrefix !== undefined) spec.stripPrefix = config.stripPrefix;
  return spec;
}

/** Servers with the same listen set are the virtual hosts of one listener (port 0: each its own). */
function groupServers(servers: readonly HttpServerConfig[]): HttpServerConfig[][] {
  const groups = new Map<string, HttpServerConfig[]>();
  servers.forEach((server, index) => {
    const key = server.listen.some((address) => address.endsWith(':0')) ? `#${index}` : listenKey(server.listen);
    groups.set(key, [...(groups.get(key) ?? []), server]);
  });
  return [...groups.values()];
}

function listeners(servers: readonly HttpServerConfig[]): ListenerSpec[] {
  return groupServers(servers).map((group) => {
    const first = group[0]!;
    const spec: ListenerSpec = {
      listen: first.listen,
      vhosts: group.map((server) => ({ names: server.serverNames, default: server.default, locations: server.locations.map(location) })),
      forwarding: { trustedProxies: first.trustedProxies },
    };
    if (first.tls) {
      const sni: Record<string, { cert: string; key: string }> = {};
      for (const server of group.slice(1)) {
        if (!server.tls) continue;
        const pair = { cert: readFileSync(server.tls.cert, 'utf8'), key: readFileSync(server.tls.key, 'utf8') };
        for (const name of server.serverNames) sni[name] = pair;
      }
      spec.tls = { cert: readFileSync(first.tls.cert, 'utf8'), key: readFileSync(first.tls.key, 'utf8'), ...(Object.keys(sni).length > 0 ? { sni } : {}) };
    }
    return spec;
  });
}

function upstream(config: UpstreamConfig): UpstreamSpec {
  return {
    name: config.name,
    servers: config.servers.map((server) => ({
      address: server.address,
      weight: server.weight,
      maxConns: server.maxConns,
      backup: server.backup,
      tls: server.tls,
      ...(server.servername ? { servername: server.servername } : {}),
      tlsVerify: server.tlsVerify,
    })),
    policy: config.policy,
    hashKey: config.hashKey,
    pool: config.pool,
    health: config.health,
    shutdownSessionsOnDown: config.shutdownSessionsOnDown,
  };
}

/** Every health target a configuration defines (for HealthChecker.replaceTargets). */
export function healthTargets(config: WmproxyConfig): TargetSpec[] {
  return upstreamTargets(config);
}

/** The part of a configuration the reverse proxy depends on: when it is unchanged, a reload leaves the proxy alone. */
export function reverseSignature(config: WmproxyConfig): string {
  return JSON.stringify({
    log: config.log,
    upstreams: config.upstreams,
    servers: config.servers,
    streams: config.streams,
    reverse: config.reverse,
  });
}

export function reverseOptions(config: WmproxyConfig, health: HealthChecker, logger: Logger, accessLog: AccessLog): ReverseProxyOptions {
  const streams: StreamSpec[] = config.streams.map((stream) => ({
    protocol: stream.protocol,
    listen: stream.listen,
    upstream: stream.upstream,
    tries: stream.tries,
    idleTimeoutMs: stream.idleTimeoutMs,
  }));
  return {
    servers: listeners(config.servers),
    upstreams: config.upstreams.map(upstream),
    streams,
    health,
    timeouts: config.reverse.timeouts,
    retries: config.reverse.retries,
    hedgeDelayMs: config.reverse.hedgeDelayMs,
    headLimits: { maxHeadSize: config.reverse.maxHeadSize },
    logger,
    accessLog,
    shutdownDeadlineMs: config.reverse.shutdownTimeoutMs,
  };
}

/** True when the config has anything for the reverse proxy to run. */
export function hasReverse(config: WmproxyConfig): boolean {
  return config.servers.length > 0 || config.streams.length > 0 || config.upstreams.length > 0;
}

const HEALTH_EVENTS = ['transition', 'eject', 'uneject', 'panic', 'probe'] as const;
type Listener = (...args: unknown[]) => void;
type Listeners = Map<string, Listener[]>;

/** A ReverseProxy, and the listeners it put on the shared health checker (removed when it is retired). */
function build(options: ReverseProxyOptions, listeners: WeakMap<ReverseProxy, Listeners>): ReverseProxy {
  const health = options.health as HealthChecker;
  const events = health.events as unknown as NodeJS.EventEmitter;
  const before = new Map(HEALTH_EVENTS.map((name) => [name, new Set(events.listeners(name))]));
  const proxy = new ReverseProxy(options);
  const added: Listeners = new Map();
  for (const name of HEALTH_EVENTS) added.set(name, events.listeners(name).filter((fn) => !before.get(name)!.has(fn)) as Listener[]);
  listeners.set(proxy, added);
  return proxy;
}

interface Reloadable {
  reload?(options: ReverseProxyOptions): Promise<unknown>;
}

/** Start, retrying while a port that another proxy is releasing is still busy. */
async function startWithRetry(proxy: ReverseProxy): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await proxy.start();
      return;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (attempt >= 20 || !(code === 'EADDRINUSE' || /EADDRINUSE|in use/i.test(String((error as Error).message)))) throw error;
      await sleep(25);
    }
  }
}

export class ReverseService {
  readonly kind = 'reverse';
  proxy: ReverseProxy;
  signature: string;
  private options: ReverseProxyOptions;
  /** The configuration the running proxy was built from (ports pinned). */
  private current: WmproxyConfig;
  /** Replaced proxies still finishing their connections. */
  private readonly retiring = new Set<ReverseProxy>();
  private readonly retireTimers = new Set<ReturnType<typeof setInterval>>();
  private readonly healthListeners = new WeakMap<ReverseProxy, Listeners>();

  private constructor(proxy: ReverseProxy, signature: string, options: ReverseProxyOptions, config: WmproxyConfig) {
    this.proxy = proxy;
    this.signature = signature;
    this.options = options;
    this.current = config;
  }

  static async start(config: WmproxyConfig, health: HealthChecker, logger: Logger, accessLog: AccessLog): Promise<ReverseService> {
    await handoffRuntime();
    const options = reverseOptions(config, health, logger, accessLog);
    const listeners = new WeakMap<ReverseProxy, Listeners>();
    const proxy = build(options, listeners);
    await startWithRetry(proxy);
    const service = new ReverseService(proxy, '', options, config);
    service.healthListeners.set(proxy, listeners.get(proxy)!);
    service.signature = reverseSignature(service.pin(config));
    return service;
  }

  /**
   * The configuration with each port 0 replaced by the port bound for the
   * same server or stream (by name): "any free port" is chosen once and kept
   * across reloads.
   */
  pin(config: WmproxyConfig): WmproxyConfig {
    const bound = new Map<string, string[]>();
    const addresses = [...this.proxy.addresses];
    for (const group of groupServers(this.current.servers)) {
      const taken = addresses.splice(0, group[0]!.listen.length);
      for (const server of group) bound.set(`server:${server.name}`, taken);
    }
    this.current.streams.forEach((stream, index) => bound.set(`stream:${stream.name}`, this.proxy.streams[index]?.addresses ?? []));
    const pinList = (listen: string[], key: string): string[] =>
      listen.map((address, index) => (address.endsWith(':0') && bound.get(key)?.[index] ? bound.get(key)![index]! : address));
    return {
      ...config,
      servers: config.servers.map((server) => ({ ...server, listen: pinList(server.listen, `server:${server.name}`) })),
      streams: config.streams.map((stream) => ({ ...stream, listen: pinList(stream.listen, `stream:${stream.name}`) })),
    };
  }

  /**
   * Apply a new configuration. Unchanged: nothing to do. Changed: the
   * ReverseProxy's own reload when it has one; otherwise a new ReverseProxy
   * takes over the listening sockets of the addresses that stay (see
   * handoff.ts), opens the new ones, and the old one retires: it finishes
   * what it has in flight while the listeners it alone had close.
   */
  async reload(given: WmproxyConfig, health: HealthChecker, logger: Logger, accessLog: AccessLog): Promise<'unchanged' | 'reloaded' | 'restarted'> {
    const config = this.pin(given);
    const signature = reverseSignature(config);
    if (signature === this.signature) return 'unchanged';
    const options = reverseOptions(config, health, logger, accessLog);
    const reloadable = this.proxy as unknown as Reloadable;
    if (typeof reloadable.reload === 'function') {
      await reloadable.reload(options);
    } else {
      const next = build(options, this.healthListeners); // validates before the old one is touched
      const old = this.proxy;
      const handoff = await handoffRuntime();
      await handoff.handoff(async () => {
        // UDP sockets cannot be shared: the old proxy lets go of them first.
        for (const stream of old.streams) if (stream.spec.protocol === 'udp') await stream.close().catch(() => undefined);
        try {
          await startWithRetry(next); // takes over the listening sockets of addresses that stay
          this.proxy = next;
        } catch (error) {
          // Put the old configuration back on the same sockets.
          this.retiring.add(next);
          await this.finish(next);
          const previous = build(this.options, this.healthListeners);
          await startWithRetry(previous);
          this.proxy = previous;
          this.retire(old);
          throw error;
        }
      });
      this.retire(old);
    }
    this.signature = signature;
    this.options = options;
    this.current = config;
    return reloadable.reload ? 'reloaded' : 'restarted';
  }

  /**
   * Let a replaced proxy finish: it gets no new connections (its sockets
   * were taken over); each of its keep-alive connections is answered once
   * more with `Connection: close` (so no request races a closing
   * connection), and the proxy closes when the last one is gone or the
   * shutdown deadline passes.
   */
  private retire(old: ReverseProxy): void {
    old.draining = true;
    this.retiring.add(old);
    const deadline = Date.now() + (this.options.shutdownDeadlineMs ?? 10_000);
    const timer = setInterval(() => {
      if (old.sessions.size > 0 && Date.now() < deadline) return;
      clearInterval(timer);
      void this.finish(old);
    }, 100);
    this.retireTimers.add(timer);
  }

  private async finish(old: ReverseProxy): Promise<void> {
    if (!this.retiring.delete(old)) return;
    await old.close().catch(() => undefined);
    const events = (this.options.health as HealthChecker).events as unknown as NodeJS.EventEmitter;
    for (const [name, fns] of this.healthListeners.get(old) ?? []) for (const fn of fns) events.off(name, fn);
    this.healthListeners.delete(old);
  }

  get addresses(): string[] {
    return [...this.proxy.addresses, ...this.proxy.streams.flatMap((stream) => stream.addresses)];
  }

  async stop(): Promise<void> {
    for (const timer of this.retireTimers) clearInterval(timer);
    this.retireTimers.clear();
    await Promise.all([this.proxy.close(), ...[...this.retiring].map((old) => this.finish(old))]);
  }
}
