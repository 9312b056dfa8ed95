import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Logger } from '@wmproxy/core-net';
import { AccessLog, RateLimiter, parseRate } from '../src/index.js';
import { startBackend, startProxy, request, keepAliveAgent, until } from './helpers.js';

function capture(): { lines: string[]; logger: Logger } {
  const lines: string[] = [];
  return { lines, logger: new Logger({ level: 'info', json: true, sink: { write: (line: string) => lines.push(line) } }) };
}

test('a client over rate + burst gets 503 with Retry-After, logged as rate_limited, and never reaches the backend', async () => {
  const backend = await startBackend('b');
  const access: string[] = [];
  const { lines, logger } = capture();
  const { proxy, base } = await startProxy({
    logger,
    accessLog: new AccessLog({ write: (line: string) => access.push(line) }, 'json'),
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app', rateLimit: { rate: '1r/m', burst: 2 } }] }] }],
  });
  const agent = keepAliveAgent();
  try {
    for (let i = 0; i < 3; i++) assert.equal((await request(`${base}/x`, { agent })).status, 200, `request ${i} is within rate + burst`);
    const refused = await request(`${base}/x`, { agent });
    assert.equal(refused.status, 503);
    assert.ok(Number(refused.headers['retry-after']) >= 1, `Retry-After ${refused.headers['retry-after']}`);
    assert.equal(backend.hits, 3);
    // The connection stays usable, and is still limited.
    assert.equal((await request(`${base}/x`, { agent })).status, 503);
    await until(() => access.length === 5, 'five access-log lines');
    const last = JSON.parse(access[4]!) as Record<string, unknown>;
    assert.equal(last.status, 503);
    assert.equal(last.reason, 'rate_limited');
    assert.ok(lines.some((line) => line.includes('rate_limited') && line.includes('503')), 'a log line with the reason');
  } finally {
    agent.destroy();
    await proxy.close();
    await backend.close();
  }
});

test('keyed by a header, each client has its own bucket; the status is configurable (429)', async () => {
  const backend = await startBackend('b');
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app', rateLimit: { rate: '1r/h', key: 'header:x-api-key', status: 429 } }] }] }],
  });
  try {
    assert.equal((await request(`${base}/`, { headers: { 'x-api-key': 'alice' } })).status, 200);
    assert.equal((await request(`${base}/`, { headers: { 'x-api-key': 'alice' } })).status, 429);
    assert.equal((await request(`${base}/`, { headers: { 'x-api-key': 'bob' } })).status, 200);
    assert.equal((await request(`${base}/`, { headers: { 'x-api-key': 'bob' } })).status, 429);
    // No key: not limited (nginx skips an empty key).
    assert.equal((await request(`${base}/`)).status, 200);
    assert.equal((await request(`${base}/`)).status, 200);
    assert.equal(backend.hits, 4);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('a virtual host limit is shared by its locations; a location may set its own or opt out', async () => {
  const backend = await startBackend('b');
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [
      {
        listen: '127.0.0.1:0',
        vhosts: [
          {
            rateLimit: { rate: '1r/h', burst: 1 },
            locations: [
              { path: '/a', upstream: 'app' },
              { path: '/b', upstream: 'app' },
              { path: '/own', upstream: 'app', rateLimit: { rate: '1r/h' } },
              { path: '/free', upstream: 'app', rateLimit: false },
            ],
          },
        ],
      },
    ],
  });
  try {
    assert.equal((await request(`${base}/a`)).status, 200);
    assert.equal((await request(`${base}/b`)).status, 200);
    assert.equal((await request(`${base}/a`)).status, 503, 'the shared bucket (1 + burst 1) is empty');
    assert.equal((await request(`${base}/b`)).status, 503);
    assert.equal((await request(`${base}/own`)).status, 200, 'its own bucket');
    assert.equal((await request(`${base}/own`)).status, 503);
    for (let i = 0; i < 5; i++) assert.equal((await request(`${base}/free`)).status, 200);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('maxInFlight refuses a request while the limit is in use and admits again once it ends', async () => {
  let releaseFirst: (() => void) | undefined;
  const backend = await startBackend('slow', (req, res) => {
    if (req.url === '/slow') releaseFirst = () => res.end('slow done');
    else res.end('fast');
  });
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app', rateLimit: { maxInFlight: 1 } }] }] }],
  });
  try {
    const first = request(`${base}/slow`);
    await until(() => releaseFirst !== undefined, 'the first request reached the backend');
    const second = await request(`${base}/fast`);
    assert.equal(second.status, 503);
    assert.equal(second.headers['retry-after'], '1');
    releaseFirst!();
    assert.equal((await first).body, 'slow done');
    const third = await request(`${base}/fast`);
    assert.equal(third.status, 200);
    assert.equal(third.body, 'fast');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('the token bucket refills at the rate, up to burst + 1', () => {
  const limiter = new RateLimiter({ rate: '10r/s', burst: 4 });
  const ctx = { clientIp: '10.0.0.1', uri: '/', header: () => undefined };
  const t0 = 1_000_000;
  for (let i = 0; i < 5; i++) assert.equal(limiter.admit(ctx, t0), undefined, `burst request ${i}`);
  const refusal = limiter.admit(ctx, t0);
  assert.deepEqual(refusal, { status: 503, retryAfter: 1, reason: 'rate_limited' });
  for (let i = 0; i < 5; i++) limiter.release();
  assert.equal(limiter.admit(ctx, t0 + 100), undefined, 'one token after 100 ms at 10 r/s');
  assert.notEqual(limiter.admit(ctx, t0 + 100), undefined);
  // A long pause refills the bucket to burst + 1, not more.
  for (let i = 0; i < 5; i++) assert.equal(limiter.admit(ctx, t0 + 60_000), undefined);
  assert.notEqual(limiter.admit(ctx, t0 + 60_000), undefined);
  // Retry-After rounds up to whole seconds of the time to the next token.
  const slow = new RateLimiter({ rate: '6r/m' });
  assert.equal(slow.admit(ctx, t0), undefined);
  assert.equal(slow.admit(ctx, t0 + 1_000)?.retryAfter, 9);
});

test('the key table is bounded: a flood of distinct clients forgets the least recently seen', () => {
  const limiter = new RateLimiter({ rate: '1r/h', maxKeys: 100 });
  const now = 5_000;
  const ctx = (ip: string) => ({ clientIp: ip, uri: '/', header: () => undefined });
  assert.equal(limiter.admit(ctx('10.9.9.9'), now), undefined);
  for (let i = 0; i < 10_000; i++) {
    limiter.admit(ctx(`10.0.${i >> 8}.${i & 255}`), now);
    if (i % 50 === 0) assert.notEqual(limiter.admit(ctx('10.9.9.9'), now), undefined, 'a recently seen key stays limited');
  }
  assert.equal(limiter.keys, 100);
});

test('rates are parsed like nginx (r/s, r/m, r/h) and bad specs are rejected', () => {
  assert.equal(parseRate('100r/s'), 0.1);
  assert.equal(parseRate('6000r/m'), 0.1);
  assert.equal(parseRate(5), 0.005);
  assert.throws(() => parseRate('100/s'), /invalid rate/);
  assert.throws(() => parseRate('0r/s'), /invalid rate/);
  assert.throws(() => new RateLimiter({ rate: '1r/s', key: 'cookie:x' }), /invalid rate-limit key/);
  assert.throws(() => new RateLimiter({}), /needs a rate or maxInFlight/);
  assert.throws(() => new RateLimiter({ rate: '1r/s', status: 200 }), /status/);
});

test('a reload keeps the state of limits that stay and starts changed ones afresh', async () => {
  const backend = await startBackend('b');
  const upstreams = [{ name: 'app', servers: [{ address: backend.address }] }];
  const servers = (listen: string, burst: number) => [
    {
      listen,
      vhosts: [{ locations: [{ path: '/', upstream: 'app', rateLimit: { rate: '1r/h', burst } }, { exact: '/added', respond: { status: 200, body: 'added' } }] }],
    },
  ];
  const { proxy, base } = await startProxy({ upstreams, servers: servers('127.0.0.1:0', 0) });
  const listen = proxy.addresses[0]!;
  try {
    assert.equal((await request(`${base}/`)).status, 200);
    assert.equal((await request(`${base}/`)).status, 503);
    await proxy.reload({ shutdownDeadlineMs: 1_000, upstreams, servers: servers(listen, 0) });
    assert.equal((await request(`${base}/`)).status, 503, 'the same limit: its bucket is still empty');
    await proxy.reload({ shutdownDeadlineMs: 1_000, upstreams, servers: servers(listen, 1) });
    assert.equal((await request(`${base}/`)).status, 200, 'a changed limit starts with a full bucket');
  } finally {
    await proxy.close();
    await backend.close();
  }
});
