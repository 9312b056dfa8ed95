import { fileURLToPath } from 'node:url';
import { checkPortFree, silentLogger, WorkerPool, workerSharing, type Logger } from '@wmproxy/core-net';
import type { StaticHandler } from '../handler.js';
import { serverUrl, type StaticServer, type StaticServerOptions } from './adapter.js';

/**
 * Several processes serving one port, like nginx's `worker_processes`, run by
 * core-net's `WorkerPool` (the same supervisor as `wmproxy run --workers`).
 * Where SO_REUSEPORT balances, this process serves too and the other N-1 bind
 * the same port with it; otherwise N `node:cluster` workers share one socket
 * while this process only supervises. Workers that crash are restarted.
 */

/** What a worker process receives: the serialisable options. */
export interface WorkerSpec {
  options: Omit<StaticServerOptions, 'accessLog' | 'logger' | 'workers'>;
  accessLog?: { destination: string; format: 'combined' | 'json' };
}

export type StaticPrimaryMessage = { t: 'start'; spec: WorkerSpec } | { t: 'stop' };
export type StaticWorkerMessage = { t: 'hello' } | { t: 'ready'; port: number } | { t: 'failed'; message: string };

function workerEntry(): string {
  return fileURLToPath(import.meta.url).replace(/workers\.(ts|js)$/, 'worker-main.$1');
}

export async function startWorkers(
  count: number,
  spec: WorkerSpec,
  startLocal: (reusePort: boolean) => Promise<StaticServer>,
  runtime: 'bun' | 'node',
  handler: StaticHandler,
  host: string,
  port: number,
  logger: Logger = silentLogger,
): Promise<StaticServer> {
  if (port !== 0) await checkPortFree(host, port);
  if (workerSharing === 'reuseport') {
    // The others join this process's port (a concrete one, also when asked for port 0).
    const local = await startLocal(true);
    const listen = `${local.host}:${local.port}`;
    const pool = new WorkerPool<StaticPrimaryMessage, StaticWorkerMessage>({
      entry: workerEntry(),
      count: count - 1,
      logger,
      startMessage: () => ({ t: 'start', spec: { ...spec, options: { ...spec.options, listen } } }),
    });
    try {
      await pool.start();
    } catch (error) {
      await local.close();
      throw error;
    }
    return { ...local, close: async () => { await pool.stop(); await local.close(); } };
  }
  let bound = port;
  const pool = new WorkerPool<StaticPrimaryMessage, StaticWorkerMessage>({
    entry: workerEntry(),
    count,
    logger,
    startMessage: () => ({ t: 'start', spec }),
    onReady: (_index, message) => {
      if (message.t === 'ready') bound = message.port;
    },
  });
  await pool.start();
  return { runtime, host, port: bound, url: serverUrl(host, bound), handler, close: () => pool.stop() };
}
