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
import { ReverseProxy, type AccessLog, type ListenerSpec, type LocationSpec, type ReverseProxyOptions, type SharedCounters, type StreamSpec, type UpstreamSpec } from '@wmproxy/reverse';
import { upstreamTargets, type HttpServerConfig, type LocationConfig, type UpstreamConfig, type WmproxyConfig } from '@wmproxy/config';
import { listenKey } from './forward.js';
import { staticOptions } from './static-location.js';
import type { AcmeService } from './acme.js';

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
  if (config.rateLimit !== undefined) spec.rateLimit = config.rateLimit;
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

function listeners(servers: readonly HttpServerConfig[], acme: AcmeService | undefined): ListenerSpec[] {
  return groupServers(servers).map((group) => {
    const first = group[0]!;
    const spec: ListenerSpec = {
      listen: first.listen,
      vhosts: group.map((server) => ({
        names: server.serverNames,
        default: server.default,
        ...(server.rateLimit ? { rateLimit: server.rateLimit } : {}),
        locations: server.locations.map(location),
      })),
      forwarding: { trustedProxies: first.trustedProxies },
      // One listener, one set of limits (config checks the servers of a port agree).
      maxConnections: first.maxConnections,
      maxConnectionsPerIp: first.maxConnectionsPerIp,
      connectionLimitStatus: first.connectionLimitStatus,
    };
    const auto = acme && group.some((server) => server.tls === 'auto');
    const files = group.filter((server) => server.tls !== undefined && server.tls !== 'auto').map((server) => ({ server, tls: server.tls as { cert: string; key: string } }));
    if (auto) {
      // ACME certificates chosen at handshake time; servers of the port with files are served by SNI.
      const sni: Record<string, { cert: string; key: string }> = {};
      for (const { server, tls } of files) for (const name of server.serverNames) sni[name] = { cert: readFileSync(tls.cert, 'utf8'), key: readFileSync(tls.key, 'utf8') };
      spec.tls = acme.tls(sni);
    } else if (files.length > 0) {
      const sni: Record<string, { cert: string; key: string }> = {};
      for (const { server, tls } of files.slice(1)) {
        const pair = { cert: readFileSync(tls.cert, 'utf8'), key: readFileSync(tls.key, 'utf8') };
        for (const name of server.serverNames) sni[name] = pair;
      }
      const main = files[0]!.tls;
      spec.tls = { cert: readFileSync(main.cert, 'utf8'), key: readFileSync(main.key, 'utf8'), ...(Object.keys(sni).length > 0 ? { sni } : {}) };
    } else if (acme) spec.ahead = acme.ahead();
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
      // HTTP/2 servers go through the reverse proxy's h2/h2c transports.
      ...(server.protocol === 'h2' ? { transport: server.tls ? 'h2' : 'h2c' } : {}),
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
    acme: config.acme,
  });
}

export function reverseOptions(config: WmproxyConfig, health: HealthChecker, logger: Logger, accessLog: AccessLog, sharedCounters?: SharedCounters, acme?: AcmeService): ReverseProxyOptions {
  const streams: StreamSpec[] = config.streams.map((stream) => ({
    protocol: stream.protocol,
    listen: stream.listen,
    upstream: stream.upstream,
    tries: stream.tries,
    idleTimeoutMs: stream.idleTimeoutMs,
    maxConnections: stream.maxConnections,
    maxConnectionsPerIp: stream.maxConnectionsPerIp,
  }));
  return {
    servers: [...listeners(config.servers, acme), ...(acme?.redirectListener(config) ? [acme.redirectListener(config)!] : [])],
    upstreams: config.upstreams.map(upstream),
    streams,
    health,
    timeouts: config.reverse.timeouts,
    retries: config.reverse.retries,
    hedgeDelayMs: config.reverse.hedgeDelayMs,
    requestHedgeMs: config.reverse.requestHedgeMs,
    requestHedgeBudget: config.reverse.requestHedgeBudget,
    dns: config.reverse.dns,
    headLimits: { maxHeadSize: config.reverse.maxHeadSize },
    logger,
    accessLog,
    shutdownDeadlineMs: config.reverse.shutdownTimeoutMs,
    ...(sharedCounters ? { sharedCounters } : {}),
  };
}

/** True when the config has anything for the reverse proxy to run. */
export function hasReverse(config: WmproxyConfig): boolean {
  return config.servers.length > 0 || config.streams.length > 0 || config.upstreams.length > 0;
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
  readonly proxy: ReverseProxy;
  signature: string;
  /** The configuration the running proxy was built from (ports pinned). */
  private current: WmproxyConfig;

  private constructor(proxy: ReverseProxy, config: WmproxyConfig) {
    this.proxy = proxy;
    this.current = config;
    this.signature = '';
  }

  /** `sharedCounters`: where `scope = "cluster"` rate limits count (the instance's Redis connection). `acme`: automatic HTTPS. */
  static async start(config: WmproxyConfig, health: HealthChecker, logger: Logger, accessLog: AccessLog, sharedCounters?: SharedCounters, acme?: AcmeService): Promise<ReverseService> {
    const proxy = new ReverseProxy(reverseOptions(config, health, logger, accessLog, sharedCounters, acme));
    await startWithRetry(proxy);
    const service = new ReverseService(proxy, config);
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
    for (const [name, taken] of this.serverAddresses()) bound.set(`server:${name}`, taken);
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
   * ReverseProxy reloads in place (`ReverseProxy.reload`): listeners whose
   * addresses stay keep their sockets and connections, upstream groups that
   * stay keep their pools; an invalid configuration throws and leaves the
   * running one as it was.
   */
  async reload(given: WmproxyConfig, health: HealthChecker, logger: Logger, accessLog: AccessLog, acme?: AcmeService): Promise<'unchanged' | 'reloaded'> {
    const config = this.pin(given);
    const signature = reverseSignature(config);
    if (signature === this.signature) return 'unchanged';
    await this.proxy.reload(reverseOptions(config, health, logger, accessLog, this.proxy.sharedCounters, acme));
    this.signature = signature;
    this.current = config;
    return 'reloaded';
  }

  get addresses(): string[] {
    return [...this.proxy.addresses, ...this.proxy.streams.flatMap((stream) => stream.addresses)];
  }

  /** Bound addresses of each `[[server]]`, by name: the virtual hosts of one listener all have its addresses. */
  serverAddresses(): Map<string, string[]> {
    const bound = new Map<string, string[]>();
    const addresses = [...this.proxy.addresses];
    for (const group of groupServers(this.current.servers)) {
      const taken = addresses.splice(0, group[0]!.listen.length);
      for (const server of group) bound.set(server.name, taken);
    }
    return bound;
  }

  async stop(): Promise<void> {
    await this.proxy.close();
  }
}
