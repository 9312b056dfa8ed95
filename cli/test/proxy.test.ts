import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Running, curl, wmproxy } from './helpers.js';

/** The "listening" log line of `wmproxy proxy`, with the bound port. */
const listening = /listening .*address=127\.0\.0\.1:(\d+)/;

let backend: Server;
let backendPort = 0;
test('setup: a backend', async () => {
  backend = createServer((req, res) => res.end(`hello from ${req.url}`));
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  backendPort = (backend.address() as AddressInfo).port;
});
after(() => backend?.close());

test('wmproxy proxy serves HTTP, CONNECT and SOCKS5 on one port', async () => {
  const proxy = new Running(['proxy', '--bind', '127.0.0.1:0']);
  try {
    const port = await proxy.port(listening);
    const target = `http://127.0.0.1:${backendPort}/x`;
    assert.equal((await curl(['-x', `http://127.0.0.1:${port}`, target])).stdout, 'hello from /x');
    assert.equal((await curl(['-p', '-x', `http://127.0.0.1:${port}`, target])).stdout, 'hello from /x');
    assert.equal((await curl(['--socks5-hostname', `127.0.0.1:${port}`, `http://localhost:${backendPort}/y`])).stdout, 'hello from /y');
    assert.equal(await proxy.stop(), 0);
  } finally {
    proxy.kill();
  }
});

test('wmproxy proxy with --user/--pass refuses anonymous clients on every protocol', async () => {
  const proxy = new Running(['proxy', '--bind', '127.0.0.1:0', '--user', 'alice', '--pass', 's3cret']);
  try {
    const port = await proxy.port(listening);
    const target = `http://127.0.0.1:${backendPort}/`;
    const anonymous = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-x', `http://127.0.0.1:${port}`, target]);
    assert.equal(anonymous.stdout, '407');
    assert.notEqual((await curl(['--socks5', `127.0.0.1:${port}`, target])).code, 0);
    assert.equal((await curl(['-x', `http://alice:s3cret@127.0.0.1:${port}`, target])).stdout, 'hello from /');
    assert.equal((await curl(['--socks5', `127.0.0.1:${port}`, '--proxy-user', 'alice:s3cret', target])).stdout, 'hello from /');
    await proxy.stop();
  } finally {
    proxy.kill();
  }
});

test('wmproxy proxy refuses an open proxy on a public address, bad flags and bad addresses with exit 2', async () => {
  for (const [args, message] of [
    [['proxy', '--bind', '0.0.0.0:0'], 'refusing to run an open proxy'],
    [['proxy', '--bind', ':0'], 'refusing to run an open proxy'],
    [['proxy', '--bogus'], 'Nonexistent flag'],
    [['proxy', '--bind', '::1:80'], 'need brackets'],
    [['proxy', '--flag', 'ftp'], '"ftp" is not one of'],
    [['proxy', '--user', 'alice'], '--user and --pass go together'],
  ] as const) {
    const { code, stderr } = await wmproxy([...args]);
    assert.equal(code, 2, args.join(' '));
    assert.match(stderr, new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    assert.equal(stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${stderr}`);
  }
});

test('wmproxy version and --help answer', async () => {
  const version = await wmproxy(['version']);
  assert.match(version.stdout, /^wmproxy \d+\.\d+\.\d+ \((bun|node) /);
  const help = await wmproxy(['proxy', '--help']);
  assert.match(help.stdout, /--insecure-open/);
});
