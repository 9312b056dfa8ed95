import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Logger, type LogFields } from '@wmproxy/core-net';
import { Ws2TcpServer, type BridgeStats, type Ws2TcpOptions } from '../src/index.js';
import { clientFrame, rawUpgrade, readFrames, tcpServer, until } from './helpers.js';

const run = promisify(execFile);

async function bridgeTo(options: Partial<Ws2TcpOptions>): Promise<{ server: Ws2TcpServer; port: number; closed: BridgeStats[]; logs: Array<{ message: string; fields: LogFields }> }> {
  const closed: BridgeStats[] = [];
  const logs: Array<{ message: string; fields: LogFields }> = [];
  const sink = { write: (line: string) => {
    const record = JSON.parse(line) as LogFields & { msg: string };
    logs.push({ message: record.msg, fields: record });
  } };
  const logger = new Logger({ level: 'debug', json: true, sink });
  const server = await new Ws2TcpServer({ listen: '127.0.0.1:0', logger, onBridgeClose: (stats) => closed.push(stats), ...options }).start();
  const port = Number(server.boundAddresses[0]!.split(':').pop());
  return { server, port, closed, logs };
}

describe('ws2tcp', () => {
  it('relays binary messages to the TCP target and its bytes back as binary messages', async () => {
    const echo = await tcpServer();
    const { server, port, closed } = await bridgeTo({ target: `127.0.0.1:${echo.port}` });
    const { socket, reply } = await rawUpgrade(port);
    assert.equal(reply.status, 101);
    assert.match(reply.head, /Sec-WebSocket-Accept: /);
    const frames = readFrames(socket, reply.rest);
    socket.write(clientFrame(0x2, Buffer.from('hello ')));
    // A fragmented binary message: its pieces go on as bytes.
    socket.write(clientFrame(0x2, Buffer.from('wo'), false));
    socket.write(clientFrame(0x0, Buffer.from('rld'), true));
    await until(() => Buffer.concat(frames.messages.map((m) => m.data)).toString() === 'hello world', 'the echo');
    assert.ok(frames.messages.every((m) => m.opcode === 0x2));
    socket.write(clientFrame(0x8, Buffer.from([0x03, 0xe8])));
    await frames.ended;
    assert.deepEqual(frames.closes.map((c) => c.code), [1000]);
    await until(() => closed.length === 1, 'the bridge to close');
    assert.equal(closed[0]!.tcpEnd, 'fin');
    assert.equal(closed[0]!.bytesToTcp, 11);
    await server.shutdown();
    await echo.close();
  });

  it('negotiates base64 and decodes and encodes it both ways (websockify/noVNC)', async () => {
    const seen: Buffer[] = [];
    const target = await tcpServer((socket) => socket.on('data', (chunk: Buffer) => {
      seen.push(chunk);
      socket.write(Buffer.from([0, 1, 2, 0xff, 0xfe]));
    }));
    const { server, port } = await bridgeTo({ target: `127.0.0.1:${target.port}` });
    const { socket, reply } = await rawUpgrade(port, '/', ['Sec-WebSocket-Protocol: base64']);
    assert.equal(reply.status, 101);
    assert.match(reply.head, /Sec-WebSocket-Protocol: base64/);
    const frames = readFrames(socket, reply.rest);
    // A base64 group split across two fragments.
    const encoded = Buffer.from([9, 8, 7, 6, 5]).toString('base64');
    socket.write(clientFrame(0x1, encoded.slice(0, 3), false));
    socket.write(clientFrame(0x0, encoded.slice(3), true));
    await until(() => frames.messages.length > 0, 'a reply');
    assert.deepEqual([...Buffer.concat(seen)], [9, 8, 7, 6, 5]);
    assert.equal(frames.messages[0]!.opcode, 0x1);
    assert.deepEqual([...Buffer.from(frames.messages[0]!.data.toString(), 'base64')], [0, 1, 2, 0xff, 0xfe]);
    socket.write(clientFrame(0x1, 'not*base64'));
    await frames.ended;
    assert.deepEqual(frames.closes.map((c) => c.code), [1007]);
    socket.destroy();
    await server.shutdown();
    await target.close();
  });

  it('prefers binary when offered first and refuses offers it does not serve', async () => {
    const echo = await tcpServer();
    const { server, port } = await bridgeTo({ target: `127.0.0.1:${echo.port}` });
    const a = await rawUpgrade(port, '/', ['Sec-WebSocket-Protocol: chat, binary']);
    assert.match(a.reply.head, /Sec-WebSocket-Protocol: binary/);
    const b = await rawUpgrade(port, '/', ['Sec-WebSocket-Protocol: chat']);
    assert.equal(b.reply.status, 400);
    a.socket.destroy();
    b.socket.destroy();
    await server.shutdown();
    await echo.close();
  });

  it('refuses text messages with 1003 by default and forwards them under text: forward', async () => {
    const echo = await tcpServer();
    const refusing = await bridgeTo({ target: `127.0.0.1:${echo.port}` });
    const r = await rawUpgrade(refusing.port);
    const refused = readFrames(r.socket, r.reply.rest);
    r.socket.write(clientFrame(0x1, 'hi'));
    await refused.ended;
    assert.deepEqual(refused.closes.map((c) => c.code), [1003]);
    await until(() => refusing.closed.length === 1, 'the bridge to close');
    assert.equal(refusing.closed[0]!.bytesToTcp, 0);
    assert.equal(refusing.closed[0]!.tcpEnd, 'reset');

    const forwarding = await bridgeTo({ target: `127.0.0.1:${echo.port}`, text: 'forward' });
    const f = await rawUpgrade(forwarding.port);
    const forwarded = readFrames(f.socket, f.reply.rest);
    f.socket.write(clientFrame(0x1, 'héllo'));
    await until(() => forwarded.messages.length > 0, 'the echo');
    assert.equal(forwarded.messages[0]!.data.toString(), 'héllo');
    // Invalid UTF-8 in a text message: 1007 (RFC 6455 8.1).
    f.socket.write(clientFrame(0x1, Buffer.from([0x68, 0xc0, 0xaf])));
    await forwarded.ended;
    assert.deepEqual(forwarded.closes.map((c) => c.code), [1007]);
    await refusing.server.shutdown();
    await forwarding.server.shutdown();
    await echo.close();
  });

  it('answers bad frames with the RFC close code and a log line: unmasked 1002, fragmented ping 1002, oversized 1009', async () => {
    const echo = await tcpServer();
    const { server, port, logs } = await bridgeTo({ target: `127.0.0.1:${echo.port}`, maxMessageSize: 1000 });
    const cases: Array<[string, Uint8Array[], number]> = [
      ['unmasked', [Buffer.from([0x82, 0x02, 0x41, 0x42])], 1002],
      ['fragmented ping', [clientFrame(0x9, 'x', false)], 1002],
      ['oversized frame', [clientFrame(0x2, Buffer.alloc(1001))], 1009],
      ['oversized fragmented message', [clientFrame(0x2, Buffer.alloc(600), false), clientFrame(0x0, Buffer.alloc(600), true)], 1009],
      ['reserved opcode', [clientFrame(0x3, 'x')], 1002],
      ['RSV bit', [Buffer.from([0xc2, 0x80, 0, 0, 0, 0])], 1002],
      ['bad close code', [clientFrame(0x8, Buffer.from([0x03, 0xed]))], 1002],
    ];
    for (const [name, frames, code] of cases) {
      const { socket, reply } = await rawUpgrade(port);
      const received = readFrames(socket, reply.rest);
      for (const frame of frames) socket.write(frame);
      await received.ended;
      assert.deepEqual(received.closes.map((c) => c.code), [code], name);
    }
    await until(() => logs.filter((l) => l.message === 'ws2tcp bridge closed' && /websocket 10/.test(String(l.fields['error']))).length === cases.length, 'a log line per bad peer');
    assert.equal(server.bridgeCount, 0);
    await server.shutdown();
    await echo.close();
  });

  it('refuses a forbidden Origin with 403 and missing credentials with 401 (curl)', async () => {
    const echo = await tcpServer();
    const { server, port, logs } = await bridgeTo({
      target: `127.0.0.1:${echo.port}`,
      origins: ['https://app.example'],
      auth: { basic: [{ user: 'alice', pass: 's3cret' }], bearer: ['tok-123'] },
    });
    const curl = async (...headers: string[]): Promise<string> => (await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '--http1.1',
      '-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13', '-H', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ...headers.flatMap((h) => ['-H', h]), `http://127.0.0.1:${port}/`])).stdout;
    assert.equal(await curl('Origin: https://evil.example', 'Authorization: Bearer tok-123'), '403');
    assert.equal(await curl('Origin: https://app.example'), '401');
    assert.equal(await curl('Origin: https://app.example', 'Authorization: Bearer wrong'), '401');
    const basic = `Authorization: Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
    const ok = await rawUpgrade(port, '/', ['Origin: https://app.example', basic]);
    assert.equal(ok.reply.status, 101);
    const bearer = await rawUpgrade(port, '/', ['Origin: https://APP.example', 'Authorization: Bearer tok-123']);
    assert.equal(bearer.reply.status, 101);
    const noUpgrade = (await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${port}/`])).stdout;
    assert.equal(noUpgrade, '426');
    assert.ok(logs.some((l) => l.message === 'ws2tcp upgrade refused' && l.fields['status'] === 403));
    ok.socket.destroy();
    bearer.socket.destroy();
    await server.shutdown();
    await echo.close();
  });

  it('picks the target by token from a websockify token file (query or path), 404 for a wrong or missing token', async () => {
    const a = await tcpServer((socket) => socket.end('A'));
    const b = await tcpServer((socket) => socket.end('B'));
    const dir = mkdtempSync(join(tmpdir(), 'ws-tokens-'));
    const file = join(dir, 'tokens');
    writeFileSync(file, `# websockify TokenFile\nalpha: 127.0.0.1:${a.port}\nbeta: 127.0.0.1:${b.port}\n`);
    const { server, port } = await bridgeTo({ tokenFile: file, path: '/vnc' });
    const read = async (target: string): Promise<string | number> => {
      const { socket, reply } = await rawUpgrade(port, target);
      if (reply.status !== 101) {
        socket.destroy();
        return reply.status;
      }
      const frames = readFrames(socket, reply.rest);
      await until(() => frames.closes.length > 0, 'the close');
      socket.destroy();
      return Buffer.concat(frames.messages.map((m) => m.data)).toString();
    };
    assert.equal(await read('/vnc?token=alpha'), 'A');
    assert.equal(await read('/vnc/beta'), 'B');
    assert.equal(await read('/vnc?token=gamma'), 404);
    assert.equal(await read('/vnc'), 404);
    assert.equal(await read('/other?token=alpha'), 404);
    await server.shutdown();
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true });
  });

  it('answers 502 when the target refuses', async () => {
    const gone = await tcpServer();
    const portGone = gone.port;
    await gone.close();
    const { server, port } = await bridgeTo({ target: `127.0.0.1:${portGone}` });
    const { socket, reply } = await rawUpgrade(port);
    assert.equal(reply.status, 502);
    socket.destroy();
    await server.shutdown();
  });

  it('pings a silent peer and closes both sides when no pong comes', async () => {
    let targetClosed = false;
    const target = await tcpServer((socket) => socket.on('close', () => (targetClosed = true)));
    const { server, port, closed } = await bridgeTo({ target: `127.0.0.1:${target.port}`, pingIntervalMs: 60, pongTimeoutMs: 60 });
    const { socket, reply } = await rawUpgrade(port);
    // Reads (so pings are seen) but never answers: a dead application.
    const frames = readFrames(socket, reply.rest);
    await frames.ended;
    assert.ok(frames.pings >= 1);
    await until(() => targetClosed && closed.length === 1, 'the target side to close');
    assert.equal(closed[0]!.wsCloseCode, 1006);
    assert.equal(closed[0]!.tcpEnd, 'reset');
    await server.shutdown();
    await target.close();
  });

  it('keeps a peer that answers pings', async () => {
    const echo = await tcpServer();
    const { server, port } = await bridgeTo({ target: `127.0.0.1:${echo.port}`, pingIntervalMs: 40, pongTimeoutMs: 40 });
    const { socket, reply } = await rawUpgrade(port);
    const frames = readFrames(socket, reply.rest);
    let answered = 0;
    socket.on('data', () => {
      // Answer every ping seen so far.
      while (answered < frames.pings) {
        answered++;
        socket.write(clientFrame(0xa, ''));
      }
    });
    await until(() => frames.pings >= 4, 'four pings');
    assert.equal(server.bridgeCount, 1);
    socket.destroy();
    await server.shutdown();
    await echo.close();
  });

  it('maps a clean close to FIN after the queued bytes, and a vanished peer to a reset', async () => {
    const got: Buffer[] = [];
    let sawEnd = false;
    const targetErrors: string[] = [];
    const target = await tcpServer((socket) => {
      socket.on('data', (chunk: Buffer) => got.push(chunk));
      socket.on('error', (error: NodeJS.ErrnoException) => targetErrors.push(error.code ?? error.message));
      socket.on('end', () => {
        sawEnd = true;
        socket.end();
      });
    });
    const { server, port, closed } = await bridgeTo({ target: `127.0.0.1:${target.port}` });
    const clean = await rawUpgrade(port);
    const payload = Buffer.alloc(256 * 1024, 7);
    clean.socket.write(clientFrame(0x2, payload));
    clean.socket.write(clientFrame(0x8, Buffer.from([0x03, 0xe8])));
    const frames = readFrames(clean.socket, clean.reply.rest);
    await until(() => sawEnd, 'the FIN at the target');
    assert.equal(Buffer.concat(got).length, payload.length);
    await frames.ended;
    await until(() => closed.length === 1, 'the bridge to close');
    assert.equal(closed[0]!.tcpEnd, 'fin');
    assert.equal(closed[0]!.wsCloseCode, 1000);

    sawEnd = false;
    const dropped = await rawUpgrade(port);
    await until(() => target.sockets.length === 2, 'the second target connection');
    dropped.socket.destroy();
    await until(() => closed.length === 2, 'the second bridge to close');
    assert.equal(closed[1]!.wsCloseCode, 1006);
    assert.equal(closed[1]!.tcpEnd, 'reset');
    // A real RST (Conn.reset): the TCP peer reads ECONNRESET, not a clean end.
    await until(() => target.sockets[1]!.destroyed, 'the target side to close');
    assert.deepEqual(targetErrors, ['ECONNRESET']);
    assert.equal(sawEnd, false);
    await server.shutdown();
    await target.close();
  });

  it('maps the target FIN to close 1000 and a target reset to close 1011', async () => {
    const finishing = await tcpServer((socket) => socket.end('bye'));
    const resetting = await tcpServer((socket) => {
      socket.write('x', () => setTimeout(() => socket.resetAndDestroy(), 20));
    });
    const fin = await bridgeTo({ target: `127.0.0.1:${finishing.port}` });
    const rst = await bridgeTo({ target: `127.0.0.1:${resetting.port}` });
    const a = await rawUpgrade(fin.port);
    const aFrames = readFrames(a.socket, a.reply.rest);
    await until(() => aFrames.closes.length === 1, 'a close');
    assert.equal(Buffer.concat(aFrames.messages.map((m) => m.data)).toString(), 'bye');
    assert.equal(aFrames.closes[0]!.code, 1000);
    a.socket.write(clientFrame(0x8, Buffer.from([0x03, 0xe8])));
    await aFrames.ended;
    const b = await rawUpgrade(rst.port);
    const bFrames = readFrames(b.socket, b.reply.rest);
    await until(() => bFrames.closes.length === 1, 'a close');
    assert.equal(bFrames.closes[0]!.code, 1011);
    b.socket.destroy();
    await fin.server.shutdown();
    await rst.server.shutdown();
    await finishing.close();
    await resetting.close();
  });

  it('bounds what it buffers when the TCP target does not read (backpressure)', async () => {
    const target = await tcpServer((socket) => socket.pause());
    const { server, port } = await bridgeTo({ target: `127.0.0.1:${target.port}` });
    const { socket, reply } = await rawUpgrade(port);
    assert.equal(reply.status, 101);
    const chunk = clientFrame(0x2, Buffer.alloc(64 * 1024, 1));
    const total = 64 * 1024 * 1024;
    let sent = 0;
    // Offer 64 MiB; stop when our own socket stays blocked (the bridge stopped reading).
    while (sent < total) {
      if (!socket.write(chunk)) {
        const drained = await Promise.race([once(socket, 'drain').then(() => true), new Promise((resolve) => setTimeout(resolve, 1500, false))]);
        if (!drained) break;
      }
      sent += chunk.length;
    }
    assert.ok(sent < total, 'the sender was blocked before 64 MiB');
    // What left our socket sits in kernel buffers and at most a high-water mark in the bridge.
    const inTarget = target.sockets[0]!.bytesRead;
    const accepted = socket.bytesWritten;
    assert.ok(accepted < 24 * 1024 * 1024, `the bridge took ${accepted} bytes (target read ${inTarget})`);
    socket.destroy();
    await server.shutdown();
    await target.close();
  });
});
