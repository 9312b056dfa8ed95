import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HealthChecker, RiseFall, type TransitionEvent, type HealthEventMap } from '../src/index.js';
import { backend, closedPort, collect, nextEvent, sleep } from './helpers.js';

type ProbeEvent = HealthEventMap['probe'][0];

test('the rise/fall machine counts consecutive results only', () => {
  const machine = new RiseFall('healthy', 2, 3, true);
  assert.equal(machine.record(false), undefined);
  assert.equal(machine.record(false), undefined);
  assert.equal(machine.changing, true);
  assert.equal(machine.record(true), undefined); // the run of failures is broken
  assert.equal(machine.changing, false);
  machine.record(false);
  machine.record(false);
  assert.equal(machine.record(false), 'healthy');
  assert.equal(machine.state, 'unhealthy');
  assert.equal(machine.record(true), undefined);
  assert.equal(machine.record(true), 'unhealthy');
  assert.equal(machine.state, 'healthy');
});

test('a healthy target becomes unhealthy only after `fall` consecutive failures, and healthy again after `rise` successes', async () => {
  const server = await backend('status500');
  // Slow steady interval (so the timeout is generous), fast while changing and while down.
  const health = new HealthChecker({
    active: { intervalMs: 2000, fastIntervalMs: 20, downIntervalMs: 20, timeoutMs: 1000, jitter: 0, rise: 2, fall: 3, initial: 'healthy' },
  });
  const probes = collect<ProbeEvent>(health.events, 'probe');
  try {
    const down = nextEvent<TransitionEvent>(health.events, 'transition');
    health.add({ address: server.address, check: { type: 'http' } });
    const event = await down;
    assert.equal(event.from, 'healthy');
    assert.equal(event.to, 'unhealthy');
    assert.equal(event.failures, 3);
    assert.equal(event.successes, 0);
    assert.equal(event.reason, 'status 500 not in 200-399');
    assert.equal(probes.events.length, 3, 'the third failure, not an earlier one, changed the state');
    assert.deepEqual(probes.events.map((probe) => probe.state), ['healthy', 'healthy', 'unhealthy']);
    server.mode = 'ok';
    const before = probes.events.length;
    const up = await nextEvent<TransitionEvent>(health.events, 'transition');
    assert.equal(up.from, 'unhealthy');
    assert.equal(up.to, 'healthy');
    assert.equal(up.successes, 2);
    assert.equal(up.reason, 'status 200');
    const afterSwitch = probes.events.slice(before);
    assert.deepEqual(afterSwitch.filter((probe) => probe.result.ok).map((probe) => probe.state), ['unhealthy', 'healthy']);
  } finally {
    probes.stop();
    await health.close();
    await server.close();
  }
});

test('a flapping target never reaches rise or fall and keeps its state', async () => {
  const server = await backend('flap');
  const health = new HealthChecker({ active: { intervalMs: 200, jitter: 0, rise: 2, fall: 2, initial: 'healthy' } });
  const transitions = collect<TransitionEvent>(health.events, 'transition');
  let count = 0;
  try {
    const enough = nextEvent<ProbeEvent>(health.events, 'probe', () => ++count >= 10);
    health.add({ address: server.address, check: { type: 'http' } });
    await enough;
    assert.deepEqual(transitions.events, []);
    assert.equal(health.state(server.address), 'healthy');
    const results = health.snapshot().targets[0]!.checks[0]!.history.map((result) => result.ok);
    assert.ok(results.includes(true) && results.includes(false), 'the server really flapped');
  } finally {
    transitions.stop();
    await health.close();
    await server.close();
  }
});

test('initial state: unhealthy targets take no traffic until `rise` successes; healthy ones take it at once', async () => {
  const server = await backend('ok');
  const refused = await closedPort();
  const health = new HealthChecker({ active: { intervalMs: 20, jitter: 0, rise: 2, fall: 2 }, panicThreshold: 0 });
  try {
    const up = nextEvent<TransitionEvent>(health.events, 'transition', (event) => event.target === server.address);
    health.add({ address: server.address, initial: 'unhealthy' });
    health.add({ address: `127.0.0.1:${refused}`, initial: 'healthy' });
    assert.equal(health.isAvailable(server.address), false);
    assert.equal(health.isAvailable(`127.0.0.1:${refused}`), true);
    const event = await up;
    assert.equal(event.from, 'unhealthy');
    assert.equal(event.successes, 2);
    assert.equal(health.isAvailable(server.address), true);
  } finally {
    await health.close();
    await server.close();
  }
});

test('from unknown, the first probe decides by default; with decideOnFirst off the thresholds apply', async () => {
  const refused = await closedPort();
  const health = new HealthChecker({ active: { intervalMs: 20, jitter: 0, fall: 3 } });
  try {
    const first = nextEvent<TransitionEvent>(health.events, 'transition');
    health.add({ address: `127.0.0.1:${refused}` });
    assert.equal(health.state(`127.0.0.1:${refused}`), 'unknown');
    assert.equal((await first).failures, 1);
    health.remove(`127.0.0.1:${refused}`);
    const strict = nextEvent<TransitionEvent>(health.events, 'transition');
    health.add({ address: `127.0.0.1:${refused}`, decideOnFirst: false });
    const event = await strict;
    assert.equal(event.from, 'unknown');
    assert.equal(event.to, 'unhealthy');
    assert.equal(event.failures, 3);
  } finally {
    await health.close();
  }
});

test('fastinter: while a state is changing, probes come at the fast interval', async () => {
  const refused = await closedPort();
  // At the 30 s interval three failures would take a minute; fastinter makes it milliseconds.
  const health = new HealthChecker({ active: { intervalMs: 30_000, fastIntervalMs: 20, jitter: 0, initial: 'healthy', fall: 3 } });
  try {
    const down = nextEvent<TransitionEvent>(health.events, 'transition');
    health.add({ address: `127.0.0.1:${refused}` });
    const event = await down;
    assert.equal(event.to, 'unhealthy');
    assert.equal(event.failures, 3);
  } finally {
    await health.close();
  }
});

test('downinter: an unhealthy target is probed at the slower down interval', async () => {
  const refused = await closedPort();
  const health = new HealthChecker({ active: { intervalMs: 20, downIntervalMs: 60_000, jitter: 0 } });
  const probes = collect<ProbeEvent>(health.events, 'probe');
  const control = new HealthChecker({ active: { intervalMs: 20, jitter: 0 } });
  const controlProbes = collect<ProbeEvent>(control.events, 'probe');
  try {
    const down = nextEvent<TransitionEvent>(health.events, 'transition');
    health.add({ address: `127.0.0.1:${refused}` });
    await down;
    let seen = 0;
    const controlDone = nextEvent<ProbeEvent>(control.events, 'probe', () => ++seen >= 5);
    control.add({ address: `127.0.0.1:${refused}` });
    await controlDone; // the same target at the normal interval was probed 5 times meanwhile
    assert.equal(probes.events.length, 1);
    assert.ok(controlProbes.events.length >= 5);
  } finally {
    probes.stop();
    controlProbes.stop();
    await health.close();
    await control.close();
  }
});

test('a target never has two probes in flight, even when the fast interval is shorter than the timeout', async () => {
  const server = await backend('hang');
  const health = new HealthChecker({
    active: { intervalMs: 150, timeoutMs: 150, fastIntervalMs: 5, jitter: 0, initial: 'healthy', fall: 4 },
  });
  try {
    const down = nextEvent<TransitionEvent>(health.events, 'transition');
    health.add({ address: server.address, check: { type: 'http' } });
    const event = await down;
    assert.equal(event.reason, 'timeout after 150 ms (no response)');
    await sleep(50); // let the server see the last close
    assert.ok(server.accepted >= 4);
    assert.equal(server.maxOpen, 1, 'the server never saw two probe connections at once');
  } finally {
    await health.close();
    await server.close();
  }
});

test('close() stops probing and waits for probes in flight', async () => {
  const server = await backend('ok');
  const health = new HealthChecker({ active: { intervalMs: 20, jitter: 0 } });
  let count = 0;
  const some = nextEvent<ProbeEvent>(health.events, 'probe', () => ++count >= 3);
  health.add({ address: server.address });
  await some;
  const stats = health.stats();
  assert.equal(stats.targets, 1);
  assert.ok(stats.probes >= 3);
  assert.equal(stats.failures, 0);
  await health.close();
  const accepted = server.accepted;
  await sleep(100);
  assert.equal(server.accepted, accepted);
  assert.throws(() => health.add({ address: server.address }), /closed/);
  await server.close();
});
