import { stat } from 'node:fs/promises';
import { Flags } from '@oclif/core';
import { Logger, parseAddress, runtimeName } from '@wmproxy/core-net';
import type { CacheControlRule, HeaderRule, StaticServerOptions } from '@wmproxy/static';
import { UsageError, WmproxyCommand } from '../base.js';
import { http2Flags, listenerProtocols, type ListenerProtocols } from '../http2-flags.js';

/** `GLOB=VALUE` → a Cache-Control rule. */
export function parseCacheRule(text: string): CacheControlRule {
  const equals = text.indexOf('=');
  if (equals <= 0 || equals === text.length - 1) throw new UsageError(`--cache: expected GLOB=VALUE, got "${text}"`);
  return { pattern: text.slice(0, equals).trim(), value: text.slice(equals + 1).trim() };
}

/** `Name: value`, optionally prefixed by `GLOB ` to apply to matching paths only. */
export function parseHeaderFlag(text: string): HeaderRule {
  const match = /^(?:(\S+)\s+)?([!#$%&'*+.^_`|~0-9A-Za-z-]+):\s*(.*)$/.exec(text.trim());
  if (!match || /[\r\n\0]/.test(match[3]!)) throw new UsageError(`--header: expected "Name: value" or "GLOB Name: value", got "${text}"`);
  return match[1] ? { pattern: match[1], name: match[2]!, value: match[3]! } : { name: match[2]!, value: match[3]! };
}

interface AccessLogFlags {
  destination: string;
  format: 'combined' | 'json';
}

export default class FileServer extends WmproxyCommand {
  static override summary = 'Serve a directory over HTTP (ranges, conditional requests, precompressed files, listings).';
  static override description = [
    'GET and HEAD with strong ETags, If-None-Match/If-Modified-Since (304), If-Match/If-Unmodified-Since (412),',
    'single and multiple byte ranges with If-Range, precompressed .br/.zst/.gz siblings, optional directory listing,',
    'SPA fallback and try_files. Paths that escape the root in any encoding are refused with 400.',
    'On Bun, file bodies are sent with sendfile; on Node, streamed in 64 KiB reads.',
    'With --cert/--key (HTTPS, HTTP/2 and HTTP/1.1 by ALPN) or --h2c (cleartext HTTP/2 by prior knowledge),',
    'the files are served by the reverse proxy\'s engine (one process; --workers must be 1).',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> file-server --root ./public',
    '<%= config.bin %> file-server --root dist --listen :8080 --spa --precompressed --cache "assets/**=public, max-age=31536000, immutable"',
    '<%= config.bin %> file-server --root . --browse --cors --header "X-Frame-Options: DENY" --access-log -',
    '<%= config.bin %> file-server --root dist --listen :8443 --cert site.pem --key site.key',
  ];
  static override flags = {
    root: Flags.string({ char: 'r', description: 'directory to serve', default: '.' }),
    listen: Flags.string({ char: 'l', description: 'address to listen on: 127.0.0.1:8080, [::1]:8080, :8080', default: '127.0.0.1:8080' }),
    domain: Flags.string({ description: 'only answer requests whose Host is this name (others get 421)' }),
    browse: Flags.boolean({ description: 'list directories without an index file (HTML, or JSON for Accept: application/json)', default: false }),
    spa: Flags.boolean({ description: 'single-page app: serve /index.html for unknown paths that look like pages', default: false }),
    index: Flags.string({ description: 'index file name tried for directories, in order (repeatable; default index.html)', multiple: true }),
    'try-files': Flags.string({ description: 'candidates tried in order, space-separated: "{path} {path}/ /index.html" or ending in =404' }),
    '404': Flags.string({ description: 'file (relative to the root) served with status 404 when nothing matches' }),
    cache: Flags.string({ description: 'Cache-Control by glob: "GLOB=VALUE" (repeatable, first match wins)', multiple: true }),
    precompressed: Flags.boolean({ description: 'serve .br/.zst/.gz siblings to clients that accept them', default: false }),
    compress: Flags.boolean({ description: 'compress compressible files up to 1 MiB on the fly (br, zstd, gzip)', default: false }),
    cors: Flags.boolean({ description: 'send CORS headers (Access-Control-Allow-Origin: *) and answer preflights', default: false }),
    header: Flags.string({ description: 'extra response header: "Name: value" or "GLOB Name: value" (repeatable)', multiple: true }),
    hide: Flags.string({ description: 'glob of paths never served nor listed (repeatable)', multiple: true }),
    dotfiles: Flags.string({ description: 'dot-files: ignore (404), deny (403) or allow; .well-known is always served', default: 'ignore' }),
    'follow-symlinks': Flags.boolean({ description: 'serve symlinks that point outside the root', default: false }),
    robots: Flags.boolean({ description: 'answer /robots.txt with "Disallow: /" when the file does not exist', default: false }),
    workers: Flags.string({ description: 'processes serving the port, like nginx worker_processes', default: '1' }),
    'access-log': Flags.string({ description: 'write an access log to FILE, or - for standard output' }),
    'access-log-format': Flags.string({ description: 'combined or json', default: 'combined' }),
    ...http2Flags,
  };

  async run(): Promise<void> {
    let options: StaticServerOptions;
    let protocols: ListenerProtocols;
    let accessLogFlags: AccessLogFlags | undefined;
    try {
      ({ options, protocols, accessLogFlags } = await this.setup());
    } catch (error) {
      if (!(error instanceof UsageError)) throw error; // oclif's own exit (already reported)
      return this.usageError(error.message);
    }
    if (protocols.tls !== undefined || protocols.http2 === 'h2c') return this.serveHttp2(options, protocols, accessLogFlags);
    const { createStaticServer } = await import('@wmproxy/static');
    let server;
    try {
      server = await createStaticServer(options);
    } catch (error) {
      process.stderr.write(`wmproxy file-server: ${(error as Error).message.split('\n')[0]}\n`);
      this.exit(1);
    }
    // Either signal stops it; `once` listeners leave nothing behind. Installed before "ready", which a supervisor may answer with a signal.
    const stopped = new Promise((resolve) => ['SIGINT', 'SIGTERM'].forEach((signal) => process.once(signal, resolve)));
    options.logger?.info('file server ready', { root: server.handler.options.root, url: server.url, runtime: server.runtime });
    await stopped;
    await server.close();
    await options.accessLog?.close();
  }

  /**
   * HTTPS and HTTP/2: the reverse proxy's listener (ALPN, h2c, GOAWAY on
   * stop) with one static location, the same handler as the plain server.
   */
  private async serveHttp2(options: StaticServerOptions, protocols: ListenerProtocols, accessLogFlags: AccessLogFlags | undefined): Promise<void> {
    const { ReverseProxy, AccessLog } = await import('@wmproxy/reverse');
    const { listen, domain, accessLog: _accessLog, logger, workers: _workers, runtime: _runtime, reusePort: _reusePort, ...files } = options;
    const log = accessLogFlags ? new AccessLog(accessLogFlags.destination, accessLogFlags.format) : undefined;
    const proxy = new ReverseProxy({
      logger,
      accessLog: log,
      upstreams: [],
      servers: [
        {
          listen: listen!,
          ...(protocols.tls ? { tls: protocols.tls } : {}),
          http2: protocols.http2,
          vhosts: [
            { names: domain ? [domain] : [], locations: [{ path: '/', static: files }] },
            // As the plain file server: another Host is answered 421.
            ...(domain ? [{ default: true, locations: [{ path: '/', respond: { status: 421, body: '421 Misdirected Request\n' } }] }] : []),
          ],
        },
      ],
    });
    try {
      await proxy.start();
    } catch (error) {
      process.stderr.write(`wmproxy file-server: ${(error as Error).message.split('\n')[0]}\n`);
      this.exit(1);
    }
    const stopped = new Promise((resolve) => ['SIGINT', 'SIGTERM'].forEach((signal) => process.once(signal, resolve)));
    const scheme = protocols.tls ? 'https' : 'http';
    logger?.info('file server ready', { root: files.root, url: `${scheme}://${proxy.addresses[0]}`, http2: protocols.tls ? 'h2 (ALPN)' : 'h2c', runtime: runtimeName });
    await stopped;
    await proxy.close();
    await log?.close();
  }

  private async setup(): Promise<{ options: StaticServerOptions; protocols: ListenerProtocols; accessLogFlags: AccessLogFlags | undefined }> {
    const { flags } = await this.parseFlags(FileServer);
    // Loaded here, not at the top: oclif imports every command module at start-up.
    const { AccessLog } = await import('@wmproxy/static');
    try {
      parseAddress(flags.listen);
    } catch (error) {
      throw new UsageError(`--listen: ${(error as Error).message}`);
    }
    const info = await stat(flags.root).catch(() => undefined);
    if (!info?.isDirectory()) throw new UsageError(`--root: "${flags.root}" is not a directory`);
    const dotfiles = flags.dotfiles;
    if (dotfiles !== 'ignore' && dotfiles !== 'deny' && dotfiles !== 'allow') throw new UsageError('--dotfiles must be ignore, deny or allow');
    const format = flags['access-log-format'];
    if (format !== 'combined' && format !== 'json') throw new UsageError('--access-log-format must be combined or json');
    for (const name of flags.index ?? []) {
      if (name.includes('/') || name.startsWith('.') || name === '') throw new UsageError(`--index: "${name}" must be a plain file name`);
    }
    if (!/^\d+$/.test(flags.workers) || Number(flags.workers) < 1 || Number(flags.workers) > 64) {
      throw new UsageError(`--workers must be an integer from 1 to 64, got "${flags.workers}"`);
    }
    const protocols = await listenerProtocols(flags);
    const viaReverse = protocols.tls !== undefined || protocols.http2 === 'h2c';
    if (viaReverse && flags.workers !== '1') throw new UsageError('--workers must be 1 with --cert or --h2c');
    const accessLogFlags: AccessLogFlags | undefined = flags['access-log'] ? { destination: flags['access-log'], format } : undefined;
    const tryFiles = flags['try-files']?.split(/\s+/).filter(Boolean);
    if (tryFiles && tryFiles.length === 0) throw new UsageError('--try-files needs at least one candidate');
    const options: StaticServerOptions = {
      root: flags.root,
      listen: flags.listen,
      domain: flags.domain,
      browse: flags.browse,
      spa: flags.spa,
      index: flags.index,
      tryFiles,
      notFoundPage: flags['404'],
      cacheControl: (flags.cache ?? []).map(parseCacheRule),
      precompressed: flags.precompressed,
      compress: flags.compress,
      cors: flags.cors,
      headers: (flags.header ?? []).map(parseHeaderFlag),
      hide: flags.hide,
      dotfiles,
      followSymlinks: flags['follow-symlinks'],
      robots: flags.robots,
      workers: Number(flags.workers),
      accessLog: accessLogFlags && !viaReverse ? new AccessLog(accessLogFlags.destination, format) : undefined,
      logger: new Logger({ level: 'info' }),
    };
    return { options, protocols, accessLogFlags };
  }
}
