/**
 * /metrics follows Prometheus' naming conventions: HELP and TYPE for every
 * family, counters end in `_total`, durations are in `_seconds`, label sets
 * are bounded (no client address, no request path, no raw status code).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { Instance } from '../src/index.js';
import { backend } from './helpers.js';

import { everyFamilyConfig, parseExposition } from './exposition.js';

/** Every label any family may carry: each takes values from the configuration (`name`: a managed certificate's name) or a fixed set. */
const BOUNDED_LABELS = new Set(['code', 'result', 'service', 'kind', 'upstream', 'server', 'state', 'target', 'to', 'reason', 'worker', 'le', 'name', 'status']);

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
