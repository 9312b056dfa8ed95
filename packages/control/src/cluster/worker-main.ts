/** Entry point of a worker process (started by WorkerSupervisor, never by hand). */
import { runWorker } from './worker.js';

runWorker();
