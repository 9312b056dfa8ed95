/**
 * `ReverseProxy.connectUpstream`: the pick-and-connect of an upstream group
 * for bridges (ws2tcp): balanced, a refusing server skipped and reported,
 * the connection counted as its server's while it is open.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NetError, type Conn } from '@wmproxy/core-net';
import { ReverseProxy } from '../src/index.js';
import { startRaw, deadPort, until } from './helpers.js';

/** The first line a server greets with. */
function greeting(conn: Conn): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    conn.setHandler({
      data(_conn, chunk) {
        text += Buffer.from(chunk).toString();
        if (text.includes('\n')) resolve(text.split('\n')[0]!);
      },
      close() {
        resolve(text);
      },
    });
  });
}

test('connectUpstream balances over the group, skips a refusing server, and counts each connection until it closes', async () => {
  const one = await startRaw((socket) => socket.write('one\n'));
  const two = await startRaw((socket) => socket.write('two\n'));
  const dead = await deadPort();
  const proxy = new ReverseProxy({
    upstreams: [{ name: 'g', servers: [{ address: one.address }, { address: `127.0.0.1:${dead}` }, { address: two.address }] }],
    health: { passive: { enabled: false } },
  });
  await proxy.start();
  try {
    const conns: Conn[] = [];
    const names: string[] = [];
    for (let i = 0; i < 6; i++) {
      const conn = await proxy.connectUpstream('g', '127.0.0.1');
      conns.push(conn);
      names.push(await greeting(conn));
    }
    assert.deepEqual(names.sort(), ['one', 'one', 'one', 'two', 'two', 'two']);
    const servers = proxy.upstreams.get('g')!.servers;
    assert.equal(servers.reduce((sum, server) => sum + server.active, 0), 6);
    for (const conn of conns) conn.destroy();
    await until(() => servers.every((server) => server.active === 0), 'every connection released');
    await assert.rejects(proxy.connectUpstream('nope', '127.0.0.1'), (error: NetError) => error.code === 'ENOTFOUND');
  } finally {
    await proxy.close();
    await one.close();
    await two.close();
  }
});

test('connectUpstream rejects with the connect error when every server refuses', async () => {
  const dead = await deadPort();
  const proxy = new ReverseProxy({ upstreams: [{ name: 'g', servers: [{ address: `127.0.0.1:${dead}` }] }], health: { passive: { enabled: false } } });
  await proxy.start();
  try {
    await assert.rejects(proxy.connectUpstream('g', '127.0.0.1'), (error: NetError) => error.code === 'ECONNREFUSED');
  } finally {
    await proxy.close();
  }
});
