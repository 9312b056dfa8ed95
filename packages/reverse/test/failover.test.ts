import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startProxy, startRaw, deadPort, request, keepAliveAgent, until, type Backend, memoryLogger } from './helpers.js';

test('a backend killed mid-load: no client-visible error, it leaves rotation after fall and returns after rise', async () => {
  const a = await startBackend('a');
  let b: Backend = await startBackend('b');
  const bPort = b.port;
  const { proxy, base } = await startProxy({
    upstreams: [
      {
        name: 'app',
        servers: [{ address: a.address }, { address: b.address }],
        health: { check: { type: 'http', path: '/health' }, intervalMs: 100, timeoutMs: 100, rise: 2, fall: 2, jitter: 0 },
      },
    ],
  });
  const agent = keepAliveAgent();
  let stop = false;
  try {
    await until(() => proxy.health.state(a.address) === 'healthy' && proxy.health.state(b.address) === 'healthy', 'both healthy');
    const statuses: number[] = [];
    const worker = async (): Promise<void> => {
      while (!stop) statuses.push((await request(`${base}/load`, { agent })).status);
    };
    const workers = [worker(), worker(), worker(), worker()];
    await until(() => statuses.length >= 200, 'load before the kill');
    const hitsBefore = b.hits;
    assert.ok(hitsBefore > 0);
    await b.close();
    await until(() => proxy.health.state(b.address) === 'unhealthy', 'b marked unhealthy');
    const countAtDown = statuses.length;
    await until(() => statuses.length >= countAtDown + 200, 'load while b is down');
    b = await startBackend('b', undefined, bPort);
    await until(() => proxy.health.state(b.address) === 'healthy', 'b healthy again');
    await until(() => b.hits > 20, 'b back in rotation');
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(
      statuses.filter((status) => status !== 200),
      [],
      'every idempotent request succeeded',
    );
  } finally {
    stop = true;
    agent.destroy();
    await proxy.close();
    await a.close();
    await b.close();
  }
});

test('a 503 makes an idempotent request try the next server; a POST with a body gets the 503', async () => {
  const sick = await startBackend('sick', (req, res) => {
    req.resume();
    res.statusCode = 503;
    res.end('sick');
  });
  const good = await startBackend('good');
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: sick.address }, { address: good.address }] }],
  });
  try {
    const get = await request(`${base}/x`);
    assert.equal(get.status, 200);
    assert.equal(get.body, 'good');
    assert.equal(sick.hits, 1);
    const post = await request(`${base}/x`, { method: 'POST', body: 'payload' });
    assert.equal(post.status, 503);
    assert.equal(post.body, 'sick');
    assert.equal(good.hits, 1, 'the POST was not replayed');
  } finally {
    await proxy.close();
    await sick.close();
    await good.close();
  }
});

test('a reset after the request was sent: GET is retried elsewhere, POST with a body answers 502', async () => {
  const resetter = await startRaw((socket) => socket.once('data', () => socket.resetAndDestroy()));
  const good = await startBackend('good');
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: resetter.address }, { address: good.address }] }],
    health: { passive: { enabled: false } },
  });
  try {
    const get = await request(`${base}/x`);
    assert.equal(get.status, 200);
    assert.equal(good.hits, 1);
    const post = await request(`${base}/x`, { method: 'POST', body: 'x'.repeat(1000) });
    assert.equal(post.status, 502);
    assert.equal(good.hits, 1, 'the POST was not replayed');
    assert.ok(lines.some((line) => line.includes('closed the connection before responding')));
  } finally {
    await proxy.close();
    await resetter.close();
    await good.close();
  }
});

test('every server refusing answers 502 with the reason logged; nothing healthy answers 503', async () => {
  const { logger, lines } = memoryLogger();
  const dead1 = await deadPort();
  const dead2 = await deadPort();
  const { proxy, base } = await startProxy({
    logger,
    upstreams: [{ name: 'app', servers: [{ address: `127.0.0.1:${dead1}` }, { address: `127.0.0.1:${dead2}` }] }],
    health: { passive: { enabled: false } },
  });
  try {
    const reply = await request(`${base}/`);
    assert.equal(reply.status, 502);
    assert.ok(lines.some((line) => line.includes('ECONNREFUSED')), 'the log says why');
  } finally {
    await proxy.close();
  }
  const second = await startProxy({
    upstreams: [
      {
        name: 'app',
        servers: [{ address: `127.0.0.1:${dead1}` }],
        health: { check: { type: 'tcp' }, intervalMs: 100, timeoutMs: 100, initial: 'unhealthy' },
      },
    ],
    health: { failMode: 'closed' },
  });
  try {
    const reply = await request(`${second.base}/`);
    assert.equal(reply.status, 503);
  } finally {
    await second.proxy.close();
  }
});

test('passive checks eject a server after consecutive connect failures, so later requests skip it', async () => {
  const good = await startBackend('good');
  const dead = `127.0.0.1:${await deadPort()}`;
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    upstreams: [{ name: 'app', servers: [{ address: dead }, { address: good.address }] }],
    health: { passive: { consecutiveFailures: 2, maxEjectionPercent: 50 }, panicThreshold: 0 },
  });
  try {
    for (let i = 0; i < 10; i++) assert.equal((await request(`${base}/`)).status, 200);
    assert.equal(proxy.health.isAvailable(dead), false, 'ejected');
    const attempts = lines.filter((line) => line.includes('upstream attempt failed')).length;
    for (let i = 0; i < 10; i++) assert.equal((await request(`${base}/`)).status, 200);
    assert.equal(lines.filter((line) => line.includes('upstream attempt failed')).length, attempts, 'no more attempts on the ejected server');
    assert.ok(lines.some((line) => line.includes('upstream ejected')));
  } finally {
    await proxy.close();
    await good.close();
  }
});
