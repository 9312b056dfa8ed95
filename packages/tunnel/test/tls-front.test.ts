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
