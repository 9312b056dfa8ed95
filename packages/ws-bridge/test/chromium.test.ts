/**
 * Chromium's WebSocket API through ws2tcp: a page in headless Chromium
 * (Debian's `chromium`, driven through the DevTools protocol) sends binary
 * messages of every framing size class to a TCP echo behind the bridge and
 * compares what comes back byte for byte. Skipped when chromium is absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, Page, killChrome, launchChromium, removeProfile } from '@wmproxy/testkit';
import { Ws2TcpServer } from '../src/index.js';
import { tcpServer } from './helpers.js';

/** The page: `run(url)` echoes each size through the WebSocket and reports what matched. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>ws2tcp</title><script>
async function run(url) {
  const ws = new WebSocket(url, ['binary']);
  ws.binaryType = 'arraybuffer';
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('websocket error')); });
  let received = new Uint8Array(0);
  let wake = () => {};
  // The TCP echo may split or join messages: what counts is the byte stream.
  ws.onmessage = (event) => {
    const chunk = new Uint8Array(event.data);
    const joined = new Uint8Array(received.length + chunk.length);
    joined.set(received);
    joined.set(chunk, received.length);
    received = joined;
    wake();
  };
  const closed = new Promise((resolve) => { ws.onclose = (event) => resolve(event.code); });
  const results = [];
  for (const size of [1, 125, 126, 127, 65535, 65536, 65537, 1048576]) {
    const sent = new Uint8Array(size);
    for (let i = 0; i < size; i++) sent[i] = (i * 7 + size) & 255;
    received = new Uint8Array(0);
    ws.send(sent);
    while (received.length < size) await new Promise((resolve) => { wake = resolve; });
    let same = received.length === size;
    for (let i = 0; same && i < size; i++) same = received[i] === sent[i];
    results.push({ size, same, got: received.length });
  }
  const protocol = ws.protocol;
  // Text is refused with 1003 (websockify's behaviour), which the browser reports as the close code.
  ws.send('some text');
  const code = await closed;
  return JSON.stringify({ results, protocol, code });
}
</script>`;

test('Chromium\'s WebSocket API through ws2tcp: binary messages of every size class echo byte-exact; text is closed with 1003', { skip: CHROMIUM ? false : 'chromium is not installed' }, async () => {
  const echo = await tcpServer();
  const site = http.createServer((_request, response) => response.end(PAGE));
  site.listen(0, '127.0.0.1');
  await once(site, 'listening');
  const origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  const bridge = await new Ws2TcpServer({ listen: '127.0.0.1:0', target: `127.0.0.1:${echo.port}`, origins: [origin], maxMessageSize: 4 * 1024 * 1024 }).start();
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-ws-chromium-'));
  let chrome: Awaited<ReturnType<typeof launchChromium>>['chrome'] | undefined;
  try {
    const launched = await launchChromium(profile);
    chrome = launched.chrome;
    const page = await Page.first(launched.port);
    await page.send('Page.enable');
    await page.send('Page.navigate', { url: `${origin}/` });
    for (let i = 0; i < 200 && (await page.evaluate<string>('typeof run')) !== 'function'; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    const report = JSON.parse(await page.evaluate<string>(`run('ws://127.0.0.1:${bridge.boundAddresses[0]!.split(':').pop()}/')`)) as { results: Array<{ size: number; same: boolean; got: number }>; protocol: string; code: number };
    page.close();
    assert.deepEqual(report.results.filter((result) => !result.same), [], JSON.stringify(report.results));
    assert.equal(report.results.length, 8);
    assert.equal(report.protocol, 'binary');
    assert.equal(report.code, 1003);
  } finally {
    await killChrome(chrome);
    removeProfile(profile);
    await bridge.shutdown();
    site.close();
    await echo.close();
  }
});
