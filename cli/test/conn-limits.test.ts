import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { Running } from './helpers.js';

/** A connection that has sent `payload`; resolves with what came back once `done(text)` says so or the server closed. */
function exchange(port: number, payload: string, done: (text: string) => boolean): Promise<{ socket: net.Socket; text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(payload));
    let text = '';
    let settled = false;
    const settle = (closed: boolean) => {
      if (settled) return;
      settled = true;
      resolve({ socket, text, closed });
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (done(text)) settle(false);
    });
    socket.on('error', () => {});
    socket.on('close', () => settle(true));
  });
}

const answered = (text: string): boolean => /\r\n\r\n[\s\S]*hello/.test(text);

async function backend(): Promise<{ port: number; close(): void }> {
  const server = createServer((_req, res) => res.end('hello'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, close: () => server.closeAllConnections?.() ?? server.close() };
}

test('wmproxy reverse-proxy --max-connections-per-ip answers 503 to a client\'s connection over the limit and logs it', async () => {
  const origin = await backend();
  const cli = new Running(['reverse-proxy', '--from', '127.0.0.1:0', '--to', `http://127.0.0.1:${origin.port}`, '--max-connections-per-ip', '1', '--hedge-request', '0']);
  const open: net.Socket[] = [];
  try {
    const port = await cli.port(/listening .*address=127\.0\.0\.1:(\d+)/);
    const first = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', answered);
    open.push(first.socket);
    assert.match(first.text, /^HTTP\/1\.1 200/);
    const second = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', () => false);
    assert.equal(second.closed, true);
    assert.match(second.text, /^HTTP\/1\.1 503 [\s\S]*Connection: close/i);
    await cli.waitFor(/connection limit reached.* limit=client max=1/, { stream: 'stderr' });
  } finally {
    for (const socket of open) socket.destroy();
    cli.kill();
    origin.close();
  }
});

test('wmproxy proxy --max-connections closes a connection over the limit without an answer', async () => {
  const origin = await backend();
  const cli = new Running(['proxy', '--bind', '127.0.0.1:0', '--max-connections', '1']);
  const open: net.Socket[] = [];
  try {
    const port = await cli.port(/listening .*address=127\.0\.0\.1:(\d+)/);
    const request = `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`;
    const first = await exchange(port, request, answered);
    open.push(first.socket);
    assert.match(first.text, /^HTTP\/1\.1 200/);
    const second = await exchange(port, request, () => false);
    assert.equal(second.closed, true);
    assert.equal(second.text, '');
    await cli.waitFor(/connection limit reached.* limit=listener max=1/, { stream: 'stderr' });
  } finally {
    for (const socket of open) socket.destroy();
    cli.kill();
    origin.close();
  }
});
