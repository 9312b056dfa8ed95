// Attacks from the visitor side of a tunnel server's public ports, and by an
// authenticated but hostile tunnel client against other clients' mappings:
// what reaches the next hop (the client's local service) and who serves a name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort } from '@wmproxy/testkit';
import { Handoffs, TunnelClient, TunnelHttpFront, TunnelServer, TunnelTlsFront, TunnelWeb, parseMapSpec } from '../src/index.js';
import type { Conn } from '@wmproxy/core-net';
import { httpGet as get, until } from './helpers.js';

let dir = '';
function selfSigned(name: string): { cert: string; key: string } {
  const file = name.replace(/\*/g, 'star');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=DNS:${name}`, '-keyout', join(dir, `${file}.key`), '-out', join(dir, `${file}.pem`)], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, `${file}.pem`), 'utf8'), key: readFileSync(join(dir, `${file}.key`), 'utf8') };
}
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'wmproxy-tunnel-attack-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

/** The body of a GET made with `request` (http's or https'). */
function bodyOf(request: typeof https.request, options: https.RequestOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

function tunnelClient(server: TunnelServer, name: string, specs: string[]): TunnelClient {
  return new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', name, tls: false, backoffInitialMs: 50, backoffMaxMs: 200, mappings: specs.map(parseMapSpec) }).start();
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

test('udp: a burst of datagrams from one visitor before its flow is open makes one flow, not one stream per datagram', async () => {
  const local = dgram.createSocket('udp4');
  const sources = new Set<number>();
  let received = 0;
  local.on('message', (_data, info) => {
    received++;
    sources.add(info.port);
  });
  await new Promise<void>((resolve) => local.bind(0, '127.0.0.1', resolve));
  const publicPort = await closedPort();
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const client = tunnelClient(server, 'one', [`dns=udp:127.0.0.1:${(local.address() as net.AddressInfo).port}:${publicPort}`]);
  const visitor = dgram.createSocket('udp4');
  try {
    await client.ready();
    await new Promise<void>((resolve) => visitor.bind(0, '127.0.0.1', resolve));
    // All sent before the first flow's OPEN can be answered.
    for (let i = 0; i < 32; i++) visitor.send(Buffer.from(`q${i}`), publicPort, '127.0.0.1');
    await until(() => received > 0, 'a datagram at the local service');
    await new Promise((resolve) => setTimeout(resolve, 200));
    // One visitor address, one flow: one local socket, one stream on the session.
    assert.equal(sources.size, 1, `the local service saw ${sources.size} source ports for one visitor`);
    assert.equal(server.clients()[0]!.openStreams, 1);
  } finally {
    visitor.close();
    await client.stop({ deadlineMs: 0 });
    await server.stop({ deadlineMs: 0 });
    local.close();
  }
});

/** Connect to 127.0.0.1:`port`, write `text`, resolve with what comes back before the server ends (or '' on a refusal). */
function exchange(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.end(text));
    let got = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (got += chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(got));
  });
}

test('udp: one visitor spraying source ports cannot fill the client\'s stream budget and lock out its tcp visitors', async () => {
  const local = dgram.createSocket('udp4');
  const sources = new Set<number>();
  local.on('message', (_data, info) => sources.add(info.port));
  await new Promise<void>((resolve) => local.bind(0, '127.0.0.1', resolve));
  const echo = net.createServer((socket) => socket.pipe(socket));
  const echoPort = await listen(echo);
  const udpPort = await closedPort();
  const tcpPort = await closedPort();
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const client = tunnelClient(server, 'one', [`dns=udp:127.0.0.1:${(local.address() as net.AddressInfo).port}:${udpPort}`, `echo=tcp:127.0.0.1:${echoPort}:${tcpPort}`]);
  const sprayers: dgram.Socket[] = [];
  try {
    await client.ready();
    assert.equal(await exchange(tcpPort, 'before'), 'before');
    // As many source ports as a client session carries streams (4096 by default), and a few more.
    for (let i = 0; i < 4200; i++) {
      const socket = dgram.createSocket('udp4');
      sprayers.push(socket);
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    }
    // In waves the server's socket buffer holds (UDP drops the rest), until every port was heard or a bound stops them.
    for (let pass = 0; pass < 3; pass++) {
      for (let i = 0; i < sprayers.length; i++) {
        sprayers[i]!.send('x', udpPort, '127.0.0.1');
        if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(await exchange(tcpPort, 'after'), 'after', `a tcp visitor of the same client still gets through (${sources.size} udp flows)`);
    assert.ok(sources.size <= 2048, `${sources.size} udp flows`);
  } finally {
    for (const socket of sprayers) socket.close();
    await client.stop({ deadlineMs: 0 });
    await server.stop({ deadlineMs: 0 });
    local.close();
    echo.close();
  }
});

test('udp: visitorLimits.maxConnectionsPerIp bounds one address\'s flows, as it bounds its tcp connections; other addresses still get flows', async () => {
  const local = dgram.createSocket('udp4');
  const sources = new Map<number, string>();
  local.on('message', (data, info) => sources.set(info.port, data.toString()));
  await new Promise<void>((resolve) => local.bind(0, '127.0.0.1', resolve));
  const udpPort = await closedPort();
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000, visitorLimits: { maxConnectionsPerIp: 8 } }).start();
  const client = tunnelClient(server, 'one', [`dns=udp:127.0.0.1:${(local.address() as net.AddressInfo).port}:${udpPort}`]);
  const sockets: dgram.Socket[] = [];
  const from = async (address: string): Promise<dgram.Socket> => {
    const socket = dgram.createSocket('udp4');
    sockets.push(socket);
    await new Promise<void>((resolve) => socket.bind(0, address, resolve));
    return socket;
  };
  try {
    await client.ready();
    const spray = await Promise.all(Array.from({ length: 20 }, () => from('127.0.0.1')));
    const other = await from('127.0.0.2');
    for (let pass = 0; pass < 3; pass++) {
      for (const socket of spray) socket.send('spray', udpPort, '127.0.0.1');
      other.send('other', udpPort, '127.0.0.1');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await until(() => [...sources.values()].includes('other'), 'the other address\'s flow');
    assert.equal([...sources.values()].filter((text) => text === 'spray').length, 8);
  } finally {
    for (const socket of sockets) socket.close();
    await client.stop({ deadlineMs: 0 });
    await server.stop({ deadlineMs: 0 });
    local.close();
  }
});

test('a second client cannot claim the domain and path of another client\'s http mapping under another mapping name', async () => {
  const owner = http.createServer((_req, res) => res.end('owner'));
  const thief = http.createServer((_req, res) => res.end('thief'));
  const ownerPort = await listen(owner);
  const thiefPort = await listen(thief);
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const front = await new TunnelHttpFront(server, { listen: '127.0.0.1:0' }).start();
  const first = tunnelClient(server, 'owner', [`web=http:127.0.0.1:${ownerPort}@app.test`]);
  try {
    await first.ready();
    const second = tunnelClient(server, 'thief', [`steal=http:127.0.0.1:${thiefPort}@APP.test`]);
    try {
      const [result] = await second.ready();
      assert.equal(result!.ok, false, 'the claim of app.test/ by a second mapping is refused');
      assert.match(result!.reason ?? '', /app\.test.*web/);
      await front.sync();
      const port = portOf(front.addresses[0]!);
      for (let i = 0; i < 4; i++) assert.deepEqual(await get(port, 'app.test', `/${i}`), { status: 200, body: 'owner' });
      // Before, a second name at the same place was accepted, and took every visitor once the owner's route was
      // rebuilt (here: the owner adds basic auth, and the thief served app.test without it).
      await first.reload([parseMapSpec(`web=http:127.0.0.1:${ownerPort}@app.test,auth=u:p`)]);
      await front.sync();
      assert.equal((await get(port, 'app.test')).status, 401);
      // The owner itself may rename its mapping (the old name is dropped in the same registration).
      const [renamed] = await first.reload([parseMapSpec(`web2=http:127.0.0.1:${ownerPort}@app.test`)]);
      assert.equal(renamed!.ok, true, renamed!.reason);
    } finally {
      await second.stop({ deadlineMs: 0 });
    }
  } finally {
    await first.stop({ deadlineMs: 0 });
    await front.close();
    await server.stop({ deadlineMs: 0 });
    owner.close();
    thief.close();
  }
});

test('https port: a wildcard https mapping does not take a name an http mapping serves exactly (terminated), as on the http port', async () => {
  const wildCert = selfSigned('*.wild.test');
  const serverCert = selfSigned('a.wild.test');
  const wildService = https.createServer(wildCert, (_req, res) => res.end('wildcard service'));
  const exactService = http.createServer((_req, res) => res.end('exact service'));
  const wildPort = await listen(wildService);
  const exactPort = await listen(exactService);
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const terminator = await new TunnelHttpFront(server, { tlsListen: '127.0.0.1:0', tls: serverCert }).start();
  const front = await new TunnelTlsFront(server, { listen: '127.0.0.1:0', terminate: terminator.addresses[0]! }).start();
  const exact = tunnelClient(server, 'exact', [`a=http:127.0.0.1:${exactPort}@a.wild.test`]);
  const wild = tunnelClient(server, 'wild', [`wild=https:127.0.0.1:${wildPort}@*.wild.test`]);
  const visit = (servername: string): Promise<string> =>
    bodyOf(https.request, { host: '127.0.0.1', port: portOf(front.addresses[0]!), servername, path: '/', headers: { host: servername }, rejectUnauthorized: false, agent: false });
  try {
    await Promise.all([exact.ready(), wild.ready()]);
    await terminator.sync();
    assert.equal(await visit('a.wild.test'), 'exact service');
    assert.equal(await visit('b.wild.test'), 'wildcard service');
  } finally {
    await exact.stop({ deadlineMs: 0 });
    await wild.stop({ deadlineMs: 0 });
    await front.close(0);
    await terminator.close();
    await server.stop({ deadlineMs: 0 });
    wildService.close();
    exactService.close();
  }
});

test('https port, terminated: the local service sees the visitor\'s address, not the loopback hand-over (and never the visitor\'s own X-Forwarded-For)', async () => {
  const cert = selfSigned('seen.test');
  const service = http.createServer((req, res) => res.end(`${req.headers['x-forwarded-for']} ${req.headers['x-real-ip']}`));
  const servicePort = await listen(service);
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const web = await new TunnelWeb(server, { httpListen: '127.0.0.1:0', httpsListen: '127.0.0.1:0', httpsTls: cert }).start();
  const client = tunnelClient(server, 'one', [`seen=http:127.0.0.1:${servicePort}@seen.test`]);
  // From another loopback address than the hand-over's 127.0.0.1, with spoofed forwarding headers.
  const visit = (secure: boolean): Promise<string> => {
    const port = portOf((secure ? web.httpsAddresses : web.httpAddresses)[0]!);
    const options = { host: '127.0.0.1', localAddress: '127.0.0.2', port, servername: 'seen.test', path: '/', headers: { host: 'seen.test', 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6' }, rejectUnauthorized: false, agent: false };
    return bodyOf(secure ? https.request : http.request, options);
  };
  try {
    await client.ready();
    for (const engine of web.engines) await engine.sync();
    assert.equal(await visit(false), '127.0.0.2 127.0.0.2');
    for (let i = 0; i < 3; i++) assert.equal(await visit(true), '127.0.0.2 127.0.0.2');
  } finally {
    await client.stop({ deadlineMs: 0 });
    await web.close();
    await server.stop({ deadlineMs: 0 });
    service.close();
  }
});

test('handoffs match the TLS port\'s carrier and the listener\'s connection by loopback port, in either order; a closed or foreign one is not named', () => {
  const shown: string[] = [];
  const fake = (fields: Partial<Conn>): Conn => ({ closed: false, showPeer: (address: string, port: number) => shown.push(`${fields.remotePort ?? fields.localPort}=${address}:${port}`), ...fields }) as unknown as Conn;
  const handoffs = new Handoffs();
  // Node: the listener sees it after the TLS handshake, so after the TLS port named it.
  handoffs.name(fake({ localPort: 50001 }), '198.51.100.1', 1111);
  handoffs.onAccept(fake({ remoteAddress: '127.0.0.1', remotePort: 50001 }));
  // Bun: accepted first.
  handoffs.onAccept(fake({ remoteAddress: '127.0.0.1', remotePort: 50002 }));
  handoffs.name(fake({ localPort: 50002 }), '198.51.100.2', 2222);
  // A carrier that closed before its connection was accepted names nobody; nor does a non-loopback peer.
  handoffs.name(fake({ localPort: 50003, closed: true }), '198.51.100.3', 3333);
  handoffs.onAccept(fake({ remoteAddress: '127.0.0.1', remotePort: 50003 }));
  handoffs.name(fake({ localPort: 50004 }), '198.51.100.4', 4444);
  handoffs.onAccept(fake({ remoteAddress: '203.0.113.9', remotePort: 50004 }));
  assert.deepEqual(shown, ['50001=198.51.100.1:1111', '50002=198.51.100.2:2222']);
});

test('proxy mapping: a public visitor cannot use the client\'s forward proxy to reach the client host\'s loopback (a control API, local services) unless allowed', async () => {
  const secret = net.createServer((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret'));
  const secretPort = await listen(secret);
  const [guarded, open] = [await closedPort(), await closedPort()];
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', name: 'one', tls: false, openProxy: true, mappings: [parseMapSpec(`out=proxy::${guarded}`)] }).start();
  const allowing = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', name: 'two', tls: false, openProxy: true, proxy: { destinationDeny: [] }, mappings: [parseMapSpec(`lan=proxy::${open}`)] }).start();
  const get = (port: number): Promise<string> => exchange(port, `GET http://127.0.0.1:${secretPort}/ HTTP/1.1\r\nHost: 127.0.0.1:${secretPort}\r\nConnection: close\r\n\r\n`);
  const connect = (port: number): Promise<string> => exchange(port, `CONNECT 127.0.0.1:${secretPort} HTTP/1.1\r\nHost: 127.0.0.1:${secretPort}\r\n\r\n`);
  const socks = (port: number): Promise<string> =>
    new Promise((resolve) => {
      // SOCKS5, no auth, CONNECT 127.0.0.1:secretPort.
      const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(Buffer.from([5, 1, 0])));
      let got = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        if (got.length === 2) socket.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, secretPort >> 8, secretPort & 0xff]));
        if (got.length >= 4 && got[3] !== undefined && got.length >= 12 && got[1] === 0) socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(got.toString('latin1')));
    });
  try {
    await Promise.all([client.ready(), allowing.ready()]);
    assert.match(await get(guarded), /^HTTP\/1\.1 403/);
    assert.match(await connect(guarded), /^HTTP\/1\.1 403/);
    assert.doesNotMatch(await socks(guarded), /secret/);
    // The operator may open it (proxy.destinationDeny).
    assert.match(await get(open), /secret$/);
  } finally {
    await client.stop({ deadlineMs: 0 });
    await allowing.stop({ deadlineMs: 0 });
    await server.stop({ deadlineMs: 0 });
    secret.close();
  }
});

test('a client re-sending the same mappings changes nothing: no mappings-changed, so no engine rebuild per message', async () => {
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const specs = ['web=http:127.0.0.1:1@same.test', 'api=http:127.0.0.1:1@same.test/api'];
  const client = tunnelClient(server, 'one', specs);
  let changes = 0;
  const count = (): void => void changes++;
  try {
    await client.ready();
    server.on('mappings-changed', count);
    // A hostile client can send MAPPINGS in a loop; each used to rebuild the http front's engine (seconds with thousands of mappings).
    for (let i = 0; i < 5; i++) {
      const results = await client.reload(specs.map(parseMapSpec));
      assert.deepEqual(results.map((r) => r.ok), [true, true]);
    }
    assert.equal(changes, 0);
    // A real change still announces itself.
    await client.reload([parseMapSpec(specs[0]!)]);
    assert.equal(changes, 1);
  } finally {
    server.off('mappings-changed', count);
    await client.stop({ deadlineMs: 0 });
    await server.stop({ deadlineMs: 0 });
  }
});

test('http port: dot segments, encoded dots and doubled slashes cannot reach a basic-auth path through an open mapping; CL+TE and obs-fold never reach a local service', async () => {
  const seen: string[] = [];
  const open = http.createServer((req, res) => {
    seen.push(`open ${req.url}`);
    res.end('open');
  });
  const admin = http.createServer((req, res) => {
    seen.push(`admin ${req.url} auth=${req.headers.authorization ?? '-'}`);
    res.end('admin');
  });
  const [openPort, adminPort] = [await listen(open), await listen(admin)];
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const front = await new TunnelHttpFront(server, { listen: '127.0.0.1:0' }).start();
  const first = tunnelClient(server, 'site', [`site=http:127.0.0.1:${openPort}@app.test`]);
  const second = tunnelClient(server, 'admin', [`admin=http:127.0.0.1:${adminPort}@app.test/admin,auth=root:pw`]);
  const raw = (text: string): Promise<string> => exchange(portOf(front.addresses[0]!), text);
  try {
    await Promise.all([first.ready(), second.ready()]);
    await front.sync();
    const port = portOf(front.addresses[0]!);
    // The engine matches the normalised path (and forwards that): the admin mapping's auth, or 400 above the root.
    for (const path of ['/admin/x', '/x/../admin/x', '/%2e%2e/admin/x', '/x/%2E%2E/admin/x', '/./admin/x', '/admin/./x', '//admin/x']) {
      const { status } = await get(port, 'app.test', path);
      assert.ok(status === 401 || status === 400 || status === 404, `${path}: ${status}`);
    }
    assert.equal(seen.length, 0, seen.join(', '));
    // A path is a string prefix, as nginx's: /adminx is the admin mapping's too (closed, not open).
    assert.equal((await get(port, 'app.test', '/adminx')).status, 401);
    assert.deepEqual(await get(port, 'app.test', '/x'), { status: 200, body: 'open' });
    assert.match(await raw('POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(await raw('GET / HTTP/1.1\r\nHost: app.test\r\nX-A: 1\r\n folded\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.deepEqual(seen, ['open /x']);
  } finally {
    await first.stop({ deadlineMs: 0 });
    await second.stop({ deadlineMs: 0 });
    await front.close();
    await server.stop({ deadlineMs: 0 });
    open.close();
    admin.close();
  }
});
