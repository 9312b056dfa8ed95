// Differential fuzzing of the reverse proxy's HTTP/1.1 path (docs/fuzzing.md):
// generated requests go through a fresh ReverseProxy to real origins (node:http
// in a child `node`, Python's http.server, nginx) behind recording taps, and
// generated hostile responses come back from a raw origin. A bounded run here
// (fixed seed); `npm run fuzz` runs the same properties for longer with random seeds.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyReader, parseRequestHead } from '@wmproxy/core-net';
import {
  HostileOrigin,
  OriginUnavailable,
  budget,
  fuzzRequests,
  fuzzResponses,
  loadSeeds,
  runRequestCase,
  runResponseCase,
  startOrigin,
  summaryLine,
  type Origin,
  type ProxyUnderTest,
} from '@wmproxy/testkit/http-fuzz';
import { ReverseProxy } from '../src/index.js';

const reverse: ProxyUnderTest = {
  name: 'reverse',
  profile: { target: 'origin', authorityForm: true },
  parser: { parseRequestHead, BodyReader },
  limits: {},
  async start(upstream) {
    const proxy = new ReverseProxy({
      servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'origin' }] }] }],
      upstreams: [{ name: 'origin', servers: [{ address: upstream }] }],
      // One attempt, no hedging: every request reaches the origin at most once.
      retries: { tries: 1 },
      hedgeDelayMs: 0,
      requestHedgeMs: 0,
      shutdownDeadlineMs: 0,
    });
    await proxy.start();
    const address = proxy.addresses[0]!;
    return { port: Number(address.slice(address.lastIndexOf(':') + 1)), close: () => proxy.close() };
  },
};

const ORIGINS = ['node', 'python', 'nginx'] as const;
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
function originOr(t: { skip(message?: string): void; diagnostic(message: string): void }, name: string, skip = true): Origin | undefined {
  const origin = origins.get(name);
  if (origin instanceof OriginUnavailable) {
    if (skip) t.skip(`${name} origin unavailable: ${origin.message}`);
    else t.diagnostic(`${name} origin unavailable: ${origin.message}`);
    return undefined;
  }
  if (origin instanceof Error || origin === undefined) throw origin ?? new Error(`${name} origin not started`);
  return origin;
}

for (const [i, name] of ORIGINS.entries()) {
  test(`reverse proxy -> ${name}: every request the origin parses is one the proxy parsed, with the same body, one response each`, async (t) => {
    const origin = originOr(t, name);
    if (!origin) return;
    const summary = await fuzzRequests(reverse, origin, budget(80, 0x5eed0 + i));
    t.diagnostic(summaryLine(summary));
  });
}

test('reverse proxy <- hostile origin: odd response framing never shows a client another response or stray bytes', async (t) => {
  const summary = await fuzzResponses(reverse, hostile!, budget(80, 0x5eed9));
  t.diagnostic(summaryLine(summary));
});

// Every case the fuzzers ever failed on, replayed against each origin.
for (const seed of loadSeeds('request')) {
  if (seed.proxies && !seed.proxies.includes('reverse')) continue;
  const todo = seed.todo?.reverse;
  test(`regression seed (request): ${seed.name}`, todo ? { todo } : {}, async (t) => {
    for (const name of ORIGINS) {
      if (seed.origins && !seed.origins.includes(name)) continue;
      const origin = originOr(t, name, false);
      if (!origin) continue;
      const { verdict, report } = await runRequestCase(reverse, origin, seed.case);
      assert.deepEqual(verdict.failures, [], report);
    }
  });
}

for (const seed of loadSeeds('response')) {
  if (seed.proxies && !seed.proxies.includes('reverse')) continue;
  const todo = seed.todo?.reverse;
  test(`regression seed (response): ${seed.name}`, todo ? { todo } : {}, async () => {
    const result = await runResponseCase(reverse, hostile!, seed.case);
    assert.deepEqual(result.failures, [], result.report);
  });
}
