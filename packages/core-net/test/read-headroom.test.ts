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

for (const runtime of runtimes) {
  test(`${runtime.name}: an accepted connection's chunks are its own, with headroom on Node's libuv sockets, and pause/resume still hold its reads`, async () => {
    const payload = Buffer.alloc(1_000_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 255;
    const received: Buffer[] = [];
    const kept: Buffer[] = [];
    const headrooms: number[] = [];
    let done!: () => void;
    const closed = new Promise<void>((resolve) => (done = resolve));
    let paused = 0;
    const listener = await runtime.listen({
      host: '127.0.0.1',
      port: 0,
      onConnection(conn) {
        conn.setHandler({
          data(c, chunk) {
            headrooms.push(c.readHeadroom ?? 0);
            // Kept as is (no copy): a later read must not overwrite it.
            kept.push(chunk as Buffer);
            received.push(Buffer.from(chunk));
            // Pause now and then: the handle must stop and restart reading.
            if (received.length % 4 === 0) {
              c.pause();
              paused++;
              setTimeout(() => c.resume(), 2);
            }
          },
          end: (c) => c.end(),
          close: () => done(),
        });
      },
    });
    const client = net.connect(listener.port, '127.0.0.1');
    client.on('error', () => {});
    client.end(payload);
    client.resume();
    await closed;
    listener.close();
    client.destroy();
    assert.ok(Buffer.concat(received).equals(payload), 'the bytes arrive whole and in order');
    assert.ok(Buffer.concat(kept).equals(payload), 'no chunk handed out was reused by a later read');
    assert.ok(paused > 0);
    // On Node (libuv handles) accepted sockets read as outgoing ones do, into a shared buffer copied out with room for a frame header.
    if (runtime.name === 'node' && typeof (globalThis as { Bun?: unknown }).Bun === 'undefined') assert.ok(headrooms.every((h) => h >= 14), String(headrooms));
  });
}
