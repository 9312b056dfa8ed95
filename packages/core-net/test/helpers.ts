import net from 'node:net';
import { trackedServer } from '@wmproxy/testkit';
export { closedPort } from '@wmproxy/testkit';

/** A plain node:net echo server on 127.0.0.1:0 (the peer, independent of the runtime under test). */
export async function echoServer(): Promise<{ port: number; close(): Promise<void>; connections: number }> {
  const state = { port: 0, connections: 0, close: async () => {} };
  const server = await trackedServer((socket) => {
    state.connections++;
    socket.pipe(socket);
  });
  state.port = server.port;
  state.close = server.close;
  return state;
}


/** Send `data`, half-close, and collect everything until the server closes. */
export function roundTrip(port: number, data: Buffer | string, host = '127.0.0.1'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ port, host, allowHalfOpen: true }, () => {
      socket.end(data);
    });
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}
