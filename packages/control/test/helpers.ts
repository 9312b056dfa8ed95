/** Test helpers: real backends that misbehave on cue, curl as a child process, small waits. */
import { connect as tlsConnect } from 'node:tls';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Backend {
  port: number;
  address: string;
  requests: number;
  /** Of those, health checks (`/healthz`). */
  healthChecks: number;
  /** Stop listening and reset every open connection (the process "dies"). */
  kill(): Promise<void>;
}

/** An HTTP server answering `body` (and `/healthz` with 200). */
export async function backend(body = 'hello', port = 0): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  const state = { requests: 0, healthChecks: 0 };
  const server = http.createServer((request, response) => {
    state.requests++;
    if (request.url === '/healthz') state.healthChecks++;
    response.setHeader('content-type', 'text/plain');
    response.end(request.url === '/healthz' ? 'ok' : `${body} ${request.url}`);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const bound = (server.address() as net.AddressInfo).port;
  return {
    port: bound,
    address: `127.0.0.1:${bound}`,
    get requests() {
      return state.requests;
    },
    get healthChecks() {
      return state.healthChecks;
    },
    kill: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface CurlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function curl(args: string[]): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '--max-time', '10', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Poll `check` until it returns a truthy value (or throw after `timeoutMs`). */
export async function until<T>(check: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A raw TCP connection with a simple "read until" helper. */
export class RawClient {
  private buffer = '';
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('latin1');
      for (const wake of this.waiters.splice(0)) wake();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const wake of this.waiters.splice(0)) wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(address: string): Promise<RawClient> {
    const colon = address.lastIndexOf(':');
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(address.slice(colon + 1)) }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** Everything received once it contains `marker` (consumed). */
  async readUntil(marker: string, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.buffer.includes(marker)) {
      if (this.closed) throw new Error(`connection closed before ${JSON.stringify(marker)}; got ${JSON.stringify(this.buffer)}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(marker)}; got ${JSON.stringify(this.buffer)}`);
      await Promise.race([new Promise<void>((resolve) => this.waiters.push(resolve)), sleep(100)]);
    }
    const end = this.buffer.indexOf(marker) + marker.length;
    const out = this.buffer.slice(0, end);
    this.buffer = this.buffer.slice(end);
    return out;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Is anything listening on `address`? */
export function accepts(address: string): Promise<boolean> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = net.connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The serial number of the certificate a verifying TLS client (trusting `ca`) sees for `servername`. */
export function serialOf(port: number, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, ca });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerX509Certificate()!.serialNumber);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}
