// Differential fuzzing of the forward proxy's HTTP/1.1 path (docs/fuzzing.md):
// generated absolute-form requests go through a fresh HttpProxyServer to real
// origins (node:http in a child `node`, Python's http.server, nginx) behind
// recording taps, and generated hostile responses come back from a raw origin.
// A bounded run here (fixed seed); `npm run fuzz` runs longer with random seeds.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyReader, Server, parseAddress, parseRequestHead } from '@wmproxy/core-net';
import {
  HostileOrigin,
  OriginUnavailable,
  RawClient,
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
import { HttpProxyServer } from '../src/index.js';

const forward: ProxyUnderTest = {
  name: 'forward',
  // Absolute-form targets; no authority-form CONNECT (it would open a real tunnel to the origin).
  profile: { target: 'absolute', authorityForm: false },
  parser: { parseRequestHead, BodyReader },
  limits: { requireHost: false },
  async start() {
    const proxy = new HttpProxyServer({ via: false });
    const server = new Server({ addresses: [parseAddress('127.0.0.1:0')], onConnection: (conn) => proxy.handle(conn) });
    await server.start();
    return {
      port: server.listeners[0]!.port,
      async close() {
        await server.shutdown({ deadlineMs: 0 });
      },
    };
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
  test(`forward proxy -> ${name}: every request the origin parses is one the proxy parsed, with the same body, one response each`, async (t) => {
    const origin = originOr(t, name);
    if (!origin) return;
    const summary = await fuzzRequests(forward, origin, budget(80, 0xf0d0 + i));
    t.diagnostic(summaryLine(summary));
  });
}

test('forward proxy <- hostile origin: odd response framing never shows a client another response or stray bytes', async (t) => {
  const summary = await fuzzResponses(forward, hostile!, budget(80, 0xf0d9));
  t.diagnostic(summaryLine(summary));
});

test('a POST the origin reads and then drops on a reused connection is answered 502, not sent again; a GET is retried once', async () => {
  // Found by the hostile-response fuzzer: the proxy retried any bodyless request on a fresh
  // connection when a reused one closed before answering, POST included (RFC 9110 section 9.2.2:
  // a proxy MUST NOT retry a non-idempotent request; the origin may have acted on it).
  const origin = hostile!;
  const proxy = await forward.start(origin.address);
  try {
    for (const [method, times] of [['POST', 1], ['GET', 2]] as const) {
      await origin.reset();
      const first = `fz${method.slice(0, 4).toLowerCase().padEnd(4, 'x')}-0`;
      const second = `fz${method.slice(0, 4).toLowerCase().padEnd(4, 'x')}-1`;
      origin.set(first, Buffer.from(`HTTP/1.1 200 OK\r\nX-Resp: ${first}\r\nContent-Length: 0\r\n\r\n`));
      origin.set(second, Buffer.alloc(0)); // read it, then close without a byte
      const client = await RawClient.connect(proxy.port);
      await client.write(Buffer.from(`GET http://${origin.address}/fz/${first} HTTP/1.1\r\nHost: a\r\n\r\n`));
      await client.until(() => client.received.includes('\r\n\r\n'), 5_000);
      await client.write(Buffer.from(`${method} http://${origin.address}/fz/${second} HTTP/1.1\r\nHost: a\r\n\r\n`));
      await client.until(() => client.received.includes('HTTP/1.1 502'), 5_000);
      client.destroy();
      assert.match(client.received.toString('latin1'), /HTTP\/1\.1 502 /);
      assert.equal(origin.seen.filter((seen) => seen.id === second).length, times, `${method} reached the origin ${times} time(s)`);
    }
  } finally {
    await proxy.close();
    await origin.reset();
  }
});

// Every case the fuzzers ever failed on, replayed against each origin.
for (const seed of loadSeeds('request')) {
  if (seed.proxies && !seed.proxies.includes('forward')) continue;
  const todo = seed.todo?.forward;
  test(`regression seed (request): ${seed.name}`, todo ? { todo } : {}, async (t) => {
    for (const name of ORIGINS) {
      if (seed.origins && !seed.origins.includes(name)) continue;
      const origin = originOr(t, name, false);
      if (!origin) continue;
      const { verdict, report } = await runRequestCase(forward, origin, seed.case);
      assert.deepEqual(verdict.failures, [], report);
    }
  });
}

for (const seed of loadSeeds('response')) {
  if (seed.proxies && !seed.proxies.includes('forward')) continue;
  const todo = seed.todo?.forward;
  test(`regression seed (response): ${seed.name}`, todo ? { todo } : {}, async () => {
    const result = await runResponseCase(forward, hostile!, seed.case);
    assert.deepEqual(result.failures, [], result.report);
  });
}
