// The configuration store against a real etcd (Debian's etcd-server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { etcdForFile, until } from '@wmproxy/testkit';
import { ConfigStore, StoreError, parseStoreUrl, type StoredConfig } from '../src/index.js';

const { skip, etcd } = etcdForFile();

test('store URLs: hosts and prefix, or a clear error', () => {
  assert.deepEqual(parseStoreUrl('etcd://10.0.0.1:2379,10.0.0.2:2379/prod/edge/'), { hosts: ['10.0.0.1:2379', '10.0.0.2:2379'], prefix: '/prod/edge', display: 'etcd://10.0.0.1:2379,10.0.0.2:2379/prod/edge' });
  assert.equal(parseStoreUrl('etcd://[::1]:2379').prefix, '/wmproxy');
  assert.throws(() => parseStoreUrl('redis://x:1/p'), StoreError);
  assert.throws(() => parseStoreUrl('etcd://host/p'), /"host" is not host:port/);
});

test('push is a compare-and-swap: the first push needs an empty store, a stale revision is refused and nothing is overwritten', { skip }, async () => {
  const store = new ConfigStore(etcd.url('/cas'));
  const other = new ConfigStore(etcd.url('/cas'));
  try {
    assert.equal(await store.read(), undefined);
    const first = await store.push('workers = 1\n', 'toml', 0);
    assert.ok(first > 0);
    await assert.rejects(other.push('workers = 2\n', 'toml', 0), /changed meanwhile \(expected revision 0, found \d+\)/);
    const read = (await other.read())!;
    assert.equal(read.text, 'workers = 1\n');
    assert.equal(read.revision, first);
    // Two operators read the same revision; the second to push loses.
    const second = await store.push('workers = 3\n', 'toml', read.revision);
    await assert.rejects(other.push('workers = 4\n', 'toml', read.revision), StoreError);
    assert.deepEqual({ text: (await store.read())!.text, revision: (await store.read())!.revision }, { text: 'workers = 3\n', revision: second });
  } finally {
    await store.close();
    await other.close();
  }
});

test('a watcher sees every push; members register under leases and vanish when they stop', { skip }, async () => {
  const watcher = new ConfigStore(etcd.url('/watch'));
  const pusher = new ConfigStore(etcd.url('/watch'));
  const seen: StoredConfig[] = [];
  const states: boolean[] = [];
  try {
    await watcher.watch((config) => seen.push(config), (connected) => states.push(connected));
    let revision = 0;
    for (const text of ['a = 1\n', 'a = 2\n', 'a = 3\n']) revision = await pusher.push(text, 'toml', revision === 0 ? 0 : (await pusher.read())!.revision);
    await until(() => seen.length === 3, 'three versions watched');
    assert.deepEqual(seen.map((config) => config.text), ['a = 1\n', 'a = 2\n', 'a = 3\n']);
    assert.equal(seen[2]!.revision, revision);
    const member = { address: '127.0.0.1:1', version: 'test', configRevision: revision, health: { healthy: 1, unhealthy: 0 }, since: new Date().toISOString(), updatedAt: new Date().toISOString() };
    await watcher.register({ ...member, id: 'one' });
    await pusher.register({ ...member, id: 'two' });
    assert.deepEqual((await pusher.members()).map((m) => m.id), ['one', 'two']);
    await watcher.close();
    assert.deepEqual((await pusher.members()).map((m) => m.id), ['two'], 'a stopped member revokes its lease');
  } finally {
    await watcher.close();
    await pusher.close();
  }
});

test('an unreachable store fails fast with a StoreError naming it', { skip }, async () => {
  const store = new ConfigStore('etcd://127.0.0.1:1/nowhere', { timeoutMs: 500 });
  try {
    await assert.rejects(store.read(), (error: unknown) => error instanceof StoreError && /etcd:\/\/127\.0\.0\.1:1\/nowhere: read failed/.test(error.message));
  } finally {
    await store.close();
  }
});
