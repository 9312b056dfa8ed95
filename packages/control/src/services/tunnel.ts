/**
 * The intranet tunnel of a `wmproxy run` instance: the `[tunnel.server]` and
 * every `[[tunnel.client]]`. Runs in the primary process only (one session per
 * client; its public ports are not shared between workers). Reloads keep what
 * did not change: a server whose listener and TLS settings are unchanged
 * takes new credentials and allow lists in place; a client with the same
 * server, token and TLS settings swaps its mappings on its live session.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { isValidHostname, type Logger } from '@wmproxy/core-net';
import type { TunnelClientConfig, TunnelConfig, TunnelServerConfig } from '@wmproxy/config';
import { TunnelClient, TunnelServer, TunnelWeb, type MappingSnapshot, type TunnelClientOptions } from '@wmproxy/tunnel';
import type { Exposition } from '../metrics.js';
import type { TunnelStatus } from '../types.js';
import type { AcmeService } from './acme.js';

/** What `https_tls = "auto"` needs of the instance's automatic HTTPS. */
export type TunnelCertificates = Pick<AcmeService, 'tls' | 'ahead' | 'setTunnelNames'>;

/** The names to certify for http mappings served now: exact DNS names (a wildcard needs DNS-01) of mappings with a connected client. */
export function tunnelCertificateNames(mappings: readonly MappingSnapshot[]): string[] {
  const names = new Set<string>();
  for (const entry of mappings) {
    if (entry.mapping.kind !== 'http' || entry.clients.length === 0) continue;
    for (const domain of entry.mapping.domains ?? []) {
      const name = domain.toLowerCase();
      // Public CAs refuse underscores in DNS names (CA/Browser Forum): ordering one would only fail.
      if (!name.includes('*') && !name.includes('_') && name.includes('.') && isIP(name) === 0 && isValidHostname(name)) names.add(name);
    }
  }
  return [...names];
}

function serverKey(config: TunnelServerConfig): string {
  // dataPool is announced at each client's handshake: a change restarts the server, as the heartbeat does (dataMaxBusy with it).
  return JSON.stringify([config.listen, config.tls, config.stateDir, config.publicHost, config.heartbeatMs, config.dataPool, config.dataMaxBusy, config.dataPromoteBytes, config.maxHandshakes, config.maxHandshakesPerIp]);
}

function clientKey(config: TunnelClientConfig): string {
  return JSON.stringify([config.server, config.token, config.name, config.tls, config.proxy, config.openProxy]);
}

async function serverTls(config: TunnelServerConfig): Promise<false | undefined | { cert: string; key: string; clientCa?: string }> {
  if (config.tls === false) return false;
  if (config.tls === 'self-signed') return undefined;
  return {
    cert: await readFile(config.tls.cert, 'utf8'),
    key: await readFile(config.tls.key, 'utf8'),
    ...(config.tls.clientCa ? { clientCa: await readFile(config.tls.clientCa, 'utf8') } : {}),
  };
}

async function clientTls(config: TunnelClientConfig): Promise<TunnelClientOptions['tls']> {
  if (config.tls === false) return false;
  const tls = config.tls;
  return {
    ...(tls.ca ? { ca: await readFile(tls.ca, 'utf8') } : {}),
    ...(tls.fingerprint ? { fingerprint: tls.fingerprint } : {}),
    ...(tls.servername ? { servername: tls.servername } : {}),
    ...(tls.cert && tls.key ? { cert: await readFile(tls.cert, 'utf8'), key: await readFile(tls.key, 'utf8') } : {}),
  };
}

export class TunnelService {
  private server: { instance: TunnelServer; key: string; config: TunnelServerConfig; web: TunnelWeb | undefined; webKey: string } | undefined;
  private readonly clients = new Map<string, { instance: TunnelClient; key: string }>();

  /** Feeds the http mappings' domains to automatic HTTPS while `https_tls = "auto"`. */
  private readonly onMappings = (mappings: MappingSnapshot[]): void => {
    if (this.server?.config.httpsAuto) this.acme?.setTunnelNames(tunnelCertificateNames(mappings));
  };

  /** `acme`: automatic HTTPS of http mappings on the HTTPS port (`https_tls = "auto"`). */
  constructor(
    private readonly loggerFor: (service: string) => Logger,
    private readonly acme?: TunnelCertificates,
  ) {}

  static async start(config: TunnelConfig, loggerFor: (service: string) => Logger, acme?: TunnelCertificates): Promise<TunnelService> {
    const service = new TunnelService(loggerFor, acme);
    await service.apply(config);
    return service;
  }

  /** Bring the running tunnel to `config`; returns what changed, in words. */
  async apply(config: TunnelConfig): Promise<string[]> {
    const changes: string[] = [];
    const current = this.server;
    if (config.server) {
      const key = serverKey(config.server);
      if (current && current.key === key) {
        current.instance.reload(serverOptions(config.server));
        current.config = config.server;
        const webKey = webConfigKey(config.server);
        if (webKey !== current.webKey) {
          await current.web?.close();
          current.web = undefined;
          current.webKey = webKey;
          current.web = await startWeb(current.instance, config.server, this.loggerFor('tunnel-web'), this.acme);
          this.onMappings(current.instance.mappings());
          changes.push(`tunnel web front ${current.web ? `on ${[...current.web.httpAddresses, ...current.web.httpsAddresses].join(', ')}` : 'stopped'}`);
        }
      } else {
        // Bind the new one first when the address changed; the same address needs the old one gone.
        if (current) {
          await current.web?.close();
          await current.instance.stop({ deadlineMs: current.config.drainMs });
        }
        const instance = new TunnelServer({
          ...serverOptions(config.server),
          listen: config.server.listen,
          tls: await serverTls(config.server),
          stateDir: config.server.stateDir,
          publicHost: config.server.publicHost,
          heartbeatMs: config.server.heartbeatMs,
          dataPool: config.server.dataPool,
          dataMaxBusy: config.server.dataMaxBusy,
          dataPromoteBytes: config.server.dataPromoteBytes,
          maxHandshakes: config.server.maxHandshakes,
          maxHandshakesPerIp: config.server.maxHandshakesPerIp,
          logger: this.loggerFor('tunnel-server'),
        });
        await instance.start();
        let web: TunnelWeb | undefined;
        try {
          web = await startWeb(instance, config.server, this.loggerFor('tunnel-web'), this.acme);
        } catch (error) {
          await instance.stop({ deadlineMs: 0 });
          throw error;
        }
        current?.instance.off('mappings-changed', this.onMappings);
        instance.on('mappings-changed', this.onMappings);
        this.server = { instance, key, config: config.server, web, webKey: webConfigKey(config.server) };
        changes.push(`tunnel server ${current ? 'restarted' : 'started'} on ${instance.address}${instance.fingerprint ? ` (certificate ${instance.fingerprint})` : ''}`);
      }
    } else if (current) {
      this.server = undefined;
      current.instance.off('mappings-changed', this.onMappings);
      await current.web?.close();
      await current.instance.stop({ deadlineMs: current.config.drainMs });
      changes.push('tunnel server stopped');
    }
    const wanted = new Set(config.clients.map((client) => client.service));
    for (const [name, running] of [...this.clients]) {
      if (!wanted.has(name)) {
        this.clients.delete(name);
        await running.instance.stop({ deadlineMs: 10_000 });
        changes.push(`${name} stopped`);
      }
    }
    for (const client of config.clients) {
      const key = clientKey(client);
      const running = this.clients.get(client.service);
      if (running && running.key === key) {
        await running.instance.reload(client.mappings);
        changes.push(`${client.service}: mappings reloaded`);
        continue;
      }
      if (running) await running.instance.stop({ deadlineMs: 10_000 });
      const instance = new TunnelClient({
        server: client.server,
        token: client.token,
        name: client.name,
        tls: await clientTls(client),
        mappings: client.mappings,
        ...(client.proxy ? { proxy: { ...(client.proxy.users ? { users: client.proxy.users } : {}), ...(client.proxy.allow ? { clientPolicy: { allow: client.proxy.allow } } : {}) } } : {}),
        openProxy: client.openProxy,
        logger: this.loggerFor(client.service),
      }).start();
      this.clients.set(client.service, { instance, key });
      changes.push(`${client.service} ${running ? 'restarted' : 'started'} towards ${client.server}`);
    }
    return changes;
  }

  status(): TunnelStatus {
    const server = this.server?.instance;
    return {
      ...(server
        ? {
            server: {
              address: server.address,
              fingerprint: server.fingerprint,
              clients: server.clients(),
              mappings: server.mappings(),
              http: this.server?.web?.httpAddresses ?? [],
              https: this.server?.web?.httpsAddresses ?? [],
              guard: server.guardStats(),
            },
          }
        : {}),
      clients: [...this.clients].map(([service, { instance }]) => ({ service, ...instance.status() })),
    };
  }

  /**
   * The tunnel's families in /metrics. Labels stay bounded: `client` is a
   * credential name of the server's configuration, `mapping` a name from the
   * clients' configurations (authenticated, at most 256 per client), and
   * `service` a `[[tunnel.client]]` of this instance.
   */
  renderMetrics(out: Exposition): void {
    const server = this.server?.instance;
    const totals = server?.totals() ?? [];
    out.family('wmproxy_tunnel_clients', 'gauge', 'Tunnel client sessions connected to this server, by credential.');
    for (const row of totals) out.sample('wmproxy_tunnel_clients', { client: row.name }, row.connected);
    out.family('wmproxy_tunnel_client_rtt_seconds', 'gauge', 'Heartbeat round-trip time of each connected credential (its lowest session).');
    for (const row of totals) if (row.rttMs !== undefined) out.sample('wmproxy_tunnel_client_rtt_seconds', { client: row.name }, row.rttMs / 1000);
    out.family('wmproxy_tunnel_client_reconnects_total', 'counter', 'Sessions of each credential after its first.');
    for (const row of totals) out.sample('wmproxy_tunnel_client_reconnects_total', { client: row.name }, row.reconnects);
    out.family('wmproxy_tunnel_open_streams', 'gauge', 'Streams open now over the tunnel connections of each credential.');
    for (const row of totals) out.sample('wmproxy_tunnel_open_streams', { client: row.name }, row.openStreams);
    out.family('wmproxy_tunnel_streams_total', 'counter', 'Streams opened to each credential\'s clients (visitors, requests, health checks).');
    for (const row of totals) out.sample('wmproxy_tunnel_streams_total', { client: row.name }, row.streams);
    out.family('wmproxy_tunnel_received_bytes_total', 'counter', 'Bytes received on the tunnel connections of each credential (framing and TLS included).');
    for (const row of totals) out.sample('wmproxy_tunnel_received_bytes_total', { client: row.name }, row.bytesIn);
    out.family('wmproxy_tunnel_sent_bytes_total', 'counter', 'Bytes sent on the tunnel connections of each credential (framing and TLS included).');
    for (const row of totals) out.sample('wmproxy_tunnel_sent_bytes_total', { client: row.name }, row.bytesOut);
    out.family('wmproxy_tunnel_mapping_clients', 'gauge', 'Clients serving each mapping now (0: visitors wait or are refused).');
    for (const entry of server?.mappings() ?? []) out.sample('wmproxy_tunnel_mapping_clients', { mapping: entry.mapping.name, kind: entry.mapping.kind }, entry.clients.length);
    const guard = server?.guardStats();
    out.family('wmproxy_tunnel_pending_handshakes', 'gauge', 'Connections on the tunnel port not authenticated yet.');
    if (guard) out.sample('wmproxy_tunnel_pending_handshakes', {}, guard.pendingHandshakes);
    out.family('wmproxy_tunnel_handshakes_refused_total', 'counter', 'Connections on the tunnel port closed at accept over max_handshakes or max_handshakes_per_ip.');
    if (guard) out.sample('wmproxy_tunnel_handshakes_refused_total', {}, guard.handshakesRefused);
    out.family('wmproxy_tunnel_penalized_sources', 'gauge', 'Sources (IPv4 addresses, IPv6 /64s) in an authentication penalty now (auth_penalty).');
    if (guard) out.sample('wmproxy_tunnel_penalized_sources', {}, guard.penalizedSources);
    out.family('wmproxy_tunnel_penalty_refused_total', 'counter', 'Connections on the tunnel port closed at accept because their source was penalized.');
    if (guard) out.sample('wmproxy_tunnel_penalty_refused_total', {}, guard.penaltyRefused);
    out.family('wmproxy_tunnel_connected', 'gauge', '1 while this instance\'s tunnel client (a [[tunnel.client]]) has a session with its server.');
    for (const [service, { instance }] of this.clients) out.sample('wmproxy_tunnel_connected', { service }, instance.status().connected ? 1 : 0);
  }

  /** The running server (for engines that route http/https mappings to it). */
  get tunnelServer(): TunnelServer | undefined {
    return this.server?.instance;
  }

  async stop(deadlineMs: number): Promise<void> {
    this.server?.instance.off('mappings-changed', this.onMappings);
    await this.server?.web?.close();
    await Promise.all([this.server?.instance.stop({ deadlineMs }), ...[...this.clients.values()].map(({ instance }) => instance.stop({ deadlineMs }))]);
    this.server = undefined;
    this.clients.clear();
  }
}

function webConfigKey(config: TunnelServerConfig): string {
  return JSON.stringify([config.httpListen, config.httpsListen, config.https, config.httpsAuto, config.httpPolicy, config.httpHealth, config.maxConnections, config.maxConnectionsPerIp]);
}

/** The web front of http/https mappings, when the server has a port for them. */
async function startWeb(server: TunnelServer, config: TunnelServerConfig, logger: Logger, acme: TunnelCertificates | undefined): Promise<TunnelWeb | undefined> {
  if (config.httpListen === undefined && config.httpsListen === undefined) return undefined;
  const health = config.httpHealth;
  // Automatic HTTPS: certificates chosen at each handshake, TLS-ALPN-01 on the HTTPS port, HTTP-01 ahead of the mappings on the HTTP port.
  const auto = config.httpsAuto && acme ? { httpsTls: acme.tls(undefined), httpAhead: acme.ahead() } : {};
  return new TunnelWeb(server, {
    httpListen: config.httpListen,
    httpsListen: config.httpsListen,
    ...(config.https ? { httpsTls: { cert: await readFile(config.https.cert, 'utf8'), key: await readFile(config.https.key, 'utf8') } } : {}),
    ...auto,
    policy: config.httpPolicy,
    limits: { maxConnections: config.maxConnections, maxConnectionsPerIp: config.maxConnectionsPerIp },
    ...(health ? { health: { check: { type: 'http' as const, path: health.path }, intervalMs: health.intervalMs, timeoutMs: Math.min(health.intervalMs, 2_000), rise: health.rise, fall: health.fall } } : {}),
    logger,
  }).start();
}

function serverOptions(config: TunnelServerConfig) {
  return {
    token: config.token,
    clients: config.clients,
    allowPorts: config.allowPorts,
    allowDomains: config.allowDomains,
    visitorWaitMs: config.visitorWaitMs,
    visitorLimits: { maxConnections: config.maxConnections, maxConnectionsPerIp: config.maxConnectionsPerIp },
    authPenalty: config.authPenalty,
  };
}
