import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DurationError,
  HealthChecker,
  HealthOptionError,
  normaliseAddress,
  parseDuration,
  MAX_DURATION_MS,
  parseStatusRanges,
  parseTargetUrl,
  resolveActive,
  formatDuration,
  statusMatches,
  StatusSpecError,
  TargetError,
} from '../src/index.js';

test('durations read as people write them', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1s'), 1000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('250'), 250);
  assert.equal(parseDuration(' 2S '), 2000);
  for (const bad of ['', 's', '1x', '-1s', '1 s', '1s2', 'ms']) assert.throws(() => parseDuration(bad), DurationError, bad);
  assert.equal(formatDuration(250), '250ms');
  assert.equal(formatDuration(1500), '1.5s');
  assert.equal(formatDuration(120_000), '2m');
  // Longer than a timer can wait (setTimeout would fire after 1 ms): refused with the reason.
  assert.equal(parseDuration('24d'), 24 * 86_400_000);
  assert.equal(parseDuration(MAX_DURATION_MS), MAX_DURATION_MS);
  assert.throws(() => parseDuration('25d'), /too long \(at most 24d/);
  assert.throws(() => parseDuration('2147483648'), /too long/);
  assert.throws(() => parseDuration(2 ** 31), /too long/);
});

test('status lists accept ranges, single codes and classes', () => {
  const ranges = parseStatusRanges('200-299, 301,4xx');
  assert.deepEqual(ranges, [[200, 299], [301, 301], [400, 499]]);
  assert.ok(statusMatches(ranges, 204));
  assert.ok(statusMatches(ranges, 301));
  assert.ok(!statusMatches(ranges, 302));
  assert.ok(statusMatches(ranges, 404));
  for (const bad of ['', '200-', '99', '600', '300-200', 'abc', '2x']) assert.throws(() => parseStatusRanges(bad), StatusSpecError, bad);
});

test('targets are normalised so one address has one spelling', () => {
  assert.equal(normaliseAddress('LOCALHOST.:80'), 'localhost:80');
  assert.equal(normaliseAddress('[0:0:0:0:0:0:0:1]:8080'), '[::1]:8080');
  assert.equal(normaliseAddress('127.0.0.1:8080'), '127.0.0.1:8080');
  assert.throws(() => normaliseAddress(':8080'), TargetError);
  assert.throws(() => normaliseAddress('host'), TargetError);
  assert.throws(() => normaliseAddress('127.0.0.1:0'), TargetError);
});

test('target URLs become specs: tcp, http with its path, https on 443', () => {
  assert.deepEqual(parseTargetUrl('tcp://127.0.0.1:5432'), { address: '127.0.0.1:5432', check: { type: 'tcp' } });
  assert.deepEqual(parseTargetUrl('http://Example.test/healthz?full=1'), {
    address: 'example.test:80',
    check: { type: 'http', path: '/healthz?full=1' },
  });
  assert.deepEqual(parseTargetUrl('https://[::1]/'), { address: '[::1]:443', check: { type: 'https', path: '/' } });
  assert.deepEqual(parseTargetUrl('127.0.0.1:22'), { address: '127.0.0.1:22', check: { type: 'tcp' } });
  assert.throws(() => parseTargetUrl('ftp://x:21'), /scheme must be/);
  assert.throws(() => parseTargetUrl('tcp://x'), /needs a port/);
  assert.throws(() => parseTargetUrl('tcp://x:1/path'), /no path/);
  assert.throws(() => parseTargetUrl('http://u:p@x/'), /credentials/);
});

test('active options: defaults as HAProxy, timeout capped at the interval, bad values rejected', () => {
  const defaults = resolveActive(undefined);
  assert.equal(defaults.intervalMs, 2000);
  assert.equal(defaults.timeoutMs, 1000);
  assert.equal(defaults.rise, 2);
  assert.equal(defaults.fall, 3);
  assert.equal(defaults.jitter, 0.1);
  assert.equal(defaults.fastIntervalMs, 2000);
  assert.equal(defaults.downIntervalMs, 2000);
  assert.equal(defaults.initial, 'unknown');
  assert.equal(resolveActive({ intervalMs: 500, timeoutMs: 5000 }).timeoutMs, 500);
  assert.throws(() => resolveActive({ rise: 0 }), HealthOptionError);
  assert.throws(() => resolveActive({ fall: 1.5 }), HealthOptionError);
  assert.throws(() => resolveActive({ jitter: 2 }), HealthOptionError);
  assert.throws(() => new HealthChecker({ panicThreshold: 120 }), HealthOptionError);
  assert.throws(() => new HealthChecker({ passive: { maxEjectionPercent: -1 } }), HealthOptionError);
});

test('bad checks are refused when added', async () => {
  const health = new HealthChecker();
  try {
    assert.throws(() => health.add({ address: '127.0.0.1:1', check: { type: 'http', method: 'GE T' } }), /invalid HTTP method/);
    assert.throws(() => health.add({ address: '127.0.0.1:1', check: { type: 'http', path: 'nopath' } }), /invalid HTTP path/);
    assert.throws(() => health.add({ address: '127.0.0.1:1', check: { type: 'http', expectStatus: '2000' } }), /invalid status/);
    assert.throws(() => health.add({ address: '127.0.0.1:1', check: { type: 'http', expectBody: '/(/' } }), /invalid regular expression/);
    assert.throws(() => health.add({ address: '127.0.0.1:1', check: { type: 'tcp', send: 'zz', encoding: 'hex' } }), /invalid hex/);
    assert.throws(() => health.add({ address: '127.0.0.1:1', check: { type: 'http', headers: { 'X-A': 'a\r\nb' } } }), /invalid value/);
    assert.deepEqual(health.keys(), []);
  } finally {
    await health.close();
  }
});
