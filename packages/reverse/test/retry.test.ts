import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_RETRIES, retryAllowed, type RetryState } from '../src/index.js';
import net from 'node:net';
import { deadPort, memoryLogger, request, startBackend, startProxy, startRaw, until, type BackendHandler } from './helpers.js';

const base: RetryState = { kind: 'connect', attempts: 1, elapsedMs: 0, method: 'GET', hasBody: false, bodySent: false, responseStarted: false };
const allowed = (overrides: Partial<RetryState>) => retryAllowed({ ...base, ...overrides }, DEFAULT_RETRIES);

test('a failed connect moves any request on, unless its body was being sent', () => {
  assert.equal(allowed({ method: 'POST', hasBody: true }), true);
  assert.equal(allowed({ method: 'POST', hasBody: true, bodySent: true }), false);
});

test('after the request went out, only the safe methods without a body are replayed by default', () => {
  for (const kind of ['timeout', 'reset', 'status', 'bad'] as const) {
    assert.equal(allowed({ kind, method: 'GET' }), true, kind);
    assert.equal(allowed({ kind, method: 'OPTIONS' }), true, kind);
    assert.equal(allowed({ kind, method: 'DELETE' }), false, kind);
    assert.equal(allowed({ kind, method: 'POST' }), false, kind);
    assert.equal(allowed({ kind, method: 'PATCH' }), false, kind);
    assert.equal(allowed({ kind, method: 'PUT', hasBody: true }), false, kind);
    const withDelete = { ...DEFAULT_RETRIES, methods: [...DEFAULT_RETRIES.methods, 'DELETE'] };
    assert.equal(retryAllowed({ ...base, kind, method: 'DELETE' }, withDelete), true, kind);
  }
});

test('retries stop at the attempt count, the time budget, or once the client saw a response', () => {
  assert.equal(allowed({ attempts: 3 }), false);
  assert.equal(allowed({ elapsedMs: 10_000 }), false);
  assert.equal(allowed({ kind: 'status', responseStarted: true }), false);
  assert.equal(retryAllowed({ ...base, kind: 'timeout' }, { ...DEFAULT_RETRIES, onTimeout: false }), false);
});

test('a body kept in the replay buffer no longer blocks a retry of a method that may be sent twice', () => {
  const withPut = { ...DEFAULT_RETRIES, methods: [...DEFAULT_RETRIES.methods, 'PUT'] };
  for (const kind of ['timeout', 'reset', 'status', 'bad'] as const) {
    assert.equal(retryAllowed({ ...base, kind, method: 'PUT', hasBody: true, bodySent: true, bodyReplayable: true }, withPut), true, kind);
    assert.equal(allowed({ kind, method: 'PUT', hasBody: true, bodySent: true, bodyReplayable: true }), false, kind);
    assert.equal(allowed({ kind, method: 'POST', hasBody: true, bodySent: true, bodyReplayable: true }), false, kind);
  }
  assert.equal(allowed({ kind: 'connect', method: 'POST', hasBody: true, bodySent: true, bodyReplayable: true }), true);
});

test('the retry budget bounds retries when every server fails at once, and gives its slots back', async () => {
  // Both servers answer 503 after 100 ms: a burst of requests all fail together.
  const failing: BackendHandler = (_req, res) => {
    setTimeout(() => {
      res.statusCode = 503;
      res.end('busy');
    }, 100);
  };
  const a = await startBackend('a', failing);
  const b = await startBackend('b', failing);
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    requestHedgeMs: 0,
    health: { passive: { enabled: false } },
    retries: { tries: 3, budgetPercent: 20, budgetMinConcurrency: 3 },
    upstreams: [{ name: 'app', servers: [{ address: a.address }, { address: b.address }] }],
  });
  try {
    const count = 40;
    const replies = await Promise.all(Array.from({ length: count }, () => request(`${base}/`)));
    for (const reply of replies) assert.equal(reply.status, 503);
    const retries = a.hits + b.hits - count;
    // Unbudgeted, every request would have tried both servers: `count` retries.
    assert.ok(retries > 0, 'some requests were retried');
    assert.ok(retries <= count / 2, `${retries} retries for ${count} requests`);
    assert.ok(lines.some((line) => line.includes('retry budget exhausted')));
    assert.equal(proxy.upstreams.get('app')!.retriesInFlight, 0, 'every slot was given back');
    // Alone, a request is always within the minimum: it is retried.
    const before = a.hits + b.hits;
    assert.equal((await request(`${base}/`)).status, 503);
    assert.equal(a.hits + b.hits - before, 2);
    assert.equal(proxy.upstreams.get('app')!.retriesInFlight, 0);
  } finally {
    await proxy.close();
    await a.close();
    await b.close();
  }
});

test('failed connects move on whatever the retry budget', async () => {
  const good = await startBackend('good');
  const dead = await deadPort();
  const { proxy, base } = await startProxy({
    requestHedgeMs: 0,
    health: { passive: { enabled: false } },
    // No retry at all once a request went out...
    retries: { tries: 3, budgetPercent: 0, budgetMinConcurrency: 0 },
    upstreams: [{ name: 'app', servers: [{ address: `127.0.0.1:${dead}` }, { address: good.address }] }],
  });
  try {
    // ...but a refused connect sent nothing: every request moves on to the good server.
    const replies = await Promise.all(Array.from({ length: 20 }, () => request(`${base}/`)));
    for (const reply of replies) assert.equal(reply.body, 'good');
    assert.equal(proxy.upstreams.get('app')!.retriesInFlight, 0);
  } finally {
    await proxy.close();
    await good.close();
  }
});

test('a retry holds its budget slot until its request ends, also when the client leaves', async () => {
  const failing = await startBackend('failing', (_req, res) => {
    res.statusCode = 502;
    res.end('bad gateway');
  });
  const hanging = await startRaw((socket) => socket.on('data', () => {})); // accepts, never answers
  const { proxy, port } = await startProxy({
    requestHedgeMs: 0,
    health: { passive: { enabled: false } },
    retries: { tries: 2, budgetPercent: 0, budgetMinConcurrency: 1 },
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: failing.address }, { address: hanging.address }] }],
  });
  const upstream = proxy.upstreams.get('app')!;
  const client = net.connect({ port, host: '127.0.0.1' });
  client.on('error', () => {});
  try {
    // The first 502 is retried on the hanging server, and holds the one slot.
    client.write('GET / HTTP/1.1\r\nHost: app\r\n\r\n');
    await until(() => upstream.retriesInFlight === 1, 'the retry to take the slot');
    // Another request's 502 is passed on, not retried.
    assert.equal((await request(`http://127.0.0.1:${port}/`)).status, 502);
    assert.equal(failing.hits, 2);
    // A reset (a FIN alone is a half-close: the response is still awaited).
    client.resetAndDestroy();
    await until(() => upstream.retriesInFlight === 0, 'the slot to be given back when the client left');
  } finally {
    client.destroy();
    await proxy.close();
    await failing.close();
    await hanging.close();
  }
});
