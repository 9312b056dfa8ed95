import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { promisify } from 'node:util';
import WebSocket from 'ws';
import { closedPort, selfSignedCert } from '@wmproxy/testkit';
import { Tcp2WsServer, Ws2TcpServer, type BridgeStats } from '../src/index.js';
import { recordingWsServer, tcpServer, until } from './helpers.js';

const run = promisify(execFile);
const WEBSOCKIFY = '/usr/bin/websockify';
const hasWebsockify = existsSync(WEBSOCKIFY);
// Sources (Bun) and compiled tests (Node) both find the fixture in the source tree.
const here = fileURLToPath(new URL('.', import.meta.url));
const clientScript = [join(here, 'fixtures', 'websockify-client.py'), join(here, '..', '..', 'test', 'fixtures', 'websockify-client.py')].find((path) => existsSync(path))!;

const children: ChildProcess[] = [];
after(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
});

function portOf(addresses: string[]): number {
  return Number(addresses[0]!.split(':').pop());
}

async function startWebsockify(target: number): Promise<number> {
  const port = await closedPort();
  const child = spawn(WEBSOCKIFY, [`127.0.0.1:${port}`, `127.0.0.1:${target}`], { stdio: 'ignore' });
  children.push(child);
  await until(() => child.exitCode === null && probe(port), 'websockify to listen');
  await probeOnce(port);
  return port;
}

let lastProbe = false;
function probe(port: number): boolean {
  void probeOnce(port).then((ok) => (lastProbe = ok));
  return lastProbe;
}
function probeOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Send `payload` on a plain TCP connection and read until as many bytes came back. */
async function tcpRoundTrip(port: number, payload: Buffer): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const got: Buffer[] = [];
  let size = 0;
  const done = new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      got.push(chunk);
      size += chunk.length;
      if (size >= payload.length) resolve();
    });
    socket.once('close', () => (size >= payload.length ? resolve() : reject(new Error(`closed after ${size} bytes`))));
    socket.on('error', () => {});
  });
  socket.write(payload);
  await done;
  socket.end();
  return Buffer.concat(got);
}

describe('interop with real peers', { skip: !hasWebsockify && 'websockify not installed' }, () => {
  it("websockify's own client through ws2tcp to a TCP echo", async () => {
    const echo = await tcpServer();
    const server = await new Ws2TcpServer({ listen: '127.0.0.1:0', target: `127.0.0.1:${echo.port}` }).start();
    const url = `ws://127.0.0.1:${portOf(server.boundAddresses)}/`;
    for (const protocol of ['binary']) {
      const { stdout } = await run('/usr/bin/python3', [clientScript, url, 'hello from websockify', protocol], { timeout: 20_000 });
      assert.match(stdout, new RegExp(`protocol=${protocol} echo=hello from websockify`));
      assert.match(stdout, /close=1000/);
    }
    await server.shutdown();
    await echo.close();
  });

  it('the ws package client through ws2tcp: 4 MiB each way, then a clean close', async () => {
    const echo = await tcpServer();
    const closed: BridgeStats[] = [];
    const server = await new Ws2TcpServer({ listen: '127.0.0.1:0', target: `127.0.0.1:${echo.port}`, onBridgeClose: (stats) => closed.push(stats) }).start();
    const client = new WebSocket(`ws://127.0.0.1:${portOf(server.boundAddresses)}/`, ['binary']);
    await once(client, 'open');
    assert.equal(client.protocol, 'binary');
    const payload = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    let size = 0;
    const got: Buffer[] = [];
    const all = new Promise<void>((resolve) => {
      client.on('message', (data: Buffer) => {
        got.push(Buffer.from(data));
        size += data.length;
        if (size >= payload.length) resolve();
      });
    });
    for (let at = 0; at < payload.length; at += 256 * 1024) client.send(payload.subarray(at, at + 256 * 1024));
    await all;
    assert.ok(Buffer.concat(got).equals(payload));
    const closing = once(client, 'close');
    client.close(1000);
    const [code] = await closing;
    assert.equal(code, 1000);
    await until(() => closed.length === 1, 'the bridge to close');
    assert.equal(closed[0]!.tcpEnd, 'fin');
    assert.equal(closed[0]!.bytesToTcp, payload.length);
    await server.shutdown();
    await echo.close();
  });

  it('tcp2ws to websockify to a TCP echo', async () => {
    const echo = await tcpServer();
    const websockify = await startWebsockify(echo.port);
    const server = await new Tcp2WsServer({ listen: '127.0.0.1:0', url: `ws://127.0.0.1:${websockify}/`, subprotocols: ['binary'] }).start();
    const payload = Buffer.alloc(1024 * 1024, 'z');
    const back = await tcpRoundTrip(portOf(server.boundAddresses), payload);
    assert.ok(back.equals(payload));
    await server.shutdown();
    await echo.close();
  });

  it('tcp2ws chained into ws2tcp, with base64 negotiated between them', async () => {
    const echo = await tcpServer();
    const ws2tcp = await new Ws2TcpServer({ listen: '127.0.0.1:0', target: `127.0.0.1:${echo.port}`, subprotocols: ['base64'] }).start();
    const tcp2ws = await new Tcp2WsServer({ listen: '127.0.0.1:0', url: `ws://127.0.0.1:${portOf(ws2tcp.boundAddresses)}/`, subprotocols: ['base64'] }).start();
    const payload = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i & 0xff));
    const back = await tcpRoundTrip(portOf(tcp2ws.boundAddresses), payload);
    assert.ok(back.equals(payload));
    await tcp2ws.shutdown();
    await ws2tcp.shutdown();
    await echo.close();
  });

  it("tcp2ws keeps the URL's path and query, and sends Host, Origin and extra headers", async () => {
    const peer = await recordingWsServer();
    const server = await new Tcp2WsServer({
      listen: '127.0.0.1:0',
      url: `ws://user:p%40ss@127.0.0.1:${peer.port}/vnc/ws?token=abc&x=%20y`,
      host: 'desk.example',
      origin: 'https://desk.example',
      headers: [['X-Trace', '42']],
    }).start();
    const back = await tcpRoundTrip(portOf(server.boundAddresses), Buffer.from('ping'));
    assert.equal(back.toString(), 'ping');
    const head = peer.heads[0]!;
    assert.match(head, /^GET \/vnc\/ws\?token=abc&x=%20y HTTP\/1\.1\r\n/);
    assert.match(head, /\r\nHost: desk\.example\r\n/);
    assert.match(head, /\r\nOrigin: https:\/\/desk\.example\r\n/);
    assert.match(head, /\r\nX-Trace: 42\r\n/);
    assert.match(head, new RegExp(`\\r\\nAuthorization: Basic ${Buffer.from('user:p@ss').toString('base64')}\\r\\n`));
    await server.shutdown();
    await peer.close();
  });

  it('tcp2wss refuses a self-signed certificate unless insecure is set, and trusts a given CA', async () => {
    const { cert, key } = selfSignedCert();
    const peer = await recordingWsServer({ cert, key });
    const url = `wss://localhost:${peer.port}/secure?q=1`;
    const strict = await new Tcp2WsServer({ listen: '127.0.0.1:0', url }).start();
    await assert.rejects(tcpRoundTrip(portOf(strict.boundAddresses), Buffer.from('x')), /closed after 0 bytes/);
    assert.equal(peer.heads.length, 0);
    const insecure = await new Tcp2WsServer({ listen: '127.0.0.1:0', url, insecure: true }).start();
    assert.equal((await tcpRoundTrip(portOf(insecure.boundAddresses), Buffer.from('over tls'))).toString(), 'over tls');
    const trusting = await new Tcp2WsServer({ listen: '127.0.0.1:0', url, ca: cert }).start();
    assert.equal((await tcpRoundTrip(portOf(trusting.boundAddresses), Buffer.from('verified'))).toString(), 'verified');
    assert.match(peer.heads[0]!, /^GET \/secure\?q=1 /);
    await strict.shutdown();
    await insecure.shutdown();
    await trusting.shutdown();
    await peer.close();
  });

  it('ws2tcp over TLS (wss) to the ws package client', async () => {
    const { cert, key } = selfSignedCert();
    const echo = await tcpServer();
    const server = await new Ws2TcpServer({ listen: '127.0.0.1:0', tls: { cert, key }, target: `127.0.0.1:${echo.port}` }).start();
    const client = new WebSocket(`wss://localhost:${portOf(server.boundAddresses)}/`, { ca: cert });
    await once(client, 'open');
    const reply = once(client, 'message');
    client.send(Buffer.from('secret'));
    const [data] = await reply;
    assert.equal(Buffer.from(data as Buffer).toString(), 'secret');
    client.close();
    await once(client, 'close');
    await server.shutdown();
    await echo.close();
  });
});
