/**
 * WebSocket ↔ TCP bridges run by an instance: `[[ws_proxy]]` to an upstream
 * group (balancing and health: a backend that dies does not cost a client),
 * a `websocket_to_tcp` location on a reverse-proxy server, and reloads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import WebSocket from 'ws';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { Instance } from '../src/index.js';
import { trackedServer } from '@wmproxy/testkit';
import { until } from './helpers.js';

const NO_CONTROL = '[control]\nenabled = false\n';

/** A TCP echo that prefixes each reply with its name, so the test sees which backend served. */
function namedEcho(name: string): Promise<{ port: number; close(): Promise<void> }> {
  return trackedServer((socket) => socket.on('data', (chunk) => socket.write(Buffer.concat([Buffer.from(`${name}:`), chunk]))));
}

/** One binary message there and the first reply back, through a WebSocket at `url`. */
async function roundTrip(url: string, text: string): Promise<string> {
  const ws = new WebSocket(url, ['binary']);
  ws.on('error', () => {});
  await once(ws, 'open');
  const reply = once(ws, 'message');
  ws.send(Buffer.from(text));
  const [data] = (await reply) as [Buffer];
  ws.close();
  await once(ws, 'close');
  return data.toString();
}

function portOf(addresses: string[]): number {
  return Number(addresses[0]!.split(':').pop());
}

test('[[ws_proxy]] ws2tcp balances over an upstream group; clients are still served when one backend dies', async () => {
  const a = await namedEcho('a');
  const b = await namedEcho('b');
  const config = parseConfig(
    `${NO_CONTROL}
[[upstream]]
name = "echoes"
servers = ["127.0.0.1:${a.port}", "127.0.0.1:${b.port}"]
health_check = { interval = "100ms", timeout = "100ms", fall = 1, rise = 1 }

[[ws_proxy]]
name = "bridge"
mode = "ws2tcp"
listen = "127.0.0.1:0"
upstream = "echoes"
`,
    'toml',
  );
  const instance = await Instance.start(config, { logger: silentLogger });
  try {
    const url = `ws://127.0.0.1:${portOf(instance.addressesOf('bridge'))}/`;
    const served = [];
    for (let i = 0; i < 4; i++) served.push(await roundTrip(url, `hello ${i}`));
    assert.deepEqual(served.map((reply) => reply.split(':')[0]).sort(), ['a', 'a', 'b', 'b']);
    assert.ok(served.every((reply, i) => reply.endsWith(`hello ${i}`)));
    const status = instance.status().services.find((service) => service.name === 'bridge')!;
    assert.equal(status.kind, 'ws-proxy');
    assert.equal(status.mode, 'ws2tcp');

    await a.close();
    // Right away (before a health check noticed) and after: every client reaches b.
    const after = [];
    for (let i = 0; i < 6; i++) after.push(await roundTrip(url, `again ${i}`));
    assert.deepEqual(after, [0, 1, 2, 3, 4, 5].map((i) => `b:again ${i}`));
    await until(() => instance.upstreams()[0]!.servers.find((server) => server.address.endsWith(`:${a.port}`))!.available === false, 'the dead backend marked down');
    assert.equal(await roundTrip(url, 'last'), 'b:last');
  } finally {
    await instance.stop();
    await a.close().catch(() => undefined);
    await b.close();
  }
});

test('a websocket_to_tcp location upgrades on a reverse-proxy server beside its other locations', async () => {
  const echo = await namedEcho('tcp');
  const config = parseConfig(
    `${NO_CONTROL}
[[server]]
name = "web"
listen = "127.0.0.1:0"

[[server.location]]
path = "/tcp/"
websocket_to_tcp = { target = "127.0.0.1:${echo.port}", origins = ["https://app.example"] }

[[server.location]]
path = "/"
respond = { status = 200, body = "page" }
`,
    'toml',
  );
  const instance = await Instance.start(config, { logger: silentLogger });
  try {
    const port = portOf(instance.addressesOf('web'));
    const page = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(await page.text(), 'page');
    // The endpoint's own checks: the Origin allow-list, then a plain GET is not an upgrade.
    const ws = new WebSocket(`ws://127.0.0.1:${port}/tcp/`, ['binary'], { origin: 'https://app.example' });
    await once(ws, 'open');
    const reply = once(ws, 'message');
    ws.send(Buffer.from('through the location'));
    assert.equal(((await reply) as [Buffer])[0].toString(), 'tcp:through the location');
    ws.close();
    await once(ws, 'close');
    const foreign = new WebSocket(`ws://127.0.0.1:${port}/tcp/`, { origin: 'https://evil.example' });
    foreign.on('error', () => {});
    const [, response] = (await once(foreign, 'unexpected-response')) as [unknown, { statusCode: number }];
    assert.equal(response.statusCode, 403);
    foreign.terminate();
    const plain = await fetch(`http://127.0.0.1:${port}/tcp/`);
    assert.equal(plain.status, 426);
    // The same connection still serves a keep-alive request after a location answered locally.
    assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200);
  } finally {
    await instance.stop();
    await echo.close();
  }
});

test('a reload retargets a [[ws_proxy]] and stops a removed one', async () => {
  const one = await namedEcho('one');
  const two = await namedEcho('two');
  const file = (target: number, extra: string) => parseConfig(`${NO_CONTROL}
[[ws_proxy]]
name = "b"
mode = "ws2tcp"
listen = "127.0.0.1:0"
target = "127.0.0.1:${target}"
${extra}`, 'toml');
  const instance = await Instance.start(file(one.port, '[[ws_proxy]]\nname = "gone"\nmode = "ws2tcp"\nlisten = "127.0.0.1:0"\ntarget = "127.0.0.1:1"\n'), { logger: silentLogger });
  try {
    assert.equal(await roundTrip(`ws://127.0.0.1:${portOf(instance.addressesOf('b'))}/`, 'x'), 'one:x');
    const result = await instance.reload(file(two.port, ''));
    assert.equal(result.ok, true, result.message);
    assert.ok(result.changes.includes('ws_proxy "gone" stopped'), JSON.stringify(result.changes));
    assert.equal(await roundTrip(`ws://127.0.0.1:${portOf(instance.addressesOf('b'))}/`, 'y'), 'two:y');
    assert.deepEqual(instance.addressesOf('gone'), []);
  } finally {
    await instance.stop();
    await one.close();
    await two.close();
  }
});
