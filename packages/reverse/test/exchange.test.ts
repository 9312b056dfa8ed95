import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { exchangeCount } from '../src/engine/exchange.js';
import type { ClientSession } from '../src/engine/session.js';
import { startBackend, startProxy, until } from './helpers.js';

/** Send raw bytes on a keep-alive socket and read until `done` says the answer is complete. */
function exchange(socket: net.Socket, bytes: string, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (done(text)) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(bytes);
  });
}

const complete = (body: string) => (text: string) => text.endsWith(body);

test('an idle keep-alive connection holds no exchange: it is created with the request and dropped when the response ended', async () => {
  let release: (() => void) | undefined;
  const backend = await startBackend('b', (req, res) => {
    if (req.url === '/slow') release = () => res.end('slow');
    else res.end('fast');
  });
  const { proxy, port } = await startProxy({
    requestHedgeMs: 0,
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ exact: '/ping', respond: { status: 200, body: 'pong' } }, { path: '/', upstream: 'app' }] }] }],
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
  });
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  try {
    const base = exchangeCount();
    await until(() => proxy.sessions.size === 1, 'the session');
    const session = [...proxy.sessions][0] as ClientSession;
    assert.equal(session.exchange, undefined, 'no exchange before the first request');

    // While a request is served, the session has its exchange.
    const slow = exchange(socket, 'GET /slow HTTP/1.1\r\nHost: a\r\n\r\n', complete('slow'));
    await until(() => release !== undefined, 'the request to reach the backend');
    assert.notEqual(session.exchange, undefined);
    assert.equal(exchangeCount(), base + 1);
    release!();
    assert.match(await slow, /^HTTP\/1\.1 200/);

    // Once the response ended, nothing of the request stays on the idle connection.
    assert.equal(session.exchange, undefined, 'the exchange is dropped with its response');
    assert.equal(exchangeCount(), base);

    // Pipelined requests each get their own exchange, and none stays.
    const both = await exchange(socket, 'GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n', (text) => text.split('fast').length === 3);
    assert.equal(both.split('HTTP/1.1 200').length, 3);
    assert.equal(session.exchange, undefined);
    assert.equal(exchangeCount(), base);

    // A local answer too.
    const pong = await exchange(socket, 'GET /ping HTTP/1.1\r\nHost: a\r\n\r\n', complete('pong'));
    assert.match(pong, /^HTTP\/1\.1 200/);
    assert.equal(session.exchange, undefined);
    assert.equal(exchangeCount(), base);
  } finally {
    socket.destroy();
    await proxy.close();
    await backend.close();
  }
});

test('a client that resets its connection mid-request frees its exchange and its server lease', async () => {
  let arrived = false;
  const backend = await startBackend('b', () => {
    arrived = true; // never answers
  });
  const { proxy, port } = await startProxy({ requestHedgeMs: 0, upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  const base = exchangeCount();
  const socket = net.connect(port, '127.0.0.1');
  try {
    socket.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await until(() => arrived, 'the request to reach the backend');
    assert.equal(exchangeCount(), base + 1);
    // A reset, not a FIN: a client may half-close after its request and still read the answer.
    socket.resetAndDestroy();
    await until(() => proxy.sessions.size === 0, 'the session to close');
    assert.equal(exchangeCount(), base);
    const server = proxy.upstreams.get('app')!.servers[0]!;
    assert.equal(server.active, 0, 'its lease is given back');
  } finally {
    socket.destroy();
    await proxy.close();
    await backend.close();
  }
});
