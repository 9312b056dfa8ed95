// Automatic HTTPS end to end in one instance, with an in-process CA that
// validates over the network as a real one does (HTTP-01 requests to the
// redirect listener, TLS-ALPN-01 handshakes with the TLS listener): the
// certificate reaches TLS clients, renewal swaps it for new handshakes,
// HTTP redirects to HTTPS, a reload adds a name, and /certs and /metrics
// show every certificate.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSelfSignedCertificate, silentLogger } from '@wmproxy/core-net';
import { loadConfig } from '@wmproxy/config';
import { closedPort, FakeCa } from '@wmproxy/testkit';
import { ControlClient, Instance } from '../src/index.js';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-acme-instance-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const certify = (names: string[], key: string, notBefore: Date, notAfter: Date): string => createSelfSignedCertificate({ altNames: names, key, notBefore, notAfter }).cert;

function httpGet(port: number, host: string, path: string): Promise<{ status: number; body: string; location: string | undefined }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode!, body, location: response.headers.location }));
      })
      .on('error', reject);
  });
}

/** The leaf certificate (PEM) a TLS client sees for a name, and the ALPN protocol chosen. */
function handshake(port: number, servername: string, alpn?: string[]): Promise<{ cert: string; serial: string; protocol: string | false }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: alpn });
    socket.once('secureConnect', () => {
      const peer = socket.getPeerX509Certificate()!;
      resolve({ cert: peer.toString(), serial: peer.serialNumber, protocol: socket.alpnProtocol ?? false });
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** A verifying HTTPS request trusting `ca` (the certificate itself: the fake CA self-signs). */
function httpsGet(port: number, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, servername, ca, path: '/', headers: { host: servername }, agent: false }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

function configText(options: { tlsPort: number; httpPort: number; storage: string; challenge: string; names: string[][]; redirect?: boolean }): string {
  const servers = options.names
    .map(
      (names, index) => `
[[server]]
name = "site-${index}"
listen = "127.0.0.1:${options.tlsPort}"
server_name = ${JSON.stringify(names)}
tls = "auto"
[[server.location]]
path = "/"
respond = { status = 200, body = "secure ${names[0]}" }
`,
    )
    .join('');
  return `
[control]
listen = "127.0.0.1:0"
[acme]
email = "ops@site.test"
storage = "${options.storage}"
challenges = ["${options.challenge}"]
http_port = ${options.httpPort}
redirect = ${options.redirect ?? true}
${servers}`;
}

async function start(challenge: 'http-01' | 'tls-alpn-01', redirect = true) {
  const tlsPort = await closedPort();
  const httpPort = await closedPort();
  const storage = mkdtempSync(join(scratch, 'storage-'));
  const file = join(storage, '..', `config-${challenge}-${tlsPort}.toml`);
  const write = (names: string[][]): void => writeFileSync(file, configText({ tlsPort, httpPort, storage, challenge, names, redirect }));
  write([['site.test', 'www.site.test']]);
  const ca = new FakeCa(certify);
  ca.answers = {
    http01: async (name, path) => {
      const answer = await httpGet(httpPort, name, path);
      return answer.status === 200 ? answer.body : undefined;
    },
    tlsAlpn01: async (name) => {
      const seen = await handshake(tlsPort, name, ['acme-tls/1']);
      return seen.protocol === 'acme-tls/1' ? { cert: seen.cert } : undefined;
    },
  };
  const instance = await Instance.start(await loadConfig(file), { logger: silentLogger, load: () => loadConfig(file), acmeAuthority: async () => ca });
  return { instance, ca, tlsPort, httpPort, write };
}

test('tls = "auto" with HTTP-01: issued at start, served to verifying clients, redirect, renewal swaps it, a reload adds a name, /certs and /metrics', async () => {
  const { instance, ca, tlsPort, httpPort, write } = await start('http-01');
  try {
    await instance.acme.issued(['site.test', 'www.site.test']);
    assert.deepEqual(ca.validated, ['http-01 site.test', 'http-01 www.site.test']);
    const first = await handshake(tlsPort, 'site.test');
    assert.equal(await httpsGet(tlsPort, 'site.test', first.cert), 'secure site.test');
    assert.equal(await httpsGet(tlsPort, 'www.site.test', first.cert), 'secure site.test');

    // Plain HTTP on the redirect listener: 308 to the same host and target on HTTPS.
    const redirect = await httpGet(httpPort, 'site.test', '/a/b?c=d');
    assert.equal(redirect.status, 308);
    assert.equal(redirect.location, `https://site.test:${tlsPort}/a/b?c=d`);
    assert.equal((await httpGet(httpPort, 'site.test', '/.well-known/acme-challenge/nosuchtoken0123456789')).status, 404);

    // Renewal: new handshakes get the new certificate, without a restart.
    const renewed = instance.acme.issued(['site.test', 'www.site.test'], true);
    instance.acme.renewNow(['site.test', 'www.site.test']);
    await renewed;
    const second = await handshake(tlsPort, 'site.test');
    assert.notEqual(second.serial, first.serial);
    assert.equal(await httpsGet(tlsPort, 'site.test', second.cert), 'secure site.test');

    // A reload adds a name: ordered, while site.test keeps its certificate.
    write([['site.test', 'www.site.test'], ['two.site.test']]);
    const result = await instance.reload();
    assert.equal(result.ok, true, result.message);
    await instance.acme.issued(['two.site.test']);
    const two = await handshake(tlsPort, 'two.site.test');
    assert.equal(await httpsGet(tlsPort, 'two.site.test', two.cert), 'secure two.site.test');
    assert.equal((await handshake(tlsPort, 'site.test')).serial, second.serial);
    assert.deepEqual(ca.orders.map((names) => names.join(',')), ['site.test,www.site.test', 'site.test,www.site.test', 'two.site.test']);

    // The control API lists them, and /metrics has the expiry of every name.
    const client = new ControlClient({ address: instance.controlAddress! });
    const { body } = await client.request<{ certificates: Array<{ names: string[]; status: string; notAfter: string; nextRenewal: string }> }>('GET', '/certs');
    assert.deepEqual(body.certificates.map((row) => [row.names.join(','), row.status]), [['site.test,www.site.test', 'valid'], ['two.site.test', 'valid']]);
    assert.ok(body.certificates.every((row) => Date.parse(row.nextRenewal) < Date.parse(row.notAfter)));
    const metrics = (await client.request<string>('GET', '/metrics')).body;
    for (const name of ['site.test', 'www.site.test', 'two.site.test']) assert.match(String(metrics), new RegExp(`wmproxy_certificate_expiry_timestamp_seconds\\{name="${name.replace(/\./g, '\\.')}"\\} \\d+`));

    // The dashboard has a certificates table filled from /certs.
    const page = await (await fetch(`http://${instance.controlAddress}/`)).text();
    assert.match(page, /<table id="certs">/);
    assert.match(page, /get\('\/certs'\)/);
  } finally {
    await instance.stop();
  }
});

test('tls = "auto" with TLS-ALPN-01 and no redirect: validated on the TLS listener while browsers get the placeholder, then the real certificate', async () => {
  const { instance, ca, tlsPort, httpPort } = await start('tls-alpn-01', false);
  try {
    await instance.acme.issued(['site.test', 'www.site.test']);
    assert.deepEqual(ca.validated, ['tls-alpn-01 site.test', 'tls-alpn-01 www.site.test']);
    const served = await handshake(tlsPort, 'www.site.test', ['http/1.1']);
    assert.equal(await httpsGet(tlsPort, 'www.site.test', served.cert), 'secure site.test');
    // redirect = false: nothing listens on the HTTP port.
    await assert.rejects(httpGet(httpPort, 'site.test', '/'), /ECONNREFUSED/);
  } finally {
    await instance.stop();
  }
});
