// Cluster-scoped rate limits: three limiters (three instances) sharing one
// counter store hold the limit together; with the store unreachable each
// applies its fallback. The store is a real redis-server, and an in-memory
// one for the fallback cases.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { redisServer, REDIS_SERVER, type RedisServer } from '@wmproxy/testkit';
import { RateLimiter, type CounterSync, type CounterTotals, type LimitContext, type SharedCounters } from '@wmproxy/reverse';
import { RedisCounters } from '../src/index.js';

const skip = REDIS_SERVER ? false : 'redis-server is not installed (.ci/run installs it)';
let redis: RedisServer;
before(async () => {
  if (!skip) redis = await redisServer();
});
after(async () => {
  await redis?.stop();
});

const client = (ip: string): LimitContext => ({ clientIp: ip, uri: '/', header: () => undefined });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Offer `perSecond` requests a second to each limiter for `seconds`; count what each admits. */
async function offer(limiters: RateLimiter[], perSecond: number, seconds: number): Promise<number[]> {
  const admitted = limiters.map(() => 0);
  const tickMs = 10;
  const perTick = (perSecond * tickMs) / 1000;
  const carry = limiters.map(() => 0);
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    limiters.forEach((limiter, index) => {
      carry[index]! += perTick;
      while (carry[index]! >= 1) {
        carry[index]!--;
        if (limiter.admit(client('203.0.113.7')) === undefined) {
          admitted[index]!++;
          limiter.release();
        }
      }
    });
    await sleep(tickMs);
  }
  return admitted;
}

test('a cluster limit of 100 r/s holds within 10 % across three instances sharing Redis, while each alone would admit far more', { skip, timeout: 60_000 }, async () => {
  // One prefix for all three: they are one cluster.
  const shared = [0, 1, 2].map(() => new RedisCounters({ url: redis.url, prefix: 'hold:', instances: 3 }));
  try {
    await sleep(200);
    assert.ok(shared.every((c) => c.reachable));
    const limiters = shared.map((c) => new RateLimiter({ rate: '100r/s', scope: 'cluster' }, { counters: c, name: 'location /' }));
    const seconds = 10;
    const admitted = await offer(limiters, 80, seconds);
    const total = admitted.reduce((a, b) => a + b, 0);
    process.stderr.write(`# offered ${3 * 80 * seconds}, admitted ${total} (${admitted.join(' + ')}) for a limit of ${100 * seconds}\n`);
    assert.ok(total >= 100 * seconds * 0.9 && total <= 100 * seconds * 1.1, `admitted ${total}, limit ${100 * seconds} ± 10 %`);
    assert.ok(admitted.every((count) => count > 100), 'every instance serves its share');
  } finally {
    await Promise.all(shared.map((c) => c.close()));
  }
});

/** An in-memory store whose reachability the test switches. */
class SwitchableCounters implements SharedCounters {
  reachable = true;
  readonly instances = 4;
  private readonly counts = new Map<string, number>();
  async sync(batch: readonly CounterSync[]): Promise<CounterTotals[]> {
    if (!this.reachable) throw new Error('down');
    return batch.map((entry) => {
      const key = `${entry.key}:${entry.window}`;
      const current = (this.counts.get(key) ?? 0) + entry.add;
      this.counts.set(key, current);
      return { current, previous: this.counts.get(`${entry.key}:${entry.window - 1}`) ?? 0 };
    });
  }
}

test('with the store unreachable: local takes this instance\'s share (rate / instances), open admits all, closed refuses all', () => {
  const store = new SwitchableCounters();
  store.reachable = false;
  const make = (fallback: 'local' | 'open' | 'closed') => new RateLimiter({ rate: '40r/s', burst: 9, scope: 'cluster', fallback }, { counters: store, name: fallback });
  const count = (limiter: RateLimiter) => {
    let admitted = 0;
    for (let i = 0; i < 100; i++) if (limiter.admit(client('198.51.100.1'), 1_000_000) === undefined) admitted++;
    return admitted;
  };
  // A burst of 100 at one instant: the local bucket holds burst + 1 = 10 tokens whatever the rate share.
  assert.equal(count(make('local')), 10);
  assert.equal(count(make('open')), 100);
  assert.equal(count(make('closed')), 0);
  // The local share refills at 40 / 4 = 10 r/s: one second later, 10 more.
  const local = make('local');
  count(local);
  let later = 0;
  for (let i = 0; i < 100; i++) if (local.admit(client('198.51.100.1'), 1_001_000) === undefined) later++;
  assert.equal(later, 10);
});

test('Redis stopped: the counters say unreachable at once and the limit falls back; restarted: shared again', { skip, timeout: 30_000 }, async () => {
  const counters = new RedisCounters({ url: redis.url, prefix: 'outage:', instances: 2, timeoutMs: 200 });
  try {
    await sleep(200);
    assert.equal(counters.reachable, true);
    const limiter = new RateLimiter({ rate: '1000r/s', scope: 'cluster', fallback: 'closed' }, { counters, name: 'outage' });
    assert.equal(limiter.admit(client('192.0.2.1')), undefined);
    limiter.release();
    await redis.stop();
    const started = Date.now();
    while (counters.reachable && Date.now() - started < 5_000) await sleep(20);
    assert.equal(counters.reachable, false);
    assert.equal(limiter.admit(client('192.0.2.1'))?.status, 503, 'closed fallback refuses');
    await redis.start();
    const back = Date.now();
    while (!counters.reachable && Date.now() - back < 10_000) await sleep(50);
    assert.equal(counters.reachable, true);
    assert.equal(limiter.admit(client('192.0.2.1')), undefined);
  } finally {
    await counters.close();
  }
});
