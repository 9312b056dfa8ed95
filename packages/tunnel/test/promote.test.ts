// Promotion: a mux stream moving to a data connection mid-flight (MOVE /
// MOVED, TunnelStream.move). Unit level (two muxes over loopback TCP, an
// in-memory carrier): random chunkings both ways across a move at a random
// point, half-close before, during and after it, a reset and a session
// closing mid-move. Tunnel level: a bulk visitor promoted through the pool,
// an empty pool (the stream stays on the mux), a client without the
// capability (visitors take a data connection at open, as before).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { connPair, type Conn, type ConnLimit } from '@wmproxy/core-net';
import { closedPort, trackedServer } from '@wmproxy/testkit';
import { DEFAULT_DATA_POOL, TunnelClient, TunnelServer, parseMapSpec, type DataLink, type Mux, type TunnelServerOptions, type TunnelStream } from '../src/index.js';
import { delay, muxPair, pattern, sink, split, streamPair, until, visit, writeAll } from './helpers.js';

/** `promise`, or a failure after `ms` (a broken hand-over hangs rather than fails). */
function within<T>(promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * Both ends of a moving stream, marked moving (as after MOVE), so either may
 * move first; each side calls `move` on its carrier end when its writer
 * reaches `moveAt` chunks (past its last chunk: after its end).
 */
async function moveScenario(options: { window?: number } = {}) {
  const pair = await muxPair({ initialWindow: options.window ?? 16 * 1024, maxWindow: options.window ?? 16 * 1024 });
  const [s, c] = await streamPair(pair.server, pair.client);
  s.moving = true;
  c.moving = true;
  const [carrierS, carrierC] = connPair(16 * 1024);
  return { pair, s, c, carrierS, carrierC };
}

/** Write `chunks` to `conn` honouring backpressure, calling `move` before chunk `moveAt` (or after the end), with a pause between some chunks. */
async function writeAcross(conn: TunnelStream, chunks: Uint8Array[], moveAt: number, move: () => void, gaps: number[], end: boolean): Promise<void> {
  for (let i = 0; i < chunks.length; i++) {
    if (i === moveAt) {
      // The mux writes what it has to its socket first: bytes in flight there when the carrier starts.
      await new Promise((resolve) => setImmediate(resolve));
      move();
    }
    await writeAll(conn, [chunks[i]!], false);
    const gap = gaps[i % Math.max(1, gaps.length)] ?? 0;
    if (gap > 0) await delay(gap % 3);
  }
  if (end) conn.end();
  if (moveAt >= chunks.length) {
    // Moves after the end (or, with end false, after the last write), at a later turn.
    await delay(moveAt - chunks.length);
    move();
  }
}

/** As the server does with a MOVE answered for a stream that finished meanwhile: the carrier just ends. */
function moveOrEnd(stream: TunnelStream, carrier: Conn): void {
  if (stream.closed) carrier.end();
  else stream.move(carrier, undefined);
}

test('property: bytes both ways are exact and in order across a move at any point, with half-close before, during or after it', async () => {
  const sizes = fc.array(fc.integer({ min: 1, max: 40_000 }), { minLength: 1, maxLength: 12 });
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 200_000 }),
      fc.integer({ min: 0, max: 200_000 }),
      sizes,
      sizes,
      fc.integer({ min: 0, max: 14 }),
      fc.integer({ min: 0, max: 14 }),
      fc.array(fc.nat(4), { maxLength: 6 }),
      fc.array(fc.nat(4), { maxLength: 6 }),
      fc.integer({ min: 1, max: 1000 }),
      async (downSize, upSize, downCuts, upCuts, sMoveAt, cMoveAt, gaps, pauses, seed) => {
        const { pair, s, c, carrierS, carrierC } = await moveScenario();
        try {
          const down = pattern(downSize, seed);
          const up = pattern(upSize, seed + 1);
          // Any chunk sizes, but at most about 40 chunks a way (each may wait a few ms).
          const downChunks = split(down, downCuts.map((n) => Math.max(n, Math.ceil(downSize / 40))));
          const upChunks = split(up, upCuts.map((n) => Math.max(n, Math.ceil(upSize / 40))));
          const atS = Math.min(sMoveAt, downChunks.length + 2);
          const atC = Math.min(cMoveAt, upChunks.length + 2);
          const atClient = sink(c, { pauseEvery: pauses });
          const atServer = sink(s, { pauseEvery: gaps });
          await Promise.all([
            writeAcross(s, downChunks, atS, () => moveOrEnd(s, carrierS), gaps, true),
            writeAcross(c, upChunks, atC, () => moveOrEnd(c, carrierC), pauses, true),
          ]);
          const [gotC, gotS] = await within(Promise.all([atClient.done, atServer.done]), 5000);
          assert.equal(gotC.error, undefined, `client side: ${gotC.error?.message}`);
          assert.equal(gotS.error, undefined, `server side: ${gotS.error?.message}`);
          assert.ok(gotC.ended && gotS.ended, 'both ends seen');
          assert.equal(gotC.bytes.byteLength, down.byteLength, 'server → client length');
          assert.ok(Buffer.from(gotC.bytes).equals(Buffer.from(down)), 'server → client bytes exact and in order');
          assert.equal(gotS.bytes.byteLength, up.byteLength, 'client → server length');
          assert.ok(Buffer.from(gotS.bytes).equals(Buffer.from(up)), 'client → server bytes exact and in order');
          assert.equal(pair.server.closed || pair.client.closed, false, 'the session is intact');
        } finally {
          pair.close();
        }
      },
    ),
    { numRuns: Number(process.env.PROMOTE_RUNS ?? 60), ...(process.env.PROMOTE_SEED ? { seed: Number(process.env.PROMOTE_SEED) } : {}), endOnFailure: true },
  );
});

test('bytes still in flight on the mux at the move come before the carrier\'s (which arrive first), both ways', async () => {
  const { pair, s, c, carrierS, carrierC } = await moveScenario({ window: 256 * 1024 });
  try {
    const atClient = sink(c);
    const atServer = sink(s);
    const head = pattern(64 * 1024, 21);
    const tail = pattern(64 * 1024, 22);
    s.write(head);
    c.write(head);
    // The mux has written both heads to its socket; neither side has read them yet.
    await new Promise((resolve) => setImmediate(resolve));
    c.move(carrierC, undefined);
    s.move(carrierS, undefined);
    // In memory, the carrier delivers before the socket is read.
    s.write(tail);
    c.write(tail);
    s.end();
    c.end();
    const [gotC, gotS] = await within(Promise.all([atClient.done, atServer.done]));
    const whole = Buffer.concat([head, tail]);
    assert.ok(Buffer.from(gotC.bytes).equals(whole), 'server → client in order');
    assert.ok(Buffer.from(gotS.bytes).equals(whole), 'client → server in order');
  } finally {
    pair.close();
  }
});

test('a reader paused before the marker holds the carrier: what it buffers stays bounded', async () => {
  const { pair, s, c, carrierS, carrierC } = await moveScenario();
  try {
    c.setHandler({ data() {}, close() {} });
    c.pause();
    c.move(carrierC, undefined);
    s.move(carrierS, undefined);
    await until(() => c.recvMoved, 'the server\'s marker at the client');
    // 4 MiB written regardless of backpressure: it must wait on the server's side, not pile up at the paused reader.
    for (let i = 0; i < 64; i++) s.write(pattern(64 * 1024, i + 30));
    await delay(50);
    assert.ok(c.inboxBytes <= 256 * 1024, `the paused reader holds ${c.inboxBytes} bytes`);
  } finally {
    pair.close();
  }
});

test('half-close in each direction before the move: the ended direction stays on the mux, the other moves', async () => {
  for (const ended of ['server', 'client'] as const) {
    const { pair, s, c, carrierS, carrierC } = await moveScenario();
    try {
      const atClient = sink(c);
      const atServer = sink(s);
      const early = pattern(50_000, 3);
      const late = pattern(300_000, 4);
      const first = ended === 'server' ? s : c;
      const other = ended === 'server' ? c : s;
      // The ended side's last bytes still wait for credit (16 KiB window) when it moves: they finish on the mux.
      first.write(early);
      first.end();
      s.move(carrierS, undefined);
      c.move(carrierC, undefined);
      await writeAll(other, split(late, [7000]), true);
      const [gotC, gotS] = await within(Promise.all([atClient.done, atServer.done]));
      const atFirstPeer = ended === 'server' ? gotC : gotS;
      const atOtherPeer = ended === 'server' ? gotS : gotC;
      assert.equal(gotC.error ?? gotS.error, undefined);
      assert.ok(Buffer.from(atFirstPeer.bytes).equals(Buffer.from(early)), `${ended} → peer: exact`);
      assert.ok(Buffer.from(atOtherPeer.bytes).equals(Buffer.from(late)), `peer → ${ended}: exact over the carrier`);
      assert.ok(carrierS.bytesWritten + carrierC.bytesWritten >= late.byteLength - 16 * 1024, 'the open direction went over the carrier');
    } finally {
      pair.close();
    }
  }
});

test('a reset during the move (one side moved, the other not yet) resets both ends', async () => {
  for (const resetBy of ['moved', 'unmoved'] as const) {
    const { pair, s, c, carrierC } = await moveScenario();
    try {
      const atClient = sink(c);
      const atServer = sink(s);
      c.move(carrierC, undefined);
      s.write(pattern(100_000, 5));
      c.write(pattern(100_000, 6));
      await delay(5);
      (resetBy === 'moved' ? c : s).destroy();
      const [gotC, gotS] = await within(Promise.all([atClient.done, atServer.done]));
      // The side that reset sees no error of its own; the other must read a reset, not an end.
      const peer = resetBy === 'moved' ? gotS : gotC;
      assert.ok(peer.error, `the ${resetBy === 'moved' ? 'server' : 'client'} side reads a reset`);
      assert.equal(peer.ended, false, 'not taken for a clean end');
    } finally {
      pair.close();
    }
  }
});

test('a reset after the move reaches the peer over the carrier alone (the stream left the session)', async () => {
  const { pair, s, c, carrierS, carrierC } = await moveScenario();
  try {
    const atClient = sink(c);
    c.move(carrierC, undefined);
    s.move(carrierS, undefined);
    await until(() => !pair.server.streams.has(s.sid) && !pair.client.streams.has(c.sid), 'both ends off the mux');
    s.write(pattern(10_000, 7));
    await until(() => atClient.size() === 10_000, 'bytes over the carrier');
    s.destroy();
    const got = await within(atClient.done);
    assert.ok(got.error, 'the client side reads a reset');
    assert.equal(got.ended, false);
  } finally {
    pair.close();
  }
});

test('the session closing mid-move resets the stream on both sides; once both directions moved, it carries on', async () => {
  {
    const { pair, s, c, carrierC } = await moveScenario();
    const atClient = sink(c);
    const atServer = sink(s);
    c.move(carrierC, undefined);
    s.write(pattern(30_000, 8));
    await delay(5);
    pair.server.destroy();
    const [gotC, gotS] = await within(Promise.all([atClient.done, atServer.done]));
    assert.ok(gotS.error, 'the server side is reset');
    assert.ok(gotC.error, 'the client side is reset');
    pair.close();
  }
  {
    const { pair, s, c, carrierS, carrierC } = await moveScenario();
    const atClient = sink(c);
    const atServer = sink(s);
    c.move(carrierC, undefined);
    s.move(carrierS, undefined);
    await until(() => !pair.server.streams.has(s.sid) && !pair.client.streams.has(c.sid), 'both ends off the mux');
    pair.close();
    const data = pattern(200_000, 9);
    await writeAll(c, split(data, [9000]), true);
    await writeAll(s, [data], true);
    const [gotC, gotS] = await within(Promise.all([atClient.done, atServer.done]));
    assert.equal(gotC.error ?? gotS.error, undefined);
    assert.ok(Buffer.from(gotS.bytes).equals(Buffer.from(data)) && Buffer.from(gotC.bytes).equals(Buffer.from(data)), 'exact both ways after the session closed');
  }
});

test('a MOVED marker on a stream that is not moving is a protocol error', async () => {
  const pair = await muxPair();
  try {
    const [s, c] = await streamPair(pair.server, pair.client);
    const [carrier] = connPair();
    // The client moves although the server never asked: the server must not accept bytes it cannot place.
    c.move(carrier, undefined);
    const closed = sink(s);
    const got = await within(closed.done);
    assert.ok(got.error);
    await until(() => pair.server.closed, 'the session closed');
  } finally {
    pair.close();
  }
});

// ---- through the tunnel -------------------------------------------------------

function echoServer() {
  return trackedServer((socket) => {
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('end', () => socket.end());
  });
}

async function tunnel(localPort: number, server: Partial<TunnelServerOptions>, client: { promotion?: boolean; backoffInitialMs?: number } = {}) {
  const publicPort = await closedPort();
  const pool = server.dataPool ?? 2;
  const tunnelServer = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000, dataPool: pool, dataPromoteBytes: 256 * 1024, ...server }).start();
  const tunnelClient = new TunnelClient({
    server: `127.0.0.1:${tunnelServer.port}`,
    token: 'secret',
    tls: false,
    backoffInitialMs: client.backoffInitialMs ?? 50,
    backoffMaxMs: 200,
    mappings: [parseMapSpec(`svc=tcp:127.0.0.1:${localPort}:${publicPort}`)],
    ...(client.promotion === undefined ? {} : { promotion: client.promotion }),
  }).start();
  await tunnelClient.ready();
  await until(() => tunnelServer.clients()[0]?.idleDataConnections === pool, 'the pool full');
  return {
    server: tunnelServer,
    client: tunnelClient,
    publicPort,
    async stop() {
      await tunnelClient.stop();
      await tunnelServer.stop({ deadlineMs: 0 });
    },
  };
}

test('a bulk visitor opens on the mux and is promoted to a data connection: exact both ways, the pool refills', async () => {
  const echo = await echoServer();
  const t = await tunnel(echo.port, {});
  try {
    const opened = await t.server.openStream('svc', { address: '1.2.3.4', port: 1 });
    assert.equal(t.server.clients()[0]!.dataStreams, 0, 'a visitor opens on the mux');
    opened.destroy();
    const sent = Buffer.from(pattern(8 * 1024 * 1024, 11));
    const muxBefore = t.client.sessionMux!.conn.bytesRead;
    const received = await visit(t.publicPort, (socket) => {
      // Half-closed after the last byte, well after the move.
      for (const piece of split(sent, [100_000])) socket.write(piece);
      socket.end();
    });
    assert.equal(received.byteLength, sent.byteLength);
    assert.ok(received.equals(sent), 'byte-exact echo');
    assert.equal(t.server.clients()[0]!.dataStreams, 1, 'promoted once');
    assert.ok(t.client.sessionMux!.conn.bytesRead - muxBefore < sent.byteLength / 2, 'most bytes went over the data connection');
    await until(() => t.client.sessionMux!.streams.size === 0, 'the stream left the mux');
    await until(() => t.server.clients()[0]!.idleDataConnections === 2, 'the pool refilled');
  } finally {
    await t.stop();
    await echo.close();
  }
});

test('an empty pool: a bulk visitor stays on the mux (exact), and is promoted once a data connection is idle again', async () => {
  const echo = await echoServer();
  // The client replaces a closed idle connection only after backoffInitialMs.
  const t = await tunnel(echo.port, { dataPool: 1 }, { backoffInitialMs: 1500 });
  try {
    for (const link of (t.client as unknown as { idleData: Set<DataLink> }).idleData) link.close();
    await until(() => t.server.clients()[0]!.idleDataConnections === 0, 'the pool empty');
    const sent = Buffer.from(pattern(3 * 1024 * 1024, 12));
    const received = await visit(t.publicPort, (socket) => socket.end(sent));
    assert.ok(received.equals(sent), 'byte-exact on the mux');
    assert.equal(t.server.clients()[0]!.dataStreams, 0, 'not promoted');
    await until(() => t.server.clients()[0]!.idleDataConnections === 1, 'the pool refilled', 5000);
    // A slow visitor whose bytes cross the threshold again once the pool is back.
    const again = await visit(t.publicPort, (socket) => socket.end(sent));
    assert.ok(again.equals(sent));
    assert.equal(t.server.clients()[0]!.dataStreams, 1, 'promoted');
  } finally {
    await t.stop();
    await echo.close();
  }
});

test('a slow stream (keep-alive small requests) is not promoted however many bytes it carries: the threshold is per second', async () => {
  const echo = await echoServer();
  const t = await tunnel(echo.port, {});
  try {
    const piece = Buffer.from(pattern(16 * 1024, 14));
    const received = await visit(t.publicPort, (socket) => {
      // 16 KiB each way every 150 ms: about 210 KiB/s both ways together, 640 KiB in all (the threshold is 256 KiB).
      let sent = 0;
      const timer = setInterval(() => {
        socket.write(piece);
        if (++sent === 20) {
          clearInterval(timer);
          socket.end();
        }
      }, 150);
    });
    assert.equal(received.byteLength, 20 * piece.byteLength);
    assert.equal(t.server.clients()[0]!.dataStreams, 0, 'stayed on the mux');
  } finally {
    await t.stop();
    await echo.close();
  }
});

test('a client without the capability: visitors take a data connection at open (no MOVE), bulk works', async () => {
  const echo = await echoServer();
  const t = await tunnel(echo.port, {}, { promotion: false });
  try {
    const opened = await t.server.openStream('svc', { address: '1.2.3.4', port: 1 });
    assert.equal(t.server.clients()[0]!.dataStreams, 1, 'the visitor took a data connection at open');
    opened.destroy();
    const sent = Buffer.from(pattern(4 * 1024 * 1024, 13));
    const received = await visit(t.publicPort, (socket) => socket.end(sent));
    assert.ok(received.equals(sent));
    assert.equal(t.server.clients()[0]!.dataStreams, 2);
  } finally {
    await t.stop();
    await echo.close();
  }
});

test('the default pool goes to clients that promote; such a client without the capability gets none', async () => {
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const clients = [true, false].map((promotion) =>
    new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: false, name: String(promotion), mappings: [], promotion }).start(),
  );
  try {
    await Promise.all(clients.map((client) => client.ready()));
    await until(() => server.clients().reduce((sum, c) => sum + c.idleDataConnections, 0) === DEFAULT_DATA_POOL, 'the capable client\'s pool');
    await delay(200);
    const pools = server.clients().map((c) => c.idleDataConnections).sort();
    assert.deepEqual(pools, [0, DEFAULT_DATA_POOL], 'one pool, the capable client\'s');
  } finally {
    await Promise.all(clients.map((client) => client.stop()));
    await server.stop({ deadlineMs: 0 });
  }
});

test('dataPromoteBytes 0 keeps the open-time data connections with a capable client', async () => {
  const echo = await echoServer();
  const t = await tunnel(echo.port, { dataPromoteBytes: 0 });
  try {
    const opened: Conn = await t.server.openStream('svc', { address: '1.2.3.4', port: 1 });
    assert.equal(t.server.clients()[0]!.dataStreams, 1);
    opened.destroy();
  } finally {
    await t.stop();
    await echo.close();
  }
});

test('a stream counts once in openStreams on both sides while it moves (moved here, the peer\'s marker not read yet)', async () => {
  const echo = await echoServer();
  const t = await tunnel(echo.port, {});
  // Each side stops reading its session the moment it moves: the other's MOVED marker waits, so the stream stays on the mux with its data connection busy.
  const server = t.server as unknown as { promote(session: { mux: Mux }, stream: TunnelStream): void };
  const promote = server.promote.bind(t.server);
  let serverMux: Mux | undefined;
  server.promote = (session, stream) => {
    serverMux ??= session.mux;
    session.mux.conn.pause();
    promote(session, stream);
  };
  const client = t.client as unknown as { moveStream(link: DataLink, payload: Uint8Array): void; busyData: { conns: Set<Conn> } };
  const moveStream = client.moveStream.bind(t.client);
  client.moveStream = (link, payload) => {
    t.client.sessionMux!.conn.pause();
    moveStream(link, payload);
  };
  try {
    const sent = Buffer.from(pattern(1024 * 1024, 5));
    const echoed = visit(t.publicPort, (socket) => socket.end(sent));
    await until(() => t.server.clients()[0]!.dataStreams === 1 && client.busyData.conns.size === 1, 'both sides moved');
    assert.equal(serverMux!.streams.size, 1, 'the server still has the stream on the mux');
    assert.equal(t.client.sessionMux!.streams.size, 1, 'the client still has the stream on the mux');
    assert.equal(t.server.clients()[0]!.openStreams, 1);
    assert.equal(t.server.totals()[0]!.openStreams, 1);
    assert.equal(t.client.status().openStreams, 1);
    serverMux!.conn.resume();
    t.client.sessionMux!.conn.resume();
    const received = await within(echoed);
    assert.ok(received.equals(sent), 'byte-exact echo');
    await until(() => t.server.clients()[0]!.openStreams === 0 && t.client.status().openStreams === 0, 'nothing open');
  } finally {
    await t.stop();
    await echo.close();
  }
});

test('after a move the visitor is still the peer, on its stream and its data connection; the tunnel listener releases it by the client', async () => {
  const echo = await echoServer();
  const t = await tunnel(echo.port, {});
  const listener = (t.server as unknown as { control: { limit: ConnLimit } }).control.limit;
  try {
    const fromClient = listener.openFrom('127.0.0.1');
    const stream = (await t.server.openStream('svc', { address: '192.0.2.3', port: 1003 })) as TunnelStream;
    const echoed = sink(stream);
    await writeAll(stream, split(Buffer.from(pattern(1024 * 1024, 9)), [64 * 1024]));
    await until(() => stream.carrier !== undefined, 'the stream moved');
    assert.deepEqual([stream.remoteAddress, stream.remotePort], ['192.0.2.3', 1003]);
    assert.deepEqual([stream.carrier!.remoteAddress, stream.carrier!.remotePort], ['192.0.2.3', 1003]);
    assert.equal((await within(echoed.done)).bytes.byteLength, 1024 * 1024);
    await until(() => t.server.clients()[0]!.openStreams === 0 && t.server.clients()[0]!.idleDataConnections === 2, 'closed, the pool refilled');
    assert.equal(listener.openFrom('127.0.0.1'), fromClient);
    assert.equal(listener.openFrom('192.0.2.3'), 0);
  } finally {
    await t.stop();
    await echo.close();
  }
});
