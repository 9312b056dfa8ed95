// Automatic HTTPS on the tunnel's HTTPS port (`[tunnel.server] https_tls =
// "auto"`) against Pebble: the exact domains of http mappings are ordered as
// their clients join (HTTP-01 answered ahead of the mappings on http_listen,
// TLS-ALPN-01 on https_listen), curl trusting Pebble's root reaches the
// client's local service through the tunnel over HTTPS, a client that
// reconnects changes nothing, and a domain whose client left is dropped
// (and loaded from storage, not ordered again, when it returns).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@wmproxy/core-net';
import { loadConfig } from '@wmproxy/config';
import { AcmeClientAuthority, acmeClientAvailable, type CertificateAuthority } from '@wmproxy/acme';
import { TunnelClient, parseMapSpec } from '@wmproxy/tunnel';
import { PEBBLE_MISSING, startPebble, type Pebble } from '@wmproxy/testkit';
import { curl, until } from './helpers.js';
import { Instance, type InstanceOptions } from '../src/index.js';

/** Pebble's orders take seconds: wait up to a minute. */
const eventually = (check: () => unknown, what: string): Promise<unknown> => until(check, what, 60_000);

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-pebble-tunnel-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const SKIP = PEBBLE_MISSING ?? ((await acmeClientAvailable()) ? undefined : 'the npm package acme-client is not installed');
if (SKIP) process.stderr.write(`# acme-tunnel-pebble: ${SKIP}\n`);

const TOKEN = 'tunnel-secret-token';




/**
 * The serial number of the certificate served for `servername`, read during a
 * whole HTTPS exchange (a client that leaves right after the handshake is not
 * what these tests are about).
 */
function servedSerial(port: number, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = https.get({ host: '127.0.0.1', port, servername, ca, path: '/', headers: { host: servername, connection: 'close' }, agent: false }, (response) => {
      const serial = (response.socket as import('node:tls').TLSSocket).getPeerX509Certificate()!.serialNumber;
      response.resume();
      response.on('end', () => resolve(serial));
    });
    request.on('error', reject);
  });
}

/** The office's local web service. */
async function backend(): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => res.end(`office app ${req.url}`));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

/** A `wmproxy run` tunnel server on Pebble's validation ports, counting the orders it places. */
async function tunnelServer(pebble: Pebble, challenge: 'http-01' | 'tls-alpn-01', storage: string, options: InstanceOptions = {}, httpListen = true) {
  const file = join(scratch, `tunnel-${challenge}-${Date.now()}.toml`);
  writeFileSync(
    file,
    `[control]\nenabled = false\n` +
      `[acme]\ndirectory = "${pebble.directory}"\nca_root = "${pebble.caRootFile}"\nchallenges = ["${challenge}"]\nstorage = "${storage}"\nhttp_port = ${pebble.httpPort}\n` +
      `[tunnel.server]\nlisten = "127.0.0.1:0"\nplain = true\ntoken = "${TOKEN}"\nallow_domains = ["*.site.test"]\n` +
      `${httpListen ? `http_listen = "127.0.0.1:${pebble.httpPort}"\n` : ''}https_listen = "127.0.0.1:${pebble.tlsPort}"\nhttps_tls = "auto"\n`,
  );
  const orders: string[] = [];
  const instance = await Instance.start(await loadConfig(file), {
    logger: silentLogger,
    acmeAuthority: async (acme, accountKey): Promise<CertificateAuthority> => {
      const real = await AcmeClientAuthority.create({ directory: acme.directory, caRoot: readFileSync(acme.caRoot!, 'utf8'), accountKey, httpRetries: { attempts: 0, delaySeconds: 0 } });
      return { name: real.name, order: (request) => (orders.push(request.names.join(',')), real.order(request)) };
    },
    ...options,
  });
  return { instance, orders, port: instance.tunnelServer!.port };
}

function office(port: number, local: number): TunnelClient {
  return new TunnelClient({
    server: `127.0.0.1:${port}`,
    token: TOKEN,
    name: 'office',
    tls: false,
    mappings: [parseMapSpec(`web=http:127.0.0.1:${local}@app.site.test`), parseMapSpec(`any=http:127.0.0.1:${local}@*.wild.site.test`)],
    backoffInitialMs: 50,
    backoffMaxMs: 200,
  });
}

const managed = (instance: Instance, name: string): boolean => instance.acme.list().some((row) => row.names.includes(name));

for (const challenge of ['http-01', 'tls-alpn-01'] as const) {
  test(`https_tls = "auto" orders the http mapping's domain through ${challenge} as its client joins; curl gets the office's page over HTTPS; a reconnect orders nothing`, { skip: SKIP }, async () => {
    const pebble = await startPebble();
    const local = await backend();
    const { instance, orders, port } = await tunnelServer(pebble, challenge, mkdtempSync(join(scratch, 'storage-')), { acmeTunnelLingerMs: 60_000 });
    let client = office(port, local.port).start();
    try {
      await client.ready();
      await eventually(() => managed(instance, 'app.site.test'), 'the mapping\'s domain managed');
      await instance.acme.issued(['app.site.test']);
      // Exact names only: the wildcard mapping's domain needs DNS-01.
      assert.deepEqual(instance.acme.list().map((row) => row.names), [['app.site.test']]);
      assert.deepEqual(orders, ['app.site.test']);
      const rootPem = await pebble.issuerRoot();
      const root = join(scratch, `tunnel-${challenge}-root.pem`);
      writeFileSync(root, rootPem);
      const page = await curl(['--cacert', root, '--resolve', `app.site.test:${pebble.tlsPort}:127.0.0.1`, `https://app.site.test:${pebble.tlsPort}/hello`]);
      assert.equal(page.code, 0, page.stderr);
      assert.equal(page.stdout, 'office app /hello');
      // The HTTP port still serves the mapping (the HTTP-01 location is ahead of it, not instead of it).
      const plain = await curl(['-H', 'Host: app.site.test', `http://127.0.0.1:${pebble.httpPort}/plain`]);
      assert.equal(plain.stdout, 'office app /plain');
      const unknown = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: app.site.test', `http://127.0.0.1:${pebble.httpPort}/.well-known/acme-challenge/AAAAAAAAAAAAAAAAAAAAAAAA`]);
      assert.equal(unknown.stdout, '404');
      const serial = await servedSerial(pebble.tlsPort, 'app.site.test', rootPem);
      // The client reconnects: its domain stays managed, the same certificate is served, nothing is ordered.
      await client.stop({ deadlineMs: 0 });
      await eventually(() => instance.tunnelServer!.mappings().every((entry) => entry.clients.length === 0), 'the client gone');
      assert.equal(managed(instance, 'app.site.test'), true, 'kept while the client is away');
      client = office(port, local.port).start();
      await client.ready();
      assert.equal(await servedSerial(pebble.tlsPort, 'app.site.test', rootPem), serial);
      assert.deepEqual(orders, ['app.site.test']);
      assert.equal(instance.acme.list()[0]!.status, 'valid');
    } finally {
      await client.stop({ deadlineMs: 0 });
      await instance.stop();
      await local.close();
      await pebble.close();
    }
  });
}

test('a tunnel domain whose client left is dropped after the linger, and loaded from storage (not ordered) when the client returns', { skip: SKIP }, async () => {
  const pebble = await startPebble();
  const local = await backend();
  const { instance, orders, port } = await tunnelServer(pebble, 'tls-alpn-01', mkdtempSync(join(scratch, 'storage-')), { acmeTunnelLingerMs: 100 });
  let client = office(port, local.port).start();
  try {
    await client.ready();
    await eventually(() => managed(instance, 'app.site.test'), 'the mapping\'s domain managed');
    await instance.acme.issued(['app.site.test']);
    await client.stop({ deadlineMs: 0 });
    await eventually(() => !managed(instance, 'app.site.test'), 'the domain dropped');
    assert.deepEqual(instance.acme.tunnelNames(), []);
    client = office(port, local.port).start();
    await client.ready();
    await eventually(() => managed(instance, 'app.site.test') && instance.acme.list()[0]!.status === 'valid', 'the domain back, from storage');
    assert.deepEqual(orders, ['app.site.test']);
    const root = join(scratch, 'tunnel-return-root.pem');
    writeFileSync(root, await pebble.issuerRoot());
    const page = await curl(['--cacert', root, '--resolve', `app.site.test:${pebble.tlsPort}:127.0.0.1`, `https://app.site.test:${pebble.tlsPort}/back`]);
    assert.equal(page.stdout, 'office app /back', page.stderr);
  } finally {
    await client.stop({ deadlineMs: 0 });
    await instance.stop();
    await local.close();
    await pebble.close();
  }
});

test('without http_listen, a redirect listener on http_port answers HTTP-01 for the tunnel\'s domains and sends visitors to HTTPS', { skip: SKIP }, async () => {
  const pebble = await startPebble();
  const local = await backend();
  const { instance, orders, port } = await tunnelServer(pebble, 'http-01', mkdtempSync(join(scratch, 'storage-')), {}, false);
  const client = office(port, local.port).start();
  try {
    await client.ready();
    await eventually(() => managed(instance, 'app.site.test'), 'the mapping\'s domain managed');
    await instance.acme.issued(['app.site.test']);
    assert.deepEqual(orders, ['app.site.test']);
    const redirect = await curl(['-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '-H', 'Host: app.site.test', `http://127.0.0.1:${pebble.httpPort}/x?y=1`]);
    assert.equal(redirect.stdout, `308 https://app.site.test:${pebble.tlsPort}/x?y=1`);
    const root = join(scratch, 'tunnel-redirect-root.pem');
    writeFileSync(root, await pebble.issuerRoot());
    const page = await curl(['-L', '--cacert', root, '--resolve', `app.site.test:${pebble.tlsPort}:127.0.0.1`, '--resolve', `app.site.test:${pebble.httpPort}:127.0.0.1`, `http://app.site.test:${pebble.httpPort}/followed`]);
    assert.equal(page.stdout, 'office app /followed', page.stderr);
  } finally {
    await client.stop({ deadlineMs: 0 });
    await instance.stop();
    await local.close();
    await pebble.close();
  }
});
