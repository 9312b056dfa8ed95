import { test } from 'node:test';
import assert from 'node:assert/strict';
import { numbersIn, packageReadme, readmeTable, tableCell } from '@wmproxy/testkit';
import { HEALTH_DEFAULTS, HealthChecker, STALL_AFTER, STALL_EJECT_MAX_MS, STALL_EJECT_MS } from '../src/index.js';

const readme = packageReadme(import.meta.url);

const cell = (rows: Map<string, string[]>, name: string, column = 2): string => tableCell(rows, name, column);

test('the README tables state the defaults HEALTH_DEFAULTS exports', () => {
  const active = readmeTable(readme, 'Active checks');
  for (const key of ['intervalMs', 'timeoutMs', 'rise', 'fall', 'jitter', 'history'] as const) {
    assert.equal(numbersIn(cell(active, key))[0], HEALTH_DEFAULTS.active[key], `active.${key}`);
  }
  assert.match(cell(active, 'initial'), new RegExp(`^\`${HEALTH_DEFAULTS.active.initial}\``));
  const passive = readmeTable(readme, 'Passive checks');
  for (const key of ['consecutiveFailures', 'windowMs', 'baseEjectionMs', 'maxEjectionMs', 'maxEjectionPercent'] as const) {
    assert.equal(numbersIn(cell(passive, key))[0], HEALTH_DEFAULTS.passive[key], `passive.${key}`);
  }
  assert.equal(cell(passive, 'enabled'), String(HEALTH_DEFAULTS.passive.enabled));
  assert.equal(cell(passive, 'count5xx'), String(HEALTH_DEFAULTS.passive.count5xx));
  const pools = readmeTable(readme, 'Pools, slow start');
  assert.equal(numbersIn(cell(pools, 'panicThreshold'))[0], HEALTH_DEFAULTS.panicThreshold);
  assert.match(cell(pools, 'failMode'), new RegExp(`^\`${HEALTH_DEFAULTS.failMode}\``));
  assert.equal(numbersIn(cell(pools, 'slowStartMs'))[0], HEALTH_DEFAULTS.slowStartMs);
  assert.equal(numbersIn(cell(pools, 'slowStartMinPercent'))[0], HEALTH_DEFAULTS.slowStartMinPercent);
  assert.equal(numbersIn(cell(pools, 'concurrency'))[0], HEALTH_DEFAULTS.concurrency);
  const stall = readmeTable(readme, 'Stall detection');
  assert.equal(numbersIn(cell(stall, 'STALL_AFTER', 1))[0], STALL_AFTER);
  assert.equal(numbersIn(cell(stall, 'STALL_EJECT_MS', 1))[0], STALL_EJECT_MS);
  assert.equal(numbersIn(cell(stall, 'STALL_EJECT_MAX_MS', 1))[0], STALL_EJECT_MAX_MS);
});

test('a checker built without options fails open in panic and has no slow start (HEALTH_DEFAULTS)', async () => {
  const checker = new HealthChecker({ probe: false, panicThreshold: 100 });
  try {
    checker.add({ address: '127.0.0.1:1', check: null });
    assert.equal(checker.weightFactor('127.0.0.1:1'), 1, 'no slow-start ramp');
    assert.equal(HEALTH_DEFAULTS.failMode, 'open');
    // Ejected and in panic: fail open keeps the target available.
    for (let i = 0; i < HEALTH_DEFAULTS.passive.consecutiveFailures; i++) checker.reportFailure('127.0.0.1:1', 'connect');
    assert.equal(checker.snapshot().targets[0]!.ejected, true);
    assert.equal(checker.isAvailable('127.0.0.1:1'), true);
  } finally {
    await checker.close();
  }
});
