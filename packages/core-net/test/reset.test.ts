/**
 * `Conn.reset()` aborts a connection with a TCP RST, so that the peer reads
 * ECONNRESET instead of a clean end; `destroy()` on Node stays a FIN.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { createSelfSignedCertificate, type Conn } from '../src/index.js';
import { testRuntimes } from './helpers.js';

const { runtimes } = await testRuntimes();

/** A node:net peer that counts what its one connection received and reports how it ended: 'reset' (ECONNRESET) or 'fin'. */
async function peer(): Promise<{ port: number; received(): number; ended: Promise<'reset' | 'fin'>; close(): void }> {
  let settle!: (how: 'reset' | 'fin') => void;
  const ended = new Promise<'reset' | 'fin'>((resolve) => (settle = resolve));
  let received = 0;
  const server = net.createServer((socket) => {
    let how: 'reset' | 'fin' | undefined;
    socket.on('data', (chunk) => (received += chunk.length));
    socket.on('error', (error: NodeJS.ErrnoException) => (how ??= error.code === 'ECONNRESET' ? 'reset' : 'fin'));
    socket.on('end', () => (how ??= 'fin'));
    socket.on('close', () => settle(how ?? 'fin'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, received: () => received, ended, close: () => server.close() };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

for (const runtime of runtimes) {
  test(`${runtime.name}: reset() makes the TCP peer read ECONNRESET, and close is delivered once`, async () => {
    const target = await peer();
    try {
      const conn = await runtime.connectIp({ ip: '127.0.0.1', port: target.port, timeoutMs: 5_000 });
      let closes = 0;
      const closed = new Promise<void>((resolve) => conn.setHandler({ data() {}, close: () => (closes++, resolve()) }));
      conn.write(new Uint8Array(1024));
      // (A node:net peer told of bytes and the RST in one read may report 'end' first: the bytes go before.)
      await until(() => target.received() === 1024);
      conn.reset();
      conn.reset();
      await closed;
      assert.equal(conn.closed, true);
      assert.equal(await target.ended, 'reset');
      assert.equal(closes, 1);
    } finally {
      target.close();
    }
  });
}

test('node: destroy() still ends with a FIN (reset is the explicit abort)', async () => {
  const node = runtimes.find((runtime) => runtime.name === 'node')!;
  const target = await peer();
  try {
    const conn = await node.connectIp({ ip: '127.0.0.1', port: target.port, timeoutMs: 5_000 });
    conn.setHandler({ data() {}, close() {} });
    conn.destroy();
    assert.equal(await target.ended, 'fin');
  } finally {
    target.close();
  }
});

for (const runtime of runtimes) {
  // node:tls on Bun has no TCP handle under its TLS socket to reset: that one closes as destroy does.
  const skip = runtime.name === 'node' && process.versions.bun !== undefined;
  test(`${runtime.name}: reset() of an accepted TLS connection makes the TLS peer read ECONNRESET, not an end`, { skip }, async () => {
    // On Node a TLS socket's handle is not a TCP handle: reset() reaches the TCP handle under it (it used to close with a FIN).
    const { cert, key } = createSelfSignedCertificate({ altNames: ['localhost', '127.0.0.1'] });
    let accepted!: (conn: Conn) => void;
    const serverConn = new Promise<Conn>((resolve) => (accepted = resolve));
    const listener = await runtime.listen({ host: '127.0.0.1', port: 0, tls: { cert, key }, onConnection: (conn) => accepted(conn) });
    const client = tls.connect({ host: '127.0.0.1', port: listener.port, rejectUnauthorized: false });
    const how = new Promise<string>((resolve) => {
      client.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      client.on('end', () => resolve('end'));
      client.on('close', () => resolve('close'));
    });
    try {
      client.write('x');
      const conn = await serverConn;
      const closed = new Promise<void>((resolve) => conn.setHandler({ data: (c) => c.reset(), close: () => resolve() }));
      assert.equal(await how, 'ECONNRESET');
      await closed;
      assert.equal(conn.closed, true);
    } finally {
      client.destroy();
      listener.close();
    }
  });
}
