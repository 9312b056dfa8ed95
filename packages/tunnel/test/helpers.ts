import http from 'node:http';
import net from 'node:net';
import { connect, runtime, runtimeReady, type Conn, type ConnHandler, type Listener } from '@wmproxy/core-net';
import { Mux, type MuxOptions, type TunnelStream } from '../src/mux.js';

/** Two established muxes over one loopback TCP connection. */
export async function muxPair(options: Partial<MuxOptions> = {}): Promise<{ client: Mux; server: Mux; close(): void }> {
  await runtimeReady();
  let accepted: (conn: Conn) => void = () => undefined;
  const serverConn = new Promise<Conn>((resolve) => (accepted = resolve));
  const listener: Listener = await runtime().listen({ host: '127.0.0.1', port: 0, onConnection: (conn) => accepted(conn) });
  const clientConn = await connect({ host: '127.0.0.1', port: listener.port });
  const server = new Mux(await serverConn, { ...options, side: 'server' });
  const client = new Mux(clientConn, { ...options, side: 'client' });
  listener.close();
  server.established = true;
  client.established = true;
  return {
    client,
    server,
    close() {
      client.destroy();
      server.destroy();
    },
  };
}

/** Collects everything a stream delivers, resolving on close. */
export function sink(stream: Conn, options: { pauseEvery?: number[]; endOnEnd?: boolean } = {}): { done: Promise<{ bytes: Uint8Array; ended: boolean; error?: Error }>; size(): number } {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let ended = false;
  let resolve: (value: { bytes: Uint8Array; ended: boolean; error?: Error }) => void = () => undefined;
  const done = new Promise<{ bytes: Uint8Array; ended: boolean; error?: Error }>((r) => (resolve = r));
  const pauses = options.pauseEvery ?? [];
  let n = 0;
  const handler: ConnHandler = {
    data(conn, chunk) {
      chunks.push(chunk.slice());
      size += chunk.byteLength;
      const pause = pauses[n++ % Math.max(1, pauses.length)];
      if (pause !== undefined && pause > 0) {
        conn.pause();
        setTimeout(() => conn.resume(), pause % 5);
      }
    },
    end(conn) {
      ended = true;
      if (options.endOnEnd) conn.end();
    },
    close(_conn, error) {
      const bytes = new Uint8Array(size);
      let at = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, at);
        at += chunk.byteLength;
      }
      resolve({ bytes, ended, ...(error ? { error } : {}) });
    },
  };
  stream.setHandler(handler);
  return { done, size: () => size };
}

/** Write `chunks` honouring backpressure, then end. */
export async function writeAll(conn: Conn, chunks: Uint8Array[], end = true): Promise<void> {
  for (const chunk of chunks) {
    if (conn.closed) throw new Error('closed while writing');
    if (!conn.write(chunk)) {
      await new Promise<void>((resolve) => {
        const previous = conn as Conn & { handler: ConnHandler };
        const handler = previous.handler;
        conn.setHandler({ ...handler, drain(c) {
          conn.setHandler(handler);
          handler.drain?.(c);
          resolve();
        }, close(c, e) {
          conn.setHandler(handler);
          handler.close(c, e);
          resolve();
        } });
      });
    }
  }
  if (end) conn.end();
}

/** A stream pair: `a` opened on the client, `b` accepted on the server. */
export async function streamPair(client: Mux, server: Mux): Promise<[TunnelStream, TunnelStream]> {
  const accepted = new Promise<TunnelStream>((resolve) =>
    server.setEvents({
      open(_mux, stream) {
        stream.accept();
        resolve(stream);
      },
    }),
  );
  const a = await client.open(new Uint8Array(0));
  return [a, await accepted];
}

export function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed | 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export function split(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  let i = 0;
  while (at < bytes.byteLength) {
    const n = Math.max(1, sizes.length ? sizes[i++ % sizes.length]! : bytes.byteLength);
    out.push(bytes.slice(at, at + n));
    at += n;
  }
  return out;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/** A visitor on `port`: `act` drives it; resolves with what it read once the other side's FIN came. */
export function visit(port: number, act: (socket: net.Socket) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    act(socket);
  });
}


/** GET `path` with Host `host` from 127.0.0.1:`port` (no agent: a connection of its own). */
export function httpGet(port: number, host: string, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
