import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { testPki, type TestPki } from '@wmproxy/testkit';
import { Running, curl, wmproxy } from './helpers.js';

const listening = /listening .*address=127\.0\.0\.1:(\d+)/;

let pki: TestPki;
let pair: { cert: string; key: string };
let backend: Server;
let backendPort = 0;
before(async () => {
  pki = testPki();
  // The original's set-up: one self-signed pair on both nodes (server certificate, client certificate and trust anchor at once).
  pair = { cert: join(pki.dir, 'pair.pem'), key: join(pki.dir, 'pair.key') };
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=wmproxy',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', pair.key, '-out', pair.cert], { stdio: 'ignore' });
  backend = createServer((req, res) => res.end(`hello from ${req.url}`));
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  backendPort = (backend.address() as AddressInfo).port;
});
after(() => {
  backend?.close();
  pki?.cleanup();
});

/** Two wmproxy processes: `server` (TLS port) and `client` (plain port whose parent is `server`). */
async function chain(serverArgs: string[], clientArgs: (serverPort: number) => string[]): Promise<{ server: Running; client: Running; serverPort: number; clientPort: number }> {
  const server = new Running(['proxy', '--bind', '127.0.0.1:0', ...serverArgs]);
  const serverPort = await server.port(listening);
  const client = new Running(['proxy', '--bind', '127.0.0.1:0', ...clientArgs(serverPort)]);
  const clientPort = await client.port(listening);
  return { server, client, serverPort, clientPort };
}

test('the README chain with the original flags: -S --ts --two-way-tls to --tc --two-way-tls, one shared pair', { timeout: 90_000 }, async () => {
  const { server, client, clientPort } = await chain(['--tc', '--two-way-tls', '--cert', pair.cert, '--key', pair.key], (port) => [
    '-S', `127.0.0.1:${port}`, '--ts', '--two-way-tls', '--cert', pair.cert, '--key', pair.key,
  ]);
  try {
    const target = `http://127.0.0.1:${backendPort}/through-tls`;
    assert.equal((await curl(['-x', `http://127.0.0.1:${clientPort}`, target])).stdout, 'hello from /through-tls');
    assert.equal((await curl(['-p', '-x', `http://127.0.0.1:${clientPort}`, target])).stdout, 'hello from /through-tls');
    assert.equal((await curl(['--socks5-hostname', `127.0.0.1:${clientPort}`, target])).stdout, 'hello from /through-tls');
    // The server node's port is TLS: a plain client gets nothing from it.
    assert.notEqual((await curl(['-x', `http://127.0.0.1:${await server.port(listening)}`, target])).stdout, 'hello from /through-tls');
  } finally {
    client.kill();
    server.kill();
  }
});

test('the README mutual-TLS chain with our flags; a client without a certificate gets a 502 and the server logs the refusal', { timeout: 90_000 }, async () => {
  const serverArgs = ['--cert', pki.server.certPath, '--key', pki.server.keyPath, '--client-ca', pki.ca.certPath];
  const { server, client, clientPort, serverPort } = await chain(serverArgs, (port) => [
    '--upstream', `https://127.0.0.1:${port}`, '--upstream-ca', pki.ca.certPath, '--upstream-cert', pki.client.certPath, '--upstream-key', pki.client.keyPath,
  ]);
  const anonymous = new Running(['proxy', '--bind', '127.0.0.1:0', '--upstream', `https://127.0.0.1:${serverPort}`, '--upstream-ca', pki.ca.certPath]);
  try {
    const target = `http://127.0.0.1:${backendPort}/mtls`;
    assert.equal((await curl(['-x', `http://127.0.0.1:${clientPort}`, target])).stdout, 'hello from /mtls');
    const anonymousPort = await anonymous.port(listening);
    const refused = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-x', `http://127.0.0.1:${anonymousPort}`, target]);
    assert.equal(refused.stdout, '502');
    await anonymous.waitFor(/status=502 .*the TLS server refused our client certificate/, { stream: 'stderr' });
    await server.waitFor(/tls handshake refused .*client=127\.0\.0\.1:[1-9]\d* error="TLS handshake with 127\.0\.0\.1:\d+ failed: .*(certificate|CERTIFICATE)/, { stream: 'stderr' });
    // curl straight to the TLS port, as an HTTPS proxy, with and without the client certificate.
    const direct = ['--proxy', `https://127.0.0.1:${serverPort}`, '--proxy-cacert', pki.ca.certPath];
    assert.equal((await curl([...direct, '--proxy-cert', pki.client.certPath, '--proxy-key', pki.client.keyPath, target])).stdout, 'hello from /mtls');
    assert.notEqual((await curl([...direct, target])).code, 0);
  } finally {
    anonymous.kill();
    client.kill();
    server.kill();
  }
});

test('a parent whose certificate does not chain to --upstream-ca: 502 and a log line naming the parent', { timeout: 90_000 }, async () => {
  const { server, client, clientPort, serverPort } = await chain(['--cert', pki.server.certPath, '--key', pki.server.keyPath], (port) => [
    '--upstream', `https://127.0.0.1:${port}`, '--upstream-ca', pki.rogueCa.certPath,
  ]);
  try {
    const result = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-x', `http://127.0.0.1:${clientPort}`, `http://127.0.0.1:${backendPort}/`]);
    assert.equal(result.stdout, '502');
    await client.waitFor(new RegExp(`status=502 .*parent proxy 127\\.0\\.0\\.1:${serverPort}: TLS verification of 127\\.0\\.0\\.1:${serverPort} failed`), { stream: 'stderr' });
  } finally {
    client.kill();
    server.kill();
  }
});

test('TLS flags that cannot work are refused with exit 2 and one line', { timeout: 90_000 }, async () => {
  for (const [args, message] of [
    [['--cert', 'x.pem'], '--cert and --key go together'],
    [['--tc'], '--tc needs --cert and --key'],
    [['--ts'], '--ts needs --server (-S) or an --upstream'],
    [['--upstream', 'http://127.0.0.1:1', '--ts'], 'is not a TLS URL'],
    [['--upstream-ca', 'ca.pem'], 'need a TLS parent'],
    [['--client-ca', 'ca.pem', '--upstream', 'http://127.0.0.1:1'], '--client-ca needs a TLS port'],
    [['--cert', '/nonexistent.pem', '--key', '/nonexistent.key'], '--cert: cannot read /nonexistent.pem: ENOENT'],
    [['--upstream', 'http://127.0.0.1:1', '-S', '127.0.0.1:2'], 'use one'],
    [['--bind', '0.0.0.0:0', '--cert', 'PAIR', '--key', 'KEY'], 'refusing to run an open proxy'],
  ] as const) {
    const resolved = args.map((arg) => (arg === 'PAIR' ? pair.cert : arg === 'KEY' ? pair.key : arg));
    const { code, stderr } = await wmproxy(['proxy', ...resolved]);
    assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
    assert.match(stderr, new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), args.join(' '));
    assert.equal(stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${stderr}`);
  }
});

test('mutual TLS counts as authentication on a public bind', { timeout: 90_000 }, async () => {
  const proxy = new Running(['proxy', '--bind', '0.0.0.0:0', '--cert', pki.server.certPath, '--key', pki.server.keyPath, '--client-ca', pki.ca.certPath]);
  try {
    await proxy.waitFor(/listening .*address=0\.0\.0\.0:\d+/, { stream: 'stderr' });
  } finally {
    proxy.kill();
  }
});

test('wmproxy run with the original\'s config files: client.toml (server, ts, two_way_tls) → server.toml (tc, two_way_tls)', { timeout: 90_000 }, async () => {
  const free = async (): Promise<number> => {
    const { createServer: createNetServer } = await import('node:net');
    const server = createNetServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  };
  const [serverPort, clientPort] = [await free(), await free()];
  const serverFile = join(pki.dir, 'server.toml');
  const clientFile = join(pki.dir, 'client.toml');
  writeFileSync(serverFile, `disable_control = true\n[proxy]\nbind_addr = "127.0.0.1:${serverPort}"\ntc = true\ntwo_way_tls = true\ncert = "${pair.cert}"\nkey = "${pair.key}"\n`);
  writeFileSync(clientFile, `disable_control = true\n[proxy]\nbind_addr = "127.0.0.1:${clientPort}"\nserver = "127.0.0.1:${serverPort}"\nts = true\ntwo_way_tls = true\ncert = "${pair.cert}"\nkey = "${pair.key}"\n`);
  const server = new Running(['run', '-c', serverFile]);
  const client = new Running(['run', '-c', clientFile]);
  try {
    await server.waitFor(/running/);
    await client.waitFor(/running/);
    const target = `http://127.0.0.1:${backendPort}/from-config`;
    assert.equal((await curl(['-x', `http://127.0.0.1:${clientPort}`, target])).stdout, 'hello from /from-config');
    assert.equal((await curl(['--socks5-hostname', `127.0.0.1:${clientPort}`, target])).stdout, 'hello from /from-config');
    // The server port is TLS with client certificates: curl with the pair gets through, curl without it does not.
    const direct = ['--proxy', `https://127.0.0.1:${serverPort}`, '--proxy-cacert', pair.cert];
    assert.equal((await curl([...direct, '--proxy-cert', pair.cert, '--proxy-key', pair.key, target])).stdout, 'hello from /from-config');
    assert.notEqual((await curl([...direct, target])).code, 0);
  } finally {
    client.kill();
    server.kill();
  }
});
