import { createServer } from 'node:net';
import { formatHostPort } from '../address.js';
import { listenError } from '../runtime/listen-error.js';

/**
 * Bind `host:port` without SO_REUSEPORT and let go; throws the listen error
 * (`code` EADDRINUSE) when anyone holds the port. Workers that bind with
 * SO_REUSEPORT would otherwise join a port another program holds with it (a
 * second wmproxy, a Bun.serve or Elysia app) and split its connections; under
 * node:cluster a taken port would only show as "worker 0 exited". A program
 * binding between this check and the workers' bind is not caught.
 */
export async function checkPortFree(host: string, port: number): Promise<void> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(listenError(error, formatHostPort(host, port))));
    server.listen({ host, port, reusePort: false }, () => resolve());
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
