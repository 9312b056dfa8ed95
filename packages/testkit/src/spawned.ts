/** What the real-server helpers (etcd, Redis) share: a port the kernel chose, and waiting until the server answers. */
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';

/** A loopback port the kernel just handed out (and that is closed again). */
export function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Poll `ready` until it resolves true; fail if `child` exits or `limitMs` passes first. */
export async function waitUntilReady(name: string, child: ChildProcess, ready: () => Promise<boolean>, limitMs: number): Promise<void> {
  const started = Date.now();
  while (!(await ready())) {
    if (Date.now() - started > limitMs) throw new Error(`${name} did not start within ${limitMs} ms`);
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Kill `child` (SIGKILL, as a crash) and resolve once it is gone. */
export function killChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}
