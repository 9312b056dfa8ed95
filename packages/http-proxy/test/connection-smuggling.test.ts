import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { RawClient, startProxy } from './helpers.js';

/** A parent proxy that records each request it reads, framed by Content-Length, and answers `ok`. */
async function recordingParent(): Promise<{ port: number; heads: string[]; bodies: string[]; close(): Promise<void> }> {
  const heads: string[] = [];
  const bodies: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
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
        heads.push(head);
        bodies.push(buffered.subarray(end + 4, end + 4 + length).toString('latin1'));
        buffered = buffered.subarray(end + 4 + length);
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    heads,
    bodies,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

test('a Connection header naming Content-Length cannot smuggle a request to the parent proxy', async () => {
  const parent = await recordingParent();
  const child = await startProxy({ upstream: `http://127.0.0.1:${parent.port}` });
  const client = await RawClient.connect(child.port);
  try {
    // What the front proxy's deny list would refuse if it came as a request of its own.
    const smuggled = 'GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n';
    client.send(`POST http://app.test/form HTTP/1.1\r\nHost: app.test\r\nConnection: Content-Length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
    const [response] = await client.responses(1);
    assert.equal(response?.status, 200);
    assert.equal(parent.heads.length, 1, 'the parent read exactly one request');
    assert.match(parent.heads[0]!, /^POST http:\/\/app\.test\/form /);
    assert.match(parent.heads[0]!, new RegExp(`\r\nContent-Length: ${smuggled.length}(\r\n|$)`, 'i'));
    assert.equal(parent.bodies[0], smuggled);
  } finally {
    client.close();
    await child.close();
    await parent.close();
  }
});

test('Content-Length: 7, 7 reaches the next hop as one Content-Length: 7', async () => {
  const parent = await recordingParent();
  const child = await startProxy({ upstream: `http://127.0.0.1:${parent.port}` });
  const client = await RawClient.connect(child.port);
  try {
    client.send('POST http://app.test/ HTTP/1.1\r\nHost: app.test\r\nContent-Length: 7, 7\r\n\r\npayload');
    await client.responses(1);
    const lengths = parent.heads[0]!.split('\r\n').filter((line) => /^content-length:/i.test(line));
    assert.deepEqual(lengths, ['Content-Length: 7']);
  } finally {
    client.close();
    await child.close();
    await parent.close();
  }
});
