import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Logger } from '@wmproxy/core-net';
import { DnsCache, type Resolution } from '../src/index.js';
import { startProxy, request, keepAliveAgent, until } from './helpers.js';

/** Two backends on one port, at 127.0.0.1 and 127.0.0.2 (both loopback), answering their own address. */
async function twoAddresses(): Promise<{ port: number; hits: Map<string, number>; close(): Promise<void> }> {
  const hits = new Map<string, number>();
  for (let tries = 0; ; tries++) {
    const servers = ['127.0.0.1', '127.0.0.2'].map((ip) => {
      const server = http.createServer((req, res) => {
        hits.set(ip, (hits.get(ip) ?? 0) + 1);
        res.end(ip);
      });
      server.keepAliveTimeout = 30_000;
      return { ip, server };
    });
    await new Promise<void>((resolve) => servers[0]!.server.listen(0, '127.0.0.1', () => resolve()));
    const port = (servers[0]!.server.address() as AddressInfo).port;
    const second = await new Promise<boolean>((resolve) => {
      servers[1]!.server.once('error', () => resolve(false));
      servers[1]!.server.listen(port, '127.0.0.2', () => resolve(true));
    });
    const close = async (): Promise<void> => {
      for (const { server } of servers) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    };
    if (second) return { port, hits, close };
    servers[1]!.server.close();
    await new Promise<void>((resolve) => servers[0]!.server.close(() => resolve()));
    if (tries > 5) throw new Error('cannot bind 127.0.0.2 on the same port');
  }
}

test('an upstream DNS name is resolved once per TTL, and traffic moves when its address changes', async () => {
  const backends = await twoAddresses();
  let answer: () => Promise<Resolution> = async () => ({ addresses: ['127.0.0.1'], ttlMs: 5_000 });
  let lookups = 0;
  let clock = 1_000_000;
  const lines: string[] = [];
  const { proxy, base } = await startProxy({
    logger: new Logger({ level: 'info', json: true, sink: { write: (line: string) => lines.push(line) } }),
    dns: {
      resolver: (host) => {
        assert.equal(host, 'app.internal.test');
        lookups++;
        return answer();
      },
    },
    upstreams: [{ name: 'app', servers: [{ address: `app.internal.test:${backends.port}` }], pool: { maxIdle: 4 } }],
  });
  proxy.dns.now = () => clock;
  const agent = keepAliveAgent();
  try {
    // New upstream connections each time (no keep-alive from the client, the pool reused or not): one lookup.
    for (let i = 0; i < 5; i++) assert.equal((await request(`${base}/`, { headers: { connection: 'close' } })).body, '127.0.0.1');
    assert.equal(lookups, 1);
    // The name now points elsewhere, but the TTL has not passed: still the cached address.
    answer = async () => ({ addresses: ['127.0.0.2'], ttlMs: 5_000 });
    assert.equal((await request(`${base}/`, { agent })).body, '127.0.0.1');
    assert.equal(lookups, 1);
    // Past the TTL the sweep re-resolves; pooled connections to the old address are dropped.
    clock += 5_001;
    await until(() => lookups === 2, 'a re-resolution after the TTL');
    await until(async () => (await request(`${base}/`, { agent })).body === '127.0.0.2', 'traffic on the new address');
    assert.ok(lines.some((line) => line.includes('new addresses') && line.includes('127.0.0.2')), 'the change is logged');
    // A failed re-resolution keeps the last good addresses (stale-if-error) and says so.
    answer = async () => {
      throw new Error('SERVFAIL');
    };
    clock += 5_001;
    await until(() => lookups === 3, 'a failed re-resolution');
    for (let i = 0; i < 3; i++) assert.equal((await request(`${base}/`, { headers: { connection: 'close' } })).body, '127.0.0.2');
    assert.ok(lines.some((line) => line.includes('re-resolution failed') && line.includes('SERVFAIL')), 'the failure is logged');
    assert.ok((backends.hits.get('127.0.0.2') ?? 0) >= 4);
  } finally {
    agent.destroy();
    await proxy.close();
    await backends.close();
  }
});

test('a health transition re-resolves the name at once: a server that came back at a new address gets traffic there', async () => {
  const backends = await twoAddresses();
  let address = '127.0.0.1';
  let lookups = 0;
  const { proxy, base } = await startProxy({
    // Follower mode: states come from applyState (as from a primary), no probes.
    health: { probe: false },
    dns: {
      resolver: async () => {
        lookups++;
        return { addresses: [address], ttlMs: 60_000 };
      },
    },
    upstreams: [{ name: 'app', servers: [{ address: `app.internal.test:${backends.port}` }], health: { check: { type: 'tcp' } } }],
  });
  proxy.dns.now = () => 1_000; // the TTL never runs out in this test
  try {
    assert.equal((await request(`${base}/`, { headers: { connection: 'close' } })).body, '127.0.0.1');
    assert.equal(lookups, 1);
    const key = proxy.health.snapshot().targets[0]!.checks[0]!.key;
    proxy.health.applyState(key, 'unhealthy', 'ECONNREFUSED');
    await until(() => lookups === 2, 'a re-resolution when the server goes down');
    address = '127.0.0.2'; // restarted elsewhere
    proxy.health.applyState(key, 'healthy', 'connected');
    await until(() => lookups === 3, 'a re-resolution when it comes back');
    assert.equal((await request(`${base}/`, { headers: { connection: 'close' } })).body, '127.0.0.2', 'traffic follows at once, TTL or not');
  } finally {
    await proxy.close();
    await backends.close();
  }
});

test('TTLs are clamped to [minTtlMs, maxTtlMs]; a name without a TTL gets ttlMs; concurrent lookups share one query', async () => {
  let clock = 0;
  let queries = 0;
  let ttlMs: number | undefined = 10;
  const cache = new DnsCache({
    minTtlMs: 1_000,
    maxTtlMs: 60_000,
    ttlMs: 7_000,
    resolver: async () => {
      queries++;
      return ttlMs === undefined ? ['127.0.0.9'] : { addresses: ['127.0.0.9'], ttlMs };
    },
  });
  cache.now = () => clock;
  const both = await Promise.all([cache.resolve('a.test'), cache.resolve('a.test')]);
  assert.deepEqual(both, [['127.0.0.9'], ['127.0.0.9']]);
  assert.equal(queries, 1);
  clock = 999;
  await cache.resolve('a.test');
  assert.equal(queries, 1, 'a 10 ms TTL counts as the 1 s minimum');
  clock = 1_000;
  ttlMs = 3_600_000;
  await cache.resolve('a.test');
  assert.equal(queries, 2);
  clock = 1_000 + 59_999;
  await cache.resolve('a.test');
  assert.equal(queries, 2, 'an hour TTL counts as the 60 s maximum');
  clock = 1_000 + 60_000;
  ttlMs = undefined;
  await cache.resolve('a.test');
  assert.equal(queries, 3);
  clock += 6_999;
  await cache.resolve('a.test');
  assert.equal(queries, 3, 'no TTL: ttlMs');
  clock += 1;
  await cache.resolve('a.test');
  assert.equal(queries, 4);
});

test('a name that never resolved fails the connect with ENOTFOUND: the client gets 502', async () => {
  const { proxy, base } = await startProxy({
    dns: { resolver: async () => [] },
    upstreams: [{ name: 'app', servers: [{ address: 'nowhere.test:80' }] }],
  });
  try {
    const reply = await request(`${base}/`);
    assert.equal(reply.status, 502);
  } finally {
    await proxy.close();
  }
});

test('recordTtl: A records are queried with their TTL (a local DNS server on 127.0.0.1)', async () => {
  const dgram = await import('node:dgram');
  const { recordTtlResolver } = await import('../src/index.js');
  const server = dgram.createSocket('udp4');
  let queries = 0;
  server.on('message', (query, peer) => {
    queries++;
    const questionEnd = query.indexOf(0, 12) + 5; // name, then type and class
    const type = query.readUInt16BE(questionEnd - 4);
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2); // id
    header.writeUInt16BE(0x8180, 2); // response, recursion available, NOERROR
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(type === 1 ? 2 : 0, 6);
    const question = query.subarray(12, questionEnd);
    const answers = type === 1 ? [answer([127, 0, 0, 7], 42), answer([127, 0, 0, 8], 17)] : [];
    server.send(Buffer.concat([header, question, ...answers]), peer.port, peer.address);
  });
  function answer(ip: number[], ttl: number): Buffer {
    const record = Buffer.alloc(16);
    record.writeUInt16BE(0xc00c, 0); // the name of the question
    record.writeUInt16BE(1, 2); // A
    record.writeUInt16BE(1, 4); // IN
    record.writeUInt32BE(ttl, 6);
    record.writeUInt16BE(4, 10);
    Buffer.from(ip).copy(record, 12);
    return record;
  }
  await new Promise<void>((resolve) => server.bind(0, '127.0.0.1', () => resolve()));
  try {
    const resolve = recordTtlResolver([`127.0.0.1:${server.address().port}`]);
    const resolution = await resolve('app.internal.test');
    assert.ok(!Array.isArray(resolution));
    assert.deepEqual([...resolution.addresses].sort(), ['127.0.0.7', '127.0.0.8']);
    assert.equal(resolution.ttlMs, 17_000, 'the shortest record TTL');
    assert.ok(queries >= 2, 'A and AAAA asked');
  } finally {
    server.close();
  }
});
