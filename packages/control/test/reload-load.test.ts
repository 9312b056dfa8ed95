/**
 * Hot reload under load: ten reloads, each changing both the reverse proxy
 * and the forward proxy, while clients keep sending requests through both
 * over keep-alive connections. Not one request may fail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { Instance } from '../src/index.js';
import { backend, until } from './helpers.js';

function configText(generation: number, backends: string[]): string {
  return `
[control]
enabled = false
[reverse]
response_headers = ["set X-Generation ${generation}"]
[[upstream]]
name = "app"
servers = [${backends.map((address) => JSON.stringify(address)).join(', ')}]
health_check = { interval = "200ms", timeout = "150ms" }
[[server]]
name = "web"
listen = "127.0.0.1:0"
[[server.location]]
path = "/"
upstream = "app"
[[proxy]]
name = "mixed"
listen = "127.0.0.1:0"
via = "1.1 generation-${generation}"
`;
}

interface Tally {
  ok: number;
  failed: string[];
  generations: Set<string>;
}

function request(agent: http.Agent, options: http.RequestOptions): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...options, agent }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
      response.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** A client loop over one keep-alive agent until `stop.done`. */
async function load(stop: { done: boolean }, tally: Tally, make: () => http.RequestOptions, header: string): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    while (!stop.done) {
      try {
        const response = await request(agent, make());
        if (response.status !== 200 || !response.body.startsWith('load')) tally.failed.push(`${response.status} ${response.body.slice(0, 80)}`);
        else {
          tally.ok++;
          tally.generations.add(String(response.headers[header]));
        }
      } catch (error) {
        tally.failed.push((error as Error).message);
      }
    }
  } finally {
    agent.destroy();
  }
}

test('ten reloads while requests flow through a reverse proxy and a forward proxy lose no request', async () => {
  const one = await backend('load');
  const two = await backend('load');
  const backends = [one.address, two.address];
  const instance = await Instance.start(parseConfig(configText(0, backends), 'toml'), { logger: silentLogger });
  const reverse: Tally = { ok: 0, failed: [], generations: new Set() };
  const forward: Tally = { ok: 0, failed: [], generations: new Set() };
  const stop = { done: false };
  try {
    const [web] = instance.addressesOf('web');
    const [proxy] = instance.addressesOf('mixed');
    await until(() => instance.upstreams()[0]!.servers.every((server) => server.state === 'healthy'), 'both backends healthy');
    const [webHost, webPort] = [web!.slice(0, web!.lastIndexOf(':')), Number(web!.slice(web!.lastIndexOf(':') + 1))];
    const [proxyHost, proxyPort] = [proxy!.slice(0, proxy!.lastIndexOf(':')), Number(proxy!.slice(proxy!.lastIndexOf(':') + 1))];
    const clients = [
      ...Array.from({ length: 4 }, () => load(stop, reverse, () => ({ host: webHost, port: webPort, path: '/r' }), 'x-generation')),
      ...Array.from({ length: 2 }, () => load(stop, forward, () => ({ host: proxyHost, port: proxyPort, path: `http://${one.address}/f`, headers: { host: one.address } }), 'via')),
    ];
    await until(() => reverse.ok > 20 && forward.ok > 10, 'traffic to flow');
    for (let generation = 1; generation <= 10; generation++) {
      const result = await instance.reload(parseConfig(configText(generation, backends), 'toml'));
      assert.equal(result.ok, true, result.message);
      assert.deepEqual(instance.addressesOf('web'), [web], 'the reverse proxy keeps its port');
      assert.deepEqual(instance.addressesOf('mixed'), [proxy], 'the forward proxy keeps its port');
      await sleep(100);
    }
    const before = { reverse: reverse.ok, forward: forward.ok };
    await until(() => reverse.ok > before.reverse + 5 && forward.ok > before.forward + 5, 'traffic after the last reload');
    stop.done = true;
    await Promise.all(clients);
    assert.deepEqual(reverse.failed, [], 'reverse-proxy requests failed during reloads');
    assert.deepEqual(forward.failed, [], 'forward-proxy requests failed during reloads');
    // The reloads really took effect while the traffic flowed.
    assert.ok(reverse.generations.has('10'), `reverse generations seen: ${[...reverse.generations].join(',')}`);
    assert.equal(instance.status().reloads.ok, 10);
  } finally {
    stop.done = true;
    await instance.stop();
    await one.kill();
    await two.kill();
  }
});
