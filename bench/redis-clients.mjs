#!/usr/bin/env bun
// Bun's built-in Redis client against ioredis, on Bun (issue 19): the round
// trip the cluster rate limits make. One batch = what `RedisCounters.sync`
// sends every 50 ms: the same Lua script (INCRBY this window, read the one
// before) for `--keys` keys, pipelined in one round trip. ioredis pipelines
// explicitly (`pipeline().exec()`, as RedisCounters does); Bun's client
// pipelines the commands issued without awaiting in between. Both clients
// run the same number of batches against one real redis-server, interleaved
// over rounds; the table gives batches/s and the batch latency.
//
//   bun bench/redis-clients.mjs [--keys 100] [--batches 2000] [--rounds 3]
//
// Only a measurement: wmproxy keeps ioredis (the same client on Node and
// Bun); using Bun's would need a runtime adapter in core-net.
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { argument, Children, freePort, median, percentile, waitPort } from './reverse-common.mjs';

if (!process.versions.bun) {
  console.error('run with bun: Bun\'s Redis client is what is measured');
  process.exit(2);
}
const { RedisClient } = await import('bun');
const args = process.argv.slice(2);
const keys = Number(argument(args, 'keys', '100'));
const batches = Number(argument(args, 'batches', '2000'));
const rounds = Math.max(1, Number(argument(args, 'rounds', '3')));

const SCRIPT = `
local current = redis.call('INCRBY', KEYS[1], ARGV[1])
if current == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local previous = redis.call('GET', KEYS[2])
return {current, tonumber(previous) or 0}
`;

const children = new Children();
process.on('exit', () => children.killAll());
const port = await freePort();
children.live.add(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
await waitPort(port);
const url = `redis://127.0.0.1:${port}`;

const io = new Redis(url, { enableOfflineQueue: true, maxRetriesPerRequest: 0 });
io.defineCommand('wmproxyWindow', { numberOfKeys: 2, lua: SCRIPT });
const bun = new RedisClient(url);
await bun.connect();
const sha = String(await bun.send('SCRIPT', ['LOAD', SCRIPT]));

const keyNames = Array.from({ length: keys }, (_, index) => [`bench:k${index}:2`, `bench:k${index}:1`]);

const clients = {
  ioredis: async () => {
    const pipeline = io.pipeline();
    for (const [current, previous] of keyNames) pipeline.wmproxyWindow(current, previous, 1, 3000);
    const results = await pipeline.exec();
    if (!results || results.length !== keys) throw new Error('ioredis: short pipeline');
  },
  'bun RedisClient': async () => {
    const replies = await Promise.all(keyNames.map(([current, previous]) => bun.send('EVALSHA', [sha, '2', current, previous, '1', '3000'])));
    if (replies.length !== keys) throw new Error('bun: short batch');
  },
};

async function measure(run) {
  const latencies = new Float64Array(batches);
  for (let i = 0; i < 50; i++) await run(); // warm-up
  const started = performance.now();
  for (let i = 0; i < batches; i++) {
    const t = performance.now();
    await run();
    latencies[i] = performance.now() - t;
  }
  const seconds = (performance.now() - started) / 1000;
  const sorted = [...latencies].sort((a, b) => a - b);
  return { batchesPerSecond: batches / seconds, p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

const samples = Object.fromEntries(Object.keys(clients).map((name) => [name, []]));
for (let round = 0; round < rounds; round++) {
  for (const [name, run] of Object.entries(clients)) samples[name].push(await measure(run));
}
io.disconnect();
bun.close();

const rows = Object.entries(samples).map(([name, list]) => ({
  client: name,
  batchesPerSecond: Math.round(median(list.map((sample) => sample.batchesPerSecond))),
  scriptCallsPerSecond: Math.round(median(list.map((sample) => sample.batchesPerSecond)) * keys),
  p50Ms: Number(median(list.map((sample) => sample.p50)).toFixed(3)),
  p99Ms: Number(median(list.map((sample) => sample.p99)).toFixed(3)),
}));
const base = rows[0].batchesPerSecond;
console.log(`Redis clients on Bun ${process.versions.bun}: batches of ${keys} script calls, ${batches} batches × ${rounds} rounds (median)`);
console.log('| client | batches/s | script calls/s | p50 ms | p99 ms | × ioredis |');
console.log('|---|---|---|---|---|---|');
for (const row of rows) console.log(`| ${row.client} | ${row.batchesPerSecond} | ${row.scriptCallsPerSecond} | ${row.p50Ms} | ${row.p99Ms} | ${(row.batchesPerSecond / base).toFixed(2)} |`);
console.log(JSON.stringify({ bench: 'redis-clients', runtime: `bun ${process.versions.bun}`, keys, batches, rounds, rows }));
process.exit(0);
