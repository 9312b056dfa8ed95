// Differential fuzzing of the forward proxy's HTTP/1.1 path (docs/fuzzing.md):
// generated absolute-form requests go through a fresh HttpProxyServer to real
// origins (node:http in a child `node`, Python's http.server, nginx) behind
// recording taps, and generated hostile responses come back from a raw origin.
// A bounded run here (fixed seed); `npm run fuzz` runs longer with random seeds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyReader, Server, parseAddress, parseRequestHead } from '@wmproxy/core-net';
import { RawClient, defineFuzzSuite, type ProxyUnderTest } from '@wmproxy/testkit/http-fuzz';
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

const suite = defineFuzzSuite(forward, 'forward proxy', 0xf0d0);

test('a POST the origin reads and then drops on a reused connection is answered 502, not sent again; a GET is retried once', async () => {
  // Found by the hostile-response fuzzer: the proxy retried any bodyless request on a fresh
  // connection when a reused one closed before answering, POST included (RFC 9110 section 9.2.2:
  // a proxy MUST NOT retry a non-idempotent request; the origin may have acted on it).
  const origin = suite.hostile();
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
