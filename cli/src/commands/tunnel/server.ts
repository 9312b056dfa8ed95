import { Flags } from '@oclif/core';
import type { LogLevel } from '@wmproxy/core-net';
import type { PolicyName } from '@wmproxy/reverse';
import { WmproxyCommand } from '../../base.js';
import { defaultStateDir, readPem } from './shared.js';

export default class TunnelServerCommand extends WmproxyCommand {
  static override summary = 'Run the public side of an intranet tunnel: clients behind NAT dial in and expose their services here.';
  static override description = [
    'Listens for tunnel clients on 127.0.0.1:7000 unless --listen says otherwise; public ports of tcp, udp and proxy',
    'mappings bind on the same host (or --public-host). TLS is on by default: without --cert/--key the server makes a',
    'self-signed ECDSA certificate at first start, keeps it in --state-dir, and prints its SHA-256 fingerprint for',
    'clients to pin (--fingerprint). Clients authenticate by challenge/response on --token (never sent in clear).',
    'The token may also come from WMPROXY_TUNNEL_TOKEN. SIGINT/SIGTERM send GOAWAY and let streams finish for up to --drain.',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> tunnel server --listen 0.0.0.0:7000 --token s3cret --allow-ports 15000-15999',
    '<%= config.bin %> tunnel server --token s3cret --cert tunnel.pem --key tunnel.key --client-ca clients-ca.pem',
  ];
  static override flags = {
    listen: Flags.string({ char: 'l', description: 'address tunnel clients connect to', default: '127.0.0.1:7000' }),
    token: Flags.string({ char: 't', description: 'shared secret of the clients', env: 'WMPROXY_TUNNEL_TOKEN', required: true }),
    cert: Flags.string({ description: 'TLS certificate (PEM) clients see; default: a self-signed one kept in --state-dir' }),
    key: Flags.string({ description: 'private key (PEM) of --cert' }),
    'client-ca': Flags.string({ description: 'require client certificates signed by this CA (PEM): mutual TLS' }),
    'state-dir': Flags.string({ description: 'where the self-signed certificate is kept', default: defaultStateDir() }),
    plain: Flags.boolean({ description: 'no TLS: plain TCP (only behind another TLS layer, or on loopback)', default: false }),
    'public-host': Flags.string({ description: 'IP public mapping ports bind on (default: the host of --listen)' }),
    'allow-ports': Flags.string({ description: 'public ports clients may ask for: 15000-15999,18090 (repeatable; default any)', multiple: true }),
    'allow-domains': Flags.string({ description: 'domains clients may serve over http/https: app.example.com, *.example.com (repeatable; default any)', multiple: true }),
    'visitor-wait': Flags.integer({ description: 'milliseconds a visitor waits for an absent client before being closed', default: 0, min: 0 }),
    heartbeat: Flags.integer({ description: 'milliseconds between pings; a peer silent for two is dropped', default: 10_000, min: 100 }),
    'data-pool': Flags.integer({ description: `idle data connections each client keeps open; a bulk visitor moves to one (raw bytes, no multiplexing), see --data-promote-bytes (0: always shared; default: the tunnel server's DEFAULT_DATA_POOL, see its README)`, min: 0, max: 256 }),
    'data-max-busy': Flags.integer({ description: 'most visitors one client carries on data connections at once; beyond, they ride the shared connection (default: the tunnel server\'s DEFAULT_DATA_MAX_BUSY)', min: 0 }),
    'max-handshakes': Flags.integer({ description: 'most connections on the tunnel port not yet authenticated; beyond, new ones are closed at once (0: no limit; default: the tunnel server\'s DEFAULT_MAX_HANDSHAKES)', min: 0 }),
    'max-handshakes-per-ip': Flags.integer({ description: 'the same from one IP address (0: no limit; default: DEFAULT_MAX_HANDSHAKES_PER_IP)', min: 0 }),
    'auth-penalty': Flags.string({ description: 'a source failing its login more than twice is refused for FIRST, doubling with each further failure up to MAX: FIRST,MAX (durations, default 30s,10m), or off' }),
    'auth-penalty-exempt': Flags.string({ description: 'address or CIDR range never penalized (repeatable; default none)', multiple: true }),
    'data-promote-bytes': Flags.integer({ description: 'with a pool, every visitor starts on the shared connection and moves to a data connection once it carried this many bytes (0: a visitor takes one at open; default: the tunnel server\'s DEFAULT_DATA_PROMOTE_BYTES)', min: 0 }),
    drain: Flags.integer({ description: 'milliseconds open streams get to finish on shutdown', default: 10_000, min: 0 }),
    'http-listen': Flags.string({ description: 'serve http mappings here, by Host and path, through the reverse proxy engine (the clients of one mapping are a balanced, health-checked group)' }),
    'https-listen': Flags.string({ description: 'serve https mappings here by SNI passthrough (and http mappings over TLS with --https-cert)' }),
    'https-cert': Flags.string({ description: 'certificate (PEM) for http mappings served on --https-listen (TLS terminated here)' }),
    'https-key': Flags.string({ description: 'private key (PEM) of --https-cert' }),
    policy: Flags.string({ description: 'balancing among the clients of one http mapping', default: 'round_robin', options: ['round_robin', 'least_conn', 'random_two', 'ip_hash', 'hash', 'first'] }),
    'health-path': Flags.string({ description: 'actively check each client\'s local service of http mappings with GET PATH, through its tunnel' }),
    'health-interval': Flags.string({ description: 'time between those checks', default: '2s' }),
    rise: Flags.integer({ description: 'passing checks that bring a client back', default: 2, min: 1 }),
    fall: Flags.integer({ description: 'failing checks that take a client out', default: 3, min: 1 }),
    'max-connections': Flags.integer({ description: 'most visitor connections open at once on each public port (web and tcp/proxy mappings; 0: no limit)', default: 0, min: 0 }),
    'max-connections-per-ip': Flags.integer({ description: 'most visitor connections open at once from one IP address on each public port (0: no limit)', default: 0, min: 0 }),
    'log-level': Flags.string({ description: 'debug, info, warn, error or silent', default: 'info', options: ['debug', 'info', 'warn', 'error', 'silent'] }),
    'log-json': Flags.boolean({ description: 'log one JSON object per line', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(TunnelServerCommand);
    const { Logger } = await import('@wmproxy/core-net');
    const { TunnelServer, TunnelWeb, parsePortRanges } = await import('@wmproxy/tunnel');
    const { parseDuration } = await import('@wmproxy/health');
    if ((flags['https-cert'] === undefined) !== (flags['https-key'] === undefined)) return this.usageError('--https-cert and --https-key go together');
    if (flags['https-cert'] !== undefined && flags['https-listen'] === undefined) return this.usageError('--https-cert needs --https-listen');
    let healthIntervalMs: number;
    try {
      healthIntervalMs = parseDuration(flags['health-interval']);
    } catch (error) {
      return this.usageError(`--health-interval: ${(error as Error).message}`);
    }
    if ((flags.cert === undefined) !== (flags.key === undefined)) return this.usageError('--cert and --key go together');
    if (flags.plain && (flags.cert || flags['client-ca'])) return this.usageError('--plain cannot be combined with --cert or --client-ca');
    let allowPorts;
    try {
      allowPorts = flags['allow-ports'] ? flags['allow-ports'].flatMap((text) => parsePortRanges(text)) : undefined;
    } catch (error) {
      return this.usageError(`--allow-ports: ${(error as Error).message}`);
    }
    let authPenalty;
    try {
      authPenalty = authPenaltyOptions(flags['auth-penalty'], flags['auth-penalty-exempt'], parseDuration);
    } catch (error) {
      return this.usageError(`--auth-penalty: ${(error as Error).message}`);
    }
    const logger = new Logger({ level: flags['log-level'] as LogLevel, json: flags['log-json'], fields: { service: 'tunnel-server' } });
    let server;
    const limits = { maxConnections: flags['max-connections'], maxConnectionsPerIp: flags['max-connections-per-ip'] };
    try {
      const tls = flags.plain
        ? false
        : flags.cert
          ? { cert: await readPem(flags.cert), key: await readPem(flags.key!), ...(flags['client-ca'] ? { clientCa: await readPem(flags['client-ca']) } : {}) }
          : undefined;
      server = new TunnelServer({
        listen: flags.listen,
        token: flags.token,
        tls,
        stateDir: flags['state-dir'],
        publicHost: flags['public-host'],
        allowPorts,
        allowDomains: flags['allow-domains'],
        visitorWaitMs: flags['visitor-wait'],
        heartbeatMs: flags.heartbeat,
        dataPool: flags['data-pool'],
        dataMaxBusy: flags['data-max-busy'],
        maxHandshakes: flags['max-handshakes'],
        maxHandshakesPerIp: flags['max-handshakes-per-ip'],
        authPenalty,
        dataPromoteBytes: flags['data-promote-bytes'],
        visitorLimits: limits,
        logger,
      });
    } catch (error) {
      return this.usageError((error as Error).message);
    }
    let web: InstanceType<typeof TunnelWeb> | undefined;
    const stop = async (signal: string): Promise<void> => {
      logger.info('shutting down', { signal, clients: server.clients().length });
      await web?.close();
      await server.stop({ deadlineMs: flags.drain });
      logger.info('stopped');
      process.exit(0);
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
    try {
      await server.start();
      if (flags['http-listen'] !== undefined || flags['https-listen'] !== undefined) {
        web = await new TunnelWeb(server, {
          httpListen: flags['http-listen'],
          httpsListen: flags['https-listen'],
          ...(flags['https-cert'] ? { httpsTls: { cert: await readPem(flags['https-cert']), key: await readPem(flags['https-key']!) } } : {}),
          policy: flags.policy as PolicyName,
          limits,
          ...(flags['health-path']
            ? { health: { check: { type: 'http' as const, path: flags['health-path'] }, intervalMs: healthIntervalMs, timeoutMs: Math.min(healthIntervalMs, 2_000), rise: flags.rise, fall: flags.fall } }
            : {}),
          logger,
        }).start();
        for (const address of web.httpAddresses) process.stdout.write(`http mappings served on ${address}\n`);
        for (const address of web.httpsAddresses) process.stdout.write(`https mappings served on ${address}\n`);
      }
    } catch (error) {
      logger.error('cannot start the tunnel server', { error: (error as Error).message });
      await server.stop({ deadlineMs: 0 });
      return this.exit(1);
    }
    if (server.fingerprint) {
      process.stdout.write(`tunnel server certificate fingerprint: ${server.fingerprint}\n`);
      process.stdout.write(`clients: wmproxy tunnel client --server HOST:${server.port} --token ... --fingerprint ${server.fingerprint} --map ...\n`);
    }
    await new Promise<never>(() => {});
  }
}

/** `--auth-penalty FIRST,MAX|off` and `--auth-penalty-exempt` as core-net's SourcePenaltyOptions (absent: its defaults). */
function authPenaltyOptions(text: string | undefined, exempt: string[] | undefined, parseDuration: (text: string) => number): { enabled?: boolean; firstMs?: number; maxMs?: number; exempt?: string[] } {
  const out: { enabled?: boolean; firstMs?: number; maxMs?: number; exempt?: string[] } = {};
  if (exempt !== undefined) out.exempt = exempt;
  if (text === undefined) return out;
  if (text === 'off') return { ...out, enabled: false };
  const parts = text.split(',');
  if (parts.length !== 2) throw new RangeError(`"${text}" is not FIRST,MAX (such as 30s,10m) or off`);
  out.firstMs = parseDuration(parts[0]!.trim());
  out.maxMs = parseDuration(parts[1]!.trim());
  if (out.maxMs < out.firstMs) throw new RangeError(`MAX (${parts[1]}) is shorter than FIRST (${parts[0]})`);
  return out;
}
