import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HealthChecker, slowStartFactor, type EjectionEvent, type PanicEvent, type TransitionEvent } from '../src/index.js';
import { backend, closedPort, collect, nextEvent, sleep } from './helpers.js';

const passiveOnly = (address: string, pool?: string) => ({ address, check: null, ...(pool ? { pool } : {}) });

test('consecutive connect failures eject a target; it returns when the ejection time is over', async () => {
  const health = new HealthChecker({ passive: { consecutiveFailures: 3, baseEjectionMs: 60 }, panicThreshold: 0 });
  try {
    health.add(passiveOnly('127.0.0.1:1001'));
    const ejected = nextEvent<EjectionEvent>(health.events, 'eject');
    health.reportFailure('127.0.0.1:1001', 'connect');
    health.reportFailure('127.0.0.1:1001', 'timeout');
    assert.equal(health.isAvailable('127.0.0.1:1001'), true, 'two failures are not enough');
    health.reportFailure('127.0.0.1:1001', 'connect');
    const event = await ejected;
    assert.equal(event.target, '127.0.0.1:1001');
    assert.equal(event.reason, '3 consecutive connect failures');
    assert.equal(event.durationMs, 60);
    assert.equal(health.isAvailable('127.0.0.1:1001'), false);
    assert.equal(health.snapshot().targets[0]!.ejected, true);
    const back = await nextEvent<EjectionEvent>(health.events, 'uneject');
    assert.equal(back.reason, 'ejection time elapsed');
    assert.equal(health.isAvailable('127.0.0.1:1001'), true);
  } finally {
    await health.close();
  }
});

test('a success breaks the run of failures; 5xx count only when asked', async () => {
  const health = new HealthChecker({ passive: { consecutiveFailures: 3, baseEjectionMs: 10_000 }, panicThreshold: 0 });
  const strict = new HealthChecker({ passive: { consecutiveFailures: 3, baseEjectionMs: 10_000, count5xx: true }, panicThreshold: 0 });
  try {
    health.add(passiveOnly('127.0.0.1:1001'));
    strict.add(passiveOnly('127.0.0.1:1001'));
    health.reportFailure('127.0.0.1:1001', 'connect');
    health.reportFailure('127.0.0.1:1001', 'connect');
    health.reportSuccess('127.0.0.1:1001');
    health.reportFailure('127.0.0.1:1001', 'connect');
    health.reportFailure('127.0.0.1:1001', 'connect');
    for (let i = 0; i < 10; i++) health.reportFailure('127.0.0.1:1001', 'status5xx');
    assert.equal(health.isAvailable('127.0.0.1:1001'), true);
    for (let i = 0; i < 3; i++) strict.reportFailure('127.0.0.1:1001', 'status5xx');
    assert.equal(strict.isAvailable('127.0.0.1:1001'), false);
  } finally {
    await health.close();
    await strict.close();
  }
});

test('failures spread wider than the window do not eject', async () => {
  const health = new HealthChecker({ passive: { consecutiveFailures: 3, windowMs: 40, baseEjectionMs: 10_000 }, panicThreshold: 0 });
  try {
    health.add(passiveOnly('127.0.0.1:1001'));
    health.reportFailure('127.0.0.1:1001', 'connect');
    health.reportFailure('127.0.0.1:1001', 'connect');
    await sleep(80);
    health.reportFailure('127.0.0.1:1001', 'connect');
    assert.equal(health.isAvailable('127.0.0.1:1001'), true);
    health.reportFailure('127.0.0.1:1001', 'connect');
    health.reportFailure('127.0.0.1:1001', 'connect');
    assert.equal(health.isAvailable('127.0.0.1:1001'), false, 'three in a row within the window');
  } finally {
    await health.close();
  }
});

test('each new ejection lasts longer, up to the cap', async () => {
  const health = new HealthChecker({ passive: { consecutiveFailures: 2, baseEjectionMs: 150, maxEjectionMs: 400 }, panicThreshold: 0 });
  try {
    health.add(passiveOnly('127.0.0.1:1001'));
    const durations: number[] = [];
    for (let round = 0; round < 3; round++) {
      const ejected = nextEvent<EjectionEvent>(health.events, 'eject');
      const back = nextEvent<EjectionEvent>(health.events, 'uneject');
      health.reportFailure('127.0.0.1:1001', 'connect');
      health.reportFailure('127.0.0.1:1001', 'connect');
      const event = await ejected;
      durations.push(event.durationMs);
      assert.equal(event.ejections, round + 1);
      await back;
    }
    assert.deepEqual(durations, [150, 300, 400]);
  } finally {
    await health.close();
  }
});

test('a passing active check brings an ejected target back early', async () => {
  const server = await backend('ok');
  const health = new HealthChecker({
    active: { intervalMs: 300, jitter: 0 },
    passive: { consecutiveFailures: 2, baseEjectionMs: 60_000 },
    panicThreshold: 0,
  });
  try {
    const up = nextEvent<TransitionEvent>(health.events, 'transition');
    health.add({ address: server.address, check: { type: 'http' } });
    await up;
    const ejected = nextEvent<EjectionEvent>(health.events, 'eject');
    const back = nextEvent<EjectionEvent>(health.events, 'uneject');
    health.reportFailure(server.address, 'timeout');
    health.reportFailure(server.address, 'timeout');
    assert.equal((await ejected).durationMs, 60_000);
    assert.equal(health.isAvailable(server.address), false);
    const event = await back;
    assert.equal(event.reason, 'active check passed');
    assert.equal(health.isAvailable(server.address), true);
  } finally {
    await health.close();
    await server.close();
  }
});

test('max ejection percent stops passive checks from emptying a pool', async () => {
  const health = new HealthChecker({ passive: { consecutiveFailures: 1, baseEjectionMs: 60_000, maxEjectionPercent: 50 }, panicThreshold: 0 });
  const small = new HealthChecker({ passive: { consecutiveFailures: 1, baseEjectionMs: 60_000 }, panicThreshold: 0 });
  const ejections = collect<EjectionEvent>(health.events, 'eject');
  try {
    const targets = ['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003', '127.0.0.1:1004'];
    for (const target of targets) health.add(passiveOnly(target));
    for (const target of targets) health.reportFailure(target, 'connect');
    assert.equal(ejections.events.length, 2);
    assert.deepEqual(targets.map((target) => health.isAvailable(target)), [false, false, true, true]);
    // The default 10 % of three targets still allows one ejection (as Envoy).
    for (const target of targets.slice(0, 3)) small.add(passiveOnly(target));
    for (const target of targets.slice(0, 3)) small.reportFailure(target, 'connect');
    assert.deepEqual(targets.slice(0, 3).map((target) => small.isAvailable(target)), [false, true, true]);
  } finally {
    ejections.stop();
    await health.close();
    await small.close();
  }
});

test('panic: below the threshold a pool fails open (all targets) or closed (none), as configured', async () => {
  const server = await backend('ok');
  const dead = [await closedPort(), await closedPort()].map((port) => `127.0.0.1:${port}`);
  const make = (failMode: 'open' | 'closed', panicThreshold = 50) =>
    new HealthChecker({ active: { intervalMs: 300, jitter: 0 }, panicThreshold, failMode });
  const open = make('open');
  const closed = make('closed');
  const off = make('open', 0);
  try {
    const waits = [open, closed, off].map((health) => {
      const panic = health === off ? Promise.resolve(undefined) : nextEvent<PanicEvent>(health.events, 'panic', (event) => event.panic);
      let decided = 0;
      const all = nextEvent<TransitionEvent>(health.events, 'transition', () => ++decided >= 3);
      for (const target of [server.address, ...dead]) health.add({ address: target, pool: 'web' });
      return Promise.all([panic, all]);
    });
    const [[openPanic], [closedPanic]] = await Promise.all(waits);
    assert.deepEqual({ ...openPanic!, at: 0 }, { pool: 'web', panic: true, available: 1, total: 3, at: 0 });
    assert.equal(closedPanic!.panic, true);
    // Fail open: traffic may go to every target, dead ones included.
    assert.equal(open.isAvailable(dead[0]!), true);
    assert.deepEqual(open.available('web').sort(), [server.address, ...dead].sort());
    // Fail closed: no target is used while the pool panics.
    assert.equal(closed.isAvailable(server.address), false);
    assert.deepEqual(closed.available('web'), []);
    // Threshold 0: no panic, only the healthy target.
    assert.equal(off.inPanic('web'), false);
    assert.deepEqual(off.available('web'), [server.address]);
    assert.equal(off.isAvailable(dead[1]!), false);
    // The pool leaves panic when enough targets are back.
    const calm = nextEvent<PanicEvent>(open.events, 'panic', (event) => !event.panic);
    open.remove(dead[0]!); // 1 of 2 available: 50 % is not below the threshold
    const event = await calm;
    assert.equal(event.total, 2);
    assert.equal(event.available, 1);
    assert.equal(open.isAvailable(dead[1]!), false);
    assert.equal(open.isAvailable(server.address), true);
  } finally {
    await Promise.all([open.close(), closed.close(), off.close()]);
    await server.close();
  }
});

test('slow start: a recovered target ramps its weight up; one never down keeps full weight', async () => {
  const flaky = await backend('status500');
  const steady = await backend('ok');
  const health = new HealthChecker({ active: { intervalMs: 200, jitter: 0, rise: 1, fall: 1 }, slowStartMs: 60_000, slowStartMinPercent: 10, panicThreshold: 0 });
  try {
    const down = nextEvent<TransitionEvent>(health.events, 'transition', (event) => event.target === flaky.address && event.to === 'unhealthy');
    const steadyUp = nextEvent<TransitionEvent>(health.events, 'transition', (event) => event.target === steady.address);
    health.add({ address: flaky.address, check: { type: 'http' } });
    health.add({ address: steady.address, check: { type: 'http' } });
    await down;
    await steadyUp;
    assert.equal(health.weightFactor(steady.address), 1, 'the first healthy verdict is not a recovery');
    const up = nextEvent<TransitionEvent>(health.events, 'transition', (event) => event.target === flaky.address && event.to === 'healthy');
    flaky.mode = 'ok';
    await up;
    const early = health.weightFactor(flaky.address);
    assert.ok(early >= 0.1 && early < 0.5, `starts near the minimum (${early})`);
    await sleep(50);
    const later = health.weightFactor(flaky.address);
    assert.ok(later > early && later < 1, `ramping up (${later} > ${early})`);
    assert.equal(health.snapshot().targets.find((target) => target.target === flaky.address)!.weightFactor > early, true);
  } finally {
    await health.close();
    await flaky.close();
    await steady.close();
  }
});

test('slow start ramps linearly from the minimum to full weight over the window', () => {
  assert.equal(slowStartFactor(undefined, 1000, 30_000, 10), 1);
  assert.equal(slowStartFactor(0, 0, 30_000, 10), 0.1);
  assert.equal(slowStartFactor(0, 15_000, 30_000, 10), 0.55);
  assert.equal(slowStartFactor(0, 30_000, 30_000, 10), 1);
  assert.equal(slowStartFactor(0, 5_000, 0, 10), 1, 'off');
});

test('a target that is not checked is available with full weight', async () => {
  const health = new HealthChecker();
  assert.equal(health.isAvailable('10.9.9.9:80'), true);
  assert.equal(health.weightFactor('10.9.9.9:80'), 1);
  health.reportFailure('10.9.9.9:80', 'connect');
  await health.close();
});

test('a reload that changes a target check keeps its ejection', async () => {
  const health = new HealthChecker({ active: { intervalMs: 60_000 }, passive: { consecutiveFailures: 1, baseEjectionMs: 60_000 }, panicThreshold: 0 });
  try {
    health.replaceTargets([passiveOnly('127.0.0.1:1001'), passiveOnly('127.0.0.1:1002')]);
    health.reportFailure('127.0.0.1:1001', 'connect');
    assert.equal(health.isAvailable('127.0.0.1:1001'), false);
    health.replaceTargets([{ address: '127.0.0.1:1001', check: { type: 'http', path: '/new' } }, passiveOnly('127.0.0.1:1002')]);
    const target = health.snapshot().targets.find((entry) => entry.target === '127.0.0.1:1001')!;
    assert.equal(target.ejected, true);
    assert.equal(target.ejections, 1);
    assert.deepEqual(target.checks.map((check) => check.check), ['http GET /new']);
    assert.equal(health.keys().length, 2);
  } finally {
    await health.close();
  }
});
