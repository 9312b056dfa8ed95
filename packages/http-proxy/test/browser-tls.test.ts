import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger, parseAddress, type Server } from '@wmproxy/core-net';
import { CHROMIUM, chromiumFlags, spkiHash, testPki, type TestPki } from '@wmproxy/testkit';
import { createForwardProxyServer } from '../src/index.js';

/** Headless Chromium's DOM of `url`, loaded through `proxy` (an https:// proxy URL). */
function dumpDom(proxy: string, url: string, spki: string): Promise<{ stdout: string; stderr: string }> {
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-'));
  const env = { ...process.env };
  for (const name of ['http_proxy', 'https_proxy', 'all_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY']) delete env[name];
  const args = [
    ...chromiumFlags(profile),
    `--proxy-server=${proxy}`,
    // Chromium never proxies loopback unless told to.
    '--proxy-bypass-list=<-loopback>',
    // The test CA is not in Chromium's store: trust the proxy's (and the origin's) key by its hash, as a pinned key.
    `--ignore-certificate-errors-spki-list=${spki}`,
    '--dump-dom',
    url,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(CHROMIUM!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      // Chromium's helper processes may still be writing the profile as they die: retry.
      rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
      resolve({ stdout, stderr });
    });
  });
}

let pki: TestPki;
let page: http.Server;
let securePage: https.Server;
let proxy: Server;
const logs: string[] = [];
const page200 = (req: http.IncomingMessage, res: http.ServerResponse): void => {
  res.setHeader('Content-Type', 'text/html');
  res.end(`<html><body><p id="greeting">hello ${req.url} via ${req.headers.via ?? 'a tunnel'}</p></body></html>`);
};

before(async () => {
  pki = testPki();
  page = http.createServer(page200).listen(0, '127.0.0.1');
  securePage = https.createServer({ cert: pki.server.cert, key: pki.server.key }, page200).listen(0, '127.0.0.1');
  await Promise.all([new Promise((resolve) => page.once('listening', resolve)), new Promise((resolve) => securePage.once('listening', resolve))]);
  const logger = new Logger({ level: 'info', sink: { write: (line: string) => logs.push(line) } });
  proxy = await createForwardProxyServer({ bind: [parseAddress('127.0.0.1:0')], tls: { cert: pki.server.cert, key: pki.server.key }, logger }).start();
});
after(async () => {
  await proxy?.shutdown({ deadlineMs: 0 });
  page?.close();
  securePage?.close();
  pki?.cleanup();
});

const skip = CHROMIUM ? false : 'chromium is not installed';

test('headless Chromium loads an http:// and an https:// page through an HTTPS proxy (--proxy-server=https://)', { skip, timeout: 150_000 }, async () => {
  const proxyUrl = `https://localhost:${proxy.listeners[0]!.port}`;
  const spki = spkiHash(pki.server.certPath);
  const plainPort = (page.address() as AddressInfo).port;
  const plain = await dumpDom(proxyUrl, `http://localhost:${plainPort}/from-browser`, spki);
  assert.match(plain.stdout, /<p id="greeting">hello \/from-browser via 1\.1 wmproxy<\/p>/, plain.stderr.slice(-2000));
  const securePort = (securePage.address() as AddressInfo).port;
  const secure = await dumpDom(proxyUrl, `https://localhost:${securePort}/secure`, spki);
  assert.match(secure.stdout, /<p id="greeting">hello \/secure via a tunnel<\/p>/, secure.stderr.slice(-2000));
  assert.ok(logs.some((line) => line.includes('tunnel open') && line.includes(`localhost:${securePort}`)), logs.join(''));
});
