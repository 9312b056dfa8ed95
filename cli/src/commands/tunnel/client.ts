import { Flags } from '@oclif/core';
import type { LogLevel } from '@wmproxy/core-net';
import { WmproxyCommand } from '../../base.js';
import { readPem } from './shared.js';

export default class TunnelClientCommand extends WmproxyCommand {
  static override summary = 'Run the private side of an intranet tunnel: dial out to a tunnel server and expose local services through it.';
  static override description = [
    'One outgoing connection (TLS by default) carries every stream, so the client works from behind NAT. The server',
    'certificate is verified against --ca, or pinned with --fingerprint (as printed by `wmproxy tunnel server`), or',
    'against the system CAs. Mappings (--map, repeatable):',
    '  db=tcp:127.0.0.1:5432:15432       public tcp port 15432 on the server -> 127.0.0.1:5432 here',
    '  dns=udp:127.0.0.1:53:15353        public udp port 15353 -> 127.0.0.1:53 (datagrams up to 64 KiB, whole)',
    '  out=proxy::18090                  public port 18090 -> this side\'s forward proxy (HTTP, CONNECT, SOCKS5);',
    '                                    it needs --proxy-user or --proxy-allow (or --proxy-insecure-open)',
    '  web=http:127.0.0.1:8080@app.example.com[/path]   registered for the server\'s HTTP routing',
    '  add ,proxy-protocol=v1 or ,proxy-protocol=v2 to tell the local service the real visitor address.',
    'The client reconnects with jittered exponential backoff (1 s to 20 s) and registers its mappings again.',
    'The token may also come from WMPROXY_TUNNEL_TOKEN.',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> tunnel client --server tunnel.example.com:7000 --token s3cret --fingerprint SHA256:... --map db=tcp:127.0.0.1:5432:15432',
    '<%= config.bin %> tunnel client --server 10.0.0.1:7000 --token s3cret --ca ca.pem --map out=proxy::18090 --proxy-user ann:pw --map dns=udp:127.0.0.1:53:15353',
  ];
  static override flags = {
    server: Flags.string({ char: 's', description: 'tunnel server host:port', required: true }),
    token: Flags.string({ char: 't', description: 'shared secret', env: 'WMPROXY_TUNNEL_TOKEN', required: true }),
    map: Flags.string({ char: 'm', description: 'a mapping (repeatable), see above', multiple: true, required: true }),
    ca: Flags.string({ description: 'CA certificate (PEM) to verify the server against' }),
    fingerprint: Flags.string({ description: 'pin the server certificate: SHA256:<base64> or hex' }),
    servername: Flags.string({ description: 'name to verify in the server certificate (default: the --server host)' }),
    cert: Flags.string({ description: 'client certificate (PEM) for servers that require mutual TLS' }),
    key: Flags.string({ description: 'private key (PEM) of --cert' }),
    plain: Flags.boolean({ description: 'no TLS (only for a server started with --plain)', default: false }),
    name: Flags.string({ description: 'name shown in the server logs' }),
    'proxy-user': Flags.string({ description: 'USER:PASS a visitor of a proxy mapping must give (Basic for HTTP, RFC 1929 for SOCKS5; repeatable)', multiple: true }),
    'proxy-allow': Flags.string({ description: 'visitor address or CIDR range a proxy mapping serves (repeatable; default everyone)', multiple: true }),
    'proxy-insecure-open': Flags.boolean({ description: 'serve proxy mappings without --proxy-user or --proxy-allow: an open proxy into this network', default: false }),
    'log-level': Flags.string({ description: 'debug, info, warn, error or silent', default: 'info', options: ['debug', 'info', 'warn', 'error', 'silent'] }),
    'log-json': Flags.boolean({ description: 'log one JSON object per line', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(TunnelClientCommand);
    const { Logger, normaliseFingerprint } = await import('@wmproxy/core-net');
    const { TunnelClient, parseMapSpec } = await import('@wmproxy/tunnel');
    if (flags.ca && flags.fingerprint) return this.usageError('--ca and --fingerprint are alternatives: give one');
    if ((flags.cert === undefined) !== (flags.key === undefined)) return this.usageError('--cert and --key go together');
    if (flags.plain && (flags.ca || flags.fingerprint || flags.cert)) return this.usageError('--plain cannot be combined with TLS flags');
    let mappings;
    try {
      mappings = flags.map.map((spec) => parseMapSpec(spec));
      if (flags.fingerprint) normaliseFingerprint(flags.fingerprint);
    } catch (error) {
      return this.usageError((error as Error).message);
    }
    if (mappings.some((mapping) => mapping.kind === 'proxy') && !flags['proxy-user'] && !flags['proxy-allow'] && !flags['proxy-insecure-open']) {
      return this.usageError("a proxy mapping would be an open proxy into this network for anyone who reaches the server's public port: give --proxy-user or --proxy-allow, or --proxy-insecure-open");
    }
    const logger = new Logger({ level: flags['log-level'] as LogLevel, json: flags['log-json'], fields: { service: 'tunnel-client' } });
    let client;
    try {
      const tls = flags.plain
        ? false
        : {
            ...(flags.ca ? { ca: await readPem(flags.ca) } : {}),
            ...(flags.fingerprint ? { fingerprint: flags.fingerprint } : {}),
            ...(flags.servername ? { servername: flags.servername } : {}),
            ...(flags.cert ? { cert: await readPem(flags.cert), key: await readPem(flags.key!) } : {}),
          };
      const users = proxyUsers(flags['proxy-user']);
      const proxy = users || flags['proxy-allow'] ? { ...(users ? { users } : {}), ...(flags['proxy-allow'] ? { clientPolicy: { allow: flags['proxy-allow'] } } : {}) } : undefined;
      client = new TunnelClient({ server: flags.server, token: flags.token, name: flags.name, tls, mappings, logger, proxy, openProxy: flags['proxy-insecure-open'] });
    } catch (error) {
      return this.usageError((error as Error).message);
    }
    const stop = async (signal: string): Promise<void> => {
      logger.info('shutting down', { signal });
      await client.stop({ deadlineMs: 10_000 });
      process.exit(0);
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
    client.start();
    await new Promise<never>(() => {});
  }
}

/** `--proxy-user USER:PASS` flags as a users table (undefined for none). */
function proxyUsers(specs: string[] | undefined): Record<string, string> | undefined {
  if (specs === undefined) return undefined;
  const users: Record<string, string> = {};
  for (const spec of specs) {
    const colon = spec.indexOf(':');
    if (colon <= 0) throw new RangeError(`--proxy-user "${spec}" is not USER:PASS`);
    users[spec.slice(0, colon)] = spec.slice(colon + 1);
  }
  return users;
}
