/**
 * Pebble (Let's Encrypt's ACME test server, Debian package `pebble`) and
 * pebble-challtestsrv (its DNS: every name resolves to 127.0.0.1), started
 * by the tests on free loopback ports. Pebble validates HTTP-01 on
 * `httpPort` and TLS-ALPN-01 on `tlsPort` of 127.0.0.1: the tests run
 * wmproxy's listeners there.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort } from './ports.js';

export const PEBBLE_MISSING = spawnSync('pebble', ['-h'], { stdio: 'ignore' }).error !== undefined ? 'pebble is not installed (apt-get install pebble)' : undefined;

export interface Pebble {
  directory: string;
  /** PEM of the certificate of Pebble's own HTTPS (the `ca_root` of wmproxy's `[acme]`). */
  caRoot: string;
  caRootFile: string;
  httpPort: number;
  tlsPort: number;
  /** Pebble's issuing root (PEM), which TLS clients must trust; it changes each time Pebble starts. */
  issuerRoot(): Promise<string>;
  stop(): Promise<void>;
  /** Make the CA's DNS answer `address` for `host` (pebble-challtestsrv's add-a): a name whose validation reaches nothing. */
  resolve(host: string, address: string): Promise<void>;
  /** Start again on the same ports (after `stop`): a CA that comes back. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, agent: false }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/**
 * `silentDns`: Pebble asks a DNS server that never answers, so it never
 * validates a challenge (an order stays pending: a stuck CA).
 */
export async function startPebble(options: { validitySeconds?: number; silentDns?: boolean } = {}): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-pebble-'));
  const [port, managementPort, dnsPort, dnsManagement, httpPort, tlsPort] = await Promise.all([closedPort(), closedPort(), closedPort(), closedPort(), closedPort(), closedPort()]);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=pebble', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const own = { cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: join(dir, 'cert.pem'),
        privateKey: join(dir, 'key.pem'),
        httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(options.validitySeconds ? { certificateValidityPeriod: options.validitySeconds } : {}),
      },
    }),
  );
  const log: string[] = [];
  const dns = spawn('pebble-challtestsrv', ['-http01', '', '-https01', '', '-tlsalpn01', '', '-dns01', `127.0.0.1:${dnsPort}`, '-management', `127.0.0.1:${dnsManagement}`, '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''], { stdio: ['ignore', 'pipe', 'pipe'] });
  dns.stdout!.on('data', (chunk: Buffer) => log.push(chunk.toString()));
  dns.stderr!.on('data', (chunk: Buffer) => log.push(chunk.toString()));
  let silent: Socket | undefined;
  if (options.silentDns) {
    silent = createSocket('udp4');
    silent.on('message', () => undefined);
    await new Promise<void>((resolve) => silent!.bind(0, '127.0.0.1', resolve));
  }
  const dnsServer = `127.0.0.1:${silent ? silent.address().port : dnsPort}`;
  let pebble: ChildProcess | undefined;
  const directory = `https://127.0.0.1:${port}/dir`;
  const launch = async (): Promise<void> => {
    // No random sleeps before validation, and no nonce rejections: the tests are about wmproxy, not retries of bad nonces.
    pebble = spawn('pebble', ['-config', join(dir, 'config.json'), '-dnsserver', dnsServer], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
    });
    pebble.stdout!.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    pebble.stderr!.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    for (let attempt = 0; attempt < 200; attempt++) {
      const up = await get(directory, own.cert).then((answer) => answer.status === 200, () => false);
      if (up) return;
      if (pebble.exitCode !== null || pebble.signalCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`pebble did not start:\n${log.join('')}`);
  };
  await launch();
  return {
    directory,
    caRoot: own.cert,
    caRootFile: join(dir, 'cert.pem'),
    httpPort,
    tlsPort,
    issuerRoot: async () => (await get(`https://127.0.0.1:${managementPort}/roots/0`, own.cert)).body,
    resolve: (host, address) =>
      new Promise<void>((resolve, reject) => {
        const body = JSON.stringify({ host: host.endsWith('.') ? host : `${host}.`, addresses: [address] });
        const request = http.request({ host: '127.0.0.1', port: dnsManagement, method: 'POST', path: '/add-a', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (response) => {
          response.resume();
          if (response.statusCode === 200) resolve();
          else reject(new Error(`pebble-challtestsrv add-a: HTTP ${response.statusCode}`));
        });
        request.on('error', reject);
        request.end(body);
      }),
    stop: () => stopChild(pebble),
    restart: launch,
    close: async () => {
      await Promise.all([stopChild(pebble), stopChild(dns)]);
      silent?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
