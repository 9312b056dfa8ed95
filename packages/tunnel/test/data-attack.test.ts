// Data connections under attack: hostile bytes at the server's tunnel port
// (which faces the internet) and a hostile server's frames at the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { runtime, runtimeReady, type Conn, type ConnHandler } from '@wmproxy/core-net';
import { closedPort, trackedServer } from '@wmproxy/testkit';
import { DATA_CONNECTION_FLAG, DataLink, FrameType, MAGIC, Mux, PROTOCOL_VERSION, TunnelClient, TunnelServer, dataMac, encodeFrame, parseMapSpec, peekFirstBytes, serverHandshake, type DataFrame } from '../src/index.js';
import { delay, until } from './helpers.js';

/** A raw socket to `port` reading frames until `detach()`, then raw bytes. */
function rawPeer(port: number) {
  const socket = net.connect({ host: '127.0.0.1', port });
  let closed = false;
  const done = new Promise<void>((resolve) => socket.on('close', () => ((closed = true), resolve())));
  socket.on('error', () => undefined);
  let buffer = Buffer.alloc(0);
  const frames: Array<{ type: number; payload: Buffer }> = [];
  const waiters: Array<() => void> = [];
  let raw: Buffer[] | undefined;
  socket.on('data', (chunk: Buffer) => {
    if (raw) {
      raw.push(chunk);
      return;
    }
    buffer = Buffer.concat([buffer, chunk]);
    while (buffer.byteLength >= 10 && buffer.byteLength >= 10 + buffer.readUInt32BE(6)) {
      const length = buffer.readUInt32BE(6);
      frames.push({ type: buffer[0]!, payload: Buffer.from(buffer.subarray(10, 10 + length)) });
      buffer = buffer.subarray(10 + length);
    }
    for (const wake of waiters.splice(0)) wake();
  });
  socket.on('close', () => {
    for (const wake of waiters.splice(0)) wake();
  });
  return {
    socket,
    done,
    get closed() {
      return closed;
    },
    /** The next frame (skipping PINGs), or undefined once the socket closed. */
    async next(): Promise<{ type: number; payload: Buffer } | undefined> {
      for (;;) {
        const frame = frames.shift();
        if (frame && frame.type === FrameType.PING) continue;
        if (frame) return frame;
        if (closed) return undefined;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
    /** From now on bytes are raw (what was buffered past the last frame first). */
    rawBytes(): Buffer[] {
      raw = buffer.byteLength > 0 ? [buffer] : [];
      return raw;
    },
  };
}

/** A genuine data handshake for session `id` (token `token`): resolves with the peer once AUTH_OK came (or undefined). */
async function dataPeer(port: number, id: string, token: string) {
  const peer = rawPeer(port);
  const clientNonce = randomBytes(32);
  const hello = Buffer.concat([Buffer.from(MAGIC), Buffer.from([PROTOCOL_VERSION]), clientNonce, Buffer.from(id, 'latin1')]);
  peer.socket.write(encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, hello));
  const challenge = await peer.next();
  if (challenge?.type !== FrameType.CHALLENGE) return { peer, ok: false };
  const serverNonce = challenge.payload.subarray(1, 33);
  const serverId = challenge.payload.subarray(33).toString();
  peer.socket.write(encodeFrame(FrameType.AUTH, 0, 0, dataMac(token, 'client', id, clientNonce, serverNonce, serverId)));
  const answer = await peer.next();
  return { peer, ok: answer?.type === FrameType.AUTH_OK };
}

/** A server with one client whose own pool is emptied and not refilled: the test's raw data connections are the pool. */
async function serverWithSession(options: { pool?: number; handshakeTimeoutMs?: number; openTimeoutMs?: number; map?: string[] } = {}) {
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 60_000, dataPool: options.pool ?? 2, dataPromoteBytes: 0, handshakeTimeoutMs: options.handshakeTimeoutMs, openTimeoutMs: options.openTimeoutMs,
    // The attacks here come from the genuine client's address, which then dials again: penalties (auth-penalty.test.ts) would shut it out.
    authPenalty: { enabled: false },
  }).start();
  const client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: false, mappings: (options.map ?? []).map(parseMapSpec) });
  client.start();
  await client.ready();
  await until(() => server.clients()[0]?.idleDataConnections === (options.pool ?? 2), 'the client pool');
  const internals = client as unknown as { idleData: Set<{ close(): void }>; dataPool: number };
  // The server counts one idle before its AUTH_OK reaches the client: wait for both sides.
  await until(() => internals.idleData.size === (options.pool ?? 2), 'the client pool, client side');
  internals.dataPool = 0;
  for (const link of [...internals.idleData]) link.close();
  await until(() => server.clients()[0]?.idleDataConnections === 0, 'the client pool emptied');
  const id = server.clients()[0]!.id;
  const conns = (): number => (server as unknown as { control: { connectionCount: number } }).control.connectionCount;
  const stop = async (): Promise<void> => {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
  };
  return { server, client, id, conns, stop, port: server.port };
}

test('a peer that sends one byte, or a data HELLO cut short, and stalls is closed by the handshake timeout', async () => {
  const { conns, stop, id, port } = await serverWithSession({ handshakeTimeoutMs: 300 });
  try {
    const base = conns();
    const one = rawPeer(port);
    one.socket.write(Buffer.from([FrameType.HELLO]));
    const hello = Buffer.concat([Buffer.from(MAGIC), Buffer.from([PROTOCOL_VERSION]), randomBytes(32), Buffer.from(id)]);
    const frame = encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, hello);
    const cut = rawPeer(port);
    cut.socket.write(frame.subarray(0, frame.byteLength - 3));
    await until(() => one.closed && cut.closed, 'both stalled peers closed', 5000);
    await until(() => conns() === base, 'no connection left on the tunnel port', 5000);
  } finally {
    await stop();
  }
});

test('the handshake timeout counts from the accept: a peer trickling its first two bytes gets no second full timeout', async () => {
  // Order, not time: A (data and session HELLOs) sends its second byte at 0.8 T, B both at once at 0.4 T.
  // From the accept A is closed at T, B at 1.4 T; with the timeout restarted at the second byte A lived to 1.8 T.
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, dataPool: 1, handshakeTimeoutMs: 1000 }).start();
  try {
    const order: string[] = [];
    const peer = (name: string, bytes: number[], secondAfterMs: number): void => {
      const socket = net.connect({ host: '127.0.0.1', port: server.port });
      socket.on('error', () => undefined);
      socket.on('close', () => order.push(name));
      socket.write(Buffer.from(bytes.slice(0, 1)));
      if (secondAfterMs === 0) socket.write(Buffer.from(bytes.slice(1)));
      else setTimeout(() => socket.write(Buffer.from(bytes.slice(1))), secondAfterMs);
    };
    peer('data', [FrameType.HELLO, DATA_CONNECTION_FLAG], 800);
    peer('session', [FrameType.HELLO, 0], 800);
    await delay(400);
    peer('reference', [FrameType.HELLO, DATA_CONNECTION_FLAG], 0);
    await until(() => order.length === 3, 'all three closed', 5000);
    assert.equal(order[2], 'reference', `closed in the order ${order.join(', ')}`);
  } finally {
    await server.stop({ deadlineMs: 0 });
  }
});

test('a data HELLO split at every offset is accepted; huge declared lengths, a 4 KiB session id and odd bytes are refused and closed', async () => {
  const { server, conns, stop, id, port } = await serverWithSession({ pool: 64 });
  try {
    const base = conns();
    const hello = Buffer.concat([Buffer.from(MAGIC), Buffer.from([PROTOCOL_VERSION]), randomBytes(32), Buffer.from(id)]);
    const frame = encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, hello);
    for (let cut = 1; cut < frame.byteLength; cut++) {
      const peer = rawPeer(port);
      peer.socket.write(frame.subarray(0, cut));
      await delay(2);
      peer.socket.write(frame.subarray(cut));
      const challenge = await peer.next();
      assert.equal(challenge?.type, FrameType.CHALLENGE, `split at ${cut}`);
      peer.socket.destroy();
    }
    const refused = async (bytes: Uint8Array, what: string): Promise<void> => {
      const peer = rawPeer(port);
      peer.socket.write(bytes);
      for (let frame = await peer.next(); frame !== undefined; frame = await peer.next()) assert.notEqual(frame.type, FrameType.CHALLENGE, what);
    };
    const huge = Buffer.from(encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, new Uint8Array(0)));
    huge.writeUInt32BE(0xffffffff, 6);
    await refused(huge, 'a 4 GiB frame');
    huge.writeUInt32BE(4097, 6);
    await refused(huge, 'one byte over the frame limit');
    const long = Buffer.concat([Buffer.from(MAGIC), Buffer.from([PROTOCOL_VERSION]), randomBytes(32), Buffer.alloc(4096 - 37, 0x41)]);
    await refused(encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, long), 'a 4 KiB session id');
    const odd = Buffer.concat([Buffer.from(MAGIC), Buffer.from([PROTOCOL_VERSION]), randomBytes(32), Buffer.from([0, 0xff, 0xfe, 0x0a, 0xc3])]);
    await refused(encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, odd), 'odd session id bytes');
    await refused(encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, Buffer.from(MAGIC)), 'a HELLO too short');
    // A session HELLO's id with a data connection's flag and the version wrong.
    const wrongVersion = Buffer.from(hello);
    wrongVersion[MAGIC.length] = PROTOCOL_VERSION + 1;
    await refused(encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, wrongVersion), 'another protocol version');
    await until(() => conns() === base, 'no connection left on the tunnel port', 5000);
    assert.equal(server.clients()[0]!.idleDataConnections, 0);
  } finally {
    await stop();
  }
});

test('many data handshakes with a wrong MAC or an unknown session are all refused and leave nothing behind', async () => {
  const { server, conns, stop, id, port } = await serverWithSession({ pool: 4 });
  try {
    const base = conns();
    const tries = await Promise.all([
      ...Array.from({ length: 40 }, () => dataPeer(port, id, 'wrong')),
      ...Array.from({ length: 40 }, () => dataPeer(port, randomBytes(8).toString('hex'), 'secret')),
    ]);
    assert.ok(tries.every((t) => !t.ok), 'none accepted');
    await until(() => conns() === base, 'every refused connection closed', 5000);
    assert.equal(server.clients()[0]!.idleDataConnections, 0);
    // Beyond the pool size: refused, the pool holds its size.
    const genuine = await Promise.all(Array.from({ length: 7 }, () => dataPeer(port, id, 'secret')));
    assert.equal(genuine.filter((t) => t.ok).length, 4, 'the pool size accepted');
    assert.equal(server.clients()[0]!.idleDataConnections, 4);
    for (const t of genuine) t.peer.socket.destroy();
    await until(() => server.clients()[0]!.idleDataConnections === 0, 'closed idle ones leave the pool');
  } finally {
    await stop();
  }
});

test('a session that ends while data handshakes are half done leaves no connection and no idle entry', async () => {
  const { server, client, conns, stop, id, port } = await serverWithSession({ pool: 4 });
  try {
    const peers = Array.from({ length: 5 }, () => rawPeer(port));
    const nonces = peers.map(() => randomBytes(32));
    peers.forEach((peer, i) => peer.socket.write(encodeFrame(FrameType.HELLO, DATA_CONNECTION_FLAG, 0, Buffer.concat([Buffer.from(MAGIC), Buffer.from([PROTOCOL_VERSION]), nonces[i]!, Buffer.from(id)]))));
    const challenges = await Promise.all(peers.map((peer) => peer.next()));
    assert.ok(challenges.every((c) => c?.type === FrameType.CHALLENGE));
    await client.stop();
    await until(() => server.clients().length === 0, 'the session gone');
    peers.forEach((peer, i) => {
      const c = challenges[i]!;
      peer.socket.write(encodeFrame(FrameType.AUTH, 0, 0, dataMac('secret', 'client', id, nonces[i]!, c.payload.subarray(1, 33), c.payload.subarray(33).toString())));
    });
    const answers = await Promise.all(peers.map((peer) => peer.next()));
    assert.ok(answers.every((a) => a === undefined || a.type === FrameType.ERROR), 'refused');
    await until(() => conns() === 0, 'no connection left on the tunnel port', 5000);
  } finally {
    await stop();
  }
});

test('a data connection that sends frames or raw bytes while idle is dropped from the pool; a PONG flood is harmless', async () => {
  const local = await trackedServer((socket) => socket.end('hello'));
  const { server, stop, id, port } = await serverWithSession({ pool: 4, map: [`svc=tcp:127.0.0.1:${local.port}:${await closedPort()}`] });
  try {
    const flood = await dataPeer(port, id, 'secret');
    const ping = await dataPeer(port, id, 'secret');
    const raw = await dataPeer(port, id, 'secret');
    assert.ok(flood.ok && ping.ok && raw.ok);
    assert.equal(server.clients()[0]!.idleDataConnections, 3);
    const pongs = Buffer.concat(Array.from({ length: 20_000 }, () => encodeFrame(FrameType.PONG, 0, 0, new Uint8Array(8))));
    flood.peer.socket.write(pongs);
    ping.peer.socket.write(encodeFrame(FrameType.PING, 0, 0, new Uint8Array(8)));
    raw.peer.socket.write('GET / HTTP/1.1\r\n\r\n');
    await until(() => ping.peer.closed && raw.peer.closed, 'the misbehaving ones closed', 5000);
    await until(() => server.clients()[0]!.idleDataConnections === 1, 'only the flooding one idle');
    await delay(50);
    assert.equal(flood.peer.closed, false, 'PONGs are what an idle connection may send');
  } finally {
    await stop();
    await local.close();
  }
});

test('bytes behind OPEN_OK in the same chunk reach the visitor byte-exact and first; a client that never answers OPEN fails the visitor and leaves no idle entry', async () => {
  const { server, stop, id, port } = await serverWithSession({ pool: 4, map: [`svc=tcp:127.0.0.1:9:${await closedPort()}`], openTimeoutMs: 300 });
  try {
    const answering = await dataPeer(port, id, 'secret');
    assert.ok(answering.ok);
    const visitor = server.openStream('svc', { address: '1.2.3.4', port: 5 });
    const open = await answering.peer.next();
    assert.equal(open?.type, FrameType.OPEN);
    assert.equal(JSON.parse(open!.payload.toString()).m, 'svc');
    const early = randomBytes(5000);
    answering.peer.socket.write(Buffer.concat([encodeFrame(FrameType.PONG, 0, 0, new Uint8Array(8)), encodeFrame(FrameType.OPEN_OK, 0, 0), early, Buffer.from('+tail')]));
    const conn = await visitor;
    const got: Uint8Array[] = [];
    let total = 0;
    conn.setHandler({ data: (_c, chunk) => ((total += chunk.byteLength), void got.push(chunk.slice())), end: () => undefined, close: () => undefined });
    await until(() => total >= early.byteLength + 5, 'the early bytes');
    assert.ok(Buffer.concat(got).equals(Buffer.concat([early, Buffer.from('+tail')])), 'byte-exact, in order');
    conn.destroy();
    // The silent one: the open fails within the open timeout, its connection is closed, the pool does not keep it.
    const silent = await dataPeer(port, id, 'secret');
    assert.ok(silent.ok);
    await assert.rejects(server.openStream('svc', { address: '1.2.3.4', port: 6 }), (error: Error & { code?: string }) => error.code === 'ETIMEDOUT');
    await until(() => silent.peer.closed, 'the silent data connection closed', 5000);
    assert.equal(server.clients()[0]!.idleDataConnections, 0);
  } finally {
    await stop();
  }
});

/** Just enough of a Conn for a DataLink fed by hand. */
function stubConn(): Conn & { written: Uint8Array[] } {
  const written: Uint8Array[] = [];
  const conn = {
    written,
    userData: undefined as unknown,
    closed: false,
    setNoDelay() {},
    setHandler(_handler: ConnHandler) {},
    write(chunk: Uint8Array) {
      written.push(chunk);
      return true;
    },
    end() {},
    destroy() {
      conn.closed = true;
    },
  };
  return conn as unknown as Conn & { written: Uint8Array[] };
}

test('DataLink under random chunking: the frames, then (after a detach at OPEN_OK) exactly the raw bytes', () => {
  const frameArb = fc.record({ type: fc.constantFrom(FrameType.PONG, FrameType.PING, FrameType.OPEN, FrameType.AUTH), flags: fc.integer({ min: 0, max: 255 }), payload: fc.uint8Array({ maxLength: 300 }) });
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 3 }), fc.uint8Array({ maxLength: 2000 }), fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 40 }), fc.nat(4), (frames, raw, cuts, listenAt) => {
      const head = Buffer.concat([...frames.map((f) => encodeFrame(f.type, f.flags, 0, f.payload)), encodeFrame(FrameType.OPEN_OK, 0, 0)]);
      const wire = Buffer.concat([head, raw]);
      // Frames queue (4 at most) until listen(), as in a handshake; the frame that detaches is handled live (no raw byte follows a queued frame).
      const link = new DataLink(stubConn());
      const seen: DataFrame[] = [];
      let rest: Uint8Array[] | undefined;
      let listening = false;
      const onFrame = (l: DataLink, frame: DataFrame): void => {
        if (frame.type !== FrameType.OPEN_OK) {
          seen.push(frame);
          return;
        }
        const left = l.detach();
        rest = left ? [left] : [];
      };
      // Chunks are views of one reused buffer, as a runtime's read buffer may be: the link must copy what it keeps.
      const scratch = new Uint8Array(wire.byteLength);
      let at = 0;
      for (let i = 0; at < wire.byteLength; i++) {
        const size = Math.min(cuts[i % cuts.length]!, wire.byteLength - at);
        if (!listening && (i >= listenAt || at + size >= head.byteLength)) {
          listening = true;
          link.listen(onFrame, () => undefined);
        }
        scratch.set(wire.subarray(at, at + size), 0);
        const chunk = scratch.subarray(0, size);
        if (rest) rest.push(chunk.slice());
        else link.push(chunk);
        scratch.fill(0xee, 0, size);
        at += size;
      }
      assert.ok(!link.closed, 'no frame refused');
      assert.deepEqual(seen.map((f) => [f.type, f.flags, Buffer.from(f.payload).toString('hex')]), frames.map((f) => [f.type, f.flags, Buffer.from(f.payload).toString('hex')]));
      assert.ok(rest, 'OPEN_OK seen');
      assert.ok(Buffer.concat(rest).equals(Buffer.from(raw)), 'exactly the raw bytes, in order');
    }),
    { numRuns: 500, seed: 7 },
  );
});

/**
 * A hostile tunnel server: a genuine session handshake announcing a pool,
 * genuine data handshakes, then `script` on each data connection (in order).
 */
async function hostileServer(token: string, pool: number, scripts: Array<(link: DataLink) => void>) {
  await runtimeReady();
  const sessionId = 'feedfeedfeedfeed';
  const serverId = 'evil';
  const conns = new Set<Conn>();
  let dataConns = 0;
  const listener = await runtime().listen({
    host: '127.0.0.1',
    port: 0,
    onConnection: (conn) => {
      conns.add(conn);
      peekFirstBytes(conn, 5000, (c, first) => {
        if ((first[1]! & DATA_CONNECTION_FLAG) === 0) {
          const mux = new Mux(c, { side: 'server' });
          const handshake = serverHandshake(mux, { credentials: [{ name: 'c', token }], serverId, settings: { heartbeatMs: 60_000, sessionId, dataPool: pool } });
          mux.onData(first);
          handshake.then(() => mux.setEvents({ control: () => undefined }), () => undefined);
          return;
        }
        const link = new DataLink(c, first);
        const script = scripts[dataConns++];
        void (async () => {
          const hello = await link.next(5000, 'HELLO');
          const clientNonce = hello.payload.subarray(MAGIC.length + 1, MAGIC.length + 33);
          const serverNonce = randomBytes(32);
          link.send(FrameType.CHALLENGE, Buffer.concat([Buffer.from([PROTOCOL_VERSION]), serverNonce, Buffer.from(serverId)]));
          await link.next(5000, 'AUTH');
          link.send(FrameType.AUTH_OK, dataMac(token, 'server', sessionId, serverNonce, clientNonce, serverId));
          if (script) script(link);
        })().catch(() => undefined);
      });
    },
  });
  return {
    port: listener.port,
    dataConns: () => dataConns,
    close() {
      listener.close();
      for (const conn of conns) conn.destroy();
    },
  };
}

test('a hostile server: OPEN with bad JSON, for a mapping the client lacks, for its udp mapping, a giant frame, a second OPEN; the client refuses, never reaches a local service it was not told, and keeps its pool', async () => {
  let accepted = 0;
  const local = await trackedServer((socket) => {
    accepted++;
    socket.on('data', () => undefined);
  });
  const answers: Array<{ type: number; payload: string } | 'closed'> = [];
  const answer = (link: DataLink) => {
    link.listen(
      (_l, frame) => answers.push({ type: frame.type, payload: Buffer.from(frame.payload).toString() }),
      () => answers.push('closed'),
    );
  };
  const open = (m: unknown) => Buffer.from(JSON.stringify({ m, a: '1.2.3.4', p: 1 }));
  const scripts: Array<(link: DataLink) => void> = [
    (link) => (link.send(FrameType.OPEN, Buffer.from('{not json')), answer(link)),
    (link) => (link.send(FrameType.OPEN, Buffer.from('null')), answer(link)),
    (link) => (link.send(FrameType.OPEN, open('elsewhere')), answer(link)),
    (link) => (link.send(FrameType.OPEN, open('dns')), answer(link)),
    // Not a string: String() of it throws (the client used to hang this connection, and close its session on the mux).
    (link) => (link.send(FrameType.OPEN, open({ toString: 1 })), answer(link)),
    (link) => {
      // Two OPENs back to back: one local connection; the second OPEN is never served.
      link.conn.write(Buffer.concat([encodeFrame(FrameType.OPEN, 0, 0, open('svc')), encodeFrame(FrameType.OPEN, 0, 0, open('svc'))]));
      answer(link);
    },
    (link) => {
      const giant = Buffer.from(encodeFrame(FrameType.PING, 0, 0));
      giant.writeUInt32BE(0x40000000, 6);
      link.conn.write(giant);
      answer(link);
    },
  ];
  const server = await hostileServer('secret', 2, scripts);
  const client = new TunnelClient({
    server: `127.0.0.1:${server.port}`,
    token: 'secret',
    tls: false,
    backoffInitialMs: 20,
    mappings: [parseMapSpec(`svc=tcp:127.0.0.1:${local.port}:10000`), parseMapSpec('dns=udp:127.0.0.1:53:10001')],
  });
  const events: string[] = [];
  client.on('disconnected', (e?: Error) => void events.push(`disconnected ${e?.message}`));
  client.on('retry', (e: Error) => events.push(`retry ${e?.message}`));
  client.on('connected', () => events.push('connected'));
  client.start();
  try {
    await until(() => answers.filter((a) => a === 'closed').length >= scripts.length - 1 && server.dataConns() > scripts.length, 'every script answered and the pool refilled', 5000).catch((error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(answers)}, ${server.dataConns()} data connections, ${events.join('; ')}`);
    });
    const fails = answers.filter((a) => a !== 'closed' && a.type === FrameType.OPEN_FAIL).map((a) => (a as { payload: string }).payload);
    assert.equal(fails.length, 5, `five OPEN_FAILs: ${JSON.stringify(answers)}`);
    assert.match(fails[0]!, /bad OPEN/);
    assert.match(fails[1]!, /bad OPEN/);
    assert.match(fails[2]!, /no mapping "elsewhere"/);
    assert.match(fails[3]!, /udp/);
    assert.match(fails[4]!, /bad OPEN/);
    assert.ok(answers.some((a) => a !== 'closed' && a.type === FrameType.OPEN_OK), 'the first of two OPENs served');
    assert.equal(accepted, 1, 'one local connection: the OPEN for svc; no other reached a local service');
    assert.equal(client.status().connected, true);
  } finally {
    // The served visitor is still open: no drain.
    await client.stop({ deadlineMs: 0 });
    server.close();
    await local.close();
  }
});

test('a server (or middlebox) that closes each data connection after its handshake is not redialled before the retry delay', async () => {
  const scripts = Array.from({ length: 100_000 }, () => (link: DataLink) => link.close());
  const server = await hostileServer('secret', 2, scripts);
  // The retry delay is far beyond the test: every dial seen is one made at once.
  const client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: false, backoffInitialMs: 60_000, mappings: [] });
  client.start();
  try {
    await until(() => server.dataConns() >= 2, 'the first pool');
    await delay(300);
    // It redialled at once before: 4 432 data connections in a second (backoffInitialMs 200, Node).
    assert.equal(server.dataConns(), 2, 'no dial after the closes');
    assert.equal(client.status().connected, true);
  } finally {
    await client.stop({ deadlineMs: 0 });
    server.close();
  }
});

test('a server that pings an idle data connection without reading the PONGs: the client closes it (its write backlog grew without end)', async () => {
  const ping = encodeFrame(FrameType.PING, 0, 0, new Uint8Array(8));
  const burst = Buffer.concat(Array.from({ length: 1 << 16 }, () => ping));
  let sent = 0;
  let closed = false;
  const flood = async (link: DataLink): Promise<void> => {
    // Not read from now on (what came before the pause took effect is dropped).
    let wake: (() => void) | undefined;
    link.detach();
    link.conn.setHandler({ data: () => undefined, drain: () => wake?.(), close: () => wake?.() });
    link.conn.pause();
    // Up to 64 MiB of PINGs, each burst once the client took the last (the PONGs fill both sockets' buffers after a few MiB), until the client gives up.
    while (!link.conn.closed && sent < 64 * 1024 * 1024) {
      sent += burst.byteLength;
      if (!link.conn.write(burst)) await new Promise<void>((resolve) => (wake = resolve));
    }
    closed = link.conn.closed;
  };
  let idle: DataLink | undefined;
  const server = await hostileServer('secret', 1, [(link) => void (idle = link)]);
  const client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: false, backoffInitialMs: 60_000, mappings: [] });
  client.start();
  try {
    // Pings before the client's AUTH_OK is read fill its handshake queue instead: the flood starts once the connection is in its pool.
    await until(() => idle !== undefined && (client as unknown as { idleData: Set<unknown> }).idleData.size === 1, 'the idle data connection');
    await flood(idle!);
    assert.ok(closed, `the client closed the data connection (after ${sent} bytes of PINGs)`);
  } finally {
    await client.stop({ deadlineMs: 0 });
    server.close();
  }
});

test('mappings the server never answers fail when the session closes, not 10 s later (their timer held the process)', async () => {
  const server = await hostileServer('secret', 0, []);
  const client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: false, backoffInitialMs: 60_000, mappings: [] });
  const connected = new Promise((resolve) => client.once('connected', resolve));
  client.start();
  try {
    await connected;
    const pending = client.reload([]);
    server.close();
    await assert.rejects(pending, { code: 'ECONNRESET' });
  } finally {
    await client.stop({ deadlineMs: 0 });
    server.close();
  }
});
