import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeRuntime, runtimeReady, type Runtime } from '../src/index.js';
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

/** The runtimes to run a suite on: Node's adapter always, Bun's native one too under Bun. */
export async function testRuntimes(): Promise<{ runtimes: Runtime[]; detected: Runtime }> {
  const detected = await runtimeReady();
  return { runtimes: detected.name === 'bun' ? [detected, nodeRuntime] : [nodeRuntime], detected };
}

/** A self-signed certificate for `name` (with `san`, e.g. `DNS:localhost,IP:127.0.0.1`) written into `dir`. */
export function selfSigned(dir: string, name: string, san: string): { cert: string; key: string } {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=${san}`,
    '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`),
  ], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, `${name}.pem`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') };
}
