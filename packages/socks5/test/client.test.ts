import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NetError, type Conn, type ConnHandler } from '@wmproxy/core-net';
import { socks5Connect } from '../src/index.js';
import { closedPort, curl, startHttpTarget, startProxy, startTcpServer, type TestProxy } from './helpers.js';

/** Collect what arrives on a Conn until `length` bytes are in. */
function readFrom(conn: Conn, length: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const handler: ConnHandler = {
      data(_conn, chunk) {
        text += Buffer.from(chunk).toString();
        if (text.length >= length) resolve(text);
      },
      close(_conn, error) {
        reject(error ?? new Error(`closed after "${text}"`));
      },
    };
    conn.setHandler(handler);
  });
}

async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof NetError, `a NetError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

describe('socks5Connect (the client, for parent-proxy chaining)', () => {
  let echo: { port: number; close(): Promise<void> };
  let echo6: { port: number; close(): Promise<void> };
  let open: TestProxy;
  let authed: TestProxy;

  before(async () => {
    echo = await startTcpServer((socket) => socket.pipe(socket));
    echo6 = await startTcpServer((socket) => socket.pipe(socket), '::1');
    open = await startProxy();
    authed = await startProxy({ users: { carol: 'hunter2' } });
  });
  after(async () => {
    await Promise.all([open.close(), authed.close(), echo.close(), echo6.close()]);
  });

  test('connects through a no-auth proxy; the Conn relays to the target', async () => {
    const conn = await socks5Connect({ proxy: { host: '127.0.0.1', port: open.port }, host: '127.0.0.1', port: echo.port, timeoutMs: 5000 });
    const answer = readFrom(conn, 5);
    conn.write(Buffer.from('hello'));
    assert.equal(await answer, 'hello');
    conn.destroy();
  });

  test('sends names and IPv6 literals (with or without brackets) as the proxy should see them', async () => {
    const byName = await socks5Connect({ proxy: { host: 'localhost', port: open.port }, host: 'localhost', port: echo.port });
    byName.destroy();
    await open.waitForLog('socks5 connect', `target=localhost:${echo.port}`);
    for (const host of ['::1', '[::1]']) {
      const conn = await socks5Connect({ proxy: { host: '127.0.0.1', port: open.port }, host, port: echo6.port });
      const answer = readFrom(conn, 2);
      conn.write(Buffer.from('v6'));
      assert.equal(await answer, 'v6');
      conn.destroy();
    }
  });

  test('authenticates with a username and password', async () => {
    const conn = await socks5Connect({
      proxy: { host: '127.0.0.1', port: authed.port, username: 'carol', password: 'hunter2' },
      host: '127.0.0.1',
      port: echo.port,
    });
    const answer = readFrom(conn, 4);
    conn.write(Buffer.from('auth'));
    assert.equal(await answer, 'auth');
    conn.destroy();
    await authed.waitForLog('socks5 connect', 'user=carol');
  });

  test('wrong or missing credentials fail with EAUTH', async () => {
    await rejectsWith(
      socks5Connect({ proxy: { host: '127.0.0.1', port: authed.port, username: 'carol', password: 'nope' }, host: '127.0.0.1', port: echo.port }),
      'EAUTH',
      /rejected the username and password/,
    );
    await rejectsWith(socks5Connect({ proxy: { host: '127.0.0.1', port: authed.port }, host: '127.0.0.1', port: echo.port }), 'EAUTH');
  });

  test('failure replies become NetErrors: refused, host unreachable, not allowed', async () => {
    await rejectsWith(socks5Connect({ proxy: { host: '127.0.0.1', port: open.port }, host: '127.0.0.1', port: await closedPort() }), 'ECONNREFUSED', /\(0x05\)/);
    const strict = await startProxy({ destinationDeny: ['127.0.0.0/8'], resolver: () => Promise.reject(new NetError('ENOTFOUND', 'nx')) });
    try {
      await rejectsWith(socks5Connect({ proxy: { host: '127.0.0.1', port: strict.port }, host: '127.0.0.1', port: echo.port }), 'EFORBIDDEN', /\(0x02\)/);
      await rejectsWith(socks5Connect({ proxy: { host: '127.0.0.1', port: strict.port }, host: 'nx.test', port: 80 }), 'EHOSTUNREACH', /\(0x04\)/);
    } finally {
      await strict.close();
    }
  });

  test('bytes the proxy sends right behind its reply are delivered to the next handler', async () => {
    // A fake SOCKS5 proxy for a server-speaks-first protocol: the banner comes in the same packet as the reply.
    const fake = await startTcpServer((socket) => {
      let step = 0;
      socket.on('data', () => {
        if (step++ === 0) socket.write(Buffer.from([5, 0]));
        else socket.write(Buffer.concat([Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]), Buffer.from('220 banner\r\n')]));
      });
    });
    try {
      const conn = await socks5Connect({ proxy: { host: '127.0.0.1', port: fake.port }, host: 'mail.test', port: 25 });
      assert.equal(await readFrom(conn, 12), '220 banner\r\n');
      conn.destroy();
    } finally {
      await fake.close();
    }
  });

  test('a proxy that never answers fails with ETIMEDOUT; one that is not SOCKS5 with EPROTO', async () => {
    const mute = await startTcpServer(() => {});
    const http = await startTcpServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    try {
      await rejectsWith(socks5Connect({ proxy: { host: '127.0.0.1', port: mute.port }, host: '127.0.0.1', port: 80, timeoutMs: 150 }), 'ETIMEDOUT');
      await rejectsWith(socks5Connect({ proxy: { host: '127.0.0.1', port: http.port }, host: '127.0.0.1', port: 80 }), 'EPROTO', /not a SOCKS5 proxy/);
    } finally {
      await mute.close();
      await http.close();
    }
  });

  test('chaining: curl → SOCKS5 server whose connector is socks5Connect → parent SOCKS5 with auth → target', async () => {
    const target = await startHttpTarget();
    const child = await startProxy({
      connector: (host, port, timeoutMs) =>
        socks5Connect({ proxy: { host: '127.0.0.1', port: authed.port, username: 'carol', password: 'hunter2' }, host, port, timeoutMs }),
    });
    try {
      const result = await curl(['--socks5-hostname', `127.0.0.1:${child.port}`, `http://localhost:${target.port}/chained`]);
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stdout, /hello \/chained/);
      await authed.waitForLog('socks5 connect', `target=localhost:${target.port}`, 'user=carol');
    } finally {
      await child.close();
      await target.close();
    }
  });
});
