// Through a whole tunnel: large transfers both ways stay within the flow-control
// bounds with a slow visitor, a stalled local service does not slow a parallel
// stream, and a blackholed control connection is detected and replaced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { NetError } from '@wmproxy/core-net';
import { closedPort, trackedServer } from '@wmproxy/testkit';
import { DEFAULT_INITIAL_WINDOW, DEFAULT_MAX_WINDOW, DEFAULT_STREAM_HIGH_WATER, TunnelClient, TunnelServer, parseMapSpec } from '../src/index.js';
import { pattern, until } from './helpers.js';

const MiB = 1024 * 1024;

async function tunnel(map: string[], serverOptions: { heartbeatMs?: number } = {}) {
  // The mux's flow control is under test here: no data connections (data.test.ts has those).
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 't', tls: false, dataPool: 0, ...serverOptions }).start();
  const client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 't', tls: false, backoffInitialMs: 50, backoffMaxMs: 100, mappings: map.map(parseMapSpec) }).start();
  await client.ready();
  return {
    server,
    client,
    async stop() {
      await client.stop({ deadlineMs: 0 });
      await server.stop({ deadlineMs: 0 });
    },
  };
}

const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

test('64 MiB each way with a slow visitor: byte-exact, and queued bytes stay within the largest window and one write buffer per side', async () => {
  const down = pattern(64 * MiB, 11);
  const upHash = createHash('sha256');
  let upBytes = 0;
  // The local service sends 64 MiB and hashes what it receives.
  const local = await trackedServer((socket) => {
    socket.on('data', (chunk) => {
      upHash.update(chunk);
      upBytes += chunk.byteLength;
    });
    socket.end(down);
  });
  const publicPort = await closedPort();
  const t = await tunnel([`big=tcp:127.0.0.1:${local.port}:${publicPort}`]);
  let maxQueued = 0;
  const sample = setInterval(() => {
    const mux = t.client.sessionMux!;
    const stats = mux.stats();
    const [serverSide] = t.server.clients();
    maxQueued = Math.max(maxQueued, stats.queuedBytes + stats.bufferedBytes, serverSide ? serverSide.queuedBytes + serverSide.bufferedBytes : 0);
  }, 2);
  try {
    const received = createHash('sha256');
    let got = 0;
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: publicPort, allowHalfOpen: true });
      socket.on('error', reject);
      // A slow reader: pause after every chunk, resume a moment later.
      socket.on('data', (chunk) => {
        received.update(chunk);
        got += chunk.byteLength;
        socket.pause();
        setImmediate(() => socket.resume());
      });
      socket.on('end', () => resolve());
      const up = pattern(64 * MiB, 12);
      let at = 0;
      const write = (): void => {
        while (at < up.byteLength) {
          const piece = up.subarray(at, at + 256 * 1024);
          at += piece.byteLength;
          if (!socket.write(piece)) return void socket.once('drain', write);
        }
        socket.end();
      };
      write();
    });
    assert.equal(got, down.byteLength);
    assert.equal(received.digest('hex'), sha(down));
    await until(() => upBytes === 64 * MiB, 'the upload to arrive');
    assert.equal(upHash.digest('hex'), sha(pattern(64 * MiB, 12)));
    // Per stream and direction: at most a (grown) window in flight/buffered plus a writer's high-water mark (and one chunk).
    const bound = 2 * (DEFAULT_MAX_WINDOW + DEFAULT_STREAM_HIGH_WATER + 256 * 1024);
    assert.ok(maxQueued <= bound, `max queued ${maxQueued} > ${bound}`);
  } finally {
    clearInterval(sample);
    await t.stop();
    await local.close();
  }
});

test('a stalled local service does not slow a parallel stream of the same tunnel', async () => {
  // Local service: connections whose first byte is "S" are never read (stalled); others echo.
  const local = await trackedServer((socket) => {
    socket.once('data', (first) => {
      if (first[0] === 0x53) {
        socket.pause();
        return;
      }
      socket.write(first);
      socket.on('data', (chunk) => socket.write(chunk));
      socket.on('end', () => socket.end());
    });
  });
  const publicPort = await closedPort();
  const t = await tunnel([`svc=tcp:127.0.0.1:${local.port}:${publicPort}`]);
  try {
    // The stalled visitor keeps writing until everything backs up.
    const stalled = net.connect({ host: '127.0.0.1', port: publicPort });
    stalled.on('error', () => undefined);
    const junk = Buffer.alloc(64 * 1024, 0x53);
    let stalledWritten = 0;
    await new Promise<void>((resolve) => {
      const fill = (): void => {
        while (stalled.write(junk)) stalledWritten += junk.byteLength;
        stalledWritten += junk.byteLength;
        // Once the kernel, the tunnel and the local socket are all full, the writes stop draining.
        const timer = setTimeout(resolve, 300);
        stalled.once('drain', () => {
          clearTimeout(timer);
          fill();
        });
      };
      fill();
    });
    // A healthy stream moves 16 MiB through the same session, byte-exact.
    const data = pattern(16 * MiB, 5);
    const echoed = await new Promise<Buffer>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: publicPort, allowHalfOpen: true });
      const chunks: Buffer[] = [];
      socket.on('data', (chunk) => chunks.push(chunk));
      socket.on('error', reject);
      socket.on('end', () => resolve(Buffer.concat(chunks)));
      socket.end(data);
    });
    assert.equal(echoed.byteLength, data.byteLength);
    assert.ok(echoed.equals(data));
    // The stalled stream is still open, holding its bounded share.
    assert.ok(!stalled.destroyed);
    assert.equal(t.client.sessionMux!.streams.size, 1);
    assert.ok(stalledWritten > DEFAULT_INITIAL_WINDOW);
    stalled.destroy();
  } finally {
    await t.stop();
    await local.close();
  }
});

test('a blackholed control connection is detected within two heartbeats; the client reconnects and registers again', async () => {
  const echo = await trackedServer((socket) => socket.pipe(socket));
  const publicPort = await closedPort();
  const t = await tunnel([`e=tcp:127.0.0.1:${echo.port}:${publicPort}`], { heartbeatMs: 200 });
  try {
    const disconnected = new Promise<Error | undefined>((resolve) => t.client.once('disconnected', resolve));
    const registered = new Promise((resolve) => t.client.once('registered', resolve));
    // Stop reading the control connection without closing it.
    t.client.sessionMux!.conn.pause();
    const error = await disconnected;
    assert.ok(error instanceof NetError);
    assert.equal(error.code, 'ETIMEDOUT');
    await registered;
    assert.equal(t.client.status().reconnects, 1);
    await until(() => t.server.clients().length === 1, 'the old session to be dropped by the server');
    const reply = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: publicPort });
      socket.once('data', (chunk) => {
        resolve(chunk.toString());
        socket.destroy();
      });
      socket.write('alive');
    });
    assert.equal(reply, 'alive');
  } finally {
    await t.stop();
    await echo.close();
  }
});

test('1,000 idle streams over one tunnel hold no buffered bytes and one stream object each per side, and all go when the visitors leave', async () => {
  const STREAMS = 1000;
  const locals = new Set<net.Socket>();
  let greeted = 0;
  const local = await trackedServer((socket) => {
    locals.add(socket);
    socket.on('data', (chunk) => (greeted += chunk.byteLength));
    socket.on('end', () => socket.end());
    socket.on('close', () => locals.delete(socket));
  });
  const publicPort = await closedPort();
  const t = await tunnel([`idle=tcp:127.0.0.1:${local.port}:${publicPort}`]);
  const visitors: net.Socket[] = [];
  try {
    for (let batch = 0; batch < STREAMS / 100; batch++) {
      await Promise.all(
        Array.from({ length: 100 }, () =>
          new Promise<void>((resolve, reject) => {
            const socket = net.connect({ host: '127.0.0.1', port: publicPort }, () => {
              socket.write('hello\n');
              resolve();
            });
            socket.on('error', reject);
            visitors.push(socket);
          }),
        ),
      );
    }
    await until(() => locals.size === STREAMS && greeted === STREAMS * 6, `every visitor reached the local service (${locals.size}, ${greeted} bytes)`, 30_000);
    const serverMux = () => t.server.clients()[0]!;
    const clientMux = t.client.sessionMux!;
    assert.equal(serverMux().openStreams, STREAMS, 'one stream per visitor on the server side');
    assert.equal(clientMux.streams.size, STREAMS, 'and one on the client side');
    // Idle: nothing is queued for sending or held unread on either side, stream by stream.
    await until(() => serverMux().queuedBytes === 0 && serverMux().bufferedBytes === 0, 'the server side settles');
    const stats = clientMux.stats();
    assert.equal(stats.queuedBytes, 0);
    assert.equal(stats.bufferedBytes, 0);
    for (const stream of clientMux.streams.values()) {
      assert.equal(stream.queued, 0);
      assert.equal(stream.inboxBytes, 0);
      assert.ok(stream.windowSize <= DEFAULT_INITIAL_WINDOW, 'an idle stream never grew its window');
    }
    // The visitors leave: no stream object stays behind on either side.
    for (const socket of visitors) socket.destroy();
    await until(() => serverMux().openStreams === 0 && clientMux.streams.size === 0 && locals.size === 0, 'every stream closed on both sides', 30_000);
  } finally {
    for (const socket of visitors) socket.destroy();
    await t.stop();
    await local.close();
  }
});
