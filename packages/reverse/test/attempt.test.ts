import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { NetError, type Conn } from '@wmproxy/core-net';
import { Attempt, type AttemptOwner } from '../src/engine/attempt.js';
import { RetrySlot, retryBudgetLimit, type BudgetedUpstream } from '../src/retry.js';
import { UpstreamServer, type Connector } from '../src/index.js';
import { startBackend, startProxy, startRaw, request, until } from './helpers.js';

// ---------------------------------------------------------------- fakes

interface FakeConn {
  closed: boolean;
  destroyed: number;
  userData: unknown;
  destroy(): void;
  setHandler(): void;
  pause(): void;
  resume(): void;
}

function fakeConn(): FakeConn {
  return {
    closed: false,
    destroyed: 0,
    userData: undefined,
    destroy() {
      this.destroyed++;
      this.closed = true;
    },
    setHandler() {},
    pause() {},
    resume() {},
  };
}

const asConn = (conn: FakeConn): Conn => conn as unknown as Conn;

// ---------------------------------------------------------------- Attempt: one lease, counted once

test('an attempt counts its request once and gives its lease back exactly once', () => {
  const server = new UpstreamServer({ address: '127.0.0.1:1' });
  const owner: AttemptOwner = { pooledConn: () => assert.fail('no pool wait') };
  const attempt = new Attempt(server, owner);
  assert.equal(server.active, 1);
  assert.equal(server.requests, 1);
  attempt.release();
  attempt.release();
  attempt.abort();
  assert.equal(server.active, 0, 'released once, whatever follows');
  assert.equal(server.requests, 1);
});

test('switching server moves the lease: the connect hedge winner counts the request, the primary no longer holds it', () => {
  const a = new UpstreamServer({ address: '127.0.0.1:1' });
  const b = new UpstreamServer({ address: '127.0.0.1:2' });
  const attempt = new Attempt(a, { pooledConn: () => {} });
  attempt.switchTo(b);
  assert.deepEqual([a.active, b.active, a.requests, b.requests], [0, 1, 1, 1]);
  attempt.abort();
  assert.deepEqual([a.active, b.active], [0, 0]);
});

test('aborting an attempt stops its connect, leaves the pool queue and closes its connection', () => {
  const server = new UpstreamServer({ address: '127.0.0.1:1' });
  let handed = 0;
  const attempt = new Attempt(server, { pooledConn: () => handed++ });
  const controller = attempt.beginConnect();
  attempt.waitForPool();
  attempt.abort();
  assert.equal(controller.signal.aborted, true);
  assert.equal(attempt.claimConnect(controller), false, 'a connect that completes after the abort is not this attempt\'s');
  const conn = fakeConn();
  server.pool.release(asConn(conn));
  assert.equal(handed, 0, 'an aborted attempt no longer waits for a pooled connection');
  assert.equal(server.pool.idleCount, 1);
  assert.equal(server.active, 0);
  server.pool.close();
});

test('a released connection beats the connect: the waiting attempt is handed it, and the connect\'s result is not claimed', () => {
  const server = new UpstreamServer({ address: '127.0.0.1:1' });
  const handed: Conn[] = [];
  const attempt = new Attempt(server, { pooledConn: (_, conn) => handed.push(conn) });
  const controller = attempt.beginConnect();
  attempt.waitForPool();
  const conn = asConn(fakeConn());
  server.pool.release(conn);
  assert.deepEqual(handed, [conn]);
  assert.equal(attempt.claimConnect(controller), false);
  assert.equal(controller.signal.aborted, false, 'the connect goes on, to be parked for the next request');
  attempt.release();
  assert.equal(server.active, 0);
});

test('hedge promotion: the promoted attempt keeps its own server\'s lease, the loser\'s is released once', () => {
  const slow = new UpstreamServer({ address: '127.0.0.1:1' });
  const fast = new UpstreamServer({ address: '127.0.0.1:2' });
  const owner: AttemptOwner = { pooledConn: () => {} };
  let attempt = new Attempt(slow, owner);
  const slowConn = fakeConn();
  attempt.conn = asConn(slowConn);
  let hedge: Attempt | undefined = new Attempt(fast, owner);
  hedge.conn = asConn(fakeConn());
  // Promotion as the session does it: swap two references, abort the loser.
  const loser = attempt;
  attempt = hedge;
  hedge = undefined;
  loser.abort();
  loser.abort();
  assert.equal(slowConn.destroyed, 1);
  assert.deepEqual([slow.active, fast.active], [0, 1]);
  assert.equal(attempt.server, fast);
  attempt.detach();
  attempt.release();
  assert.deepEqual([slow.active, fast.active], [0, 0]);
  assert.deepEqual([slow.requests, fast.requests], [1, 1]);
});

// ---------------------------------------------------------------- every interleaving

type Event =
  | { t: 'start'; s: number }
  | { t: 'connect' }
  | { t: 'connected'; s: number }
  | { t: 'connectFailed' }
  | { t: 'pooled' }
  | { t: 'bind' }
  | { t: 'hedge'; s: number; pooled: boolean }
  | { t: 'hedgeConnected' }
  | { t: 'hedgeWin' }
  | { t: 'hedgeLose' }
  | { t: 'reset' }
  | { t: 'hedgeReset' }
  | { t: 'retry' }
  | { t: 'finish' }
  | { t: 'tunnel' }
  | { t: 'tunnelClose' }
  | { t: 'clientAbort' }
  | { t: 'again'; i: number };

const SERVERS = 3;
const server = fc.integer({ min: 0, max: SERVERS - 1 });
const event: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ t: fc.constant('start' as const), s: server }),
  fc.constant({ t: 'connect' as const }),
  fc.record({ t: fc.constant('connected' as const), s: server }),
  fc.constant({ t: 'connectFailed' as const }),
  fc.constant({ t: 'pooled' as const }),
  fc.constant({ t: 'bind' as const }),
  fc.record({ t: fc.constant('hedge' as const), s: server, pooled: fc.boolean() }),
  fc.constant({ t: 'hedgeConnected' as const }),
  fc.constant({ t: 'hedgeWin' as const }),
  fc.constant({ t: 'hedgeLose' as const }),
  fc.constant({ t: 'reset' as const }),
  fc.constant({ t: 'hedgeReset' as const }),
  fc.constant({ t: 'retry' as const }),
  fc.constant({ t: 'finish' as const }),
  fc.constant({ t: 'tunnel' as const }),
  fc.constant({ t: 'tunnelClose' as const }),
  fc.constant({ t: 'clientAbort' as const }),
  fc.record({ t: fc.constant('again' as const), i: fc.nat() }),
);

/**
 * One request's attempts driven the way the session drives them (attempt and
 * hedge as two references), against a model that counts leases by itself:
 * which attempts the request still holds, and on which server.
 */
function run(events: Event[]): void {
  const servers = Array.from({ length: SERVERS }, (_, i) => new UpstreamServer({ address: `127.0.0.1:${i + 1}` }));
  const model = new Map<Attempt, UpstreamServer>();
  const requests = new Array<number>(SERVERS).fill(0);
  const failed = new Set<Attempt>();
  const failures = new Array<number>(SERVERS).fill(0);
  const conns: FakeConn[] = [];
  const handedOff = new Set<FakeConn>();
  const all: Attempt[] = [];
  let attempt: Attempt | undefined;
  let hedge: Attempt | undefined;
  let tunnel: Attempt | undefined;
  let connect: AbortController | undefined;
  let hedgeConnect: AbortController | undefined;
  let over = false;

  const owner: AttemptOwner = {
    pooledConn(which, conn) {
      if (which !== attempt) {
        which.server.pool.release(conn);
        return;
      }
      which.conn = conn;
    },
  };
  const newConn = (): Conn => {
    const conn = fakeConn();
    conns.push(conn);
    return asConn(conn);
  };
  const lease = (s: number): Attempt => {
    const made = new Attempt(servers[s]!, owner);
    model.set(made, servers[s]!);
    requests[s]!++;
    all.push(made);
    return made;
  };
  const end = (which: Attempt | undefined, how: 'abort' | 'release'): void => {
    if (!which) return;
    if (how === 'abort') which.abort();
    else which.release();
    model.delete(which);
  };
  const fail = (which: Attempt): void => {
    which.fail();
    if (!failed.has(which)) failures[servers.indexOf(which.server)]!++;
    failed.add(which);
  };
  const promote = (): void => {
    const loser = attempt!;
    attempt = hedge;
    hedge = undefined;
    end(loser, 'abort');
  };
  const dropHedge = (): void => {
    end(hedge, 'abort');
    hedge = undefined;
  };

  for (const e of events) {
    if (over && e.t !== 'again' && e.t !== 'tunnelClose') continue;
    switch (e.t) {
      case 'start':
        if (!attempt) attempt = lease(e.s);
        break;
      case 'connect':
        if (attempt && !attempt.conn && !attempt.connecting) {
          connect = attempt.beginConnect();
          attempt.waitForPool();
        }
        break;
      case 'connected': {
        if (!attempt || !connect) break;
        const conn = newConn();
        if (!attempt.claimConnect(connect)) {
          // Beaten by a pooled connection: parked for the next request.
          attempt.server.pool.release(conn);
          handedOff.add(conns.at(-1)!);
          break;
        }
        attempt.cancelWait();
        const to = servers[e.s]!;
        if (to !== attempt.server) {
          requests[e.s]!++;
          model.set(attempt, to);
        }
        attempt.switchTo(to);
        attempt.conn = conn;
        break;
      }
      case 'connectFailed':
        if (attempt && connect && attempt.claimConnect(connect)) {
          attempt.cancelWait();
          fail(attempt);
          end(attempt, 'abort');
          attempt = undefined;
        }
        break;
      case 'pooled':
        if (attempt?.connecting) {
          const conn = newConn();
          handedOff.add(conns.at(-1)!);
          attempt.server.pool.release(conn);
          if (attempt.conn === conn) handedOff.delete(conns.at(-1)!);
        }
        break;
      case 'bind':
        if (attempt && !attempt.conn && !attempt.connecting) attempt.conn = newConn();
        break;
      case 'hedge':
        if (attempt?.conn && !hedge) {
          hedge = lease(e.s);
          if (e.pooled) hedge.conn = newConn();
          else hedgeConnect = hedge.beginConnect();
        }
        break;
      case 'hedgeConnected':
        if (hedge && hedgeConnect && hedge.claimConnect(hedgeConnect)) hedge.conn = newConn();
        break;
      case 'hedgeWin':
        if (attempt && hedge?.conn) promote();
        break;
      case 'hedgeLose':
        if (hedge) dropHedge();
        break;
      case 'reset':
        if (attempt?.conn) {
          (attempt.conn as unknown as FakeConn).closed = true;
          attempt.conn = undefined;
          if (hedge?.conn) {
            fail(attempt);
            promote();
          } else {
            fail(attempt);
            dropHedge();
            end(attempt, 'abort');
            attempt = undefined;
          }
        }
        break;
      case 'hedgeReset':
        if (hedge?.conn) {
          (hedge.conn as unknown as FakeConn).closed = true;
          hedge.conn = undefined;
          dropHedge();
        }
        break;
      case 'retry':
        if (attempt) {
          fail(attempt);
          dropHedge();
          end(attempt, 'abort');
          attempt = undefined;
        }
        break;
      case 'finish':
        if (attempt?.conn) {
          dropHedge();
          const conn = attempt.detach()!;
          handedOff.add(conn as unknown as FakeConn);
          attempt.server.pool.release(conn);
          end(attempt, 'release');
          attempt = undefined;
          over = true;
        }
        break;
      case 'tunnel':
        if (attempt?.conn && !hedge) {
          handedOff.add(attempt.detach() as unknown as FakeConn);
          tunnel = attempt;
          attempt = undefined;
          over = true;
        }
        break;
      case 'tunnelClose':
        end(tunnel, 'release');
        tunnel = undefined;
        break;
      case 'clientAbort':
        dropHedge();
        end(attempt, 'abort');
        attempt = undefined;
        over = true;
        break;
      case 'again': {
        // Late or repeated calls (a close after an abort, a second release) change nothing.
        const which = all[e.i % Math.max(1, all.length)];
        if (which && !model.has(which)) {
          which.release();
          which.abort();
        }
        break;
      }
    }
    // Every server's `active` is the number of attempts the request holds on it.
    for (let s = 0; s < SERVERS; s++) {
      let held = 0;
      for (const on of model.values()) if (on === servers[s]) held++;
      assert.equal(servers[s]!.active, held, `active of server ${s} after ${e.t}`);
      assert.equal(servers[s]!.requests, requests[s], `requests of server ${s} after ${e.t}`);
      assert.equal(servers[s]!.failures, failures[s], `failures of server ${s} after ${e.t}`);
    }
  }
  // The client leaves, a tunnel closes: nothing may stay leased.
  dropHedge();
  end(attempt, 'abort');
  end(tunnel, 'release');
  for (const s of servers) assert.equal(s.active, 0, `no lease left on ${s.address}`);
  for (const conn of conns) {
    if (handedOff.has(conn)) continue;
    assert.ok(conn.destroyed === 1 || (conn.closed && conn.destroyed === 0), 'every connection not handed on is closed once');
  }
  for (const s of servers) s.pool.close();
}

test('no lease leaks under any interleaving of hedge win or loss, retry, client abort and upstream reset', () => {
  fc.assert(
    fc.property(fc.array(event, { maxLength: 40 }), (events) => run(events)),
    { numRuns: 2_000 },
  );
});

// ---------------------------------------------------------------- the retry budget

function group(actives: number[]): BudgetedUpstream {
  return { servers: actives.map((active) => ({ active })), retriesInFlight: 0 };
}

test('the retry budget is budgetPercent of the requests in flight, or budgetMinConcurrency, whichever is more', () => {
  assert.equal(retryBudgetLimit(group([0, 0]), { budgetPercent: 20, budgetMinConcurrency: 3 }), 3);
  assert.equal(retryBudgetLimit(group([30, 20]), { budgetPercent: 20, budgetMinConcurrency: 3 }), 10);
  assert.equal(retryBudgetLimit(group([4]), { budgetPercent: 0, budgetMinConcurrency: 0 }), 0);
});

test('a request holds one budget slot for all its retries and gives it back once', () => {
  const options = { budgetPercent: 0, budgetMinConcurrency: 2 };
  const upstream = group([5]);
  const first = new RetrySlot();
  const second = new RetrySlot();
  const third = new RetrySlot();
  assert.equal(first.take(upstream, options), true);
  assert.equal(first.take(upstream, options), true, 'a second retry of the same request');
  assert.equal(upstream.retriesInFlight, 1);
  assert.equal(second.take(upstream, options), true);
  assert.equal(third.take(upstream, options), false, 'budget exhausted');
  assert.equal(upstream.retriesInFlight, 2);
  first.release();
  first.release();
  assert.equal(upstream.retriesInFlight, 1);
  assert.equal(third.take(upstream, options), true, 'a slot given back can be taken');
  second.release();
  third.release();
  assert.equal(upstream.retriesInFlight, 0);
  assert.equal(third.held, undefined);
});

test('budget slots balance under any order of takes and releases', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ who: fc.integer({ min: 0, max: 4 }), take: fc.boolean() }), { maxLength: 60 }), fc.integer({ min: 0, max: 4 }), (steps, min) => {
      const upstream = group([10]);
      const options = { budgetPercent: 10, budgetMinConcurrency: min };
      const slots = Array.from({ length: 5 }, () => new RetrySlot());
      for (const step of steps) {
        if (step.take) slots[step.who]!.take(upstream, options);
        else slots[step.who]!.release();
        const held = slots.filter((slot) => slot.held !== undefined).length;
        assert.equal(upstream.retriesInFlight, held);
        assert.ok(held <= Math.max(min, 1));
      }
      for (const slot of slots) slot.release();
      assert.equal(upstream.retriesInFlight, 0);
    }),
  );
});

// ---------------------------------------------------------------- through the proxy

test('a request hedge that loses (the original answers first) releases both leases', async () => {
  let answer: (() => void) | undefined;
  const first = await startBackend('first', (_req, res) => {
    answer = () => res.end('first');
  });
  // The hedge's server never answers.
  const silent = await startRaw((socket) => socket.on('data', () => {})); // accepts, reads, never answers
  const { proxy, base } = await startProxy({
    requestHedgeMs: 30,
    timeouts: { firstByteMs: 30_000 },
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: first.address }, { address: silent.address }] }],
  });
  try {
    const reply = request(`${base}/`);
    await until(() => proxy.hedges.inFlight === 1 && answer !== undefined, 'the request is hedged');
    answer!();
    assert.equal((await reply).body, 'first');
    const [a, b] = proxy.upstreams.get('app')!.servers;
    await until(() => a!.active === 0 && b!.active === 0, 'both leases released');
    assert.equal(b!.requests, 1, 'the hedge was sent');
    assert.equal(proxy.hedges.inFlight, 0);
    await until(() => silent.sockets.size === 0, 'the losing hedge connection closed');
  } finally {
    await proxy.close();
    await first.close();
    await silent.close();
  }
});

test('an upstream reset before the answer: the retry goes to the next server and every lease is released', async () => {
  const reset = await startRaw((socket) => socket.once('data', () => socket.destroy()));
  const good = await startBackend('good');
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: reset.address }, { address: good.address }] }],
  });
  try {
    const reply = await request(`${base}/`);
    assert.equal(reply.body, 'good');
    const upstream = proxy.upstreams.get('app')!;
    const [a, b] = upstream.servers;
    assert.deepEqual([a!.active, b!.active], [0, 0]);
    assert.deepEqual([a!.requests, b!.requests], [1, 1]);
    assert.equal(a!.failures, 1);
    assert.equal(upstream.retriesInFlight, 0, 'the retry slot was given back');
  } finally {
    await proxy.close();
    await reset.close();
    await good.close();
  }
});

test('a client that leaves during a hedge releases the original\'s and the hedge\'s leases', async () => {
  const silent = await startRaw((socket) => socket.on('data', () => {})); // accepts, reads, never answers
  const silent2 = await startRaw((socket) => socket.on('data', () => {}));
  const { proxy, port } = await startProxy({
    requestHedgeMs: 30,
    timeouts: { firstByteMs: 30_000 },
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: silent.address }, { address: silent2.address }] }],
  });
  const client = net.connect(port, '127.0.0.1');
  client.on('error', () => {});
  try {
    client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => proxy.hedges.inFlight === 1 && silent2.sockets.size === 1, 'the request is hedged');
    // A reset: a FIN alone is a half-close, and the response is still awaited.
    client.resetAndDestroy();
    const [a, b] = proxy.upstreams.get('app')!.servers;
    await until(() => a!.active === 0 && b!.active === 0 && proxy.hedges.inFlight === 0, 'both leases released');
    await until(() => silent.sockets.size === 0 && silent2.sockets.size === 0, 'both upstream connections closed');
  } finally {
    client.destroy();
    await proxy.close();
    await silent.close();
    await silent2.close();
  }
});

test('a request that times out while its connect is pending releases the lease and aborts the connect', async () => {
  let aborted = 0;
  const connector: Connector = (_server, _timeoutMs, signal) =>
    new Promise((_, reject) => {
      signal.addEventListener('abort', () => {
        aborted++;
        reject(new NetError('EABORTED', 'aborted'));
      });
    });
  const { proxy, base } = await startProxy({
    connector,
    hedgeDelayMs: 0,
    timeouts: { requestMs: 200, connectMs: 30_000 },
    upstreams: [{ name: 'app', servers: [{ address: '127.0.0.1:9' }] }],
  });
  try {
    assert.equal((await request(`${base}/`)).status, 504);
    const server = proxy.upstreams.get('app')!.servers[0]!;
    assert.equal(server.active, 0);
    assert.equal(server.requests, 1);
    assert.equal(aborted, 1);
  } finally {
    await proxy.close();
  }
});
