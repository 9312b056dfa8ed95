import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { curl, selfSignedCert, startBackend, startProxy, type Backend, type TestProxy } from './helpers.js';

describe('IPv6 and domain-name targets', () => {
  let v6: Backend;
  let v6Tls: Backend;
  let v4: Backend;
  let cert: ReturnType<typeof selfSignedCert>;
  let proxy: TestProxy;
  before(async () => {
    cert = selfSignedCert();
    v6 = await startBackend(undefined, '::1');
    v6Tls = await startBackend(cert, '::1');
    v4 = await startBackend();
    proxy = await startProxy({}, '::1');
  });
  after(async () => {
    await proxy.close();
    await v6.close();
    await v6Tls.close();
    await v4.close();
    cert.cleanup();
  });

  test('forwards to an IPv6 literal target, from a client connected over IPv6', async () => {
    const result = await curl(['-x', proxy.url, `http://[::1]:${v6.port}/echo`]);
    assert.equal(result.status, 200, result.stderr);
    assert.equal(JSON.parse(result.body).headers.host, `[::1]:${v6.port}`);
  });

  test('tunnels CONNECT to an IPv6 target', async () => {
    // The certificate names 127.0.0.1 and localhost, not ::1: check the tunnel, not the name.
    const result = await curl(['-x', proxy.url, '-k', `https://[::1]:${v6Tls.port}/hello`]);
    assert.equal(result.status, 200, result.stderr);
    assert.equal(result.body, `hello from ${v6Tls.port}`);
  });

  test('resolves domain names (localhost) for plain requests and CONNECT', async () => {
    const plain = await curl(['-x', proxy.url, `http://localhost:${v4.port}/hello`]);
    assert.equal(plain.body, `hello from ${v4.port}`);
    const tunnel = await curl(['-x', proxy.url, '-p', `http://localhost:${v4.port}/hello`]);
    assert.equal(tunnel.body, `hello from ${v4.port}`);
  });

  test('applies an IPv6 client allow list', async () => {
    const onlyV4 = await startProxy({ clientPolicy: { allow: ['127.0.0.0/8'] } }, '::1');
    const onlyV6 = await startProxy({ clientPolicy: { allow: ['::1/128'] } }, '::1');
    try {
      assert.equal((await curl(['-x', onlyV4.url, `http://[::1]:${v6.port}/hello`])).status, 403);
      assert.equal((await curl(['-x', onlyV6.url, `http://[::1]:${v6.port}/hello`])).status, 200);
    } finally {
      await onlyV4.close();
      await onlyV6.close();
    }
  });
});
