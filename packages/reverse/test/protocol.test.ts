import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startBackend, startProxy, rawExchange, request } from './helpers.js';

function chatty(port: number): { socket: net.Socket; received: () => string; waitFor: (pattern: RegExp) => Promise<void> } {
  const socket = net.connect(port, '127.0.0.1');
  let text = '';
  const waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
  socket.on('data', (chunk) => {
    text += chunk.toString('latin1');
    for (const waiter of [...waiters]) if (waiter.pattern.test(text)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  socket.on('error', () => {});
  return {
    socket,
    received: () => text,
    waitFor: (pattern) => (pattern.test(text) ? Promise.resolve() : new Promise((resolve) => waiters.push({ pattern, resolve }))),
  };
}

test('Expect: 100-continue: the interim response is relayed before the client sends its body', async () => {
  const backend = await startBackend('b', (req, res) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => (size += chunk.length));
    req.on('end', () => res.end(`got ${size}`));
  });
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const client = chatty(port);
    client.socket.write('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    await client.waitFor(/HTTP\/1\.1 100 Continue\r\n\r\n/);
    client.socket.write('hello');
    await client.waitFor(/got 5$/);
    assert.match(client.received(), /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    client.socket.destroy();
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('HEAD and 304 responses carry no body and keep the connection usable; pipelined requests are answered in order', async () => {
  const backend = await startBackend('b', (req, res) => {
    if (req.url === '/cached') {
      res.statusCode = 304;
      res.setHeader('ETag', '"v1"');
      res.end();
      return;
    }
    res.setHeader('Content-Length', '11');
    res.end(req.method === 'HEAD' ? undefined : `hello ${req.url!.slice(1, 6).padEnd(5, '_')}`);
  });
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const raw = await rawExchange(
      port,
      'HEAD /first HTTP/1.1\r\nHost: a\r\n\r\nGET /cached HTTP/1.1\r\nHost: a\r\nIf-None-Match: "v1"\r\n\r\nGET /third HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
    );
    const statuses = [...raw.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '304', '200']);
    assert.match(raw, /Content-Length: 11\r\n/);
    assert.match(raw, /\r\n\r\nhello third$/, 'only the GET has a body');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('chunked bodies pass both ways with their trailers', async () => {
  const backend = await startBackend('b', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      res.setHeader('Trailer', 'X-Checksum');
      res.write('part one, ');
      res.write(`request had ${Buffer.concat(chunks).toString()} / ${req.trailers['x-client-sum']}`);
      res.addTrailers({ 'X-Checksum': 'abc123' });
      res.end();
    });
  });
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const raw = await rawExchange(
      port,
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Client-Sum: 42\r\n\r\n',
    );
    assert.match(raw, /Transfer-Encoding: chunked\r\n/);
    assert.match(raw, /request had hello world \/ 42/);
    assert.match(raw, /0\r\nX-Checksum: abc123\r\n\r\n$/);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('an HTTP/1.0 client gets keep-alive only when it asks; a response without length is read until close', async () => {
  const { startRaw } = await import('./helpers.js');
  const legacy = await startRaw((socket) => {
    socket.once('data', () => socket.end('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close'));
  });
  const backend = await startBackend('b');
  const { proxy, port } = await startProxy({
    upstreams: [
      { name: 'app', servers: [{ address: backend.address }] },
      { name: 'legacy', servers: [{ address: legacy.address }] },
    ],
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app' }, { path: '/legacy', upstream: 'legacy' }] }] }],
  });
  try {
    const raw = await rawExchange(port, 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n');
    assert.equal((raw.match(/HTTP\/1\.1 200/g) ?? []).length, 2);
    assert.match(raw, /Connection: keep-alive/);
    const reply = await request(`http://127.0.0.1:${port}/legacy`);
    assert.equal(reply.body, 'until close');
    assert.equal(reply.headers.connection, 'close');
  } finally {
    await proxy.close();
    await legacy.close();
    await backend.close();
  }
});

test('a location body of unknown length: chunked to an HTTP/1.1 client, plain and delimited by closing to an HTTP/1.0 one', async () => {
  const handler = {
    handle: async () => ({
      status: 200,
      headers: [['Content-Type', 'text/plain']] as Array<[string, string]>,
      body: (async function* () {
        yield Buffer.from('first ');
        yield Buffer.from('second');
      })(),
    }),
  };
  const { proxy, port } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: '127.0.0.1:9' }] }],
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', handler }] }] }],
  });
  try {
    const old = await rawExchange(port, 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    assert.doesNotMatch(old, /Transfer-Encoding/i, 'HTTP/1.0 has no chunked coding');
    assert.match(old, /Connection: close\r\n/);
    assert.match(old, /\r\n\r\nfirst second$/);
    const current = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.match(current, /Transfer-Encoding: chunked\r\n/);
    assert.match(current, /\r\n\r\n6\r\nfirst \r\n6\r\nsecond\r\n0\r\n\r\n$/);
  } finally {
    await proxy.close();
  }
});

test('a chunked response to an HTTP/1.0 client is decoded and delimited by closing', async () => {
  const backend = await startBackend('b', (_req, res) => {
    res.write('first ');
    res.write('second');
    res.end();
  });
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const raw = await rawExchange(port, 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 200 OK\r\n/);
    assert.doesNotMatch(raw, /Transfer-Encoding/i);
    assert.match(raw, /Connection: close\r\n/);
    assert.match(raw, /\r\n\r\nfirst second$/);
  } finally {
    await proxy.close();
    await backend.close();
  }
});
