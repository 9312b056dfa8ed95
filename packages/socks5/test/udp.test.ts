import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { UdpClient, openSocks, readReply, request, startProxy, startUdpEcho, udpHeader, type RawClient, type TestProxy } from './helpers.js';

const UDP_ASSOCIATE = 3;

/** Open the TCP control connection and ask for an association; returns the relay's UDP port. */
async function associate(proxy: TestProxy, announceHost = '0.0.0.0', announcePort = 0): Promise<{ control: RawClient; relayPort: number; relayHost: string }> {
  const control = await openSocks(proxy.port);
  control.send(request(UDP_ASSOCIATE, announceHost, announcePort));
  const reply = await readReply(control);
  assert.equal(reply.reply, 0x00);
  return { control, relayPort: reply.port, relayHost: reply.host };
}

describe('SOCKS5 UDP ASSOCIATE', () => {
  let echo: { port: number; close(): void };
  let echo6: { port: number; close(): void };
  let proxy: TestProxy;

  before(async () => {
    echo = await startUdpEcho('127.0.0.1');
    echo6 = await startUdpEcho('::1');
    proxy = await startProxy();
  });
  after(async () => {
    await proxy.close();
    echo.close();
    echo6.close();
  });

  test('relays a datagram to an IPv4 target and wraps the answer in the RFC 1928 header', async () => {
    const { control, relayPort, relayHost } = await associate(proxy);
    assert.equal(relayHost, '127.0.0.1', 'the relay is bound on the address the TCP connection arrived on');
    const client = await UdpClient.open();
    try {
      client.sendTo(relayPort, udpHeader('127.0.0.1', echo.port), 'hello');
      const answer = await client.receive();
      assert.deepEqual([...answer.subarray(0, 10)], udpHeader('127.0.0.1', echo.port));
      assert.equal(answer.subarray(10).toString(), 'echo:hello');
    } finally {
      client.close();
      control.close();
    }
    const line = await proxy.waitForLog('socks5 udp association closed', 'datagramsUp=1');
    assert.match(line, /datagramsDown=1/);
  });

  test('resolves a domain target (localhost); the answer names the IP it came from', async () => {
    const { control, relayPort } = await associate(proxy);
    const client = await UdpClient.open();
    try {
      client.sendTo(relayPort, udpHeader('localhost', echo.port), 'by name');
      const answer = await client.receive();
      assert.deepEqual([...answer.subarray(0, 10)], udpHeader('127.0.0.1', echo.port));
      assert.equal(answer.subarray(10).toString(), 'echo:by name');
    } finally {
      client.close();
      control.close();
    }
  });

  test('relays to an IPv6 target from an IPv4 client', async () => {
    const { control, relayPort } = await associate(proxy);
    const client = await UdpClient.open();
    try {
      client.sendTo(relayPort, udpHeader('::1', echo6.port), 'six');
      const answer = await client.receive();
      assert.deepEqual([...answer.subarray(0, 22)], udpHeader('::1', echo6.port));
      assert.equal(answer.subarray(22).toString(), 'echo:six');
    } finally {
      client.close();
      control.close();
    }
  });

  test('drops fragmented datagrams (FRAG != 0) and keeps relaying whole ones', async () => {
    const { control, relayPort } = await associate(proxy);
    const client = await UdpClient.open();
    try {
      client.sendTo(relayPort, udpHeader('127.0.0.1', echo.port, 1), 'fragment');
      client.sendTo(relayPort, udpHeader('127.0.0.1', echo.port, 0), 'whole');
      const answer = await client.receive();
      assert.equal(answer.subarray(10).toString(), 'echo:whole');
      await proxy.waitForLog('socks5 udp datagram dropped', 'reason=fragmented');
    } finally {
      client.close();
      control.close();
    }
    await proxy.waitForLog('socks5 udp association closed', 'dropped=1');
  });

  test('ignores datagrams from an IP other than the client’s, and from another port than the one announced', async () => {
    const client = await UdpClient.open();
    const { control, relayPort } = await associate(proxy, '127.0.0.1', client.port);
    const stranger = await UdpClient.open('127.0.0.2');
    const sibling = await UdpClient.open('127.0.0.1');
    try {
      stranger.sendTo(relayPort, udpHeader('127.0.0.1', echo.port), 'from elsewhere');
      sibling.sendTo(relayPort, udpHeader('127.0.0.1', echo.port), 'from another port');
      await proxy.waitForLog('socks5 udp datagram dropped', 'reason="foreign source"', 'peer=127.0.0.2:');
      await proxy.waitForLog('socks5 udp datagram dropped', 'reason="foreign port"', `peer=127.0.0.1:${sibling.port}`);
      client.sendTo(relayPort, udpHeader('127.0.0.1', echo.port), 'from the client');
      assert.equal((await client.receive()).subarray(10).toString(), 'echo:from the client');
    } finally {
      client.close();
      stranger.close();
      sibling.close();
      control.close();
    }
  });

  test('the association ends with its TCP connection: the relay port is released', async () => {
    const { control, relayPort } = await associate(proxy);
    control.close();
    await proxy.waitForLog('socks5 udp association closed', 'reason="control connection closed"');
    // Closing a UDP socket completes asynchronously: retry the bind for a while.
    let lastError: unknown;
    for (let attempt = 0; attempt < 100; attempt++) {
      const probe = dgram.createSocket('udp4');
      try {
        await new Promise<void>((resolve, reject) => {
          probe.once('error', reject);
          probe.bind(relayPort, '127.0.0.1', resolve);
        });
        probe.close();
        return;
      } catch (error) {
        lastError = error;
        probe.close();
        await sleep(50);
      }
    }
    assert.fail(`relay port ${relayPort} still bound: ${String(lastError)}`);
  });

  test('an idle association is closed, TCP connection included', async () => {
    const idle = await startProxy({ idleTimeoutMs: 200 });
    try {
      const { control } = await associate(idle);
      await control.closed;
      await idle.waitForLog('socks5 udp association closed', 'reason=idle');
    } finally {
      await idle.close();
    }
  });

  test('destination deny applies to datagrams: denied targets are dropped, others relayed', async () => {
    const guarded = await startProxy({ destinationDeny: ['127.0.0.0/8'] });
    const { control, relayPort } = await associate(guarded);
    const client = await UdpClient.open();
    try {
      client.sendTo(relayPort, udpHeader('127.0.0.1', echo.port), 'denied');
      client.sendTo(relayPort, udpHeader('localhost', echo.port), 'denied by name');
      await guarded.waitForLog('socks5 udp datagram dropped', 'reason=denied', `peer=127.0.0.1:${echo.port}`);
      await guarded.waitForLog('socks5 udp datagram dropped', 'reason=denied', `peer=localhost:${echo.port}`);
      client.sendTo(relayPort, udpHeader('::1', echo6.port), 'allowed');
      assert.equal((await client.receive()).subarray(22).toString(), 'echo:allowed');
    } finally {
      client.close();
      control.close();
      await guarded.close();
    }
  });

  test('with udp disabled, UDP ASSOCIATE is answered 0x07', async () => {
    const noUdp = await startProxy({ udp: false });
    try {
      const control = await openSocks(noUdp.port);
      control.send(request(UDP_ASSOCIATE, '0.0.0.0', 0));
      assert.equal((await readReply(control)).reply, 0x07);
    } finally {
      await noUdp.close();
    }
  });
});
