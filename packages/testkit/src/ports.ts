import net from 'node:net';

/**
 * A loopback port nothing listens on. It is taken from below the ephemeral
 * range (32768-60999), so a connect to it can never be answered by a TCP
 * self-connect from a source port the kernel happened to pick.
 */
export async function closedPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const server = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!free) continue;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }
}
