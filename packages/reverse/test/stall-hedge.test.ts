import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatencyEstimate } from '../src/engine/latency.js';
import { answered, connected, connectHedgeDelay, hedgeDelay, CONNECT_HEDGE_MIN_DELAY_MS, CONNECT_HEDGE_MIN_SAMPLES, HEDGE_MIN_BURST, HEDGE_MIN_DELAY_MS, HEDGE_MIN_SAMPLES, STALL_AFTER } from '../src/engine/hedge.js';
import { Upstream } from '../src/upstream.js';
import { keepAliveAgent, request, startBackend, startProxy, startRaw, until, type BackendHandler, memoryLogger } from './helpers.js';

/** A backend like a SIGSTOPped process: the kernel accepts connections, nothing ever answers. */
async function startStalled(): Promise<Awaited<ReturnType<typeof startRaw>> & { requests: number }> {
  const state = { requests: 0 };
  const raw = await startRaw((socket) => socket.on('data', () => state.requests++));
  return {
    ...raw,
    get requests() {
      return state.requests;
    },
  };
}

test('request hedging on: GETs to a pool with a stalled server all succeed, the stalled server is skipped and ejected, its connections discarded', async () => {
  const stalled = await startStalled();
  const a = await startBackend('a');
  const b = await startBackend('b');
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    requestHedgeMs: 100,
    // A first-byte timeout nobody should wait for.
    timeouts: { firstByteMs: 30_000 },
    health: { passive: { consecutiveFailures: STALL_AFTER } },
    upstreams: [{ name: 'app', servers: [{ address: stalled.address }, { address: a.address }, { address: b.address }] }],
  });
  const agent = keepAliveAgent();
  try {
    // A burst: a third of it lands on the stalled server at once; the hedge budget must let all of it through.
    const burst = await Promise.all(Array.from({ length: 24 }, () => request(`${base}/`, { agent })));
    for (let i = 0; i < 30; i++) burst.push(await request(`${base}/`, { agent }));
    for (const reply of burst) {
      assert.equal(reply.status, 200);
      assert.ok(reply.body === 'a' || reply.body === 'b', reply.body);
    }
    assert.ok(lines.some((line) => line.includes('request hedge won')));
    assert.equal(lines.filter((line) => line.includes('upstream attempt failed')).length, 0, 'nobody waited for the first-byte timeout');
    const server = proxy.upstreams.get('app')!.servers[0]!;
    assert.ok(proxy.health.isStalled(server.address), 'the stalled server is skipped');
    assert.ok(lines.some((line) => line.includes('upstream stalled, skipped')));
    assert.equal(proxy.health.isAvailable(stalled.address), false, 'passive health ejected it');
    const seen = stalled.requests;
    for (let i = 0; i < 10; i++) assert.equal((await request(`${base}/`, { agent })).status, 200);
    assert.equal(stalled.requests, seen, 'no new request went to the skipped server');
    // The losers' connections were closed, not parked in the pool.
    await until(() => stalled.sockets.size === 0, 'the stalled connections to close');
    assert.equal(server.pool.idleCount, 0);
    assert.equal(proxy.hedges.inFlight, 0);
  } finally {
    agent.destroy();
    await proxy.close();
    await stalled.close();
    await a.close();
    await b.close();
  }
});

test('requests stuck on a server found stalled are hedged even when the hedge budget is spent', async () => {
  const stalled = await startStalled();
  const a = await startBackend('a');
  const b = await startBackend('b');
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    // Every request arrives within the delay and goes to the first server, the stalled one.
    requestHedgeMs: 300,
    // No earnings: only the first burst of tokens, fewer than the requests stuck on the stalled server.
    requestHedgeBudget: 0,
    timeouts: { firstByteMs: 30_000 },
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: stalled.address }, { address: a.address }, { address: b.address }] }],
  });
  try {
    const replies = await Promise.all(Array.from({ length: 3 * HEDGE_MIN_BURST }, () => request(`${base}/`)));
    for (const reply of replies) assert.equal(reply.status, 200);
    assert.ok(stalled.requests > HEDGE_MIN_BURST, `${stalled.requests} requests reached the stalled server`);
    assert.equal(lines.filter((line) => line.includes('upstream attempt failed')).length, 0, 'nobody waited for the first-byte timeout');
  } finally {
    await proxy.close();
    await stalled.close();
    await a.close();
    await b.close();
  }
});

test('request hedging off: a GET to the stalled server waits for the first-byte timeout, then is retried; alone it is a 504', async () => {
  const stalled = await startStalled();
  const good = await startBackend('good');
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    requestHedgeMs: 0,
    timeouts: { firstByteMs: 300 },
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: stalled.address }, { address: good.address }] }],
  });
  const alone = await startProxy({ requestHedgeMs: 0, timeouts: { firstByteMs: 300 }, upstreams: [{ name: 'app', servers: [{ address: stalled.address }] }] });
  try {
    const reply = await request(`${base}/`);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'good');
    assert.ok(lines.some((line) => line.includes('upstream attempt failed') && line.includes('within 300 ms')), 'the first attempt timed out');
    assert.equal(lines.filter((line) => line.includes('request hedge won')).length, 0);
    assert.equal(proxy.health.isStalled(stalled.address), false, 'without hedging nothing is skipped');
    assert.equal((await request(`${alone.base}/`)).status, 504);
  } finally {
    await proxy.close();
    await alone.proxy.close();
    await stalled.close();
    await good.close();
  }
});

test('a POST is never hedged: with or without a body it waits for its server and gets a 504, never a second copy', async () => {
  const stalled = await startStalled();
  const good = await startBackend('good');
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    requestHedgeMs: 20,
    timeouts: { firstByteMs: 400 },
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: stalled.address }, { address: good.address }] }],
  });
  try {
    assert.equal((await request(`${base}/submit`, { method: 'POST', body: 'order=1' })).status, 504);
    assert.equal((await request(`${base}/submit`, { method: 'POST' })).status, 504);
    assert.equal(good.hits, 0, 'no copy of a POST reached the other server');
    assert.equal(stalled.requests, 2);
    assert.equal(lines.filter((line) => line.includes('request hedge won')).length, 0);
    // A GET through the same proxy is hedged.
    const reply = await request(`${base}/`);
    assert.equal(reply.body, 'good');
    assert.ok(lines.some((line) => line.includes('request hedge won')));
  } finally {
    await proxy.close();
    await stalled.close();
    await good.close();
  }
});

test('a skipped server that answers again is used again once its skip is over', async () => {
  let stall = true;
  const flaky = await startBackend('flaky', (req, res) => {
    if (stall && req.url !== '/health') return; // holds the request, answers nothing
    res.end('flaky');
  });
  const good = await startBackend('good');
  const { proxy, base } = await startProxy({
    requestHedgeMs: 50,
    timeouts: { firstByteMs: 30_000 },
    health: { passive: { enabled: false } },
    upstreams: [{ name: 'app', servers: [{ address: flaky.address }, { address: good.address }] }],
  });
  const agent = keepAliveAgent();
  try {
    const server = proxy.upstreams.get('app')!.servers[0]!;
    for (let i = 0; i < 4 * STALL_AFTER && !proxy.health.isStalled(server.address); i++) assert.equal((await request(`${base}/`, { agent })).body, 'good');
    assert.ok(proxy.health.isStalled(server.address));
    stall = false;
    await until(() => !proxy.health.isStalled(server.address), 'the skip to end');
    const bodies = new Set<string>();
    for (let i = 0; i < 6; i++) bodies.add((await request(`${base}/`, { agent })).body);
    assert.ok(bodies.has('flaky'), 'the recovered server takes requests again');
    assert.equal(proxy.health.isStalled(server.address), false);
  } finally {
    agent.destroy();
    await proxy.close();
    await flaky.close();
    await good.close();
  }
});

test('active checks that mark a skipped server down and then up end its skip at once', async () => {
  // Requests and checks hang on separate switches: the skip must come from lost hedges
  // alone (a check failing first would take the server out before its third loss).
  let stallRequests = false;
  let stallChecks = false;
  const flaky = await startBackend('flaky', (req, res) => {
    const isCheck = req.url === '/health';
    if (isCheck ? stallChecks : stallRequests) return;
    res.end(isCheck ? 'ok' : 'flaky');
  });
  const good = await startBackend('good');
  const { proxy, base } = await startProxy({
    requestHedgeMs: 50,
    timeouts: { firstByteMs: 30_000 },
    health: { passive: { enabled: false } },
    upstreams: [
      {
        name: 'app',
        policy: 'first',
        servers: [{ address: flaky.address }, { address: good.address }],
        // A generous check timeout: a loaded host must not fail a check of a healthy server.
        health: { check: { type: 'http', path: '/health' }, intervalMs: 300, timeoutMs: 300, rise: 1, fall: 1 },
      },
    ],
  });
  try {
    const server = proxy.upstreams.get('app')!.servers[0]!;
    await until(() => proxy.health.state(flaky.address) === 'healthy', 'the first check to pass');
    stallRequests = true;
    // Losses count one at a time: each request goes out after the previous one lost.
    for (let i = 0; i < STALL_AFTER; i++) assert.equal((await request(`${base}/`)).body, 'good');
    assert.ok(proxy.health.isStalled(server.address), 'skipped after its lost hedges');
    assert.equal(proxy.health.state(flaky.address), 'healthy', 'the checks still pass: only the skip keeps it out');
    stallChecks = true; // the whole process hangs now
    await until(() => proxy.health.state(flaky.address) === 'unhealthy', 'the checks to mark it down');
    assert.equal((await request(`${base}/`)).body, 'good');
    stallRequests = false;
    stallChecks = false;
    await until(() => proxy.health.state(flaky.address) === 'healthy', 'the checks to mark it up');
    // The check that marked it up ended the skip in the same step.
    assert.equal(proxy.health.isStalled(server.address), false);
    assert.ok(proxy.health.isAvailable(flaky.address));
    assert.equal((await request(`${base}/`)).body, 'flaky', 'back in rotation before its skip ran out');
  } finally {
    await proxy.close();
    await flaky.close();
    await good.close();
  }
});

test('when every server is slow, the hedge budget bounds the extra requests and every request still succeeds', async () => {
  const slowly: BackendHandler = (_req, res, backend) => {
    setTimeout(() => res.end(backend.name), 300);
  };
  const a = await startBackend('a', slowly);
  const b = await startBackend('b', slowly);
  const { proxy, base } = await startProxy({
    requestHedgeMs: 20,
    timeouts: { firstByteMs: 30_000 },
    health: { passive: { enabled: false } },
    upstreams: [{ name: 'app', servers: [{ address: a.address }, { address: b.address }] }],
  });
  try {
    const count = 40;
    const replies = await Promise.all(Array.from({ length: count }, () => request(`${base}/`)));
    for (const reply of replies) assert.equal(reply.status, 200);
    const hedges = a.hits + b.hits - count;
    assert.ok(hedges > 0, 'slow answers were hedged');
    assert.ok(hedges <= HEDGE_MIN_BURST + count * 0.1, `${hedges} hedges for ${count} requests`);
  } finally {
    await proxy.close();
    await a.close();
    await b.close();
  }
});

test('a slow moment of the whole pool, where hedges win but answer no sooner than the originals had waited, skips and ejects nobody', async () => {
  // Both servers slow at once, later arrivals answered sooner: every hedge (sent after the
  // delay) beats its original, but takes longer than the original had waited when hedged.
  let arrivals = 0;
  const slowMoment: BackendHandler = (_req, res, backend) => {
    setTimeout(() => res.end(backend.name), Math.max(60, 400 - 10 * arrivals++));
  };
  const a = await startBackend('a', slowMoment);
  const b = await startBackend('b', slowMoment);
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    requestHedgeMs: 20,
    timeouts: { firstByteMs: 30_000 },
    health: { passive: { consecutiveFailures: STALL_AFTER } },
    upstreams: [{ name: 'app', servers: [{ address: a.address }, { address: b.address }] }],
  });
  try {
    const replies = await Promise.all(Array.from({ length: 30 }, () => request(`${base}/`)));
    for (const reply of replies) assert.equal(reply.status, 200);
    assert.ok(lines.some((line) => line.includes('request hedge won')), 'hedges went out and won');
    assert.equal(lines.filter((line) => line.includes('upstream stalled')).length, 0, lines.join('\n'));
    for (const server of proxy.upstreams.get('app')!.servers) assert.equal(proxy.health.isStalled(server.address), false, `${server.address} skipped`);
    assert.equal(proxy.health.isAvailable(a.address), true, 'a ejected');
    assert.equal(proxy.health.isAvailable(b.address), true, 'b ejected');
  } finally {
    await proxy.close();
    await a.close();
    await b.close();
  }
});

test('the hedge delay follows the upstream p99 first-byte time, within the floor and the configured ceiling', () => {
  const fast = new Upstream({ name: 'fast', servers: [{ address: '127.0.0.1:1' }] });
  const server = fast.servers[0]!;
  assert.equal(hedgeDelay(fast, 200), 200, 'the configured delay until enough answers were seen');
  for (let i = 0; i < 4 * HEDGE_MIN_SAMPLES; i++) answered(fast, server, 0, 0.5);
  assert.equal(hedgeDelay(fast, 200), HEDGE_MIN_DELAY_MS, 'never below the floor');
  const slow = new Upstream({ name: 'slow', servers: [{ address: '127.0.0.1:1' }] });
  for (let i = 0; i < 4 * HEDGE_MIN_SAMPLES; i++) answered(slow, slow.servers[0]!, 0, i % 10 === 0 ? 90 : 40);
  const delay = hedgeDelay(slow, 1_000);
  assert.ok(delay >= 90 && delay <= 110, `p99 of 40/90 ms answers: ${delay}`);
  assert.equal(hedgeDelay(slow, 60), 60, 'never above the configured delay');
});

test('the connect-hedge delay follows the upstream p99 connect time, within the floor and the configured ceiling', () => {
  const lan = new Upstream({ name: 'lan', servers: [{ address: '127.0.0.1:1' }] });
  const server = lan.servers[0]!;
  for (let i = 1; i < CONNECT_HEDGE_MIN_SAMPLES; i++) connected(lan, server, 0, 0.2);
  assert.equal(connectHedgeDelay(lan, 100), CONNECT_HEDGE_MIN_DELAY_MS, 'before enough connects: a few times the longest (connect-race.test.ts)');
  connected(lan, server, 0, 0.2);
  assert.equal(connectHedgeDelay(lan, 100), CONNECT_HEDGE_MIN_DELAY_MS, 'adapts after a few connects: keep-alive makes them rare');
  for (let i = 0; i < 4 * HEDGE_MIN_SAMPLES; i++) connected(lan, server, 0, 0.2);
  assert.equal(connectHedgeDelay(lan, 100), CONNECT_HEDGE_MIN_DELAY_MS, 'loopback connects: the floor, not 100 ms');
  assert.equal(connectHedgeDelay(lan, 0), 0, 'hedging off stays off');
  const wan = new Upstream({ name: 'wan', servers: [{ address: '127.0.0.1:1' }] });
  for (let i = 0; i < 4 * HEDGE_MIN_SAMPLES; i++) connected(wan, wan.servers[0]!, 0, i % 10 === 0 ? 30 : 12);
  const delay = connectHedgeDelay(wan, 1_000);
  assert.ok(delay >= 30 && delay <= 37, `p99 of 12/30 ms connects: ${delay}`);
  assert.equal(connectHedgeDelay(wan, 20), 20, 'never above the configured delay');
});

test('the latency estimate follows recent samples: old ones decay', () => {
  const estimate = new LatencyEstimate(0.99, 32);
  for (let i = 0; i < 2_000; i++) estimate.add(50);
  assert.ok(estimate.clamp(1, 1_000) >= 50);
  for (let i = 0; i < 20_000; i++) estimate.add(2);
  assert.ok(estimate.clamp(1, 1_000) <= 3, `after a long run of 2 ms samples: ${estimate.clamp(1, 1_000)}`);
});
