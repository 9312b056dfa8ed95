import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { HostileOrigin } from './hostile.js';
import { OriginUnavailable, startOrigin, type Origin } from './origins.js';
import { budget, fuzzRequests, fuzzResponses, loadSeeds, runRequestCase, runResponseCase, summaryLine, type ProxyUnderTest } from './runner.js';

const ORIGINS = ['node', 'python', 'nginx'] as const;

export interface FuzzSuite {
  /** The running hostile origin (after `before`), for a proxy's own extra tests. */
  hostile(): HostileOrigin;
}

/**
 * The differential fuzz suite of one proxy, as node:test tests: a bounded
 * generated run per origin (fixed seeds from `seedBase`), one against the
 * hostile origin, and every stored regression seed that applies to it.
 * `npm run fuzz` runs the same properties for longer with random seeds.
 */
export function defineFuzzSuite(proxy: ProxyUnderTest, label: string, seedBase: number, runs = 80): FuzzSuite {
  /** Each origin, or why it cannot run here (skipped), or why it failed to start (that origin's tests fail). */
  const origins = new Map<string, Origin | OriginUnavailable | Error>();
  let hostile: HostileOrigin | undefined;

  before(async () => {
    for (const name of ORIGINS) {
      try {
        origins.set(name, await startOrigin(name));
      } catch (error) {
        origins.set(name, error instanceof Error ? error : new Error(String(error)));
      }
    }
    hostile = await HostileOrigin.start();
  });

  after(async () => {
    for (const origin of origins.values()) if (!(origin instanceof Error)) await origin.close();
    await hostile?.close();
  });

  /** The running origin; skips the test when it cannot run on this machine, fails it when it did not start. */
  const originOr = (t: { skip(message?: string): void; diagnostic(message: string): void }, name: string, skip = true): Origin | undefined => {
    const origin = origins.get(name);
    if (origin instanceof OriginUnavailable) {
      if (skip) t.skip(`${name} origin unavailable: ${origin.message}`);
      else t.diagnostic(`${name} origin unavailable: ${origin.message}`);
      return undefined;
    }
    if (origin instanceof Error || origin === undefined) throw origin ?? new Error(`${name} origin not started`);
    return origin;
  };

  for (const [i, name] of ORIGINS.entries()) {
    test(`${label} -> ${name}: every request the origin parses is one the proxy parsed, with the same body, one response each`, async (t) => {
      const origin = originOr(t, name);
      if (!origin) return;
      const summary = await fuzzRequests(proxy, origin, budget(runs, seedBase + i));
      t.diagnostic(summaryLine(summary));
    });
  }

  test(`${label} <- hostile origin: odd response framing never shows a client another response or stray bytes`, async (t) => {
    const summary = await fuzzResponses(proxy, hostile!, budget(runs, seedBase + 9));
    t.diagnostic(summaryLine(summary));
  });

  // Every case the fuzzers ever failed on, replayed against each origin.
  for (const seed of loadSeeds('request')) {
    if (seed.proxies && !seed.proxies.includes(proxy.name)) continue;
    const todo = seed.todo?.[proxy.name];
    test(`regression seed (request): ${seed.name}`, todo ? { todo } : {}, async (t) => {
      for (const name of ORIGINS) {
        if (seed.origins && !seed.origins.includes(name)) continue;
        const origin = originOr(t, name, false);
        if (!origin) continue;
        const { verdict, report } = await runRequestCase(proxy, origin, seed.case);
        assert.deepEqual(verdict.failures, [], report);
      }
    });
  }

  for (const seed of loadSeeds('response')) {
    if (seed.proxies && !seed.proxies.includes(proxy.name)) continue;
    const todo = seed.todo?.[proxy.name];
    test(`regression seed (response): ${seed.name}`, todo ? { todo } : {}, async () => {
      const result = await runResponseCase(proxy, hostile!, seed.case);
      assert.deepEqual(result.failures, [], result.report);
    });
  }

  return {
    hostile: () => {
      if (!hostile) throw new Error('the hostile origin is not running yet');
      return hostile;
    },
  };
}
