/**
 * The file server never shares a port it did not ask to share: a port another
 * program holds (even with SO_REUSEPORT) is an error naming the address, with
 * one process or with workers (which share the port among themselves only).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStaticServer } from '../src/index.js';

const root = mkdtempSync(join(tmpdir(), 'wmproxy-static-listen-'));
writeFileSync(join(root, 'index.html'), 'hello\n');
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const onBun = typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined';

/** A listener on a free loopback port, bound with SO_REUSEPORT where the runtime supports it (Bun; Node from 22.12). */
async function holder(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, reusePort: true } as net.ListenOptions, resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

for (const runtime of onBun ? (['bun', 'node'] as const) : (['node'] as const)) {
  test(`${runtime} adapter: a taken port fails with EADDRINUSE naming the address`, async () => {
    const taken = await holder();
    try {
      await assert.rejects(createStaticServer({ root, listen: `127.0.0.1:${taken.port}`, runtime }), {
        code: 'EADDRINUSE',
        message: `listen EADDRINUSE: address already in use 127.0.0.1:${taken.port}`,
      });
    } finally {
      await taken.close();
    }
  });
}

test('workers do not join a port another program holds', { timeout: 60_000 }, async () => {
  const taken = await holder();
  try {
    await assert.rejects(createStaticServer({ root, listen: `127.0.0.1:${taken.port}`, workers: 2 }), { code: 'EADDRINUSE' });
  } finally {
    await taken.close();
  }
});
