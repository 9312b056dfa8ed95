import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { DEFAULT_DENY_DESTINATIONS } from '@wmproxy/core-net';
import { RawClient, startForwardProxy, startProxy, type TestProxy } from './helpers.js';

/**
 * A loopback-only HTTP service standing in for the control API (which
 * answers `POST /stop` without a token on loopback): it records every request.
 */
interface Victim {
  port: number;
  hits: string[];
  /** TCP connections accepted (a CONNECT tunnel opens one without a request). */
  connections: number;
  close(): Promise<void>;
}

async function startVictim(host: string): Promise<Victim> {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.end('stopped\n');
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const victim: Victim = {
    port: (server.address() as net.AddressInfo).port,
    hits,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on('connection', () => victim.connections++);
  return victim;
}

/** Status code of the first response the proxy sends to `request`. */
async function statusOf(proxy: TestProxy, request: string): Promise<number> {
  const client = await RawClient.connect(proxy.port);
  try {
    client.send(request);
    const text = await client.until((received) => received.includes('\r\n\r\n'));
    return Number(text.slice(9, 12));
  } finally {
    client.close();
  }
}

/** Every spelling of "this host" that a socket connect or a resolver turns into an IPv4 loopback connection. */
const V4_FORMS = ['0.0.0.0', '0', '127.1', '0x7f.1', '0x7f000001', '2130706433', '0177.0.0.1', '127.000.000.001', '[::ffff:127.0.0.1]', '[::0:ffff:127.0.0.1]', '[0:0:0:0:0:ffff:127.0.0.1]', '[::ffff:7f00:1]', '[::ffff:0.0.0.0]', '[::ffff:0:0]', 'localhost', '127.0.0.1'];
/** The same for IPv6 loopback. */
const V6_FORMS = ['[::]', '[0:0:0:0:0:0:0:0]', '[::1]', '[::0.0.0.1]', '[0::1]'];

describe('destinations on this host, however they are spelled, with the default deny list', () => {
  let v4: Victim;
  let v6: Victim;
  let proxy: TestProxy;
  before(async () => {
    v4 = await startVictim('127.0.0.1');
    v6 = await startVictim('::1');
    // The system resolver, as in production: "0", "127.1", "0x7f.1" and friends are read by getaddrinfo.
    proxy = await startProxy({ destinationDeny: DEFAULT_DENY_DESTINATIONS });
  });
  after(async () => {
    await proxy.close();
    await v4.close();
    await v6.close();
  });

  const forms = (): Array<[string, number]> => [...V4_FORMS.map((form): [string, number] => [form, v4.port]), ...V6_FORMS.map((form): [string, number] => [form, v6.port])];

  test('absolute-form requests (POST /stop) to every form are refused with 403 and never reach the service', async () => {
    for (const [host, port] of forms()) {
      const status = await statusOf(proxy, `POST http://${host}:${port}/stop HTTP/1.1\r\nContent-Length: 0\r\n\r\n`);
      assert.equal(status, 403, `POST http://${host}:${port}/stop`);
    }
    assert.deepEqual([...v4.hits, ...v6.hits], []);
    assert.equal(v4.connections + v6.connections, 0);
  });

  test('CONNECT to every form is refused with 403 and never reaches the service', async () => {
    for (const [host, port] of forms()) {
      assert.equal(await statusOf(proxy, `CONNECT ${host}:${port} HTTP/1.1\r\n\r\n`), 403, `CONNECT ${host}:${port}`);
    }
    assert.equal(v4.connections + v6.connections, 0);
  });

  test('a name that resolves to the unspecified address is refused too (checked after resolution)', async () => {
    const resolving = await startProxy({ destinationDeny: DEFAULT_DENY_DESTINATIONS, resolver: async () => ['::', '0.0.0.0'] });
    try {
      assert.equal(await statusOf(resolving, `GET http://rebound.test:${v4.port}/stop HTTP/1.1\r\n\r\n`), 403);
      assert.equal(await statusOf(resolving, `CONNECT rebound.test:${v6.port} HTTP/1.1\r\n\r\n`), 403);
      assert.deepEqual([...v4.hits, ...v6.hits], []);
    } finally {
      await resolving.close();
    }
  });

  test('a deny list naming only 127.0.0.0/8 and ::1 covers 0.0.0.0, :: and the IPv6 spellings of loopback', async () => {
    const narrow = await startProxy({ destinationDeny: ['127.0.0.0/8', '::1/128'] });
    try {
      for (const [host, port] of [['0.0.0.0', v4.port], ['0', v4.port], ['[::ffff:0.0.0.0]', v4.port], ['[::]', v6.port], ['[::0.0.0.1]', v6.port]] as const) {
        assert.equal(await statusOf(narrow, `GET http://${host}:${port}/stop HTTP/1.1\r\n\r\n`), 403, host);
      }
      assert.deepEqual([...v4.hits, ...v6.hits], []);
    } finally {
      await narrow.close();
    }
  });

  test('without a deny list (a loopback-only proxy) 0.0.0.0 does reach the loopback service: why exposed proxies deny it', async () => {
    const open = await startProxy();
    try {
      assert.equal(await statusOf(open, `POST http://0.0.0.0:${v4.port}/stop HTTP/1.1\r\nContent-Length: 0\r\n\r\n`), 200);
      assert.deepEqual(v4.hits, ['POST /stop']);
    } finally {
      v4.hits.length = 0;
      v4.connections = 0;
      await open.close();
    }
  });
});

describe('the mixed port applies the same deny list to HTTP, CONNECT and SOCKS5', () => {
  let victim: Victim;
  let proxy: TestProxy;
  before(async () => {
    victim = await startVictim('127.0.0.1');
    proxy = await startForwardProxy({ destinationDeny: DEFAULT_DENY_DESTINATIONS });
  });
  after(async () => {
    await proxy.close();
    await victim.close();
  });

  /** SOCKS5 reply code for a CONNECT to `address` (ATYP byte first), or -1 when the server closes without one. */
  async function socksReply(address: number[], port: number): Promise<number> {
    const socket = net.connect({ port: proxy.port, host: '127.0.0.1' });
    socket.on('error', () => {});
    let received = Buffer.alloc(0);
    const done = new Promise<number>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        if (received.length >= 4) resolve(received[3]!);
      });
      socket.on('close', () => resolve(-1));
    });
    socket.write(Buffer.from([5, 1, 0, 5, 1, 0, ...address, port >> 8, port & 0xff]));
    const reply = await done;
    socket.destroy();
    return reply;
  }

  test('HTTP to 0.0.0.0, CONNECT to [::ffff:127.0.0.1] and SOCKS5 to 0.0.0.0 (IPv4), "0" (name) and :: (IPv6) are all refused', async () => {
    assert.equal(await statusOf(proxy, `POST http://0.0.0.0:${victim.port}/stop HTTP/1.1\r\nContent-Length: 0\r\n\r\n`), 403);
    assert.equal(await statusOf(proxy, `CONNECT [::ffff:127.0.0.1]:${victim.port} HTTP/1.1\r\n\r\n`), 403);
    assert.equal(await socksReply([1, 0, 0, 0, 0], victim.port), 0x02, 'ATYP 1 0.0.0.0');
    assert.equal(await socksReply([3, 1, 0x30], victim.port), 0x02, 'ATYP 3 "0"');
    assert.equal(await socksReply([4, ...new Array<number>(16).fill(0)], victim.port), 0x02, 'ATYP 4 ::');
    assert.equal(await socksReply([4, ...new Array<number>(10).fill(0), 0xff, 0xff, 0, 0, 0, 0], victim.port), 0x02, 'ATYP 4 ::ffff:0.0.0.0');
    assert.deepEqual(victim.hits, []);
    assert.equal(victim.connections, 0);
  });
});
