/**
 * Listeners never share a port they did not ask to share: a port another
 * program holds (even with SO_REUSEPORT, as Bun.serve and Elysia bind) is an
 * error naming the address, on every runtime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Server, nodeRuntime, parseAddress, runtimeReady, type Runtime } from '../src/index.js';
import { reusePortHolder } from '@wmproxy/testkit';

const runtimes: Runtime[] = [nodeRuntime];
const detected = await runtimeReady();
if (detected.name === 'bun') runtimes.unshift(detected);

function connectOnce(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
}

for (const runtime of runtimes) {
  test(`${runtime.name}: listening on a port another socket holds with SO_REUSEPORT fails with EADDRINUSE, and the holder keeps every connection`, async () => {
    const taken = await reusePortHolder();
    try {
      await assert.rejects(
        runtime.listen({ host: '127.0.0.1', port: taken.port, onConnection: (conn) => conn.destroy() }),
        (error: NodeJS.ErrnoException) => {
          assert.equal(error.code, 'EADDRINUSE');
          assert.equal(error.message, `listen EADDRINUSE: address already in use 127.0.0.1:${taken.port}`);
          return true;
        },
      );
      for (let i = 0; i < 8; i++) await connectOnce(taken.port);
      assert.equal(taken.accepted(), 8);
    } finally {
      await taken.close();
    }
  });
}

test('a Server on a taken port fails to start with EADDRINUSE and holds none of its other addresses', async () => {
  const taken = await reusePortHolder();
  const server = new Server({ addresses: [parseAddress('127.0.0.1:0'), parseAddress(`127.0.0.1:${taken.port}`)], onConnection: (conn) => conn.destroy() });
  try {
    await assert.rejects(server.start(), { code: 'EADDRINUSE', message: `listen EADDRINUSE: address already in use 127.0.0.1:${taken.port}` });
    assert.equal(server.listeners.length, 0);
  } finally {
    await taken.close();
  }
});
