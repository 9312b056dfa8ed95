import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createForwardProxyServer } from '../src/index.js';
import { curl, selfSignedCert, startBackend, startForwardProxy, type Backend } from './helpers.js';

describe('the mixed port (HTTP, HTTPS and SOCKS5 on one listener)', () => {
  let backend: Backend;
  let tlsBackend: Backend;
  let cert: ReturnType<typeof selfSignedCert>;
  before(async () => {
    cert = selfSignedCert();
    backend = await startBackend();
    tlsBackend = await startBackend(cert);
  });
  after(async () => {
    await backend.close();
    await tlsBackend.close();
    cert.cleanup();
  });

  test('serves HTTP, CONNECT and SOCKS5 clients on the same port', async () => {
    const proxy = await startForwardProxy();
    try {
      const http = await curl(['-x', proxy.url, `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(http.body, `hello from ${backend.port}`);
      const https = await curl(['-x', proxy.url, '--cacert', cert.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
      assert.equal(https.body, `hello from ${tlsBackend.port}`);
      const socks = await curl(['--socks5', `127.0.0.1:${proxy.port}`, `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(socks.status, 200, socks.stderr);
      assert.equal(socks.body, `hello from ${backend.port}`);
      const socksName = await curl(['--socks5-hostname', `127.0.0.1:${proxy.port}`, `http://localhost:${backend.port}/hello`]);
      assert.equal(socksName.body, `hello from ${backend.port}`);
    } finally {
      await proxy.close();
    }
  });

  test('shares users between HTTP Basic auth and SOCKS5 username/password', async () => {
    const proxy = await startForwardProxy({ users: { carol: 'pw' } });
    try {
      assert.equal((await curl(['-x', proxy.url, `http://127.0.0.1:${backend.port}/hello`])).status, 407);
      assert.equal((await curl(['-x', proxy.url, '--proxy-user', 'carol:pw', `http://127.0.0.1:${backend.port}/hello`])).status, 200);
      const noAuth = await curl(['--socks5', `127.0.0.1:${proxy.port}`, `http://127.0.0.1:${backend.port}/hello`]);
      assert.notEqual(noAuth.code, 0);
      const auth = await curl(['--socks5', `127.0.0.1:${proxy.port}`, '--proxy-user', 'carol:pw', `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(auth.status, 200, auth.stderr);
    } finally {
      await proxy.close();
    }
  });

  test('answers a disabled HTTP kind with 405 and closes a disabled SOCKS5', async () => {
    const socksOnly = await startForwardProxy({ flags: ['socks5'] });
    const httpOnly = await startForwardProxy({ flags: ['http'] });
    try {
      assert.equal((await curl(['-x', socksOnly.url, `http://127.0.0.1:${backend.port}/hello`])).status, 405);
      assert.equal((await curl(['-x', httpOnly.url, `http://127.0.0.1:${backend.port}/hello`])).status, 200);
      assert.match((await curl(['-x', httpOnly.url, '-p', `http://127.0.0.1:${backend.port}/hello`])).stderr, /405/);
      const socks = await curl(['--socks5', `127.0.0.1:${httpOnly.port}`, `http://127.0.0.1:${backend.port}/hello`]);
      assert.notEqual(socks.code, 0);
    } finally {
      await socksOnly.close();
      await httpOnly.close();
    }
  });

  test('checks the client allow/deny list before any protocol', async () => {
    const proxy = await startForwardProxy({ clientPolicy: { deny: ['127.0.0.0/8'] } });
    try {
      const before = backend.connections;
      assert.equal((await curl(['-x', proxy.url, `http://127.0.0.1:${backend.port}/hello`])).status, 403);
      const socks = await curl(['--socks5', `127.0.0.1:${proxy.port}`, `http://127.0.0.1:${backend.port}/hello`]);
      assert.notEqual(socks.code, 0);
      assert.equal(backend.connections, before);
    } finally {
      await proxy.close();
    }
  });

  test('refuses loopback destinations for SOCKS5 too when denied', async () => {
    const proxy = await startForwardProxy({ destinationDeny: ['127.0.0.0/8'] });
    try {
      const before = backend.connections;
      assert.equal((await curl(['-x', proxy.url, `http://127.0.0.1:${backend.port}/hello`])).status, 403);
      assert.notEqual((await curl(['--socks5', `127.0.0.1:${proxy.port}`, `http://127.0.0.1:${backend.port}/hello`])).code, 0);
      assert.equal(backend.connections, before);
    } finally {
      await proxy.close();
    }
  });

  test('createForwardProxyServer listens where told and shuts down', async () => {
    const server = createForwardProxyServer({ bind: '127.0.0.1:0' });
    await server.start();
    try {
      const port = server.listeners[0]!.port;
      const result = await curl(['-x', `http://127.0.0.1:${port}`, `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(result.body, `hello from ${backend.port}`);
    } finally {
      await server.shutdown({ deadlineMs: 0 });
    }
  });

  test('rejects unknown flags', () => {
    assert.throws(() => createForwardProxyServer({ flags: ['ftp' as 'http'] }), /unknown flag "ftp"/);
    assert.throws(() => createForwardProxyServer({ flags: [] }), /at least one/);
  });
});
