// The tunnel port under a flood: connections that never authenticate, a peer
// that pings without reading; and the visitor's address on every carrier.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Logger, createSelfSignedCertificate, type Conn, type ConnHandler } from '@wmproxy/core-net';
import { closedPort, trackedServer } from '@wmproxy/testkit';
import { FrameType, Mux, TunnelClient, TunnelServer, encodeFrame, parseMapSpec } from '../src/index.js';
import { until } from './helpers.js';

/** A socket from `localAddress` that sends nothing; `closed` turns true when the server closes it. */
function silentPeer(port: number, localAddress = '127.0.0.1') {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  const peer = { socket, closed: false };
  socket.on('error', () => undefined);
  socket.on('close', () => (peer.closed = true));
  return peer;
}

test('handshakes in progress are capped per address and in all: beyond, a connection is closed at once, one log line for a flood; authenticated ones do not count', async () => {
  const lines: string[] = [];
  const logger = new Logger({ level: 'warn', sink: { write: (line) => void lines.push(line) } });
  // The handshake timeout is far beyond the test: every close seen is a refusal.
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, handshakeTimeoutMs: 60_000, dataPool: 2, maxHandshakes: 3, maxHandshakesPerIp: 2, logger }).start();
  const peers: Array<ReturnType<typeof silentPeer>> = [];
  let client: TunnelClient | undefined;
  try {
    peers.push(silentPeer(server.port), silentPeer(server.port));
    await until(() => server.pendingHandshakes === 2, 'two handshakes in progress');
    const third = silentPeer(server.port);
    await until(() => third.closed, 'the third from the same address closed');
    peers.push(silentPeer(server.port, '127.0.0.2'));
    await until(() => server.pendingHandshakes === 3, 'one from another address');
    // A flood from a fourth address: the global cap.
    const flood = Array.from({ length: 50 }, () => silentPeer(server.port, '127.0.0.3'));
    await until(() => flood.every((peer) => peer.closed), 'the flood closed');
    assert.equal(server.pendingHandshakes, 3);
    assert.ok(peers.every((peer) => !peer.closed), 'the first three still wait for their handshake');
    const refusals = lines.filter((line) => line.includes('tunnel handshakes over the limit'));
    assert.equal(refusals.length, 1, `one line for 51 refusals: ${refusals.join('\n')}`);
    // The stalled ones gone, a genuine client gets in; its session and data connections stop counting once authenticated.
    for (const peer of peers) peer.socket.destroy();
    await until(() => server.pendingHandshakes === 0, 'the stalled handshakes uncounted');
    client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: false, backoffInitialMs: 50, mappings: [] });
    client.start();
    await client.ready();
    await until(() => server.clients()[0]?.idleDataConnections === 2, 'the pool');
    assert.equal(server.pendingHandshakes, 0);
    const more = [silentPeer(server.port), silentPeer(server.port)];
    await until(() => server.pendingHandshakes === 2, 'two more from the client address: its three authenticated connections do not count');
    for (const peer of more) peer.socket.destroy();
  } finally {
    for (const peer of peers) peer.socket.destroy();
    await client?.stop();
    await server.stop({ deadlineMs: 0 });
  }
});

test('on a TLS port too: connections that never start TLS are capped per address and dropped at the handshake timeout (Node: before the TLS layer hands them over)', async () => {
  const pair = createSelfSignedCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'] });
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: { cert: pair.cert, key: pair.key }, handshakeTimeoutMs: 60_000, maxHandshakesPerIp: 2 }).start();
  const quick = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: { cert: pair.cert, key: pair.key }, handshakeTimeoutMs: 300 }).start();
  const peers = [silentPeer(server.port), silentPeer(server.port), silentPeer(server.port)];
  let client: TunnelClient | undefined;
  try {
    // Two are held (node:tls in its handshake), one is closed at once.
    await until(() => peers.some((peer) => peer.closed), 'one of three closed');
    assert.equal(peers.filter((peer) => peer.closed).length, 1, 'two wait');
    // Silent from the start: closed by the handshake timeout (node:tls's own is 120 s).
    const silent = silentPeer(quick.port);
    await until(() => silent.closed, 'a silent connection closed by the 300 ms handshake timeout');
    for (const peer of peers) peer.socket.destroy();
    client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: { fingerprint: server.fingerprint! }, mappings: [] });
    client.start();
    await client.ready();
  } finally {
    for (const peer of peers) peer.socket.destroy();
    await client?.stop();
    await server.stop({ deadlineMs: 0 });
    await quick.stop({ deadlineMs: 0 });
  }
});

test('a flood of failed handshakes (junk, not our protocol) is a few log lines, not one or two per connection', async () => {
  const lines: string[] = [];
  const logger = new Logger({ level: 'info', sink: { write: (line) => void lines.push(line) } });
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, logger }).start();
  try {
    lines.length = 0;
    const peers = Array.from({ length: 60 }, () => {
      const peer = silentPeer(server.port);
      peer.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      // Read (and drop) the server's GOAWAY: its FIN then closes the socket.
      peer.socket.resume();
      return peer;
    });
    await until(() => peers.every((peer) => peer.closed), 'every junk connection closed');
    const warnings = lines.filter((line) => line.includes('WARN'));
    // Two warn lines per connection before (a protocol error, then the refusal): 120.
    assert.ok(warnings.length > 0 && warnings.length <= 20, `${warnings.length} warn lines for 60 failed handshakes:\n${warnings.slice(0, 5).join('')}`);
    assert.ok(warnings.every((line) => line.includes('tunnel client refused')), 'the refusals, with their reason');
  } finally {
    await server.stop({ deadlineMs: 0 });
  }
});

/** A Conn whose peer never reads: every write reports backpressure, nothing drains. */
function stalledConn(): Conn & { written: Uint8Array[] } {
  const conn = {
    id: 1,
    remoteAddress: '127.0.0.1',
    remotePort: 1,
    localAddress: '127.0.0.1',
    localPort: 2,
    bytesRead: 0,
    bytesWritten: 0,
    closed: false,
    peerEnded: false,
    userData: undefined as unknown,
    tracker: undefined,
    written: [] as Uint8Array[],
    write(chunk: Uint8Array) {
      conn.written.push(chunk);
      return false;
    },
    end() {},
    destroy() {
      conn.closed = true;
    },
    reset() {
      conn.closed = true;
    },
    pause() {},
    resume() {},
    setNoDelay() {},
    setHandler(_handler: ConnHandler) {},
  };
  return conn as unknown as Conn & { written: Uint8Array[] };
}

test('a peer that sends PINGs without reading gets one PONG queued, not one per PING (before its handshake too)', async () => {
  const conn = stalledConn();
  const mux = new Mux(conn, { side: 'server' });
  const ping = encodeFrame(FrameType.PING, 0, 0, new Uint8Array(8));
  const burst = Buffer.concat(Array.from({ length: 4096 }, () => ping));
  // 80 000 PINGs (1.4 MiB of PONGs before): some flushes get through to the stalled connection, the rest wait.
  for (let round = 0; round < 20; round++) {
    mux.onData(burst);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const queued = (mux as unknown as { control: Uint8Array[] }).control.length;
  assert.equal(mux.closed, false, 'the session lives: its answers are bounded');
  assert.ok(queued <= 1, `one PONG at most waits (${queued})`);
  assert.ok(conn.written.length <= 2, `one write before the backpressure (${conn.written.length})`);
  mux.destroy();
});

test('a peer that opens streams beyond the limit without reading the refusals: its session ends once 1 MiB of them waits, not later', async () => {
  const conn = stalledConn();
  const mux = new Mux(conn, { side: 'server', maxStreams: 1 });
  mux.established = true;
  let id = 1;
  let most = 0;
  // 40 000 OPENs (about 1.5 MiB of OPEN_FAILs): the peer's streams are odd.
  for (let round = 0; round < 40 && !mux.closed; round++) {
    const opens = Buffer.concat(Array.from({ length: 1000 }, () => encodeFrame(FrameType.OPEN, 0, (id += 2), new Uint8Array(0))));
    mux.onData(opens);
    most = Math.max(most, (mux as unknown as { controlBytes: number }).controlBytes);
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(mux.closed, true, 'the session ended: its peer reads nothing');
  assert.ok(most <= 1024 * 1024 + 64, `at most 1 MiB (and the frame that passed it) of answers queued (${most})`);
});

test('a proxy mapping shows the visitor address to the client side forward proxy, on a data connection and on a mux stream', async () => {
  const web = await trackedServer((socket) => {
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'));
  });
  try {
    for (const dataPool of [2, 0]) {
      const publicPort = await closedPort();
      const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, dataPool, dataPromoteBytes: 0 }).start();
      // The tunnel server is 127.0.0.1 to the client; the visitor comes from 127.0.0.2, the one address the proxy lets in.
      const lines: string[] = [];
      const client = new TunnelClient({
        server: `127.0.0.1:${server.port}`,
        token: 'secret',
        tls: false,
        mappings: [parseMapSpec(`out=proxy::${publicPort}`)],
        // The web service stands for the private network: loopback, which the proxy refuses unless told.
        proxy: { clientPolicy: { allow: ['127.0.0.2'] }, destinationDeny: [], logger: new Logger({ level: 'debug', sink: { write: (line) => void lines.push(line) } }) },
      });
      client.start();
      try {
        await client.ready();
        if (dataPool > 0) await until(() => server.clients()[0]?.idleDataConnections === dataPool, 'the pool');
        let visitorPort = 0;
        const reply = await new Promise<string>((resolve, reject) => {
          const socket = net.connect({ host: '127.0.0.1', port: publicPort, localAddress: '127.0.0.2' });
          socket.on('connect', () => (visitorPort = socket.localPort!));
          const chunks: Buffer[] = [];
          socket.on('data', (chunk) => chunks.push(chunk));
          socket.on('error', reject);
          // The reply ends with the proxy's FIN (a refusal lingers until the visitor closes).
          socket.on('end', () => {
            resolve(Buffer.concat(chunks).toString());
            socket.destroy();
          });
          socket.write(`GET http://127.0.0.1:${web.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${web.port}\r\nConnection: close\r\n\r\n`);
        });
        assert.match(reply, /^HTTP\/1\.1 200[\s\S]*ok$/, `pool ${dataPool}: ${reply.slice(0, 60)}`);
        assert.equal(server.clients()[0]!.dataStreams, dataPool > 0 ? 1 : 0, 'the carrier tested');
        // Its port too: the proxy's log names the client.
        assert.ok(lines.some((line) => line.includes(`127.0.0.2:${visitorPort}`)), `pool ${dataPool}: the visitor 127.0.0.2:${visitorPort} in the proxy log:\n${lines.join('\n')}`);
      } finally {
        await client.stop();
        await server.stop({ deadlineMs: 0 });
      }
    }
  } finally {
    await web.close();
  }
});

test('a client fills a large pool in waves, within the server handshake limit per address (not a burst of refused dials)', async () => {
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, dataPool: 64, maxHandshakesPerIp: 16 }).start();
  // A refused dial waits out the retry delay, far beyond the test.
  const client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: false, backoffInitialMs: 60_000, mappings: [] });
  // Dials in flight, at most: whether a burst is refused depends on how fast the server's handshakes end (on Node they often end before the burst's last connect).
  let dialing = 0;
  let most = 0;
  Object.defineProperty(client, 'dialing', {
    get: () => dialing,
    set: (value: number) => {
      dialing = value;
      most = Math.max(most, value);
    },
  });
  client.start();
  try {
    await client.ready();
    await until(() => server.clients()[0]?.idleDataConnections === 64, 'the pool of 64');
    assert.ok(most <= 16, `at most 16 dials at once (${most})`);
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
  }
});
