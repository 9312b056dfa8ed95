// Certificates chosen at handshake time (`select`, ACME hot swap), ACME
// TLS-ALPN-01 answered by SNI + ALPN ahead of the TLS server, and the
// ClientHello reader behind it.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { Server, connect, parseAddress, nodeRuntime, runtimeReady, setRuntime, createSelfSignedCertificate, parseClientHello, type Runtime, type TlsKeyPair } from '../src/index.js';

const runtimes: Runtime[] = [nodeRuntime];
const detected = await runtimeReady();
if (detected.name === 'bun') runtimes.unshift(detected);

const fallback = createSelfSignedCertificate({ altNames: ['fallback.test'] });
const first = createSelfSignedCertificate({ altNames: ['site.test'] });
const second = createSelfSignedCertificate({ altNames: ['site.test'] });
const digest = createHash('sha256').update('token.thumbprint').digest();
const challenge = createSelfSignedCertificate({ altNames: ['site.test'], acmeIdentifier: digest });

function echoServer(tlsOptions: ConstructorParameters<typeof Server>[0]['tls']): Promise<Server> {
  return new Server({
    addresses: [parseAddress('127.0.0.1:0')],
    tls: tlsOptions,
    onConnection(conn) {
      conn.setHandler({ data: (c, chunk) => { c.write(chunk); c.end(); }, end: (c) => c.end(), close() {} });
    },
  }).start();
}
const portOf = (server: Server): number => Number(server.boundAddresses[0]!.split(':').pop());

/** Handshake with node:tls and report the leaf certificate and the ALPN protocol chosen. */
function peek(port: number, servername: string, alpn?: string[]): Promise<{ fingerprint: string; protocol: string | false }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: alpn });
    socket.once('secureConnect', () => {
      const result = { fingerprint: socket.getPeerX509Certificate()!.fingerprint256, protocol: socket.alpnProtocol ?? false };
      socket.destroy();
      resolve(result);
    });
    socket.once('error', reject);
  });
}
const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

test('a challenge certificate carries the critical acmeIdentifier extension with the key authorization digest', () => {
  const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: challenge.cert, encoding: 'utf8' });
  assert.match(text, /1\.3\.6\.1\.5\.5\.7\.1\.31: critical/);
  assert.match(text, /DNS:site\.test/);
  const der = Buffer.from(new X509Certificate(challenge.cert).raw);
  // OCTET STRING (32) inside the extension's OCTET STRING.
  assert.ok(der.includes(Buffer.concat([Buffer.from([0x04, 0x22, 0x04, 0x20]), digest])));
});

for (const rt of runtimes) {
  describe(`certificates chosen at handshake time on the ${rt.name} runtime`, () => {
    after(() => setRuntime(detected));

    test('select() swaps the certificate for new handshakes without reopening the listener', async () => {
      setRuntime(rt);
      let current: TlsKeyPair | undefined = first;
      const names: string[] = [];
      const server = await echoServer({ cert: fallback.cert, key: fallback.key, select: (name) => (names.push(name), current) });
      const port = portOf(server);
      assert.equal((await peek(port, 'site.test')).fingerprint, fingerprint(first.cert));
      current = second;
      assert.equal((await peek(port, 'site.test')).fingerprint, fingerprint(second.cert));
      // A verifying core-net client trusts only the new one now, and data flows.
      const conn = await connect({ host: '127.0.0.1', port, tls: { servername: 'site.test', ca: second.cert } });
      const echoed = new Promise<string>((resolve) => conn.setHandler({ data: (_c, chunk) => resolve(Buffer.from(chunk).toString()), close() {} }));
      conn.write(Buffer.from('ping'));
      assert.equal(await echoed, 'ping');
      conn.destroy();
      current = undefined;
      assert.equal((await peek(port, 'site.test')).fingerprint, fingerprint(fallback.cert));
      assert.ok(names.every((name) => name === 'site.test'));
      await server.shutdown({ deadlineMs: 500 });
    });

    test('acme-tls/1 for a name with a pending challenge gets the challenge certificate; other clients the real one', async () => {
      setRuntime(rt);
      const pending = new Map<string, TlsKeyPair>([['site.test', challenge]]);
      const server = await echoServer({ cert: fallback.cert, key: fallback.key, select: () => first, acmeTlsAlpn: (name) => pending.get(name) });
      const port = portOf(server);
      const validation = await peek(port, 'site.test', ['acme-tls/1']);
      assert.equal(validation.fingerprint, fingerprint(challenge.cert));
      assert.equal(validation.protocol, 'acme-tls/1');
      // Browsers (h2/http1.1 or no ALPN) keep getting the real certificate during validation.
      assert.equal((await peek(port, 'site.test', ['h2', 'http/1.1'])).fingerprint, fingerprint(first.cert));
      assert.equal((await peek(port, 'site.test')).fingerprint, fingerprint(first.cert));
      // No challenge for this name: the usual certificate.
      assert.equal((await peek(port, 'other.test', ['acme-tls/1'])).fingerprint, fingerprint(first.cert));
      const conn = await connect({ host: '127.0.0.1', port, tls: { servername: 'site.test', ca: first.cert } });
      const echoed = new Promise<string>((resolve) => conn.setHandler({ data: (_c, chunk) => resolve(Buffer.from(chunk).toString()), close() {} }));
      conn.write(Buffer.from('through'));
      assert.equal(await echoed, 'through');
      conn.destroy();
      pending.clear();
      assert.equal((await peek(port, 'site.test', ['acme-tls/1'])).fingerprint, fingerprint(first.cert));
      await server.shutdown({ deadlineMs: 500 });
    });

    test('a listener answering ACME survives garbage and a silent client before any TLS', async () => {
      setRuntime(rt);
      const server = await echoServer({ cert: fallback.cert, key: fallback.key, acmeTlsAlpn: () => challenge });
      const port = portOf(server);
      await new Promise<void>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\n\r\n'));
        socket.on('error', () => undefined);
        socket.on('close', () => resolve());
      });
      assert.equal((await peek(port, 'site.test', ['acme-tls/1'])).protocol, 'acme-tls/1');
      await server.shutdown({ deadlineMs: 500 });
    });
  });
}

/** A ClientHello as node:tls sends it. */
async function capturedHello(servername: string, alpn: string[] | undefined): Promise<Buffer> {
  const server = net.createServer();
  const captured = new Promise<Buffer>((resolve) => server.once('connection', (socket) => socket.once('data', (chunk: Buffer) => { resolve(chunk); socket.destroy(); })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername, ALPNProtocols: alpn });
  client.on('error', () => undefined);
  const hello = await captured;
  client.destroy();
  server.close();
  return hello;
}

test('parseClientHello reads SNI and ALPN from a real ClientHello, and waits for the rest of a cut one', async () => {
  const hello = await capturedHello('Site.Test', ['acme-tls/1']);
  assert.deepEqual(parseClientHello(hello), { servername: 'site.test', alpn: ['acme-tls/1'] });
  assert.deepEqual(parseClientHello(await capturedHello('a.test', ['h2', 'http/1.1'])), { servername: 'a.test', alpn: ['h2', 'http/1.1'] });
  for (const cut of [0, 3, 5, 40, hello.byteLength - 1]) assert.equal(parseClientHello(hello.subarray(0, cut)), 'incomplete');
  assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')), 'other');
});

test('parseClientHello never throws and never reads past a length (fuzzed real hellos and random bytes)', async () => {
  const hello = await capturedHello('fuzz.test', ['acme-tls/1']);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: hello.byteLength - 1 }), fc.integer({ min: 0, max: 255 }), (random, at, value) => {
      const result = parseClientHello(random);
      assert.ok(result === 'incomplete' || result === 'other' || typeof result === 'object');
      const mutated = Buffer.from(hello);
      mutated[at] = value;
      const parsed = parseClientHello(mutated);
      if (typeof parsed === 'object') for (const protocol of parsed.alpn) assert.ok(protocol.length > 0);
    }),
    { numRuns: 2000 },
  );
});
