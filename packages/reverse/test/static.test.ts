import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend, startProxy, request, rawExchange } from './helpers.js';

test('a static location serves files (with HEAD and conditional requests) next to a proxied one', async () => {
  const root = mkdtempSync(join(tmpdir(), 'wmproxy-static-'));
  const big = Buffer.alloc(300 * 1024, 0x62);
  writeFileSync(join(root, 'hello.txt'), 'hello file\n');
  writeFileSync(join(root, 'big.bin'), big);
  const backend = await startBackend('api');
  const { proxy, base, port } = await startProxy({
    upstreams: [{ name: 'api', servers: [{ address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', static: { root } }, { path: '/api/', upstream: 'api' }] }] }],
  });
  try {
    const file = await request(`${base}/hello.txt`);
    assert.equal(file.status, 200);
    assert.equal(file.body, 'hello file\n');
    assert.equal(file.headers['content-length'], '11');
    assert.match(String(file.headers['content-type']), /text\/plain/);
    const etag = String(file.headers.etag);
    assert.equal((await request(`${base}/hello.txt`, { headers: { 'if-none-match': etag } })).status, 304);
    assert.equal((await request(`${base}/api/x`)).body, 'api');
    assert.equal((await request(`${base}/missing.txt`)).status, 404);
    const bigReply = await request(`${base}/big.bin`);
    assert.equal(bigReply.body.length, big.length);
    // HEAD then GET on one connection: the HEAD has the full length and no body.
    const raw = await rawExchange(port, 'HEAD /hello.txt HTTP/1.1\r\nHost: a\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.equal((raw.match(/HTTP\/1\.1 200/g) ?? []).length, 2);
    assert.match(raw, /\r\n\r\nhello file\n$/);
    assert.equal((raw.match(/hello file/g) ?? []).length, 1);
  } finally {
    await proxy.close();
    await backend.close();
  }
});
