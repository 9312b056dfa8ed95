import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Server, connect, parseAddress, setRuntime, createSelfSignedCertificate, certificateFingerprint, type Conn, type TlsClientOptions, type TlsSession } from '../src/index.js';
import { testRuntimes } from './helpers.js';

const { runtimes, detected } = await testRuntimes();
const pair = createSelfSignedCertificate({});
const other = createSelfSignedCertificate({});

/** Pinned to `cert`'s fingerprint, as the tunnel client pins its server. */
function pinned(cert: string, session?: TlsSession): TlsClientOptions {
  const want = certificateFingerprint(cert);
  return {
    rejectUnauthorized: false,
    keepSession: true,
    session,
    verifyPeer: (der) => (certificateFingerprint(der) === want ? undefined : 'not the pinned certificate'),
  };
}

async function echo(cert: string, key: string): Promise<Server> {
  return new Server({
    addresses: [parseAddress('127.0.0.1:0')],
    tls: { cert, key },
    onConnection(conn) {
      conn.setHandler({ data: (c, chunk) => c.write(chunk), end: (c) => c.end(), close() {} });
    },
  }).start();
}

function portOf(server: Server): number {
  return Number(server.boundAddresses[0]!.split(':').pop());
}

/** One byte there and back: a TLS 1.3 ticket comes after the handshake (a Bun server's with its first write). */
async function ping(conn: Conn): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    conn.setHandler({ data: () => resolve(), close: (_c, error) => reject(error ?? new Error('closed')) });
    conn.write(Buffer.from('x'));
  });
}

/** The session the server issued (Bun reads it from the socket when asked: it may lag the echo a moment). */
async function sessionOf(conn: Conn): Promise<TlsSession | undefined> {
  for (let i = 0; i < 50 && conn.tlsSession === undefined; i++) await new Promise((r) => setTimeout(r, 10));
  return conn.tlsSession;
}

/** A first connection's session resumes on a second, whose pin is still checked (against the session's certificate). */
async function resumesWithPin(port: number): Promise<void> {
  const first = await connect({ host: '127.0.0.1', port, tls: pinned(pair.cert) });
  await ping(first);
  assert.equal(first.tlsResumed, false);
  const session = await sessionOf(first);
  first.destroy();
  assert.ok(session, 'the server issued a ticket');
  assert.equal(certificateFingerprint(session.certificate!), certificateFingerprint(pair.cert));
  const second = await connect({ host: '127.0.0.1', port, tls: pinned(pair.cert, session) });
  await ping(second);
  assert.equal(second.tlsResumed, true);
  second.destroy();
  await assert.rejects(connect({ host: '127.0.0.1', port, tls: pinned(other.cert, session) }), /pinned/);
}

for (const rt of runtimes) {
  describe(`TLS session resumption, ${rt.name} runtime`, () => {
    after(() => setRuntime(detected));

    test('a second connection offering the first one\'s session resumes it, and its pin still holds', async () => {
      setRuntime(rt);
      const server = await echo(pair.cert, pair.key);
      try {
        await resumesWithPin(portOf(server));
      } finally {
        await server.shutdown({ deadlineMs: 100 });
      }
    });

    test('a CA-verified client (not pinned) resumes too; a session is not offered for another name (refused: the certificate lacks it), another CA list or another client certificate', async () => {
      setRuntime(rt);
      const server = await echo(pair.cert, pair.key);
      try {
        const port = portOf(server);
        const verified = (session?: TlsSession, servername = 'localhost'): TlsClientOptions => ({ ca: pair.cert, servername, keepSession: true, session });
        const first = await connect({ host: '127.0.0.1', port, tls: verified() });
        await ping(first);
        const session = await sessionOf(first);
        first.destroy();
        assert.ok(session);
        const second = await connect({ host: '127.0.0.1', port, tls: verified(session) });
        await ping(second);
        assert.equal(second.tlsResumed, true);
        second.destroy();
        // Not offered where the first connection's checks would not hold: another name (a resumed handshake skips the name check), another CA list.
        await assert.rejects(connect({ host: '127.0.0.1', port, tls: verified(session, 'other.test') }));
        const otherCa = await connect({ host: '127.0.0.1', port, tls: { ca: [pair.cert], servername: 'localhost', session } });
        await ping(otherCa);
        assert.equal(otherCa.tlsResumed, false);
        otherCa.destroy();
        // Nor with another client certificate: a server would take the resumed client for the first one.
        const otherClient = await connect({ host: '127.0.0.1', port, tls: { ...verified(session), cert: other.cert, key: other.key } });
        await ping(otherClient);
        assert.equal(otherClient.tlsResumed, false);
        otherClient.destroy();
      } finally {
        await server.shutdown({ deadlineMs: 100 });
      }
    });

    test('a session offered to another server (new ticket keys) is a full handshake: the pin refuses a wrong certificate, a right one connects', async () => {
      setRuntime(rt);
      const first = await echo(pair.cert, pair.key);
      let session: TlsSession | undefined;
      try {
        const conn = await connect({ host: '127.0.0.1', port: portOf(first), tls: pinned(pair.cert) });
        await ping(conn);
        session = await sessionOf(conn);
        conn.destroy();
      } finally {
        await first.shutdown({ deadlineMs: 100 });
      }
      assert.ok(session);
      const impostor = await echo(other.cert, other.key);
      try {
        await assert.rejects(connect({ host: '127.0.0.1', port: portOf(impostor), tls: pinned(pair.cert, session) }), /pinned/);
      } finally {
        await impostor.shutdown({ deadlineMs: 100 });
      }
      const restarted = await echo(pair.cert, pair.key);
      try {
        const conn = await connect({ host: '127.0.0.1', port: portOf(restarted), tls: pinned(pair.cert, session) });
        await ping(conn);
        assert.equal(conn.tlsResumed, false);
        conn.destroy();
      } finally {
        await restarted.shutdown({ deadlineMs: 100 });
      }
    });
  });
}

// A Bun client of a Node server (a tunnel client on Bun, its server on Node): Bun offers the session, the Node server resumes.
test('a Bun client resumes with a Node server', { skip: process.versions.bun === undefined ? 'runs on Bun' : undefined }, async () => {
  setRuntime(detected);
  const script = `const tls = require('node:tls');
const server = tls.createServer({ cert: process.env.CERT, key: process.env.KEY }, (s) => { s.on('data', (d) => s.write(d)); s.on('end', () => s.end()); s.on('error', () => {}); });
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
process.stdin.on('end', () => process.exit(0)); process.stdin.resume();`;
  const child: ChildProcess = spawn('node', ['-e', script], { env: { ...process.env, CERT: pair.cert, KEY: pair.key }, stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const port = Number(line.toString().trim());
    await resumesWithPin(port);
  } finally {
    child.stdin!.end();
    child.kill();
  }
});
