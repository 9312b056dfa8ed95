import { Flags } from '@oclif/core';
import type { HeaderList, LogLevel } from '@wmproxy/core-net';
import { UsageError, WmproxyCommand } from '../base.js';

const MODES = ['ws2tcp', 'tcp2ws', 'tcp2wss'] as const;
type Mode = (typeof MODES)[number];

/** `30s`, `500ms`, `0` (off). */
async function duration(name: string, text: string | undefined): Promise<number | undefined> {
  if (text === undefined) return undefined;
  if (text.trim() === '0') return 0;
  const { parseDuration } = await import('@wmproxy/health');
  try {
    return parseDuration(text);
  } catch {
    throw new UsageError(`--${name}: invalid duration "${text}" (e.g. 500ms, 30s, 1m; 0 = off)`);
  }
}

/** `K: V` header flags. */
function headerList(values: string[] | undefined): HeaderList {
  return (values ?? []).map((text) => {
    const colon = text.indexOf(':');
    if (colon <= 0) throw new UsageError(`--header: expected "Name: value", got "${text}"`);
    return [text.slice(0, colon).trim(), text.slice(colon + 1).trim()];
  });
}

/** tcp2ws target: a ws(s):// URL, or host:port[/path] with the scheme from the mode. */
export function wsUrl(mode: 'tcp2ws' | 'tcp2wss', to: string): string {
  const scheme = mode === 'tcp2wss' ? 'wss' : 'ws';
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(to) ? to : `${scheme}://${to}`;
  if (!url.toLowerCase().startsWith(`${scheme}://`)) throw new UsageError(`--to: mode ${mode} needs a ${scheme}:// URL, got "${to}"`);
  return url;
}

export default class WsProxy extends WmproxyCommand {
  static override summary = 'Bridge WebSocket and TCP: ws2tcp (like websockify), or tcp2ws / tcp2wss (each TCP connection becomes a WebSocket client).';
  static override description = [
    'ws2tcp: accepts WebSocket upgrades on --from and relays each to --to (host:port), or to the target named by a token',
    '(?token=T or the path segment below --path) in a websockify token file (--token-file, "token: host:port" lines).',
    'Binary messages carry the bytes; text messages are refused with 1003 unless --text forward; the base64 subprotocol',
    '(noVNC) carries base64 text. Pings every --ping; a peer that does not answer within --ping is closed.',
    'tcp2ws / tcp2wss: every TCP connection to --from becomes a WebSocket client connection to --to, a ws:// or wss:// URL',
    "whose path and query are kept. wss verifies the server's certificate unless --insecure.",
    'Listens on 127.0.0.1 unless --from says otherwise.',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> ws-proxy --mode ws2tcp --from 127.0.0.1:6080 --to 127.0.0.1:5900',
    '<%= config.bin %> ws-proxy --mode ws2tcp --from :6080 --token-file tokens.cfg --path /websockify --origin https://desk.example --bearer s3cret',
    '<%= config.bin %> ws-proxy --mode tcp2wss --from 127.0.0.1:2222 --to wss://gw.example/ssh?host=a --header "X-Team: ops"',
  ];
  static override flags = {
    mode: Flags.string({ description: 'ws2tcp, tcp2ws or tcp2wss', required: true, options: [...MODES] }),
    from: Flags.string({ description: 'address(es) to listen on: 127.0.0.1:6080, [::1]:6080, :6080 (comma-separated)', default: '127.0.0.1:8080' }),
    to: Flags.string({ description: 'ws2tcp: the TCP target host:port; tcp2ws(s): the ws:// or wss:// URL (host:port/path takes the scheme from --mode)' }),
    path: Flags.string({ description: 'ws2tcp: serve upgrades at this path (a trailing / matches below it; default /)' }),
    origin: Flags.string({ description: 'ws2tcp: an allowed Origin, e.g. https://app.example (repeatable; default: any). tcp2ws: the Origin to send', multiple: true }),
    'token-file': Flags.string({ description: 'ws2tcp: websockify token file ("token: host:port" lines), re-read when it changes' }),
    subprotocol: Flags.string({ description: 'ws2tcp: subprotocols served, binary and/or base64 (repeatable); tcp2ws: subprotocols offered', multiple: true }),
    ping: Flags.string({ description: 'ping a silent peer after this long, and close it when no answer comes within as long (0 = off)', default: '30s' }),
    text: Flags.string({ description: 'ws2tcp: text messages without base64: refuse (close 1003, as websockify) or forward', options: ['refuse', 'forward'], default: 'refuse' }),
    auth: Flags.string({ description: 'ws2tcp: require HTTP Basic user:pass (repeatable)', multiple: true }),
    bearer: Flags.string({ description: 'ws2tcp: require this bearer token (repeatable)', multiple: true }),
    cert: Flags.string({ description: 'ws2tcp: serve wss:// with this certificate (PEM file)' }),
    key: Flags.string({ description: 'ws2tcp: the key of --cert (PEM file)' }),
    insecure: Flags.boolean({ description: "tcp2wss: do not verify the server's certificate", default: false }),
    ca: Flags.string({ description: 'tcp2wss: verify the server with this CA (PEM file)' }),
    host: Flags.string({ description: 'tcp2ws(s): Host field to send instead of the URL authority' }),
    sni: Flags.string({ description: 'tcp2wss: TLS server name (SNI and the name verified) instead of the URL host' }),
    header: Flags.string({ description: 'tcp2ws(s): an extra request field "Name: value" (repeatable)', multiple: true }),
    'max-message': Flags.integer({ description: 'largest message in bytes (close 1009 above)', min: 1 }),
    'connect-timeout': Flags.integer({ description: 'milliseconds to reach the target', min: 1 }),
    'max-connections': Flags.integer({ description: 'most client connections open at once (0: only the process limit)', default: 0, min: 0 }),
    drain: Flags.integer({ description: 'milliseconds live connections get to finish on shutdown', default: 10_000, min: 0 }),
    'log-level': Flags.string({ description: 'debug, info, warn, error or silent', default: 'info', options: ['debug', 'info', 'warn', 'error', 'silent'] }),
    'log-json': Flags.boolean({ description: 'log one JSON object per line', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(WsProxy);
    const { Logger } = await import('@wmproxy/core-net');
    const { readFile } = await import('node:fs/promises');
    const { Ws2TcpServer, Tcp2WsServer } = await import('@wmproxy/ws-bridge');
    const mode = flags.mode as Mode;
    const logger = new Logger({ level: flags['log-level'] as LogLevel, json: flags['log-json'], fields: { service: 'ws-proxy', mode } });
    let server: { start(): Promise<unknown>; shutdown(options: { deadlineMs?: number }): Promise<{ forced: number }>; boundAddresses: string[] };
    try {
      const ping = await duration('ping', flags.ping);
      const common = {
        listen: flags.from,
        pingIntervalMs: ping,
        pongTimeoutMs: ping,
        maxMessageSize: flags['max-message'],
        connectTimeoutMs: flags['connect-timeout'],
        maxConnections: flags['max-connections'],
        logger,
      };
      if (mode === 'ws2tcp') {
        const misplaced = (['insecure', 'ca', 'host', 'sni', 'header'] as const).find((name) => flags[name] !== undefined && flags[name] !== false);
        if (misplaced) throw new UsageError(`--${misplaced} applies to tcp2ws and tcp2wss only`);
        if ((flags.to === undefined) === (flags['token-file'] === undefined)) throw new UsageError('ws2tcp needs --to host:port or --token-file (one of them)');
        if ((flags.cert === undefined) !== (flags.key === undefined)) throw new UsageError('--cert and --key go together');
        const basic = (flags.auth ?? []).map((pair) => {
          const colon = pair.indexOf(':');
          if (colon <= 0) throw new UsageError(`--auth: expected user:pass, got "${pair}"`);
          return { user: pair.slice(0, colon), pass: pair.slice(colon + 1) };
        });
        server = new Ws2TcpServer({
          ...common,
          target: flags.to,
          tokenFile: flags['token-file'],
          path: flags.path,
          origins: flags.origin,
          subprotocols: flags.subprotocol,
          text: flags.text as 'refuse' | 'forward',
          auth: basic.length > 0 || flags.bearer ? { basic: basic.length > 0 ? basic : undefined, bearer: flags.bearer } : undefined,
          tls: flags.cert && flags.key ? { cert: await readFile(flags.cert, 'utf8'), key: await readFile(flags.key, 'utf8') } : undefined,
        });
      } else {
        const misplaced = (['token-file', 'path', 'auth', 'bearer', 'cert', 'key'] as const).find((name) => flags[name] !== undefined);
        if (misplaced) throw new UsageError(`--${misplaced} applies to ws2tcp only`);
        if (flags.to === undefined) throw new UsageError(`${mode} needs --to ws${mode === 'tcp2wss' ? 's' : ''}://host:port/path`);
        if ((flags.origin?.length ?? 0) > 1) throw new UsageError('tcp2ws sends one --origin');
        server = new Tcp2WsServer({
          ...common,
          url: wsUrl(mode, flags.to),
          host: flags.host,
          servername: flags.sni,
          insecure: flags.insecure,
          ca: flags.ca ? await readFile(flags.ca, 'utf8') : undefined,
          subprotocols: flags.subprotocol,
          origin: flags.origin?.[0],
          headers: headerList(flags.header),
        });
      }
    } catch (error) {
      return this.usageError((error as Error).message);
    }
    await this.serveUntilStopped(server, logger, flags.drain, 'cannot start');
  }
}
