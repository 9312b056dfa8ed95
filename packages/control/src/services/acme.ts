/**
 * Automatic HTTPS of a configuration: a CertificateManager for the servers
 * with `tls = "auto"` (one certificate per server, for its `server_name`s),
 * the TLS options that serve its certificates and TLS-ALPN-01 challenges,
 * the HTTP-01 location put ahead of plain listeners, and the HTTP→HTTPS
 * redirect listener. The service object lives as long as the instance: the
 * listeners' callbacks go through it, so a new `[acme]` section (another CA,
 * another storage) swaps the manager under running listeners.
 */
import { readFileSync } from 'node:fs';
import { createSelfSignedCertificate, formatHostPort, parseAddress, type Logger, type TlsServerOptions } from '@wmproxy/core-net';
import {
  ACME_CHALLENGE_PREFIX,
  ACME_DEFAULTS,
  AcmeClientAuthority,
  CertificateManager,
  CertificateStorage,
  acmeChallengeHandler,
  httpsRedirectHandler,
  type CertificateAuthority,
  type ManagedCertificate,
} from '@wmproxy/acme';
import type { WmproxyConfig } from '@wmproxy/config';
import { ReverseProxy, type ListenerSpec, type LocationSpec } from '@wmproxy/reverse';

/** Served for a name until its certificate is issued: clients see an untrusted certificate rather than a failed handshake. */
let placeholder: { cert: string; key: string } | undefined;
function placeholderCertificate(): { cert: string; key: string } {
  placeholder ??= createSelfSignedCertificate({ commonName: 'wmproxy certificate pending', altNames: ['pending.wmproxy.invalid'] });
  return placeholder;
}

/** One set of names per server with `tls = "auto"`. */
export function acmeNameSets(config: WmproxyConfig): string[][] {
  return config.servers.filter((server) => server.tls === 'auto').map((server) => server.serverNames);
}

/** What the storage holds for these sets of names (a primary's view: its workers run the managers). */
export async function storedCertificates(directory: string, sets: string[][]): Promise<ManagedCertificate[]> {
  const storage = new CertificateStorage(directory);
  return Promise.all(
    sets.map(async (names) => {
      const stored = await storage.load(names).catch(() => undefined);
      return {
        names,
        status: stored ? ('valid' as const) : ('obtaining' as const),
        issuer: stored?.issuer,
        notBefore: stored?.notBefore.toISOString(),
        notAfter: stored?.notAfter.toISOString(),
        nextRenewal: undefined,
        failures: 0,
        lastError: undefined,
      };
    }),
  );
}

export type AuthorityFactory = (config: NonNullable<WmproxyConfig['acme']>, accountKey: string) => Promise<CertificateAuthority>;

const acmeClientAuthority: AuthorityFactory = (acme, accountKey) =>
  AcmeClientAuthority.create({ directory: acme.directory, email: acme.email, caRoot: acme.caRoot ? readFileSync(acme.caRoot, 'utf8') : undefined, accountKey });

export interface AcmeServiceOptions {
  /** The CA (tests pass an in-process one; the default is acme-client with `[acme]`'s directory). */
  authority?: AuthorityFactory;
  /** How long a tunnel domain stays managed after its last client left (default `ACME_DEFAULTS.tunnelLingerMs`). */
  tunnelLingerMs?: number;
}

export class AcmeService {
  private manager: CertificateManager | undefined;
  private signature = '';
  /** The `[[server]]` sets of this process (none in a primary whose workers serve them). */
  private serverSets: string[][] = [];
  /** Tunnel domains managed, each with its removal timer while no client serves it. */
  private readonly tunnel = new Map<string, ReturnType<typeof setTimeout> | undefined>();
  private syncing: Promise<void> = Promise.resolve();
  /** Whether the last tunnel name set was cut at `tunnelNamesMax`. */
  private capped = false;
  /** The tunnel's HTTP→HTTPS redirect listener (see `applyTunnelRedirect`). */
  private redirect: { proxy: ReverseProxy; key: string } | undefined;
  private readonly authority: AuthorityFactory;
  private readonly tunnelLingerMs: number;

  constructor(
    private readonly logger: Logger,
    options: AcmeServiceOptions = {},
  ) {
    this.authority = options.authority ?? acmeClientAuthority;
    this.tunnelLingerMs = options.tunnelLingerMs ?? ACME_DEFAULTS.tunnelLingerMs;
  }

  /**
   * Start or follow a configuration: the same `[acme]` keeps the manager
   * (names added and removed), another one replaces it. `servers: false`: a
   * primary whose workers serve the `[[server]]`s (it manages the tunnel's
   * names only).
   */
  async apply(config: WmproxyConfig, options: { servers: boolean } = { servers: true }): Promise<void> {
    const acme = config.acme;
    if (!acme) return this.stop();
    this.serverSets = options.servers ? acmeNameSets(config) : [];
    if (!config.tunnel.server?.httpsAuto) this.clearTunnel();
    const signature = JSON.stringify(acme);
    if (!this.manager || signature !== this.signature) {
      const storage = new CertificateStorage(acme.storage);
      await storage.init();
      const authority = await this.authority(acme, await storage.accountKey(acme.directory));
      const manager = new CertificateManager({
        authority,
        storage: acme.storage,
        challenges: acme.challenges,
        renewal: acme.renewBeforeMs !== undefined ? { renewBeforeMs: acme.renewBeforeMs } : {},
        orderTimeoutMs: acme.orderTimeoutMs,
        logger: this.logger,
      });
      await manager.manage(this.sets());
      this.manager?.close();
      this.manager = manager;
      this.signature = signature;
      return;
    }
    await this.manager.manage(this.sets());
  }

  /**
   * The exact domains the tunnel's http mappings serve now (mappings with a
   * connected client). New ones are ordered at once; one whose clients all
   * left is dropped after `tunnelLingerMs`, so a client that reconnects
   * (or flaps) does not restart anything, and an order under way finishes.
   */
  setTunnelNames(names: Iterable<string>): void {
    const wanted = new Set<string>();
    let capped = false;
    for (const name of names) {
      if (wanted.size >= ACME_DEFAULTS.tunnelNamesMax) {
        capped = true;
        break;
      }
      wanted.add(name);
    }
    // Said once each time the cap is reached, not at every client event.
    if (capped && !this.capped) this.logger.warn(`tunnel: more than ${ACME_DEFAULTS.tunnelNamesMax} domains want certificates; the others are served with the placeholder certificate`);
    this.capped = capped;
    let added = false;
    for (const name of wanted) {
      const timer = this.tunnel.get(name);
      if (timer) clearTimeout(timer);
      if (!this.tunnel.has(name)) added = true;
      this.tunnel.set(name, undefined);
    }
    for (const [name, timer] of this.tunnel) {
      if (wanted.has(name) || timer) continue;
      const removal = setTimeout(() => {
        this.tunnel.delete(name);
        this.sync();
      }, this.tunnelLingerMs);
      removal.unref?.();
      this.tunnel.set(name, removal);
    }
    if (added) this.sync();
  }

  /** The tunnel domains managed now (lingering ones included). */
  tunnelNames(): string[] {
    return [...this.tunnel.keys()];
  }

  private clearTunnel(): void {
    for (const timer of this.tunnel.values()) if (timer) clearTimeout(timer);
    this.tunnel.clear();
  }

  /** One certificate per `[[server]]`, and one per tunnel domain no server already covers. */
  private sets(): string[][] {
    const covered = new Set(this.serverSets.flat());
    return [...this.serverSets, ...[...this.tunnel.keys()].filter((name) => !covered.has(name)).map((name) => [name])];
  }

  private sync(): void {
    this.syncing = this.syncing
      .then(() => this.manager?.manage(this.sets()))
      .catch((error: unknown) => this.logger.error('certificates of tunnel domains', { error: (error as Error).message }));
  }

  stop(): void {
    this.clearTunnel();
    this.manager?.close();
    this.manager = undefined;
    this.signature = '';
  }

  list(): ManagedCertificate[] {
    return this.manager?.list() ?? [];
  }

  /** For tests and `wmproxy certs`: resolves when these names have a certificate. */
  issued(names: readonly string[], fresh = false): Promise<void> {
    return this.manager ? this.manager.issued(names, fresh) : Promise.reject(new Error('automatic HTTPS is not configured'));
  }

  renewNow(names: readonly string[]): void {
    this.manager?.renewNow(names);
  }

  /** TLS options of a listener with `tls = "auto"` servers (`sni`: certificates of its servers with files). */
  tls(sni: TlsServerOptions['sni']): TlsServerOptions {
    const fallback = placeholderCertificate();
    return {
      cert: fallback.cert,
      key: fallback.key,
      ...(sni && Object.keys(sni).length > 0 ? { sni } : {}),
      select: (name) => this.manager?.get(name),
      acmeTlsAlpn: (name) => this.manager?.challenges.tlsAlpnAnswer(name),
    };
  }

  /** The HTTP-01 location, ahead of every location of plain listeners. */
  ahead(): LocationSpec[] {
    const handler = acmeChallengeHandler({ httpAnswer: async (path) => this.manager?.challenges.httpAnswer(path) });
    return [{ path: ACME_CHALLENGE_PREFIX, handler }];
  }

  /**
   * The redirect listener on `http_port` at the hosts the auto servers listen
   * on, when `redirect` is on and no configured service uses that port.
   */
  redirectListener(config: WmproxyConfig): ListenerSpec | undefined {
    const acme = config.acme;
    const autos = config.servers.filter((server) => server.tls === 'auto');
    if (!acme?.redirect || autos.length === 0) return undefined;
    if (portUsed(config, acme.httpPort)) return undefined;
    const tlsAddress = parseAddress(autos[0]!.listen[0]!);
    const hosts = [...new Set(autos.flatMap((server) => server.listen.map((text) => {
      const address = parseAddress(text);
      return address.wildcard ? `:${acme.httpPort}` : formatHostPort(address.host, acme.httpPort);
    })))];
    return {
      listen: hosts,
      vhosts: [{ locations: [{ path: '/', handler: httpsRedirectHandler(tlsAddress.port) }] }],
      ahead: this.ahead(),
    };
  }

  /**
   * The same for the tunnel's `https_tls = "auto"` when it has no
   * `http_listen` (which would serve the mappings over HTTP and answer
   * HTTP-01 itself) and no server redirect takes the port: `http_port` at
   * the host of `https_listen`, redirecting there.
   */
  tunnelRedirectListener(config: WmproxyConfig): ListenerSpec | undefined {
    const acme = config.acme;
    const tunnel = config.tunnel.server;
    if (!acme?.redirect || !tunnel?.httpsAuto || tunnel.httpsListen === undefined || tunnel.httpListen !== undefined) return undefined;
    if (this.redirectListener(config) || portUsed(config, acme.httpPort)) return undefined;
    const https = parseAddress(tunnel.httpsListen);
    return {
      listen: https.wildcard ? `:${acme.httpPort}` : formatHostPort(https.host, acme.httpPort),
      vhosts: [{ locations: [{ path: '/', handler: httpsRedirectHandler(https.port) }] }],
      ahead: this.ahead(),
    };
  }

  /** Run the tunnel's redirect listener as `config` wants it (in the process that runs the tunnel); returns what changed. */
  async applyTunnelRedirect(config: WmproxyConfig): Promise<string | undefined> {
    const spec = this.tunnelRedirectListener(config);
    const key = spec ? JSON.stringify([spec.listen, config.tunnel.server?.httpsListen]) : '';
    if ((this.redirect?.key ?? '') === key) return undefined;
    await this.stopTunnelRedirect();
    if (!spec) return 'tunnel HTTP→HTTPS redirect stopped';
    const proxy = new ReverseProxy({ servers: [spec], upstreams: [], logger: this.logger });
    await proxy.start();
    this.redirect = { proxy, key };
    return `tunnel HTTP→HTTPS redirect (and HTTP-01) on ${proxy.addresses.join(', ')}`;
  }

  async stopTunnelRedirect(): Promise<void> {
    const redirect = this.redirect;
    this.redirect = undefined;
    await redirect?.proxy.close();
  }
}

/** Whether a configured listener (server, proxy, TCP stream, control API, tunnel) uses this port. */
function portUsed(config: WmproxyConfig, port: number): boolean {
  const tunnel = config.tunnel.server;
  const used = [
    ...config.servers.flatMap((server) => server.listen),
    ...config.proxies.flatMap((proxy) => proxy.listen),
    ...config.streams.filter((stream) => stream.protocol === 'tcp').flatMap((stream) => stream.listen),
    ...(config.control.enabled ? [config.control.listen] : []),
    ...(tunnel ? [tunnel.listen, tunnel.httpListen, tunnel.httpsListen].filter((address): address is string => address !== undefined) : []),
  ];
  return used.some((address) => parseAddress(address).port === port);
}
