import { Flags } from '@oclif/core';
import type { Address, LogLevel } from '@wmproxy/core-net';
import type { ForwardFlag } from '@wmproxy/http-proxy';
import { WmproxyCommand } from '../base.js';

const FLAGS: readonly ForwardFlag[] = ['http', 'https', 'socks5'];
const DEFAULT_FORWARD_BIND = '127.0.0.1:8090';

export default class Proxy extends WmproxyCommand {
  static override summary = 'Run the forward proxy: HTTP, HTTPS (CONNECT) and SOCKS5 on one port, told apart by the first byte.';
  static override description = [
    'Listens on 127.0.0.1:8090 unless --bind says otherwise. A non-loopback bind needs --user/--pass or --allow',
    '(or --insecure-open): an open proxy on a public address is abused within hours. On a non-loopback bind,',
    'destinations on this host and its link (loopback, 0.0.0.0, ::, link-local, multicast, cloud metadata) are',
    'refused and CONNECT may reach ports 443 and 8443 only, as in the config file: --deny-dest and --connect-ports change that.',
    'SIGINT/SIGTERM stop accepting and let live connections finish for up to --drain before closing them.',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> proxy',
    '<%= config.bin %> proxy --bind 0.0.0.0:8090 --user alice --pass s3cret',
    '<%= config.bin %> proxy --bind :1080 --flag socks5 --allow 10.0.0.0/8 --udp-bind 10.0.0.5',
    '<%= config.bin %> proxy --upstream socks5://127.0.0.1:1081 --deny-dest 127.0.0.0/8 --deny-dest ::1',
  ];
  static override flags = {
    bind: Flags.string({ char: 'b', description: 'addresses to listen on: ip:port, [v6]:port, :port, comma-separated', default: DEFAULT_FORWARD_BIND }),
    flag: Flags.string({ description: 'protocols to serve: http,https,socks5', default: 'http,https,socks5' }),
    user: Flags.string({ description: 'user name for HTTP Basic auth and SOCKS5 username/password' }),
    pass: Flags.string({ description: 'password for --user' }),
    'udp-bind': Flags.string({ description: 'IP to bind SOCKS5 UDP relays on (default: the address the client connected to)' }),
    upstream: Flags.string({ description: 'parent proxy: http://[user:pass@]host:port or socks5://[user:pass@]host:port' }),
    allow: Flags.string({ description: 'client CIDR allowed (repeatable; default: everyone)', multiple: true }),
    deny: Flags.string({ description: 'client CIDR refused (repeatable)', multiple: true }),
    'deny-dest': Flags.string({
      description: 'destination CIDR refused, checked on resolved addresses (repeatable; replaces the default of a non-loopback bind; "none": refuse nothing)',
      multiple: true,
    }),
    'connect-ports': Flags.string({ description: 'ports CONNECT may reach, comma-separated, or "any" (default: 443,8443 on a non-loopback bind, any on loopback)' }),
    'connect-timeout': Flags.integer({ description: 'milliseconds to reach a target before 504 / SOCKS 0x06', default: 10_000, min: 1 }),
    'idle-timeout': Flags.integer({ description: 'milliseconds without traffic before a tunnel is closed (0 = never)', default: 300_000, min: 0 }),
    drain: Flags.integer({ description: 'milliseconds live connections get to finish on shutdown', default: 10_000, min: 0 }),
    'max-connections': Flags.integer({ description: 'most client connections open at once; more are closed at once (HAProxy maxconn; 0: no limit)', default: 9_000, min: 0 }),
    'max-connections-per-ip': Flags.integer({ description: 'most client connections open at once from one IP address; more are closed at once (0: no limit)', default: 0, min: 0 }),
    'insecure-open': Flags.boolean({ description: 'allow an unauthenticated proxy on a non-loopback address', default: false }),
    'log-level': Flags.string({ description: 'debug, info, warn, error or silent', default: 'info', options: ['debug', 'info', 'warn', 'error', 'silent'] }),
    'log-json': Flags.boolean({ description: 'log one JSON object per line', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(Proxy);
    // Loaded here, not at the top: oclif imports every command module at start-up.
    const { DEFAULT_CONNECT_PORTS, DEFAULT_DENY_DESTINATIONS, Logger, parseAddressList, setProcessConnectionLimit } = await import('@wmproxy/core-net');
    const { createForwardProxyServer, exposedAddress, openProxyRefusal } = await import('@wmproxy/http-proxy');
    let addresses: Address[];
    try {
      addresses = parseAddressList(flags.bind);
    } catch (error) {
      return this.usageError((error as Error).message);
    }
    const kinds = flags.flag.split(',').map((kind) => kind.trim()).filter(Boolean);
    const unknown = kinds.find((kind) => !FLAGS.includes(kind as ForwardFlag));
    if (unknown !== undefined || kinds.length === 0) return this.usageError(`--flag: "${unknown ?? ''}" is not one of ${FLAGS.join(', ')}`);
    if ((flags.user === undefined) !== (flags.pass === undefined)) return this.usageError('--user and --pass go together');
    const users = flags.user !== undefined && flags.pass !== undefined ? { [flags.user]: flags.pass } : undefined;
    const refusal = openProxyRefusal(addresses, { users, allow: flags.allow, insecureOpen: flags['insecure-open'] });
    if (refusal) return this.usageError(refusal);
    // Reachable from other hosts: keep clients off this host's services (the control API
    // answers loopback without a token) and CONNECT on HTTPS ports, as the config file does.
    const exposed = exposedAddress(addresses) !== undefined;
    let destinationDeny: readonly string[] | undefined = flags['deny-dest'];
    if (destinationDeny?.includes('none')) {
      if (destinationDeny.length > 1) return this.usageError('--deny-dest none cannot be combined with CIDRs');
      destinationDeny = [];
    }
    destinationDeny ??= exposed ? DEFAULT_DENY_DESTINATIONS : undefined;
    const connectPorts = parseConnectPorts(flags['connect-ports'], exposed ? DEFAULT_CONNECT_PORTS : undefined);
    if (typeof connectPorts === 'string') return this.usageError(connectPorts);

    const logger = new Logger({ level: flags['log-level'] as LogLevel, json: flags['log-json'], fields: { service: 'proxy' } });
    let server;
    try {
      server = createForwardProxyServer({
        bind: addresses,
        flags: kinds as ForwardFlag[],
        users,
        clientPolicy: flags.allow || flags.deny ? { allow: flags.allow, deny: flags.deny } : undefined,
        destinationDeny,
        upstream: flags.upstream,
        connectTimeoutMs: flags['connect-timeout'],
        idleTimeoutMs: flags['idle-timeout'],
        socks5: flags['udp-bind'] ? { udpBind: flags['udp-bind'] } : undefined,
        http: connectPorts ? { connectPorts } : undefined,
        maxConnections: flags['max-connections'],
        maxConnectionsPerIp: flags['max-connections-per-ip'],
        logger,
      });
      // One listener in this process: its limit is the process's.
      setProcessConnectionLimit(0);
    } catch (error) {
      return this.usageError((error as Error).message);
    }
    // Signal handlers first: the "listening" line may be answered with a signal at once.
    const stop = async (signal: string): Promise<void> => {
      logger.info('shutting down', { signal, connections: server.connectionCount });
      const { forced } = await server.shutdown({ deadlineMs: flags.drain });
      logger.info('stopped', { forced });
      process.exit(0);
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
    try {
      await server.start();
    } catch (error) {
      logger.error('cannot listen', { error: (error as Error).message });
      return this.exit(1);
    }
    await new Promise<never>(() => {});
  }
}

/** `--connect-ports`: "any", or comma-separated ports; the fallback when absent. A string is the complaint. */
function parseConnectPorts(value: string | undefined, fallback: readonly number[] | undefined): readonly number[] | undefined | string {
  if (value === undefined) return fallback;
  if (value.trim() === 'any') return undefined;
  const ports = value.split(',').map((part) => part.trim());
  const bad = ports.find((port) => !/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535);
  if (bad !== undefined) return `--connect-ports: "${bad}" is not a port from 1 to 65535 (or use "any")`;
  return ports.map(Number);
}
