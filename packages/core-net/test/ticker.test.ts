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
