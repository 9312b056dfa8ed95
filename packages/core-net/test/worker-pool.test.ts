import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { checkPortFree, silentLogger, WorkerPool, type PoolMessage } from '../src/index.js';

/** The fixture next to this file: .ts under Bun (sources), .js under Node (dist). */
const entry = fileURLToPath(new URL(`./fixtures/pool-worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));

type Down = { t: 'start'; fail?: boolean } | { t: 'ping' } | { t: 'crash' };
type Up = PoolMessage & { pid?: number };

function waitFor(check: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const poll = setInterval(() => {
      if (check()) {
        clearInterval(poll);
        resolve();
      }
    }, 20);
  });
}

test('a worker that dies while serving is restarted with its start message, and stop ends every worker', { timeout: 30_000 }, async () => {
  const ready: number[] = [];
  const restarts: Array<number | string | null> = [];
  const pool = new WorkerPool<Down, Up>({
    entry,
    count: 2,
    logger: silentLogger,
    startMessage: () => ({ t: 'start' }),
    onReady: (_index, message) => void ready.push(message.pid!),
    onRestart: (_index, exit) => void restarts.push(exit),
  });
  await pool.start();
  try {
    assert.equal(ready.length, 2);
    assert.deepEqual(pool.workers().map((view) => view.state), ['running', 'running']);
    const first = pool.workers()[0]!.pid;
    assert.ok(pool.send(0, { t: 'crash' }));
    await waitFor(() => pool.workers()[0]!.restarts === 1 && pool.isRunning(0));
    assert.deepEqual(restarts, [3]);
    assert.notEqual(pool.workers()[0]!.pid, first);
    assert.equal(ready.length, 3);
  } finally {
    await pool.stop();
  }
  assert.deepEqual(pool.workers().map((view) => view.pid), [undefined, undefined]);
});

test('a worker that cannot serve fails the start with its own message', { timeout: 30_000 }, async () => {
  const pool = new WorkerPool<Down, Up>({ entry, count: 1, logger: silentLogger, startMessage: () => ({ t: 'start', fail: true }) });
  await assert.rejects(pool.start(), { message: 'cannot serve this' });
  assert.deepEqual(pool.workers().map((view) => view.pid), [undefined]);
});

test('checkPortFree refuses a port another program holds, in Node words', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as { port: number }).port;
  try {
    await assert.rejects(checkPortFree('127.0.0.1', port), { code: 'EADDRINUSE', message: `listen EADDRINUSE: address already in use 127.0.0.1:${port}` });
  } finally {
    await new Promise<void>((resolve) => taken.close(() => resolve()));
  }
  await checkPortFree('127.0.0.1', port);
});
