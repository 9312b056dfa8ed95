import { readFile } from 'node:fs/promises';
import { Flags } from '@oclif/core';
import type { Address, LogLevel, TlsServerOptions } from '@wmproxy/core-net';
import type { ForwardFlag, ParentTlsOptions } from '@wmproxy/http-proxy';
import { WmproxyCommand } from '../base.js';

const FLAGS: readonly ForwardFlag[] = ['http', 'https', 'socks5'];
const DEFAULT_FORWARD_BIND = '127.0.0.1:8090';

export default class Proxy extends WmproxyCommand {
  static override summary = 'Run the forward proxy: HTTP, HTTPS (CONNECT) and SOCKS5 on one port, told apart by the first byte; optionally inside TLS.';
  static override description = [
    'Listens on 127.0.0.1:8090 unless --bind says otherwise. A non-loopback bind needs --user/--pass or --allow',
    '(or --insecure-open): an open proxy on a public address is abused within hours. On a non-loopback bind,',
    'destinations on this host and its link (loopback, 0.0.0.0, ::, link-local, multicast, cloud metadata) are',
    'refused and CONNECT may reach ports 443 and 8443 only, as in the config file: --deny-dest and --connect-ports change that.',
    'With --cert/--key the port speaks TLS first (an HTTPS proxy: curl --proxy https://, Chromium --proxy-server=https://; SOCKS5',
    'inside TLS), and with --client-ca only clients with a certificate from that CA get in (which counts as authentication on',
    'a non-loopback bind). A parent is reached over TLS with --upstream https:// or socks5+tls://, verified by --upstream-ca.',
    'SIGINT/SIGTERM stop accepting and let live connections finish for up to --drain before closing them.',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> proxy',
    '<%= config.bin %> proxy --bind 0.0.0.0:8090 --user alice --pass s3cret',
    '<%= config.bin %> proxy --bind :1080 --flag socks5 --allow 10.0.0.0/8 --udp-bind 10.0.0.5',
    '<%= config.bin %> proxy --upstream socks5://127.0.0.1:1081 --deny-dest 127.0.0.0/8 --deny-dest ::1',
    '<%= config.bin %> proxy --bind 0.0.0.0:8091 --cert server.pem --key server.key --client-ca ca.pem',
    '<%= config.bin %> proxy --upstream https://proxy.example:8091 --upstream-ca ca.pem --upstream-cert client.pem --upstream-key client.key',
    '<%= config.bin %> proxy -S proxy.example:8091 --ts --two-way-tls --cert pair.pem --key pair.key',
  ];
  static override flags = {
    bind: Flags.string({ char: 'b', description: 'addresses to listen on: ip:port, [v6]:port, :port, comma-separated', default: DEFAULT_FORWARD_BIND }),
    flag: Flags.string({ description: 'protocols to serve: http,https,socks5', default: 'http,https,socks5' }),
    user: Flags.string({ description: 'user name for HTTP Basic auth and SOCKS5 username/password' }),
    pass: Flags.string({ description: 'password for --user' }),
    'udp-bind': Flags.string({ description: 'IP to bind SOCKS5 UDP relays on (default: the address the client connected to)' }),
    upstream: Flags.string({ description: 'parent proxy: http://, https://, socks5:// or socks5+tls://[user:pass@]host:port' }),
    'upstream-ca': Flags.string({ description: 'PEM file of the CA(s) a TLS parent\'s certificate must chain to (default: the system\'s CAs)' }),
    'upstream-cert': Flags.string({ description: 'PEM client certificate shown to a TLS parent that asks for one (mutual TLS); with --upstream-key' }),
    'upstream-key': Flags.string({ description: 'PEM key of --upstream-cert' }),
    cert: Flags.string({ description: 'PEM certificate: serve the port over TLS (HTTPS proxy, SOCKS5 in TLS); with --key' }),
    key: Flags.string({ description: 'PEM key of --cert' }),
    'client-ca': Flags.string({ description: 'PEM file of the CA(s) client certificates must chain to: clients without one are refused (mutual TLS; needs --cert)' }),
    server: Flags.string({ char: 'S', description: 'the original\'s parent: host:port of another wmproxy (CONNECT; over TLS with --ts), or a URL as --upstream' }),
    ts: Flags.boolean({ description: 'the original\'s "TLS to the server": reach --server over TLS; --cert then also names the CA trusted for it', default: false }),
    tc: Flags.boolean({ description: 'the original\'s "TLS from clients": serve the port over TLS with --cert/--key', default: false }),
    'two-way-tls': Flags.boolean({ description: 'the original\'s mutual TLS: with --tc clients must show a certificate chaining to --cert; with --ts --cert/--key are shown to the server', default: false }),
    domain: Flags.string({ description: 'name expected in a TLS parent\'s certificate (and sent as SNI) when it is not the host in --upstream/--server' }),
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
    let hops: TlsHops;
    try {
      hops = await tlsHops(flags);
    } catch (error) {
      return this.usageError((error as Error).message);
    }
    const refusal = openProxyRefusal(addresses, { users, allow: flags.allow, clientCertificates: hops.listener?.clientCa !== undefined, insecureOpen: flags['insecure-open'] });
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
        upstream: hops.upstream,
        upstreamTls: hops.upstreamTls,
        tls: hops.listener,
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
    await this.serveUntilStopped(server, logger, flags.drain, 'cannot listen', () => ({ connections: server.connectionCount }));
  }
}

interface TlsFlags {
  upstream?: string;
  server?: string;
  'upstream-ca'?: string;
  'upstream-cert'?: string;
  'upstream-key'?: string;
  cert?: string;
  key?: string;
  'client-ca'?: string;
  ts: boolean;
  tc: boolean;
  'two-way-tls': boolean;
  domain?: string;
}

interface TlsHops {
  upstream?: string;
  upstreamTls?: ParentTlsOptions;
  listener?: TlsServerOptions;
}

async function pem(path: string | undefined, flag: string): Promise<string | undefined> {
  if (path === undefined) return undefined;
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new Error(`${flag}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/**
 * The TLS of both hops from the flags. Ours: --cert/--key/--client-ca for the
 * listener, --upstream-ca/--upstream-cert/--upstream-key for a TLS parent.
 * The original's (--ts, --tc, --two-way-tls with one --cert/--key pair): the
 * pair is the listener's with --tc, the one shown to the server with --ts
 * --two-way-tls, and the CA trusted for the other side either way.
 */
async function tlsHops(flags: TlsFlags): Promise<TlsHops> {
  if ((flags.cert === undefined) !== (flags.key === undefined)) throw new Error('--cert and --key go together');
  if ((flags['upstream-cert'] === undefined) !== (flags['upstream-key'] === undefined)) throw new Error('--upstream-cert and --upstream-key go together');
  if (flags.upstream !== undefined && flags.server !== undefined) throw new Error('--upstream and --server (-S) both name the parent: use one');
  if (flags.tc && flags.cert === undefined) throw new Error('--tc needs --cert and --key (wmproxy has no built-in certificate)');
  if (flags['two-way-tls'] && !flags.ts && !flags.tc) throw new Error('--two-way-tls goes with --tc (verify clients) or --ts (show our certificate to the server)');
  if (flags['two-way-tls'] && flags.cert === undefined) throw new Error('--two-way-tls needs --cert and --key');
  if (flags.ts && flags.server === undefined && flags.upstream === undefined) throw new Error('--ts needs --server (-S) or an --upstream');
  if (flags.server === undefined && flags.upstream === undefined && (flags['upstream-ca'] ?? flags['upstream-cert'] ?? flags.domain) !== undefined) {
    throw new Error('--upstream-ca, --upstream-cert and --domain need a TLS parent (--upstream https://... or socks5+tls://..., or --server with --ts)');
  }
  const original = flags.ts || flags.tc || flags['two-way-tls'];
  const listenerTls = flags.cert !== undefined && (!original || flags.tc);
  if (flags['client-ca'] !== undefined && !listenerTls) throw new Error('--client-ca needs a TLS port (--cert and --key)');
  // One after another, so that with several unreadable files the error names the first flag, every time.
  const cert = await pem(flags.cert, '--cert');
  const key = await pem(flags.key, '--key');
  const clientCa = await pem(flags['client-ca'], '--client-ca');
  const upstreamCa = await pem(flags['upstream-ca'], '--upstream-ca');
  const upstreamCert = await pem(flags['upstream-cert'], '--upstream-cert');
  const upstreamKey = await pem(flags['upstream-key'], '--upstream-key');
  const hops: TlsHops = {};
  // Without the original's switches, --cert/--key always mean "this port speaks TLS"; with them, only --tc does.
  if (listenerTls) {
    hops.listener = { cert: cert!, key: key! };
    const verifyBy = clientCa ?? (flags.tc && flags['two-way-tls'] ? cert : undefined);
    if (verifyBy !== undefined) hops.listener.clientCa = verifyBy;
  }
  let upstream = flags.upstream;
  if (flags.server !== undefined) upstream = flags.server.includes('://') ? flags.server : `${flags.ts ? 'https' : 'http'}://${flags.server}`;
  if (upstream === undefined) return hops;
  if (flags.ts && !/^(https|socks5\+tls):\/\//i.test(upstream)) throw new Error(`--ts: the parent "${upstream}" is not a TLS URL (https:// or socks5+tls://)`);
  hops.upstream = upstream;
  const tls: ParentTlsOptions = {};
  const trust = upstreamCa ?? (flags.ts ? cert : undefined);
  if (trust !== undefined) tls.ca = trust;
  const shown = upstreamCert !== undefined ? [upstreamCert, upstreamKey] : flags.ts && flags['two-way-tls'] ? [cert, key] : undefined;
  if (shown) {
    tls.cert = shown[0]!;
    tls.key = shown[1]!;
  }
  if (flags.domain !== undefined) tls.servername = flags.domain;
  if (Object.keys(tls).length > 0) hops.upstreamTls = tls;
  return hops;
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
