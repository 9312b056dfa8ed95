// Service discovery: a group's servers come from a source (DNS SRV records
// through the DNS cache, served here by a real dnsmasq; or any source an
// embedder gives) and join and leave in place, new ones under slow start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DNSMASQ, dnsmasqServer } from '@wmproxy/testkit';
import { srvServers, type DiscoveredServer, type DiscoverySource } from '../src/index.js';
import { request, startBackend, startProxy, until, type Backend } from './helpers.js';

/** A source the test drives: `publish` hands a list to every watcher. */
function manualSource(): DiscoverySource & { publish(servers: DiscoveredServer[]): void; watching: number } {
  const updates = new Set<(servers: DiscoveredServer[]) => void>();
  return {
    watching: 0,
    watch(_target, update) {
      updates.add(update);
      this.watching++;
      return {
        close: () => {
          updates.delete(update);
          this.watching--;
        },
      };
    },
    publish(servers) {
      for (const update of updates) update(servers);
    },
  };
}

async function hits(base: string, count: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const reply = await request(base + '/');
    const who = reply.status === 200 ? reply.body : `status ${reply.status}`;
    seen.set(who, (seen.get(who) ?? 0) + 1);
  }
  return seen;
}

test('SRV records become servers: the lowest priority serves, higher ones are backups, weight 0 counts as 1', () => {
  assert.deepEqual(srvServers([
    { name: 'b.internal', port: 80, priority: 10, weight: 0 },
    { name: 'a.internal', port: 8080, priority: 10, weight: 5 },
    { name: 'c.internal', port: 80, priority: 20, weight: 1 },
  ]), [
    { address: 'a.internal:8080', weight: 5, backup: false },
    { address: 'b.internal:80', weight: 1, backup: false },
    { address: 'c.internal:80', weight: 1, backup: true },
  ]);
  assert.deepEqual(srvServers([]), []);
});

test('discovered servers join and leave a group in place; a new one ramps up under slow start; a request in flight to a server that leaves completes', async () => {
  const source = manualSource();
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const a = await startBackend('a', (req, res, backend) => {
    if (req.url === '/slow') void held.then(() => res.end(backend.name));
    else res.end(backend.name);
  });
  const b = await startBackend('b');
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [], discover: { source: 'manual', target: 'app' } }],
    discovery: { manual: source },
    health: { slowStartMs: 600_000, slowStartMinPercent: 10 },
  });
  try {
    assert.equal(source.watching, 1);
    // Nothing found yet: no server to send to.
    assert.equal((await request(base + '/')).status, 503);
    source.publish([{ address: a.address }]);
    assert.deepEqual(await hits(base, 5), new Map([['a', 5]]));
    const serverA = proxy.upstreams.get('app')!.servers[0]!;
    // b joins: at 10 % of its weight at first, so a takes most of the traffic, b some.
    source.publish([{ address: a.address }, { address: b.address }]);
    assert.equal(proxy.upstreams.get('app')!.servers[0], serverA, 'a server that stays is the same object (pool, counters)');
    assert.ok(proxy.health.targets().includes(b.address), 'the new server is health-checked');
    const mix = await hits(base, 60);
    assert.ok((mix.get('b') ?? 0) >= 1, `b gets traffic: ${JSON.stringify([...mix])}`);
    assert.ok((mix.get('b') ?? 0) * 3 < (mix.get('a') ?? 0), `b ramps up slowly: ${JSON.stringify([...mix])}`);
    // a request in flight to a; a leaves; the request still completes.
    source.publish([{ address: a.address }]);
    const slow = (async () => {
      for (;;) {
        const reply = request(base + '/slow');
        return reply;
      }
    })();
    await until(() => serverA.active === 1, 'the slow request reached a');
    source.publish([{ address: b.address }]);
    assert.deepEqual(proxy.upstreams.get('app')!.servers.map((server) => server.address), [b.address]);
    assert.ok(!proxy.health.targets().includes(a.address), 'a server that left is no longer checked');
    release();
    const reply = await slow;
    assert.deepEqual([reply.status, reply.body], [200, 'a']);
    assert.deepEqual(await hits(base, 5), new Map([['b', 5]]));
  } finally {
    await proxy.close();
    await a.close();
    await b.close();
  }
  assert.equal(source.watching, 0, 'closing the proxy stops following');
});

test('a reload that keeps the discovery target keeps the servers found; one that drops it stops following', async () => {
  const source = manualSource();
  const a = await startBackend('a');
  const upstream = { name: 'app', servers: [], discover: { source: 'manual', target: 'app' } };
  const { proxy, base } = await startProxy({ upstreams: [upstream], discovery: { manual: source } });
  try {
    source.publish([{ address: a.address }]);
    await proxy.reload({ servers: [{ listen: proxy.addresses[0]!, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }], upstreams: [{ ...upstream, policy: 'least_conn' }], discovery: { manual: source } });
    assert.equal(source.watching, 1);
    assert.deepEqual(await hits(base, 3), new Map([['a', 3]]));
    await proxy.reload({ servers: [{ listen: proxy.addresses[0]!, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }], upstreams: [{ name: 'app', servers: [{ address: a.address }] }] });
    assert.equal(source.watching, 0);
    await assert.rejects(proxy.reload({ upstreams: [{ name: 'x', servers: [], discover: { source: 'nope', target: 'x' } }] }), /unknown discovery source "nope"/);
  } finally {
    await proxy.close();
    await a.close();
  }
});

const skip = DNSMASQ ? false : 'dnsmasq is not installed (.ci/run installs dnsmasq-base)';

test('an SRV record set served by dnsmasq: a server added in DNS joins the group, one removed leaves it', { skip }, async () => {
  const backends: Backend[] = [await startBackend('a'), await startBackend('b')];
  const [a, b] = backends as [Backend, Backend];
  const name = '_http._tcp.app.internal';
  const hosts = [{ name: 'a.app.internal', address: '127.0.0.1' }, { name: 'b.app.internal', address: '127.0.0.1' }];
  const dns = await dnsmasqServer({ srv: [{ name, target: 'a.app.internal', port: a.port }], hosts });
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [], discover: { source: 'srv', target: name }, health: { check: null } }],
    // Short validity: the sweep re-resolves the set every 200 ms.
    dns: { servers: [dns.address], ttlMs: 200, minTtlMs: 100, maxTtlMs: 1_000 },
  });
  const addresses = (): string[] => proxy.upstreams.get('app')!.servers.map((server) => server.address).sort();
  try {
    await until(() => addresses().length === 1, 'the first SRV answer');
    assert.deepEqual(addresses(), [`a.app.internal:${a.port}`]);
    assert.deepEqual(await hits(base, 4), new Map([['a', 4]]), 'the SRV target name resolves through the same DNS');
    await dns.setRecords({ srv: [{ name, target: 'a.app.internal', port: a.port }, { name, target: 'b.app.internal', port: b.port }], hosts });
    await until(() => addresses().length === 2, 'b joins');
    await until(async () => ((await hits(base, 10)).get('b') ?? 0) > 0, 'traffic reaches b');
    await dns.setRecords({ srv: [{ name, target: 'b.app.internal', port: b.port }], hosts });
    await until(() => addresses().length === 1 && addresses()[0] === `b.app.internal:${b.port}`, 'a leaves');
    assert.deepEqual(await hits(base, 6), new Map([['b', 6]]));
  } finally {
    await proxy.close();
    await dns.close();
    for (const backend of backends) await backend.close();
  }
});
