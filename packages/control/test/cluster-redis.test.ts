// `[cluster] redis` changed by a hot reload: the instance counts in the new
// Redis from then on, its cluster limits keep working, and the connection to
// the old one is closed. Two real redis-server processes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { redisServer, REDIS_SERVER, type RedisServer } from '@wmproxy/testkit';
import { Instance } from '../src/index.js';
import { until } from './helpers.js';

const skip = REDIS_SERVER ? false : 'redis-server is not installed (.ci/run installs it)';
let first: RedisServer;
let second: RedisServer;
before(async () => {
  if (!skip) [first, second] = await Promise.all([redisServer(), redisServer()]);
});
after(async () => {
  await first?.stop();
  await second?.stop();
});

/** One command in RESP, the raw reply (read until it stops arriving). */
function redis(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    let timer: ReturnType<typeof setTimeout> | undefined;
    socket.on('connect', () => socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString();
      clearTimeout(timer);
      timer = setTimeout(() => {
        socket.destroy();
        resolve(reply);
      }, 30);
    });
    socket.on('error', reject);
  });
}

/** Keys of cluster rate limits in a Redis. */
async function limitKeys(port: number): Promise<number> {
  const reply = await redis(port, 'KEYS', 'wmproxy:rl:*');
  return Number(/^\*(\d+)/.exec(reply)?.[1] ?? 0);
}

/** Clients connected to a Redis besides the one asking (CLIENT LIST lists itself too). */
async function otherClients(port: number): Promise<number> {
  const reply = await redis(port, 'CLIENT', 'LIST');
  return reply.split('\n').filter((line) => line.includes('addr=')).length - 1;
}

const config = (url: string) =>
  parseConfig(
    [
      '[control]',
      'enabled = false',
      '[cluster]',
      `redis = "${url}"`,
      '[[server]]',
      'name = "web"',
      'listen = "127.0.0.1:0"',
      '[[server.location]]',
      'path = "/"',
      'respond = { status = 200, body = "ok" }',
      // Closed: while counting fails, nothing passes; so every 200 below went through Redis.
      'rate_limit = { rate = "10r/s", scope = "cluster", fallback = "closed" }',
      '',
    ].join('\n'),
    'toml',
  );

async function statuses(port: number, count: number): Promise<Map<number, number>> {
  const seen = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const status = await fetch(`http://127.0.0.1:${port}/`).then((res) => res.arrayBuffer().then(() => res.status), () => 0);
    seen.set(status, (seen.get(status) ?? 0) + 1);
  }
  return seen;
}

test('a reload that changes [cluster] redis counts in the new Redis, keeps limiting, and closes the old connection', { skip, timeout: 60_000 }, async () => {
  const instance = await Instance.start(config(first.url), { logger: silentLogger });
  try {
    const port = Number(instance.addressesOf('web')[0]!.split(':').pop());
    await until(async () => (await statuses(port, 1)).get(200) === 1, 'the first Redis connected (closed fallback until then)');
    await until(async () => (await limitKeys(first.port)) > 0, 'counts in the first Redis');
    assert.equal(await otherClients(first.port), 1, 'the instance holds one connection to the first Redis');
    assert.equal(await limitKeys(second.port), 0);

    const result = await instance.reload(config(second.url));
    assert.ok(result.ok, result.message);
    assert.ok(result.changes.some((change) => /reconnected to another Redis/.test(change)), result.changes.join('; '));
    await until(async () => (await otherClients(first.port)) === 0, 'the old connection closed');
    await until(async () => {
      await statuses(port, 2);
      return (await limitKeys(second.port)) > 0;
    }, 'counts in the second Redis');
    assert.equal(await otherClients(second.port), 1);
    // The limit still holds (10 r/s, no burst): a quick run of requests is partly refused, partly served.
    const burst = await statuses(port, 80);
    assert.ok((burst.get(200) ?? 0) > 0, `some served: ${JSON.stringify([...burst])}`);
    assert.ok((burst.get(503) ?? 0) > 0, `some refused: ${JSON.stringify([...burst])}`);
    // A reload with the same URL changes nothing.
    const same = await instance.reload(config(second.url));
    assert.ok(same.ok && !same.changes.some((change) => /Redis/.test(change)));
  } finally {
    await instance.stop();
  }
  await until(async () => (await otherClients(second.port)) === 0, 'stop closes the connection');
});
