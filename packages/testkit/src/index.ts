import net from 'node:net';
import { existsSync } from 'node:fs';

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

/**
 * A TCP server on `host` (default 127.0.0.1), port 0, that hands each socket
 * to `onSocket` (half-open allowed) and, on `close()`, destroys the sockets
 * still open so the test process can exit.
 */
export async function trackedServer(onSocket: (socket: net.Socket) => void, host = '127.0.0.1'): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A listener on a free loopback port, bound with SO_REUSEPORT where the
 * runtime supports it (Bun; Node from 22.12): the socket another program or
 * a Bun.serve app would hold, for tests that our listeners never join it.
 */
export async function reusePortHolder(): Promise<{ port: number; accepted: () => number; close(): Promise<void> }> {
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, reusePort: true } as net.ListenOptions, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A request as a recording server read it. */
export interface RecordedRequest {
  head: string;
  body: string;
}

/**
 * A server that records every request it reads, framed by Content-Length
 * only (the way a simple origin or parent proxy reads), and answers each with
 * `ok N`: what reached the next hop, byte for byte, for smuggling tests.
 */
export async function recordingServer(): Promise<{ port: number; address: string; seen: RecordedRequest[]; close(): Promise<void> }> {
  const seen: RecordedRequest[] = [];
  const server = await trackedServer((socket) => {
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString('latin1');
        const match = /\r\ncontent-length:\s*([0-9]+)/i.exec(head);
        const length = match ? Number(match[1]) : 0;
        if (buffered.length < end + 4 + length) return;
        seen.push({ head, body: buffered.subarray(end + 4, end + 4 + length).toString('latin1') });
        buffered = buffered.subarray(end + 4 + length);
        const text = `ok ${seen.length}`;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
      }
    });
  });
  return { port: server.port, address: `127.0.0.1:${server.port}`, seen, close: server.close };
}

/** Debian's Chromium, when installed. */
export const CHROMIUM: string | undefined = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path));

/**
 * Flags for headless Chromium on a machine with no network but loopback:
 * without the background-networking ones it keeps dialling Google's hosts.
 */
export function chromiumFlags(profileDir: string): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
    `--user-data-dir=${profileDir}`,
  ];
}
export { packageReadme, readmeTable, tableCell, numbersIn } from './readme.js';
export { etcdServer, ETCD, type EtcdServer } from './etcd.js';
export { redisServer, REDIS_SERVER, type RedisServer } from './redis.js';
