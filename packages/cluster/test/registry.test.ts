// The etcd service registry behind `etcd+` discovery, against a real etcd:
// registrations under leases, a watch that follows them, and records that
// are not ours (or not valid) ignored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import etcd3 from 'etcd3';
import { silentLogger } from '@wmproxy/core-net';
import type { DiscoveredServer } from '@wmproxy/reverse';
import { etcdForFile, until } from '@wmproxy/testkit';
import { ServiceRegistry, StoreError, parseServiceRecord, servicePrefix } from '../src/index.js';

const { skip, etcd } = etcdForFile();

test('service records: host:port and an optional weight from 1 to 1000; anything else is not a server', () => {
  assert.deepEqual(parseServiceRecord('{"address":"10.0.0.5:8080","weight":3}'), { address: '10.0.0.5:8080', weight: 3 });
  assert.deepEqual(parseServiceRecord('{"address":"[::1]:80","weight":0}'), { address: '[::1]:80' });
  for (const bad of ['', 'x', '{"address":"host"}', '{"address":"a:0"}', '{"address":"a:70000"}', '{"address":"a b:80"}', 'null', '[]']) assert.equal(parseServiceRecord(bad), undefined, bad);
  fc.assert(
    fc.property(fc.string(), (text) => {
      const parsed = parseServiceRecord(text);
      return parsed === undefined || /:\d+$/.test(parsed.address);
    }),
  );
  fc.assert(
    fc.property(fc.domain(), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 1000 }), (host, port, weight) => {
      const address = `${host}:${port}`;
      assert.deepEqual(parseServiceRecord(JSON.stringify({ address, weight })), { address, weight });
    }),
  );
  assert.equal(servicePrefix('/services/app/'), '/services/app/');
  for (const bad of ['services/app', '/', ' ', '/a b']) assert.throws(() => servicePrefix(bad), StoreError, bad);
});

test('a watch follows registrations: one that registers joins, one that stops leaves at once, foreign keys are ignored, and an etcd outage keeps the last list', { skip, timeout: 90_000 }, async () => {
  const watching = new ServiceRegistry(etcd.url());
  const one = new ServiceRegistry(etcd.url());
  const two = new ServiceRegistry(etcd.url());
  const lists: DiscoveredServer[][] = [];
  const latest = (): string[] => (lists.at(-1) ?? []).map((server) => server.address);
  try {
    await one.register('/services/web', '127.0.0.1:3001', { weight: 5 });
    const watch = watching.discovery().watch('/services/web', (servers) => lists.push(servers), silentLogger);
    await until(() => lists.length > 0, 'the first list');
    assert.deepEqual(lists[0], [{ address: '127.0.0.1:3001', weight: 5 }]);
    await two.register('/services/web', '127.0.0.1:3002');
    await until(() => latest().length === 2, 'the second server');
    assert.deepEqual(latest(), ['127.0.0.1:3001', '127.0.0.1:3002']);
    // Another service, and a value that is not a server, under the prefix: not ours.
    await two.register('/services/other', '127.0.0.1:4000');
    const raw = new etcd3.Etcd3({ hosts: `http://127.0.0.1:${etcd.port}` });
    await raw.put('/services/web/junk').value('not json');
    assert.deepEqual(await watching.list('/services/web'), [{ address: '127.0.0.1:3001', weight: 5 }, { address: '127.0.0.1:3002' }]);
    // A clean stop revokes the lease: gone at once, not after the TTL.
    await one.close();
    await until(() => latest().length === 1, 'the stopped one leaves');
    assert.deepEqual(latest(), ['127.0.0.1:3002']);
    // etcd away: no update, the last list stays in use; back: the watch resumes.
    const seen = lists.length;
    await etcd.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(lists.length, seen);
    await etcd.start();
    await raw.put('/services/web/127.0.0.1:3003').value(JSON.stringify({ address: '127.0.0.1:3003' }));
    await until(() => latest().includes('127.0.0.1:3003'), 'a change after the outage');
    raw.close();
    watch.close();
  } finally {
    await Promise.all([watching.close(), one.close(), two.close()]);
  }
});
