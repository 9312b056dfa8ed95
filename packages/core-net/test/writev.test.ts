/**
 * Conn.writev: several chunks sent together (Node: cork/uncork, one writev),
 * in order, with write's backpressure answer: false with a queue above the
 * high-water mark (then a drain), true when the kernel took everything.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { nodeRuntime, type Conn } from '../src/index.js';

function acceptOne(): Promise<{ port: number; conn: Promise<Conn>; close(): void }> {
  return new Promise((resolve) => {
    let deliver!: (conn: Conn) => void;
    const conn = new Promise<Conn>((r) => (deliver = r));
    void nodeRuntime.listen({ host: '127.0.0.1', port: 0, onConnection: (c) => deliver(c) }).then((listener) => resolve({ port: listener.port, conn, close: () => listener.close() }));
  });
}

test('node: writev sends its chunks in order; false above the high-water mark, then drain; true once sent', async () => {
  const server = await acceptOne();
  const client = net.connect(server.port, '127.0.0.1');
  client.pause();
  const conn = await server.conn;
  try {
    assert.equal(typeof conn.writev, 'function');
    let drained = 0;
    conn.setHandler({ data() {}, drain: () => void drained++, close() {} });
    const small = [Buffer.from('ab'), Buffer.from('cd'), Buffer.from('ef')];
    assert.equal(conn.writev!(small), true);
    // More than the socket buffers take while the client reads nothing: queued, so false.
    const big = Buffer.alloc(16 << 20, 7);
    assert.equal(conn.writev!([Buffer.from('gh'), big]), false);
    const received: Buffer[] = [];
    let length = 0;
    const all = 6 + 2 + big.length;
    await new Promise<void>((resolve) => {
      client.on('data', (chunk: Buffer) => {
        received.push(chunk);
        length += chunk.length;
        if (length >= all) resolve();
      });
      client.resume();
    });
    const bytes = Buffer.concat(received);
    assert.equal(bytes.subarray(0, 8).toString(), 'abcdefgh');
    assert.ok(bytes.subarray(8).equals(big));
    await new Promise((r) => setImmediate(r));
    assert.ok(drained >= 1);
  } finally {
    client.destroy();
    conn.destroy();
    server.close();
  }
});
