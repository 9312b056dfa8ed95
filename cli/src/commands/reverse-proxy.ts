import { Flags } from '@oclif/core';
import { DEFAULT_PROCESS_MAX_CONNECTIONS, Logger, parseAddressList, setProcessConnectionLimit, type LogLevel } from '@wmproxy/core-net';
import { parseDuration } from '@wmproxy/health';
import {
  AccessLog,
  POLICY_NAMES,
  REVERSE_DEFAULTS,
  TRACING_EXPORTERS,
  ReverseProxy,
  parseHeaderRule,
  type HeaderRule,
  type PolicyName,
  type ReverseProxyOptions,
  type TracingExporter,
  type UpstreamServerSpec,
} from '@wmproxy/reverse';
import { UsageError, WmproxyCommand } from '../base.js';
import { http2Flags, listenerProtocols } from '../http2-flags.js';


function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`--${name} must be a positive integer, got "${text}"`);
  return Number(text);
}

function duration(name: string, text: string | undefined, fallback: number, allowZero = false): number {
  if (text === undefined) return fallback;
  if (allowZero && text.trim() === '0') return 0;
  try {
    return parseDuration(text);
  } catch {
    throw new UsageError(`--${name}: invalid duration "${text}" (e.g. 500ms, 2s, 1m)`);
  }
}

/** `GET,HEAD`: HTTP method tokens, upper-cased as methods are case-sensitive and always sent upper case. */
function methodList(text: string): string[] {
  const methods = text.split(',').map((method) => method.trim()).filter((method) => method.length > 0);
  for (const method of methods) if (!/^[A-Za-z]+$/.test(method)) throw new UsageError(`--retry-methods: "${method}" is not an HTTP method`);
  return methods.map((method) => method.toUpperCase());
}

/** `http://host:port`, `https://host:port`, `h2://host:port` (HTTP/2 over TLS), `h2c://host:port` (optionally `#weight=N`, `#backup`). */
export function parseUpstreamUrl(text: string): UpstreamServerSpec {
  const [base, fragment] = text.split('#', 2) as [string, string | undefined];
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new UsageError(`--to: "${text}" is not a URL (expected http://host:port)`);
  }
  const h2 = url.protocol === 'h2:' || url.protocol === 'h2c:';
  if (url.protocol !== 'http:' && url.protocol !== 'https:' && !h2) throw new UsageError(`--to: "${text}" must be http://, https://, h2:// or h2c://`);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search) throw new UsageError(`--to: "${text}" must not have a path (the request's path is kept)`);
  const tls = url.protocol === 'https:' || url.protocol === 'h2:';
  const host = url.hostname;
  const port = url.port || (tls ? '443' : '80');
  const spec: UpstreamServerSpec = { address: `${host}:${port}`, tls };
  if (h2) spec.transport = url.protocol.slice(0, -1);
  for (const part of (fragment ?? '').split('&').filter(Boolean)) {
    const [key, value] = part.split('=', 2) as [string, string | undefined];
    if (key === 'weight') spec.weight = positiveInt('to weight', value, 1);
    else if (key === 'backup') spec.backup = true;
    else if (key === 'max_conns') spec.maxConns = positiveInt('to max_conns', value, 0);
    else throw new UsageError(`--to: unknown option "${key}" in "${text}" (weight=N, backup, max_conns=N)`);
  }
  return spec;
}

export default class ReverseProxyCommand extends WmproxyCommand {
  static override summary = 'Run a reverse proxy from ADDR to one or more upstream URLs, with health checks and load balancing.';
  static override description = [
    'Every request to --from is proxied to one of the --to servers, chosen by --policy among the healthy ones.',
    'Failed connects, timeouts and 502/503/504 answers to idempotent requests are retried on another server;',
    'a connect that has not completed after --hedge-delay is raced against another server.',
    'A --to URL may end in #weight=N, #backup or #max_conns=N. The full feature set comes from the config file.',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> reverse-proxy --from 127.0.0.1:8080 --to http://127.0.0.1:3001,http://127.0.0.1:3002',
    '<%= config.bin %> reverse-proxy --from :8080 --to http://10.0.0.1:80#weight=3,http://10.0.0.2:80 --policy least_conn --health-path /healthz --health-interval 1s',
    '<%= config.bin %> reverse-proxy --from 127.0.0.1:8080 --to http://127.0.0.1:3001 --header "set X-Env prod" --header "down:remove Server" --access-log -',
  ];
  static override flags = {
    from: Flags.string({ description: 'address(es) to listen on: 127.0.0.1:8080, [::1]:8080, :8080 (comma-separated)', required: true }),
    to: Flags.string({ description: 'upstream URL(s): http://, https://, h2:// (HTTP/2 over TLS) or h2c://, comma-separated (repeatable)', required: true, multiple: true }),
    policy: Flags.string({ description: `load-balancing policy: ${POLICY_NAMES.join(', ')}`, default: 'round_robin' }),
    'hash-key': Flags.string({ description: 'for --policy hash: header:NAME, cookie:NAME, uri, path or ip', default: 'uri' }),
    'health-path': Flags.string({ description: 'enable active HTTP health checks: GET this path (200-399 is healthy)' }),
    'health-interval': Flags.string({ description: 'time between health checks', default: '2s' }),
    'health-timeout': Flags.string({ description: 'a health check fails after this long', default: '1s' }),
    rise: Flags.string({ description: 'consecutive passing checks to become healthy', default: '2' }),
    fall: Flags.string({ description: 'consecutive failing checks to become unhealthy', default: '3' }),
    header: Flags.string({ description: 'header rule: "set|add|default|remove NAME [VALUE]" or "NAME: VALUE"; prefix down: for responses (repeatable)', multiple: true }),
    'access-log': Flags.string({ description: 'write an access log to FILE, or - for standard output' }),
    'access-log-format': Flags.string({ description: 'combined or json', default: 'combined' }),
    'panic-threshold': Flags.string({ description: 'below this percentage of healthy servers, send to all of them anyway (0 disables)', default: '50' }),
    'hedge-delay': Flags.string({ description: 'race a second connect after this long (0 disables)', default: '100ms' }),
    'hedge-request': Flags.string({ description: 'request hedging: also send a request of --retry-methods without a body to a second server when no answer came after its server\'s recent p99 first-byte time, at most this long (0 disables)', default: '500ms' }),
    'connect-timeout': Flags.string({ description: 'connect timeout per attempt', default: '5s' }),
    'first-byte-timeout': Flags.string({ description: 'time from the end of the request to the response head (then 504 or the next server)', default: '60s' }),
    tries: Flags.string({ description: 'most attempts per request (first included)', default: '3' }),
    'retry-methods': Flags.string({
      description: 'methods that may be sent twice (retried once sent, and hedged), comma-separated; add PUT,DELETE only for idempotent backends',
      default: 'GET,HEAD,OPTIONS,TRACE',
    }),
    'trusted-proxy': Flags.string({ description: 'CIDR whose X-Forwarded-* headers are kept (repeatable)', multiple: true }),
    'max-connections': Flags.integer({
      description: 'most client connections open at once; more are answered 503 (Connection: close) and closed (HAProxy maxconn; 0: no limit)',
      default: DEFAULT_PROCESS_MAX_CONNECTIONS,
      min: 0,
    }),
    'max-connections-per-ip': Flags.integer({ description: 'most client connections open at once from one IP address; more are answered 503 and closed (nginx limit_conn; 0: no limit)', default: 0, min: 0 }),
    ...http2Flags,
    trace: Flags.boolean({ description: 'take part in W3C trace context: a span per request and per upstream attempt (new parent id in the forwarded traceparent), start traces, trace ids in the access log', default: false }),
    'trace-sample-ratio': Flags.string({ description: 'share of the traces the proxy starts that are sampled (0 to 1)', default: '1' }),
    'otlp-endpoint': Flags.string({ description: 'export sampled spans to this OTLP/HTTP (JSON) collector URL, e.g. http://127.0.0.1:4318/v1/traces (implies --trace)' }),
    'trace-exporter': Flags.string({ description: 'who builds and sends spans: wmproxy (its own OTLP exporter) or otel (the OpenTelemetry API and SDK, loaded only then)', options: [...TRACING_EXPORTERS], default: REVERSE_DEFAULTS.tracing.exporter }),
    'log-level': Flags.string({ description: 'debug, info, warn, error or silent', default: 'info' }),
    'log-json': Flags.boolean({ description: 'log lines as JSON', default: false }),
  };

  async run(): Promise<void> {
    let options: ReverseProxyOptions;
    try {
      options = await this.setup();
    } catch (error) {
      return this.usageError(error instanceof Error ? error.message : String(error));
    }
    const proxy = new ReverseProxy(options);
    try {
      await proxy.start();
    } catch (error) {
      process.stderr.write(`wmproxy reverse-proxy: ${(error as Error).message.split('\n')[0]}\n`);
      this.exit(1);
    }
    // The handlers go in before "ready", which a supervisor may answer with a signal.
    const stopped = new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    options.logger?.info('reverse proxy ready', { listen: proxy.addresses.join(','), upstreams: options.upstreams[0]!.servers.map((s) => s.address).join(',') });
    await stopped;
    await proxy.close();
  }

  private async setup(): Promise<ReverseProxyOptions> {
    const { flags } = await this.parse(ReverseProxyCommand);
    const levels = ['debug', 'info', 'warn', 'error', 'silent'];
    if (!levels.includes(flags['log-level'])) throw new UsageError(`--log-level must be one of ${levels.join(', ')}`);
    const logger = new Logger({ level: flags['log-level'] as LogLevel, json: flags['log-json'] });
    try {
      parseAddressList(flags.from);
    } catch (error) {
      throw new UsageError(`--from: ${(error as Error).message}`);
    }
    if (!(POLICY_NAMES as string[]).includes(flags.policy)) throw new UsageError(`--policy must be one of ${POLICY_NAMES.join(', ')}, got "${flags.policy}"`);
    const servers = flags.to.flatMap((list) => list.split(',')).filter((s) => s.trim() !== '').map((s) => parseUpstreamUrl(s.trim()));
    if (servers.length === 0) throw new UsageError('--to needs at least one URL');
    const requestRules: HeaderRule[] = [];
    const responseRules: HeaderRule[] = [];
    for (const text of flags.header ?? []) {
      let parsed: ReturnType<typeof parseHeaderRule>;
      try {
        parsed = parseHeaderRule(text);
      } catch (error) {
        throw new UsageError(`--header: ${(error as Error).message}`);
      }
      (parsed.response ? responseRules : requestRules).push(parsed.rule);
    }
    const format = flags['access-log-format'];
    if (format !== 'combined' && format !== 'json') throw new UsageError('--access-log-format must be combined or json');
    const intervalMs = duration('health-interval', flags['health-interval'], 2_000);
    const timeoutMs = Math.min(duration('health-timeout', flags['health-timeout'], 1_000), intervalMs);
    const rise = positiveInt('rise', flags.rise, 2);
    const fall = positiveInt('fall', flags.fall, 3);
    const healthPath = flags['health-path'];
    if (healthPath !== undefined && !healthPath.startsWith('/')) throw new UsageError('--health-path must start with /');
    const tls = servers.some((s) => s.tls);
    const panicText = flags['panic-threshold'];
    if (!/^\d{1,3}$/.test(panicText) || Number(panicText) > 100) throw new UsageError(`--panic-threshold must be a percentage from 0 to 100, got "${panicText}"`);
    const protocols = await listenerProtocols(flags);
    const ratio = Number(flags['trace-sample-ratio']);
    if (!(ratio >= 0 && ratio <= 1)) throw new UsageError(`--trace-sample-ratio must be from 0 to 1, got "${flags['trace-sample-ratio']}"`);
    const otlpEndpoint = flags['otlp-endpoint'];
    if (otlpEndpoint !== undefined && !/^https?:\/\/[^/]/.test(otlpEndpoint)) throw new UsageError(`--otlp-endpoint must be an http(s) URL, got "${otlpEndpoint}"`);
    // One listener in this process: its limit is the process's.
    setProcessConnectionLimit(0);
    return {
      logger,
      health: { panicThreshold: Number(panicText) },
      hedgeDelayMs: duration('hedge-delay', flags['hedge-delay'], 100, true),
      requestHedgeMs: duration('hedge-request', flags['hedge-request'], 0, true),
      timeouts: {
        connectMs: duration('connect-timeout', flags['connect-timeout'], 5_000),
        firstByteMs: duration('first-byte-timeout', flags['first-byte-timeout'], 60_000),
      },
      retries: { tries: positiveInt('tries', flags.tries, 3), methods: methodList(flags['retry-methods']) },
      accessLog: flags['access-log'] ? new AccessLog(flags['access-log'], format) : undefined,
      tracing: { enabled: flags.trace || otlpEndpoint !== undefined, sampleRatio: ratio, exporter: flags['trace-exporter'] as TracingExporter, ...(otlpEndpoint ? { otlp: { endpoint: otlpEndpoint } } : {}) },
      upstreams: [
        {
          name: 'default',
          policy: flags.policy as PolicyName,
          hashKey: flags['hash-key'],
          servers,
          health: {
            check: healthPath ? { type: tls ? 'https' : 'http', path: healthPath } : null,
            intervalMs,
            timeoutMs,
            rise,
            fall,
          },
        },
      ],
      servers: [
        {
          listen: flags.from,
          ...(protocols.tls ? { tls: protocols.tls } : {}),
          http2: protocols.http2,
          forwarding: { trustedProxies: flags['trusted-proxy'] ?? [] },
          maxConnections: flags['max-connections'],
          maxConnectionsPerIp: flags['max-connections-per-ip'],
          vhosts: [{ locations: [{ path: '/', upstream: 'default', requestHeaders: requestRules, responseHeaders: responseRules }] }],
        },
      ],
    };
  }
}
