/**
 * /metrics follows Prometheus' naming conventions: HELP and TYPE for every
 * family, counters end in `_total`, durations are in `_seconds`, label sets
 * are bounded (no client address, no request path, no raw status code).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { Instance } from '../src/index.js';
import { TunnelClient, parseMapSpec } from '@wmproxy/tunnel';
import { backend, until } from './helpers.js';

import { everyFamilyConfig, parseExposition, type Family } from './exposition.js';

/**
 * Every label any family may carry: each takes values from the configuration
 * (`name`: a managed certificate's name; `client`: a tunnel credential's name;
 * `mapping`: a tunnel mapping, from the authenticated clients' configurations)
 * or a fixed set.
 */
const BOUNDED_LABELS = new Set(['code', 'result', 'service', 'kind', 'upstream', 'server', 'state', 'target', 'to', 'reason', 'worker', 'le', 'name', 'status', 'client', 'mapping']);

function checkConventions(families: Map<string, Family>, secret: string): void {
  for (const family of families.values()) {
    assert.match(family.name, /^wmproxy_/, 'one namespace');
    if (family.type === 'counter') assert.match(family.name, /_total$/, `counter ${family.name} ends in _total`);
    else assert.doesNotMatch(family.name, /_total$/, `${family.type} ${family.name} does not end in _total`);
    if (family.type === 'histogram' || /duration|latency|uptime|_time|timestamp/.test(family.name)) assert.match(family.name, /_seconds(_total)?$/, `${family.name} is in seconds`);
    assert.doesNotMatch(family.name, /_(ms|milliseconds|kb|mb)(_|$)/, `${family.name} uses base units`);
    for (const sample of family.samples) {
      for (const [key, value] of Object.entries(sample.labels)) {
        assert.ok(BOUNDED_LABELS.has(key), `${sample.name}: label ${key} is not in the bounded set`);
        assert.ok(!value.includes(secret), `${sample.name}: no request path in labels`);
      }
      if (sample.labels.code !== undefined) assert.match(sample.labels.code, /^[1-5]xx$/, 'status classes, not raw codes');
    }
  }
}

test('/metrics follows Prometheus conventions: HELP/TYPE, _total counters, _seconds durations, bounded labels; rate-limited requests and reload results are exported', async () => {
  const app = await backend('app');
  const config = everyFamilyConfig(app.address);
  const instance = await Instance.start(parseConfig(config, 'toml'), { logger: silentLogger, load: async () => parseConfig(config, 'toml') });
  try {
    const [front] = instance.addressesOf(instance.status().services.find((service) => service.kind === 'http')!.name);
    const secret = '/secret-path-7f3a';
    assert.equal((await fetch(`http://${front}${secret}`)).status, 200);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(`http://${front}/limited`)).status);
    assert.deepEqual(statuses, [200, 429, 429]);
    assert.equal((await instance.reload()).ok, true);
    const text = await (await fetch(`http://${instance.controlAddress}/metrics`)).text();
    const families = parseExposition(text);
    assert.ok(families.size > 10);
    checkConventions(families, secret);
    const value = (name: string, labels: Record<string, string> = {}) =>
      families.get(name)?.samples.find((sample) => Object.entries(labels).every(([key, wanted]) => sample.labels[key] === wanted))?.value;
    assert.equal(value('wmproxy_http_limited_requests_total', { reason: 'rate_limited' }), 2);
    assert.equal(value('wmproxy_http_limited_requests_total', { reason: 'concurrency_limited' }), 0);
    assert.equal(value('wmproxy_reloads_total', { result: 'ok' }), 1);
    assert.equal(value('wmproxy_reloads_total', { result: 'rejected' }), 0);
    assert.ok(value('wmproxy_config_last_reload_success_timestamp_seconds')! > 1_600_000_000);
    assert.equal(value('wmproxy_http_requests_total', { code: '2xx' }), 2);
    assert.equal(value('wmproxy_http_requests_total', { code: '4xx' }), 2);
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('the tunnel in /metrics: clients by credential, streams, bytes and mapping groups, with bounded labels', async () => {
  const app = await backend('local');
  const config = parseConfig(
    `[control]\nlisten = "127.0.0.1:0"\n[tunnel.server]\nlisten = "127.0.0.1:0"\nplain = true\nhttp_listen = "127.0.0.1:0"\n[[tunnel.server.clients]]\nname = "office"\ntoken = "office-token-1"\n`,
    'toml',
  );
  const instance = await Instance.start(config, { logger: silentLogger });
  const status = () => instance.status().tunnel!.server!;
  const client = new TunnelClient({ server: status().address, token: 'office-token-1', tls: false, mappings: [parseMapSpec(`web=http:127.0.0.1:${app.port}@app.test`)] }).start();
  try {
    await client.ready();
    const front = status().http[0]!;
    const secret = '/secret-path-9c1e';
    const get = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const [host, port] = [front.slice(0, front.lastIndexOf(':')), Number(front.slice(front.lastIndexOf(':') + 1))];
        http.get({ host, port, path: secret, headers: { host: 'app.test' }, agent: false }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve(body));
        }).on('error', reject);
      });
    // The web front applies a joining client's mappings right after its registration.
    await until(async () => (await get()) === `local ${secret}`, 'the mapping is served');
    for (let i = 0; i < 2; i++) assert.equal(await get(), `local ${secret}`);
    const families = parseExposition(await (await fetch(`http://${instance.controlAddress}/metrics`)).text());
    checkConventions(families, secret);
    const value = (name: string, labels: Record<string, string>) => families.get(name)?.samples.find((sample) => Object.entries(labels).every(([key, wanted]) => sample.labels[key] === wanted))?.value;
    assert.equal(value('wmproxy_tunnel_clients', { client: 'office' }), 1);
    assert.equal(value('wmproxy_tunnel_client_reconnects_total', { client: 'office' }), 0);
    assert.equal(value('wmproxy_tunnel_mapping_clients', { mapping: 'web', kind: 'http' }), 1);
    assert.ok(value('wmproxy_tunnel_streams_total', { client: 'office' })! >= 1, 'the engine opened a stream (and keeps it alive for the next requests)');
    assert.ok(value('wmproxy_tunnel_sent_bytes_total', { client: 'office' })! > 3 * secret.length, 'the requests went down the tunnel');
    assert.ok(value('wmproxy_tunnel_received_bytes_total', { client: 'office' })! > 3 * 'local '.length, 'the answers came back');
    assert.equal(value('wmproxy_tunnel_open_streams', { client: 'office' }) !== undefined, true);
    assert.equal(value('wmproxy_tunnel_penalized_sources', {}), 0);
    assert.equal(value('wmproxy_tunnel_penalty_refused_total', {}), 0);
    assert.equal(value('wmproxy_tunnel_handshakes_refused_total', {}), 0);

    // A credential that left stays, with its counters: they never go down.
    const sent = value('wmproxy_tunnel_sent_bytes_total', { client: 'office' })!;
    await client.stop({ deadlineMs: 0 });
    await until(() => status().clients.length === 0, 'the client left');
    const after = parseExposition(await (await fetch(`http://${instance.controlAddress}/metrics`)).text());
    const again = (name: string) => after.get(name)?.samples.find((sample) => sample.labels.client === 'office')?.value;
    assert.equal(again('wmproxy_tunnel_clients'), 0);
    assert.ok(again('wmproxy_tunnel_sent_bytes_total')! >= sent);
    assert.equal(after.get('wmproxy_tunnel_mapping_clients')?.samples.find((sample) => sample.labels.mapping === 'web')?.value, 0);
  } finally {
    await client.stop({ deadlineMs: 0 });
    await instance.stop();
    await app.kill();
  }
});
