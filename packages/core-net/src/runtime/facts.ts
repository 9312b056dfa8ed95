/**
 * What the process runs on, decided once at start-up. This folder is the only
 * place that asks (see docs/CONTRIBUTING.md, "Runtime boundary"); every other
 * module imports these facts.
 */

/** The JavaScript runtime of this process; `WMPROXY_RUNTIME` does not change it. */
export const hostRuntime: 'bun' | 'node' = typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined' ? 'bun' : 'node';

/**
 * The socket runtime wmproxy uses: Bun's native sockets (and Bun.serve) on Bun,
 * node:net / node:http elsewhere. `WMPROXY_RUNTIME=node` forces the latter on
 * Bun, for comparison and tests.
 */
export const runtimeName: 'bun' | 'node' = hostRuntime === 'bun' && process.env.WMPROXY_RUNTIME !== 'node' ? 'bun' : 'node';

function nodeAtLeast(major: number, minor: number): boolean {
  const [have, haveMinor] = process.versions.node.split('.').map(Number) as [number, number];
  return have > major || (have === major && haveMinor >= minor);
}

/**
 * Whether processes can share a port by each binding it with SO_REUSEPORT and
 * have the kernel spread connections: Linux only (elsewhere the last binder
 * gets them all), on Bun, and on Node from 22.12 (earlier Node ignores the option).
 */
export const supportsReusePort: boolean = process.platform === 'linux' && (hostRuntime === 'bun' || nodeAtLeast(22, 12));

/** Whether node:cluster can share one listening socket among workers (Node; Bun's cluster cannot). */
export const hasCluster: boolean = hostRuntime === 'node';
