import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import {
  Server,
  connect,
  relay,
  parseAddress,
  NetError,
  nodeRuntime,
  runtimeReady,
  setRuntime,
  connPair,
  type Conn,
  type Runtime,
  type RelayStats,
} from '../src/index.js';
import { echoServer, closedPort, roundTrip } from './helpers.js';

const runtimes: Runtime[] = [nodeRuntime];
const detected = await runtimeReady();
if (detected.name === 'bun') runtimes.unshift(detected);

/** A TCP forwarder built only from core-net: what every proxy here does after its handshake. */
async function forwarder(targetPort: number, idleTimeoutMs?: number) {
  const stats: RelayStats[] = [];
  const server = await new Server({
    addresses: [parseAddress('127.0.0.1:0')],
    onConnection(client) {
      connect({ host: '127.0.0.1', port: targetPort, timeoutMs: 2000 }).then(
        (upstream) => relay(client, upstream, { idleTimeoutMs }).then((result) => stats.push(result)),
        () => client.destroy(),
      );
    },
  }).start();
  const port = Number(server.boundAddresses[0]!.split(':').pop());
  return { server, port, stats };
}

for (const rt of runtimes) {
  describe(`core-net on the ${rt.name} runtime`, () => {
    setRuntime(rt);
    after(() => setRuntime(detected));

    test('relays bytes both ways and counts them', async () => {
      setRuntime(rt);
      const echo = await echoServer();
      const { server, port, stats } = await forwarder(echo.port);
      const payload = randomBytes(3 * 1024 * 1024);
      const reply = await roundTrip(port, payload);
      assert.equal(createHash('sha256').update(reply).digest('hex'), createHash('sha256').update(payload).digest('hex'));
      await server.shutdown({ deadlineMs: 2000 });
      await echo.close();
      await until(() => stats.length > 0);
      assert.equal(stats.length, 1);
      assert.equal(stats[0]!.bytesUp, payload.length);
      assert.equal(stats[0]!.bytesDown, payload.length);
      assert.equal(stats[0]!.reason, 'done');
    });

    test('passes a half-close on while the other direction keeps flowing', async () => {
      setRuntime(rt);
      // The backend answers only after it sees the client's FIN.
      const backend = net.createServer({ allowHalfOpen: true }, (socket) => {
        let seen = 0;
        socket.on('data', (chunk) => (seen += chunk.length));
        socket.on('end', () => socket.end(`got ${seen} bytes`));
      });
      await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
      const { server, port } = await forwarder((backend.address() as net.AddressInfo).port);
      const reply = await roundTrip(port, 'x'.repeat(1000));
      assert.equal(reply.toString(), 'got 1000 bytes');
      await server.shutdown({ deadlineMs: 1000 });
      backend.close();
    });

    test('applies backpressure: a slow reader bounds what the relay buffers', async () => {
      setRuntime(rt);
      // The backend floods 64 MiB; the client reads nothing for a while.
      const total = 64 * 1024 * 1024;
      const backend = net.createServer((socket) => {
        const chunk = Buffer.alloc(1024 * 1024, 7);
        let sent = 0;
        const pump = (): void => {
          while (sent < total) {
            sent += chunk.length;
            if (!socket.write(chunk)) return void socket.once('drain', pump);
          }
          socket.end();
        };
        socket.on('error', () => {});
        pump();
      });
      await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
      const { server, port, stats } = await forwarder((backend.address() as net.AddressInfo).port);
      const client = net.connect({ port, host: '127.0.0.1' });
      client.pause();
      await new Promise((resolve) => setTimeout(resolve, 300));
      // While paused, the relay cannot have moved anywhere near everything.
      const relayConn = [...(server as unknown as { live: Set<Conn> }).live][0]!;
      assert.ok(relayConn.bytesWritten < total / 2, `relay wrote ${relayConn.bytesWritten} bytes to a paused client`);
      let received = 0;
      client.on('data', (chunk: Buffer) => (received += chunk.length));
      client.resume();
      await new Promise((resolve) => client.on('close', resolve));
      assert.equal(received, total);
      await server.shutdown({ deadlineMs: 1000 });
      backend.close();
      await until(() => stats.length > 0);
      assert.equal(stats[0]!.bytesDown, total);
    });

    test('a chunk handed to data() is the handler\'s to keep: later reads never overwrite it', async () => {
      setRuntime(rt);
      const backend = net.createServer((socket) => {
        socket.write(Buffer.alloc(1000, 'a'));
        setTimeout(() => socket.end(Buffer.alloc(1000, 'b')), 50);
      });
      await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
      const conn = await connect({ host: '127.0.0.1', port: (backend.address() as net.AddressInfo).port, timeoutMs: 2000 });
      const kept: Uint8Array[] = [];
      await new Promise<void>((resolve) =>
        conn.setHandler({
          data: (_conn, chunk) => kept.push(chunk),
          end: (c) => c.end(),
          close: () => resolve(),
        }),
      );
      backend.close();
      const all = Buffer.concat(kept);
      assert.equal(all.toString(), 'a'.repeat(1000) + 'b'.repeat(1000));
    });

    test('closes both sides after the idle timeout', async () => {
      setRuntime(rt);
      const echo = await echoServer();
      const { server, port, stats } = await forwarder(echo.port, 100);
      const client = net.connect({ port, host: '127.0.0.1' });
      client.on('error', () => {});
      await new Promise((resolve) => client.on('close', resolve));
      await server.shutdown({ deadlineMs: 1000 });
      await echo.close();
      await until(() => stats.length > 0);
      assert.equal(stats[0]!.reason, 'idle');
      assert.equal((stats[0]!.error as NetError).code, 'EIDLE');
    });

    test('connect reports refused and timed-out targets with typed errors', async () => {
      setRuntime(rt);
      const port = await closedPort();
      await assert.rejects(connect({ host: '127.0.0.1', port, timeoutMs: 2000 }), (error: unknown) => error instanceof NetError && error.code === 'ECONNREFUSED');
      // A resolver that never answers stands in for a blackholed name.
      await assert.rejects(
        connect({ host: 'blackhole.test', port: 80, timeoutMs: 50, resolver: () => new Promise(() => {}) }),
        (error: unknown) => error instanceof NetError && error.code === 'ETIMEDOUT',
      );
      await assert.rejects(
        connect({ host: 'nowhere.test', port: 80, timeoutMs: 500, resolver: async () => [] }),
        (error: unknown) => error instanceof NetError && error.code === 'ENOTFOUND',
      );
    });

    test('connect tries every resolved address until one answers', async () => {
      setRuntime(rt);
      const echo = await echoServer();
      const dead = await closedPort();
      const conn = await connect({ host: 'multi.test', port: echo.port, timeoutMs: 2000, resolver: async () => ['127.0.0.2', '127.0.0.1'] });
      assert.equal(conn.remoteAddress.replace('::ffff:', ''), '127.0.0.1');
      conn.destroy();
      await assert.rejects(
        connect({ host: 'multi.test', port: dead, timeoutMs: 2000, resolver: async () => ['127.0.0.1', '127.0.0.3'] }),
        (error: unknown) => error instanceof NetError && error.code === 'ECONNREFUSED',
      );
      await echo.close();
    });

    test('connects to IPv6 loopback and localhost names', async () => {
      setRuntime(rt);
      const server = net.createServer((socket) => socket.end('v6'));
      await new Promise<void>((resolve) => server.listen(0, '::1', resolve));
      const port = (server.address() as net.AddressInfo).port;
      const reply = await readAll(await connect({ host: '::1', port }));
      assert.equal(reply, 'v6');
      server.close();
    });

    test('graceful shutdown waits for live connections, then forces the rest', async () => {
      setRuntime(rt);
      const echo = await echoServer();
      const { server, port } = await forwarder(echo.port);
      const client = net.connect({ port, host: '127.0.0.1' });
      client.on('error', () => {});
      await new Promise((resolve) => client.on('connect', resolve));
      client.write('hello');
      await new Promise((resolve) => client.once('data', resolve));
      const result = await server.shutdown({ deadlineMs: 150 });
      assert.equal(result.forced, 1);
      // New connections are refused once shutdown began.
      await assert.rejects(
        new Promise((resolve, reject) => net.connect({ port, host: '127.0.0.1' }).on('connect', resolve).on('error', reject)),
      );
      await echo.close();
    });

    test('graceful shutdown returns at once when connections finish before the deadline', async () => {
      setRuntime(rt);
      const echo = await echoServer();
      const { server, port } = await forwarder(echo.port);
      const reply = roundTrip(port, 'bye');
      assert.equal((await reply).toString(), 'bye');
      const result = await server.shutdown({ deadlineMs: 5000 });
      assert.equal(result.forced, 0);
      await echo.close();
    });

    test('buffers bytes that arrive before the owner installs a handler, and replays unread bytes first', async () => {
      setRuntime(rt);
      let resolveConn: (conn: Conn) => void;
      const accepted = new Promise<Conn>((resolve) => (resolveConn = resolve));
      const server = await new Server({ addresses: [parseAddress('127.0.0.1:0')], onConnection: (conn) => resolveConn(conn) }).start();
      const port = Number(server.boundAddresses[0]!.split(':').pop());
      const client = net.connect({ port, host: '127.0.0.1' });
      client.write('late bytes');
      const conn = await accepted;
      await new Promise((resolve) => setTimeout(resolve, 50));
      const seen: string[] = [];
      conn.setHandler({ data: (_c, chunk) => seen.push(Buffer.from(chunk).toString()), close() {} }, Buffer.from('unread|'));
      assert.equal(seen.join(''), 'unread|late bytes');
      client.destroy();
      await server.shutdown({ deadlineMs: 500 });
    });
  });
}

test('an upstream paused for the client\'s drain is not left open when the client goes away without an error (a server shutdown\'s destroy)', async () => {
  const [client, clientPeer] = connPair(1024);
  const [upstream, upstreamPeer] = connPair(1024);
  clientPeer.setHandler({ data() {}, close() {} });
  let upstreamClosed = false;
  upstreamPeer.setHandler({ data() {}, end: (c) => c.end(), close: () => void (upstreamClosed = true) });
  const done = relay(client, upstream, { idleTimeoutMs: 0 });
  // The client's reader takes nothing: the upstream's bytes fill the client's queue and the relay pauses the upstream.
  clientPeer.pause();
  for (let i = 0; i < 8; i++) upstreamPeer.write(new Uint8Array(1024));
  await new Promise((resolve) => setTimeout(resolve, 20));
  // The case under test: the upstream's bytes stay queued (a zero-length write reports the queue).
  assert.equal(upstreamPeer.write(new Uint8Array(0)), false, 'the relay paused the upstream for the client\'s drain');
  // Gone without an error, as Server.shutdown() destroys what outlives its deadline: the drain will never come.
  client.destroy();
  await until(() => upstreamClosed, 3000);
  const stats = await done;
  assert.equal(stats.reason, 'done');
});

function readAll(conn: Conn): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    conn.setHandler({
      data: (_c, chunk) => chunks.push(Buffer.from(chunk)),
      end: (c) => c.end(),
      close: () => resolve(Buffer.concat(chunks).toString()),
    });
  });
}

/** Wait (bounded) for a condition that another socket's close event makes true. */
async function until(condition: () => boolean, limitMs = 5000): Promise<void> {
  const giveUpAt = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
