import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { RawClient, curl, selfSignedCert, startBackend, startProxy, type Backend, type TestProxy } from './helpers.js';

describe('HTTP proxying with curl', () => {
  let backend: Backend;
  let other: Backend;
  let proxy: TestProxy;
  before(async () => {
    backend = await startBackend();
    other = await startBackend();
    proxy = await startProxy();
  });
  after(async () => {
    await proxy.close();
    await backend.close();
    await other.close();
  });

  test('forwards a GET and adds Via, without proxy-only fields', async () => {
    const result = await curl(['-x', proxy.url, '-H', 'Proxy-Connection: keep-alive', '-H', 'Connection: X-Secret', '-H', 'X-Secret: 1', '-H', 'X-Kept: 2', `http://127.0.0.1:${backend.port}/echo?x=1`]);
    assert.equal(result.status, 200, result.stderr);
    const seen = JSON.parse(result.body);
    assert.equal(seen.method, 'GET');
    assert.equal(seen.url, '/echo?x=1', 'origin-form target sent upstream');
    assert.equal(seen.headers.host, `127.0.0.1:${backend.port}`);
    assert.equal(seen.headers.via, '1.1 wmproxy');
    assert.equal(seen.headers['proxy-connection'], undefined);
    assert.equal(seen.headers['x-secret'], undefined, 'a field named in Connection is hop-by-hop');
    assert.equal(seen.headers['x-kept'], '2');
  });

  test('passes the response through with duplicate Set-Cookie and Via', async () => {
    const result = await curl(['-i', '-x', proxy.url, `http://127.0.0.1:${backend.port}/echo`]);
    assert.equal(result.status, 200);
    assert.match(result.body, /^Set-Cookie: a=1\r$/m);
    assert.match(result.body, /^Set-Cookie: b=2\r$/m);
    assert.match(result.body, /^Via: 1\.1 wmproxy\r$/m);
  });

  test('streams a POST body with Content-Length', async () => {
    const body = randomBytes(300_000);
    const result = await curl(['-x', proxy.url, '--data-binary', '@-', '-H', 'Content-Type: application/octet-stream', `http://127.0.0.1:${backend.port}/echo`], body);
    assert.equal(result.status, 200, result.stderr);
    const seen = JSON.parse(result.body);
    assert.equal(seen.method, 'POST');
    assert.equal(seen.bodyLength, body.length);
    assert.equal(seen.bodySha, createHash('sha256').update(body).digest('hex'));
  });

  test('streams a chunked upload (and answers Expect: 100-continue)', async () => {
    const body = randomBytes(2 * 1024 * 1024 + 17);
    const result = await curl(
      ['-x', proxy.url, '-H', 'Transfer-Encoding: chunked', '-H', 'Expect: 100-continue', '--data-binary', '@-', `http://127.0.0.1:${backend.port}/echo`],
      body,
    );
    assert.equal(result.status, 200, result.stderr);
    const seen = JSON.parse(result.body);
    assert.equal(seen.headers['transfer-encoding'], 'chunked');
    assert.equal(seen.bodyLength, body.length);
    assert.equal(seen.bodySha, createHash('sha256').update(body).digest('hex'));
  });

  test('streams a 50 MB download', async () => {
    const bytes = 50 * 1024 * 1024;
    const chunked = await curl(['-x', proxy.url, '-o', '/dev/null', `http://127.0.0.1:${backend.port}/big?bytes=${bytes}`]);
    assert.equal(chunked.status, 200, chunked.stderr);
    assert.equal(chunked.size, bytes);
    const sized = await curl(['-x', proxy.url, '-o', '/dev/null', `http://127.0.0.1:${backend.port}/big?bytes=${bytes}&length=1`]);
    assert.equal(sized.size, bytes);
  });

  test('relays a response without length until the server closes', async () => {
    const result = await curl(['-x', proxy.url, `http://127.0.0.1:${backend.port}/noclose`]);
    assert.equal(result.status, 200, result.stderr);
    assert.equal(result.body, 'read until close');
  });

  test('relays chunked responses with trailers, and de-chunks them for HTTP/1.0 clients', async () => {
    const result = await curl(['-x', proxy.url, `http://127.0.0.1:${backend.port}/chunked`]);
    assert.equal(result.body, 'hello world');
    const client = await RawClient.connect(proxy.port);
    client.send(`GET http://127.0.0.1:${backend.port}/chunked HTTP/1.0\r\n\r\n`);
    const text = await client.waitClosed();
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.doesNotMatch(text, /Transfer-Encoding/i);
    assert.ok(text.endsWith('\r\n\r\nhello world'), JSON.stringify(text));
  });

  test('keeps one client connection across hosts: reuses the upstream for the same host, replaces it for another', async () => {
    const beforeA = backend.connections;
    const beforeB = other.connections;
    const client = await RawClient.connect(proxy.port);
    const order = [backend, backend, other, backend];
    for (let i = 0; i < order.length; i++) {
      client.send(`GET http://127.0.0.1:${order[i]!.port}/hello HTTP/1.1\r\nHost: 127.0.0.1:${order[i]!.port}\r\n\r\n`);
      const responses = await client.responses(i + 1);
      assert.equal(responses[i]?.body, `hello from ${order[i]!.port}`);
    }
    assert.equal(client.closed, false, 'client connection kept alive');
    assert.equal(backend.connections - beforeA, 2, 'first two requests shared one upstream; the fourth reconnected');
    assert.equal(other.connections - beforeB, 1);
    client.close();
  });

  test('answers pipelined requests in order', async () => {
    const client = await RawClient.connect(proxy.port);
    client.send(
      `GET http://127.0.0.1:${backend.port}/hello HTTP/1.1\r\nHost: x\r\n\r\n` +
        `POST http://127.0.0.1:${other.port}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc` +
        `GET http://127.0.0.1:${backend.port}/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    const text = await client.waitClosed();
    const responses = (await import('./helpers.js')).parseResponses(text);
    assert.equal(responses.length, 3);
    assert.equal(responses[0]!.body, `hello from ${backend.port}`);
    assert.equal(JSON.parse(responses[1]!.body).bodyLength, 3);
    assert.equal(responses[2]!.body, `hello from ${backend.port}`);
    assert.match(responses[2]!.head, /\r\nConnection: close/i);
  });
});

describe('CONNECT tunnels', () => {
  let tlsBackend: Backend;
  let proxy: TestProxy;
  let cert: ReturnType<typeof selfSignedCert>;
  before(async () => {
    cert = selfSignedCert();
    tlsBackend = await startBackend(cert);
    proxy = await startProxy();
  });
  after(async () => {
    await proxy.close();
    await tlsBackend.close();
    cert.cleanup();
  });

  test('carries HTTPS to a local TLS server', async () => {
    const result = await curl(['-x', proxy.url, '--cacert', cert.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
    assert.equal(result.status, 200, result.stderr);
    assert.equal(result.body, `hello from ${tlsBackend.port}`);
    assert.ok(proxy.logs.some((line) => line.includes('tunnel open') && line.includes(`127.0.0.1:${tlsBackend.port}`)));
  });

  test('carries a large HTTPS download', async () => {
    const bytes = 8 * 1024 * 1024;
    const result = await curl(['-x', proxy.url, '--cacert', cert.certPath, '-o', '/dev/null', `https://127.0.0.1:${tlsBackend.port}/big?bytes=${bytes}`]);
    assert.equal(result.size, bytes, result.stderr);
  });

  test('refuses ports outside connectPorts with 403', async () => {
    const strict = await startProxy({ connectPorts: [443] });
    try {
      const before = tlsBackend.connections;
      const result = await curl(['-x', strict.url, '--cacert', cert.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /403/);
      assert.equal(tlsBackend.connections, before);
    } finally {
      await strict.close();
    }
  });

  test('delivers bytes the client sends right after CONNECT', async () => {
    const { echo } = await import('./echo.js');
    const server = await echo();
    try {
      const client = await RawClient.connect(proxy.port);
      client.send(`CONNECT 127.0.0.1:${server.port} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\nearly bytes`);
      const text = await client.until((t) => t.includes('early bytes'));
      assert.match(text, /^HTTP\/1\.1 200 Connection Established\r\n\r\nearly bytes$/);
      client.close();
    } finally {
      await server.close();
    }
  });
});

describe('protocol upgrades over plain HTTP', () => {
  test('turns a 101 Switching Protocols into a tunnel (WebSocket-style)', async () => {
    const net = await import('node:net');
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      let seen = '';
      socket.on('data', (chunk) => {
        seen += chunk.toString('latin1');
        if (seen.includes('\r\n\r\n') && !seen.startsWith('DONE')) {
          const upgrade = /\r\nupgrade: *([^\r]*)/i.exec(seen)?.[1];
          const connection = /\r\nconnection: *([^\r]*)/i.exec(seen)?.[1];
          socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\nX-Saw-Connection: ${connection}\r\n\r\nserver-first`);
          seen = 'DONE';
          socket.removeAllListeners('data');
          socket.pipe(socket);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = await startProxy();
    try {
      const port = (server.address() as import('node:net').AddressInfo).port;
      const client = await RawClient.connect(proxy.port);
      client.send(`GET http://127.0.0.1:${port}/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
      const head = await client.until((text) => text.includes('server-first'));
      assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
      assert.match(head, /\r\nUpgrade: websocket\r\n/);
      assert.match(head, /\r\nX-Saw-Connection: Upgrade\r\n/);
      client.send('ping over the tunnel');
      const text = await client.until((t) => t.includes('ping over the tunnel'));
      assert.ok(text.endsWith('server-firstping over the tunnel'));
      client.close();
    } finally {
      await proxy.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
