// Data connections (the pool): visitors carried as raw bytes on extra
// connections, their handshake (bound to a live session and its credential,
// not replayable), refusal, refill, fallback to the mux, session loss, and
// the reverse proxy's transport() over them. These servers take a data
// connection at open (dataPromoteBytes 0); promote.test.ts covers promotion.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { AddressCounts, NetError, type ConnLimit } from '@wmproxy/core-net';
import { closedPort, trackedServer } from '@wmproxy/testkit';
import { DATA_CONNECTION_FLAG, FrameType, MAGIC, PROTOCOL_VERSION, TunnelClient, TunnelServer, dataMac, encodeFrame, parseMapSpec, type TunnelServerOptions } from '../src/index.js';
import { pattern, until, visit } from './helpers.js';

async function start(server: Partial<TunnelServerOptions>, map: string[], token = 'secret') {
  const tunnelServer = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000, dataPool: 2, dataPromoteBytes: 0, ...server }).start();
  const tunnelClient = new TunnelClient({ server: `127.0.0.1:${tunnelServer.port}`, token, tls: false, backoffInitialMs: 50, backoffMaxMs: 200, mappings: map.map(parseMapSpec) });
  return { server: tunnelServer, client: tunnelClient };
}

/** A tcp mapping to `localPort` on a fresh public port, its client registered and its pool full. */
async function tcpTunnel(localPort: number, pool = 2, options: Partial<TunnelServerOptions> = {}) {
  const publicPort = await closedPort();
  const { server, client } = await start({ dataPool: pool, ...options }, [`svc=tcp:127.0.0.1:${localPort}:${publicPort}`]);
  client.start();
  await client.ready();
  await poolFull(server, pool);
  const stop = async (): Promise<void> => {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
  };
  return { server, client, publicPort, stop };
}

function snapshot(server: TunnelServer) {
  const [one] = server.clients();
  assert.ok(one, 'a connected client');
  return one;
}

async function poolFull(server: TunnelServer, size: number): Promise<void> {
  await until(() => server.clients()[0]?.idleDataConnections === size, `${size} idle data connections`);
}

function echoServer() {
  return trackedServer((socket) => {
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('end', () => socket.end());
  });
}

test('a tcp visitor travels on a data connection, byte-exact both ways (8 MiB), and the pool refills', async () => {
  const echo = await echoServer();
  const { server, client, publicPort, stop } = await tcpTunnel(echo.port);
  try {
    const sent = Buffer.from(pattern(8 * 1024 * 1024, 7));
    const received = await visit(publicPort, (socket) => socket.end(sent));
    assert.equal(received.byteLength, sent.byteLength);
    assert.ok(received.equals(sent), 'the echo is byte-exact');
    const seen = snapshot(server);
    assert.equal(seen.dataStreams, 1, 'the visitor took a data connection');
    assert.equal(client.sessionMux!.streams.size, 0);
    // Its bytes count in the client's traffic (metrics read totals()).
    assert.ok(server.totals()[0]!.bytesIn >= sent.byteLength);
    await poolFull(server, 2);
  } finally {
    await stop();
    await echo.close();
  }
});

test('visitors arriving while the pool refills are all served (an OPEN right behind AUTH_OK is not lost)', async () => {
  const echo = await echoServer();
  // No heartbeat within the test: a lost OPEN is not rescued by the idle check (it fails the open after 3 s).
  const { server, publicPort, stop } = await tcpTunnel(echo.port, 1, { heartbeatMs: 60_000, openTimeoutMs: 3000 });
  try {
    // Each batch empties the pool at once; the refill races the next batch's opens.
    for (let batch = 0; batch < 20; batch++) {
      const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => visit(publicPort, (socket) => socket.end(`v${batch}.${i}`))));
      replies.forEach((reply, i) => assert.equal(reply.toString(), `v${batch}.${i}`));
    }
    assert.ok(snapshot(server).dataStreams >= 20, `at least one data connection per batch (${snapshot(server).dataStreams})`);
  } finally {
    await stop();
    await echo.close();
  }
});

test('beyond dataMaxBusy visitors ride the mux although idle data connections wait', async () => {
  const echo = await echoServer();
  const { server, client, stop } = await tcpTunnel(echo.port, 2, { dataMaxBusy: 1 });
  try {
    const first = await server.openStream('svc', { address: '1.2.3.4', port: 1 });
    await poolFull(server, 2);
    const second = await server.openStream('svc', { address: '1.2.3.4', port: 2 });
    assert.equal(snapshot(server).dataStreams, 1, 'one visitor on a data connection');
    assert.equal(client.sessionMux!.streams.size, 1, 'the other on the mux');
    assert.equal(snapshot(server).idleDataConnections, 2);
    first.destroy();
    second.destroy();
  } finally {
    await stop();
    await echo.close();
  }
});

test('a client whose credential a reload removes loses its visitors on data connections too', async () => {
  const echo = await echoServer();
  const { server, publicPort, stop } = await tcpTunnel(echo.port);
  try {
    const socket = net.connect({ host: '127.0.0.1', port: publicPort });
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // The echo proves the visitor is through, on a data connection, before the reload.
    const echoed = new Promise<string>((resolve) => socket.once('data', (chunk) => resolve(chunk.toString())));
    socket.write('ping');
    assert.equal(await echoed, 'ping');
    assert.equal(snapshot(server).dataStreams, 1);
    server.reload({ token: 'another-secret' });
    const bound = new Promise<boolean>((resolve) => setTimeout(resolve, 5000, false).unref());
    assert.ok(await Promise.race([closed.then(() => true), bound]), 'the visitor was cut with its client');
  } finally {
    await stop();
    await echo.close();
  }
});

test('half-close passes both ways over a data connection', async () => {
  // The visitor ends first: the local service answers after reading its FIN.
  const local = await trackedServer((socket) => {
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.on('end', () => socket.end(`got ${text}`));
  });
  const { server, client, publicPort, stop } = await tcpTunnel(local.port);
  try {
    const answer = await visit(publicPort, (socket) => {
      socket.write('hello ');
      setTimeout(() => socket.end('world'), 50);
    });
    assert.equal(answer.toString(), 'got hello world');
    assert.equal(snapshot(server).dataStreams, 1);
  } finally {
    await stop();
    await local.close();
  }
  // The local service ends first: the visitor still sends, and the service reads it.
  const early = await trackedServer((socket) => {
    socket.end('bye ');
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.on('end', () => {
      reports.push(text);
      socket.destroy();
    });
  });
  const reports: string[] = [];
  const second = await tcpTunnel(early.port);
  const port2 = second.publicPort;
  try {
    // Once the service's FIN arrived, this side still sends.
    const got = await visit(port2, (socket) => socket.on('end', () => socket.end('still here')));
    assert.equal(got.toString(), 'bye ');
    await until(() => reports.length === 1, 'the service to read the visitor after its own FIN');
    assert.equal(reports[0], 'still here');
    assert.equal(snapshot(second.server).dataStreams, 1);
  } finally {
    await second.stop();
    await early.close();
  }
});

test('a reset passes both ways over a data connection', async () => {
  const localErrors: string[] = [];
  let resetNext = false;
  const local = await trackedServer((socket) => {
    socket.on('error', (error: NodeJS.ErrnoException) => localErrors.push(error.code ?? error.message));
    socket.on('data', () => {
      if (resetNext) socket.resetAndDestroy();
    });
  });
  const { server, client, publicPort, stop } = await tcpTunnel(local.port);
  try {
    // The visitor resets: the local service reads ECONNRESET, not an end.
    await new Promise<void>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: publicPort });
      socket.on('connect', () => {
        socket.write('x');
        setTimeout(() => {
          socket.resetAndDestroy();
          resolve();
        }, 100);
      });
    });
    await until(() => localErrors.includes('ECONNRESET'), 'the local service to read the visitor\'s reset');
    await poolFull(server, 2);
    // The local service resets: the visitor reads ECONNRESET.
    resetNext = true;
    const visitorError = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: publicPort });
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      socket.on('close', () => resolve('closed without an error'));
      socket.write('y');
    });
    assert.equal(visitorError, 'ECONNRESET');
    assert.equal(snapshot(server).dataStreams, 2);
  } finally {
    await stop();
    await local.close();
  }
});

test('a refusal by the local service is a clear error, as on the mux; the pool refills', async () => {
  const dead = await closedPort();
  const { server, client, stop } = await tcpTunnel(dead);
  try {
    await assert.rejects(server.openStream('svc', { address: '1.2.3.4', port: 1 }), (error: NetError) => error.code === 'ECONNREFUSED' && /local service 127\.0\.0\.1:\d+ of mapping "svc"/.test(error.message));
    assert.equal(client.sessionMux!.stats().streams, 0);
    assert.equal(snapshot(server).dataStreams, 0, 'a refused open hands out nothing');
    await poolFull(server, 2);
  } finally {
    await stop();
  }
});

test('with the pool empty a visitor rides the mux at once; http through transport() takes a data connection', async () => {
  const web = await trackedServer((socket) => {
    socket.on('data', () => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok'));
  });
  const { server, client } = await start({ dataPool: 1 }, [`web=http:127.0.0.1:${web.port}@app.example.test`]);
  client.start();
  try {
    await client.ready();
    await poolFull(server, 1);
    const transport = server.transport();
    const request = async (conn: Awaited<ReturnType<typeof transport.connect>>): Promise<string> => {
      const reply = new Promise<string>((resolve) => {
        let text = '';
        conn.setHandler({ data: (_c, chunk) => (text += Buffer.from(chunk).toString()), end: (c) => c.end(), close: () => resolve(text) });
      });
      conn.write(Buffer.from('GET / HTTP/1.1\r\nhost: app.example.test\r\n\r\n'));
      return reply;
    };
    const first = await transport.connect({ host: 'web', port: 0, key: 'web' }, 2000);
    assert.equal(snapshot(server).dataStreams, 1, 'the first took the data connection');
    // The pool is empty until the client's replacement arrives: the second rides the mux, without waiting.
    const second = await transport.connect({ host: 'web', port: 0, key: 'web' }, 2000);
    assert.equal(snapshot(server).dataStreams, 1);
    assert.equal(client.sessionMux!.streams.size, 1, 'the second is a mux stream');
    assert.match(await request(first), /^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nok$/);
    assert.match(await request(second), /^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nok$/);
    await poolFull(server, 1);
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await web.close();
  }
});

test('a visitor on a data connection shows its own address (a per-address limit counts visitors); the tunnel listener still counts the client', async () => {
  const echo = await echoServer();
  const { server, stop } = await tcpTunnel(echo.port, 2);
  const listener = (server as unknown as { control: { limit: ConnLimit } }).control.limit;
  try {
    // The session and the two idle data connections, from the client's address.
    const fromClient = listener.openFrom('127.0.0.1');
    const a = await server.openStream('svc', { address: '192.0.2.1', port: 1001 });
    const b = await server.openStream('svc', { address: '192.0.2.2', port: 1002 });
    assert.equal(snapshot(server).dataStreams, 2, 'both took a data connection');
    assert.deepEqual([a.remoteAddress, a.remotePort, b.remoteAddress, b.remotePort], ['192.0.2.1', 1001, '192.0.2.2', 1002]);
    // One per address, as a listener's maxConnectionsPerIp 1 counts: two visitors pass (as the tunnel client, the second would not).
    const counts = new AddressCounts();
    for (const conn of [a, b]) {
      assert.equal(counts.over(conn.remoteAddress, 0, 1), undefined);
      counts.add(conn.remoteAddress);
    }
    a.destroy();
    b.destroy();
    await poolFull(server, 2);
    await until(() => snapshot(server).openStreams === 0, 'both closed');
    // Released by the client's address: its count is the session and the refilled pool again.
    assert.equal(listener.openFrom('127.0.0.1'), fromClient);
    assert.equal(listener.clients, 1);
  } finally {
    await stop();
    await echo.close();
  }
});

/** A data connection's handshake by hand: HELLO, the server's CHALLENGE, AUTH; resolves with the answer's frame type. */
async function rawDataHandshake(port: number, sessionId: string, auth: (clientNonce: Uint8Array, serverNonce: Uint8Array, serverId: string) => Uint8Array, clientNonce: Uint8Array = randomBytes(32)): Promise<{ answer: number; socket: net.Socket; closed: Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => undefined);
  let buffer = Buffer.alloc(0);
  const waiters: Array<(frame: { type: number; payload: Buffer }) => void> = [];
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    while (buffer.byteLength >= 10 && buffer.byteLength >= 10 + buffer.readUInt32BE(6)) {
      const length = buffer.readUInt32BE(6);
      const frame = { type: buffer[0]!, payload: buffer.subarray(10, 10 + length) };
      buffer = buffer.subarray(10 + length);
      waiters.shift()?.(frame);
    }
  });
  const next = () => new Promise<{ type: number; payload: Buffer }>((resolve) => waiters.push(resolve));
  const session = Buffer.from(sessionId, 'latin1');
  const hello = Buffer.concat([Buffer.from(MAGIC), Buffer.from([PROTOCOL_VERSION]), Buffer.from(clientNonce), session]);
  socket.write(encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, hello));
  const challenge = await Promise.race([next(), closed.then(() => ({ type: -1, payload: Buffer.alloc(0) }))]);
  if (challenge.type !== FrameType.CHALLENGE) return { answer: challenge.type, socket, closed };
  const serverNonce = challenge.payload.subarray(1, 33);
  const serverId = challenge.payload.subarray(33).toString();
  socket.write(encodeFrame(FrameType.AUTH, 0, 0, auth(clientNonce, serverNonce, serverId)));
  const answer = await Promise.race([next(), closed.then(() => ({ type: -1, payload: Buffer.alloc(0) }))]);
  return { answer: answer.type, socket, closed };
}

test('a data connection is refused with a wrong token, an unknown session, another credential\'s session, or a replayed AUTH; session loss closes the idle ones', async () => {
  const server = await new TunnelServer({ listen: '127.0.0.1:0', clients: [{ name: 'a', token: 'token-a' }, { name: 'b', token: 'token-b' }], tls: false, heartbeatMs: 1000, dataPool: 4 }).start();
  const a = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'token-a', tls: false, mappings: [] });
  a.start();
  try {
    await a.ready();
    await poolFull(server, 4);
    const id = server.clients()[0]!.id;
    const macWith = (token: string, session = id) => (clientNonce: Uint8Array, serverNonce: Uint8Array, serverId: string) => dataMac(token, 'client', session, clientNonce, serverNonce, serverId);
    // The pool is full: the right token is refused for that reason, so make room first.
    const room = (a as unknown as { idleData: Set<{ close(): void }> }).idleData;
    (a as unknown as { dataPool: number }).dataPool = 0; // the client stops refilling
    for (const link of [...room]) link.close();
    await poolFull(server, 0);
    const wrong = await rawDataHandshake(server.port, id, macWith('not-the-token'));
    assert.equal(wrong.answer, FrameType.ERROR, 'wrong token');
    const unknown = await rawDataHandshake(server.port, 'feedfeedfeedfeed', macWith('token-a', 'feedfeedfeedfeed'));
    assert.equal(unknown.answer, FrameType.ERROR, 'no such session');
    // Credential b is valid on this server, but the session is a's.
    const other = await rawDataHandshake(server.port, id, macWith('token-b'));
    assert.equal(other.answer, FrameType.ERROR, 'another credential');
    // A genuine AUTH, then the same bytes on a new connection (same client nonce): the server's nonce differs.
    let captured: Uint8Array | undefined;
    const nonce = randomBytes(32);
    const genuine = await rawDataHandshake(server.port, id, (c, s, sid) => (captured = macWith('token-a')(c, s, sid)), nonce);
    assert.equal(genuine.answer, FrameType.AUTH_OK, 'the genuine handshake passes');
    assert.equal(snapshot(server).idleDataConnections, 1);
    const replay = await rawDataHandshake(server.port, id, () => captured!, nonce);
    assert.equal(replay.answer, FrameType.ERROR, 'replayed AUTH');
    // The session ends: the server closes its idle data connections.
    let gone = false;
    void genuine.closed.then(() => (gone = true));
    await a.stop();
    await until(() => gone, 'the server to close the idle data connection of the ended session', 5000);
    assert.equal(server.clients().length, 0);
  } finally {
    await a.stop();
    await server.stop({ deadlineMs: 0 });
  }
});
