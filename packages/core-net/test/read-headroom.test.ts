/**
 * `Conn.readHeadroom`: bytes before a delivered chunk that its handler may
 * overwrite (a WebSocket bridge writes its frame header there). They must be
 * inside the chunk's own buffer, and the count must be 0 outside a `data`
 * call (a chunk replayed later by setHandler has none).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { testRuntimes } from './helpers.js';

const { runtimes } = await testRuntimes();

for (const runtime of runtimes) {
  test(`${runtime.name}: a chunk's headroom lies in its own buffer and is writable without touching the bytes it carries`, async () => {
    const payload = Buffer.from('x'.repeat(100_000));
    const server = net.createServer((socket) => socket.end(payload));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const conn = await runtime.connectIp({ ip: '127.0.0.1', port: (server.address() as net.AddressInfo).port, timeoutMs: 5_000 });
    const received: Buffer[] = [];
    const headrooms: number[] = [];
    await new Promise<void>((resolve) => {
      conn.setHandler({
        data(c, chunk) {
          const headroom = c.readHeadroom ?? 0;
          headrooms.push(headroom);
          assert.ok(chunk.byteOffset >= headroom, 'the headroom is inside the buffer');
          // Scribble over it: the bytes the chunk carries stay as they were.
          new Uint8Array(chunk.buffer, chunk.byteOffset - headroom, headroom).fill(0xee);
          received.push(Buffer.from(chunk));
        },
        end: (c) => c.end(),
        close: () => resolve(),
      });
    });
    server.close();
    assert.ok(Buffer.concat(received).equals(payload));
    assert.equal(conn.readHeadroom ?? 0, 0, 'none outside a data call');
    // node:net's plain outgoing sockets copy each read out of a shared buffer, leaving room for a frame header.
    if (runtime.name === 'node') assert.ok(headrooms.every((h) => h >= 14), String(headrooms));
  });
}
