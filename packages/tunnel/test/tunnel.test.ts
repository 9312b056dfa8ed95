// Server and client end to end on loopback: every mapping kind, TLS with a
// self-signed certificate pinned by fingerprint, auth failures, disallowed
// ports, reconnect after a server restart, hot reload, visitors while the
// client is away, PROXY protocol, openStream for other engines.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger, NetError, type LogSink } from '@wmproxy/core-net';
import { closedPort, trackedServer } from '@wmproxy/testkit';
import { TunnelClient, TunnelServer, parseMapSpec, type TunnelServerOptions, type TunnelClientOptions, type ClientSnapshot } from '../src/index.js';
import { until, delay } from './helpers.js';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function memoryLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink: LogSink = { write: (line) => lines.push(line) };
  return { logger: new Logger({ level: 'debug', sink }), lines };
}

async function echoServer(): Promise<{ port: number; close(): Promise<void> }> {
  return trackedServer((socket) => {
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('end', () => socket.end());
  });
}

/** Connect to a public port, send `text`, half-close, read everything back (a reset ends it like a close). */
function roundTrip(port: number, text: string | Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' || error.code === 'EPIPE' ? undefined : reject(error)));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.end(text);
  });
}

async function start(server: Partial<TunnelServerOptions>, client: Partial<TunnelClientOptions> & { map?: string[] }) {
  const tunnelServer = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000, ...server }).start();
  const tunnelClient = new TunnelClient({
    server: `127.0.0.1:${tunnelServer.port}`,
    token: 'secret',
    tls: false,
    backoffInitialMs: 50,
    backoffMaxMs: 200,
    mappings: (client.map ?? []).map(parseMapSpec),
    ...client,
  });
  return { server: tunnelServer, client: tunnelClient };
}

async function freePort(): Promise<number> {
  return closedPort();
}

test('tcp mapping over TLS with a self-signed certificate kept in the state directory and pinned by the client', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-tunnel-'));
  dirs.push(dir);
  const echo = await echoServer();
  const publicPort = await freePort();
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', stateDir: dir, heartbeatMs: 1000 }).start();
  assert.match(server.fingerprint!, /^SHA256:[A-Za-z0-9+/]{43}$/);
  // The key is private and the certificate survives a restart.
  assert.equal(statSync(join(dir, 'tunnel-key.pem')).mode & 0o777, 0o600);
  const cert = readFileSync(join(dir, 'tunnel-cert.pem'), 'utf8');
  const client = new TunnelClient({
    server: `127.0.0.1:${server.port}`,
    token: 'secret',
    tls: { fingerprint: server.fingerprint! },
    mappings: [parseMapSpec(`db=tcp:127.0.0.1:${echo.port}:${publicPort}`)],
  }).start();
  try {
    const results = await client.ready();
    assert.deepEqual(results, [{ name: 'db', ok: true }]);
    const reply = await roundTrip(publicPort, 'hello through the tunnel');
    assert.equal(reply.toString(), 'hello through the tunnel');
    const [snapshot] = server.clients();
    assert.equal(snapshot!.mappings[0]!.name, 'db');
    assert.ok(snapshot!.bytesIn > 0 && snapshot!.bytesOut > 0);
  } finally {
    await client.stop({ deadlineMs: 100 });
    await server.stop({ deadlineMs: 100 });
    await echo.close();
  }
  const again = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', stateDir: dir }).start();
  assert.equal(again.fingerprint, server.fingerprint);
  assert.equal(readFileSync(join(dir, 'tunnel-cert.pem'), 'utf8'), cert);
  await again.stop({ deadlineMs: 0 });
});

test('a client pinning another fingerprint refuses the server and retries with backoff', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-tunnel-'));
  dirs.push(dir);
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', stateDir: dir }).start();
  const client = new TunnelClient({
    server: `127.0.0.1:${server.port}`,
    token: 'secret',
    tls: { fingerprint: 'SHA256:' + Buffer.alloc(32, 1).toString('base64').replace(/=+$/, '') },
    backoffInitialMs: 50,
    mappings: [],
  });
  const errors: Error[] = [];
  client.on('retry', (error) => errors.push(error));
  client.start();
  try {
    await until(() => errors.length >= 1, 'a failed attempt');
    assert.equal((errors[0] as NetError).code, 'EPROTO');
    assert.match(errors[0]!.message, /is not the pinned/);
    assert.equal(server.clients().length, 0);
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
  }
});

test('a wrong token is refused with a clear error on both sides, and the client backs off instead of hot-looping', async () => {
  const { logger, lines } = memoryLogger();
  const { server, client } = await start({ logger }, { token: 'wrong', backoffInitialMs: 200, backoffMaxMs: 5000 });
  const errors: Error[] = [];
  const delays: number[] = [];
  client.on('retry', (error, delayMs) => {
    errors.push(error);
    delays.push(delayMs);
  });
  client.start();
  try {
    await until(() => errors.length >= 3, 'three refusals', 20_000);
    assert.equal((errors[0] as NetError).code, 'EAUTH');
    assert.match(errors[0]!.message, /tunnel server refused: authentication failed: wrong token/);
    assert.ok(lines.some((line) => line.includes('tunnel client refused') && line.includes('wrong token')), 'the server logged the refusal');
    // Exponential backoff: each wait's ceiling doubles (jitter keeps it within [base/2, base]).
    assert.ok(delays[0]! >= 100 && delays[0]! <= 200, `first delay ${delays[0]}`);
    assert.ok(delays[2]! >= 400 && delays[2]! <= 800, `third delay ${delays[2]}`);
    assert.equal(server.clients().length, 0);
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
  }
});

test('a replayed handshake fails: the captured AUTH was bound to an earlier server nonce', async () => {
  const { logger, lines } = memoryLogger();
  // The session's handshake only: data connections would go through the recorder too.
  const { server, client } = await start({ logger, dataPool: 0 }, {});
  // Record every byte the client sends through a recording relay.
  const recorded: Buffer[] = [];
  const recorder = await trackedServer((socket) => {
    const upstream = net.connect({ host: '127.0.0.1', port: server.port });
    socket.on('data', (chunk) => {
      recorded.push(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => socket.write(chunk));
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
  });
  const recordedClient = new TunnelClient({ server: `127.0.0.1:${recorder.port}`, token: 'secret', tls: false, mappings: [] }).start();
  try {
    await recordedClient.ready();
    await recordedClient.stop();
    await until(() => server.clients().length === 0, 'the recorded session to end');
    const joined: string[] = [];
    server.on('client-joined', (snapshot) => joined.push(snapshot.name));
    const capture = Buffer.concat(recorded);
    // Replay the capture to the server: the AUTH answers an old challenge.
    const answer = await new Promise<Buffer>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: server.port });
      const chunks: Buffer[] = [];
      socket.on('data', (chunk) => chunks.push(chunk));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(Buffer.concat(chunks)));
      socket.write(capture);
    });
    assert.match(answer.toString('latin1'), /authentication failed: wrong token/);
    assert.deepEqual(joined, []);
    assert.ok(lines.some((line) => line.includes('tunnel client refused')));
  } finally {
    await client.stop();
    await recorder.close();
    await server.stop({ deadlineMs: 0 });
  }
});

test('a disallowed port is refused with a clear reason on both sides; the other mappings work', async () => {
  const { logger, lines } = memoryLogger();
  const clientLog = memoryLogger();
  const echo = await echoServer();
  const allowed = await freePort();
  const { server, client } = await start(
    { logger, clients: [{ name: 'alice', token: 'alice-token', allowPorts: [{ from: allowed, to: allowed }] }], token: undefined },
    { token: 'alice-token', logger: clientLog.logger, map: [`ok=tcp:127.0.0.1:${echo.port}:${allowed}`, `no=tcp:127.0.0.1:${echo.port}:${allowed === 65000 ? 65001 : 65000}`] },
  );
  client.start();
  try {
    const results = await client.ready();
    assert.deepEqual(results[0], { name: 'ok', ok: true });
    assert.equal(results[1]!.ok, false);
    assert.match(results[1]!.reason!, /public port 6500\d is not allowed for client "alice" \(allowed: \d+\)/);
    assert.ok(lines.some((line) => line.includes('tunnel mapping refused') && line.includes('not allowed')), 'server log line');
    assert.ok(clientLog.lines.some((line) => line.includes('tunnel mapping refused by the server') && line.includes('not allowed')), 'client log line');
    assert.equal((await roundTrip(allowed, 'still fine')).toString(), 'still fine');
    // Not a reconnect loop: the session stays up.
    assert.equal(client.status().reconnects, 0);
    assert.equal(server.clients()[0]!.rejected[0]!.name, 'no');
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await echo.close();
  }
});

test('a public tcp port takes at most visitorLimits.maxConnectionsPerIp connections from one address; reload changes the limit', async () => {
  const echo = await echoServer();
  const publicPort = await freePort();
  const { server, client } = await start({ visitorLimits: { maxConnectionsPerIp: 2 } }, { map: [`e=tcp:127.0.0.1:${echo.port}:${publicPort}`] });
  client.start();
  const held: net.Socket[] = [];
  const hold = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: publicPort }, () => {
        socket.write('x');
        socket.once('data', () => resolve(socket));
      });
      socket.on('error', reject);
      held.push(socket);
    });
  try {
    await client.ready();
    await hold();
    await hold();
    // The third from the same address is closed at once, without a byte.
    assert.equal((await roundTrip(publicPort, 'third')).toString(), '');
    assert.equal(server.clients()[0]!.openStreams, 2, 'the refused visitor never reached the tunnel');
    server.reload({ token: 'secret', visitorLimits: { maxConnectionsPerIp: 3 } });
    assert.equal((await roundTrip(publicPort, 'third')).toString(), 'third');
  } finally {
    for (const socket of held) socket.destroy();
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await echo.close();
  }
});

test('a disallowed domain is refused for http mappings', async () => {
  const { server, client } = await start({ allowDomains: ['*.ok.test'] }, { map: ['a=http:127.0.0.1:8080@app.ok.test', 'b=http:127.0.0.1:8080@evil.test'] });
  client.start();
  try {
    const results = await client.ready();
    assert.equal(results[0]!.ok, true);
    assert.match(results[1]!.reason!, /domain evil\.test is not allowed/);
    assert.equal(server.matchHttp('http', 'x.app.ok.test'), undefined);
    assert.equal(server.matchHttp('http', 'APP.ok.test:80', '/x')?.name, 'a');
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
  }
});

test('udp mapping: datagrams up to 64 KiB travel whole, per visitor flow', async () => {
  const local = dgram.createSocket('udp4');
  local.on('message', (data, info) => local.send(Buffer.concat([Buffer.from('echo:'), data.subarray(0, 100)]), info.port, info.address));
  await new Promise<void>((resolve) => local.bind(0, '127.0.0.1', resolve));
  const localPort = (local.address() as net.AddressInfo).port;
  const publicPort = await freePort();
  const { server, client } = await start({}, { map: [`dns=udp:127.0.0.1:${localPort}:${publicPort}`] });
  client.start();
  let big = 0;
  local.on('message', (data) => {
    if (data.byteLength > 60_000) big = data.byteLength;
  });
  try {
    await client.ready();
    const visitor = dgram.createSocket('udp4');
    const replies: string[] = [];
    visitor.on('message', (data) => replies.push(data.toString()));
    await new Promise<void>((resolve) => visitor.bind(0, '127.0.0.1', resolve));
    // UDP is lossy: resend until answered.
    await until(() => {
      if (replies.length === 0) visitor.send(Buffer.from('query'), publicPort, '127.0.0.1');
      return replies.length > 0;
    }, 'a udp reply');
    assert.equal(replies[0], 'echo:query');
    const payload = Buffer.alloc(65_000, 7);
    await until(() => {
      if (big === 0) visitor.send(payload, publicPort, '127.0.0.1');
      return big > 0;
    }, 'the 65,000-byte datagram');
    assert.equal(big, 65_000);
    visitor.close();
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    local.close();
  }
});

test('proxy mapping: the public port is the client side forward proxy (HTTP and CONNECT)', async () => {
  const web = await trackedServer((socket) => {
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nintrane'));
  });
  const publicPort = await freePort();
  // The web service stands for the private network here: loopback, which the proxy refuses unless told (visitor-attack.test.ts).
  const { server, client } = await start({}, { map: [`out=proxy::${publicPort}`], proxy: { destinationDeny: [] }, openProxy: true });
  client.start();
  try {
    await client.ready();
    const plain = await roundTrip(publicPort, `GET http://127.0.0.1:${web.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${web.port}\r\nConnection: close\r\n\r\n`);
    assert.match(plain.toString(), /^HTTP\/1\.1 200[\s\S]*intrane$/);
    const tunnelled = await roundTrip(publicPort, `CONNECT 127.0.0.1:${web.port} HTTP/1.1\r\nHost: 127.0.0.1:${web.port}\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(tunnelled.toString(), /^HTTP\/1\.1 200[^]*HTTP\/1\.1 200 OK[^]*intrane$/);
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await web.close();
  }
});

test('proxy mapping: refused without users, an allow list or openProxy (an open proxy into the network); with users a visitor must authenticate', async () => {
  assert.throws(() => new TunnelClient({ server: '127.0.0.1:1', token: 'secret', tls: false, mappings: [parseMapSpec('out=proxy::18090')] }), /open proxy/);
  assert.throws(() => new TunnelClient({ server: '127.0.0.1:1', token: 'secret', tls: false, proxy: { clientPolicy: { allow: [] } }, mappings: [parseMapSpec('out=proxy::18090')] }), /open proxy/);
  const tcpOnly = new TunnelClient({ server: '127.0.0.1:1', token: 'secret', tls: false, mappings: [parseMapSpec('db=tcp:127.0.0.1:5432:15432')] });
  await assert.rejects(tcpOnly.reload([parseMapSpec('out=proxy::18090')]), /open proxy/, 'a reload adding one is refused too');
  const web = await trackedServer((socket) => {
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nintrane'));
  });
  const publicPort = await freePort();
  const { server, client } = await start({}, { map: [`out=proxy::${publicPort}`], proxy: { users: { ann: 'pw-of-ann' }, destinationDeny: [] } });
  client.start();
  try {
    await client.ready();
    const request = `GET http://127.0.0.1:${web.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${web.port}\r\nConnection: close\r\n`;
    assert.match((await roundTrip(publicPort, `${request}\r\n`)).toString(), /^HTTP\/1\.1 407 /);
    const auth = `Proxy-Authorization: Basic ${Buffer.from('ann:pw-of-ann').toString('base64')}\r\n`;
    assert.match((await roundTrip(publicPort, `${request}${auth}\r\n`)).toString(), /^HTTP\/1\.1 200[\s\S]*intrane$/);
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await web.close();
  }
});

test('PROXY protocol v1 and v2 tell the local service the real visitor address', async () => {
  const heads: Buffer[] = [];
  const local = await trackedServer((socket) => {
    socket.once('data', (chunk) => {
      heads.push(chunk);
      socket.end('ok');
    });
  });
  const p1 = await freePort();
  const p2 = await freePort();
  const { server, client } = await start({}, { map: [`v1=tcp:127.0.0.1:${local.port}:${p1},proxy-protocol=v1`, `v2=tcp:127.0.0.1:${local.port}:${p2},proxy-protocol=v2`] });
  client.start();
  try {
    await client.ready();
    const socket = net.connect({ host: '127.0.0.1', port: p1 });
    const sourcePort = await new Promise<number>((resolve) => socket.on('connect', () => resolve(socket.localPort!)));
    socket.write('x');
    await until(() => heads.length === 1, 'the v1 header');
    assert.match(heads[0]!.toString(), new RegExp(`^PROXY TCP4 127\\.0\\.0\\.1 127\\.0\\.0\\.1 ${sourcePort} ${p1}\\r\\n`));
    socket.destroy();
    await roundTrip(p2, 'y');
    await until(() => heads.length === 2, 'the v2 header');
    const v2 = heads[1]!;
    assert.deepEqual([...v2.subarray(0, 12)], [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
    assert.equal(v2[12], 0x21);
    assert.equal(v2[13], 0x11);
    assert.deepEqual([...v2.subarray(16, 20)], [127, 0, 0, 1]);
    assert.equal(v2.readUInt16BE(26), p2);
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await local.close();
  }
});

test('reconnect: after a server restart the client registers again and the public port works without a manual step', async () => {
  const echo = await echoServer();
  const publicPort = await freePort();
  const first = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false }).start();
  const controlPort = first.port;
  const client = new TunnelClient({ server: `127.0.0.1:${controlPort}`, token: 'secret', tls: false, backoffInitialMs: 50, backoffMaxMs: 200, mappings: [parseMapSpec(`db=tcp:127.0.0.1:${echo.port}:${publicPort}`)] }).start();
  let second: TunnelServer | undefined;
  try {
    await client.ready();
    assert.equal((await roundTrip(publicPort, 'before')).toString(), 'before');
    const registered = new Promise((resolve) => client.once('registered', resolve));
    await first.stop({ deadlineMs: 100 });
    second = await new TunnelServer({ listen: `127.0.0.1:${controlPort}`, token: 'secret', tls: false }).start();
    await registered;
    assert.equal((await roundTrip(publicPort, 'after')).toString(), 'after');
    assert.equal(client.status().reconnects, 1);
  } finally {
    await client.stop();
    await second?.stop({ deadlineMs: 0 });
    await echo.close();
  }
});

test('while the client is away the public port stays open: visitors are closed at once, or wait for its return', async () => {
  const echo = await echoServer();
  const publicPort = await freePort();
  const { server, client } = await start({ visitorWaitMs: 0 }, { map: [`db=tcp:127.0.0.1:${echo.port}:${publicPort}`] });
  client.start();
  try {
    await client.ready();
    const left = new Promise<ClientSnapshot>((resolve) => server.once('client-left', (snapshot) => resolve(snapshot)));
    await client.stop({ deadlineMs: 0 });
    assert.equal((await left).name, 'default');
    // Still listening, but nobody serves it: the visitor is closed without data.
    assert.equal((await roundTrip(publicPort, 'anyone?')).byteLength, 0);
    assert.deepEqual(server.mappings().map((m) => [m.mapping.name, m.clients.length, m.listening]), [['db', 0, true]]);
    // With a wait, a visitor that arrives while the client is away is served once it returns.
    server.reload({ visitorWaitMs: 5000 });
    const pending = roundTrip(publicPort, 'waited');
    await delay(50);
    client.start();
    assert.equal((await pending).toString(), 'waited');
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await echo.close();
  }
});

test('hot reload on the client adds and removes mappings without dropping an open stream', async () => {
  const echo = await echoServer();
  const [p1, p2] = [await freePort(), await freePort()];
  const { server, client } = await start({}, { map: [`a=tcp:127.0.0.1:${echo.port}:${p1}`] });
  client.start();
  try {
    await client.ready();
    // An open stream on mapping a.
    const socket = net.connect({ host: '127.0.0.1', port: p1 });
    const got: Buffer[] = [];
    socket.on('data', (chunk) => got.push(chunk));
    socket.write('one;');
    await until(() => Buffer.concat(got).toString() === 'one;', 'the first echo');
    const results = await client.reload([parseMapSpec(`a=tcp:127.0.0.1:${echo.port}:${p1}`), parseMapSpec(`b=tcp:127.0.0.1:${echo.port}:${p2}`)]);
    assert.deepEqual(results.map((r) => r.ok), [true, true]);
    assert.equal((await roundTrip(p2, 'via b')).toString(), 'via b');
    socket.write('two;');
    await until(() => Buffer.concat(got).toString() === 'one;two;', 'the open stream still echoing');
    // Removing b closes its public port; a's open stream continues.
    await client.reload([parseMapSpec(`a=tcp:127.0.0.1:${echo.port}:${p1}`)]);
    await assert.rejects(roundTrip(p2, 'gone'), /ECONNREFUSED/);
    socket.write('three;');
    await until(() => Buffer.concat(got).toString() === 'one;two;three;', 'the open stream after removing b');
    socket.destroy();
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await echo.close();
  }
});

test('openStream gives other engines a stream to a mapping; events report clients and mappings', async () => {
  const echo = await echoServer();
  // A mux stream carries the visitor's address (a data connection is the client's own connection: data.test.ts).
  const { server, client } = await start({ dataPool: 0 }, { map: [`web=http:127.0.0.1:${echo.port}@app.example.test`] });
  const joined: ClientSnapshot[] = [];
  server.on('client-joined', (snapshot) => joined.push(snapshot));
  let changes = 0;
  server.on('mappings-changed', () => changes++);
  client.start();
  try {
    await client.ready();
    assert.equal(joined.length, 1);
    assert.ok(changes >= 1);
    const stream = await server.openStream('web', { address: '203.0.113.9', port: 5555 });
    assert.equal(stream.remoteAddress, '203.0.113.9');
    const reply = new Promise<string>((resolve) => {
      let text = '';
      stream.setHandler({ data: (_c, chunk) => (text += Buffer.from(chunk).toString()), end: (c) => c.end(), close: () => resolve(text) });
    });
    stream.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    stream.end();
    assert.equal(await reply, 'GET / HTTP/1.1\r\n\r\n');
    await assert.rejects(server.openStream('nope', { address: '1.2.3.4', port: 1 }), /no tunnel mapping "nope"/);
    // The same through the core-net Transport the reverse proxy takes.
    const transport = server.transport();
    assert.equal(transport.kind, 'tunnel');
    const viaTransport = await transport.connect({ host: 'web', port: 0, key: 'web' }, 2000);
    const echoed = new Promise<string>((resolve) => viaTransport.setHandler({ data: (_c, chunk) => resolve(Buffer.from(chunk).toString()), close() {} }));
    viaTransport.write(Buffer.from('ping'));
    assert.equal(await echoed, 'ping');
    viaTransport.destroy();
    const [snapshot] = server.clients();
    assert.equal(typeof snapshot!.rttMs === 'number' || snapshot!.rttMs === undefined, true);
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await echo.close();
  }
});

test('a local service that refuses gives the visitor a prompt close and the server a reason', async () => {
  const dead = await closedPort();
  const publicPort = await freePort();
  const { server, client } = await start({}, { map: [`db=tcp:127.0.0.1:${dead}:${publicPort}`] });
  client.start();
  try {
    await client.ready();
    assert.equal((await roundTrip(publicPort, 'x')).byteLength, 0);
    await assert.rejects(server.openStream('db', { address: '1.2.3.4', port: 1 }), (error: NetError) => error.code === 'ECONNREFUSED' && /local service 127\.0\.0\.1:\d+ of mapping "db"/.test(error.message));
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
  }
});

test('mutual TLS: a client with a certificate from the server\'s client CA gets in; one without is refused', async () => {
  const { createSelfSignedCertificate } = await import('@wmproxy/core-net');
  const serverCert = createSelfSignedCertificate({ altNames: ['localhost', '127.0.0.1'] });
  const clientCert = createSelfSignedCertificate({ commonName: 'office', altNames: ['office'] });
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: { cert: serverCert.cert, key: serverCert.key, clientCa: clientCert.cert } }).start();
  const good = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: { ca: serverCert.cert, servername: 'localhost', cert: clientCert.cert, key: clientCert.key }, mappings: [] }).start();
  const bad = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: { ca: serverCert.cert, servername: 'localhost' }, backoffInitialMs: 50, mappings: [] });
  const failures: Error[] = [];
  bad.on('retry', (error) => failures.push(error));
  bad.start();
  try {
    await good.ready();
    await until(() => failures.length >= 1, 'the client without a certificate to fail');
    assert.equal(server.clients().length, 1);
  } finally {
    await good.stop();
    await bad.stop();
    await server.stop({ deadlineMs: 0 });
  }
});

test('graceful stop: open streams finish within the deadline, new visitors are refused', async () => {
  // A local service that answers slowly: 4 chunks, 50 ms apart.
  const local = await trackedServer((socket) => {
    let sent = 0;
    const timer = setInterval(() => {
      socket.write(`part${sent};`);
      if (++sent === 4) {
        clearInterval(timer);
        socket.end();
      }
    }, 50);
    socket.on('close', () => clearInterval(timer));
  });
  const publicPort = await freePort();
  const { server, client } = await start({}, { map: [`slow=tcp:127.0.0.1:${local.port}:${publicPort}`] });
  client.start();
  try {
    await client.ready();
    const reply = roundTrip(publicPort, '');
    await until(() => server.clients()[0]!.openStreams === 1, 'the stream to open');
    const stopped = server.stop({ deadlineMs: 5000 });
    assert.equal((await reply).toString(), 'part0;part1;part2;part3;');
    await stopped;
    await assert.rejects(roundTrip(publicPort, 'late'), /ECONNREFUSED/);
  } finally {
    await client.stop();
    await server.stop({ deadlineMs: 0 });
    await local.close();
  }
});
