import { parseAddress, listenHost, formatHostPort, hostRuntime, runtimeName, type Logger } from '@wmproxy/core-net';
import type { AccessLog } from './access-log.js';
import { StaticHandler } from './handler.js';
import { StaticOptionsError, type StaticOptions } from './options.js';

export interface StaticServerOptions extends StaticOptions {
  /** `host:port` to listen on (default `127.0.0.1:8080`; port 0 = ephemeral). */
  listen?: string;
  /** Only requests whose Host is this name are served; others get 421. */
  domain?: string;
  accessLog?: AccessLog;
  logger?: Logger;
  /** Force an adapter; by default core-net's `runtimeName`: Bun.serve on Bun (unless WMPROXY_RUNTIME=node), node:http elsewhere. */
  runtime?: 'bun' | 'node';
  /** Processes serving the port, like nginx's `worker_processes` (default 1). */
  workers?: number;
  /** Bind with SO_REUSEPORT (set for the workers where core-net's `workerSharing` is `reuseport`). */
  reusePort?: boolean;
}

export interface StaticServer {
  readonly runtime: 'bun' | 'node';
  readonly host: string;
  readonly port: number;
  /** `http://host:port` */
  readonly url: string;
  readonly handler: StaticHandler;
  /** Stop accepting and close every connection. */
  close(): Promise<void>;
}

/** What a runtime adapter needs. */
export interface AdapterOptions {
  host: string;
  port: number;
  handler: StaticHandler;
  domain: string | undefined;
  accessLog: AccessLog | undefined;
  logger: Logger | undefined;
  reusePort: boolean;
}

export type Adapter = (options: AdapterOptions) => Promise<StaticServer>;

/**
 * Start a static file server: `Bun.serve` with zero-copy `Bun.file` bodies on
 * Bun, `node:http` with streamed reads on Node — the adapter is picked once here.
 */
export async function createStaticServer(options: StaticServerOptions): Promise<StaticServer> {
  const address = parseAddress(options.listen ?? '127.0.0.1:8080');
  const handler = new StaticHandler(options);
  const runtime = options.runtime ?? runtimeName;
  const workers = options.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new StaticOptionsError('workers must be an integer from 1 to 64');
  const adapter: Adapter =
    runtime === 'bun' ? (await import('./runtime/bun.js')).serveBun : (await import('./runtime/node.js')).serveNode;
  const start = (reusePort: boolean) =>
    adapter({
      host: listenHost(address),
      port: address.port,
      handler,
      domain: options.domain?.toLowerCase(),
      accessLog: options.accessLog,
      logger: options.logger,
      reusePort,
    });
  if (workers === 1) return start(options.reusePort ?? false);
  if (runtime === 'node' && hostRuntime === 'bun') {
    throw new StaticOptionsError('workers > 1 with the node adapter needs Node (on Bun, use the bun adapter)');
  }
  const { startWorkers } = await import('./runtime/workers.js');
  const { accessLog, logger: _logger, workers: _workers, ...plain } = options;
  return startWorkers(
    workers,
    { options: { ...plain, runtime }, ...(accessLog ? { accessLog: { destination: accessLog.destination, format: accessLog.format } } : {}) },
    start,
    runtime,
    handler,
    listenHost(address),
    address.port,
    options.logger,
  );
}

/** `Host` header → lowercase name without port; true when it names `domain`. */
export function hostMatches(host: string | undefined | null, domain: string): boolean {
  if (!host) return false;
  let name = host.toLowerCase();
  if (name.startsWith('[')) name = name.slice(0, name.indexOf(']') + 1);
  else {
    const colon = name.lastIndexOf(':');
    if (colon >= 0) name = name.slice(0, colon);
  }
  return name === domain || name === domain + '.';
}

export function serverUrl(host: string, port: number): string {
  const shown = host === '::' || host === '0.0.0.0' ? '127.0.0.1' : host;
  return `http://${formatHostPort(shown, port)}`;
}
