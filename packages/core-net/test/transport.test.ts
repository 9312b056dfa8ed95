import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  connPair,
  relay,
  socketTransport,
  tcpTransport,
  tlsTransport,
  transportMap,
  NetError,
  Server,
  parseAddress,
  type Conn,
  type ConnHandler,
  type Transport,
} from '../src/index.js';
import { echoServer, closedPort } from './helpers.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Collects what one end receives, with optional pausing from inside `data`. */
function collector(conn: Conn, onData?: (conn: Conn, total: number) => void) {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const state = { ended: false, closed: false, error: undefined as Error | undefined, drains: 0 };
  const handler: ConnHandler = {
    data(c, chunk) {
      chunks.push(chunk);
      total += chunk.byteLength;
      onData?.(c, total);
    },
    drain() {
      state.drains++;
    },
    end() {
      state.ended = true;
    },
    close(_c, error) {
      state.closed = true;
      state.error = error;
    },
  };
  conn.setHandler(handler);
  return { state, bytes: () => Buffer.concat(chunks), total: () => total };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('socket transports', () => {
  test('tcp connects to host:port, and the bytes flow', async () => {
    const echo = await echoServer();
    try {
      const conn = await tcpTransport.connect({ host: '127.0.0.1', port: echo.port }, 2000);
      const got = collector(conn);
      conn.write(Buffer.from('ping'));
      while (got.total() < 4) await tick();
      assert.equal(got.bytes().toString(), 'ping');
      assert.equal(tcpTransport.kind, 'tcp');
      conn.destroy();
    } finally {
      await echo.close();
    }
  });

  test('a refused connect rejects with a NetError', async () => {
    const port = await closedPort();
    await assert.rejects(tcpTransport.connect({ host: '127.0.0.1', port }, 2000), (error: unknown) => error instanceof NetError && error.code === 'ECONNREFUSED');
  });

  test('tls is a second kind: it verifies the peer unless told not to', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wmproxy-transport-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
    const server = await new Server({
      addresses: [parseAddress('127.0.0.1:0')],
      tls: { cert: readFileSync(join(dir, 'c.pem')), key: readFileSync(join(dir, 'k.pem')) },
      onConnection(conn) {
        conn.setHandler({ data() {}, end: (c) => c.end(), close() {} });
        conn.write(Buffer.from('over tls'));
        conn.end();
      },
    }).start();
    const port = Number(server.boundAddresses[0]!.split(':').pop());
    try {
      assert.equal(tlsTransport.kind, 'tls');
      await assert.rejects(tlsTransport.connect({ host: '127.0.0.1', port, servername: 'localhost' }, 2000), NetError);
      const conn = await tlsTransport.connect({ host: '127.0.0.1', port, servername: 'localhost', tlsVerify: false }, 2000);
      const got = collector(conn);
      while (!got.state.ended) await tick();
      conn.destroy();
      assert.equal(got.bytes().toString(), 'over tls');
    } finally {
      await server.shutdown({ deadlineMs: 500 });
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the resolver plugs into both socket transports; extra kinds are added by name', async () => {
    const echo = await echoServer();
    const asked: string[] = [];
    const resolver = async (host: string) => {
      asked.push(host);
      return ['127.0.0.1'];
    };
    const memory: Transport = { kind: 'memory', connect: async () => connPair()[0] };
    const map = transportMap({ memory }, resolver);
    try {
      const conn = await map.tcp!.connect({ host: 'backend.invalid', port: echo.port }, 2000);
      conn.destroy();
      assert.deepEqual(asked, ['backend.invalid']);
      assert.equal(map.memory, memory);
      assert.equal(map.tls!.kind, 'tls');
      assert.equal(socketTransport({ tls: false }).kind, 'tcp');
    } finally {
      await echo.close();
    }
  });
});

describe('connPair', () => {
  test('delivers bytes exactly and in order both ways under random chunking and pausing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 5000 }), { maxLength: 40 }),
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 5000 }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 20_000 }),
        async (forward, backward, pauseEvery) => {
          const [a, b] = connPair(8 * 1024);
          const atB = collector(b, (conn, total) => {
            // Pause now and then, resumed on the next turn: the writer must queue, not drop.
            if (total % pauseEvery < 100) {
              conn.pause();
              setImmediate(() => conn.resume());
            }
          });
          const atA = collector(a);
          for (const chunk of forward) a.write(chunk);
          for (const chunk of backward) b.write(chunk);
          a.end();
          b.end();
          while (!(atA.state.closed && atB.state.closed)) await tick();
          assert.deepEqual(atB.bytes(), Buffer.concat(forward));
          assert.deepEqual(atA.bytes(), Buffer.concat(backward));
          assert.ok(atA.state.ended && atB.state.ended);
          assert.equal(atA.state.error, undefined);
        },
      ),
      { numRuns: 60 },
    );
  });

  test('write returns false above the high-water mark while the reader is paused, and drain follows resume', async () => {
    const [a, b] = connPair(1024);
    const reader = collector(b);
    const writer = collector(a);
    b.pause();
    assert.equal(a.write(new Uint8Array(600)), true);
    assert.equal(a.write(new Uint8Array(600)), false);
    await tick();
    assert.equal(reader.total(), 0, 'nothing is delivered to a paused reader');
    b.resume();
    await tick();
    assert.equal(reader.total(), 1200);
    assert.equal(writer.state.drains, 1);
  });

  test('destroy with an error resets the peer; a relay over a pair carries a whole exchange', async () => {
    const [a, b] = connPair();
    const peer = collector(b);
    a.destroy(new Error('boom'));
    while (!peer.state.closed) await tick();
    assert.ok(peer.state.error instanceof NetError);
    assert.equal((peer.state.error as NetError).code, 'ECONNRESET');

    const [client, clientSide] = connPair();
    const [upstreamSide, upstream] = connPair();
    const done = relay(clientSide, upstreamSide, { idleTimeoutMs: 5000 });
    const atUpstream = collector(upstream);
    const atClient = collector(client);
    client.write(Buffer.from('hello '));
    client.write(Buffer.from('world'));
    client.end();
    while (!atUpstream.state.ended) await tick();
    upstream.write(Buffer.from('bye'));
    upstream.end();
    const stats = await done;
    while (!atClient.state.closed) await tick();
    assert.equal(atUpstream.bytes().toString(), 'hello world');
    assert.equal(atClient.bytes().toString(), 'bye');
    assert.equal(stats.bytesUp, 11);
    assert.equal(stats.bytesDown, 3);
  });
});
