import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ticker } from '../src/index.js';

test('a ticker runs every job with one clock reading, and a job that throws does not stop the others', () => {
  const errors: unknown[] = [];
  const ticker = new Ticker(1_000, (error) => errors.push(error));
  const seen: Array<[string, number]> = [];
  ticker.add((now) => seen.push(['a', now]));
  ticker.add(() => {
    throw new Error('broken job');
  });
  ticker.add((now) => seen.push(['b', now]));
  ticker.run(42);
  assert.deepEqual(seen, [['a', 42], ['b', 42]]);
  assert.equal((errors[0] as Error).message, 'broken job');
  ticker.close();
  assert.equal(ticker.size, 0);
});

test('a ticker runs its jobs on its own timer while it has any', async () => {
  const ticker = new Ticker(5);
  const ran = new Promise<number>((resolve) => {
    const job = (now: number): void => {
      ticker.delete(job);
      resolve(now);
    };
    ticker.add(job);
  });
  // The ticker's timer is unref'd: on Node nothing else would keep this test's event loop alive meanwhile.
  const keepAlive = setTimeout(() => undefined, 10_000);
  try {
    assert.equal(typeof (await ran), 'number');
  } finally {
    clearTimeout(keepAlive);
  }
  assert.equal(ticker.size, 0, 'the last job gone, the timer stops (the test process exits)');
});

test('a ticker refuses a period that would spin', () => {
  assert.throws(() => new Ticker(0), RangeError);
});

/** Collects what one-shot timers fire, in order. */
function recorder(): { fired: Array<[string, number]>; fire: (name: string, at: number) => void } {
  const fired: Array<[string, number]> = [];
  return { fired, fire: (name, at) => void fired.push([name, at]) };
}

/** Wait for the one-shot timer and the setImmediate it fires in (the timers are unref'd: keep the loop alive meanwhile). */
async function settle(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  await new Promise((resolve) => setImmediate(resolve));
}

test('one-shot timers fire in the order of their due times, each with the time it was due', () => {
  const ticker = new Ticker(1_000);
  const { fired, fire } = recorder();
  const base = Date.now() + 60_000;
  for (const [name, offset] of [['c', 30], ['a', 10], ['e', 50], ['b', 20], ['d', 40]] as const) ticker.once(base + offset, fire, name);
  assert.equal(ticker.pending, 5);
  ticker.expire(base + 35);
  ticker.runDue();
  assert.deepEqual(fired, [['a', base + 10], ['b', base + 20], ['c', base + 30]]);
  assert.equal(ticker.pending, 2, 'the two not yet due stay');
  ticker.expire(base + 100);
  ticker.runDue();
  assert.deepEqual(fired.map(([name]) => name), ['a', 'b', 'c', 'd', 'e']);
  assert.equal(ticker.pending, 0);
  ticker.close();
});

test('a cancelled one-shot timer does not fire; the others do; cancelling twice or one that fired is harmless', () => {
  const ticker = new Ticker(1_000);
  const { fired, fire } = recorder();
  const other = (name: string, at: number): void => void fired.push([`other ${name}`, at]);
  const base = Date.now() + 60_000;
  ticker.once(base + 1, fire, 'a');
  ticker.once(base + 2, fire, 'b');
  ticker.once(base + 2, other, 'b');
  ticker.once(base + 3, fire, 'c');
  ticker.cancel(fire, 'b');
  ticker.cancel(fire, 'b');
  ticker.expire(base + 1);
  ticker.runDue();
  ticker.cancel(fire, 'a'); // already fired
  ticker.expire(base + 10);
  ticker.runDue();
  assert.deepEqual(fired.map(([name]) => name), ['a', 'other b', 'c'], 'only the same function on the same target is cancelled');
  ticker.close();
});

test('a one-shot timer due in the past fires on the next turn, on the ticker\'s own timer', async () => {
  const ticker = new Ticker(1_000);
  const { fired, fire } = recorder();
  ticker.once(Date.now() - 5_000, fire, 'late');
  assert.equal(fired.length, 0, 'never synchronously');
  await settle(20);
  assert.deepEqual(fired.map(([name]) => name), ['late']);
  ticker.close();
});

test('a later timer does not delay an earlier one scheduled after it, and a one-shot that throws does not stop the others', async () => {
  const errors: unknown[] = [];
  const ticker = new Ticker(1_000, (error) => errors.push(error));
  const { fired, fire } = recorder();
  ticker.once(Date.now() + 60_000, fire, 'far');
  ticker.once(Date.now() + 5, () => {
    throw new Error('broken timer');
  }, undefined);
  ticker.once(Date.now() + 5, fire, 'near');
  await settle(40);
  assert.deepEqual(fired.map(([name]) => name), ['near']);
  assert.equal((errors[0] as Error).message, 'broken timer');
  assert.equal(ticker.pending, 1);
  ticker.close();
  assert.equal(ticker.pending, 0, 'close drops pending one-shots');
});

test('many one-shot timers with random due times all fire once, in order', () => {
  const ticker = new Ticker(1_000);
  const base = Date.now() + 60_000;
  const order: number[] = [];
  const fire = (_target: { i: number }, at: number): void => void order.push(at);
  const targets: Array<{ i: number }> = [];
  let seed = 7;
  for (let i = 0; i < 10_000; i++) {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    targets.push({ i });
    ticker.once(base + (seed % 5_000), fire, targets[i]!);
  }
  // Cancel every tenth.
  for (let i = 0; i < targets.length; i += 10) ticker.cancel(fire, targets[i]!);
  for (let now = base; now <= base + 5_000; now += 250) {
    ticker.expire(now);
    ticker.runDue();
  }
  assert.equal(order.length, 9_000);
  for (let i = 1; i < order.length; i++) assert.ok(order[i - 1]! <= order[i]!, `in order at ${i}`);
  assert.equal(ticker.pending, 0);
  ticker.close();
});

test('a one-shot that schedules another from its fire (as the hedge timer re-arms) gets it fired on a later turn, once', () => {
  const ticker = new Ticker(1_000);
  const base = Date.now() + 60_000;
  const fired: number[] = [];
  const fire = (_target: unknown, at: number): void => {
    fired.push(at);
    if (fired.length < 4) ticker.once(at + 10, fire, undefined);
  };
  ticker.once(base, fire, undefined);
  for (let now = base; now <= base + 100; now += 5) {
    ticker.expire(now);
    ticker.runDue();
    ticker.runDue();
  }
  assert.deepEqual(fired, [base, base + 10, base + 20, base + 30]);
  assert.equal(ticker.pending, 0);
  ticker.close();
});
