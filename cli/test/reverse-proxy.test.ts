import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedCert } from '@wmproxy/testkit';
import { Running, curl, wmproxy } from './helpers.js';

function get(port: number, path: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      })
      .on('error', reject);
  });
}

async function backend(name: string): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer((req, res) => {
    res.setHeader('X-Seen-Env', String(req.headers['x-env']));
    res.end(req.url === '/health' ? 'ok' : name);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

test('wmproxy reverse-proxy balances over --to servers, applies --header rules and writes the access log', async () => {
  const a = await backend('a');
  const b = await backend('b');
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-rp-'));
  const logFile = join(dir, 'access.log');
  const cli = new Running([
    'reverse-proxy',
    '--from', '127.0.0.1:0',
    '--to', `${a.url},${b.url}`,
    '--health-path', '/health',
    '--health-interval', '200ms',
    '--header', 'set X-Env test',
    '--header', 'down:set X-Proxy wmproxy',
    '--access-log', logFile,
  ]);
  const port = await cli.port(/reverse proxy ready listen=127\.0\.0\.1:(\d+)/);
  try {
    const bodies: string[] = [];
    for (let i = 0; i < 4; i++) {
      const reply = await get(port, '/x');
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['x-seen-env'], 'test');
      assert.equal(reply.headers['x-proxy'], 'wmproxy');
      bodies.push(reply.body);
    }
    assert.deepEqual(bodies.sort(), ['a', 'a', 'b', 'b']);
  } finally {
    assert.equal(await cli.stop('SIGINT'), 0);
    a.server.close();
    b.server.close();
  }
  const lines = readFileSync(logFile, 'utf8').trim().split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /"GET \/x HTTP\/1\.1" 200 /);
});

test('wmproxy reverse-proxy rejects bad arguments with exit 2 and one line', async () => {
  for (const args of [
    ['--from', '127.0.0.1:0'],
    ['--from', 'nonsense', '--to', 'http://127.0.0.1:1'],
    ['--from', '127.0.0.1:0', '--to', 'ftp://127.0.0.1:1'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--policy', 'lottery'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--header', 'set X-A'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--health-interval', 'soon'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--rise', '0'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--panic-threshold', '120'],
  ]) {
    const run = await wmproxy(['reverse-proxy', ...args]);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
  }
});

test('wmproxy reverse-proxy --cert/--key serves h2 by ALPN (and 1.1), --h2c cleartext h2 by prior knowledge', async () => {
  const a = await backend('a');
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-rp-h2-'));
  const { cert, key } = selfSignedCert();
  writeFileSync(join(dir, 'cert.pem'), cert);
  writeFileSync(join(dir, 'key.pem'), key);
  const tls = new Running(['reverse-proxy', '--from', '127.0.0.1:0', '--to', a.url, '--cert', join(dir, 'cert.pem'), '--key', join(dir, 'key.pem')]);
  const h2c = new Running(['reverse-proxy', '--from', '127.0.0.1:0', '--to', a.url, '--h2c']);
  try {
    const tlsPort = await tls.port(/reverse proxy ready listen=127\.0\.0\.1:(\d+)/);
    const h2cPort = await h2c.port(/reverse proxy ready listen=127\.0\.0\.1:(\d+)/);
    const viaTls = await curl(['--http2', '--cacert', join(dir, 'cert.pem'), '-w', ' %{http_version}', `https://127.0.0.1:${tlsPort}/x`]);
    assert.equal(viaTls.stdout, 'a 2');
    const oneOne = await curl(['--http1.1', '--cacert', join(dir, 'cert.pem'), '-w', ' %{http_version}', `https://127.0.0.1:${tlsPort}/x`]);
    assert.equal(oneOne.stdout, 'a 1.1');
    const prior = await curl(['--http2-prior-knowledge', '-w', ' %{http_version}', `http://127.0.0.1:${h2cPort}/x`]);
    assert.equal(prior.stdout, 'a 2');
  } finally {
    assert.equal(await tls.stop('SIGINT'), 0);
    assert.equal(await h2c.stop('SIGINT'), 0);
    a.server.close();
  }
  const bad = await wmproxy(['reverse-proxy', '--from', '127.0.0.1:0', '--to', a.url, '--cert', join(dir, 'cert.pem')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--cert and --key go together/);
});
