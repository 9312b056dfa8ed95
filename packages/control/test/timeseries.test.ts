import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { emptyCounters, type WorkerCounters } from '../src/cluster/protocol.js';
import { Histogram, LATENCY_BUCKETS, LATENCY_BUCKET_COUNT } from '../src/metrics.js';
import { TimeSeries, histogramQuantile } from '../src/timeseries.js';
import type { UpstreamView } from '../src/types.js';

/** Cumulative counters as the instance would report them after `requests` 2xx answers of `seconds` each. */
function counters(requests: number, seconds: number[] = [], bytes = 0): WorkerCounters {
  const base = emptyCounters(LATENCY_BUCKET_COUNT);
  const histogram = new Histogram();
  for (const value of seconds) histogram.observe(value);
  return { ...base, requests: [['2xx', requests]], bytesSent: bytes, requestDuration: histogram.data() };
}

function upstream(requests: number, failures: number, state = 'healthy', address = '10.0.0.1:80'): UpstreamView[] {
  return [{ name: 'app', policy: 'round_robin', servers: [{ address, weight: 1, backup: false, state, available: state === 'healthy', ejected: false, ejectKind: undefined, reason: undefined, successes: 0, failures: 0, latencyMs: 3, lastResults: [], check: 'tcp', activeRequests: 0, idleConnections: 0, requests, requestFailures: failures }] }];
}

test('stores per-second deltas of cumulative counters, oldest first', () => {
  const series = new TimeSeries({ capacity: 10 });
  series.sample(1_000_000, counters(5, [], 100), 2, upstream(5, 0));
  series.sample(1_001_000, counters(12, [], 450), 3, upstream(12, 1));
  series.sample(1_002_000, counters(12, [], 450), 1, upstream(12, 1, 'unhealthy'));
  const view = series.view();
  assert.deepEqual(view.t, [1000, 1001, 1002]);
  assert.deepEqual(view.requests['2xx'], [5, 7, 0], 'counters start at 0 with the instance');
  assert.deepEqual(view.bytesOut, [100, 350, 0]);
  assert.deepEqual(view.connections, [2, 3, 1]);
  assert.equal(view.servers.length, 1);
  assert.deepEqual(view.servers[0]!.requests, [5, 7, 0]);
  assert.deepEqual(view.servers[0]!.errors, [0, 1, 0]);
  assert.deepEqual(view.servers[0]!.state.map((index) => view.states[index]), ['healthy', 'healthy', 'unhealthy']);
  assert.deepEqual(series.view(1_001_000).t, [1002], 'since is exclusive');
});

test('bytes in, retries, hedges won and lost are per-second deltas; per-server p99 comes from that server\'s histogram over the second', () => {
  const series = new TimeSeries({ capacity: 10 });
  const fast = new Histogram();
  const slow = new Histogram();
  const at = (bytesReceived: number, retries: number, won: number, lost: number): WorkerCounters => ({
    ...counters(0),
    bytesReceived,
    retries,
    hedges: { won, lost },
    serverDuration: [[`app\u0000a:80`, fast.data()], [`app\u0000b:80`, slow.data()]],
  });
  const two: UpstreamView[] = [{ ...upstream(0, 0)[0]!, servers: [{ ...upstream(0, 0, 'healthy', 'a:80')[0]!.servers[0]! }, { ...upstream(0, 0, 'healthy', 'b:80')[0]!.servers[0]! }] }];
  series.sample(1_000_000, at(0, 0, 0, 0), 0, two);
  for (let i = 0; i < 10; i++) fast.observe(0.004);
  slow.observe(0.8);
  series.sample(1_001_000, at(1500, 2, 1, 3), 0, two);
  series.sample(1_002_000, at(1600, 2, 1, 3), 0, two);
  const view = series.view();
  assert.deepEqual(view.bytesIn, [0, 1500, 100]);
  assert.deepEqual(view.retries, [0, 2, 0]);
  assert.deepEqual(view.hedges, { won: [0, 1, 0], lost: [0, 3, 0] });
  const [a, b] = view.servers;
  assert.equal(a!.p99Ms[0], null, 'no request that second');
  assert.ok(a!.p99Ms[1]! > 2.5 && a!.p99Ms[1]! <= 5, `a's p99 in its bucket, got ${a!.p99Ms[1]}`);
  assert.ok(b!.p99Ms[1]! > 500 && b!.p99Ms[1]! <= 1000, `b's p99 in its bucket, got ${b!.p99Ms[1]}`);
  assert.equal(a!.p99Ms[2], null);
});

test('a counter that goes back (a restarted worker) counts from zero, never negative', () => {
  const series = new TimeSeries({ capacity: 4 });
  series.sample(1000, counters(100), 0, []);
  series.sample(2000, counters(3), 0, []);
  assert.deepEqual(series.view().requests['2xx'], [100, 3]);
});

test('the ring wraps: after more samples than slots it keeps the newest, in order', () => {
  const series = new TimeSeries({ capacity: 5 });
  for (let second = 1; second <= 13; second++) series.sample(second * 1000, counters(second * 10), second, []);
  const view = series.view();
  assert.equal(series.length, 5);
  assert.deepEqual(view.t, [9, 10, 11, 12, 13]);
  assert.deepEqual(view.connections, [9, 10, 11, 12, 13]);
  assert.deepEqual(view.requests['2xx'], [10, 10, 10, 10, 10]);
});

test('memory is constant over a 10-minute run at one sample a second (fake clock), and after the ring has wrapped many times', () => {
  const series = new TimeSeries();
  const start = 1_700_000_000_000;
  let total = 0;
  const latencies: number[] = [];
  const at = (second: number) => {
    total += 7;
    latencies.push(0.004, 0.02);
    series.sample(start + second * 1000, counters(total, latencies, total * 100), 4, upstream(total, 0));
  };
  at(0);
  const initial = series.memoryBytes();
  assert.ok(initial > 0);
  for (let second = 1; second < 600; second++) at(second);
  assert.equal(series.memoryBytes(), initial, 'after 10 minutes');
  for (let second = 600; second < 3000; second++) {
    at(second);
    series.noteTransition({ at: start + second * 1000, kind: 'transition', target: '10.0.0.1:80', from: 'healthy', to: 'unhealthy', reason: 'ECONNREFUSED' });
  }
  assert.equal(series.memoryBytes(), initial, 'after the ring wrapped');
  assert.equal(series.length, 900);
  assert.equal(series.transitionCount, 500, 'the transition log is bounded too');
  assert.equal(series.view().t.length, 900);
});

test('a server the configuration drops loses its columns; a new one gets them, counting from its first reading', () => {
  const series = new TimeSeries({ capacity: 3 });
  series.sample(1000, counters(0), 0, upstream(0, 0, 'healthy', 'a:1'));
  const one = series.memoryBytes();
  series.sample(2000, counters(0), 0, upstream(40, 2, 'healthy', 'b:1'));
  series.sample(3000, counters(0), 0, upstream(45, 2, 'healthy', 'b:1'));
  assert.equal(series.memoryBytes(), one);
  assert.deepEqual(series.view().servers.map((server) => server.server), ['b:1']);
  assert.deepEqual(series.view().servers[0]!.requests.slice(1), [0, 5]);
});

test('percentiles of one second come from that second\'s histogram delta', () => {
  const series = new TimeSeries({ capacity: 4 });
  const slow = Array.from({ length: 100 }, () => 2);
  series.sample(1000, counters(100, slow), 0, []);
  // The next second: 100 fast requests only.
  const fast = Array.from({ length: 100 }, () => 0.003);
  series.sample(2000, counters(200, [...slow, ...fast]), 0, []);
  series.sample(3000, counters(200, [...slow, ...fast]), 0, []);
  const { p50, p99 } = series.view().latencyMs;
  assert.ok(p50[0]! > 1000, 'the first second: the slow requests');
  assert.ok(p50[1]! > 2.5 && p50[1]! <= 5, `p50 ${p50[1]} ms is in the 2.5..5 ms bucket`);
  assert.ok(p99[1]! <= 5);
  assert.equal(p99[2], null, 'no request that second');
});

test('histogramQuantile interpolates inside the bucket, answers the last bound past it, NaN when empty', () => {
  assert.ok(Number.isNaN(histogramQuantile([1, 2], [0, 0], 0, 0.5)));
  assert.equal(histogramQuantile([1, 2], [0, 10], 10, 0.5), 1.5);
  assert.equal(histogramQuantile([1, 2], [10, 0], 10, 1), 1);
  assert.equal(histogramQuantile([1, 2], [0, 0], 5, 0.5), 2, 'everything above the last bound');
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0, max: 20, noNaN: true }), { minLength: 1, maxLength: 200 }), fc.double({ min: 0.01, max: 1, noNaN: true }), (values, q) => {
      const histogram = new Histogram();
      for (const value of values) histogram.observe(value);
      const answer = histogramQuantile(LATENCY_BUCKETS, histogram.counts, histogram.count, q);
      // Within the range of the buckets, and never below the bucket holding the true quantile's lower bound.
      assert.ok(answer >= 0 && answer <= LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]!);
      const sorted = [...values].sort((a, b) => a - b);
      const truth = sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
      const upper = LATENCY_BUCKETS.find((bound) => truth <= bound) ?? LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]!;
      assert.ok(answer <= upper + 1e-9, `q=${q}: ${answer} above the bucket bound ${upper} of the true value ${truth}`);
    }),
  );
});
