import net from 'node:net';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, chromiumFlags } from './chromium.js';

export { closedPort } from './ports.js';

/**
 * A TCP server on `host` (default 127.0.0.1), port 0, that hands each socket
 * to `onSocket` (half-open allowed) and, on `close()`, destroys the sockets
 * still open so the test process can exit.
 */
export async function trackedServer(onSocket: (socket: net.Socket) => void, host = '127.0.0.1'): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A listener on a free loopback port, bound with SO_REUSEPORT where the
 * runtime supports it (Bun; Node from 22.12): the socket another program or
 * a Bun.serve app would hold, for tests that our listeners never join it.
 */
export async function reusePortHolder(): Promise<{ port: number; accepted: () => number; close(): Promise<void> }> {
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, reusePort: true } as net.ListenOptions, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A request as a recording server read it. */
export interface RecordedRequest {
  head: string;
  body: string;
}

/**
 * A server that records every request it reads, framed by Content-Length
 * only (the way a simple origin or parent proxy reads), and answers each with
 * `ok N`: what reached the next hop, byte for byte, for smuggling tests.
 */
export async function recordingServer(): Promise<{ port: number; address: string; seen: RecordedRequest[]; close(): Promise<void> }> {
  const seen: RecordedRequest[] = [];
  const server = await trackedServer((socket) => {
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString('latin1');
        const match = /\r\ncontent-length:\s*([0-9]+)/i.exec(head);
        const length = match ? Number(match[1]) : 0;
        if (buffered.length < end + 4 + length) return;
        seen.push({ head, body: buffered.subarray(end + 4, end + 4 + length).toString('latin1') });
        buffered = buffered.subarray(end + 4 + length);
        const text = `ok ${seen.length}`;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
      }
    });
  });
  return { port: server.port, address: `127.0.0.1:${server.port}`, seen, close: server.close };
}


/** A self-signed certificate and key (PEM) for `name` and the SANs given (openssl, EC P-256, valid 2 days). */
export function selfSignedCert(name = 'localhost', san = 'DNS:localhost,IP:127.0.0.1'): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-cert-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', `/CN=${name}`,
      '-addext', `subjectAltName=${san}`,
    ], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
export { packageReadme, readmeTable, tableCell, numbersIn } from './readme.js';
/** A PEM certificate and key, as text and as files (for CLI flags and curl). */
export interface TestIdentity {
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
}

/** A throw-away CA with a server certificate (localhost, 127.0.0.1, ::1) and a client certificate it signed. */
export interface TestPki {
  dir: string;
  ca: TestIdentity;
  server: TestIdentity;
  client: TestIdentity;
  /** A second, unrelated CA and a client and a server certificate of its own: what verification must refuse. */
  rogueCa: TestIdentity;
  rogueClient: TestIdentity;
  rogueServer: TestIdentity;
  cleanup(): void;
}

function openssl(args: string[]): void {
  const result = spawnSync('openssl', args, { stdio: 'pipe' });
  if (result.status !== 0) throw new Error(`openssl ${args[0]} failed: ${result.stderr.toString()}`);
}

function identity(dir: string, name: string): TestIdentity {
  const certPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8'), certPath, keyPath };
}

function makeCa(dir: string, name: string): TestIdentity {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`)]);
  return identity(dir, name);
}

function makeLeaf(dir: string, name: string, ca: TestIdentity, extensions: string): TestIdentity {
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', join(dir, `${name}.key`), '-out', csr]);
  writeFileSync(ext, extensions);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', join(dir, `${name}.pem`)]);
  return identity(dir, name);
}

const SERVER_EXTENSIONS = 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n';
const CLIENT_EXTENSIONS = 'extendedKeyUsage=clientAuth\n';

/** Make a test PKI with openssl in a temp dir (synchronous: for `before` hooks). */
export function testPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-pki-'));
  const ca = makeCa(dir, 'test-ca');
  const rogueCa = makeCa(dir, 'rogue-ca');
  return {
    dir,
    ca,
    server: makeLeaf(dir, 'localhost', ca, SERVER_EXTENSIONS),
    client: makeLeaf(dir, 'client', ca, CLIENT_EXTENSIONS),
    rogueCa,
    rogueClient: makeLeaf(dir, 'rogue-client', rogueCa, CLIENT_EXTENSIONS),
    rogueServer: makeLeaf(dir, 'rogue-server', rogueCa, SERVER_EXTENSIONS),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The base64 SHA-256 of a certificate's public key, for Chromium's `--ignore-certificate-errors-spki-list`. */
export function spkiHash(certPath: string): string {
  const pub = spawnSync('openssl', ['x509', '-in', certPath, '-pubkey', '-noout'], { stdio: 'pipe' });
  const der = spawnSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pub.stdout, stdio: 'pipe' });
  const digest = spawnSync('openssl', ['dgst', '-sha256', '-binary'], { input: der.stdout, stdio: 'pipe' });
  if (digest.status !== 0) throw new Error(`openssl dgst failed: ${digest.stderr.toString()}`);
  return digest.stdout.toString('base64');
}

export { etcdServer, etcdForFile, ETCD, type EtcdServer } from './etcd.js';
export { redisServer, REDIS_SERVER, type RedisServer } from './redis.js';
export { dnsmasqServer, DNSMASQ, type DnsmasqServer, type DnsRecords } from './dnsmasq.js';
export { FakeCa, type FakeCaAnswers, type Certify } from './acme.js';
export { startPebble, PEBBLE_MISSING, type Pebble } from './pebble.js';

/**
 * Load a page in headless Chromium and return the DOM after its scripts ran
 * (`--virtual-time-budget`). `home`: the HOME Chromium reads its NSS trust
 * store from (`$HOME/.pki/nssdb`).
 */
export async function chromiumDumpDom(url: string, options: { profileDir: string; home?: string; extra?: string[] }): Promise<string> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(CHROMIUM!, [...chromiumFlags(options.profileDir), '--dump-dom', '--virtual-time-budget=5000', ...(options.extra ?? []), url], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...(options.home ? { HOME: options.home } : {}) },
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`chromium exited with ${code}: ${stderr.slice(-2000)}`));
    });
  });
}

/** Poll `check` every 20 ms until it holds; throw, naming `what`, after `limitMs`. */
export async function until(check: () => boolean | Promise<boolean>, what: string, limitMs = 20_000): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > limitMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
export { CHROMIUM, chromiumFlags, Page, launchChromium, killChrome, removeProfile } from './chromium.js';
