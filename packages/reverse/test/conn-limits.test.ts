import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { ListenerSpec } from '../src/index.js';
import { ReverseProxy } from '../src/index.js';
import { memoryLogger, rawExchange, startBackend, startProxy, startRaw, until } from './helpers.js';

/** A keep-alive client connection that sends one GET at a time and reads the Content-Length answer. */
class Client {
  readonly socket: net.Socket;
  private buffer = '';
  private waiting: ((reply: string) => void) | undefined;
  closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.deliver();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.(this.buffer);
    });
  }

  private deliver(): void {
    const end = this.buffer.indexOf('\r\n\r\n');
    if (end < 0 || !this.waiting) return;
    const length = Number(/content-length: *(\d+)/i.exec(this.buffer.slice(0, end))?.[1] ?? 0);
    if (this.buffer.length < end + 4 + length) return;
    const reply = this.buffer.slice(0, end + 4 + length);
    this.buffer = this.buffer.slice(end + 4 + length);
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting(reply);
  }

  get(path = '/'): Promise<string> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: test\r\n\r\n`);
    });
  }
}

const statusOf = (reply: string): number => Number(reply.slice(9, 12));

/** Send `payload` on a new connection; the bytes received until the close (a FIN or, on Bun, a reset). */
function closedWith(port: number, payload: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(payload));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => {});
    socket.on('close', () => resolve(text));
  });
}

test('an HTTP listener answers 503 with Connection: close to a client over max_connections_per_ip, keeps its open connections serving, and a reload raising the limit admits it', async () => {
  const backend = await startBackend('app');
  const { logger, lines } = memoryLogger();
  const listener = (perIp: number): ListenerSpec => ({ listen: '127.0.0.1:0', maxConnectionsPerIp: perIp, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] });
  const upstreams = [{ name: 'app', servers: [{ address: backend.address }] }];
  const { proxy, port } = await startProxy({ upstreams, servers: [listener(2)], logger });
  const clients = [new Client(port), new Client(port)];
  try {
    for (const client of clients) assert.equal(statusOf(await client.get()), 200);
    const refused = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: test\r\n\r\n');
    assert.match(refused, /^HTTP\/1\.1 503 /);
    assert.match(refused, /\r\nConnection: close\r\n/i);
    assert.match(refused, /\r\nRetry-After: 1\r\n/i);
    assert.equal(backend.hits, 2, 'the refused request never reached the backend');
    assert.ok(lines.some((line) => line.includes('connection limit reached') && line.includes('limit=client')), lines.join('\n'));
    // The clients within the limit carry on.
    for (const client of clients) assert.equal(statusOf(await client.get()), 200);
    // A reload keeps the listener (same address) and applies its new limits to new connections.
    await proxy.reload({ upstreams, servers: [{ ...listener(3), listen: proxy.addresses[0]! }], logger });
    const third = new Client(port);
    clients.push(third);
    assert.equal(statusOf(await third.get()), 200);
    assert.equal(clients.filter((client) => client.closed).length, 0);
  } finally {
    for (const client of clients) client.socket.destroy();
    await proxy.close();
    await backend.close();
  }
});

test('a listener with connectionLimitStatus 0 closes a connection over max_connections without a byte', async () => {
  const backend = await startBackend('app');
  const upstreams = [{ name: 'app', servers: [{ address: backend.address }] }];
  const { proxy, port } = await startProxy({ upstreams, servers: [{ listen: '127.0.0.1:0', maxConnections: 1, connectionLimitStatus: 0, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }] });
  const client = new Client(port);
  try {
    assert.equal(statusOf(await client.get()), 200);
    assert.equal(await closedWith(port, 'GET / HTTP/1.1\r\nHost: test\r\n\r\n'), '');
  } finally {
    client.socket.destroy();
    await proxy.close();
    await backend.close();
  }
});

test('a TCP stream over max_connections closes the new connection at once and never opens an upstream connection for it', async () => {
  const echo = await startRaw((socket) => {
    socket.write('hello\n');
    socket.pipe(socket);
  });
  const proxy = new ReverseProxy({
    upstreams: [{ name: 'tcp', servers: [{ address: echo.address }] }],
    streams: [{ protocol: 'tcp', listen: '127.0.0.1:0', upstream: 'tcp', maxConnections: 1 }],
    health: { passive: { enabled: false } },
  });
  await proxy.start();
  const port = Number(proxy.streams[0]!.addresses[0]!.split(':').pop());
  const first = net.connect(port, '127.0.0.1');
  first.on('error', () => {});
  try {
    await new Promise<void>((resolve) => first.once('data', () => resolve()));
    assert.equal(await closedWith(port, 'ping'), '');
    assert.equal(echo.sockets.size, 1);
    first.destroy();
    await until(() => echo.sockets.size === 0, 'the first stream to close');
    assert.match(await rawExchange(port, 'ping', 300), /^hello\nping/);
  } finally {
    first.destroy();
    await proxy.close();
    await echo.close();
  }
});
