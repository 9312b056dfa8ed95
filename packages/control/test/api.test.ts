import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@wmproxy/core-net';
import { loadConfig, parseConfig } from '@wmproxy/config';
import { ControlClient, ControlClientError, Instance } from '../src/index.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { backend, until } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-api-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const TOKEN = 'test-token-1234';

function configText(app: string, control = `listen = "127.0.0.1:0"\ntoken = "${TOKEN}"`): string {
  return `
[control]
${control}
[[proxy]]
name = "mixed"
listen = "127.0.0.1:0"
users = { alice = "wonderland" }
[[upstream]]
name = "app"
servers = ["${app}"]
health_check = { interval = "100ms", timeout = "80ms", rise = 1, fall = 1 }
[[server]]
name = "web"
listen = "127.0.0.1:0"
[[server.location]]
path = "/"
upstream = "app"
`;
}

async function started(app: string, control?: string): Promise<{ instance: Instance; base: string; file: string; stops: number[] }> {
  const file = join(scratch, `config-${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(file, configText(app, control));
  const stops: number[] = [];
  const instance = await Instance.start(await loadConfig(file), { logger: silentLogger, load: () => loadConfig(file), onStopRequested: () => stops.push(Date.now()) });
  return { instance, base: `http://${instance.controlAddress!.replace('0.0.0.0', '127.0.0.1')}`, file, stops };
}

test('GET /status, /upstreams, /config and /metrics describe the running instance', async () => {
  const app = await backend('api');
  const { instance, base } = await started(app.address);
  try {
    const status = (await (await fetch(`${base}/status`)).json()) as { services: Array<{ kind: string; name: string; addresses: string[] }>; version: string; runtime: string };
    assert.deepEqual(status.services.map((service) => `${service.kind}:${service.name}`), ['forward:mixed', 'http:web', 'control:control']);
    assert.ok(status.services.every((service) => service.addresses.length > 0));
    assert.equal(status.version, '0.1.0');
    await until(() => instance.upstreams()[0]!.servers[0]!.state === 'healthy', 'the upstream to be healthy');
    await fetch(`http://${instance.addressesOf('web')[0]}/count-me`).then((response) => response.text());
    const upstreams = (await (await fetch(`${base}/upstreams`)).json()) as { upstreams: Array<{ name: string; servers: Array<{ address: string; state: string; requests: number; lastResults: unknown[]; reason: string }> }> };
    const server = upstreams.upstreams[0]!.servers[0]!;
    assert.equal(upstreams.upstreams[0]!.name, 'app');
    assert.equal(server.address, app.address);
    assert.equal(server.state, 'healthy');
    assert.equal(server.requests, 1);
    assert.ok(server.lastResults.length > 0);
    const config = await (await fetch(`${base}/config`)).text();
    assert.ok(!config.includes(TOKEN) && !config.includes('wonderland'), 'secrets are redacted');
    assert.match(config, /<redacted>/);
    const metrics = await fetch(`${base}/metrics`);
    assert.match(metrics.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    const text = await metrics.text();
    assert.match(text, new RegExp(`wmproxy_upstream_healthy\\{upstream="app",server="${app.address}",state="healthy"\\} 1`));
    assert.match(text, /wmproxy_http_requests_total\{code="2xx"\} 1/);
    assert.match(text, /# TYPE wmproxy_http_request_duration_seconds histogram/);
    assert.match(text, /wmproxy_health_probe_duration_seconds_count [1-9]/);
    const page = await fetch(`${base}/`);
    assert.match(page.headers.get('content-type')!, /text\/html/);
    assert.match(await page.text(), /EventSource/);
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('mutating endpoints need the bearer token when one is configured', async () => {
  const app = await backend('token');
  const { instance, base } = await started(app.address);
  try {
    const anonymous = await fetch(`${base}/reload`, { method: 'POST' });
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate')!, /^Bearer/);
    const wrong = await fetch(`${base}/stop`, { method: 'POST', headers: { authorization: 'Bearer nope-nope-nope' } });
    assert.equal(wrong.status, 401);
    assert.equal((await fetch(`${base}/status`)).status, 200, 'reading needs no token on loopback');
    const reload = await new ControlClient({ address: base, token: TOKEN }).request<{ ok: boolean }>('POST', '/reload');
    assert.equal(reload.status, 200);
    assert.equal(reload.body.ok, true);
    await assert.rejects(new ControlClient({ address: base }).request('POST', '/reload'), (error: unknown) => error instanceof ControlClientError && error.status === 401);
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('on a non-loopback bind every endpoint needs the token', async () => {
  const app = await backend('open');
  const { instance, base } = await started(app.address, `listen = "0.0.0.0:0"\ntoken = "${TOKEN}"`);
  try {
    assert.equal((await fetch(`${base}/status`)).status, 401);
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    assert.equal((await fetch(`${base}/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    assert.equal((await fetch(`${base}/upstreams?token=${TOKEN}`)).status, 200);
    const healthz = await fetch(`${base}/healthz`);
    assert.equal(healthz.status, 200, 'liveness needs no token');
    assert.equal(await healthz.text(), 'ok\n');
    assert.equal((await fetch(`${base}/status?probe=/healthz`)).status, 401, 'only the exact path is open');
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('POST /reload re-reads the file; an invalid one answers 422 with the errors', async () => {
  const app = await backend('reload');
  const { instance, base, file } = await started(app.address);
  const client = new ControlClient({ address: base, token: TOKEN });
  try {
    writeFileSync(file, configText(app.address).replace('name = "app"', 'name = "app"\npolicy = "sticky"'));
    const rejected = await client.request<{ ok: boolean; errors: Array<{ path: string; expected: string; found: string }> }>('POST', '/reload', [422]);
    assert.equal(rejected.status, 422);
    assert.equal(rejected.body.ok, false);
    assert.equal(rejected.body.errors[0]!.path, 'upstream[0].policy');
    assert.equal(rejected.body.errors[0]!.found, '"sticky" (string)');
    assert.equal(instance.config.upstreams[0]!.policy, 'round_robin');
    writeFileSync(file, configText(app.address).replace('name = "app"', 'name = "app"\npolicy = "least_conn"'));
    const applied = await client.request<{ ok: boolean; changes: string[] }>('POST', '/reload');
    assert.equal(applied.body.ok, true);
    assert.equal(instance.config.upstreams[0]!.policy, 'least_conn');
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('GET /events streams health transitions as they happen', async () => {
  const app = await backend('events');
  const { instance, base } = await started(app.address);
  const controller = new AbortController();
  try {
    await until(() => instance.upstreams()[0]!.servers[0]!.state === 'healthy', 'the upstream to be healthy');
    const response = await fetch(`${base}/events`, { signal: controller.signal });
    assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let received = '';
    const read = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        received += decoder.decode(value, { stream: true });
        if (/event: transition\ndata: .*"to":"unhealthy"/.test(received)) return;
      }
    })();
    await until(() => received.includes('event: hello'), 'the hello event');
    await app.kill();
    await read;
    const data = JSON.parse(/event: transition\ndata: (.*"to":"unhealthy".*)\n/.exec(received)![1]!) as { target: string; from: string; reason: string };
    assert.equal(data.target, app.address);
    assert.equal(data.from, 'healthy');
    assert.match(data.reason, /ECONNREFUSED|refused|ECONNRESET|reset/i, 'refused, or reset when a probe was in flight as the backend died');
  } finally {
    controller.abort();
    await instance.stop();
  }
});

test('GET /series/stream pushes each new sample: first the backlog after since, then one event per second holding only the new point, with the traffic of that second', async () => {
  const app = await backend('series');
  const { instance, base } = await started(app.address);
  const controller = new AbortController();
  try {
    await until(() => instance.upstreams()[0]!.servers[0]!.state === 'healthy', 'the upstream to be healthy');
    const response = await fetch(`${base}/series/stream?since=0&token=${TOKEN}`, { signal: controller.signal });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    const views: Array<{ t: number[]; requests: Record<string, number[]>; bytesIn: number[]; retries: number[]; servers: Array<{ requests: number[]; p99Ms: Array<number | null> }> }> = [];
    let stop = false;
    const read = (async () => {
      while (!stop) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = /^event: series\ndata: (.*)$/m.exec(message);
          if (data) views.push(JSON.parse(data[1]!));
        }
      }
    })().catch(() => undefined);
    await until(() => views.length >= 2, 'two pushed samples');
    const web = instance.addressesOf('web')[0]!;
    for (let i = 0; i < 5; i++) await fetch(`http://${web}/pushed-${i}`, { method: 'POST', body: 'x'.repeat(100) }).then((r) => r.text());
    await until(() => views.some((view) => (view.requests['2xx'] ?? []).some((count) => count > 0)), 'a pushed sample with the requests', 20_000);
    const times = views.flatMap((view) => view.t);
    assert.deepEqual(times, [...new Set(times)].sort((a, b) => a - b), 'each second is pushed once, in order');
    const later = views.slice(1);
    assert.ok(later.every((view) => view.t.length <= 2), 'after the backlog, events carry only the new samples');
    const busy = views.find((view) => (view.requests['2xx'] ?? []).some((count) => count > 0))!;
    const index = busy.requests['2xx']!.findIndex((count) => count > 0);
    await until(() => views.reduce((sum, view) => sum + (view.requests['2xx'] ?? []).reduce((a, b) => a + b, 0), 0) >= 5, 'all five requests pushed');
    assert.ok(busy.bytesIn[index]! >= 100, 'request bytes are pushed too');
    assert.ok(busy.servers[0]!.requests[index]! > 0);
    assert.notEqual(busy.servers[0]!.p99Ms[index], null, 'per-server latency of that second');
    stop = true;
    controller.abort();
    await read;
  } finally {
    controller.abort();
    await instance.stop();
    await app.kill();
  }
});

test('POST /stop stops the instance gracefully and tells its owner', async () => {
  const app = await backend('stop');
  const { instance, base, stops } = await started(app.address);
  const web = instance.addressesOf('web')[0]!;
  const response = await fetch(`${base}/stop`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(response.status, 202);
  await until(() => stops.length === 1, 'the stop to complete');
  await assert.rejects(fetch(`http://${web}/`));
  await assert.rejects(fetch(`${base}/status`));
  await app.kill();
});

test('GET /healthz answers 503 while the instance drains', async () => {
  // A backend that holds one request until released keeps the instance draining.
  let release: (() => void) | undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const app = http.createServer((request, response) => {
    if (request.url === '/hold') void held.then(() => response.end('released'));
    else response.end('ok');
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const { instance, base } = await started(`127.0.0.1:${(app.address() as AddressInfo).port}`);
  try {
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const web = instance.addressesOf('web')[0]!;
    const inFlight = fetch(`http://${web}/hold`).then((response) => response.text());
    await until(() => instance.status().services.some((service) => service.kind === 'http'), 'the server');
    await sleep(100); // the request reaches the backend
    const stopped = instance.stop();
    const during = await fetch(`${base}/healthz`);
    assert.equal(during.status, 503);
    assert.equal(await during.text(), 'stopping\n');
    release!();
    assert.equal(await inFlight, 'released', 'the held request finishes during the drain');
    await stopped;
  } finally {
    release!();
    await instance.stop();
    app.close();
  }
});
