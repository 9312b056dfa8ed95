import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setImmediate as turn } from 'node:timers/promises';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { STALL_AFTER } from '@wmproxy/health';
import { Instance } from '../src/index.js';
import { packageReadme } from '@wmproxy/testkit';
import { backend } from './helpers.js';

function config(servers: string[]): string {
  return `
[control]
listen = "127.0.0.1:0"
[health.passive]
consecutive_failures = 2
max_ejection_percent = 100
[[upstream]]
name = "app"
servers = [${servers.map((server) => `"${server}"`).join(', ')}]
health_check = false
[[server]]
name = "web"
listen = "127.0.0.1:0"
[[server.location]]
path = "/"
upstream = "app"
`;
}

/** `/metrics` as text. */
async function metrics(instance: Instance): Promise<string> {
  return (await fetch(`http://${instance.controlAddress}/metrics`)).text();
}

function sample(text: string, name: string, server: string, reason: string): number | undefined {
  const line = text.split('\n').find((entry) => entry.startsWith(`${name}{upstream="app",server="${server}",reason="${reason}"} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('/metrics counts ejections by detector (stall, connect_stall, consecutive_failures) and shows who is ejected why', async () => {
  const [a, b, c] = await Promise.all([backend('a'), backend('b'), backend('c')]);
  const instance = await Instance.start(parseConfig(config([a.address, b.address, c.address]), 'toml'), { logger: silentLogger });
  try {
    const before = await metrics(instance);
    for (const server of [a, b, c]) {
      for (const reason of ['consecutive_failures', 'stall', 'connect_stall']) {
        assert.equal(sample(before, 'wmproxy_upstream_ejections_total', server.address, reason), 0, `every label is there from the start (${reason})`);
        assert.equal(sample(before, 'wmproxy_upstream_ejected', server.address, reason), 0);
      }
    }
    assert.match(before, /# TYPE wmproxy_upstream_ejections_total counter/);
    assert.match(before, /# TYPE wmproxy_upstream_ejected gauge/);

    // a loses request-hedge races, b loses connect races (a blackholed server), c fails twice in a row.
    for (let i = 0; i < STALL_AFTER; i++) {
      assert.notEqual(instance.health.reportLostRace(a.address, performance.now()), 'ignored');
      assert.notEqual(instance.health.reportLostRace(b.address, performance.now(), 0, 'connect'), 'ignored');
      await turn();
    }
    instance.health.reportFailure(c.address, 'connect');
    instance.health.reportFailure(c.address, 'connect');

    const text = await metrics(instance);
    assert.equal(sample(text, 'wmproxy_upstream_ejections_total', a.address, 'stall'), 1);
    assert.equal(sample(text, 'wmproxy_upstream_ejections_total', b.address, 'connect_stall'), 1);
    assert.equal(sample(text, 'wmproxy_upstream_ejections_total', c.address, 'consecutive_failures'), 1);
    assert.equal(sample(text, 'wmproxy_upstream_ejections_total', a.address, 'connect_stall'), 0);
    assert.equal(sample(text, 'wmproxy_upstream_ejected', a.address, 'stall'), 1);
    assert.equal(sample(text, 'wmproxy_upstream_ejected', a.address, 'consecutive_failures'), 0);
    assert.equal(sample(text, 'wmproxy_upstream_ejected', b.address, 'connect_stall'), 1);
    assert.equal(sample(text, 'wmproxy_upstream_ejected', c.address, 'consecutive_failures'), 1);

    // The dashboard's rows (/upstreams) say why, in words and as the detector's name.
    const rows = instance.upstreams()[0]!.servers;
    const row = (address: string) => rows.find((server) => server.address === address)!;
    assert.equal(row(a.address).ejectKind, 'stall');
    assert.match(row(a.address).reason!, /stalled: 3 lost hedges in a row/);
    assert.equal(row(b.address).ejectKind, 'connect_stall');
    assert.match(row(b.address).reason!, /stalled: 3 lost connect races in a row/);
    assert.equal(row(c.address).ejectKind, 'consecutive_failures');
    assert.match(row(c.address).reason!, /2 consecutive connect failures/);

    // The events stream names the detector too.
    const events = instance.recentEvents.filter((event) => event.type === 'eject');
    assert.deepEqual(events.map((event) => [event.target, event.kind]).sort(), [[a.address, 'stall'], [b.address, 'connect_stall'], [c.address, 'consecutive_failures']].sort());
  } finally {
    await instance.stop();
    await Promise.all([a.kill(), b.kill(), c.kill()]);
  }
});

test('the README\'s metrics table names every family /metrics exports, with its type', async () => {
  const readme = packageReadme(import.meta.url);
  const documented = new Map<string, string>();
  for (const match of readme.matchAll(/^\| `(wmproxy_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)) documented.set(match[1]!, match[2]!);
  const a = await backend('a');
  const instance = await Instance.start(parseConfig(config([a.address]), 'toml'), { logger: silentLogger });
  try {
    const exported = [...(await metrics(instance)).matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((match) => [match[1]!, match[2]!] as const);
    assert.ok(exported.length > 10);
    for (const [name, type] of exported) assert.equal(documented.get(name), type, `${name} (${type}) in the README's metrics table`);
  } finally {
    await instance.stop();
    await a.kill();
  }
});

/** A backend answering every request with `status` after `delayMs`. */
async function answering(status: number, delayMs = 0): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer((request, response) => {
    request.resume();
    setTimeout(() => {
      response.statusCode = status;
      response.end(String(status));
    }, delayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())).then(() => server.closeAllConnections?.()),
  };
}

test('/metrics counts retries, request hedges won and lost, request bytes, and keeps a latency histogram per configured server', async () => {
  const bad = await answering(503);
  const good = await answering(200);
  const slow = await answering(200, 1_500);
  const fast = await answering(200);
  const text = `
[control]
listen = "127.0.0.1:0"
[health.passive]
enabled = false
[reverse]
hedge_request = "50ms"
hedge_request_budget = 1
[[upstream]]
name = "app"
policy = "first"
servers = ["${bad.address}", "${good.address}"]
health_check = false
[[upstream]]
name = "hedged"
policy = "first"
servers = ["${slow.address}", "${fast.address}"]
health_check = false
[[server]]
name = "web"
listen = "127.0.0.1:0"
[[server.location]]
path = "/hedged"
upstream = "hedged"
[[server.location]]
path = "/"
upstream = "app"
`;
  const instance = await Instance.start(parseConfig(text, 'toml'), { logger: silentLogger });
  try {
    const web = instance.addressesOf('web')[0]!;
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`http://${web}/r${i}`, { headers: { 'x-pad': 'p'.repeat(200) } })).status, 200);
    assert.equal(await (await fetch(`http://${web}/hedged`)).text(), '200');
    const exposition = await metrics(instance);
    const value = (line: string) => {
      const found = exposition.split('\n').find((entry) => entry.startsWith(`${line} `));
      return found === undefined ? undefined : Number(found.slice(found.lastIndexOf(' ') + 1));
    };
    assert.equal(value('wmproxy_http_retries_total'), 3, 'each request tried the 503 server first');
    assert.equal(value('wmproxy_http_hedges_total{result="won"}'), 1);
    assert.equal(value('wmproxy_http_hedges_total{result="lost"}'), 0);
    assert.ok(value('wmproxy_http_request_bytes_total')! > 3 * 200, 'request heads count as bytes in');
    assert.equal(value(`wmproxy_upstream_server_response_duration_seconds_count{upstream="app",server="${good.address}"}`), 3);
    assert.equal(value(`wmproxy_upstream_server_response_duration_seconds_count{upstream="hedged",server="${fast.address}"}`), 1);
    assert.equal(value(`wmproxy_upstream_server_response_duration_seconds_count{upstream="app",server="${bad.address}"}`), undefined, 'a server that answered nothing has no histogram');
  } finally {
    await instance.stop();
    await Promise.all([bad.close(), good.close(), slow.close(), fast.close()]);
  }
});
