// Entry of a worker process started by `createStaticServer({ workers: N })` through core-net's WorkerPool.
import { AccessLog } from '../access-log.js';
import { createStaticServer } from '../server.js';
import type { StaticServer } from './adapter.js';
import type { StaticPrimaryMessage, StaticWorkerMessage } from './workers.js';

function send(message: StaticWorkerMessage): void {
  // A primary that is going away cannot be told anything; `disconnect` stops this worker.
  if (process.connected) process.send!(message, undefined, undefined, () => undefined);
}

if (!process.send) throw new Error('a file-server worker must be started by its primary (no IPC channel)');
let server: StaticServer | undefined;
let accessLog: AccessLog | undefined;
let stopping: Promise<void> | undefined;
const stop = (): Promise<void> =>
  (stopping ??= (async () => {
    await server?.close();
    await accessLog?.close();
    process.disconnect?.();
    process.exit(0);
  })());
// The terminal's Ctrl-C reaches the whole process group: the primary decides.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => void stop());
process.on('disconnect', () => void stop());
process.on('message', (raw) => {
  const message = raw as StaticPrimaryMessage;
  if (message.t === 'stop') {
    void stop();
    return;
  }
  const { spec } = message;
  accessLog = spec.accessLog ? new AccessLog(spec.accessLog.destination, spec.accessLog.format) : undefined;
  createStaticServer({ ...spec.options, accessLog, workers: 1, reusePort: true }).then(
    (started) => {
      server = started;
      if (stopping) void started.close();
      else send({ t: 'ready', port: started.port });
    },
    (error: Error) => {
      send({ t: 'failed', message: error.message });
      setTimeout(() => process.exit(1), 50);
    },
  );
});
send({ t: 'hello' });
