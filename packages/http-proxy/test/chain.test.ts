import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { curl, selfSignedCert, startBackend, startForwardProxy, startProxy, type Backend, type TestProxy } from './helpers.js';

describe('parent-proxy chaining', () => {
  let backend: Backend;
  let tlsBackend: Backend;
  let cert: ReturnType<typeof selfSignedCert>;
  let parent: TestProxy;
  before(async () => {
    cert = selfSignedCert();
    backend = await startBackend();
    tlsBackend = await startBackend(cert);
    parent = await startProxy({ users: { up: 'stream pass' } });
  });
  after(async () => {
    await parent.close();
    await backend.close();
    await tlsBackend.close();
    cert.cleanup();
  });

  test('sends plain requests through an HTTP parent with its credentials', async () => {
    const child = await startProxy({ upstream: `http://up:stream%20pass@127.0.0.1:${parent.port}` });
    try {
      const result = await curl(['-x', child.url, `http://127.0.0.1:${backend.port}/echo`]);
      assert.equal(result.status, 200, result.stderr);
      const seen = JSON.parse(result.body);
      assert.equal(seen.headers.via, '1.1 wmproxy, 1.1 wmproxy', 'both proxies added Via');
      assert.equal(seen.headers['proxy-authorization'], undefined);
      assert.ok(parent.logs.some((line) => line.includes('request') && line.includes(`target=http://127.0.0.1:${backend.port}/echo`)));
      // Keep-alive to the parent is reused across different targets.
      const other = await curl(['-x', child.url, `http://127.0.0.1:${backend.port}/hello`, `http://127.0.0.1:${tlsBackend.port}/nothing`]);
      assert.match(other.body, /hello from/);
    } finally {
      await child.close();
    }
  });

  test('tunnels CONNECT through an HTTP parent', async () => {
    const child = await startProxy({ upstream: `http://up:stream%20pass@127.0.0.1:${parent.port}` });
    try {
      const result = await curl(['-x', child.url, '--cacert', cert.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
      assert.equal(result.status, 200, result.stderr);
      assert.equal(result.body, `hello from ${tlsBackend.port}`);
      assert.ok(parent.logs.some((line) => line.includes('tunnel open') && line.includes(`127.0.0.1:${tlsBackend.port}`)));
    } finally {
      await child.close();
    }
  });

  test('answers 502 when the parent refuses our credentials', async () => {
    const child = await startProxy({ upstream: `http://up:wrong@127.0.0.1:${parent.port}` });
    try {
      const before = backend.connections;
      assert.equal((await curl(['-x', child.url, `http://127.0.0.1:${backend.port}/hello`])).status, 502);
      assert.match((await curl(['-x', child.url, '-p', `http://127.0.0.1:${backend.port}/hello`])).stderr, /502/);
      assert.equal(backend.connections, before);
    } finally {
      await child.close();
    }
  });

  test('chains through a SOCKS5 parent (with username/password)', async () => {
    const socksParent = await startForwardProxy({ flags: ['socks5'], users: { s: 'five' } });
    const child = await startProxy({ upstream: `socks5://s:five@127.0.0.1:${socksParent.port}` });
    try {
      const plain = await curl(['-x', child.url, `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(plain.status, 200, plain.stderr);
      assert.equal(plain.body, `hello from ${backend.port}`);
      const tls = await curl(['-x', child.url, '--cacert', cert.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
      assert.equal(tls.status, 200, tls.stderr);
    } finally {
      await child.close();
      await socksParent.close();
    }
  });
});
