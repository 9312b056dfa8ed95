// A real browser through a tunnel: headless Chromium (Debian's `chromium`)
// loads a page, its script and a fetch() from a local service reached only
// through an http mapping. Skipped when chromium is absent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, chromiumDumpDom } from '@wmproxy/testkit';
import { TunnelClient, TunnelHttpFront, TunnelServer, parseMapSpec } from '../src/index.js';

const PAGE = '<!doctype html><html><head><title>through the tunnel</title><script src="/app.js"></script></head><body><p id="out">loading</p></body></html>';
const SCRIPT = "fetch('/api/data').then((r) => r.json()).then((d) => { document.getElementById('out').textContent = 'data: ' + d.value; });";

test('headless Chromium loads a page, its script and a fetch() through a tunnel http mapping', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, async () => {
  const seen: Array<{ url: string; agent: string; forwarded: string }> = [];
  const local = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', agent: String(req.headers['user-agent'] ?? ''), forwarded: String(req.headers['x-forwarded-host'] ?? '') });
    if (req.url === '/') res.setHeader('content-type', 'text/html').end(PAGE);
    else if (req.url === '/app.js') res.setHeader('content-type', 'text/javascript').end(SCRIPT);
    else if (req.url === '/api/data') res.setHeader('content-type', 'application/json').end(JSON.stringify({ value: 'from behind the NAT' }));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => local.listen(0, '127.0.0.1', resolve));
  const localPort = (local.address() as { port: number }).port;
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false }).start();
  const front = await new TunnelHttpFront(server, { listen: '127.0.0.1:0' }).start();
  const client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: false, mappings: [parseMapSpec(`web=http:127.0.0.1:${localPort}@app.tunnel.test`)] }).start();
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-'));
  try {
    await client.ready();
    await front.sync();
    const port = front.addresses[0]!.split(':').pop();
    const dom = await chromiumDumpDom(`http://app.tunnel.test:${port}/`, { profileDir: profile, extra: ['--host-resolver-rules=MAP app.tunnel.test 127.0.0.1'] });
    assert.match(dom, /<p id="out">data: from behind the NAT<\/p>/);
    assert.deepEqual(seen.map((entry) => entry.url).filter((url) => url !== '/favicon.ico'), ['/', '/app.js', '/api/data']);
    assert.ok(seen.every((entry) => /HeadlessChrome|Chrome/.test(entry.agent)), 'the browser made every request');
    assert.ok(seen.every((entry) => entry.forwarded === `app.tunnel.test:${port}`), 'through the tunnel server (which adds X-Forwarded-Host)');
  } finally {
    await client.stop({ deadlineMs: 0 });
    await front.close();
    await server.stop({ deadlineMs: 0 });
    local.closeAllConnections();
    await new Promise<void>((resolve) => local.close(() => resolve()));
    rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
  }
});
