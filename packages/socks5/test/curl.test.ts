import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { curl, startHttpTarget, startHttpsTarget, startProxy, type TestProxy } from './helpers.js';

describe('curl through the SOCKS5 server', () => {
  let v4: { port: number; close(): Promise<void> };
  let v6: { port: number; close(): Promise<void> };
  let open: TestProxy;
  let authed: TestProxy;

  before(async () => {
    v4 = await startHttpTarget('127.0.0.1');
    v6 = await startHttpTarget('::1');
    open = await startProxy();
    authed = await startProxy({ users: { alice: 's3cret', bob: 'pa:ss w0rd' } });
  });
  after(async () => {
    await Promise.all([open.close(), authed.close(), v4.close(), v6.close()]);
  });

  test('--socks5 fetches an IPv4 target, and the reply carried a real bound address', async () => {
    const result = await curl(['--socks5', `127.0.0.1:${open.port}`, `http://127.0.0.1:${v4.port}/v4`]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /hello \/v4 via 127\.0\.0\.1/);
    const line = await open.waitForLog('socks5 connect', `target=127.0.0.1:${v4.port}`);
    assert.match(line, /bound=127\.0\.0\.1:[1-9]\d*/);
    await open.waitForLog('socks5 closed', `target=127.0.0.1:${v4.port}`, 'bytesDown=');
  });

  test('--socks5-hostname sends the name localhost and the server resolves it', async () => {
    const result = await curl(['--socks5-hostname', `127.0.0.1:${open.port}`, `http://localhost:${v4.port}/by-name`]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /hello \/by-name/);
    await open.waitForLog('socks5 connect', `target=localhost:${v4.port}`);
  });

  test('an IPv6 target [::1] is reached', async () => {
    const result = await curl(['--socks5', `127.0.0.1:${open.port}`, `http://[::1]:${v6.port}/v6`]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /hello \/v6 via ::1/);
    await open.waitForLog('socks5 connect', `target=[::1]:${v6.port}`, 'bound=[::1]:');
  });

  test('--proxy-user with the right password goes through (IP and hostname modes)', async () => {
    const byIp = await curl(['--socks5', `127.0.0.1:${authed.port}`, '--proxy-user', 'alice:s3cret', `http://127.0.0.1:${v4.port}/auth`]);
    assert.equal(byIp.status, 0, byIp.stderr);
    assert.match(byIp.stdout, /hello \/auth/);
    const byName = await curl(['--socks5-hostname', `127.0.0.1:${authed.port}`, '--proxy-user', 'bob:pa:ss w0rd', `http://localhost:${v4.port}/auth2`]);
    assert.equal(byName.status, 0, byName.stderr);
    assert.match(byName.stdout, /hello \/auth2/);
    await authed.waitForLog('socks5 connect', 'user=bob');
  });

  test('a wrong password makes curl fail, and the server logs it', async () => {
    const result = await curl(['--socks5', `127.0.0.1:${authed.port}`, '--proxy-user', 'alice:wrong', `http://127.0.0.1:${v4.port}/`]);
    assert.notEqual(result.status, 0);
    assert.equal(result.stdout, '');
    await authed.waitForLog('socks5 authentication failed', 'user=alice');
  });

  test('no credentials on a server that requires them: refused with method 0xFF', async () => {
    const result = await curl(['--socks5', `127.0.0.1:${authed.port}`, `http://127.0.0.1:${v4.port}/`]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /authentication|method/i);
    await authed.waitForLog('socks5 no acceptable authentication method', 'required=username/password');
  });

  test('an HTTPS target through the tunnel, with a self-signed certificate checked against its CA', async () => {
    const secure = await startHttpsTarget('127.0.0.1');
    try {
      const dir = mkdtempSync(join(tmpdir(), 'wmproxy-ca-'));
      const caFile = join(dir, 'ca.pem');
      writeFileSync(caFile, secure.cert);
      const result = await curl(['--socks5-hostname', `127.0.0.1:${open.port}`, '--cacert', caFile, `https://localhost:${secure.port}/tls`]);
      rmSync(dir, { recursive: true, force: true });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, 'secure hello /tls');
    } finally {
      await secure.close();
    }
  });
});
