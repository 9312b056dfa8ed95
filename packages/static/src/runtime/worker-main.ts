// Entry of a worker process started by `createStaticServer({ workers: N })`.
import { AccessLog } from '../access-log.js';
import { createStaticServer } from '../server.js';
import { WORKER_ENV, type WorkerSpec } from './workers.js';

const spec = JSON.parse(process.env[WORKER_ENV] ?? '{}') as WorkerSpec;
const accessLog = spec.accessLog ? new AccessLog(spec.accessLog.destination, spec.accessLog.format) : undefined;
const server = await createStaticServer({ ...spec.options, accessLog, workers: 1, reusePort: true });
process.send?.({ ready: server.port });
const stop = () => {
  void server.close().then(async () => {
    await accessLog?.close();
    process.exit(0);
  });
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('disconnect', stop);
