import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger, Server, parseAddress } from '@wmproxy/core-net';
import { Socks5Server, type Socks5ServerOptions } from '../src/index.js';
import { trackedServer } from '@wmproxy/testkit';
export { closedPort } from '@wmproxy/testkit';

/** A SOCKS5 server on 127.0.0.1:0 whose log lines are kept for assertions. */
export interface TestProxy {
  port: number;
  socks: Socks5Server;
  server: Server;
  logs: string[];
  /** Resolves with the first log line containing every one of `parts` (waits for it to be written). */
  waitForLog(...parts: string[]): Promise<string>;
  close(): Promise<void>;
}

export async function startProxy(options: Socks5ServerOptions = {}, host = '127.0.0.1'): Promise<TestProxy> {
  const logs: string[] = [];
  const waiters: Array<{ parts: string[]; resolve(line: string): void }> = [];
  const logger = new Logger({
    level: 'debug',
    sink: {
      write(line: string) {
        logs.push(line);
        for (const waiter of [...waiters]) {
          if (waiter.parts.every((part) => line.includes(part))) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
        if (process.env.SOCKS5_TEST_LOG) process.stderr.write(line);
      },
    },
  });
  const socks = new Socks5Server({ logger, ...options });
  const server = new Server({ addresses: [parseAddress(`${host.includes(':') ? `[${host}]` : host}:0`)], onConnection: (conn) => socks.handle(conn) });
  await server.start();
  return {
    port: server.listeners[0]!.port,
    socks,
    server,
    logs,
    waitForLog(...parts: string[]) {
      const found = logs.find((line) => parts.every((part) => line.includes(part)));
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ parts, resolve }));
    },
    async close() {
      await server.shutdown({ deadlineMs: 0 });
    },
  };
}

/** An HTTP server answering `hello <path> via <local address>`. */
export async function startHttpTarget(host = '127.0.0.1'): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<html><body><p id="greeting">hello ${req.url} via ${req.socket.localAddress}</p></body></html>`);
  });
  return listen(server, host);
}

/** An HTTPS server with a self-signed certificate for localhost / 127.0.0.1, made with openssl in a temp dir. */
export async function startHttpsTarget(host = '127.0.0.1'): Promise<{ port: number; cert: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-socks5-tls-'));
  try {
    const result = await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ]);
    if (result.status !== 0) throw new Error(`openssl failed: ${result.stderr}`);
    const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const key = readFileSync(join(dir, 'key.pem'), 'utf8');
    const server = https.createServer({ cert, key }, (req, res) => res.end(`secure hello ${req.url}`));
    const listening = await listen(server, host);
    return { ...listening, cert };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function listen(server: http.Server, host: string): Promise<{ port: number; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion (no shell); proxy variables of the environment are removed. */
export function run(command: string, args: string[], timeoutMs = 20_000): Promise<RunResult> {
  const env = { ...process.env };
  for (const name of ['http_proxy', 'https_proxy', 'all_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY']) delete env[name];
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

export function curl(args: string[]): Promise<RunResult> {
  return run('curl', ['--silent', '--show-error', '--max-time', '15', ...args]);
}

/**
 * A raw TCP client (node:net, independent of the runtime under test) that
 * reads exact byte counts, for speaking SOCKS5 by hand.
 */
export class RawClient {
  readonly socket: net.Socket;
  private buffer = Buffer.alloc(0);
  private wanted: { length: number; resolve(data: Buffer): void; reject(error: Error): void } | undefined;
  ended = false;
  readonly closed: Promise<void>;

  static async open(port: number, host = '127.0.0.1'): Promise<RawClient> {
    const socket = net.connect({ port, host });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawClient(socket);
  }

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.check();
    });
    socket.on('end', () => {
      this.ended = true;
      this.check();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  send(bytes: number[] | Uint8Array | string): void {
    this.socket.write(typeof bytes === 'string' ? bytes : Buffer.from(bytes as number[]));
  }

  /** Exactly `length` bytes; rejects if the server closes first. */
  read(length: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.wanted = { length, resolve, reject };
      this.check();
    });
  }

  /** Everything until the server ends the connection. */
  async readToEnd(): Promise<Buffer> {
    if (!this.ended) await new Promise<void>((resolve) => this.socket.once('end', () => resolve()));
    const all = this.buffer;
    this.buffer = Buffer.alloc(0);
    return all;
  }

  private check(): void {
    const wanted = this.wanted;
    if (!wanted) return;
    if (this.buffer.byteLength >= wanted.length) {
      this.wanted = undefined;
      const data = this.buffer.subarray(0, wanted.length);
      this.buffer = this.buffer.subarray(wanted.length);
      wanted.resolve(data);
    } else if (this.ended) {
      this.wanted = undefined;
      wanted.reject(new Error(`connection ended after ${this.buffer.byteLength} of ${wanted.length} bytes: ${this.buffer.toString('hex')}`));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** SOCKS5 request bytes: VER CMD RSV ATYP ADDR PORT. */
export function request(command: number, host: string, port: number): number[] {
  const portBytes = [port >> 8, port & 0xff];
  if (net.isIPv4(host)) return [5, command, 0, 1, ...host.split('.').map(Number), ...portBytes];
  if (net.isIPv6(host)) {
    const bytes = ipv6Bytes(host);
    return [5, command, 0, 4, ...bytes, ...portBytes];
  }
  return [5, command, 0, 3, host.length, ...Buffer.from(host, 'latin1'), ...portBytes];
}

function ipv6Bytes(host: string): number[] {
  const [head, tail] = host.split('::') as [string, string | undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return groups.flatMap((group) => {
    const value = parseInt(group, 16);
    return [value >> 8, value & 0xff];
  });
}

/** Greeting with no-auth, then a request; returns the client after the method answer was checked. */
export async function openSocks(port: number): Promise<RawClient> {
  const client = await RawClient.open(port);
  client.send([5, 1, 0]);
  const method = await client.read(2);
  if (method[0] !== 5 || method[1] !== 0) throw new Error(`unexpected method answer ${method.toString('hex')}`);
  return client;
}

/** Read a full SOCKS5 reply: returns the reply code and the bound address. */
export async function readReply(client: RawClient): Promise<{ reply: number; host: string; port: number }> {
  const head = await client.read(4);
  const type = head[3];
  let host: string;
  if (type === 1) host = [...(await client.read(4))].join('.');
  else if (type === 4) {
    const raw = await client.read(16);
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(raw.readUInt16BE(i).toString(16));
    host = groups.join(':');
  } else {
    const length = (await client.read(1))[0]!;
    host = (await client.read(length)).toString('latin1');
  }
  const port = (await client.read(2)).readUInt16BE(0);
  return { reply: head[1]!, host, port };
}

/** A TCP server that closes nothing and answers nothing unless `onSocket` says so: a target that accepts and sits. */
export const startTcpServer = trackedServer;


/** A UDP echo server that prefixes replies with "echo:". */
export async function startUdpEcho(host = '127.0.0.1'): Promise<{ port: number; close(): void }> {
  const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  socket.on('message', (data, info) => socket.send(Buffer.concat([Buffer.from('echo:'), data]), info.port, info.address));
  await new Promise<void>((resolve) => socket.bind(0, host, resolve));
  return { port: socket.address().port, close: () => socket.close() };
}

/** A hand-written SOCKS5 UDP client socket: wraps payloads in the RFC 1928 header. */
export class UdpClient {
  readonly socket: dgram.Socket;
  private readonly queue: Buffer[] = [];
  private waiter: ((data: Buffer) => void) | undefined;

  static async open(host = '127.0.0.1'): Promise<UdpClient> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, host, resolve));
    return new UdpClient(socket);
  }

  private constructor(socket: dgram.Socket) {
    this.socket = socket;
    socket.on('message', (data) => {
      if (this.waiter) {
        const waiter = this.waiter;
        this.waiter = undefined;
        waiter(data);
      } else this.queue.push(data);
    });
  }

  get port(): number {
    return this.socket.address().port;
  }

  sendTo(relayPort: number, header: number[], payload: string, relayHost = '127.0.0.1'): void {
    this.socket.send(Buffer.concat([Buffer.from(header), Buffer.from(payload)]), relayPort, relayHost);
  }

  /** The next datagram, or an error after `timeoutMs`. */
  receive(timeoutMs = 5_000): Promise<Buffer> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error('no datagram'));
      }, timeoutMs);
      this.waiter = (data) => {
        clearTimeout(timer);
        resolve(data);
      };
    });
  }

  close(): void {
    this.socket.close();
  }
}

/** RSV RSV FRAG + ATYP/ADDR/PORT for the UDP header. */
export function udpHeader(host: string, port: number, frag = 0): number[] {
  return [0, 0, frag, ...request(0, host, port).slice(3)];
}
