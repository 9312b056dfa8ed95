import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { acceptKey, encodeFrame, FrameParser, parseClosePayload, type FrameSink } from '../src/index.js';

/** A TCP server that echoes, or does what `onSocket` says. */
export async function tcpServer(onSocket: (socket: net.Socket) => void = (socket) => socket.pipe(socket)): Promise<{ port: number; sockets: net.Socket[]; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    onSocket(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface RawReply {
  status: number;
  head: string;
  /** Bytes after the head. */
  rest: Buffer;
}

/** Send a raw upgrade request; resolves with the status line and what follows. */
export async function rawUpgrade(port: number, target = '/', extra: string[] = [], key = randomBytes(16).toString('base64')): Promise<{ socket: net.Socket; reply: RawReply }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  const lines = [`GET ${target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${key}`, ...extra];
  socket.write(lines.join('\r\n') + '\r\n\r\n');
  let buffered = Buffer.alloc(0);
  const reply = await new Promise<RawReply>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const head = buffered.subarray(0, end).toString('latin1');
      resolve({ status: Number(head.split(' ')[1]), head, rest: buffered.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`closed before a reply: ${buffered.toString('latin1')}`)));
  });
  return { socket, reply };
}

export interface Received {
  messages: Array<{ opcode: number; data: Buffer }>;
  closes: Array<{ code: number; reason: string }>;
  pings: number;
  pongs: number;
}

/** Read frames a server sends to a raw client socket. */
export function readFrames(socket: net.Socket, first?: Buffer): Received & { ended: Promise<void> } {
  const received: Received = { messages: [], closes: [], pings: 0, pongs: 0 };
  let current: { opcode: number; parts: Buffer[] } | undefined;
  const sink: FrameSink = {
    messageStart(opcode) {
      current = { opcode, parts: [] };
    },
    messageData(bytes) {
      current!.parts.push(Buffer.from(bytes));
    },
    messageEnd() {
      received.messages.push({ opcode: current!.opcode, data: Buffer.concat(current!.parts) });
    },
    control(opcode, payload) {
      if (opcode === 0x9) received.pings++;
      else if (opcode === 0xa) received.pongs++;
      else {
        const parsed = parseClosePayload(payload);
        received.closes.push(parsed.ok ? { code: parsed.code, reason: parsed.reason } : { code: -1, reason: parsed.why });
      }
    },
  };
  const parser = new FrameParser(sink, { role: 'client', maxMessageSize: 1 << 30 });
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  if (first && first.length > 0) parser.push(Buffer.from(first));
  socket.on('data', (chunk: Buffer) => parser.push(chunk));
  socket.resume();
  return Object.assign(received, { ended });
}

/** A masked client frame. */
export function clientFrame(opcode: number, payload: Uint8Array | string, fin = true): Uint8Array {
  return encodeFrame(opcode, typeof payload === 'string' ? Buffer.from(payload) : payload, fin, true);
}

export async function until(check: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A minimal WebSocket server of our own codec on node:net / node:tls that
 * records each upgrade request head and echoes every message as binary.
 */
export async function recordingWsServer(tlsOptions?: { cert: string; key: string }): Promise<{ port: number; heads: string[]; close(): Promise<void> }> {
  const heads: string[] = [];
  const sockets: net.Socket[] = [];
  const onSocket = (socket: net.Socket): void => {
    sockets.push(socket);
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const head = buffered.subarray(0, end).toString('latin1');
      heads.push(head);
      const key = /sec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? '';
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
      let parts: Buffer[] = [];
      const parser = new FrameParser({
        messageStart() {
          parts = [];
        },
        messageData(bytes) {
          parts.push(Buffer.from(bytes));
        },
        messageEnd() {
          socket.write(encodeFrame(0x2, Buffer.concat(parts)));
        },
        control(opcode, payload) {
          if (opcode === 0x8) socket.end(encodeFrame(0x8, payload));
          else if (opcode === 0x9) socket.write(encodeFrame(0xa, payload));
        },
      }, { role: 'server', maxMessageSize: 1 << 26 });
      const rest = buffered.subarray(end + 4);
      if (rest.length > 0) parser.push(Buffer.from(rest));
      socket.on('data', (more: Buffer) => parser.push(more));
    };
    socket.on('data', onData);
  };
  const server = tlsOptions ? tls.createServer(tlsOptions, onSocket) : net.createServer(onSocket);
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    heads,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
