/**
 * A running wmproxy: every service a configuration defines, one shared
 * HealthChecker, the logs, the metrics and the control API. `reload()`
 * applies a new configuration without dropping traffic; `stop()` drains.
 */
import { EventEmitter } from 'node:events';
import { Ticker, protectLocalPort, runtimeReady, setProcessConnectionLimit, type Logger } from '@wmproxy/core-net';
import { EJECT_KINDS, HealthChecker, type EjectKind, type HealthSnapshot, type TargetSnapshot, type TargetSpec } from '@wmproxy/health';
import { ConfigError, redactConfig, type WmproxyConfig } from '@wmproxy/config';
import { LogSet, MeteredAccessLog } from './logging.js';
import { Exposition, Histogram, LATENCY_BUCKET_COUNT, Metrics, labels } from './metrics.js';
import { ForwardService, serviceKey } from './services/forward.js';
import { TimeSeries, type SeriesView } from './timeseries.js';
import { ReverseService, hasReverse, healthTargets, type ReverseShared } from './services/reverse.js';
import { AcmeService, acmeNameSets, storedCertificates, type AuthorityFactory } from './services/acme.js';
import type { ManagedCertificate } from '@wmproxy/acme';
import { TunnelService } from './services/tunnel.js';
import type { RedisCounters, ServiceRegistry } from '@wmproxy/cluster';
import { noUpstreams, WsProxyService } from './services/ws-proxy.js';
import { PortPinner } from './cluster/ports.js';
import { emptyCounters, mergeCertificates, type HealthEntry, type WorkerCounters } from './cluster/protocol.js';
import { WorkerSupervisor } from './cluster/supervisor.js';
import type { ClusterSource, ControlApi, InstanceEvent, ReloadResult, ServiceStatus, StatusView, UpstreamView } from './types.js';

export const VERSION = '0.1.0';

export interface InstanceOptions {
  /** Reads the configuration again, for `reload()` without an argument (SIGHUP, POST /reload). */
  load?: () => Promise<WmproxyConfig>;
  /** Use this logger instead of the configuration's error log (tests pass `silentLogger`). */
  logger?: Logger;
  /** Reported by /status (default: this package's version). */
  version?: string;
  /** Told when a stop was asked for through the control API (the CLI exits after it). */
  onStopRequested?: () => void;
  /**
   * Serve with this many worker processes sharing every listener (default 1:
   * serve in this process). This process then keeps the configuration, the
   * health checks and the control API, and restarts workers that die.
   */
  workers?: number;
  /** Set in a worker process by the cluster: its index and the primary's health states to start from. */
  worker?: { index: number; health: HealthEntry[] };
  /** The ACME CA of automatic HTTPS (default: acme-client with `[acme]`'s directory; tests pass an in-process CA). */
  acmeAuthority?: AuthorityFactory;
  /** How long a tunnel domain keeps its certificate managed after its last client left (tests; default `ACME_DEFAULTS.tunnelLingerMs`). */
  acmeTunnelLingerMs?: number;
  /** A configuration store this instance follows (`run --store`): shown in /status, the dashboard and /metrics. */
  cluster?: ClusterSource;
}

const RECENT_EVENTS = 200;

/** ioredis is loaded only when `[cluster] redis` is set. */
async function sharedCounters(config: WmproxyConfig, logger: Logger): Promise<RedisCounters> {
  const { RedisCounters } = await import('@wmproxy/cluster');
  return new RedisCounters({ url: config.cluster.redis!, instances: config.cluster.instances, timeoutMs: config.cluster.redisTimeoutMs, logger });
}

/** etcd3 is loaded only when a group discovers its servers in `[cluster] store`'s registry. */
async function serviceRegistry(config: WmproxyConfig, logger: Logger): Promise<ServiceRegistry | undefined> {
  if (config.cluster.store === undefined || !config.upstreams.some((upstream) => upstream.discover?.source === 'etcd')) return undefined;
  const { ServiceRegistry } = await import('@wmproxy/cluster');
  return new ServiceRegistry(config.cluster.store, { logger });
}

/** Elysia is loaded only where the control API runs: worker processes never need it. */
async function startApi(instance: Instance, config: WmproxyConfig['control'], logger: Logger): Promise<ControlApi> {
  const { ControlServer } = await import('./api.js');
  return ControlServer.start(instance, config, logger);
}

export class Instance {
  config: WmproxyConfig;
  readonly health: HealthChecker;
  readonly metrics = new Metrics();
  readonly events = new EventEmitter();
  readonly recentEvents: InstanceEvent[] = [];
  readonly startedAt = Date.now();
  /** The last 15 minutes, one sample a second (not kept in worker processes: the primary samples their sum). */
  readonly series = new TimeSeries();
  private readonly seriesTicker = new Ticker(1000, () => undefined);
  private sampling = false;
  private logs: LogSet | undefined;
  private logger: Logger;
  private readonly accessLog: MeteredAccessLog;
  private readonly forward = new Map<string, ForwardService>();
  private reverse: ReverseService | undefined;
  /** Automatic HTTPS (servers with `tls = "auto"`), in the process that serves them. */
  readonly acme: AcmeService;
  private tunnel: TunnelService | undefined;
  /** `[[ws_proxy]]` bridges, in the primary process (an upstream target needs workers = 1: config checks it). */
  private wsProxies: WsProxyService | undefined;
  private api: ControlApi | undefined;
  /** The Redis counters of `scope = "cluster"` rate limits (kept across reloads; a new URL reconnects them). */
  private counters: RedisCounters | undefined;
  /** The etcd service registry `etcd+` discovery reads (created with the first group that uses it). */
  private registry: ServiceRegistry | undefined;
  /** Releases the control API's port from the forward proxies' refusals (see `guardControlPort`). */
  private releaseControlPort: (() => void) | undefined;
  private readonly options: InstanceOptions;
  private runtimeName = 'unknown';
  private lastReload: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private stopRun: Promise<void> | undefined;
  private supervisor: WorkerSupervisor | undefined;
  private readonly pinner = new PortPinner();
  /** The workers' counters as last collected (see `refresh()`). */
  private clusterCounters: WorkerCounters = emptyCounters(LATENCY_BUCKET_COUNT);

  private constructor(config: WmproxyConfig, options: InstanceOptions) {
    this.config = config;
    this.options = options;
    this.events.setMaxListeners(0);
    if (options.logger) this.logger = options.logger;
    else {
      this.logs = new LogSet(config.log);
      this.logger = this.logs.logger;
    }
    this.accessLog = this.newAccessLog();
    this.acme = new AcmeService(this.loggerFor('acme'), { authority: options.acmeAuthority, tunnelLingerMs: options.acmeTunnelLingerMs });
    this.health = new HealthChecker(options.worker ? { ...config.health, probe: false } : config.health);
    this.health.events.on('transition', (event) => {
      this.supervisor?.broadcastHealth([{ key: event.key, state: event.to, reason: event.reason }]);
      this.metrics.observeTransition(event.target, event.to);
      this.emit({ type: 'transition', at: event.at, target: event.target, check: event.check, from: event.from, to: event.to, reason: event.reason, latencyMs: event.latencyMs });
    });
    this.health.events.on('eject', (event) => this.emit({ type: 'eject', at: event.at, target: event.target, kind: event.kind, reason: event.reason, durationMs: event.durationMs }));
    this.health.events.on('uneject', (event) => this.emit({ type: 'uneject', at: event.at, target: event.target, kind: event.kind, reason: event.reason }));
    this.health.events.on('panic', (event) => this.emit({ type: 'panic', at: event.at, pool: event.pool, panic: event.panic, available: event.available, total: event.total }));
    this.health.events.on('probe', (event) => this.metrics.observeProbe(event.result.ok, event.result.latencyMs));
  }

  /** Start every service of `config`. On failure everything started is stopped again and the error thrown. */
  static async start(config: WmproxyConfig, options: InstanceOptions = {}): Promise<Instance> {
    const instance = new Instance(config, options);
    try {
      instance.runtimeName = (await runtimeReady()).name;
      // Each process (a worker too) holds at most this many client connections over all its listeners.
      setProcessConnectionLimit(config.maxConnections);
      const workers = options.workers ?? 1;
      if (workers > 1) {
        instance.config = await instance.pinner.pin(config);
        instance.health.replaceTargets(healthTargets(instance.config));
        instance.supervisor = new WorkerSupervisor({
          count: workers,
          logger: instance.logger.child({ service: 'workers' }),
          buckets: LATENCY_BUCKET_COUNT,
          healthStates: () => instance.healthEntries(),
          quiet: options.logger !== undefined,
          onEvent: (event) => instance.emit(event),
        });
        await instance.supervisor.start(instance.config);
      } else {
        if (options.worker) {
          // A worker starts from the primary's health states, before it serves.
          instance.health.replaceTargets(healthTargets(config));
          for (const entry of options.worker.health) instance.health.applyState(entry.key, entry.state, entry.reason);
        }
        for (const proxy of config.proxies) {
          const service = await new ForwardService(proxy, instance.loggerFor(proxy.name)).start();
          instance.forward.set(service.key, service);
        }
        if (config.cluster.redis !== undefined) instance.counters = await sharedCounters(config, instance.loggerFor('cluster'));
        instance.registry = await serviceRegistry(config, instance.loggerFor('cluster'));
        if (hasReverse(config)) instance.reverse = await ReverseService.start(config, instance.health, instance.loggerFor('reverse'), instance.accessLog, instance.shared());
        // Orders start once the listeners that answer the CA's challenges are up.
        await instance.acme.apply(config);
        // Exactly the configured checks (and the discovered servers'): the proxy may have declared passive-only targets of its own.
        instance.health.replaceTargets(instance.allHealthTargets(config));
      }
      // The tunnel runs once, in the primary process: its sessions and public ports are not shared between workers.
      if (!options.worker && hasTunnel(config)) instance.tunnel = await TunnelService.start(config.tunnel, (service) => instance.loggerFor(service), instance.acme);
      // With workers, the primary orders the certificates of the tunnel it runs (the workers those of the servers).
      if (instance.supervisor && config.tunnel.server?.httpsAuto) await instance.acme.apply(config, { servers: false });
      if (!options.worker) await instance.acme.applyTunnelRedirect(config);
      if (!options.worker && config.wsProxies.length > 0) {
        instance.wsProxies = instance.newWsProxies();
        await instance.wsProxies.apply(config.wsProxies, config.reverse.shutdownTimeoutMs);
      }
      if (!options.worker) instance.seriesTicker.add((now) => instance.sampleSeries(now));
      if (config.control.enabled) instance.guardControlPort(await startApi(instance, config.control, instance.loggerFor('control')));
    } catch (error) {
      await instance.shutdown(0);
      throw error;
    }
    for (const warning of config.warnings) instance.logger.warn('configuration', { warning });
    instance.logger.info('wmproxy started', { config: config.file, services: instance.status().services.length });
    return instance;
  }

  /** Bridges whose upstream targets are picked by this process's reverse proxy, asked at each connection. */
  private newWsProxies(): WsProxyService {
    return new WsProxyService((name, clientIp, signal) => this.reverse?.proxy.connectUpstream(name, clientIp, { signal }) ?? noUpstreams(name), (name) => this.loggerFor(name));
  }

  /** A service's logger: its own level when `log.levels` names it. */
  private loggerFor(service: string): Logger {
    const logger = this.logs && !this.options.logger ? this.logs.loggerFor(service) : this.logger.child({ service });
    // Lines of several workers interleave in one log: say which one wrote each.
    return this.options.worker ? logger.child({ worker: this.options.worker.index }) : logger;
  }

  private newAccessLog(): MeteredAccessLog {
    return new MeteredAccessLog((record) => this.metrics.observeRequest(record), this.logs?.accessSink, this.config.log.accessFormat);
  }

  private retargetAccessLog(format: WmproxyConfig['log']['accessFormat']): void {
    this.accessLog.target = this.logs?.accessSink;
    this.accessLog.lineFormat = format;
  }

  /** Every active check's known state, for a worker that starts. */
  private healthEntries(): HealthEntry[] {
    const entries: HealthEntry[] = [];
    for (const target of this.health.snapshot().targets) {
      for (const check of target.checks) if (check.state !== 'unknown') entries.push({ key: check.key, state: check.state });
    }
    return entries;
  }

  /** One sample of the time series; with workers, after collecting their counters (a slow collect skips a second). */
  private sampleSeries(now: number): void {
    if (this.sampling || this.stopping) return;
    this.sampling = true;
    void this.refresh()
      .then(() => {
        const counters = this.workerCounters();
        let connections = counters.sessions;
        for (const entry of counters.forward) connections += entry.open;
        let limited = 0;
        for (const [, count] of counters.limited ?? []) limited += count;
        this.series.sample(now, counters, connections, this.upstreams(), limited);
        // /series/stream pushes the new sample to the dashboards watching.
        this.events.emit('sample', now);
      })
      .catch((error: unknown) => this.logger.debug('time series sample failed', { error: (error as Error).message }))
      .finally(() => (this.sampling = false));
  }

  /** The time series after `since` (epoch ms), for GET /series. */
  seriesView(since: number): SeriesView {
    return this.series.view(since);
  }

  private emit(event: InstanceEvent): void {
    // Ejections of this process's checker and of the workers' (passive and stall detection run where the traffic is).
    if (event.type === 'eject' && typeof event.target === 'string') this.metrics.observeEjection(event.target, ejectKindOf(event.kind));
    if (event.type === 'transition' && typeof event.target === 'string') this.series.noteTransition({ at: event.at, kind: 'transition', target: event.target, from: String(event.from), to: String(event.to), reason: event.reason === undefined ? undefined : String(event.reason) });
    else if ((event.type === 'eject' || event.type === 'uneject') && typeof event.target === 'string') this.series.noteTransition({ at: event.at, kind: event.type, target: event.target, to: event.type === 'eject' ? 'ejected' : 'returned', reason: event.reason === undefined ? undefined : String(event.reason) });
    this.recentEvents.push(event);
    if (this.recentEvents.length > RECENT_EVENTS) this.recentEvents.shift();
    this.events.emit('event', event);
  }

  /** Bound address of the control API (`host:port`), when it runs. */
  get controlAddress(): string | undefined {
    return this.api?.address;
  }

  /** Bound addresses of a forward proxy, HTTP server or stream, by name. */
  addressesOf(name: string): string[] {
    return this.status().services.find((service) => service.name === name)?.addresses ?? [];
  }

  /**
   * Apply a configuration (or read it again with `options.load`). An invalid
   * one is rejected with its errors and the running one stays. Forward-proxy
   * ports that stay keep their sockets; new ones open; removed ones drain.
   * Health state of targets that stay is kept. Reloads run one at a time.
   */
  reload(next?: WmproxyConfig): Promise<ReloadResult> {
    const run = this.queue.then(() => this.reloadNow(next));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(given: WmproxyConfig | undefined): Promise<ReloadResult> {
    if (this.stopping) return { ok: false, message: 'stopping', changes: [], warnings: [] };
    let next: WmproxyConfig;
    try {
      if (given) next = given;
      else if (this.options.load) next = await this.options.load();
      else return this.rejected({ ok: false, message: 'no configuration file to read again', changes: [], warnings: [] });
    } catch (error) {
      if (error instanceof ConfigError) return this.rejected({ ok: false, errors: error.issues, message: error.message, changes: [], warnings: [] });
      return this.rejected({ ok: false, message: (error as Error).message, changes: [], warnings: [] });
    }
    const changes: string[] = [];
    setProcessConnectionLimit(next.maxConnections);
    try {
      this.health.configure(next.health);
    } catch (error) {
      return this.rejected({ ok: false, message: `health: ${(error as Error).message}`, changes: [], warnings: [] });
    }
    // 1. Logs first, so that the new services log to the new place.
    let oldLogs: LogSet | undefined;
    if (!this.options.logger && this.logs && !this.logs.sameAs(next.log)) {
      oldLogs = this.logs;
      this.logs = new LogSet(next.log);
      this.logger = this.logs.logger;
      changes.push('logs reopened with the new settings');
    }
    this.retargetAccessLog(next.log.accessFormat);
    if (!this.options.worker) {
      try {
        if (this.tunnel) changes.push(...(await this.tunnel.apply(next.tunnel)));
        else if (hasTunnel(next)) {
          this.tunnel = new TunnelService((service) => this.loggerFor(service), this.acme);
          changes.push(...(await this.tunnel.apply(next.tunnel)));
        }
        const redirect = await this.acme.applyTunnelRedirect(next);
        if (redirect) changes.push(redirect);
      } catch (error) {
        if (oldLogs) this.restoreLogs(oldLogs);
        this.retargetAccessLog(this.config.log.accessFormat);
        return this.rejected({ ok: false, message: `tunnel: ${(error as Error).message}`, changes, warnings: [] });
      }
    }
    if (!this.options.worker && (this.wsProxies || next.wsProxies.length > 0)) {
      try {
        this.wsProxies ??= this.newWsProxies();
        changes.push(...(await this.wsProxies.apply(next.wsProxies, next.reverse.shutdownTimeoutMs)));
      } catch (error) {
        if (oldLogs) this.restoreLogs(oldLogs);
        this.retargetAccessLog(this.config.log.accessFormat);
        return this.rejected({ ok: false, message: `ws_proxy: ${(error as Error).message}`, changes, warnings: [] });
      }
    }
    if (this.supervisor) return this.reloadWorkers(this.supervisor, next, changes, oldLogs);
    // 2. Forward proxies: validate every new proxy, bind new ports, then commit.
    const kept: Array<{ service: ForwardService; config: WmproxyConfig['proxies'][number]; proxy: ReturnType<ForwardService['prepare']> }> = [];
    const opened: ForwardService[] = [];
    try {
      for (const proxy of next.proxies) {
        const existing = this.forward.get(serviceKey(proxy));
        if (existing) kept.push({ service: existing, config: proxy, proxy: existing.prepare(proxy, this.loggerFor(proxy.name)) });
      }
      for (const proxy of next.proxies) {
        if (!this.forward.has(serviceKey(proxy))) opened.push(await new ForwardService(proxy, this.loggerFor(proxy.name)).start());
      }
      for (const { service, config, proxy } of kept) service.commit(proxy, config);
    } catch (error) {
      await Promise.all(opened.map((service) => service.stop(0)));
      if (oldLogs) this.restoreLogs(oldLogs);
      this.retargetAccessLog(this.config.log.accessFormat);
      return this.rejected({ ok: false, message: (error as Error).message, changes: [], warnings: [] });
    }
    const keptKeys = new Set(kept.map(({ service }) => service.key));
    const removed = [...this.forward.values()].filter((service) => !keptKeys.has(service.key));
    for (const { service } of kept) changes.push(`proxy "${service.name}" on ${service.addresses.join(', ')}: settings updated, socket kept`);
    for (const service of opened) {
      this.forward.set(service.key, service);
      changes.push(`proxy "${service.name}" opened on ${service.addresses.join(', ')}`);
    }
    const deadline = next.reverse.shutdownTimeoutMs;
    for (const service of removed) {
      this.forward.delete(service.key);
      changes.push(`proxy "${service.name}" on ${service.addresses.join(', ')} closed (draining)`);
      void service.stop(deadline);
    }
    // 3. Reverse proxy and streams.
    try {
      if (hasReverse(next)) {
        if (this.reverse) {
          await this.reconnectShared(next, changes);
          const outcome = await this.reverse.reload(next, this.health, this.loggerFor('reverse'), this.accessLog, this.shared());
          await this.acme.apply(next);
          if (outcome !== 'unchanged') changes.push(`reverse proxy ${outcome}`);
        } else {
          await this.reconnectShared(next, changes);
          this.reverse = await ReverseService.start(next, this.health, this.loggerFor('reverse'), this.accessLog, this.shared());
          await this.acme.apply(next);
          changes.push('reverse proxy started');
        }
      } else {
        if (this.reverse) {
          const old = this.reverse;
          this.reverse = undefined;
          void old.stop();
          changes.push('reverse proxy stopped (draining)');
        }
        // The tunnel's automatic HTTPS, or none.
        await this.acme.apply(next);
      }
    } catch (error) {
      // Forward-proxy changes are committed; report the reverse proxy's failure (it kept or restored its old settings).
      this.metrics.reloadsFailed++;
      this.logger.error('reload failed', { error: (error as Error).message });
      this.config = { ...next, upstreams: this.config.upstreams, servers: this.config.servers, streams: this.config.streams, reverse: this.config.reverse };
      return { ok: false, message: (error as Error).message, changes, warnings: next.warnings };
    }
    // 4. Health targets: the exact new set; unchanged targets keep their state.
    this.health.replaceTargets(this.allHealthTargets(next));
    return this.committed(next, changes, oldLogs);
  }

  /** What the reverse proxy borrows from the instance. */
  private shared(): ReverseShared {
    return {
      ...(this.counters ? { sharedCounters: this.counters } : {}),
      acme: this.acme,
      ...(this.registry ? { discovery: { etcd: this.registry.discovery() } } : {}),
    };
  }

  /** The configured health targets and those of the servers discovery found. */
  private allHealthTargets(config: WmproxyConfig): TargetSpec[] {
    return [...healthTargets(config), ...(this.reverse?.proxy.discoveredTargets() ?? [])];
  }

  /**
   * A reload that changes `[cluster] redis` reconnects the counters (the
   * limits keep their local view, so they hold across the switch; the old
   * connection closes); one that adds a `[cluster] store` with `etcd+`
   * discovery opens the registry.
   */
  private async reconnectShared(next: WmproxyConfig, changes: string[]): Promise<void> {
    const redis = next.cluster.redis;
    if (redis !== undefined && this.counters === undefined) {
      this.counters = await sharedCounters(next, this.loggerFor('cluster'));
      changes.push('cluster rate limits: connected to Redis');
    } else if (redis !== undefined && this.counters) {
      if (redis !== this.counters.url) changes.push('cluster rate limits: reconnected to another Redis');
      this.counters.reconfigure({ url: redis, instances: next.cluster.instances, timeoutMs: next.cluster.redisTimeoutMs });
    }
    // Without `[cluster] redis` no limit counts in Redis (the configuration says so); the idle connection stays until stop.
    if (this.registry === undefined) this.registry = await serviceRegistry(next, this.loggerFor('cluster'));
  }

  /** With workers: this process checks health and keeps the configuration; every worker applies it. */
  private async reloadWorkers(supervisor: WorkerSupervisor, given: WmproxyConfig, changes: string[], oldLogs: LogSet | undefined): Promise<ReloadResult> {
    let next: WmproxyConfig;
    try {
      next = await this.pinner.pin(given);
    } catch (error) {
      if (oldLogs) this.restoreLogs(oldLogs);
      this.retargetAccessLog(this.config.log.accessFormat);
      return this.rejected({ ok: false, message: (error as Error).message, changes: [], warnings: [] });
    }
    try {
      if (next.tunnel.server?.httpsAuto) await this.acme.apply(next, { servers: false });
      else this.acme.stop();
    } catch (error) {
      return this.rejected({ ok: false, message: `acme: ${(error as Error).message}`, changes, warnings: [] });
    }
    const results = await supervisor.reload(next);
    this.health.replaceTargets(healthTargets(next));
    const failed = results.filter((result) => !result.ok);
    changes.push(...(results.find((result) => result.ok)?.changes ?? []));
    if (failed.length > 0) {
      // Workers that could not apply it kept (or restored) their previous settings, as a single process does.
      this.metrics.reloadsFailed++;
      const message = [...new Set(failed.map((result) => result.message ?? 'failed'))].join('; ');
      this.logger.error('reload failed in a worker', { error: message, workers: failed.length });
      this.config = next;
      if (oldLogs) void oldLogs.close();
      return { ok: false, message: `${failed.length} of ${results.length} workers: ${message}`, changes, warnings: next.warnings };
    }
    return this.committed(next, changes, oldLogs);
  }

  private committed(next: WmproxyConfig, changes: string[], oldLogs: LogSet | undefined): ReloadResult {
    const previous = this.config;
    this.config = next;
    if (oldLogs) void oldLogs.close();
    // 5. The control API, after the answer to a POST /reload has gone out.
    if (JSON.stringify(previous.control) !== JSON.stringify(next.control)) {
      changes.push(next.control.enabled ? `control API on ${next.control.listen}` : 'control API stopped');
      setTimeout(() => void this.restartApi(), 50);
    } else this.api?.configure(next.control);
    this.metrics.reloadsOk++;
    this.lastReload = new Date().toISOString();
    for (const warning of next.warnings) this.logger.warn('configuration', { warning });
    this.logger.info('configuration reloaded', { config: next.file, changes: changes.length });
    this.emit({ type: 'reload', at: Date.now(), ok: true, changes });
    return { ok: true, changes, warnings: next.warnings };
  }

  private restoreLogs(old: LogSet): void {
    void this.logs?.close();
    this.logs = old;
    this.logger = old.logger;
  }

  private rejected(result: ReloadResult): ReloadResult {
    this.metrics.reloadsFailed++;
    this.logger.error('reload rejected, the running configuration stays', { reason: result.message?.split('\n')[0] });
    this.emit({ type: 'reload', at: Date.now(), ok: false, message: result.message });
    return result;
  }

  private async restartApi(): Promise<void> {
    const old = this.api;
    this.api = undefined;
    this.releaseControlPort?.();
    this.releaseControlPort = undefined;
    await old?.close();
    if (!this.config.control.enabled || this.stopping) return;
    try {
      this.guardControlPort(await startApi(this, this.config.control, this.loggerFor('control')));
    } catch (error) {
      this.logger.error('control API could not start', { listen: this.config.control.listen, error: (error as Error).message });
    }
  }

  /** Reopen log files (SIGUSR1, after logrotate moved them). */
  reopenLogs(): void {
    this.logs?.reopen();
    this.supervisor?.reopenLogs();
    this.logger.info('log files reopened');
  }

  /** True once a stop has begun (the control API's `/healthz` then answers 503). */
  get stopping(): boolean {
    return this.stopRun !== undefined;
  }

  /** Asked through the control API: stop, then tell the owner. */
  requestStop(): void {
    void this.stop().then(() => this.options.onStopRequested?.());
  }

  /** Graceful stop: stop accepting everywhere, let connections finish up to the shutdown deadline, close. */
  stop(): Promise<void> {
    this.stopRun ??= this.shutdown(this.config.reverse.shutdownTimeoutMs);
    return this.stopRun;
  }

  /**
   * Serve `api`, and make every forward proxy of this process refuse its
   * port on every address of this host: no path from a proxy client to the
   * control API, even from a loopback proxy without a deny list.
   */
  private guardControlPort(api: ControlApi): void {
    this.api = api;
    this.releaseControlPort?.();
    this.releaseControlPort = protectLocalPort(Number(api.address.slice(api.address.lastIndexOf(':') + 1)));
  }

  private async shutdown(deadlineMs: number): Promise<void> {
    this.seriesTicker.close();
    this.emit({ type: 'stop', at: Date.now() });
    this.logger.info('stopping', { deadlineMs });
    await Promise.all([...[...this.forward.values()].map((service) => service.stop(deadlineMs)), this.reverse?.stop(), this.supervisor?.stop(deadlineMs), this.tunnel?.stop(deadlineMs), this.wsProxies?.stop(deadlineMs)]);
    this.forward.clear();
    this.wsProxies = undefined;
    this.tunnel = undefined;
    this.reverse = undefined;
    await this.acme.stopTunnelRedirect();
    this.acme.stop();
    await this.health.close();
    await this.counters?.close();
    await this.registry?.close();
    await this.api?.close();
    this.api = undefined;
    this.releaseControlPort?.();
    this.releaseControlPort = undefined;
    await this.accessLog.close();
    await this.logs?.close();
  }

  status(): StatusView {
    const services: ServiceStatus[] = [];
    for (const service of this.forward.values()) {
      services.push({
        kind: 'forward',
        name: service.name,
        listen: service.config.listen,
        addresses: service.addresses,
        protocols: service.config.protocols,
        auth: service.config.users !== undefined,
        openConnections: service.openConnections,
        acceptedConnections: service.accepted,
      });
    }
    if (this.reverse) {
      const bound = this.reverse.serverAddresses();
      for (const server of this.config.servers) {
        services.push({ kind: 'http', name: server.name, listen: server.listen, addresses: bound.get(server.name) ?? [], serverNames: server.serverNames, tls: server.tls !== undefined, locations: server.locations.length });
      }
      this.config.streams.forEach((stream, index) => {
        services.push({ kind: 'stream', name: stream.name, listen: stream.listen, addresses: this.reverse!.proxy.streams[index]?.addresses ?? [], protocol: stream.protocol, upstream: stream.upstream });
      });
    }
    if (this.supervisor) services.push(...this.supervisor.services());
    if (this.wsProxies) services.push(...this.wsProxies.status());
    if (this.api) services.push({ kind: 'control', name: 'control', listen: [this.config.control.listen], addresses: [this.api.address] });
    return {
      version: this.options.version ?? VERSION,
      runtime: this.runtimeName,
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      configFile: this.config.file,
      reloads: { ok: this.metrics.reloadsOk, failed: this.metrics.reloadsFailed, last: this.lastReload },
      services,
      ...(this.supervisor ? { workers: this.supervisor.workers() } : {}),
      ...(this.tunnel ? { tunnel: this.tunnel.status() } : {}),
      ...(this.options.cluster ? { cluster: this.options.cluster.view() } : {}),
    };
  }

  /** The running tunnel server, if the configuration has one (for http/https mappings through the reverse proxy). */
  get tunnelServer() {
    return this.tunnel?.tunnelServer;
  }

  /** Targets by health state, for a cluster member record. */
  healthSummary(): { healthy: number; unhealthy: number } {
    let healthy = 0;
    let unhealthy = 0;
    for (const target of this.health.snapshot().targets) {
      if (target.available) healthy++;
      else unhealthy++;
    }
    return { healthy, unhealthy };
  }

  /** With workers: collect their counters now (the control API calls this before answering). */
  async refresh(): Promise<void> {
    if (this.supervisor) this.clusterCounters = await this.supervisor.collect();
  }

  /** This process's traffic counters (a worker reports them to its primary); with workers, theirs as last collected. */
  workerCounters(): WorkerCounters {
    if (this.supervisor) return this.clusterCounters;
    const m = this.metrics;
    return {
      requests: [...m.requests],
      bytesSent: m.bytesSent,
      requestDuration: m.requestDuration.data(),
      upstreamDuration: m.upstreamDuration.data(),
      upstreams: this.reverse?.proxy.snapshot().upstreams ?? {},
      forward: [...this.forward.values()].map((service) => ({ name: service.name, open: service.openConnections, accepted: service.accepted })),
      sessions: this.reverse?.proxy.sessions.size ?? 0,
      limited: [...m.limited],
      certificates: this.acme.list(),
      bytesReceived: m.bytesReceived,
      retries: m.retries,
      hedges: { won: m.hedgesWon, lost: m.hedgesLost },
      serverDuration: [...m.serverDuration].map(([key, histogram]) => [key, histogram.data()]),
      ...(this.reverse?.proxy.traceStats() ? { traceSpans: this.reverse.proxy.traceStats()! } : {}),
    };
  }

  /** Every upstream server with its health and counters. */
  upstreams(): UpstreamView[] {
    const snapshot: HealthSnapshot = this.health.snapshot();
    const targets = new Map<string, TargetSnapshot>(snapshot.targets.map((target) => [target.target, target]));
    const counters = this.workerCounters().upstreams;
    return this.config.upstreams.map((group) => ({
      name: group.name,
      policy: group.policy,
      // A discovering group: the servers the proxy runs now, which the configuration does not list.
      servers: (group.discover ? (counters[group.name] ?? []).map((counter) => ({ address: counter.address, weight: counter.weight ?? 1, backup: counter.backup ?? false })) : group.servers).map((server, index) => {
        const counter = counters[group.name]?.[index];
        const address = counter?.address ?? server.address;
        const target = targets.get(address) ?? targets.get(server.address);
        const check = target?.checks[0];
        const last = check?.history[check.history.length - 1];
        return {
          address,
          weight: server.weight,
          backup: server.backup,
          state: target?.ejected ? 'ejected' : target?.state ?? 'unknown',
          available: counter?.available ?? target?.available ?? true,
          ejected: target?.ejected ?? false,
          ejectKind: target?.ejected ? target.ejectKind : undefined,
          reason: rowReason(target?.ejected ? target.ejectReason : undefined, last?.reason),
          successes: check?.successes ?? 0,
          failures: check?.failures ?? 0,
          latencyMs: last?.latencyMs,
          lastResults: (check?.history ?? []).slice(-10).map((result) => ({ ok: result.ok, at: result.at, latencyMs: result.latencyMs, reason: result.reason })),
          check: check?.check,
          activeRequests: counter?.active ?? 0,
          idleConnections: counter?.idle ?? 0,
          requests: counter?.requests ?? 0,
          requestFailures: counter?.failures ?? 0,
        };
      }),
    }));
  }

  /**
   * Managed certificates. With workers (each runs a manager over the shared
   * storage), their rows as last collected, merged, with this process's own
   * (the tunnel's); a server set no worker has reported yet shows what the
   * storage holds.
   */
  async certificates(): Promise<ManagedCertificate[]> {
    if (!this.supervisor) return this.acme.list();
    await this.refresh();
    const rows = this.certificateRows();
    if (!this.config.acme) return rows;
    const known = new Set(rows.map((row) => [...row.names].sort().join(',')));
    const missing = acmeNameSets(this.config).filter((names) => !known.has([...names].sort().join(',')));
    return [...rows, ...(await storedCertificates(this.config.acme.storage, missing))];
  }

  /** This process's certificates and, with workers, theirs as last collected (for /metrics). */
  private certificateRows(): ManagedCertificate[] {
    if (!this.supervisor) return this.acme.list();
    return mergeCertificates([...this.acme.list(), ...(this.clusterCounters.certificates ?? [])]);
  }

  /** The running configuration as written, secrets redacted. */
  redactedConfig(): { file: string; warnings: string[]; config: unknown } {
    return { file: this.config.file, warnings: this.config.warnings, config: redactConfig(this.config.source) };
  }

  /** Prometheus text exposition. */
  prometheus(): string {
    const out = new Exposition();
    const m = this.metrics;
    const traffic = this.workerCounters();
    out.family('wmproxy_uptime_seconds', 'gauge', 'Seconds since the instance started.').sample('wmproxy_uptime_seconds', {}, (Date.now() - this.startedAt) / 1000);
    out.family('wmproxy_reloads_total', 'counter', 'Configuration reloads by result.');
    out.sample('wmproxy_reloads_total', { result: 'ok' }, m.reloadsOk).sample('wmproxy_reloads_total', { result: 'rejected' }, m.reloadsFailed);
    out.family('wmproxy_config_last_reload_success_timestamp_seconds', 'gauge', 'When the last reload was applied (epoch seconds; 0: none since start).').sample('wmproxy_config_last_reload_success_timestamp_seconds', {}, this.lastReload ? Date.parse(this.lastReload) / 1000 : 0);
    const cluster = this.options.cluster?.view();
    if (cluster) {
      out.family('wmproxy_config_store_up', 'gauge', 'Whether the configuration store is reachable (0: serving the last good configuration).').sample('wmproxy_config_store_up', {}, cluster.connected ? 1 : 0);
      out.family('wmproxy_config_store_revision', 'gauge', 'Revision of the stored configuration this instance runs.').sample('wmproxy_config_store_revision', {}, cluster.revision);
      out.family('wmproxy_cluster_members', 'gauge', 'Instances registered in the configuration store.').sample('wmproxy_cluster_members', {}, cluster.members.length);
    }
    out.family('wmproxy_open_connections', 'gauge', 'Open client connections by service.');
    for (const entry of traffic.forward) out.sample('wmproxy_open_connections', { service: entry.name, kind: 'forward' }, entry.open);
    if (this.reverse || hasReverse(this.config)) out.sample('wmproxy_open_connections', { service: 'reverse', kind: 'http' }, traffic.sessions);
    out.family('wmproxy_accepted_connections_total', 'counter', 'Client connections accepted by forward proxies.');
    for (const entry of traffic.forward) out.sample('wmproxy_accepted_connections_total', { service: entry.name }, entry.accepted);
    out.family('wmproxy_http_requests_total', 'counter', 'Requests answered by the reverse proxy, by status class.');
    for (const [code, count] of traffic.requests) out.sample('wmproxy_http_requests_total', { code }, count);
    out.family('wmproxy_http_limited_requests_total', 'counter', 'Requests refused by a location limit, by reason (rate_limited, concurrency_limited).');
    for (const reason of ['rate_limited', 'concurrency_limited']) out.sample('wmproxy_http_limited_requests_total', { reason }, (traffic.limited ?? []).find(([key]) => key === reason)?.[1] ?? 0);
    out.family('wmproxy_http_response_bytes_total', 'counter', 'Response bytes sent by the reverse proxy.').sample('wmproxy_http_response_bytes_total', {}, traffic.bytesSent);
    out.family('wmproxy_http_request_bytes_total', 'counter', 'Request bytes received by the reverse proxy (heads and bodies).').sample('wmproxy_http_request_bytes_total', {}, traffic.bytesReceived ?? 0);
    out.family('wmproxy_http_retries_total', 'counter', 'Upstream attempts after the first (retries to the next server).').sample('wmproxy_http_retries_total', {}, traffic.retries ?? 0);
    out.family('wmproxy_http_hedges_total', 'counter', 'Request hedges sent, by result: won (the hedge served the response) or lost.');
    out.sample('wmproxy_http_hedges_total', { result: 'won' }, traffic.hedges?.won ?? 0).sample('wmproxy_http_hedges_total', { result: 'lost' }, traffic.hedges?.lost ?? 0);
    if (traffic.traceSpans) {
      out.family('wmproxy_trace_spans_total', 'counter', 'Spans handed to the OTLP exporter, by result: exported, dropped (queue full) or failed (the collector did not take them).');
      for (const result of ['exported', 'dropped', 'failed'] as const) out.sample('wmproxy_trace_spans_total', { result }, traffic.traceSpans[result]);
    }
    out.family('wmproxy_http_request_duration_seconds', 'histogram', 'Time from the request head to the end of the response.');
    Histogram.from(traffic.requestDuration).render(out.lines, 'wmproxy_http_request_duration_seconds', '');
    out.family('wmproxy_upstream_response_duration_seconds', 'histogram', 'Time spent on upstream servers, per proxied request.');
    Histogram.from(traffic.upstreamDuration).render(out.lines, 'wmproxy_upstream_response_duration_seconds', '');
    if (this.supervisor) {
      out.family('wmproxy_worker_restarts_total', 'counter', 'Worker processes restarted after they exited.');
      for (const worker of this.supervisor.workers()) out.sample('wmproxy_worker_restarts_total', { worker: worker.index }, worker.restarts);
    }
    const upstreams = this.upstreams();
    out.family('wmproxy_upstream_healthy', 'gauge', '1 when the server is available for traffic (healthy or not yet checked, not ejected).');
    for (const group of upstreams) for (const server of group.servers) out.sample('wmproxy_upstream_healthy', { upstream: group.name, server: server.address, state: server.state }, server.available ? 1 : 0);
    out.family('wmproxy_upstream_ejections_total', 'counter', 'Times each upstream server was ejected, by detector: consecutive_failures (outlier detection), stall (lost request hedges), connect_stall (lost connect races).');
    for (const group of upstreams) {
      for (const server of group.servers) {
        for (const reason of EJECT_KINDS) out.sample('wmproxy_upstream_ejections_total', { upstream: group.name, server: server.address, reason }, m.ejectionCount(server.address, reason));
      }
    }
    out.family('wmproxy_upstream_ejected', 'gauge', '1 while the server is ejected by the detector named in reason, else 0.');
    for (const group of upstreams) {
      for (const server of group.servers) {
        for (const reason of EJECT_KINDS) out.sample('wmproxy_upstream_ejected', { upstream: group.name, server: server.address, reason }, server.ejected && server.ejectKind === reason ? 1 : 0);
      }
    }
    out.family('wmproxy_upstream_requests_total', 'counter', 'Requests sent to each upstream server.');
    for (const group of upstreams) for (const server of group.servers) out.sample('wmproxy_upstream_requests_total', { upstream: group.name, server: server.address }, server.requests);
    out.family('wmproxy_upstream_failures_total', 'counter', 'Failed requests to each upstream server.');
    for (const group of upstreams) for (const server of group.servers) out.sample('wmproxy_upstream_failures_total', { upstream: group.name, server: server.address }, server.requestFailures);
    out.family('wmproxy_upstream_server_response_duration_seconds', 'histogram', 'Per server: time from the first upstream attempt to the end of the response, of the requests it answered (configured servers only).');
    const serverDuration = new Map(traffic.serverDuration ?? []);
    for (const group of upstreams) {
      for (const server of group.servers) {
        const data = serverDuration.get(`${group.name}\u0000${server.address}`);
        if (data) Histogram.from(data).render(out.lines, 'wmproxy_upstream_server_response_duration_seconds', labels({ upstream: group.name, server: server.address }));
      }
    }
    out.family('wmproxy_upstream_active_requests', 'gauge', 'Requests in flight to each upstream server.');
    for (const group of upstreams) for (const server of group.servers) out.sample('wmproxy_upstream_active_requests', { upstream: group.name, server: server.address }, server.activeRequests);
    const certificates = this.certificateRows();
    out.family('wmproxy_certificate_expiry_timestamp_seconds', 'gauge', 'When the managed (ACME) certificate of each name expires, in Unix seconds.');
    for (const row of certificates) {
      if (row.notAfter) for (const name of row.names) out.sample('wmproxy_certificate_expiry_timestamp_seconds', { name }, Date.parse(row.notAfter) / 1000);
    }
    out.family('wmproxy_certificate_order_failures', 'gauge', 'Failed certificate orders in a row for each name (0 after a success).');
    for (const row of certificates) for (const name of row.names) out.sample('wmproxy_certificate_order_failures', { name, status: row.status }, row.failures);
    out.family('wmproxy_health_transitions_total', 'counter', 'Health state changes by target and new state.');
    for (const [key, count] of m.transitions) {
      const [target, to] = key.split('\u0000');
      out.sample('wmproxy_health_transitions_total', { target: target!, to: to! }, count);
    }
    out.family('wmproxy_health_probes_total', 'counter', 'Active health probes by result.');
    for (const [result, count] of m.probes) out.sample('wmproxy_health_probes_total', { result }, count);
    out.family('wmproxy_health_probe_duration_seconds', 'histogram', 'Latency of active health probes.');
    m.probeLatency.render(out.lines, 'wmproxy_health_probe_duration_seconds', '');
    this.tunnel?.renderMetrics(out);
    return out.text();
  }
}

/** A worker's event names its detector; anything else (an older worker) counts as outlier detection: the label stays bounded. */
function ejectKindOf(kind: unknown): EjectKind {
  return EJECT_KINDS.includes(kind as EjectKind) ? (kind as EjectKind) : 'consecutive_failures';
}

/** While ejected, why (outlier or stall) and, when it says more, what the last active check saw (ECONNREFUSED, a timeout). */
function rowReason(ejectReason: string | undefined, checkReason: string | undefined): string | undefined {
  if (ejectReason === undefined) return checkReason;
  return checkReason !== undefined && checkReason !== ejectReason ? `${ejectReason}; last check: ${checkReason}` : ejectReason;
}

function hasTunnel(config: WmproxyConfig): boolean {
  return config.tunnel.server !== undefined || config.tunnel.clients.length > 0;
}
