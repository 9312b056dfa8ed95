import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connPair, NetError, Ticker, type Conn } from '@wmproxy/core-net';
import type { LossVerdict } from '@wmproxy/health';
import { connectHedged, raceOutcome, type Connector } from '../src/engine/connector.js';
import { connectHedgeDelay, connectsStuck, CONNECT_HEDGE_MIN_DELAY_MS, CONNECT_HEDGE_MIN_SAMPLES, CONNECT_HEDGE_WARMUP_FACTOR, connected } from '../src/engine/hedge.js';
import { LatencyEstimate } from '../src/engine/latency.js';
import { Upstream, type HealthSource, type UpstreamServer } from '../src/upstream.js';

/** Health that records the races reported to it. */
function recordingHealth(): HealthSource & { lost: Array<[string, string]>; answered: string[] } {
  const lost: Array<[string, string]> = [];
  const answered: string[] = [];
  return {
    lost,
    answered,
    isAvailable: () => true,
    reportLostRace: (target, _sentAt, _minEjectMs, race = 'response'): LossVerdict => {
      lost.push([target, race]);
      return 'counted';
    },
    reportAnswer: (target) => void answered.push(target),
  };
}

/** Block the event loop for `ms` (a loaded machine: every completion is seen late). */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

/**
 * A connector: `blackholed` never connects (until aborted); any other
 * server connects after `afterMs`, seen `lagMs` late (the loop was busy).
 */
function connector(blackholed: string, afterMs: number, lagMs: number): Connector {
  return (server, _timeoutMs, signal) =>
    new Promise<Conn>((resolve, reject) => {
      signal.addEventListener('abort', () => reject(new NetError('EABORTED', 'aborted')), { once: true });
      if (server.address === blackholed) return;
      setTimeout(() => {
        busy(lagMs);
        resolve(connPair()[0]);
      }, afterMs);
    });
}

async function race(upstream: Upstream, connect: Connector, hedgeDelayMs: number): Promise<UpstreamServer> {
  const ticker = new Ticker(100);
  const keepAlive = setTimeout(() => undefined, 10_000);
  try {
    const [primary, second] = upstream.servers;
    const outcome = await connectHedged({
      primary: primary!,
      upstream,
      connector: connect,
      ticker,
      timeoutMs: 1_000,
      hedgeDelayMs,
      pickSecond: () => second,
      adopt: (_server, conn) => conn.destroy(),
    });
    outcome.conn.destroy();
    // The loss of a primary seen only late is decided after as long again as the hedge took.
    await new Promise((resolve) => setTimeout(resolve, 100));
    return outcome.server;
  } finally {
    clearTimeout(keepAlive);
    ticker.close();
  }
}

test('the race outcome: fair loss, late loss (the primary waited twice the delay), or nobody to blame', () => {
  assert.equal(raceOutcome(12, 2, 5), 'lost', 'the hedge took 2 ms, the primary had waited 10 ms when it started');
  assert.equal(raceOutcome(40, 30, 5), 'late', 'both seen 30 ms late: not a fair race, but the primary waited 8 × the delay');
  assert.equal(raceOutcome(9, 5, 5), 'even', 'the hedge took as long as the head start, and the primary waited under twice the delay');
});

test('a blackholed primary loses the connect race even when a busy event loop sees the hedge\'s connect late', async () => {
  const health = recordingHealth();
  const upstream = new Upstream({ name: 'app', servers: [{ address: '127.0.0.1:1' }, { address: '127.0.0.1:2' }] }, health);
  // The hedge connects in 1 ms but is seen 30 ms later: 31 ms is longer than the 5 ms head start.
  const winner = await race(upstream, connector('127.0.0.1:1', 1, 30), CONNECT_HEDGE_MIN_DELAY_MS);
  assert.equal(winner.address, '127.0.0.1:2');
  assert.deepEqual(health.lost, [['127.0.0.1:1', 'connect']], 'the blackholed server lost a race (stall detection counts it)');
});

test('a primary that connected meanwhile, only seen late, is not blamed and its connection is kept', async () => {
  const health = recordingHealth();
  const upstream = new Upstream({ name: 'app', servers: [{ address: '127.0.0.1:1' }, { address: '127.0.0.1:2' }] }, health);
  const adopted: string[] = [];
  const ticker = new Ticker(100);
  const keepAlive = setTimeout(() => undefined, 10_000);
  try {
    // The hedge (started at 5 ms) connects after 1 ms but is seen 30 ms late; the primary's
    // connect completed during that busy moment (or a little later: a burst), and is read after the hedge's.
    let primaryDone: ((conn: Conn) => void) | undefined;
    const connect: Connector = (server, _timeoutMs, signal) =>
      new Promise<Conn>((resolve, reject) => {
        signal.addEventListener('abort', () => reject(new NetError('EABORTED', 'aborted')), { once: true });
        if (server.address === '127.0.0.1:1') primaryDone = resolve;
        else
          setTimeout(() => {
            busy(30);
            resolve(connPair()[0]);
            setTimeout(() => primaryDone!(connPair()[0]), 10);
          }, 1);
      });
    const outcome = await connectHedged({
      primary: upstream.servers[0]!,
      upstream,
      connector: connect,
      ticker,
      timeoutMs: 1_000,
      hedgeDelayMs: CONNECT_HEDGE_MIN_DELAY_MS,
      pickSecond: () => upstream.servers[1],
      adopt: (server, conn) => {
        adopted.push(server.address);
        conn.destroy();
      },
    });
    outcome.conn.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(outcome.server.address, '127.0.0.1:2', 'the hedge was seen first');
    assert.deepEqual(health.lost, [], 'the primary had connected by the time the hedge was seen: no loss');
    assert.deepEqual(adopted, ['127.0.0.1:1'], 'its connection went to the pool');
    assert.ok(health.answered.includes('127.0.0.1:1'), 'its connect counts as a sign of life');
  } finally {
    clearTimeout(keepAlive);
    ticker.close();
  }
});

test('before enough connects were seen, the connect-hedge delay is a few times the longest one, not the configured delay', () => {
  const upstream = new Upstream({ name: 'warm', servers: [{ address: '127.0.0.1:1' }] });
  const server = upstream.servers[0]!;
  assert.equal(connectHedgeDelay(upstream, 100), 100, 'no connect seen yet: the configured delay');
  connected(upstream, server, 0, 3);
  assert.equal(connectHedgeDelay(upstream, 100), 3 * CONNECT_HEDGE_WARMUP_FACTOR, 'one 3 ms connect');
  connected(upstream, server, 0, 0.3);
  assert.equal(connectHedgeDelay(upstream, 100), 3 * CONNECT_HEDGE_WARMUP_FACTOR, 'the longest so far');
  connected(upstream, server, 0, 40);
  assert.equal(connectHedgeDelay(upstream, 100), 100, 'never above the configured delay');
  for (let i = 0; i < 400; i++) connected(upstream, server, 0, 0.3);
  assert.equal(connectHedgeDelay(upstream, 100), CONNECT_HEDGE_MIN_DELAY_MS, 'then the p99');
  const plain = new LatencyEstimate(0.99, 32);
  plain.add(3);
  assert.equal(plain.clamp(1, 500), 500, 'without a warm-up factor: the ceiling until enough samples');
});

test('once a connect to a server is still pending after the delay, the next connects to it are hedged at once, and still counted as lost races', async () => {
  const health = recordingHealth();
  const upstream = new Upstream({ name: 'app', servers: [{ address: '127.0.0.1:1' }, { address: '127.0.0.1:2' }] }, health);
  const [blackholed, healthy] = upstream.servers as [UpstreamServer, UpstreamServer];
  const calls = new Map<string, number>();
  const inner = connector(blackholed.address, 1, 0);
  const counting: Connector = (server, timeoutMs, signal) => {
    calls.set(server.address, (calls.get(server.address) ?? 0) + 1);
    return inner(server, timeoutMs, signal);
  };
  assert.equal(connectsStuck(blackholed), false);
  assert.equal((await race(upstream, counting, CONNECT_HEDGE_MIN_DELAY_MS)).address, healthy.address);
  assert.equal(connectsStuck(blackholed), true, 'its connect was still pending when the hedge fired');
  assert.equal(connectsStuck(healthy), false);
  assert.deepEqual(health.lost, [[blackholed.address, 'connect']]);

  const ticker = new Ticker(100);
  const keepAlive = setTimeout(() => undefined, 10_000);
  try {
    // The blackholed server first, the healthy one as its hedge after the 1 s delay (at once while it is stuck).
    const dialBlackholedFirst = () =>
      connectHedged({
        primary: blackholed,
        upstream,
        connector: counting,
        ticker,
        timeoutMs: 1_000,
        hedgeDelayMs: 1_000,
        pickSecond: () => healthy,
        adopt: (_server, conn) => conn.destroy(),
      });
    const pending = dialBlackholedFirst();
    assert.equal(calls.get(healthy.address), 2, 'the second connect started with the first, not after the delay');
    assert.equal(calls.get(blackholed.address), 2, 'the stuck server is still tried (its recovery must be seen)');
    const outcome = await pending;
    outcome.conn.destroy();
    assert.equal(outcome.server, healthy);
    // Judged once it has had the delay (at most the configured 1 s): poll rather than guess the time.
    for (let i = 0; i < 300 && health.lost.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(health.lost, [[blackholed.address, 'connect'], [blackholed.address, 'connect']], 'still pending once it had the delay: a second lost race');

    // A completed connect ends it: the next connect waits for the delay again.
    connected(upstream, blackholed, performance.now() - 1, performance.now());
    assert.equal(connectsStuck(blackholed), false);
    const later = dialBlackholedFirst();
    assert.equal(calls.get(blackholed.address), 3, 'the primary is dialled');
    assert.equal(calls.get(healthy.address), 2, 'no longer stuck: its connect gets no hedge at once');
    const hedged = await later;
    hedged.conn.destroy();
    assert.equal(hedged.server, healthy, 'the hedge came after the delay');
  } finally {
    clearTimeout(keepAlive);
    ticker.close();
  }
});
