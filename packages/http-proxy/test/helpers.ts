import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger, Server, parseAddress } from '@wmproxy/core-net';
import { ForwardProxy, HttpProxyServer, type ForwardProxyOptions, type HttpProxyOptions } from '../src/index.js';
export { closedPort } from '@wmproxy/testkit';

/** A proxy on 127.0.0.1:0 whose log lines are kept for assertions. */
export interface TestProxy {
  port: number;
  url: string;
  logs: string[];
  close(): Promise<void>;
}

function captureLogger(logs: string[]): Logger {
  return new Logger({
    level: 'debug',
    sink: {
      write(line: string) {
        logs.push(line);
        if (process.env.HTTP_PROXY_TEST_LOG) process.stderr.write(line);
      },
    },
  });
}

async function serve(handle: (conn: import('@wmproxy/core-net').Conn) => void, logs: string[], host = '127.0.0.1'): Promise<TestProxy> {
  const bracketed = host.includes(':') ? `[${host}]` : host;
  const server = new Server({ addresses: [parseAddress(`${bracketed}:0`)], onConnection: handle });
  await server.start();
  const port = server.listeners[0]!.port;
  return {
    port,
    url: `http://${bracketed}:${port}`,
    logs,
    async close() {
      await server.shutdown({ deadlineMs: 0 });
    },
  };
}

export async function startProxy(options: HttpProxyOptions = {}, host = '127.0.0.1'): Promise<TestProxy> {
  const logs: string[] = [];
  const proxy = new HttpProxyServer({ logger: captureLogger(logs), ...options });
  return serve((conn) => proxy.handle(conn), logs, host);
}

export async function startForwardProxy(options: ForwardProxyOptions = {}): Promise<TestProxy> {
  const logs: string[] = [];
  const proxy = new ForwardProxy({ logger: captureLogger(logs), ...options });
  return serve((conn) => proxy.handle(conn), logs);
}

/** What a backend saw. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders: string[];
  bodyLength: number;
  bodySha: string;
  remotePort: number;
}

export interface Backend {
  port: number;
  /** TCP connections accepted so far. */
  connections: number;
  requests: SeenRequest[];
  close(): Promise<void>;
}

/**
 * An origin server (node:http, or node:https with `tls`) on 127.0.0.1:0:
 * - `/hello` → `hello from <port>`; `/echo` → JSON of what it received (method, headers, body size and sha256);
 * - `/big?bytes=N` → N bytes (streamed in 64 KiB writes, chunked unless `length=1`);
 * - `/noclose` → a body without length, ended by closing the connection;
 * - `/chunked` → a chunked body with a trailer.
 */
export async function startBackend(tls?: { key: string; cert: string }, host = '127.0.0.1'): Promise<Backend> {
  const state: Backend = { port: 0, connections: 0, requests: [], close: async () => {} };
  const sockets = new Set<net.Socket>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      length += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => {
      const seen: SeenRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodyLength: length,
        bodySha: hash.digest('hex'),
        remotePort: req.socket.remotePort ?? 0,
      };
      state.requests.push(seen);
      const url = new URL(req.url ?? '/', 'http://x');
      switch (url.pathname) {
        case '/hello':
          res.setHeader('X-Backend', String(state.port));
          res.end(`hello from ${state.port}`);
          return;
        case '/echo':
          res.setHeader('Content-Type', 'application/json');
          res.setHeader('Set-Cookie', ['a=1', 'b=2']);
          res.end(JSON.stringify(seen));
          return;
        case '/big': {
          let remaining = Number(url.searchParams.get('bytes') ?? '0');
          if (url.searchParams.get('length') === '1') res.setHeader('Content-Length', String(remaining));
          const block = Buffer.alloc(64 * 1024, 0x61);
          const pump = (): void => {
            while (remaining > 0) {
              const n = Math.min(remaining, block.length);
              remaining -= n;
              if (!res.write(n === block.length ? block : block.subarray(0, n))) {
                res.once('drain', pump);
                return;
              }
            }
            res.end();
          };
          pump();
          return;
        }
        case '/noclose':
          res.socket?.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until close');
          res.socket?.end();
          return;
        case '/chunked':
          res.socket?.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n');
          return;
        default:
          res.statusCode = 404;
          res.end('not found');
      }
    });
  };
  const server = tls ? https.createServer({ key: tls.key, cert: tls.cert }, handler) : http.createServer(handler);
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket: net.Socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  state.port = (server.address() as net.AddressInfo).port;
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return state;
}

/** A self-signed certificate for 127.0.0.1 / localhost, made with openssl in a temp dir. */
export function selfSignedCert(): { key: string; cert: string; certPath: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-http-proxy-'));
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  const result = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    { stdio: 'pipe' },
  );
  if (result.status !== 0) throw new Error(`openssl failed: ${result.stderr.toString()}`);
  return { key: readFileSync(keyPath, 'utf8'), cert: readFileSync(certPath, 'utf8'), certPath, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface CurlResult {
  code: number | null;
  status: number;
  body: string;
  stderr: string;
  size: number;
}

/** Run curl; `-w` appends the status and download size on a last line. */
export function curl(args: string[], input?: Buffer): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '--max-time', '60', '-w', '\n%{http_code} %{size_download}', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const text = Buffer.concat(out).toString('latin1');
      const last = text.lastIndexOf('\n');
      const [status, size] = text.slice(last + 1).split(' ');
      resolve({ code, status: Number(status), size: Number(size), body: text.slice(0, last), stderr: Buffer.concat(err).toString() });
    });
    if (input) child.stdin.end(input);
    else child.stdin.end();
  });
}

/** A raw TCP client that collects what it receives. */
export class RawClient {
  readonly socket: net.Socket;
  received = Buffer.alloc(0);
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake();
    });
    socket.on('error', () => {});
    // The proxy ends with FIN: that is the end of what it will say.
    socket.on('end', () => {
      this.ended = true;
      this.closed = true;
      socket.end();
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }
  ended = false;

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Wait until `predicate(received)` holds or the socket closes. */
  async until(predicate: (text: string) => boolean): Promise<string> {
    for (;;) {
      const text = this.received.toString('latin1');
      if (predicate(text) || this.closed) return text;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Wait for `count` complete responses with Content-Length bodies (or close). */
  async responses(count: number): Promise<Array<{ status: number; head: string; body: string }>> {
    let parsed: Array<{ status: number; head: string; body: string }> = [];
    await this.until((text) => {
      parsed = parseResponses(text);
      return parsed.length >= count;
    });
    return parsed;
  }

  waitClosed(): Promise<string> {
    return this.until(() => false);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Split a byte stream into responses framed by Content-Length. */
export function parseResponses(text: string): Array<{ status: number; head: string; body: string }> {
  const out: Array<{ status: number; head: string; body: string }> = [];
  let pos = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', pos);
    if (end < 0) return out;
    const head = text.slice(pos, end);
    const match = /\r\ncontent-length: *(\d+)/i.exec(head);
    const length = match ? Number(match[1]) : 0;
    if (text.length < end + 4 + length) return out;
    out.push({ status: Number(head.slice(9, 12)), head, body: text.slice(end + 4, end + 4 + length) });
    pos = end + 4 + length;
  }
}


export function basic(user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}
