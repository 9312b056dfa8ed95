import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { testPki, type TestPki } from '@wmproxy/testkit';
import { Logger, Server, connect, parseAddress, setRuntime, NetError, bindUdp, type Conn } from '../src/index.js';
import { selfSigned, testRuntimes } from './helpers.js';

const { runtimes, detected } = await testRuntimes();

let dir = '';
let cert = '';
let key = '';
let otherCert = '';
let otherKey = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'wmproxy-tls-'));
  ({ cert, key } = selfSigned(dir, 'localhost', 'DNS:localhost,IP:127.0.0.1'));
  ({ cert: otherCert, key: otherKey } = selfSigned(dir, 'other.test', 'DNS:other.test,DNS:*.wild.test'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A TLS listener on a free port whose warnings (JSON lines) are kept in `lines`. */
async function loggingTlsServer(onConnection: (conn: Conn) => void): Promise<{ server: Server; port: number; lines: string[] }> {
  const lines: string[] = [];
  const server = await new Server({
    addresses: [parseAddress('127.0.0.1:0')],
    tls: { cert, key },
    logger: new Logger({ level: 'warn', json: true, sink: { write: (line: string) => lines.push(line) } }),
    onConnection,
  }).start();
  return { server, port: Number(server.boundAddresses[0]!.split(':').pop()), lines };
}

/** The cipher suite ids of a ClientHello record, in the client's order. */
function cipherSuites(record: Buffer): number[] {
  // Record header (5), handshake header (4), version (2), random (32), then the session id and the suites.
  let at = 5 + 4 + 2 + 32;
  at += 1 + record[at]!;
  const end = at + 2 + record.readUInt16BE(at);
  const ids: number[] = [];
  for (at += 2; at < end; at += 2) ids.push(record.readUInt16BE(at));
  return ids;
}

function readUntilClose(conn: Conn): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    conn.setHandler({ data: (_c, chunk) => (text += Buffer.from(chunk).toString()), end: (c) => c.end(), close: () => resolve(text) });
  });
}

for (const rt of runtimes) {
  describe(`TLS and UDP on the ${rt.name} runtime`, () => {
    after(() => setRuntime(detected));

    test('a TLS listener and a verifying TLS client talk, and the client sees SNI', async () => {
      setRuntime(rt);
      const server = await new Server({
        addresses: [parseAddress('127.0.0.1:0')],
        tls: { cert, key },
        onConnection(conn) {
          conn.setHandler({
            data(c, chunk) {
              c.write(Buffer.concat([Buffer.from('echo:'), Buffer.from(chunk)]));
              c.end();
            },
            close() {},
          });
        },
      }).start();
      const port = Number(server.boundAddresses[0]!.split(':').pop());
      const conn = await connect({ host: '127.0.0.1', port, tls: { servername: 'localhost', ca: cert } });
      const reply = readUntilClose(conn);
      conn.write(Buffer.from('hi'));
      assert.equal(await reply, 'echo:hi');
      await server.shutdown({ deadlineMs: 500 });
    });

    test('a TLS listener picks its certificate by SNI (exact and wildcard names)', async () => {
      setRuntime(rt);
      const server = await new Server({
        addresses: [parseAddress('127.0.0.1:0')],
        tls: { cert, key, sni: { 'other.test': { cert: otherCert, key: otherKey }, '*.wild.test': { cert: otherCert, key: otherKey } } },
        onConnection(conn) {
          conn.setHandler({ data() {}, end: (c) => c.end(), close() {} });
          conn.write(Buffer.from(conn.servername ?? 'none'));
          conn.end();
        },
      }).start();
      const port = Number(server.boundAddresses[0]!.split(':').pop());
      for (const [servername, ca] of [['localhost', cert], ['other.test', otherCert], ['a.wild.test', otherCert]] as const) {
        const conn = await connect({ host: '127.0.0.1', port, tls: { servername, ca } });
        assert.equal(await readUntilClose(conn), servername);
      }
      await server.shutdown({ deadlineMs: 500 });
    });

    test('a TLS client refuses an untrusted certificate unless verification is off', async () => {
      setRuntime(rt);
      const server = await new Server({
        addresses: [parseAddress('127.0.0.1:0')],
        tls: { cert, key },
        onConnection(conn) {
          conn.setHandler({ data() {}, end: (c) => c.end(), close() {} });
          conn.write(Buffer.from('hello'));
          conn.end();
        },
      }).start();
      const port = Number(server.boundAddresses[0]!.split(':').pop());
      await assert.rejects(connect({ host: '127.0.0.1', port, tls: { servername: 'localhost' }, timeoutMs: 2000 }), NetError);
      const conn = await connect({ host: '127.0.0.1', port, tls: { servername: 'localhost', rejectUnauthorized: false } });
      assert.equal(await readUntilClose(conn), 'hello');
      await server.shutdown({ deadlineMs: 500 });
    });

    test('a TLS listener with an ALPN list negotiates h2 or http/1.1, and both ends report the choice', async () => {
      setRuntime(rt);
      const seen: Array<string | undefined> = [];
      const server = await new Server({
        addresses: [parseAddress('127.0.0.1:0')],
        tls: { cert, key, alpn: ['h2', 'http/1.1'] },
        onConnection(conn) {
          conn.setHandler({
            data(c) {
              seen.push(c.alpnProtocol);
              c.write(new TextEncoder().encode(c.alpnProtocol ?? 'none'));
              c.end();
            },
            close() {},
          });
        },
      }).start();
      const port = Number(server.boundAddresses[0]!.split(':').pop());
      try {
        for (const [offer, expected] of [[['h2', 'http/1.1'], 'h2'], [['http/1.1'], 'http/1.1'], [undefined, 'none']] as const) {
          const conn = await connect({ host: '127.0.0.1', port, tls: { servername: 'localhost', ca: cert, ...(offer ? { alpn: [...offer] } : {}) } });
          assert.equal(conn.alpnProtocol, expected === 'none' ? undefined : expected);
          const reply = readUntilClose(conn);
          conn.write(new TextEncoder().encode('?'));
          assert.equal(await reply, expected);
        }
        assert.deepEqual(seen, ['h2', 'http/1.1', undefined]);
      } finally {
        await server.shutdown({ deadlineMs: 100 });
      }
    });

    test('TLS 1.3 prefers AES-128-GCM to AES-256-GCM: a listener picks it, a client offers it first', async () => {
      setRuntime(rt);
      // A client offering AES-256 first: node:tls servers choose in their own order, so ours must have AES-128 first.
      const server = await rt.listen({ host: '127.0.0.1', port: 0, tls: { cert, key }, onConnection: (conn) => conn.setHandler({ data() {}, close() {} }) });
      try {
        const name = await new Promise<string>((resolve, reject) => {
          const socket = tls.connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false, ciphers: 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256' }, () => {
            resolve(socket.getCipher().name);
            socket.destroy();
          });
          socket.once('error', reject);
        });
        // BoringSSL (Bun's listeners) orders TLS 1.3 suites itself: there only the handshake is checked.
        if (process.versions.bun === undefined) assert.equal(name, 'TLS_AES_128_GCM_SHA256');
        else assert.match(name, /^TLS_/);
      } finally {
        server.close();
      }
      // The client side, read off its ClientHello: 0x1301 (AES-128-GCM) listed before 0x1302 (AES-256-GCM).
      let offer: (ids: number[]) => void = () => {};
      const suites = new Promise<number[]>((resolve) => (offer = resolve));
      const raw = net.createServer((socket) => socket.once('data', (hello: Buffer) => (offer(cipherSuites(hello)), socket.destroy())));
      await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
      try {
        const port = (raw.address() as net.AddressInfo).port;
        const dialing = connect({ host: '127.0.0.1', port, tls: { servername: 'localhost', rejectUnauthorized: false }, timeoutMs: 2000 }).catch(() => undefined);
        const offered = await suites;
        await dialing;
        assert.ok(offered.includes(0x1301) && offered.indexOf(0x1301) < offered.indexOf(0x1302), offered.map((id) => id.toString(16)).join(','));
      } finally {
        raw.close();
      }
    });
  });
}

test('UDP endpoints exchange datagrams over IPv4 and IPv6', async () => {
  for (const host of ['127.0.0.1', '::1']) {
    const received: string[] = [];
    const echo = await bindUdp(host, 0, { message: (endpoint, data, fromHost, fromPort) => endpoint.send(data, fromPort, fromHost) });
    const reply = new Promise<string>((resolve) => {
      void bindUdp(host, 0, {
        message(endpoint, data) {
          received.push(Buffer.from(data).toString());
          endpoint.close();
          resolve(received[0]!);
        },
      }).then((client) => client.send(Buffer.from(`ping ${host}`), echo.port, host));
    });
    assert.equal(await reply, `ping ${host}`);
    echo.close();
  }
});

describe('mutual TLS', () => {
  let pki: TestPki;
  before(() => {
    pki = testPki();
  });
  after(() => pki.cleanup());

  for (const rt of runtimes) {
    test(`on ${rt.name}: a listener with clientCa serves a client with its certificate and refuses one without, logging why`, async () => {
      setRuntime(rt);
      const refused: string[] = [];
      const server = await new Server({
        addresses: [parseAddress('127.0.0.1:0')],
        tls: { cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca.cert },
        logger: new Logger({ level: 'warn', json: true, sink: { write: (line: string) => refused.push(line) } }),
        onConnection(conn) {
          conn.setHandler({
            data(c, chunk) {
              c.write(Buffer.concat([Buffer.from('echo:'), Buffer.from(chunk)]));
              c.end();
            },
            end: (c) => c.end(),
            close() {},
          });
        },
      }).start();
      try {
        const port = Number(server.boundAddresses[0]!.split(':').pop());
        const good = await connect({ host: '127.0.0.1', port, tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } });
        const reply = readUntilClose(good);
        good.write(Buffer.from('hi'));
        assert.equal(await reply, 'echo:hi');

        for (const identity of [undefined, pki.rogueClient]) {
          // TLS 1.3: the client's handshake completes before the server has judged its certificate; the refusal arrives as an alert instead of data.
          const before = refused.length;
          const conn = await connect({ host: '127.0.0.1', port, tls: { ca: pki.ca.cert, ...(identity ? { cert: identity.cert, key: identity.key } : {}) } }).catch(() => undefined);
          if (conn) {
            const text = readUntilClose(conn);
            conn.write(Buffer.from('hi'));
            assert.equal(await text, '');
          }
          for (let i = 0; i < 100 && refused.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 20));
          const record = JSON.parse(refused[before] ?? '{}') as { msg?: string; client?: string; error?: string };
          assert.equal(record.msg, 'tls handshake refused');
          assert.match(record.client ?? '', /^127\.0\.0\.1:\d+$/);
          assert.match(record.error ?? '', /^TLS handshake with 127\.0\.0\.1:\d+ failed: /);
        }
      } finally {
        await server.shutdown({ deadlineMs: 500 });
      }
    });

    test(`on ${rt.name}: a TLS connection its owner closes at once logs no refused handshake, and the client reads a close during the handshake, not a verification failure`, async () => {
      setRuntime(rt);
      // What a penalty or a handshake cap does: close the connection as it is handed over (before TLS on Bun).
      const { server, port, lines } = await loggingTlsServer((conn) => conn.destroy());
      try {
        for (let i = 0; i < 5; i++) {
          const error = await connect({ host: '127.0.0.1', port, tls: { servername: 'localhost', verifyPeer: () => undefined, rejectUnauthorized: false } }).then(
            // Node's listener finishes TLS before handing the connection over: its client connects, then reads the close.
            async (conn) => (await readUntilClose(conn), undefined),
            (caught: NetError) => caught,
          );
          if (rt.name === 'bun') assert.ok(error, 'a Bun listener hands the connection over before TLS: the client never connects');
          if (error) {
            assert.equal(error.code, 'ECONNRESET', error.message);
            assert.doesNotMatch(error.message, /verification|no certificate/);
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
        assert.deepEqual(lines.filter((line) => line.includes('handshake refused')), []);
      } finally {
        await server.shutdown({ deadlineMs: 500 });
      }
    });

    test(`on ${rt.name}: a flood of refused TLS handshakes is a few log lines, then the count of those not logged`, async () => {
      setRuntime(rt);
      const { server, port, lines } = await loggingTlsServer((conn) => conn.setHandler({ data() {}, close() {} }));
      try {
        // Plain text where a ClientHello belongs: each one a refused handshake.
        for (let i = 0; i < 60; i++) {
          await new Promise<void>((resolve) => {
            const socket = net.connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
            socket.on('error', () => {});
            socket.on('close', () => resolve());
            socket.setTimeout(2000, () => socket.destroy());
          });
        }
        let refused: Array<{ notLogged?: number }> = [];
        for (let i = 0; i < 50; i++) {
          refused = lines.filter((line) => line.includes('handshake refused')).map((line) => JSON.parse(line) as { notLogged?: number });
          if (refused.length >= 20) break;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.equal(refused.length, 20, `${refused.length} lines for 60 refused handshakes`);
      } finally {
        await server.shutdown({ deadlineMs: 500 });
      }
    });
  }
});
