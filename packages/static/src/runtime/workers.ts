import cluster from 'node:cluster';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { formatHostPort, listenError } from '@wmproxy/core-net';
import type { StaticHandler } from '../handler.js';
import { serverUrl, type StaticServer, type StaticServerOptions } from './adapter.js';

/**
 * Several processes serving one port, like nginx's `worker_processes`. On Bun
 * every process binds the port with SO_REUSEPORT (the kernel spreads
 * connections); on Node (no reusePort before 22.12) the workers are a
 * `node:cluster` sharing one listening socket (SCHED_NONE: each accepts for
 * itself) while this process only supervises.
 */

/** What a worker process receives: the serialisable options. */
export interface WorkerSpec {
  options: Omit<StaticServerOptions, 'accessLog' | 'logger' | 'workers'>;
  accessLog?: { destination: string; format: 'combined' | 'json' };
}

export const WORKER_ENV = 'WMPROXY_STATIC_WORKER';

function workerEntry(): string {
  const self = fileURLToPath(import.meta.url);
  return self.replace(/workers\.(ts|js)$/, 'worker-main.$1');
}

interface WorkerHandle {
  kill(): void;
  exited: Promise<void>;
}

function waitReady(child: ChildProcess | ReturnType<typeof cluster.fork>, label: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: unknown) => {
      const port = (message as { ready?: number })?.ready;
      if (typeof port === 'number') {
        child.off('message', onMessage);
        resolve(port);
      }
    };
    child.on('message', onMessage);
    child.once('exit', (code: number | null) => reject(new Error(`${label} exited (${code}) before listening`)));
  });
}

/**
 * Bind `host:port` without SO_REUSEPORT and let go. On Bun the workers bind
 * with it, which would also join a port another program holds with it (and
 * split its connections); on Node a taken port would only show as "worker 0
 * exited". This fails with EADDRINUSE instead. (A program binding between
 * this check and the workers' bind is not caught.)
 */
async function checkFree(host: string, port: number): Promise<void> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(listenError(error, formatHostPort(host, port))));
    server.listen({ host, port, reusePort: false }, () => resolve());
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export async function startWorkers(
  count: number,
  spec: WorkerSpec,
  startLocal: (reusePort: boolean) => Promise<StaticServer>,
  runtime: 'bun' | 'node',
  handler: StaticHandler,
  host: string,
  port: number,
): Promise<StaticServer> {
  const handles: WorkerHandle[] = [];
  const stopAll = async () => {
    for (const handle of handles) handle.kill();
    await Promise.all(handles.map((handle) => handle.exited));
  };
  try {
    if (port !== 0) await checkFree(host, port);
    if (runtime === 'bun') {
      // This process serves too; the others join its port with SO_REUSEPORT.
      const local = await startLocal(true);
      for (let i = 1; i < count; i++) {
        const child = spawn(process.execPath, [workerEntry()], {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          env: { ...process.env, [WORKER_ENV]: JSON.stringify({ ...spec, options: { ...spec.options, listen: `${local.host}:${local.port}` } }) },
        });
        handles.push({ kill: () => child.kill('SIGTERM'), exited: new Promise((resolve) => child.once('exit', () => resolve())) });
        await waitReady(child, `worker ${i}`);
      }
      return { ...local, close: async () => { await stopAll(); await local.close(); } };
    }
    cluster.setupPrimary({ exec: workerEntry(), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] } as Parameters<typeof cluster.setupPrimary>[0]);
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    let bound = 0;
    for (let i = 0; i < count; i++) {
      const worker = cluster.fork({ [WORKER_ENV]: JSON.stringify(spec) });
      handles.push({
        kill: () => worker.process.kill('SIGTERM'),
        exited: new Promise((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve()))),
      });
      bound = await waitReady(worker as unknown as ChildProcess, `worker ${i}`);
    }
    return { runtime: 'node', host, port: bound, url: serverUrl(host, bound), handler, close: stopAll };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
