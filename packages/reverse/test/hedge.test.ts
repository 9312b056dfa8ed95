import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NetError } from '@wmproxy/core-net';
import { defaultConnector, type Connector } from '../src/index.js';
import { startBackend, startProxy, startRaw, request, memoryLogger } from './helpers.js';

/** Connects to `hangAddress` never complete (a blackholed SYN) until the timeout or an abort; others connect for real. */
function hangingConnector(hangAddress: string, stats: { aborted: number; timedOut: number }): Connector {
  return (server, timeoutMs, signal) => {
    if (server.address !== hangAddress) return defaultConnector(server, timeoutMs, signal);
    return new Promise((_, reject) => {
      const timer = setTimeout(() => {
        stats.timedOut++;
        reject(new NetError('ETIMEDOUT', `connect to ${server.address} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        stats.aborted++;
        reject(new NetError('EABORTED', 'aborted'));
      });
    });
  };
}

test('a backend that accepts but never answers: a GET moves on after the first-byte timeout; alone it is a 504', async () => {
  const blackhole = await startRaw(() => {});
  const good = await startBackend('good');
  const { proxy, base } = await startProxy({
    timeouts: { firstByteMs: 300 },
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: blackhole.address }, { address: good.address }] }],
  });
  const alone = await startProxy({ timeouts: { firstByteMs: 300 }, upstreams: [{ name: 'app', servers: [{ address: blackhole.address }] }] });
  try {
    const reply = await request(`${base}/`);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'good');
    assert.equal((await request(`${alone.base}/`)).status, 504);
  } finally {
    await proxy.close();
    await alone.proxy.close();
    await blackhole.close();
    await good.close();
  }
});

/** One GET through a proxy whose first server's connects hang; returns what happened. */
async function hangingCase(hedgeDelayMs: number, connectMs: number): Promise<{ body: string; stats: { aborted: number; timedOut: number }; lines: string[] }> {
  const good = await startBackend('good');
  const hang = '127.0.0.1:9'; // never dialled: the connector stands in for a blackhole
  const stats = { aborted: 0, timedOut: 0 };
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    hedgeDelayMs,
    timeouts: { connectMs },
    connector: hangingConnector(hang, stats),
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: hang }, { address: good.address }] }],
  });
  try {
    const reply = await request(`${base}/`);
    assert.equal(reply.status, 200);
    return { body: reply.body, stats, lines };
  } finally {
    await proxy.close();
    await good.close();
  }
}

test('connect hedging on: a hanging connect is raced by a connect to another server, which serves the request', async () => {
  const { body, stats, lines } = await hangingCase(50, 10_000);
  assert.equal(body, 'good');
  assert.equal(stats.aborted, 1, 'the losing connect was abandoned');
  assert.equal(stats.timedOut, 0, 'nobody waited for the connect timeout');
  assert.equal(lines.filter((line) => line.includes('upstream attempt failed')).length, 0, 'served by the first attempt, no retry');
});

test('connect hedging off: the same request waits for the connect timeout, then is retried', async () => {
  const { body, stats, lines } = await hangingCase(0, 200);
  assert.equal(body, 'good');
  assert.equal(stats.timedOut, 1);
  assert.ok(lines.some((line) => line.includes('upstream attempt failed') && line.includes('ETIMEDOUT')));
});

test('a losing connect that completes anyway is kept in the pool instead of wasted', async () => {
  const slow = await startBackend('slow');
  const good = await startBackend('good');
  let release: (() => void) | undefined;
  const connector: Connector = async (server, timeoutMs, signal) => {
    if (server.address !== slow.address) return defaultConnector(server, timeoutMs, signal);
    // Ignores the abort, as a connect already past the point of no return does.
    await new Promise<void>((resolve) => (release = resolve));
    return defaultConnector(server, timeoutMs, new AbortController().signal);
  };
  const { proxy, base } = await startProxy({
    hedgeDelayMs: 20,
    connector,
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: slow.address }, { address: good.address }] }],
  });
  try {
    assert.equal((await request(`${base}/`)).body, 'good');
    release!();
    const slowServer = proxy.upstreams.get('app')!.servers[0]!;
    for (let i = 0; i < 100 && slowServer.pool.idleCount === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(slowServer.pool.idleCount, 1);
    assert.equal((await request(`${base}/`)).body, 'slow', 'the pooled connection serves the next request');
  } finally {
    await proxy.close();
    await slow.close();
    await good.close();
  }
});

test('request hedging: a GET with no answer after the hedge delay is also sent to another server, and the first answer wins', async () => {
  const blackhole = await startRaw(() => {});
  const good = await startBackend('good');
  const { logger, lines } = memoryLogger();
  const { proxy, base } = await startProxy({
    logger,
    requestHedgeMs: 100,
    timeouts: { firstByteMs: 30_000 },
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: blackhole.address }, { address: good.address }] }],
  });
  try {
    for (let i = 0; i < 3; i++) {
      const reply = await request(`${base}/`);
      assert.equal(reply.status, 200);
      assert.equal(reply.body, 'good');
    }
    assert.equal(lines.filter((line) => line.includes('request hedge won')).length, 3);
    assert.equal(lines.filter((line) => line.includes('upstream attempt failed')).length, 0, 'nobody waited for the first-byte timeout');
    const [slow, fast] = proxy.upstreams.get('app')!.servers;
    assert.equal(slow!.active, 0);
    assert.equal(fast!.active, 0);
    assert.equal(fast!.pool.idleCount, 1, 'the winning connection went back to the pool');
    assert.equal(proxy.hedges.inFlight, 0);
  } finally {
    await proxy.close();
    await blackhole.close();
    await good.close();
  }
});
