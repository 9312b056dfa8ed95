import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReverseProxy } from '../src/index.js';

function selfSigned(name: string): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`, '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1'], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
}

function get(port: number, servername: string): Promise<{ status: number; body: string; cert: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/', servername, headers: { host: servername }, rejectUnauthorized: false, agent: false }, (res) => {
      let body = '';
      const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().subject?.CN ?? '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cert: String(cert) }));
    });
    req.on('error', reject);
  });
}

test('an HTTPS listener in front of an HTTPS upstream: X-Forwarded-Proto is https, Host passes through', async () => {
  const main = selfSigned('main.test');
  const backend = https.createServer({ cert: main.cert, key: main.key }, (req, res) => {
    res.end(`proto=${req.headers['x-forwarded-proto']} host=${req.headers.host}`);
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', () => resolve()));
  const backendPort = (backend.address() as AddressInfo).port;
  const proxy = new ReverseProxy({
    upstreams: [{ name: 'app', servers: [{ address: `127.0.0.1:${backendPort}`, tls: true, tlsVerify: false }] }],
    servers: [
      {
        listen: '127.0.0.1:0',
        tls: { cert: main.cert, key: main.key },
        vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }],
      },
    ],
  });
  await proxy.start();
  try {
    const port = Number(proxy.addresses[0]!.split(':').pop());
    const a = await get(port, 'main.test');
    assert.equal(a.status, 200);
    assert.equal(a.body, 'proto=https host=main.test');
    assert.equal(a.cert, 'main.test');
    const b = await get(port, 'www.main.test');
    assert.equal(b.body, 'proto=https host=www.main.test');
  } finally {
    await proxy.close();
    await new Promise<void>((resolve) => backend.close(() => resolve()));
  }
});

test('one HTTPS listener, several certificates chosen by SNI: each name gets its own certificate and virtual host (curl --resolve)', async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const run = promisify(execFile);
  const alpha = selfSigned('alpha.test');
  const beta = selfSigned('beta.test');
  const proxy = new ReverseProxy({
    upstreams: [],
    servers: [
      {
        listen: '127.0.0.1:0',
        tls: { cert: alpha.cert, key: alpha.key, sni: { 'beta.test': beta } },
        vhosts: [
          { names: ['alpha.test'], locations: [{ path: '/', respond: { status: 200, body: 'alpha vhost' } }] },
          { names: ['beta.test'], locations: [{ path: '/', respond: { status: 200, body: 'beta vhost' } }] },
        ],
      },
    ],
  });
  await proxy.start();
  try {
    const port = Number(proxy.addresses[0]!.split(':').pop());
    for (const name of ['alpha.test', 'beta.test']) {
      const { stdout, stderr } = await run('curl', ['-sS', '-v', '-k', '--resolve', `${name}:${port}:127.0.0.1`, `https://${name}:${port}/`], { timeout: 20_000 });
      assert.equal(stdout, `${name.split('.')[0]} vhost`);
      assert.match(stderr, new RegExp(`subject: CN=${name.replace('.', '\\.')}\\b`), `the certificate of ${name}`);
    }
  } finally {
    await proxy.close();
  }
});

test('reload with a new certificate reopens the HTTPS listener on the same address: new connections get the new certificate', async () => {
  const before = selfSigned('before.test');
  const after = selfSigned('after.test');
  const spec = (listen: string, pair: { cert: string; key: string }) => ({
    listen,
    tls: pair,
    vhosts: [{ locations: [{ path: '/', respond: { status: 200, body: 'hello' } }] }],
  });
  const proxy = new ReverseProxy({ upstreams: [], shutdownDeadlineMs: 500, servers: [spec('127.0.0.1:0', before)] });
  await proxy.start();
  try {
    const address = proxy.addresses[0]!;
    const port = Number(address.split(':').pop());
    assert.equal((await get(port, 'x.test')).cert, 'before.test');
    await proxy.reload({ upstreams: [], shutdownDeadlineMs: 500, servers: [spec(address, after)] });
    assert.deepEqual(proxy.addresses, [address]);
    const reply = await get(port, 'x.test');
    assert.equal(reply.cert, 'after.test');
    assert.equal(reply.body, 'hello');
  } finally {
    await proxy.close();
  }
});
