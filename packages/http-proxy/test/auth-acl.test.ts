import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient, basic, curl, selfSignedCert, startBackend, startProxy, type Backend, type TestProxy } from './helpers.js';

describe('Basic auth', () => {
  let backend: Backend;
  let tlsBackend: Backend;
  let cert: ReturnType<typeof selfSignedCert>;
  let proxy: TestProxy;
  before(async () => {
    cert = selfSignedCert();
    backend = await startBackend();
    tlsBackend = await startBackend(cert);
    proxy = await startProxy({ users: { alice: 'wonder land', bob: 'builder' } });
  });
  after(async () => {
    await proxy.close();
    await backend.close();
    await tlsBackend.close();
    cert.cleanup();
  });

  test('answers 407 with a Basic challenge before connecting upstream when credentials are missing', async () => {
    const before = backend.connections;
    const result = await curl(['-i', '-x', proxy.url, `http://127.0.0.1:${backend.port}/hello`]);
    assert.equal(result.status, 407);
    assert.match(result.body, /^Proxy-Authenticate: Basic realm="wmproxy"\r$/m);
    assert.equal(backend.connections, before, 'the backend saw no connection');
    assert.ok(proxy.logs.some((line) => line.includes('proxy authentication required') && line.includes('credentials=missing')));
  });

  test('answers 407 to a wrong password and an unknown user', async () => {
    const before = backend.connections;
    for (const creds of ['alice:wrong', 'mallory:builder', 'alice:']) {
      const result = await curl(['-x', proxy.url, '--proxy-user', creds, `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(result.status, 407, creds);
    }
    assert.equal(backend.connections, before);
  });

  test('forwards with valid credentials and never passes Proxy-Authorization upstream', async () => {
    const result = await curl(['-x', proxy.url, '--proxy-user', 'alice:wonder land', `http://127.0.0.1:${backend.port}/echo`]);
    assert.equal(result.status, 200, result.stderr);
    const seen = JSON.parse(result.body);
    assert.equal(seen.headers['proxy-authorization'], undefined);
  });

  test('guards CONNECT too', async () => {
    const before = tlsBackend.connections;
    const refused = await curl(['-x', proxy.url, '--cacert', cert.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /407/);
    assert.equal(tlsBackend.connections, before);
    const allowed = await curl(['-x', proxy.url, '--proxy-user', 'bob:builder', '--cacert', cert.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
    assert.equal(allowed.status, 200, allowed.stderr);
  });

  test('checks every request on a keep-alive connection, not just the first', async () => {
    const requestsBefore = backend.requests.length;
    const client = await RawClient.connect(proxy.port);
    const target = `http://127.0.0.1:${backend.port}/hello`;
    client.send(`GET ${target} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('bob', 'builder')}\r\n\r\n`);
    let responses = await client.responses(1);
    assert.equal(responses[0]!.status, 200);
    client.send(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
    responses = await client.responses(2);
    assert.equal(responses[1]!.status, 407);
    assert.match(responses[1]!.head, /Proxy-Authenticate: Basic/);
    assert.equal(backend.requests.length - requestsBefore, 1, 'the unauthenticated request never reached the backend');
    // The challenge keeps the connection: the client can retry with credentials.
    client.send(`GET ${target} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('bob', 'builder')}\r\n\r\n`);
    responses = await client.responses(3);
    assert.equal(responses[2]!.status, 200);
    client.close();
  });

  test('closes after a 407 to a request with a body it did not read', async () => {
    const client = await RawClient.connect(proxy.port);
    client.send(`POST http://127.0.0.1:${backend.port}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello`);
    const text = await client.waitClosed();
    assert.match(text, /^HTTP\/1\.1 407 /);
    assert.match(text, /\r\nConnection: close\r\n/);
  });
});

describe('client allow/deny lists', () => {
  let backend: Backend;
  before(async () => {
    backend = await startBackend();
  });
  after(async () => {
    await backend.close();
  });

  for (const [name, policy, expected] of [
    ['a denied client gets 403', { deny: ['127.0.0.0/8'] }, 403],
    ['a client outside the allow list gets 403', { allow: ['10.0.0.0/8', '::1/128'] }, 403],
    ['a client inside the allow list is served', { allow: ['127.0.0.1/32'] }, 200],
    ['deny wins over allow', { allow: ['127.0.0.0/8'], deny: ['127.0.0.1'] }, 403],
  ] as const) {
    test(name, async () => {
      const proxy = await startProxy({ clientPolicy: { allow: policy.allow ?? [], deny: 'deny' in policy ? policy.deny : [] } });
      try {
        const before = backend.connections;
        const result = await curl(['-x', proxy.url, `http://127.0.0.1:${backend.port}/hello`]);
        assert.equal(result.status, expected);
        if (expected === 403) {
          assert.equal(backend.connections, before);
          assert.ok(proxy.logs.some((line) => line.includes('client refused by policy')));
        }
      } finally {
        await proxy.close();
      }
    });
  }

  test('refuses denied destinations on the resolved IP, for plain requests and CONNECT', async () => {
    const proxy = await startProxy({
      destinationDeny: ['127.0.0.0/8', '::1'],
      // "backend.test" resolves to loopback: the check must look at the address, not the name.
      resolver: async (host) => (host === 'backend.test' ? ['127.0.0.1'] : []),
    });
    try {
      const before = backend.connections;
      const byIp = await curl(['-x', proxy.url, `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(byIp.status, 403);
      const byName = await curl(['-x', proxy.url, `http://backend.test:${backend.port}/hello`]);
      assert.equal(byName.status, 403);
      const tunnel = await curl(['-x', proxy.url, '-p', `http://backend.test:${backend.port}/hello`]);
      assert.match(tunnel.stderr, /403/);
      assert.equal(backend.connections, before, 'nothing reached the backend');
      assert.ok(proxy.logs.some((line) => line.includes('status=403') && line.includes('denied')));
    } finally {
      await proxy.close();
    }
  });
});
