import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { NetError, Server, connect, parseAddress, type Conn, type ConnHandler } from '@wmproxy/core-net';
import { Socks5Server } from '../src/index.js';
import {
  RawClient,
  closedPort,
  openSocks,
  readReply,
  request,
  startProxy,
  startTcpServer,
  type TestProxy,
} from './helpers.js';

const CONNECT = 1;
const BIND = 2;

describe('SOCKS5 server: RFC 1928 replies, read by a hand-written client', () => {
  let echo: { port: number; close(): Promise<void> };
  let acceptedPorts: number[];
  let proxy: TestProxy;

  before(async () => {
    acceptedPorts = [];
    echo = await startTcpServer((socket) => {
      acceptedPorts.push(socket.remotePort!);
      socket.pipe(socket);
    });
    proxy = await startProxy();
  });
  after(async () => {
    await proxy.close();
    await echo.close();
  });

  test('CONNECT succeeds with the real bound address of the upstream socket, then relays both ways', async () => {
    const client = await openSocks(proxy.port);
    client.send(request(CONNECT, '127.0.0.1', echo.port));
    const reply = await readReply(client);
    assert.equal(reply.reply, 0x00);
    assert.equal(reply.host, '127.0.0.1');
    assert.ok(acceptedPorts.includes(reply.port), `bound port ${reply.port} is the port the target saw (${acceptedPorts})`);
    client.send('ping');
    assert.equal((await client.read(4)).toString(), 'ping');
    client.socket.end();
    await client.closed;
    const closed = await proxy.waitForLog('socks5 closed', `target=127.0.0.1:${echo.port}`, 'bytesUp=4');
    assert.match(closed, /bytesDown=4/);
  });

  test('greeting, request and payload in one packet, then FIN: the payload reaches the target and the echo comes back', async () => {
    const client = await RawClient.open(proxy.port);
    client.socket.end(Buffer.from([5, 1, 0, ...request(CONNECT, '127.0.0.1', echo.port), ...Buffer.from('early bytes')]));
    const all = await client.readToEnd();
    assert.deepEqual([...all.subarray(0, 4)], [5, 0, 5, 0]);
    assert.equal(all.subarray(2 + 10).toString(), 'early bytes');
  });

  test('a large payload pipelined with the request in one write is relayed in full', async () => {
    const client = await RawClient.open(proxy.port);
    const payload = Buffer.alloc(300 * 1024, 'abcdefgh');
    client.send(Buffer.concat([Buffer.from([5, 1, 0, ...request(CONNECT, '127.0.0.1', echo.port)]), payload]));
    const head = await client.read(12);
    assert.deepEqual([...head.subarray(0, 4)], [5, 0, 5, 0]);
    assert.ok((await client.read(payload.byteLength)).equals(payload));
    client.close();
  });

  test('a client that resets while the connect is in progress: the late upstream is closed', async () => {
    let upstreamClosed!: () => void;
    const closedAtTarget = new Promise<void>((resolve) => (upstreamClosed = resolve));
    const target = await startTcpServer((socket) => {
      // A FIN (node:net destroy) or a RST (Bun terminate): either way the upstream went away.
      socket.on('end', () => upstreamClosed());
      socket.on('close', () => upstreamClosed());
    });
    let connecting!: () => void;
    const connectorCalled = new Promise<void>((resolve) => (connecting = resolve));
    let leave!: () => void;
    const clientGone = new Promise<void>((resolve) => (leave = resolve));
    const slow = await startProxy({
      connector: async (host, port) => {
        connecting();
        await clientGone;
        return connect({ host, port });
      },
    });
    try {
      const client = await openSocks(slow.port);
      client.send(request(CONNECT, '127.0.0.1', target.port));
      await connectorCalled;
      client.socket.resetAndDestroy();
      await slow.waitForLog('socks5 client closed while connecting');
      leave();
      await closedAtTarget;
    } finally {
      await slow.close();
      await target.close();
    }
  });

  test('BIND is answered 0x07 command not supported', async () => {
    const client = await openSocks(proxy.port);
    client.send(request(BIND, '127.0.0.1', echo.port));
    assert.equal((await readReply(client)).reply, 0x07);
    await client.closed;
    await proxy.waitForLog('socks5 command not supported', 'command=2');
  });

  test('an unknown command is answered 0x07 too', async () => {
    const client = await openSocks(proxy.port);
    client.send(request(0x09, '127.0.0.1', echo.port));
    assert.equal((await readReply(client)).reply, 0x07);
  });

  test('an unknown address type is answered 0x08', async () => {
    const client = await openSocks(proxy.port);
    client.send([5, CONNECT, 0, 0x05, 127, 0, 0, 1, 0, 80]);
    assert.equal((await readReply(client)).reply, 0x08);
    await client.closed;
    await proxy.waitForLog('address type not supported');
  });

  test('a refused target is answered 0x05', async () => {
    const port = await closedPort();
    const client = await openSocks(proxy.port);
    client.send(request(CONNECT, '127.0.0.1', port));
    assert.equal((await readReply(client)).reply, 0x05);
    await client.closed;
    await proxy.waitForLog('socks5 connect failed', `target=127.0.0.1:${port}`, 'code=ECONNREFUSED', 'reply=5');
  });

  test('a request with a wrong version byte is answered 0x01 general failure', async () => {
    const client = await openSocks(proxy.port);
    client.send([4, CONNECT, 0, 1, 127, 0, 0, 1, 0, 80]);
    assert.equal((await readReply(client)).reply, 0x01);
  });

  test('a greeting offering no methods is answered 0xFF', async () => {
    const client = await RawClient.open(proxy.port);
    client.send([5, 0]);
    assert.deepEqual([...(await client.read(2))], [5, 0xff]);
    await client.closed;
  });

  test('garbage and truncated handshakes are answered or closed while a good connection keeps relaying', async () => {
    const proxy = await startProxy({ handshakeTimeoutMs: 1000 });
    const good = await openSocks(proxy.port);
    good.send(request(CONNECT, '127.0.0.1', echo.port));
    assert.equal((await readReply(good)).reply, 0x00);

    const http = await RawClient.open(proxy.port);
    http.send('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const socks4 = await RawClient.open(proxy.port);
    socks4.send([4, 1, 0, 80, 127, 0, 0, 1, 0]);
    const truncatedGreeting = await RawClient.open(proxy.port);
    truncatedGreeting.send([5, 3, 0]);
    const truncatedRequest = await openSocks(proxy.port);
    truncatedRequest.send([5, CONNECT, 0, 3, 20, 0x6c, 0x6f]);
    const silent = await RawClient.open(proxy.port);

    assert.equal((await http.readToEnd()).byteLength, 0, 'a non-SOCKS client is closed without an answer');
    assert.deepEqual([...(await socks4.readToEnd())], [0, 0x5b, 0, 0, 0, 0, 0, 0], 'a SOCKS4 client gets a SOCKS4 rejection');
    await Promise.all([truncatedGreeting.closed, truncatedRequest.closed, silent.closed]);
    await proxy.waitForLog('socks5 bad greeting: wrong version', 'version=71');
    await proxy.waitForLog('socks5 handshake timed out', 'phase=greeting');
    await proxy.waitForLog('socks5 handshake timed out', 'phase=request');

    good.send('still alive');
    assert.equal((await good.read(11)).toString(), 'still alive');
    good.close();
    await proxy.close();
  });

  test('a client sending one byte at a time (with authentication) is served', async () => {
    const authed = await startProxy({ users: { u: 'p' } });
    try {
      const client = await RawClient.open(authed.port);
      const bytes = [5, 1, 2, 1, 1, 0x75, 1, 0x70, ...request(CONNECT, '127.0.0.1', echo.port)];
      const answers: number[] = [];
      for (const [index, byte] of bytes.entries()) {
        client.send([byte]);
        await sleep(2);
        if (index === 2) answers.push(...(await client.read(2)));
        if (index === 7) answers.push(...(await client.read(2)));
      }
      assert.deepEqual(answers, [5, 2, 1, 0]);
      assert.equal((await readReply(client)).reply, 0x00);
      for (const byte of Buffer.from('xyz')) client.send([byte]);
      assert.equal((await client.read(3)).toString(), 'xyz');
      client.close();
    } finally {
      await authed.close();
    }
  });
});

describe('SOCKS5 server: upstream failures map to reply codes', () => {
  async function replyFor(options: Parameters<typeof startProxy>[0], host: string, port: number, type?: number[]): Promise<{ reply: number; proxy: TestProxy }> {
    const proxy = await startProxy(options);
    try {
      const client = await openSocks(proxy.port);
      client.send(type ?? request(CONNECT, host, port));
      const { reply } = await readReply(client);
      await client.closed;
      return { reply, proxy };
    } finally {
      await proxy.close();
    }
  }

  test('a connect that does not finish in connectTimeoutMs is answered 0x06, and a late connection is closed', async () => {
    let late: Conn | undefined;
    let destroyed = false;
    const { reply, proxy } = await replyFor(
      {
        connectTimeoutMs: 100,
        connector: () =>
          new Promise<Conn>((resolve) => {
            setTimeout(() => {
              late = { destroy: () => (destroyed = true) } as unknown as Conn;
              resolve(late);
            }, 300);
          }),
      },
      '127.0.0.1',
      9,
    );
    assert.equal(reply, 0x06);
    await proxy.waitForLog('socks5 connect failed', 'code=ETIMEDOUT', 'reply=6');
    await sleep(400);
    assert.ok(late && destroyed, 'the connection that arrived after the deadline was closed');
  });

  test('a connector that never settles is answered 0x06', async () => {
    const { reply } = await replyFor({ connectTimeoutMs: 100, connector: () => new Promise<Conn>(() => {}) }, 'localhost', 9);
    assert.equal(reply, 0x06);
  });

  test('network unreachable is 0x03, host unreachable 0x04, anything else 0x01', async () => {
    const fail = (error: Error) => ({ connector: () => Promise.reject(error) });
    assert.equal((await replyFor(fail(new NetError('ENETUNREACH', 'no route')), '127.0.0.1', 9)).reply, 0x03);
    assert.equal((await replyFor(fail(new NetError('EHOSTUNREACH', 'no host')), '127.0.0.1', 9)).reply, 0x04);
    assert.equal((await replyFor(fail(new Error('boom')), '127.0.0.1', 9)).reply, 0x01);
  });

  test('a name that does not resolve is answered 0x04', async () => {
    const resolver = () => Promise.reject(new NetError('ENOTFOUND', 'no such name'));
    const { reply, proxy } = await replyFor({ resolver }, 'no-such-host.test', 80);
    assert.equal(reply, 0x04);
    await proxy.waitForLog('code=ENOTFOUND', 'reply=4');
  });

  test('a malformed name is answered 0x04 without a lookup', async () => {
    let lookups = 0;
    const resolver = () => {
      lookups++;
      return Promise.resolve(['127.0.0.1']);
    };
    assert.equal((await replyFor({ resolver }, 'bad name!', 80)).reply, 0x04);
    assert.equal(lookups, 0);
  });

  describe('destination policy: 0x02', () => {
    const deny = ['127.0.0.0/8', '::1'];
    test('a denied IPv4 literal', async () => {
      const { reply, proxy } = await replyFor({ destinationDeny: deny }, '127.0.0.1', 80);
      assert.equal(reply, 0x02);
      await proxy.waitForLog('code=EFORBIDDEN', 'reply=2');
    });
    test('a denied IPv6 literal, and IPv4-mapped IPv6 spelling of a denied IPv4', async () => {
      assert.equal((await replyFor({ destinationDeny: deny }, '::1', 80)).reply, 0x02);
      assert.equal((await replyFor({ destinationDeny: deny }, '::ffff:7f00:1', 80)).reply, 0x02);
    });
    test('an IP literal sent as a domain name (ATYP 3), in any IPv4-mapped spelling', async () => {
      for (const literal of ['127.0.0.1', '::ffff:127.0.0.1', '::ffff:7f00:1', '0:0:0:0:0:ffff:7f00:1']) {
        const asName = [5, CONNECT, 0, 3, literal.length, ...Buffer.from(literal), 0, 80];
        assert.equal((await replyFor({ destinationDeny: deny }, '', 0, asName)).reply, 0x02, literal);
      }
    });
    test('a name that resolves to a denied address (checked after resolution)', async () => {
      const { reply, proxy } = await replyFor({ destinationDeny: deny }, 'localhost', 80);
      assert.equal(reply, 0x02);
      await proxy.waitForLog('resolves to 127.0.0.1, which is denied');
      const sneaky = () => Promise.resolve(['127.0.0.5']);
      assert.equal((await replyFor({ destinationDeny: deny, resolver: sneaky }, 'innocent.example', 80)).reply, 0x02);
    });
    test('allowDestination returning false', async () => {
      const seen: string[] = [];
      const allowDestination = (host: string, port: number) => {
        seen.push(`${host}:${port}`);
        return port === 443;
      };
      assert.equal((await replyFor({ allowDestination }, 'example.test', 80)).reply, 0x02);
      assert.deepEqual(seen, ['example.test:80']);
    });
    test('a permitted target next to a deny list still connects, to the vetted address', async () => {
      const echo = await startTcpServer((socket) => socket.pipe(socket));
      const proxy = await startProxy({ destinationDeny: ['10.0.0.0/8'], resolver: () => Promise.resolve(['127.0.0.1']) });
      try {
        const client = await openSocks(proxy.port);
        client.send(request(CONNECT, 'app.internal.test', echo.port));
        assert.equal((await readReply(client)).reply, 0x00);
        client.send('ok');
        assert.equal((await client.read(2)).toString(), 'ok');
        client.close();
      } finally {
        await proxy.close();
        await echo.close();
      }
    });
  });
});

describe('SOCKS5 server behind a dispatcher', () => {
  test('bytes a mixed-port dispatcher consumed while peeking are handed over as head', async () => {
    const echo = await startTcpServer((socket) => socket.pipe(socket));
    const socks = new Socks5Server();
    const peeker: ConnHandler = {
      data(conn, chunk) {
        // Dispatch on the first byte, as the mixed port does, then hand the chunk on.
        if (chunk[0] === 0x05) socks.handle(conn, chunk.slice());
        else conn.destroy();
      },
      close() {},
    };
    const server = new Server({ addresses: [parseAddress('127.0.0.1:0')], onConnection: (conn) => conn.setHandler(peeker) });
    await server.start();
    try {
      const client = await openSocks(server.listeners[0]!.port);
      client.send(request(CONNECT, '127.0.0.1', echo.port));
      assert.equal((await readReply(client)).reply, 0x00);
      client.send('peeked');
      assert.equal((await client.read(6)).toString(), 'peeked');
      client.close();
    } finally {
      await server.shutdown({ deadlineMs: 0 });
      await echo.close();
    }
  });
});
