import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ticker, type Conn, type ConnHandler } from '@wmproxy/core-net';
import { ConnPool } from '../src/index.js';

function fakeConn(): Conn & { destroyed: boolean } {
  const conn = {
    closed: false,
    destroyed: false,
    userData: undefined as unknown,
    handler: undefined as ConnHandler | undefined,
    setHandler(handler: ConnHandler) {
      conn.handler = handler;
    },
    destroy() {
      if (conn.closed) return;
      conn.closed = true;
      conn.destroyed = true;
      conn.handler?.close(conn as unknown as Conn);
    },
  };
  return conn as unknown as Conn & { destroyed: boolean };
}

test('the pool hands connections back last-in first-out and drops ones that close while idle', () => {
  const pool = new ConnPool();
  const a = fakeConn();
  const b = fakeConn();
  pool.release(a);
  pool.release(b);
  assert.equal(pool.idleCount, 2);
  a.destroy();
  assert.equal(pool.idleCount, 1, 'a connection closed by the server leaves the pool');
  assert.equal(pool.acquire(), b);
  assert.equal(pool.acquire(), undefined);
  pool.close();
});

test('a released connection goes to a waiting request before being parked; maxIdle bounds the rest', () => {
  const pool = new ConnPool({ maxIdle: 1 });
  const taken: Conn[] = [];
  const waiter = { take: (conn: Conn) => taken.push(conn) };
  const cancelled = { take: () => assert.fail('a cancelled waiter is never served') };
  pool.wait(cancelled);
  pool.wait(waiter);
  pool.cancel(cancelled);
  const a = fakeConn();
  pool.release(a);
  assert.deepEqual(taken, [a]);
  assert.equal(pool.idleCount, 0);
  const b = fakeConn();
  const c = fakeConn();
  pool.release(b);
  pool.release(c);
  assert.equal(pool.idleCount, 1);
  assert.equal(c.destroyed, true, 'over maxIdle: closed');
  pool.close();
  assert.equal(b.destroyed, true, 'close() closes idle connections');
});

test('pools sharing a ticker expire idle connections on its ticks, and leave it once empty', () => {
  const ticker = new Ticker(100);
  const pool = new ConnPool({ idleTimeoutMs: 1_000 });
  pool.useTicker(ticker);
  const a = fakeConn();
  pool.release(a, 10_000);
  assert.equal(ticker.size, 1, 'a parked connection subscribes the pool');
  ticker.run(10_500);
  assert.equal(a.destroyed, false, 'not idle long enough');
  ticker.run(11_000);
  assert.equal(a.destroyed, true, 'idle for idleTimeoutMs: closed');
  assert.equal(ticker.size, 0, 'nothing left to expire: unsubscribed');
  const b = fakeConn();
  pool.release(b, 20_000);
  pool.close();
  assert.equal(ticker.size, 0, 'close() unsubscribes');
  ticker.close();
});
