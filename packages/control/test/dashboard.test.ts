/**
 * The dashboard in a real browser: headless Chromium (Debian's `chromium`)
 * driven through the DevTools protocol. Skipped when chromium is absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSelfSignedCertificate, silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { Instance, type ClusterView } from '../src/index.js';
import { backend, until } from './helpers.js';
import { TunnelClient, parseMapSpec } from '@wmproxy/tunnel';
import { CHROMIUM, FakeCa, Page, closedPort, killChrome, launchChromium as launch, removeProfile } from '@wmproxy/testkit';

/** Open the instance's dashboard in a fresh headless Chromium, run `use` on the page, then close the browser. */
async function onDashboard(instance: Instance, use: (page: Page) => Promise<void>, domains: string[] = ['Runtime']): Promise<void> {
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-'));
  let chrome: ChildProcess | undefined;
  let page: Page | undefined;
  try {
    const launched = await launch(profile);
    chrome = launched.chrome;
    page = await Page.first(launched.port);
    for (const domain of domains) await page.send(`${domain}.enable`);
    await page.send('Page.navigate', { url: `http://${instance.controlAddress}/` });
    await use(page);
  } finally {
    page?.close();
    await killChrome(chrome);
    removeProfile(profile);
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
  try {
    await onDashboard(instance, async (page) => {
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
    });
  } finally {
    await instance.stop();
    await alive.kill();
  }
});

test('the dashboard shows the whole cluster: the store, "store unreachable" while it is, and every registered instance', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, async () => {
  const member = (id: string, configRevision: number) => ({ id, address: `10.0.0.${id.length}:8837`, version: '0.1.0', configRevision, health: { healthy: 2, unhealthy: 0 }, since: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:05Z' });
  const view = { store: 'etcd://127.0.0.1:2379/edge', connected: true, revision: 7, members: [member('edge-a', 7), member('edge-bb', 7), member('edge-ccc', 6)] } as ClusterView;
  const instance = await Instance.start(parseConfig('[control]\nlisten = "127.0.0.1:0"\n', 'toml'), { logger: silentLogger, cluster: { view: () => view } });
  try {
    await onDashboard(instance, async (page) => {
      await until(async () => (await page!.evaluate<number>(`document.querySelectorAll('#cluster tbody tr').length`)) === 3, 'three instances listed', 30_000);
      assert.equal(await page.evaluate<boolean>(`document.getElementById('cluster-section').hidden`), false);
      assert.equal(await page.evaluate<string>(`document.getElementById('store').textContent`), view.store);
      assert.equal(await page.evaluate<string>(`document.getElementById('store-state').textContent`), 'store reachable');
      // The instance still on revision 6 stands out.
      assert.equal(await page.evaluate<string>(`document.querySelector('tr[data-member="edge-ccc"]').className`), 'unhealthy');
      view.connected = false;
      view.lastError = 'connect ECONNREFUSED 127.0.0.1:2379';
      await page.send('Page.reload');
      await until(async () => /store unreachable/.test(await page!.evaluate<string>(`document.getElementById('store-state').textContent`)), 'the store shown unreachable', 30_000);
      assert.match(await page.evaluate<string>(`document.getElementById('store-state').textContent`), /ECONNREFUSED.*last good configuration/);
    });
  } finally {
    await instance.stop();
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

test('the dashboard draws live charts with uPlot served by the API: points are pushed over SSE every second, a killed backend is marked on the time axis and in its health timeline, no console error, no request leaves the control API', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, async () => {
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
    const pushes = await page.evaluate<number>('window.__charts.pushes');
    await until(async () => (await points()) > before, 'new points without reloading the page', 30_000);
    assert.equal(await page.evaluate<string>('window.__charts.transport'), 'sse', 'points come over the event stream');
    assert.ok((await page.evaluate<number>('window.__charts.pushes')) > pushes, 'the new points were pushed');
    assert.equal(await page.evaluate<number>('window.__charts.polls'), 0, '/series is not polled while the stream delivers');
    const charts = await page.evaluate<string[]>(`Object.keys(window.__charts.plots).sort()`);
    assert.deepEqual(charts, ['bytes', 'connections', 'latency', 'latency:app', 'requests', 'retries', 'upstream:app']);
    assert.ok((await page.evaluate<number>(`document.querySelectorAll('#charts canvas').length`)) >= 7, 'one canvas per chart');
    const bytesIn = await page.evaluate<number>(`window.__charts.plots.bytes.data[2].reduce((sum, value) => sum + (value ?? 0), 0)`);
    assert.ok(bytesIn > 0, 'request bytes on the bytes chart');
    const serverP99 = await page.evaluate<number>(`window.__charts.plots['latency:app'].data.slice(1).flat().filter((value) => value !== null).length`);
    assert.ok(serverP99 > 0, 'per-server p99 has values');
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
        const pushed = await page.evaluate<number>('window.__charts.pushes');
        await until(async () => (await page!.evaluate<number>('window.__charts.pushes')) > pushed + 1, 'a redraw', 30_000);
        const shot = await page.send<{ data: string }>('Page.captureScreenshot', { format: 'png' });
        writeFileSync(join(shots, `dashboard-${scheme}.png`), Buffer.from(shot.data, 'base64'));
      }
    }

    const errors = page.events.filter((event) => event.method === 'Runtime.exceptionThrown' || (event.method === 'Runtime.consoleAPICalled' && event.params.type === 'error'));
    assert.deepEqual(errors, [], 'no console errors');
    const urls = page.events.filter((event) => event.method === 'Network.requestWillBeSent').map((event) => (event.params.request as { url: string }).url);
    assert.ok(urls.some((url) => url.endsWith('/assets/uplot.js')));
    assert.ok(urls.some((url) => url.includes('/series/stream')), 'the charts follow the event stream');
    assert.ok(!urls.some((url) => url.includes('/series?')), 'and do not poll');
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

test('the dashboard\'s certificates table shows what the instance\'s API reports: names, status, issuer, expiry, next renewal, and a failing order\'s error', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, async () => {
  const storage = mkdtempSync(join(tmpdir(), 'wmproxy-dashboard-acme-'));
  const tlsPort = await closedPort();
  const config = `
[control]
listen = "127.0.0.1:0"
[acme]
storage = "${storage}"
challenges = ["tls-alpn-01"]
redirect = false
[[server]]
name = "good"
listen = "127.0.0.1:${tlsPort}"
server_name = ["good.site.test", "www.good.site.test"]
tls = "auto"
[[server.location]]
respond = { status = 200 }
[[server]]
name = "limited"
listen = "127.0.0.1:${tlsPort}"
server_name = ["limited.site.test"]
tls = "auto"
[[server.location]]
respond = { status = 200 }
`;
  // An in-process CA: it certifies one server and answers the other with Let's Encrypt's rate-limit error, naming when to come back.
  const comeBack = new Date(Math.floor(Date.now() / 1000) * 1000 + 2 * 3600_000);
  const rateLimited = `urn:ietf:params:acme:error:rateLimited: too many certificates already issued for this exact set of domains, retry after ${comeBack.toISOString().replace('T', ' ').replace('.000Z', ' UTC')}`;
  const ca = new FakeCa((names, key, notBefore, notAfter) => createSelfSignedCertificate({ altNames: names, key, notBefore, notAfter, commonName: 'Dashboard Test CA' }).cert);
  const authority = async () => ({
    name: 'fake-ca',
    order: (request: Parameters<FakeCa['order']>[0]) =>
      request.names[0] === 'limited.site.test' ? Promise.reject(new Error(rateLimited)) : ca.order(request),
  });
  // It validates as a CA does: a TLS-ALPN-01 handshake with the instance's listener.
  ca.answers = {
    http01: async () => undefined,
    tlsAlpn01: (name) =>
      new Promise((resolve) => {
        const socket = tls.connect({ host: '127.0.0.1', port: tlsPort, servername: name, rejectUnauthorized: false, ALPNProtocols: ['acme-tls/1'] });
        socket.once('secureConnect', () => {
          resolve(socket.alpnProtocol === 'acme-tls/1' ? { cert: socket.getPeerX509Certificate()!.toString() } : undefined);
          socket.destroy();
        });
        socket.once('error', () => resolve(undefined));
      }),
  };
  const instance = await Instance.start(parseConfig(config, 'toml'), { logger: silentLogger, acmeAuthority: authority });
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-'));
  let chrome: ChildProcess | undefined;
  let page: Page | undefined;
  try {
    await instance.acme.issued(['good.site.test', 'www.good.site.test']);
    await until(() => instance.acme.list().some((row) => row.status === 'failing'), 'the limited order to fail');
    const api = (await (await fetch(`http://${instance.controlAddress}/certs`)).json()) as { certificates: Array<{ names: string[]; status: string; issuer: string; notAfter: string; nextRenewal: string; failures: number; lastError?: string }> };
    const launched = await launch(profile);
    chrome = launched.chrome;
    page = await Page.first(launched.port);
    await page.send('Runtime.enable');
    await page.send('Page.navigate', { url: `http://${instance.controlAddress}/` });
    const rows = (): Promise<Array<{ names: string; status: string; className: string; cells: string[] }>> =>
      page!.evaluate(`[...document.querySelectorAll('#certs tbody tr')].map((tr) => ({ names: tr.dataset.names, status: tr.dataset.status, className: tr.className, cells: [...tr.cells].map((td) => td.textContent) }))`);
    await until(async () => (await rows()).length === 2, 'two certificate rows', 30_000);
    const shown = await rows();
    // Dates as the browser formats the API's instants.
    const local = (iso: string): Promise<string> => page!.evaluate<string>(`new Date(${JSON.stringify(iso)}).toLocaleString()`);
    const good = api.certificates.find((row) => row.names[0] === 'good.site.test')!;
    const limited = api.certificates.find((row) => row.names[0] === 'limited.site.test')!;
    const goodRow = shown.find((row) => row.names === 'good.site.test,www.good.site.test')!;
    assert.deepEqual(goodRow, {
      names: 'good.site.test,www.good.site.test',
      status: 'valid',
      className: 'healthy',
      cells: ['good.site.test, www.good.site.test', 'valid', good.issuer, await local(good.notAfter), await local(good.nextRenewal), ''],
    });
    assert.match(goodRow.cells[2]!, /Dashboard Test CA/);
    const limitedRow = shown.find((row) => row.names === 'limited.site.test')!;
    assert.equal(limitedRow.status, 'failing');
    assert.equal(limitedRow.className, 'unhealthy');
    assert.equal(limitedRow.cells[1], `failing (${limited.failures} failed)`);
    assert.equal(limitedRow.cells[3], '', 'no certificate yet: no expiry');
    assert.equal(limited.nextRenewal, comeBack.toISOString());
    assert.equal(limitedRow.cells[4], await local(comeBack.toISOString()), 'the retry: when the CA said to come back');
    assert.match(limitedRow.cells[5]!, /rateLimited: too many certificates/);
  } finally {
    page?.close();
    await killChrome(chrome);
    await instance.stop();
    removeProfile(profile);
    rmSync(storage, { recursive: true, force: true });
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
