// In-process self-signed certificates: openssl parses them, TLS listeners
// serve them on both runtimes, clients pin them by fingerprint (verifyPeer),
// and mutual TLS refuses a client without a certificate.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { derPositiveInteger } from '../src/tls/self-signed.js';
import {
  Server,
  connect,
  parseAddress,
  nodeRuntime,
  runtimeReady,
  setRuntime,
  NetError,
  createSelfSignedCertificate,
  certificateFingerprint,
  normaliseFingerprint,
  type Conn,
  type Runtime,
} from '../src/index.js';

const runtimes: Runtime[] = [nodeRuntime];
const detected = await runtimeReady();
if (detected.name === 'bun') runtimes.unshift(detected);

const server = createSelfSignedCertificate({ altNames: ['localhost', '127.0.0.1', '::1'] });
const stranger = createSelfSignedCertificate({ altNames: ['localhost'] });

test('openssl parses the certificate: version 3, ECDSA P-256, the alt names, and the same SHA-256 fingerprint', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-selfsigned-'));
  try {
    writeFileSync(join(dir, 'cert.pem'), server.cert);
    const text = execFileSync('openssl', ['x509', '-in', join(dir, 'cert.pem'), '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, /Version: 3/);
    assert.match(text, /ecdsa-with-SHA256/);
    assert.match(text, /P-256/);
    assert.match(text, /DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
    const finger = execFileSync('openssl', ['x509', '-in', join(dir, 'cert.pem'), '-noout', '-fingerprint', '-sha256'], { encoding: 'utf8' });
    const hex = finger.trim().split('=')[1]!;
    assert.equal(normaliseFingerprint(hex), server.fingerprint);
    assert.equal(certificateFingerprint(server.cert), server.fingerprint);
    assert.equal(normaliseFingerprint(server.fingerprint), server.fingerprint);
    assert.throws(() => normaliseFingerprint('SHA256:nope'), RangeError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function readUntilClose(conn: Conn): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    conn.setHandler({ data: (_c, chunk) => (text += Buffer.from(chunk).toString()), end: (c) => c.end(), close: () => resolve(text) });
  });
}

async function hello(tls: { cert: string; key: string; clientCa?: string }): Promise<{ port: number; stop(): Promise<void> }> {
  const srv = await new Server({
    addresses: [parseAddress('127.0.0.1:0')],
    tls,
    onConnection(conn) {
      conn.setHandler({ data() {}, end: (c) => c.end(), close() {} });
      conn.write(Buffer.from('hello'));
      conn.end();
    },
  }).start();
  return { port: Number(srv.boundAddresses[0]!.split(':').pop()), stop: async () => void (await srv.shutdown({ deadlineMs: 200 })) };
}

const pin = (fingerprint: string) => (der: Uint8Array) =>
  certificateFingerprint(der) === fingerprint ? undefined : `certificate fingerprint ${certificateFingerprint(der)} is not the pinned ${fingerprint}`;

for (const rt of runtimes) {
  describe(`self-signed TLS on the ${rt.name} runtime`, () => {
    after(() => setRuntime(detected));

    test('a client trusts the certificate as its CA, or pins its fingerprint; a wrong pin fails with EPROTO', async () => {
      setRuntime(rt);
      const srv = await hello(server);
      try {
        assert.equal(await readUntilClose(await connect({ host: '127.0.0.1', port: srv.port, tls: { ca: server.cert } })), 'hello');
        const pinned = await connect({ host: '127.0.0.1', port: srv.port, tls: { rejectUnauthorized: false, verifyPeer: pin(server.fingerprint) } });
        assert.equal(await readUntilClose(pinned), 'hello');
        await assert.rejects(
          connect({ host: '127.0.0.1', port: srv.port, tls: { rejectUnauthorized: false, verifyPeer: pin(stranger.fingerprint) }, timeoutMs: 2000 }),
          (error: NetError) => error.code === 'EPROTO' && /is not the pinned/.test(error.message),
        );
      } finally {
        await srv.stop();
      }
    });

    test('mutual TLS: a client with a certificate from the CA gets in; one without is refused', async () => {
      setRuntime(rt);
      const client = createSelfSignedCertificate({ commonName: 'tunnel-client', altNames: ['tunnel-client'] });
      const srv = await hello({ ...server, clientCa: client.cert });
      try {
        const ok = await connect({ host: '127.0.0.1', port: srv.port, tls: { ca: server.cert, cert: client.cert, key: client.key } });
        assert.equal(await readUntilClose(ok), 'hello');
        let refused = false;
        try {
          const conn = await connect({ host: '127.0.0.1', port: srv.port, tls: { ca: server.cert }, timeoutMs: 2000 });
          // TLS 1.3: the refusal may arrive after the handshake, as a close without data.
          refused = (await readUntilClose(conn)) === '';
        } catch (error) {
          refused = error instanceof NetError;
        }
        assert.ok(refused, 'a client without a certificate was served');
      } finally {
        await srv.stop();
      }
    });
  });
}

test('certificate integers are minimal, positive DER for any bytes (a serial starting 0x00 0x7f.. once made 1 in 256 certificates unreadable: "illegal padding", "Invalid CA")', () => {
  fc.assert(
    // Leading zero bytes are what went wrong: half the inputs start with one to three of them.
    fc.property(
      fc.oneof(
        fc.uint8Array({ minLength: 1, maxLength: 20 }),
        fc.tuple(fc.integer({ min: 1, max: 3 }), fc.uint8Array({ maxLength: 17 })).map(([zeros, rest]) => Uint8Array.from([...new Array<number>(zeros).fill(0), ...rest])),
      ),
      (bytes) => {
      const der = derPositiveInteger(bytes);
      assert.equal(der[0], 0x02);
      const body = der.subarray(2);
      assert.equal(der[1], body.length);
      if (body.length > 1) assert.ok(!(body[0] === 0 && body[1]! < 0x80), 'no needless leading zero');
      assert.equal(body[0]! & 0x80, 0, 'positive');
      assert.equal(BigInt('0x' + Buffer.from(body).toString('hex')), BigInt('0x' + (Buffer.from(bytes).toString('hex') || '0')), 'the same value');
      },
    ),
  );
  assert.deepEqual([...derPositiveInteger(Uint8Array.of(0, 0, 0))], [0x02, 0x01, 0x00], 'zero is one 0 byte');
  const zeroLed = Uint8Array.of(0x00, 0x12, 0x34);
  assert.deepEqual([...derPositiveInteger(zeroLed)], [0x02, 0x02, 0x12, 0x34]);
});
