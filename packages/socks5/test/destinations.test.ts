import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_DENY_DESTINATIONS } from '@wmproxy/core-net';
import { RawClient, UdpClient, openSocks, readReply, request, startProxy, startTcpServer, startUdpEcho, udpHeader, type TestProxy } from './helpers.js';

const CONNECT = 1;
const UDP_ASSOCIATE = 3;
/** Guards a test that would otherwise wait for a log line that never comes. */
const HANG_GUARD = { timeout: 20_000 };

/** ATYP + address bytes (without the port) of a SOCKS5 request. */
type AtypAddress = number[];
const ipv4 = (...bytes: number[]): AtypAddress => [1, ...bytes];
const name = (text: string): AtypAddress => [3, text.length, ...Buffer.from(text, 'latin1')];
const ipv6 = (...bytes: number[]): AtypAddress => [4, ...new Array<number>(16 - bytes.length).fill(0), ...bytes];

/** Every ATYP spelling of "this host" reaching 127.0.0.1 or ::1 when nothing refuses it. */
const V4_FORMS: Array<[string, AtypAddress]> = [
  ['0.0.0.0 (ATYP 1)', ipv4(0, 0, 0, 0)],
  ['127.0.0.1 (ATYP 1)', ipv4(127, 0, 0, 1)],
  ['"0" (ATYP 3)', name('0')],
  ['"0.0.0.0" (ATYP 3)', name('0.0.0.0')],
  ['"127.1" (ATYP 3)', name('127.1')],
  ['"0x7f.1" (ATYP 3)', name('0x7f.1')],
  ['"2130706433" (ATYP 3)', name('2130706433')],
  ['"localhost" (ATYP 3)', name('localhost')],
  ['"::ffff:127.0.0.1" (ATYP 3)', name('::ffff:127.0.0.1')],
  ['"::ffff:0.0.0.0" (ATYP 3)', name('::ffff:0.0.0.0')],
  ['"::0:ffff:127.0.0.1" (ATYP 3)', name('::0:ffff:127.0.0.1')],
  ['::ffff:127.0.0.1 (ATYP 4)', ipv6(0xff, 0xff, 127, 0, 0, 1)],
  ['::ffff:0.0.0.0 (ATYP 4)', ipv6(0xff, 0xff, 0, 0, 0, 0)],
];
const V6_FORMS: Array<[string, AtypAddress]> = [
  [':: (ATYP 4)', ipv6()],
  ['::1 (ATYP 4)', ipv6(1)],
  ['"::" (ATYP 3)', name('::')],
];

async function replyTo(proxy: TestProxy, command: number, address: AtypAddress, port: number): Promise<{ reply: number; closed: boolean }> {
  const client = await openSocks(proxy.port);
  try {
    client.send([5, command, 0, ...address, port >> 8, port & 0xff]);
    const { reply } = await readReply(client);
    // A failure reply is the last word: the server closes.
    const rest = reply === 0 ? undefined : await client.readToEnd();
    return { reply, closed: rest !== undefined && rest.byteLength === 0 };
  } finally {
    client.close();
  }
}

describe('SOCKS5 destinations on this host with the default deny list', () => {
  let v4: { port: number; accepted: number; close(): Promise<void> };
  let v6: { port: number; accepted: number; close(): Promise<void> };
  let proxy: TestProxy;
  before(async () => {
    const counted = async (host: string) => {
      const state = { port: 0, accepted: 0, close: async () => {} };
      const server = await startTcpServer((socket) => {
        state.accepted++;
        socket.end('HTTP/1.1 200 OK\r\n\r\nstopped');
      }, host);
      state.port = server.port;
      state.close = server.close;
      return state;
    };
    v4 = await counted('127.0.0.1');
    v6 = await counted('::1');
    // The system resolver, as in production.
    proxy = await startProxy({ destinationDeny: DEFAULT_DENY_DESTINATIONS });
  });
  after(async () => {
    await proxy.close();
    await v4.close();
    await v6.close();
  });

  test('CONNECT to every IPv4, name and IPv6 spelling of this host is answered 0x02 and closed', async () => {
    for (const [label, address] of V4_FORMS) assert.deepEqual(await replyTo(proxy, CONNECT, address, v4.port), { reply: 0x02, closed: true }, label);
    for (const [label, address] of V6_FORMS) assert.deepEqual(await replyTo(proxy, CONNECT, address, v6.port), { reply: 0x02, closed: true }, label);
    assert.equal(v4.accepted + v6.accepted, 0, 'nothing reached the loopback services');
  });

  test('UDP datagrams to 0.0.0.0, "0", :: and ::ffff:0.0.0.0 are dropped as denied', HANG_GUARD, async () => {
    const echo = await startUdpEcho('127.0.0.1');
    const echo6 = await startUdpEcho('::1');
    const control = await openSocks(proxy.port);
    const client = await UdpClient.open();
    try {
      control.send(request(UDP_ASSOCIATE, '0.0.0.0', 0));
      const { reply, port: relayPort } = await readReply(control);
      assert.equal(reply, 0x00);
      const targets: Array<[number[], string]> = [
        [udpHeader('0.0.0.0', echo.port), `peer=0.0.0.0:${echo.port}`],
        [udpHeader('0', echo.port), `peer=0:${echo.port}`],
        [[0, 0, 0, ...ipv6(), echo6.port >> 8, echo6.port & 0xff], `peer=[::]:${echo6.port}`],
        // readAddress reads IPv4-mapped IPv6 as IPv4.
        [[0, 0, 0, ...ipv6(0xff, 0xff, 0, 0, 0, 0), echo6.port >> 8, echo6.port & 0xff], `peer=0.0.0.0:${echo6.port}`],
      ];
      for (const [header] of targets) client.sendTo(relayPort, header, 'stop');
      for (const [, peer] of targets) await proxy.waitForLog('socks5 udp datagram dropped', 'reason=denied', peer);
    } finally {
      client.close();
      control.close();
      echo.close();
      echo6.close();
    }
  });
});

describe('SOCKS5 port 0', () => {
  let proxy: TestProxy;
  before(async () => {
    // No deny list at all: port 0 is refused on its own account.
    proxy = await startProxy();
  });
  after(async () => {
    await proxy.close();
  });

  test('CONNECT to port 0 is answered 0x02 (not allowed) and closed, for IPs and names', async () => {
    for (const address of [ipv4(127, 0, 0, 1), name('localhost'), ipv6(1)]) {
      assert.deepEqual(await replyTo(proxy, CONNECT, address, 0), { reply: 0x02, closed: true });
    }
    await proxy.waitForLog('code=EFORBIDDEN', 'reply=2');
  });

  test('a UDP datagram to port 0 is dropped as denied', HANG_GUARD, async () => {
    const control = await openSocks(proxy.port);
    const client = await UdpClient.open();
    try {
      control.send(request(UDP_ASSOCIATE, '0.0.0.0', 0));
      const { port: relayPort } = await readReply(control);
      client.sendTo(relayPort, udpHeader('127.0.0.1', 0), 'nowhere');
      await proxy.waitForLog('socks5 udp datagram dropped', 'reason=denied', 'peer=127.0.0.1:0');
    } finally {
      client.close();
      control.close();
    }
  });

  test('UDP ASSOCIATE may still announce port 0 (RFC 1928: the client does not know its port yet)', async () => {
    const control = await RawClient.open(proxy.port);
    try {
      control.send([5, 1, 0, ...request(UDP_ASSOCIATE, '0.0.0.0', 0)]);
      assert.deepEqual([...(await control.read(2))], [5, 0]);
      assert.equal((await readReply(control)).reply, 0x00);
    } finally {
      control.close();
    }
  });
});
