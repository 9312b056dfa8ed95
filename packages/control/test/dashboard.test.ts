/**
 * The dashboard in a real browser: headless Chromium (Debian's `chromium`)
 * driven through the DevTools protocol. Skipped when chromium is absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { Instance } from '../src/index.js';
import { backend, until } from './helpers.js';
import { CHROMIUM, chromiumFlags } from '@wmproxy/testkit';
import { TunnelClient, parseMapSpec } from '@wmproxy/tunnel';


/** A minimal DevTools protocol client for one page. */
class Page {
  private id = 0;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  /** Protocol events (console messages, exceptions, requests) once their domain is enabled. */
  readonly events: Array<{ method: string; params: Record<string, unknown> }> = [];

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as { id?: number; method?: string; params?: Record<string, unknown>; result?: unknown; error?: { message: string } };
      if (message.id === undefined) {
        if (message.method) this.events.push({ method: message.method, params: message.params ?? {} });
        return;
      }
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) waiter?.reject(new Error(message.error.message));
      else waiter?.resolve(message.result);
    });
  }

  static async open(url: string): Promise<Page> {
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return new Page(socket);
  }

  /** The browser's first page, through its DevTools port. */
  static async first(port: number): Promise<Page> {
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ type: string; webSocketDebuggerUrl: string }>;
    return Page.open(targets.find((target) => target.type === 'page')!.webSocketDebuggerUrl);
  }

  send<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.id;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  async evaluate<T>(expression: string): Promise<T> {
    // A promise is awaited in the page: its value comes back.
    const result = await this.send<{ result: { value: T }; exceptionDetails?: unknown }>('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    return result.result.value;
  }

  close(): void {
    this.socket.close();
  }
}

async function launch(profile: string, extra: string[] = []): Promise<{ chrome: ChildProcess; port: number }> {
  const chrome = spawn(
    CHROMIUM!,
    [
      ...chromiumFlags(profile),
      ...extra,
      '--remote-debugging-address=127.0.0.1',
      '--remote-debugging-port=0',
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`chromium did not start: ${stderr}`)), 60_000);
    chrome.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    chrome.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`chromium exited with ${code}: ${stderr}`));
    });
  });
  return { chrome, port };
}


/**
 * Chromium's helper processes may still be writing the profile as they die
 * (they outlive the killed browser for a moment): retry, and if the directory
 * is still busy, leave it to the end of the process. A temporary directory
 * is not what these tests are about.
 */
async function killChrome(chrome: ChildProcess | undefined): Promise<void> {
  if (!chrome || chrome.exitCode !== null) return;
  const exited = new Promise((resolve) => chrome.once('exit', resolve));
  chrome.kill('SIGKILL');
  await exited;
}

function removeProfile(profile: string): void {
  try {
    rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
  } catch {
    process.once('exit', () => {
      try {
        rmSync(profile, { recursive: true, force: true });
      } catch {
        // Left in the temporary directory.
      }
    });
  }
}

/** A reverse proxy over two backends, health-checked every 200 ms, with its control API. */
function twoBackends(first: string, second: string): Promise<Instance> {
  const config = `
[control]
listen = "127.0.0.1:0"
[[upstream]]
name = "app"
servers = ["${first}", "${second}"]
health_check = { interval = "200ms", timeout = "150ms", rise = 1, fall = 2 }
[[server]]
listen = "127.0.0.1:0"
[[server.location]]
upstream = "app"
`;
  return Instance.start(parseConfig(config, 'toml'), { logger: silentLogger });
}

test('the dashboard shows upstream health live: a killed backend\'s row turns unhealthy without reloading the page', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, async () => {
  const alive = await backend('alive');
  const doomed = await backend('doomed');
  const instance = await twoBackends(alive.address, doomed.address);
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-'));
  let chrome: ChildProcess | undefined;
  let page: Page | undefined;
  try {
    const launched = await launch(profile);
    chrome = launched.chrome;
    page = await Page.first(launched.port);
    await page.send('Runtime.enable');
    await page.send('Page.navigate', { url: `http://${instance.controlAddress}/` });
    const stateOf = (address: string) => page!.evaluate<string | null>(`document.querySelector('tr[data-server="${address}"]')?.dataset.state ?? null`);
    await until(async () => (await stateOf(doomed.address)) === 'healthy', 'the row to show healthy', 30_000);
    assert.equal(await stateOf(alive.address), 'healthy');
    assert.equal(await page.evaluate<string>(`document.getElementById('conn').textContent`), 'live');
    // A marker on the window proves the page is not reloaded.
    await page.evaluate('window.__sameDocument = 42');
    await doomed.kill();
    await until(async () => (await stateOf(doomed.address)) === 'unhealthy', 'the killed backend\'s row to turn unhealthy', 30_000);
    assert.equal(await page.evaluate<number>('window.__sameDocument'), 42);
    assert.equal(await stateOf(alive.address), 'healthy');
    const colour = await page.evaluate<string>(`getComputedStyle(document.querySelector('tr[data-server="${doomed.address}"] .state')).color`);
    assert.equal(colour, 'rgb(207, 34, 46)');
    const events = await page.evaluate<string>(`document.getElementById('events').textContent`);
    assert.match(events, new RegExp(`${doomed.address.replace(/\./g, '\\.')} healthy → unhealthy`));
  } finally {
    page?.close();
    await killChrome(chrome);
    // The servers first, so that nothing keeps the test process alive if the clean-up below fails.
    await instance.stop();
    await alive.kill();
    removeProfile(profile);
  }
});

test('in a browser, the dashboard can call its own API, while a page of another site cannot stop the instance and a rebound name reads nothing', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, async () => {
  const text = `[control]\nlisten = "127.0.0.1:0"\n[[upstream]]\nname = "app"\nservers = ["127.0.0.1:1"]\nhealth_check = false\n`;
  const stops: number[] = [];
  const instance = await Instance.start(parseConfig(text, 'toml'), { logger: silentLogger, load: async () => parseConfig(text, 'toml'), onStopRequested: () => stops.push(Date.now()) });
  const control = instance.controlAddress!;
  const port = Number(control.slice(control.lastIndexOf(':') + 1));
  // The hostile site: its page fires the simple requests any site can make a browser send.
  const hostile = http.createServer((_request, response) => {
    response.setHeader('content-type', 'text/html');
    response.end(`<!doctype html><script>
      window.attempts = Promise.allSettled([
        fetch('http://127.0.0.1:${port}/stop', { method: 'POST', mode: 'no-cors', body: 'x' }),
        fetch('http://127.0.0.1:${port}/reload', { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: '{}' }),
      ]).then(() => 'sent');
    </script>`);
  });
  await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
  const hostilePort = (hostile.address() as AddressInfo).port;
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-'));
  let chrome: ChildProcess | undefined;
  let page: Page | undefined;
  try {
    // Names under .test resolve to this machine, as a DNS-rebinding attacker's name would.
    const launched = await launch(profile, ['--host-resolver-rules=MAP *.test 127.0.0.1']);
    chrome = launched.chrome;
    page = await Page.first(launched.port);
    await page.send('Runtime.enable');

    await page.send('Page.navigate', { url: `http://localhost:${port}/` });
    await until(async () => (await page!.evaluate<number>(`document.querySelectorAll('#services tbody tr').length`)) > 0, 'the dashboard to list the services', 30_000);
    const own = await page.evaluate<number>(`fetch('/reload', { method: 'POST', headers: { 'x-wmproxy-request': '1' } }).then((response) => response.status)`);
    assert.equal(own, 200, 'a same-origin POST from the dashboard passes');
    assert.equal(instance.metrics.reloadsOk, 1);

    await page.send('Page.navigate', { url: `http://evil.test:${hostilePort}/` });
    await until(async () => (await page!.evaluate<string>('typeof window.attempts')) === 'object', 'the hostile page to load', 30_000);
    assert.equal(await page.evaluate<string>('window.attempts'), 'sent');
    assert.equal((await fetch(`http://${control}/healthz`)).status, 200, 'still running');
    assert.equal(instance.stopping, false);
    assert.equal(stops.length, 0);
    assert.equal(instance.metrics.reloadsOk, 1, 'no reload from the hostile page');

    await page.send('Page.navigate', { url: `http://rebind.test:${port}/status` });
    await until(async () => /does not name this control API/.test((await page!.evaluate<string>('document.body ? document.body.innerText : ""')) ?? ''), 'the 421 answer', 30_000);
  } finally {
    page?.close();
    await killChrome(chrome);
    await instance.stop();
    await new Promise<void>((resolve) => hostile.close(() => resolve()));
    removeProfile(profile);
  }
});

test('the dashboard draws live charts from /series with uPlot served by the API: points arrive every second, a killed backend is marked on the time axis and in its health timeline, no console error, no request leaves the control API', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, async () => {
  const alive = await backend('alive');
  const doomed = await backend('doomed');
  const instance = await twoBackends(alive.address, doomed.address);
  const [front] = instance.addressesOf(instance.status().services.find((service) => service.kind === 'http')!.name);
  let load = true;
  const traffic = (async () => {
    while (load) {
      await fetch(`http://${front}/x`).then((response) => response.text()).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-'));
  let chrome: ChildProcess | undefined;
  let page: Page | undefined;
  try {
    const launched = await launch(profile);
    chrome = launched.chrome;
    page = await Page.first(launched.port);
    await page.send('Runtime.enable');
    await page.send('Network.enable');
    await page.send('Page.navigate', { url: `http://${instance.controlAddress}/` });
    await until(async () => (await page!.evaluate<boolean>('!!(window.__charts && window.__charts.ready)')) === true, 'uPlot to load from the control API', 30_000);
    const points = () => page!.evaluate<number>(`(window.__charts.plots.requests?.data[0].length) ?? 0`);
    await until(async () => (await points()) >= 3, 'the request chart to have points', 30_000);
    const served = () => page!.evaluate<number>(`window.__charts.plots.requests.data[2].reduce((sum, value) => sum + (value ?? 0), 0)`);
    await until(async () => (await served()) > 0, '2xx requests on the chart', 30_000);
    const before = await points();
    await until(async () => (await points()) > before, 'new points without reloading the page', 30_000);
    const charts = await page.evaluate<string[]>(`Object.keys(window.__charts.plots).sort()`);
    assert.deepEqual(charts, ['bytes', 'connections', 'latency', 'requests', 'upstream:app']);
    assert.ok((await page.evaluate<number>(`document.querySelectorAll('#charts canvas').length`)) >= 5, 'one canvas per chart');
    const latencyPoints = await page.evaluate<number>(`window.__charts.plots.latency.data[1].filter((value) => value !== null).length`);
    assert.ok(latencyPoints > 0, 'p50 has values');
    assert.equal(await page.evaluate<number>('window.__charts.markers'), 0, 'no transition yet');

    await doomed.kill();
    await until(async () => (await page!.evaluate<number>('window.__charts.markers')) > 0, 'the transition marked on the time axis', 30_000);
    const timeline = () => page!.evaluate<string>(`document.getElementById('timeline').textContent`);
    await until(async () => /left \(healthy → unhealthy/.test(await timeline()), 'the health timeline to say when and why the server left', 30_000);
    const down = () => page!.evaluate<number>(`document.querySelectorAll('#timeline .bar[data-server="${doomed.address}"] :is(.seg-unhealthy, .seg-ejected)').length`);
    await until(async () => (await down()) > 0, 'the server\'s timeline bar to show it down', 30_000);
    assert.equal(await page.evaluate<number>(`document.querySelectorAll('#timeline .bar[data-server="${alive.address}"] :is(.seg-unhealthy, .seg-ejected)').length`), 0);
    // The tables stay.
    assert.equal(await page.evaluate<string | null>(`document.querySelector('tr[data-server="${alive.address}"]')?.dataset.state ?? null`), 'healthy');
    const shots = process.env.WMPROXY_SCREENSHOTS;
    if (shots) {
      // Refresh docs/img: WMPROXY_SCREENSHOTS=docs/img node scripts/test.mjs dashboard --node
      await page.send('Emulation.setDeviceMetricsOverride', { width: 1400, height: 1500, deviceScaleFactor: 1, mobile: false });
      for (const scheme of ['light', 'dark']) {
        await page.send('Emulation.setEmulatedMedia', { features: [{ name: 'prefers-color-scheme', value: scheme }] });
        const polls = await page.evaluate<number>('window.__charts.polls');
        await until(async () => (await page!.evaluate<number>('window.__charts.polls')) > polls + 1, 'a redraw', 30_000);
        const shot = await page.send<{ data: string }>('Page.captureScreenshot', { format: 'png' });
        writeFileSync(join(shots, `dashboard-${scheme}.png`), Buffer.from(shot.data, 'base64'));
      }
    }

    const errors = page.events.filter((event) => event.method === 'Runtime.exceptionThrown' || (event.method === 'Runtime.consoleAPICalled' && event.params.type === 'error'));
    assert.deepEqual(errors, [], 'no console errors');
    const urls = page.events.filter((event) => event.method === 'Network.requestWillBeSent').map((event) => (event.params.request as { url: string }).url);
    assert.ok(urls.some((url) => url.endsWith('/assets/uplot.js')));
    const elsewhere = urls.filter((url) => !url.startsWith(`http://${instance.controlAddress}/`));
    assert.deepEqual(elsewhere, [], 'works offline: every request goes to the control API');
  } finally {
    load = false;
    await traffic;
    page?.close();
    await killChrome(chrome);
    await instance.stop();
    await alive.kill();
    removeProfile(profile);
  }
});

test('the dashboard lists the tunnel server\'s clients with their mappings, streams and bytes', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, async () => {
  const app = await backend('local');
  const config = `[control]\nlisten = "127.0.0.1:0"\n[tunnel.server]\nlisten = "127.0.0.1:0"\nplain = true\nallow_ports = [15000]\n[[tunnel.server.clients]]\nname = "office"\ntoken = "office-token-1"\n`;
  const instance = await Instance.start(parseConfig(config, 'toml'), { logger: silentLogger });
  const client = new TunnelClient({
    server: instance.status().tunnel!.server!.address,
    token: 'office-token-1',
    tls: false,
    mappings: [parseMapSpec(`db=tcp:127.0.0.1:${app.port}:1`), parseMapSpec(`web=http:127.0.0.1:${app.port}@app.test`)],
  }).start();
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-'));
  let chrome: ChildProcess | undefined;
  let page: Page | undefined;
  try {
    await client.ready();
    const launched = await launch(profile);
    chrome = launched.chrome;
    page = await Page.first(launched.port);
    await page.send('Runtime.enable');
    await page.send('Page.navigate', { url: `http://${instance.controlAddress}/` });
    const cells = () => page!.evaluate<string[] | null>(`(() => { const row = document.querySelector('#tunnel tr[data-client="office"]'); return row ? [...row.cells].map((c) => c.textContent) : null; })()`);
    const row = await until(cells, 'the tunnel client\'s row', 30_000);
    assert.equal(await page.evaluate<boolean>(`document.getElementById('tunnel-section').hidden`), false);
    const [side, name, address, , , reconnects, mappings, streams, bytes] = row;
    assert.equal(side, 'server');
    assert.equal(name, 'office');
    assert.match(address!, /^127\.0\.0\.1:\d+$/);
    assert.equal(reconnects, '0');
    assert.match(mappings!, /web \(http\)/);
    assert.match(mappings!, /db refused: public port 1 is not allowed/, 'a refused mapping says why');
    assert.equal(streams, '0');
    assert.match(bytes!, /^\d+(\.\d)? (B|KiB) \/ \d+(\.\d)? (B|KiB)$/);
  } finally {
    page?.close();
    await killChrome(chrome);
    await client.stop({ deadlineMs: 0 });
    await instance.stop();
    await app.kill();
    removeProfile(profile);
  }
});
