// Per-source penalties on failed logins (core-net SourcePenalties): a source
// guessing tokens is shut out at accept, before TLS; and one slot per
// unauthenticated connection from accept, TLS phase included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { Logger, createSelfSignedCertificate } from '@wmproxy/core-net';
import { DATA_CONNECTION_FLAG, FrameType, TunnelClient, TunnelServer, encodeFrame, helloPayload, type TunnelServerOptions } from '../src/index.js';
import { until } from './helpers.js';

const pair = createSelfSignedCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'] });

/**
 * One login attempt from `localAddress` with a wrong proof: HELLO then AUTH at
 * once (the AUTH waits for the server to read it). `answered`: the server sent
 * anything (its CHALLENGE, over TLS its handshake first); a penalized source is
 * closed without a byte.
 */
function wrongLogin(port: number, options: { localAddress: string; tls: boolean; session?: string }): Promise<{ answered: boolean }> {
  return new Promise((resolve) => {
    const socket = options.tls
      ? tls.connect({ host: '127.0.0.1', port, localAddress: options.localAddress, rejectUnauthorized: false })
      : net.connect({ host: '127.0.0.1', port, localAddress: options.localAddress });
    let answered = false;
    socket.on(options.tls ? 'secureConnect' : 'connect', () => {
      const data = options.session !== undefined;
      const hello = helloPayload(randomBytes(32), Buffer.from(options.session ?? 'guesser'));
      socket.write(Buffer.concat([encodeFrame(FrameType.HELLO, data ? DATA_CONNECTION_FLAG : 0, 0, hello), encodeFrame(FrameType.AUTH, 0, 0, randomBytes(32))]));
    });
    // Over TLS the session is established only if the server answered the handshake.
    if (options.tls) socket.on('secureConnect', () => (answered = true));
    socket.on('data', () => (answered = true));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ answered }));
  });
}

async function server(options: Partial<TunnelServerOptions> & { logger?: Logger }): Promise<TunnelServer> {
  return new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', handshakeTimeoutMs: 60_000, ...options }).start();
}

function collect(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ level: 'info', sink: { write: (line) => void lines.push(line) } }), lines };
}

test('a source that fails its login is penalized: its next connection is closed at accept, before TLS; one log line; another address still logs in', async () => {
  const { logger, lines } = collect();
  const tunnel = await server({ tls: { cert: pair.cert, key: pair.key }, authPenalty: { allowance: 1, firstMs: 60_000 }, logger });
  const client = new TunnelClient({ server: `127.0.0.1:${tunnel.port}`, token: 'secret', tls: { fingerprint: tunnel.fingerprint! }, backoffInitialMs: 50, mappings: [] });
  try {
    assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: true })).answered, true, 'the first failure is within the allowance');
    assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: true })).answered, true, 'the second is answered, and starts the penalty');
    await until(() => tunnel.penalties.penalized() === 1, 'penalized');
    for (let i = 0; i < 3; i++) assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: true })).answered, false, 'closed without a TLS handshake');
    const penalized = lines.filter((line) => line.includes('tunnel auth penalty: source penalized'));
    assert.equal(penalized.length, 1, lines.join(''));
    assert.match(penalized[0]!, /client=127\.0\.0\.2 .*failures=2 seconds=60/);
    assert.deepEqual(tunnel.guardStats(), { pendingHandshakes: 0, handshakesRefused: 0, penalizedSources: 1, penaltyRefused: 3, penalties: 1 });
    // 127.0.0.1 is another source: a genuine client gets in.
    client.start();
    await client.ready();
    assert.equal(tunnel.clients().length, 1);
    await until(() => tunnel.clients()[0]!.idleDataConnections === 4, 'its data connections (same source) too');
    assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: true })).answered, false, 'a success of another source lifts no penalty');
  } finally {
    await client.stop();
    await tunnel.stop({ deadlineMs: 0 });
  }
});

test('a penalty ends: the source is let in again (and its next failure is penalized at once)', async () => {
  const tunnel = await server({ tls: false, authPenalty: { allowance: 0, firstMs: 100, maxMs: 60_000 } });
  try {
    assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: false })).answered, true);
    assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: false })).answered, false, 'penalized');
    // Polled: no timing asserted, only that it ends (the test's own timeout bounds the wait).
    let answered = false;
    while (!answered) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      answered = (await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: false })).answered;
    }
    assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: false })).answered, false, 'that failure was penalized again');
  } finally {
    await tunnel.stop({ deadlineMs: 0 });
  }
});

test('a wrong MAC on a data connection counts as a failed login', async () => {
  const tunnel = await server({ tls: false, dataPool: 1, authPenalty: { allowance: 0, firstMs: 60_000 } });
  const client = new TunnelClient({ server: `127.0.0.1:${tunnel.port}`, token: 'secret', tls: false, mappings: [] });
  try {
    client.start();
    await client.ready();
    const session = tunnel.clients()[0]!.id;
    // The real session id, a wrong proof: the server sends its CHALLENGE, then refuses.
    assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: false, session })).answered, true);
    assert.equal(tunnel.penalties.penalized(), 1);
    assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: false, session })).answered, false, 'closed at accept');
    assert.equal(tunnel.clients().length, 1, 'the genuine session (another source) is untouched');
  } finally {
    await client.stop();
    await tunnel.stop({ deadlineMs: 0 });
  }
});

test('an exempt source is never penalized (another is); with penalties off nobody is', async () => {
  for (const authPenalty of [{ allowance: 0, exempt: ['127.0.0.2/32'] }, { enabled: false, allowance: 0 }]) {
    const tunnel = await server({ tls: false, authPenalty });
    try {
      for (let i = 0; i < 4; i++) assert.equal((await wrongLogin(tunnel.port, { localAddress: '127.0.0.2', tls: false })).answered, true, `${JSON.stringify(authPenalty)}: attempt ${i + 1} answered`);
      assert.equal(tunnel.penalties.sources, 0);
      const other = [await wrongLogin(tunnel.port, { localAddress: '127.0.0.3', tls: false }), await wrongLogin(tunnel.port, { localAddress: '127.0.0.3', tls: false })];
      assert.deepEqual(other.map((attempt) => attempt.answered), authPenalty.enabled === false ? [true, true] : [true, false], 'a source not exempt');
    } finally {
      await tunnel.stop({ deadlineMs: 0 });
    }
  }
});

test('at most maxHandshakes unauthenticated connections are held in all, on a TLS port too (Node: the TLS phase and the tunnel handshake share one count)', async () => {
  const tunnel = await server({ tls: { cert: pair.cert, key: pair.key }, maxHandshakes: 2, maxHandshakesPerIp: 0 });
  const sockets: net.Socket[] = [];
  try {
    // Two past TLS, waiting in the tunnel handshake.
    for (let i = 0; i < 2; i++) {
      const socket = tls.connect({ host: '127.0.0.1', port: tunnel.port, rejectUnauthorized: false }).on('error', () => undefined);
      sockets.push(socket);
      await new Promise((resolve) => socket.once('secureConnect', resolve));
    }
    await until(() => tunnel.pendingHandshakes === 2, 'two in the tunnel handshake');
    // A third that never starts TLS: no slot left, closed at once (before, node:tls's own count of the TLS phase let it wait there).
    const third = net.connect({ host: '127.0.0.1', port: tunnel.port });
    sockets.push(third);
    let closed = false;
    third.on('error', () => undefined).on('close', () => (closed = true));
    await until(() => closed, 'the third closed');
    assert.equal(tunnel.guardStats().handshakesRefused, 1);
  } finally {
    for (const socket of sockets) socket.destroy();
    await tunnel.stop({ deadlineMs: 0 });
  }
});

test('a client shut out by a penalty is told why: its failed connections log a hint, not only resets', async () => {
  const tunnel = await server({ tls: { cert: pair.cert, key: pair.key }, authPenalty: { allowance: 0, firstMs: 60_000 } });
  const { logger, lines } = collect();
  const client = new TunnelClient({ server: `127.0.0.1:${tunnel.port}`, token: 'secret', tls: { fingerprint: tunnel.fingerprint! }, backoffInitialMs: 50, mappings: [], logger });
  try {
    // Another program on this client's address guessed the token: the address is penalized.
    await wrongLogin(tunnel.port, { localAddress: '127.0.0.1', tls: true });
    await until(() => tunnel.penalties.penalized() === 1, 'penalized');
    client.start();
    await until(() => lines.some((line) => line.includes('tunnel connection failed')), 'a failed connection');
    const failed = lines.find((line) => line.includes('tunnel connection failed'))!;
    assert.match(failed, /hint=.*auth penalty/, failed);
    assert.doesNotMatch(failed, /verification|no certificate/, failed);
    assert.equal(tunnel.clients().length, 0);
  } finally {
    await client.stop();
    await tunnel.stop({ deadlineMs: 0 });
  }
});
