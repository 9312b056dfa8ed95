import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NetError } from '@wmproxy/core-net';
import { RawClient, closedPort, curl, parseResponses, startBackend, startProxy, type Backend, type TestProxy } from './helpers.js';

describe('error answers', () => {
  let backend: Backend;
  let proxy: TestProxy;
  before(async () => {
    backend = await startBackend();
    proxy = await startProxy({ headerTimeoutMs: 300 });
  });
  after(async () => {
    await proxy.close();
    await backend.close();
  });

  test('answers 502 when the target refuses the connection, with a log line', async () => {
    const port = await closedPort();
    const result = await curl(['-x', proxy.url, `http://127.0.0.1:${port}/`]);
    assert.equal(result.status, 502);
    assert.match(result.body, /ECONNREFUSED/);
    assert.ok(proxy.logs.some((line) => line.includes('proxy error') && line.includes('status=502') && line.includes(`127.0.0.1:${port}`)));
  });

  test('answers 504 when connecting times out', async () => {
    const slow = await startProxy({ connectTimeoutMs: 200, connector: () => new Promise(() => {}) });
    try {
      const result = await curl(['-x', slow.url, `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(result.status, 504);
      const tunnel = await curl(['-x', slow.url, '-p', `http://127.0.0.1:${backend.port}/hello`]);
      assert.match(tunnel.stderr, /504/);
      assert.ok(slow.logs.some((line) => line.includes('status=504')));
    } finally {
      await slow.close();
    }
  });

  test('answers 502 when the name does not resolve', async () => {
    const dns = await startProxy({
      resolver: async (host) => {
        throw new NetError('ENOTFOUND', `cannot resolve ${host}`);
      },
    });
    try {
      const result = await curl(['-x', dns.url, 'http://no-such-host.test/']);
      assert.equal(result.status, 502);
      assert.match(result.body, /ENOTFOUND/);
      assert.ok(dns.logs.some((line) => line.includes('status=502') && line.includes('no-such-host.test')));
    } finally {
      await dns.close();
    }
  });

  test('answers 400 to a malformed request and closes', async () => {
    const client = await RawClient.connect(proxy.port);
    client.send('GET http://127.0.0.1/ HTTP/1.1\r\nBad Header\r\n\r\n');
    const text = await client.waitClosed();
    assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.ok(proxy.logs.some((line) => line.includes('status=400')));
  });

  test('answers 400 to origin-form requests sent to the proxy itself', async () => {
    const result = await curl([`${proxy.url}/`]);
    assert.equal(result.status, 400);
    assert.match(result.body, /wmproxy/);
  });

  test('answers 400 to a non-http absolute URL and a bad CONNECT target', async () => {
    for (const request of ['GET ftp://127.0.0.1/x HTTP/1.1\r\nHost: x\r\n\r\n', 'CONNECT 127.0.0.1 HTTP/1.1\r\nHost: x\r\n\r\n', 'CONNECT [::1:80 HTTP/1.1\r\nHost: x\r\n\r\n']) {
      const client = await RawClient.connect(proxy.port);
      client.send(request);
      assert.match(await client.waitClosed(), /^HTTP\/1\.1 400 /, request);
    }
  });

  test('answers 431 to a head over 64 KiB', async () => {
    const client = await RawClient.connect(proxy.port);
    client.send(`GET http://127.0.0.1:${backend.port}/hello HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`);
    const text = await client.waitClosed();
    assert.match(text, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  });

  test('answers 408 and closes a client that stalls sending its head', async () => {
    const client = await RawClient.connect(proxy.port);
    client.send(`GET http://127.0.0.1:${backend.port}/hello HTTP/1.1\r\n`);
    const text = await client.waitClosed();
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.ok(proxy.logs.some((line) => line.includes('status=408')));
  });

  test('closes an idle connection that never sends anything', async () => {
    const client = await RawClient.connect(proxy.port);
    const text = await client.waitClosed();
    assert.equal(text, '');
  });

  test('answers 502 to a response the parser rejects', async () => {
    const net = await import('node:net');
    const bad = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'));
    });
    await new Promise<void>((resolve) => bad.listen(0, '127.0.0.1', resolve));
    try {
      const port = (bad.address() as import('node:net').AddressInfo).port;
      const result = await curl(['-x', proxy.url, `http://127.0.0.1:${port}/`]);
      assert.equal(result.status, 502);
    } finally {
      await new Promise<void>((resolve) => bad.close(() => resolve()));
    }
  });

  test('keeps serving other connections while one sends garbage', async () => {
    const good = await RawClient.connect(proxy.port);
    good.send(`GET http://127.0.0.1:${backend.port}/hello HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal((await good.responses(1))[0]!.body, `hello from ${backend.port}`);
    const garbage = await RawClient.connect(proxy.port);
    garbage.send(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x00, 0x13, 0x37]));
    assert.match(await garbage.waitClosed(), /^HTTP\/1\.1 400 /);
    const nul = await RawClient.connect(proxy.port);
    nul.send('GET http://x/ HTTP/1.1\r\nX: a\x00b\r\n\r\n');
    assert.match(await nul.waitClosed(), /^HTTP\/1\.1 400 /);
    good.send(`GET http://127.0.0.1:${backend.port}/hello HTTP/1.1\r\nHost: x\r\n\r\n`);
    const responses = await good.responses(2);
    assert.equal(responses[1]!.body, `hello from ${backend.port}`);
    good.close();
  });

  test('answers 405 when a kind of request is disabled', async () => {
    const connectOnly = await startProxy({ allowHttp: false });
    const httpOnly = await startProxy({ allowConnect: false });
    try {
      assert.equal((await curl(['-x', connectOnly.url, `http://127.0.0.1:${backend.port}/hello`])).status, 405);
      assert.match((await curl(['-x', httpOnly.url, '-p', `http://127.0.0.1:${backend.port}/hello`])).stderr, /405/);
      assert.equal((await curl(['-x', connectOnly.url, '-p', `http://127.0.0.1:${backend.port}/hello`])).status, 200);
    } finally {
      await connectOnly.close();
      await httpOnly.close();
    }
  });

  test('closes a keep-alive client connection that stays idle past keepAliveTimeoutMs', async () => {
    const quick = await startProxy({ keepAliveTimeoutMs: 200 });
    try {
      const client = await RawClient.connect(quick.port);
      client.send(`GET http://127.0.0.1:${backend.port}/hello HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.equal((await client.responses(1))[0]!.status, 200);
      const text = await client.waitClosed();
      assert.equal(parseResponses(text).length, 1, 'closed without another answer');
    } finally {
      await quick.close();
    }
  });

  test('retries a bodyless request once when a reused upstream connection turns out closed', async () => {
    const net = await import('node:net');
    let connections = 0;
    // Answers the first request on each connection, and drops the connection at the second (a stale keep-alive).
    const flaky = net.createServer((socket) => {
      connections++;
      let requests = 0;
      let seen = '';
      socket.on('error', () => {});
      socket.on('data', (chunk) => {
        seen += chunk.toString('latin1');
        while (seen.includes('\r\n\r\n')) {
          seen = seen.slice(seen.indexOf('\r\n\r\n') + 4);
          if (++requests === 1) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
          else socket.destroy();
        }
      });
    });
    await new Promise<void>((resolve) => flaky.listen(0, '127.0.0.1', resolve));
    try {
      const port = (flaky.address() as import('node:net').AddressInfo).port;
      const client = await RawClient.connect(proxy.port);
      client.send(`GET http://127.0.0.1:${port}/a HTTP/1.1\r\nHost: x\r\n\r\n`);
      await client.responses(1);
      client.send(`GET http://127.0.0.1:${port}/b HTTP/1.1\r\nHost: x\r\n\r\n`);
      const responses = await client.responses(2);
      assert.deepEqual(responses.map((r) => [r.status, r.body]), [[200, 'ok'], [200, 'ok']]);
      assert.equal(connections, 2, 'the retry used a fresh connection');
      client.close();
    } finally {
      await new Promise<void>((resolve) => flaky.close(() => resolve()));
    }
  });

  test('answers 504 when the target accepts but never responds (idle timeout)', async () => {
    const net = await import('node:net');
    const sockets = new Set<import('node:net').Socket>();
    const silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const quick = await startProxy({ idleTimeoutMs: 300 });
    try {
      const port = (silent.address() as import('node:net').AddressInfo).port;
      const result = await curl(['-x', quick.url, `http://127.0.0.1:${port}/`]);
      assert.equal(result.status, 504);
      assert.ok(quick.logs.some((line) => line.includes('status=504') && line.includes('no response')));
    } finally {
      await quick.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
