// `wmproxy tunnel server|client` and `wmproxy run` with [tunnel] sections, as a user runs them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort, trackedServer } from '@wmproxy/testkit';
import { Running, curl, wmproxy } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'wmproxy-cli-tunnel-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function echoOnce(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let got = '';
    socket.on('data', (chunk) => {
      got += chunk.toString();
      if (got.length >= text.length) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('error', reject);
    socket.write(text);
  });
}

test('tunnel server prints its fingerprint; a client pinning it exposes a tcp service on the public port', async () => {
  const echo = await trackedServer((socket) => socket.pipe(socket));
  const publicPort = await closedPort();
  const server = new Running(['tunnel', 'server', '--listen', '127.0.0.1:0', '--token', 'cli-secret', '--state-dir', join(dir, 'state')]);
  let client: Running | undefined;
  try {
    const fingerprint = (await server.waitFor(/fingerprint: (SHA256:\S+)/))[1]!;
    const port = await server.port(/tunnel server listening .*address=127\.0\.0\.1:(\d+)/);
    client = new Running(['tunnel', 'client', '--server', `127.0.0.1:${port}`, '--token', 'cli-secret', '--fingerprint', fingerprint, '--map', `e=tcp:127.0.0.1:${echo.port}:${publicPort}`]);
    await client.waitFor(/tunnel mapping registered .*mapping=e/, { stream: 'stderr' });
    assert.equal(await echoOnce(publicPort, 'through the cli'), 'through the cli');
    assert.equal(await client.stop(), 0);
    assert.equal(await server.stop(), 0);
  } finally {
    client?.kill();
    server.kill();
    await echo.close();
  }
});

test('tunnel commands refuse bad flags with one line and exit 2', async () => {
  for (const [args, message] of [
    [['tunnel', 'client', '--server', '127.0.0.1:7000', '--token', 'x', '--map', 'db=tcp:127.0.0.1:5432'], 'tcp:LOCAL_HOST:LOCAL_PORT:PUBLIC_PORT'],
    [['tunnel', 'client', '--server', '127.0.0.1:7000', '--token', 'x', '--map', 'out=proxy::1', '--fingerprint', 'nope'], 'is not a SHA-256 fingerprint'],
    [['tunnel', 'client', '--server', '127.0.0.1:7000', '--token', 'x', '--map', 'out=proxy::1', '--ca', 'a.pem', '--fingerprint', 'SHA256:x'], '--ca and --fingerprint are alternatives'],
    [['tunnel', 'client', '--server', '127.0.0.1:7000', '--token', 'x', '--map', 'out=proxy::1'], 'would be an open proxy into this network'],
    [['tunnel', 'client', '--server', '127.0.0.1:7000', '--token', 'x', '--map', 'out=proxy::1', '--proxy-user', 'ann'], 'is not USER:PASS'],
    [['tunnel', 'client', '--server', '127.0.0.1:7000', '--token', 'x', '--map', 'out=proxy::1', '--proxy-allow', 'nope'], 'invalid CIDR "nope"'],
    [['tunnel', 'server', '--token', 'x', '--cert', 'a.pem'], '--cert and --key go together'],
    [['tunnel', 'server', '--token', 'x', '--allow-ports', '9-1'], '--allow-ports'],
  ] as const) {
    const { code, stderr } = await wmproxy([...args]);
    assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
    assert.ok(stderr.includes(message), `${args.join(' ')}: ${stderr}`);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
  }
});

test('run -c starts [tunnel.server] and [[tunnel.client]]; /status shows the client and its mappings', async () => {
  const echo = await trackedServer((socket) => socket.pipe(socket));
  const [tunnelPort, publicPort, controlPort] = [await closedPort(), await closedPort(), await closedPort()];
  const file = join(dir, 'tunnel.toml');
  writeFileSync(
    file,
    [
      `[control]\nlisten = "127.0.0.1:${controlPort}"`,
      `[tunnel.server]\nlisten = "127.0.0.1:${tunnelPort}"\ntoken = "0123456789abcdef"\nplain = true`,
      `[[tunnel.client]]\nserver = "127.0.0.1:${tunnelPort}"\ntoken = "0123456789abcdef"\nplain = true\nmappings = ["e=tcp:127.0.0.1:${echo.port}:${publicPort}"]`,
    ].join('\n'),
  );
  const run = new Running(['run', '-c', file]);
  try {
    await run.waitFor(/tunnel mapping registered .*mapping=e/, { stream: 'stderr' });
    // The control API starts after the services: /status is there once `run` says it is running.
    await run.waitFor(/running \(pid/);
    assert.equal(await echoOnce(publicPort, 'via run'), 'via run');
    const status = (await (await fetch(`http://127.0.0.1:${controlPort}/status`)).json()) as { tunnel: { server: { clients: Array<{ mappings: Array<{ name: string }> }> }; clients: Array<{ connected: boolean }> } };
    assert.equal(status.tunnel.server.clients[0]!.mappings[0]!.name, 'e');
    assert.equal(status.tunnel.clients[0]!.connected, true);
    assert.equal(await run.stop(), 0);
  } finally {
    run.kill();
    await echo.close();
  }
});

test('run -c with http_listen: an http mapping is served by Host through the engine, checked through the tunnel; tunnel server --http-listen does the same', async () => {
  const web = http.createServer((req, res) => res.end(`web ${req.url}`));
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  const webPort = (web.address() as { port: number }).port;
  const [tunnelPort, httpPort, controlPort] = [await closedPort(), await closedPort(), await closedPort()];
  const file = join(dir, 'tunnel-http.toml');
  writeFileSync(
    file,
    [
      `[control]\nlisten = "127.0.0.1:${controlPort}"`,
      `[tunnel.server]\nlisten = "127.0.0.1:${tunnelPort}"\ntoken = "0123456789abcdef"\nplain = true\nhttp_listen = "127.0.0.1:${httpPort}"\nhttp_health = { path = "/healthz", interval = "200ms", rise = 1, fall = 1 }`,
      `[[tunnel.client]]\nserver = "127.0.0.1:${tunnelPort}"\ntoken = "0123456789abcdef"\nplain = true\nmappings = ["site=http:127.0.0.1:${webPort}@site.test"]`,
    ].join('\n'),
  );
  const run = new Running(['run', '-c', file]);
  const get = (host: string) => curl(['-s', '-H', `Host: ${host}`, `http://127.0.0.1:${httpPort}/page`]);
  try {
    await run.waitFor(/tunnel mapping registered .*mapping=site/, { stream: 'stderr' });
    await run.waitFor(/upstream health .*to=healthy/, { stream: 'stderr' });
    await run.waitFor(/running \(pid/);
    assert.equal((await get('site.test')).stdout, 'web /page');
    assert.match((await get('nothing.test')).stdout, /no tunnel mapping serves this host/);
    const status = (await (await fetch(`http://127.0.0.1:${controlPort}/status`)).json()) as { tunnel: { server: { http: string[] } } };
    assert.deepEqual(status.tunnel.server.http, [`127.0.0.1:${httpPort}`]);
    assert.equal(await run.stop(), 0);
  } finally {
    run.kill();
  }
  // The same from the command line.
  const [cliTunnel, cliHttp] = [await closedPort(), await closedPort()];
  const server = new Running(['tunnel', 'server', '--listen', `127.0.0.1:${cliTunnel}`, '--token', '0123456789abcdef', '--plain', '--http-listen', `127.0.0.1:${cliHttp}`]);
  const client = new Running(['tunnel', 'client', '--server', `127.0.0.1:${cliTunnel}`, '--token', '0123456789abcdef', '--plain', '--map', `site=http:127.0.0.1:${webPort}@site.test`]);
  try {
    await server.waitFor(/http mappings served on 127\.0\.0\.1:\d+/);
    await client.waitFor(/registered|mapping/, { stream: 'stderr' });
    let body = '';
    for (let i = 0; i < 100 && body !== 'web /cli'; i++) {
      body = (await curl(['-s', '-H', 'Host: site.test', `http://127.0.0.1:${cliHttp}/cli`])).stdout;
      if (body !== 'web /cli') await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(body, 'web /cli');
  } finally {
    client.kill();
    server.kill();
    web.close();
  }
});

/**
 * A preload (NODE_OPTIONS --require) that keeps, in the file `$GC_COUNT_FILE`, the count of the process's
 * full GCs and the largest size its young generation (V8's new space) has reached.
 */
const GC_COUNTER = `
const { PerformanceObserver, constants } = require('node:perf_hooks');
const { getHeapSpaceStatistics } = require('node:v8');
const { writeFileSync } = require('node:fs');
let major = 0;
let newSpace = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (entry.detail && entry.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++;
}).observe({ entryTypes: ['gc'] });
setInterval(() => {
  for (const space of getHeapSpaceStatistics()) if (space.space_name === 'new_space') newSpace = Math.max(newSpace, space.space_size);
  writeFileSync(process.env.GC_COUNT_FILE, JSON.stringify({ major, newSpace }));
}, 50).unref();
`;

test('on Node, tunnel processes moving 128 MiB run no full GCs (socket read buffers no longer start one per scavenge) and keep their young generation small', { skip: typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined' ? 'V8 only' : false }, async () => {
  const size = 128 * 1024 * 1024;
  const chunk = Buffer.alloc(1 << 20, 0x61);
  const source = await trackedServer((socket) => {
    let left = size;
    const pump = (): void => {
      while (left > 0) {
        left -= chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
      socket.end();
    };
    socket.on('error', () => socket.destroy());
    pump();
  });
  const preload = join(dir, 'gc-counter.cjs');
  writeFileSync(preload, GC_COUNTER);
  const counts = { server: join(dir, 'gc-server'), client: join(dir, 'gc-client') };
  const env = (file: string): Record<string, string> => ({ NODE_OPTIONS: `--require ${preload}`, GC_COUNT_FILE: file });
  const publicPort = await closedPort();
  const server = new Running(['tunnel', 'server', '--listen', '127.0.0.1:0', '--token', 'cli-secret', '--state-dir', join(dir, 'state-gc')], env(counts.server));
  let client: Running | undefined;
  try {
    const fingerprint = (await server.waitFor(/fingerprint: (SHA256:\S+)/))[1]!;
    const port = await server.port(/tunnel server listening .*address=127\.0\.0\.1:(\d+)/);
    client = new Running(['tunnel', 'client', '--server', `127.0.0.1:${port}`, '--token', 'cli-secret', '--fingerprint', fingerprint, '--map', `bulk=tcp:127.0.0.1:${source.port}:${publicPort}`], env(counts.client));
    await client.waitFor(/tunnel mapping registered .*mapping=bulk/, { stream: 'stderr' });
    type GcState = { major: number; newSpace: number };
    const gcStates = async (): Promise<GcState[]> => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return [JSON.parse(readFileSync(counts.server, 'utf8')) as GcState, JSON.parse(readFileSync(counts.client, 'utf8')) as GcState];
    };
    const before = (await gcStates()).map((state) => state.major);
    const received = await new Promise<number>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: publicPort });
      let got = 0;
      socket.on('data', (data: Buffer) => (got += data.length));
      socket.on('end', () => resolve(got));
      socket.on('error', reject);
    });
    assert.equal(received, size);
    const states = await gcStates();
    const after = states.map((state) => state.major);
    // Before the change: 6-10 per side for 128 MiB.
    assert.ok(after[0]! - before[0]! <= 1 && after[1]! - before[1]! <= 1, `full GCs while moving 128 MiB: server ${after[0]! - before[0]!}, client ${after[1]! - before[1]!}`);
    // V8 grows it to 32 MiB by default; every page garbage walks through stays resident (idle streams' RSS).
    for (const [side, state] of [['server', states[0]!], ['client', states[1]!]] as const) {
      assert.ok(state.newSpace <= 4 * 1024 * 1024, `the ${side}'s young generation reached ${state.newSpace} bytes`);
    }
  } finally {
    client?.kill();
    server.kill();
    await source.close();
  }
});
