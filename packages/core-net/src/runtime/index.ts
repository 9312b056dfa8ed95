import type { Runtime } from '../types.js';
import { runtimeName } from './facts.js';
import { nodeRuntime } from './node/index.js';

/**
 * The runtime chosen once at start-up: Bun's native sockets when running on
 * Bun (about 1.6x node:net's relaying throughput there), node:net elsewhere.
 * `WMPROXY_RUNTIME=node` forces the fallback, for comparison and tests.
 */
async function chooseRuntime(): Promise<Runtime> {
  if (runtimeName === 'bun') {
    const { bunRuntime } = await import('./bun/index.js');
    return bunRuntime;
  }
  return nodeRuntime;
}

let current: Runtime = nodeRuntime;
const ready: Promise<Runtime> = chooseRuntime().then((runtime) => (current = runtime));

/** The active runtime. Before `runtimeReady` settles this is the node:net one. */
export function runtime(): Runtime {
  return current;
}

export function runtimeReady(): Promise<Runtime> {
  return ready;
}

/** Use a specific runtime (tests compare both under Bun). */
export function setRuntime(next: Runtime): void {
  current = next;
}

export { nodeRuntime };
