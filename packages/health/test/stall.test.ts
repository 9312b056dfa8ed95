import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HealthChecker, STALL_AFTER, STALL_EJECT_MS, type EjectionEvent } from '../src/index.js';
import { collect, nextEvent } from './helpers.js';

const passiveOnly = (address: string, pool = 'app') => ({ address, check: null, pool });

test('lost races count as separate observations: work under way when a loss was counted adds none; STALL_AFTER of them eject', async () => {
  const health = new HealthChecker({ panicThreshold: 0 });
  const ejections = collect<EjectionEvent>(health.events, 'eject');
  try {
    health.add(passiveOnly('127.0.0.1:1001'));
    health.add(passiveOnly('127.0.0.1:1002'));
    const target = '127.0.0.1:1001';
    const burstSentAt = performance.now();
    assert.equal(health.reportLostRace(target, burstSentAt), 'counted');
    assert.equal(health.lostSinceAnswer(target), true, 'its waiting work is worth hedging whatever the budget');
    // The rest of the same burst: sent before the loss was counted.
    for (let i = 0; i < 10; i++) assert.equal(health.reportLostRace(target, burstSentAt), 'ignored');
    assert.equal(health.isStalled(target), false);
    let verdict = '';
    for (let i = 1; i < STALL_AFTER; i++) verdict = health.reportLostRace(target, performance.now() + 1);
    assert.equal(verdict, 'skipped');
    assert.equal(health.isStalled(target), true);
    assert.equal(health.isAvailable(target), false, 'out of rotation through the one ejection mechanism');
    assert.equal(health.reportLostRace(target, performance.now() + 1), 'ignored', 'already out');
    assert.equal(ejections.events.length, 1);
    assert.match(ejections.events[0]!.reason, /stalled/);
    assert.equal(ejections.events[0]!.durationMs, STALL_EJECT_MS);
    const row = health.snapshot().targets.find((t) => t.target === target)!;
    assert.equal(row.ejected, true, 'snapshots and the dashboard see it');
    assert.match(row.ejectReason!, /stalled: 3 lost hedges/);
  } finally {
    ejections.stop();
    await health.close();
  }
});

test('an answer between lost races starts the count again', async () => {
  const health = new HealthChecker({ panicThreshold: 0 });
  try {
    health.add(passiveOnly('127.0.0.1:1001'));
    health.add(passiveOnly('127.0.0.1:1002'));
    const target = '127.0.0.1:1001';
    for (let round = 0; round < 3; round++) {
      for (let i = 1; i < STALL_AFTER; i++) assert.equal(health.reportLostRace(target, performance.now() + 1), 'counted');
      health.reportAnswer(target, performance.now());
      assert.equal(health.lostSinceAnswer(target), false);
    }
    assert.equal(health.isAvailable(target), true);
  } finally {
    await health.close();
  }
});

test('stall ejections obey max ejection percent, shared with outlier detection', async () => {
  const health = new HealthChecker({ passive: { consecutiveFailures: 1, baseEjectionMs: 60_000 }, panicThreshold: 0 });
  try {
    for (const target of ['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003']) health.add(passiveOnly(target));
    // Outlier detection takes the one ejection 10 % of three targets allows.
    health.reportFailure('127.0.0.1:1001', 'connect');
    assert.equal(health.isAvailable('127.0.0.1:1001'), false);
    let verdict = '';
    for (let i = 0; i < 2 * STALL_AFTER; i++) verdict = health.reportLostRace('127.0.0.1:1002', performance.now() + 1);
    assert.equal(verdict, 'counted', 'no room to eject a second target');
    assert.equal(health.isAvailable('127.0.0.1:1002'), true);
  } finally {
    await health.close();
  }
});

test('after a stall ejection a target is on probation: one lost race ejects it again, for longer; an answer restores it', async () => {
  const health = new HealthChecker({ panicThreshold: 0 });
  try {
    health.add(passiveOnly('127.0.0.1:1001'));
    health.add(passiveOnly('127.0.0.1:1002'));
    const target = '127.0.0.1:1001';
    for (let i = 0; i < STALL_AFTER; i++) health.reportLostRace(target, performance.now() + 1, 0);
    assert.equal(health.isStalled(target), true);
    const back = nextEvent<EjectionEvent>(health.events, 'uneject');
    assert.equal((await back).reason, 'ejection time elapsed');
    assert.equal(health.isStalled(target), false);
    assert.equal(health.lostSinceAnswer(target), true, 'on probation');
    const again = nextEvent<EjectionEvent>(health.events, 'eject');
    assert.equal(health.reportLostRace(target, performance.now() + 1), 'skipped', 'one loss on probation');
    assert.equal((await again).durationMs, 2 * STALL_EJECT_MS);
    health.reportAnswer(target, performance.now());
    assert.equal(health.isStalled(target), true, 'a late answer to work sent before the ejection does not end it');
  } finally {
    await health.close();
  }
});
