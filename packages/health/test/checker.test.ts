import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HealthChecker, type TransitionEvent, type HealthEventMap } from '../src/index.js';
import { backend, closedPort, collect, nextEvent } from './helpers.js';

type ProbeEvent = HealthEventMap['probe'][0];

test('the same address and check configured several times is probed once', async () => {
  const server = await backend('ok');
  const health = new HealthChecker({ active: { intervalMs: 200, jitter: 0 } });
  const probes = collect<ProbeEvent>(health.events, 'probe');
  try {
    const a = health.add(`tcp://127.0.0.1:${server.port}`);
    const b = health.add(`127.0.0.1:${server.port}`);
    const c = health.add({ address: `127.0.0.1:${server.port}`, check: { type: 'tcp' }, pool: 'other' });
    assert.equal(a, b);
    assert.equal(a, c);
    assert.deepEqual(health.keys(), [a]);
    assert.deepEqual(health.snapshot().targets[0]!.pools.sort(), ['default', 'other']);
    let seen = 0;
    await nextEvent<ProbeEvent>(health.events, 'probe', () => ++seen >= 5);
    await health.close();
    assert.equal(server.accepted, probes.events.length, 'one connection per probe, one probe per interval');
    // A different check of the same address is a second probe.
    const other = new HealthChecker();
    const tcp = other.add(`tcp://127.0.0.1:${server.port}`);
    const http = other.add(`http://127.0.0.1:${server.port}/`);
    const http2 = other.add({ address: `127.0.0.1:${server.port}`, check: { type: 'http', path: '/', method: 'get' } });
    assert.notEqual(tcp, http);
    assert.equal(http, http2);
    assert.equal(other.targets().length, 1);
    await other.close();
  } finally {
    probes.stop();
    await health.close();
    await server.close();
  }
});

test('an address is unhealthy when any of its checks is', async () => {
  const server = await backend('wrongBody');
  const health = new HealthChecker({ active: { intervalMs: 500, jitter: 0 }, panicThreshold: 0 });
  try {
    const tcpUp = nextEvent<TransitionEvent>(health.events, 'transition', (event) => event.check === 'tcp');
    const httpDown = nextEvent<TransitionEvent>(health.events, 'transition', (event) => event.check.startsWith('http'));
    health.add({ address: server.address });
    health.add({ address: server.address, check: { type: 'http', expectBody: 'ok' } });
    assert.equal((await tcpUp).to, 'healthy');
    assert.equal((await httpDown).to, 'unhealthy');
    assert.equal(health.state(server.address), 'unhealthy');
    assert.equal(health.isAvailable(server.address), false);
  } finally {
    await health.close();
    await server.close();
  }
});

test('hot reload keeps the state and history of targets that stay', async () => {
  const stay = await backend('ok');
  const added = await backend('ok');
  const refused = await closedPort();
  const health = new HealthChecker({ active: { intervalMs: 200, jitter: 0, rise: 1, fall: 2 } });
  const transitions = collect<TransitionEvent>(health.events, 'transition');
  try {
    const stayUp = nextEvent<TransitionEvent>(health.events, 'transition', (event) => event.target === stay.address);
    const goneDown = nextEvent<TransitionEvent>(health.events, 'transition', (event) => event.target === `127.0.0.1:${refused}`);
    health.replaceTargets([{ address: stay.address, check: { type: 'http', path: '/h' } }, `tcp://127.0.0.1:${refused}`]);
    await stayUp;
    await goneDown;
    let seen = 0;
    await nextEvent<ProbeEvent>(health.events, 'probe', (event) => event.target === stay.address && ++seen >= 3);
    const before = health.snapshot().targets.find((target) => target.target === stay.address)!.checks[0]!;
    assert.ok(before.history.length >= 4);

    const addedUp = nextEvent<TransitionEvent>(health.events, 'transition', (event) => event.target === added.address);
    health.replaceTargets([
      { address: stay.address, check: { type: 'http', path: '/h' }, intervalMs: 250, pool: 'web' },
      { address: added.address, pool: 'web' },
    ]);
    const after = health.snapshot();
    const kept = after.targets.find((target) => target.target === stay.address)!;
    assert.equal(kept.state, 'healthy', 'the state survived the reload');
    assert.equal(kept.checks[0]!.intervalMs, 250, 'the new timing applies');
    assert.deepEqual(kept.pools, ['web']);
    assert.ok(kept.checks[0]!.history.length >= before.history.length, 'the history survived the reload');
    assert.deepEqual(kept.checks[0]!.history.slice(0, before.history.length), before.history);
    assert.equal(after.targets.some((target) => target.target === `127.0.0.1:${refused}`), false, 'removed targets are gone');
    assert.equal(health.state(`127.0.0.1:${refused}`), 'unknown');
    assert.equal((await addedUp).from, 'unknown');
    assert.equal(transitions.events.filter((event) => event.target === stay.address).length, 1, 'no new transition for the kept target');
    assert.deepEqual(after.pools.map((pool) => pool.pool), ['web']);
  } finally {
    transitions.stop();
    await health.close();
    await stay.close();
    await added.close();
  }
});

test('snapshot() lists every target with its last N results, oldest first', async () => {
  const server = await backend('status503');
  const health = new HealthChecker({ active: { intervalMs: 150, jitter: 0, history: 3 } });
  try {
    let seen = 0;
    const enough = nextEvent<ProbeEvent>(health.events, 'probe', () => ++seen >= 5);
    health.add({ address: server.address, check: { type: 'http', path: '/status' }, pool: 'api' });
    await enough;
    const snapshot = health.snapshot();
    assert.equal(snapshot.targets.length, 1);
    const target = snapshot.targets[0]!;
    assert.equal(target.target, server.address);
    assert.equal(target.state, 'unhealthy');
    assert.deepEqual(target.pools, ['api']);
    assert.equal(target.ejected, false);
    assert.equal(target.weightFactor, 1);
    const check = target.checks[0]!;
    assert.equal(check.check, 'http GET /status');
    assert.equal(check.history.length, 3);
    assert.ok(check.failures >= 5);
    assert.deepEqual(check.history.map((result) => result.reason), Array(3).fill('status 503 not in 200-399'));
    assert.ok(check.history.every((result) => result.status === 503 && result.ok === false));
    const times = check.history.map((result) => result.at);
    assert.deepEqual(times, [...times].sort((x, y) => x - y));
    assert.deepEqual(snapshot.pools, [{ pool: 'api', total: 1, available: 0, panic: true }]);
    assert.equal(typeof snapshot.probesInFlight, 'number');
    assert.equal(JSON.parse(JSON.stringify(snapshot)).targets[0].target, server.address, 'the snapshot is plain JSON');
  } finally {
    await health.close();
    await server.close();
  }
});

test('bounded concurrency: probes beyond the limit wait their turn, none is lost', async () => {
  const server = await backend('hang');
  const health = new HealthChecker({ active: { intervalMs: 1000, timeoutMs: 100, jitter: 0 }, concurrency: 2 });
  const transitions = collect<TransitionEvent>(health.events, 'transition');
  try {
    let done = 0;
    const all = nextEvent<TransitionEvent>(health.events, 'transition', () => ++done >= 5);
    for (let i = 0; i < 5; i++) health.add({ address: server.address, check: { type: 'http', path: `/${i}` } });
    const snapshot = health.snapshot();
    assert.ok(snapshot.probesInFlight <= 2);
    await all;
    assert.equal(transitions.events.length, 5);
    assert.ok(transitions.events.every((event) => event.reason === 'timeout after 100 ms (no response)'));
    assert.ok(server.maxOpen <= 2, `at most 2 probes at once (saw ${server.maxOpen})`);
  } finally {
    transitions.stop();
    await health.close();
    await server.close();
  }
});
