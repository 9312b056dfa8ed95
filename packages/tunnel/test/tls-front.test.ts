// The tunnel server's public TLS port: https mappings by SNI passthrough
// (the local service's own certificate reaches the visitor), http mappings
// terminated with the server's certificate, anything else refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { TunnelClient, TunnelHttpFront, TunnelServer, TunnelTlsFront, parseMapSpec } from '../src/index.js';

let dir = '';
const certs: Record<string, { cert: string; key: string }> = {};
function selfSigned(name: string): { cert: string; key: string } {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=DNS:${name}`, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`)], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, `${name}.pem`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') };
}
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'wmproxy-tunnel-tls-'));
  certs.secure = selfSigned('secure.test');
  certs.web = selfSigned('web.test');
});
after(() => rmSync(dir, { recursive: true, force: true }));

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

/** Handshake with `servername`, GET /, and report the certificate's CN and the body. */
function visit(port: number, servername: string): Promise<{ cn: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, servername, path: '/', headers: { host: servername }, rejectUnauthorized: false, agent: false }, (res) => {
      const cn = String((res.socket as tls.TLSSocket).getPeerCertificate().subject?.CN ?? '');
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ cn, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Resolves true when the server closes the connection without a TLS answer. */
function refused(port: number, payload: (socket: net.Socket) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let answered = false;
    socket.on('data', () => (answered = true));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(!answered));
    socket.on('connect', () => payload(socket));
  });
}

test('https mappings pass through by SNI, other names are terminated for http mappings, and the rest is refused', async () => {
  const secureService = https.createServer(certs.secure!, (_req, res) => res.end('secure service'));
  await new Promise<void>((resolve) => secureService.listen(0, '127.0.0.1', resolve));
  const webService = http.createServer((req, res) => res.end(`web service saw ${req.headers.host}`));
  await new Promise<void>((resolve) => webService.listen(0, '127.0.0.1', resolve));
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const terminator = await new TunnelHttpFront(server, { tlsListen: '127.0.0.1:0', tls: { cert: certs.web!.cert, key: certs.web!.key } }).start();
  const front = await new TunnelTlsFront(server, { listen: '127.0.0.1:0', terminate: terminator.addresses[0]!, helloTimeoutMs: 300 }).start();
  const bare = await new TunnelTlsFront(server, { listen: '127.0.0.1:0' }).start();
  const client = new TunnelClient({
    server: `127.0.0.1:${server.port}`,
    token: 'secret',
    tls: false,
    mappings: [
      parseMapSpec(`secure=https:127.0.0.1:${(secureService.address() as net.AddressInfo).port}@secure.test`),
      parseMapSpec(`web=http:127.0.0.1:${(webService.address() as net.AddressInfo).port}@web.test`),
    ],
  }).start();
  try {
    await client.ready();
    await terminator.sync();
    const port = portOf(front.addresses[0]!);
    // Passthrough: the visitor talks TLS with the local service itself.
    const secure = await visit(port, 'secure.test');
    assert.deepEqual(secure, { cn: 'secure.test', body: 'secure service' });
    // Termination: the tunnel server's certificate, then the http mapping by Host.
    const web = await visit(port, 'web.test');
    assert.deepEqual(web, { cn: 'web.test', body: 'web service saw web.test' });
    // Without a terminating listener, a name no https mapping serves is closed without an answer.
    assert.equal(await refused(portOf(bare.addresses[0]!), (socket) => tls.connect({ socket, servername: 'web.test', rejectUnauthorized: false }).on('error', () => undefined)), true);
    // Not TLS at all, and silence past the hello timeout: closed.
    assert.equal(await refused(port, (socket) => socket.write('GET / HTTP/1.1\r\nhost: web.test\r\n\r\n')), true);
    assert.equal(await refused(port, () => undefined), true);
  } finally {
    await client.stop({ deadlineMs: 0 });
    await front.close(0);
    await bare.close(0);
    await terminator.close();
    await server.stop({ deadlineMs: 0 });
    secureService.close();
    webService.close();
  }
});

test('half-open ClientHellos: one IP holds at most its connection limit, each within the hello budget; other IPs still get through', async () => {
  const terminator = tls.createServer(certs.web!, (socket) => socket.end('terminated\n'));
  await new Promise<void>((resolve) => terminator.listen(0, '127.0.0.1', resolve));
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false }).start();
  const front = await new TunnelTlsFront(server, {
    listen: '127.0.0.1:0',
    terminate: `127.0.0.1:${(terminator.address() as net.AddressInfo).port}`,
    limits: { maxConnectionsPerIp: 8 },
  }).start();
  const port = portOf(front.addresses[0]!);
  const sockets: net.Socket[] = [];
  const closed = new Set<net.Socket>();
  // A record header announcing 2,000 bytes, then 100 of them: a hello that never completes.
  const partial = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x07, 0xd0, 0x01, 0x00, 0x07, 0xcc]), Buffer.alloc(96, 7)]);
  const open = (payload: Buffer, localAddress = '127.0.0.1'): Promise<net.Socket> =>
    new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress }, () => {
        socket.write(payload);
        resolve(socket);
      });
      socket.on('error', () => undefined);
      socket.on('close', () => closed.add(socket));
      sockets.push(socket);
    });
  try {
    for (let i = 0; i < 40; i++) await open(partial);
    const until = async (check: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 1000 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(check(), what);
    };
    await until(() => closed.size === 32, `32 connections over the per-IP limit are closed (closed: ${closed.size})`);
    await until(() => front.waiting.bytes === 8 * partial.length, `the 8 admitted hold their partial hellos (${JSON.stringify(front.waiting)})`);
    assert.deepEqual(front.waiting, { connections: 8, bytes: 8 * partial.length });

    // Another address is not held back by the first one's half-open hellos.
    const other = tls.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2', servername: 'web.test', rejectUnauthorized: false });
    const answer = await new Promise<string>((resolve, reject) => {
      let text = '';
      other.on('data', (chunk: Buffer) => (text += chunk.toString()));
      other.on('end', () => resolve(text));
      other.on('error', reject);
    });
    assert.equal(answer, 'terminated\n');

    // A hello growing past the budget (8 KiB) is cut off, and its bytes released.
    const big = await open(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc]), Buffer.alloc(9000, 1)]), '127.0.0.3');
    await until(() => closed.has(big), 'a hello over the budget is closed');
    assert.deepEqual(front.waiting, { connections: 8, bytes: 8 * partial.length });

    for (const socket of sockets) socket.destroy();
    await until(() => front.waiting.connections === 0, 'closed hellos are no longer counted');
    assert.equal(front.waiting.bytes, 0);
  } finally {
    for (const socket of sockets) socket.destroy();
    await front.close(0);
    await server.stop({ deadlineMs: 0 });
    await new Promise<void>((resolve) => terminator.close(() => resolve()));
  }
});
