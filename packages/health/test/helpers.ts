import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventEmitter } from 'node:events';
import { trackedServer } from '@wmproxy/testkit';
export { closedPort } from '@wmproxy/testkit';

/**
 * An HTTP/1.1 backend (plain node:net, independent of the runtime under test)
 * that misbehaves on cue. It counts connections and remembers requests.
 */
export type Mode = 'ok' | 'status500' | 'status503' | 'wrongBody' | 'hang' | 'slow' | 'flap' | 'chunked' | 'reset';

export interface Backend {
  port: number;
  address: string;
  mode: Mode;
  slowMs: number;
  /** Connections accepted so far. */
  accepted: number;
  /** Most connections open at once, measured a moment after each accept (so closes already sent are counted). */
  maxOpen: number;
  requests: Array<{ method: string; path: string; headers: Record<string, string>; servername?: string }>;
  /** Close the listener (new connections are refused) and every open connection. */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function backend(initial: Mode = 'ok', options: { tls?: { cert: string; key: string }; port?: number } = {}): Promise<Backend> {
  const open = new Set<net.Socket>();
  let flip = false;
  let server: net.Server | undefined;
  const state: Backend = {
    port: options.port ?? 0,
    address: '',
    mode: initial,
    slowMs: 300,
    accepted: 0,
    maxOpen: 0,
    requests: [],
    stop: async () => {
      for (const socket of open) socket.destroy();
      const closing = server;
      server = undefined;
      if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()));
    },
    start: async () => {
      server = options.tls ? tls.createServer({ ...options.tls }, onSocket) : net.createServer(onSocket);
      server.on('error', () => undefined);
      if (options.tls) server.on('tlsClientError', () => undefined);
      await new Promise<void>((resolve) => server!.listen(state.port, '127.0.0.1', resolve));
      state.port = (server.address() as net.AddressInfo).port;
      state.address = `127.0.0.1:${state.port}`;
    },
    close: () => state.stop(),
  };
  function onSocket(socket: net.Socket): void {
    state.accepted++;
    open.add(socket);
    setTimeout(() => (state.maxOpen = Math.max(state.maxOpen, open.size)), 25);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (chunk) => {
      if (head.includes('\r\n\r\n')) return;
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const [requestLine, ...lines] = head.split('\r\n\r\n')[0]!.split('\r\n');
      const [method = '', path = ''] = requestLine!.split(' ');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      const request: Backend['requests'][number] = { method, path, headers };
      const servername = (socket as tls.TLSSocket).servername;
      if (typeof servername === 'string') request.servername = servername;
      state.requests.push(request);
      answer(socket);
    });
  }
  function answer(socket: net.Socket): void {
    const reply = (status: string, body: string): void => {
      socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    };
    switch (state.mode) {
      case 'ok':
        return reply('200 OK', 'all ok here');
      case 'status500':
        return reply('500 Internal Server Error', 'broken');
      case 'status503':
        return reply('503 Service Unavailable', 'down');
      case 'wrongBody':
        return reply('200 OK', 'maintenance');
      case 'hang':
        return;
      case 'slow':
        setTimeout(() => reply('200 OK', 'all ok, slowly'), state.slowMs);
        return;
      case 'flap':
        flip = !flip;
        return flip ? reply('200 OK', 'all ok here') : reply('500 Internal Server Error', 'broken');
      case 'chunked':
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
        socket.write('5\r\nall o\r\n');
        setTimeout(() => socket.end('7\r\nk here!\r\n0\r\n\r\n'), 10);
        return;
      case 'reset':
        socket.resetAndDestroy();
        return;
    }
  }
  await state.start();
  return state;
}


/** A TCP server speaking a tiny line protocol: `PING` → `+PONG`. Counts connections. */
export async function pingServer(): Promise<{ port: number; accepted: number; close(): Promise<void> }> {
  const state = { port: 0, accepted: 0, close: async () => {} };
  const server = await trackedServer((socket) => {
    state.accepted++;
    socket.on('data', (chunk) => {
      if (chunk.toString().includes('PING')) socket.write('+PONG\r\n');
    });
    socket.on('end', () => socket.end());
  });
  state.port = server.port;
  state.close = server.close;
  return state;
}

/**
 * The next `name` event matching `accept`. A generous safety timeout turns a
 * missing event into a failure instead of a hung test (it asserts nothing about timing).
 */
export function nextEvent<T>(emitter: EventEmitter, name: string, accept: (event: T) => boolean = () => true, safetyMs = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(name, listener);
      reject(new Error(`no matching "${name}" event within ${safetyMs} ms`));
    }, safetyMs);
    function listener(event: T): void {
      if (!accept(event)) return;
      clearTimeout(timer);
      emitter.off(name, listener);
      resolve(event);
    }
    emitter.on(name, listener);
  });
}

/** Collect every `name` event until `stop()`. */
export function collect<T>(emitter: EventEmitter, name: string): { events: T[]; stop(): void } {
  const events: T[] = [];
  const listener = (event: T): void => void events.push(event);
  emitter.on(name, listener);
  return { events, stop: () => emitter.off(name, listener) };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let cached: { cert: string; key: string } | undefined;

/** A self-signed certificate for `localhost` and 127.0.0.1 (made once with openssl). */
export function selfSigned(): { cert: string; key: string } {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-health-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore' });
  cached = { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  return cached;
}
