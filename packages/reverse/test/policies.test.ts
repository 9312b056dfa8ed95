import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Upstream, type HealthSource, type SelectContext, type UpstreamServer } from '../src/index.js';
import { startBackend, startProxy, request, keepAliveAgent } from './helpers.js';

function ctx(overrides: Partial<{ clientIp: string; uri: string; headers: Record<string, string> }> = {}): SelectContext {
  const headers = overrides.headers ?? {};
  return { clientIp: overrides.clientIp ?? '127.0.0.1', uri: overrides.uri ?? '/', header: (name) => headers[name] };
}

function group(policy: string, weights: number[], extra: { backup?: number[]; hashKey?: string; health?: HealthSource } = {}): Upstream {
  return new Upstream(
    {
      name: 'g',
      policy: policy as never,
      hashKey: extra.hashKey,
      servers: weights.map((weight, i) => ({ address: `127.0.0.1:${1000 + i}`, weight, backup: extra.backup?.includes(i) })),
    },
    extra.health,
  );
}

const port = (server: UpstreamServer | undefined): number => server!.port - 1000;

test('smooth weighted round robin interleaves 5:1:1 as nginx does', () => {
  const upstream = group('round_robin', [5, 1, 1]);
  const picks = Array.from({ length: 7 }, () => port(upstream.pick(ctx())));
  assert.deepEqual(picks, [0, 0, 1, 0, 2, 0, 0]);
  const counts = [0, 0, 0];
  for (let i = 0; i < 700; i++) counts[port(upstream.pick(ctx()))]!++;
  assert.deepEqual(counts, [500, 100, 100]);
});

test('least connections picks the server with the fewest requests in flight per weight', () => {
  const upstream = group('least_conn', [1, 1, 2]);
  const [a, b, c] = upstream.servers as [UpstreamServer, UpstreamServer, UpstreamServer];
  a.active = 3;
  b.active = 1;
  c.active = 4; // 4 / 2 = 2 per unit of weight
  assert.equal(upstream.pick(ctx()), b);
  b.active = 5;
  assert.equal(upstream.pick(ctx()), c);
});

test('random with two choices never picks the busiest of two and spreads an idle pool', () => {
  const upstream = group('random_two', [1, 1]);
  const [a, b] = upstream.servers as [UpstreamServer, UpstreamServer];
  a.active = 10;
  for (let i = 0; i < 50; i++) assert.equal(upstream.pick(ctx()), b);
  a.active = 0;
  b.active = 0;
  const seen = new Set<UpstreamServer>();
  for (let i = 0; i < 200; i++) seen.add(upstream.pick(ctx())!);
  assert.equal(seen.size, 2);
});

test('IP hash keeps a client on its server and moves only the clients of a server that leaves', () => {
  const down = new Set<string>();
  const health: HealthSource = { isAvailable: (target) => !down.has(target) };
  const upstream = group('ip_hash', [1, 1, 1], { health });
  const before = new Map<string, UpstreamServer>();
  for (let i = 0; i < 300; i++) {
    const ip = `10.0.${i >> 8}.${i & 255}`;
    const server = upstream.pick(ctx({ clientIp: ip }))!;
    before.set(ip, server);
    assert.equal(upstream.pick(ctx({ clientIp: ip })), server);
  }
  const counts = new Map<UpstreamServer, number>();
  for (const server of before.values()) counts.set(server, (counts.get(server) ?? 0) + 1);
  assert.equal(counts.size, 3);
  for (const count of counts.values()) assert.ok(count > 50, `each server gets a share (${count})`);
  const leaving = upstream.servers[1]!;
  down.add(leaving.address);
  for (const [ip, server] of before) {
    const now = upstream.pick(ctx({ clientIp: ip }))!;
    if (server !== leaving) assert.equal(now, server, 'clients of the other servers stay');
    else assert.notEqual(now, leaving);
  }
});

test('consistent hashing on a header, a cookie and the URI', () => {
  const byHeader = group('hash', [1, 1, 1, 1], { hashKey: 'header:x-user' });
  const seen = new Set<UpstreamServer>();
  for (let i = 0; i < 100; i++) {
    const c = ctx({ headers: { 'x-user': `user${i}` } });
    const server = byHeader.pick(c)!;
    assert.equal(byHeader.pick(c), server);
    seen.add(server);
  }
  assert.equal(seen.size, 4);
  const byCookie = group('hash', [1, 1, 1], { hashKey: 'cookie:session' });
  const a = byCookie.pick(ctx({ headers: { cookie: 'theme=dark; session=abc123' } }));
  assert.equal(byCookie.pick(ctx({ clientIp: '10.9.9.9', headers: { cookie: 'session=abc123' } })), a);
  const byUri = group('hash', [1, 1, 1], { hashKey: 'uri' });
  assert.equal(byUri.pick(ctx({ uri: '/a/b?x=1', clientIp: '1.1.1.1' })), byUri.pick(ctx({ uri: '/a/b?x=1', clientIp: '2.2.2.2' })));
});

test('first available takes servers in configuration order', () => {
  const down = new Set<string>();
  const upstream = group('first', [1, 1, 1], { health: { isAvailable: (t) => !down.has(t) } });
  assert.equal(port(upstream.pick(ctx())), 0);
  upstream.servers[0]!.active = 2;
  assert.equal(port(upstream.pick(ctx())), 0);
  down.add(upstream.servers[0]!.address);
  assert.equal(port(upstream.pick(ctx())), 1);
});

test('unavailable and full servers are skipped, backups serve only when no primary can', () => {
  const down = new Set<string>();
  const upstream = new Upstream(
    {
      name: 'g',
      servers: [
        { address: '127.0.0.1:1000' },
        { address: '127.0.0.1:1001', maxConns: 1 },
        { address: '127.0.0.1:1002', backup: true },
      ],
    },
    { isAvailable: (t) => !down.has(t) },
  );
  const [a, b, backup] = upstream.servers as [UpstreamServer, UpstreamServer, UpstreamServer];
  for (let i = 0; i < 10; i++) assert.notEqual(upstream.pick(ctx()), backup);
  down.add(a.address);
  assert.equal(upstream.pick(ctx()), b);
  b.active = 1; // at max_conns
  assert.equal(upstream.pick(ctx()), backup);
  down.add(backup.address);
  assert.equal(upstream.pick(ctx()), undefined);
  assert.equal(upstream.pick(ctx(), new Set([a])), undefined);
});

test('weights spread real requests through the proxy (3:1)', async () => {
  const a = await startBackend('a');
  const b = await startBackend('b');
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: a.address, weight: 3 }, { address: b.address, weight: 1 }] }],
  });
  const agent = keepAliveAgent();
  try {
    const bodies: string[] = [];
    for (let i = 0; i < 40; i++) bodies.push((await request(`${base}/`, { agent })).body);
    assert.equal(bodies.filter((x) => x === 'a').length, 30);
    assert.equal(bodies.filter((x) => x === 'b').length, 10);
  } finally {
    agent.destroy();
    await proxy.close();
    await a.close();
    await b.close();
  }
});
