import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { HealthChecker, type TransitionEvent } from '../src/index.js';
import { backend, collect } from './helpers.js';

test('a follower never probes; applyState moves its checks, availability and panic', async () => {
  const server = await backend('ok');
  const follower = new HealthChecker({ probe: false, active: { intervalMs: 20, jitter: 0 }, panicThreshold: 60 });
  const transitions = collect<TransitionEvent>(follower.events, 'transition');
  try {
    const a = follower.add({ address: `127.0.0.1:${server.port}`, pool: 'web' });
    const b = follower.add({ address: '127.0.0.1:1', pool: 'web' });
    const c = follower.add({ address: '127.0.0.1:2', pool: 'web' });
    await sleep(120);
    assert.equal(server.accepted, 0, 'a follower opens no probe connection');
    assert.equal(follower.stats().probes, 0);
    assert.equal(follower.state(`127.0.0.1:${server.port}`), 'unknown');
    follower.applyState(b, 'unhealthy', 'ECONNREFUSED (primary)');
    assert.equal(follower.isAvailable('127.0.0.1:1', 'web'), false);
    assert.deepEqual(follower.available('web'), [`127.0.0.1:${server.port}`, '127.0.0.1:2']);
    assert.equal(follower.inPanic('web'), false, '2 of 3 available is above 60 %');
    follower.applyState(c, 'unhealthy');
    assert.equal(follower.inPanic('web'), true, '1 of 3 available is below 60 %');
    follower.applyState(c, 'healthy');
    follower.applyState(b, 'unhealthy');
    assert.equal(transitions.events.length, 3, 'the same state twice is no transition');
    assert.deepEqual(
      { from: transitions.events[0]!.from, to: transitions.events[0]!.to, reason: transitions.events[0]!.reason },
      { from: 'unknown', to: 'unhealthy', reason: 'ECONNREFUSED (primary)' },
    );
    follower.applyState(b, 'healthy');
    follower.applyState(a, 'healthy');
    assert.equal(follower.inPanic('web'), false);
    assert.equal(follower.state('127.0.0.1:1'), 'healthy');
    follower.applyState('no such key', 'unhealthy');
    assert.equal(transitions.events.length, 5);
  } finally {
    transitions.stop();
    await follower.close();
    await server.close();
  }
});

test('configure() applies new passive, panic and active defaults without losing state', async () => {
  const health = new HealthChecker({ probe: false, passive: { consecutiveFailures: 5 }, panicThreshold: 0 });
  try {
    const key = health.add({ address: '127.0.0.1:9', pool: 'p' });
    health.add({ address: '127.0.0.1:10', pool: 'p' });
    health.applyState(key, 'healthy');
    for (let i = 0; i < 2; i++) health.reportFailure('127.0.0.1:10', 'connect');
    assert.equal(health.snapshot().targets.find((t) => t.target === '127.0.0.1:10')!.ejected, false, '2 failures < 5');
    assert.throws(() => health.configure({ panicThreshold: 300 }), /panicThreshold/);
    health.configure({ passive: { consecutiveFailures: 3 }, panicThreshold: 0, active: { rise: 4 } });
    health.reportFailure('127.0.0.1:10', 'connect');
    assert.equal(health.snapshot().targets.find((t) => t.target === '127.0.0.1:10')!.ejected, true, 'the third failure ejects under the new setting');
    health.replaceTargets([{ address: '127.0.0.1:9', pool: 'p' }, { address: '127.0.0.1:10', pool: 'p' }]);
    const kept = health.snapshot().targets.find((t) => t.target === '127.0.0.1:9')!;
    assert.equal(kept.state, 'healthy', 'state kept');
    assert.equal(kept.checks[0]!.rise, 4, 'new active default taken by the kept check');
    health.configure({ panicThreshold: 100 });
    assert.equal(health.inPanic('p'), true, 'a new threshold re-evaluates panic at once');
  } finally {
    await health.close();
  }
});
