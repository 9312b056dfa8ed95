import { parseAddress, listenHost, hostRuntime, runtimeName } from '@wmproxy/core-net';
import { StaticHandler } from './handler.js';
import { StaticOptionsError } from './options.js';
import type { Adapter, StaticServer, StaticServerOptions } from './runtime/adapter.js';
import { STATIC_DEFAULTS } from './defaults.js';

/**
 * Start a static file server: `Bun.serve` with zero-copy `Bun.file` bodies on
 * Bun, `node:http` with streamed reads on Node — the adapter is picked once here.
 */
export async function createStaticServer(options: StaticServerOptions): Promise<StaticServer> {
  const address = parseAddress(options.listen ?? STATIC_DEFAULTS.listen);
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
