import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';
import { startBackend, startProxy, until, type Backend } from './helpers.js';

async function wsBackend(name: string): Promise<{ backend: Backend; wss: WebSocketServer }> {
  const backend = await startBackend(name);
  const wss = new WebSocketServer({ server: backend.server });
  wss.on('connection', (socket) => {
    socket.send(`hello from ${name}`);
    socket.on('message', (data, binary) => socket.send(binary ? data : `${name}:${data.toString()}`, { binary }));
  });
  return { backend, wss };
}

function open(url: string): Promise<{ ws: WebSocket; messages: string[] }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const messages: string[] = [];
    ws.on('message', (data) => messages.push(data.toString()));
    ws.once('open', () => resolve({ ws, messages }));
    ws.once('error', reject);
  });
}

test('WebSocket echo through the proxy, balanced like other requests', async () => {
  const one = await wsBackend('one');
  const two = await wsBackend('two');
  const { proxy, port } = await startProxy({
    upstreams: [{ name: 'ws', servers: [{ address: one.backend.address }, { address: two.backend.address }] }],
  });
  try {
    const a = await open(`ws://127.0.0.1:${port}/chat`);
    const b = await open(`ws://127.0.0.1:${port}/chat`);
    a.ws.send('ping');
    b.ws.send('ping');
    const big = Buffer.alloc(256 * 1024, 7);
    a.ws.send(big);
    await until(() => a.messages.length >= 3 && b.messages.length >= 2, 'echoes');
    const greetings = [a.messages[0], b.messages[0]].sort();
    assert.deepEqual(greetings, ['hello from one', 'hello from two'], 'one connection per backend');
    const nameA = a.messages[0]!.slice(11);
    assert.equal(a.messages[1], `${nameA}:ping`);
    assert.equal(a.messages[2]!.length, big.length);
    a.ws.close();
    b.ws.close();
    await until(() => a.ws.readyState === WebSocket.CLOSED && b.ws.readyState === WebSocket.CLOSED, 'closed');
  } finally {
    await proxy.close();
    one.wss.close();
    two.wss.close();
    await one.backend.close();
    await two.backend.close();
  }
});

test('with shutdownSessionsOnDown, WebSockets of a server marked down are closed', async () => {
  const one = await wsBackend('one');
  let healthy = true;
  one.backend.server.removeAllListeners('request');
  one.backend.server.on('request', (_req, res) => {
    res.statusCode = healthy ? 200 : 503;
    res.end();
  });
  const { proxy, port } = await startProxy({
    upstreams: [
      {
        name: 'ws',
        shutdownSessionsOnDown: true,
        servers: [{ address: one.backend.address }],
        health: { check: { type: 'http', path: '/health' }, intervalMs: 100, timeoutMs: 100, rise: 1, fall: 1, jitter: 0 },
      },
    ],
  });
  try {
    await until(() => proxy.health.state(one.backend.address) === 'healthy', 'healthy');
    const a = await open(`ws://127.0.0.1:${port}/`);
    healthy = false;
    await until(() => a.ws.readyState === WebSocket.CLOSED, 'the session closed by the proxy');
  } finally {
    await proxy.close();
    one.wss.close();
    await one.backend.close();
  }
});
