// Per-source authentication penalties (penalty.ts) and handshake slots held
// from accept to authentication (HandshakeSlots, on every runtime).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { HandshakeSlots, Logger, Server, parseAddress, SourcePenalties, createSelfSignedCertificate, setRuntime, sourceOf, type Conn } from '../src/index.js';
import { testRuntimes } from './helpers.js';

function collect(level: 'info' | 'warn' = 'info'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ level, sink: { write: (line) => void lines.push(line) } }), lines };
}

test('sources: an IPv4 address (mapped ones too), an IPv6 /64; names are no source', () => {
  assert.deepEqual(sourceOf('192.0.2.7'), { key: '192.0.2.7', v6: false });
  assert.deepEqual(sourceOf('::ffff:192.0.2.7'), { key: '192.0.2.7', v6: false });
  assert.deepEqual(sourceOf('2001:db8:0:1::5'), { key: '2001:db8:0:1::/64', v6: true });
  assert.deepEqual(sourceOf('2001:db8:0:1:ffff:1:2:3'), sourceOf('2001:db8:0:1::9'));
  assert.notDeepEqual(sourceOf('2001:db8:0:2::5'), sourceOf('2001:db8:0:1::5'));
  assert.equal(sourceOf('example.com'), undefined);
});

test('a source is penalized after its allowance, doubling up to the max; one warn line per penalty; it ends; others are untouched', () => {
  const { logger, lines } = collect();
  const box = new SourcePenalties(logger, 'test', { allowance: 2, firstMs: 1000, maxMs: 3000 });
  let now = 1_000_000;
  assert.equal(box.refuses('10.0.0.1', now), false);
  assert.equal(box.failed('10.0.0.1', now), 0);
  assert.equal(box.failed('10.0.0.1', now), 0);
  assert.equal(box.refuses('10.0.0.1', now), false, 'within the allowance');
  assert.equal(box.failed('10.0.0.1', now), 1000);
  assert.equal(box.refuses('10.0.0.1', now), true);
  assert.equal(box.refuses('10.0.0.2', now), false, 'another address');
  assert.equal(box.penalized(now), 1);
  const penalties = lines.filter((line) => line.includes('test auth penalty: source penalized'));
  assert.equal(penalties.length, 1);
  assert.match(penalties[0]!, /WARN/);
  assert.match(penalties[0]!, /client=10\.0\.0\.1/);
  assert.match(penalties[0]!, /failures=3/);
  assert.match(penalties[0]!, /seconds=1\b/);
  // Ended: let in again; the next failure doubles, then the max.
  now += 1000;
  assert.equal(box.refuses('10.0.0.1', now), false, 'the penalty ended');
  assert.equal(box.failed('10.0.0.1', now), 2000);
  now += 2000;
  assert.equal(box.failed('10.0.0.1', now), 3000, 'at most maxMs');
  assert.equal(box.refused, 1);
  assert.equal(box.penalties, 3);
  // Quiet for maxMs after its penalty: forgotten, the allowance again.
  now += 3000 + 3000;
  assert.equal(box.failed('10.0.0.1', now), 0);
});

test('the first failure is penalized with allowance 0; IPv6 addresses of one /64 share a penalty; exempt ranges and off are never penalized', () => {
  const box = new SourcePenalties(new Logger({ level: 'silent' }), 'test', { allowance: 0, firstMs: 1000, exempt: ['10.1.0.0/16', '::1'] });
  const now = 5_000;
  assert.equal(box.failed('2001:db8:0:1::5', now), 1000);
  assert.equal(box.refuses('2001:db8:0:1::77', now), true, 'same /64');
  assert.equal(box.refuses('2001:db8:0:2::5', now), false, 'another /64');
  for (let i = 0; i < 5; i++) assert.equal(box.failed('10.1.2.3', now), 0);
  assert.equal(box.refuses('10.1.2.3', now), false, 'exempt');
  assert.equal(box.failed('::1', now), 0);
  const off = new SourcePenalties(new Logger({ level: 'silent' }), 'test', { enabled: false, allowance: 0 });
  assert.equal(off.failed('10.0.0.1', now), 0);
  assert.equal(off.refuses('10.0.0.1', now), false);
});

test('the table stays bounded under many sources: sources not penalized make room; full of penalties, new ones are not tracked (one line) and penalties stay', () => {
  const { logger, lines } = collect('warn');
  const box = new SourcePenalties(logger, 'test', { allowance: 0, firstMs: 60_000, maxSources: 100 });
  const now = 10_000;
  const spray = new SourcePenalties(new Logger({ level: 'silent' }), 'test', { allowance: 5, maxSources: 100 });
  for (let i = 0; i < 10_000; i++) spray.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, now);
  assert.equal(spray.sources, 100, 'failures below the allowance: the oldest sources make room');
  for (let i = 0; i < 1000; i++) box.failed(`10.0.${i >> 8}.${i & 255}`, now);
  assert.equal(box.sources, 100);
  assert.equal(box.penalized(now), 100);
  assert.equal(box.refuses('10.0.0.0', now), true, 'the first penalty stays');
  assert.equal(box.refuses('10.0.3.200', now), false, 'not tracked');
  assert.equal(box.overflowed, 900);
  assert.equal(lines.filter((line) => line.includes('table full')).length, 1, 'one line for the overflow');
  // IPv6 has its own table: a flood of /64s does not touch the IPv4 penalties.
  for (let i = 0; i < 500; i++) box.failed(`2001:db8:${i.toString(16)}::1`, now);
  assert.equal(box.sources, 200);
  assert.equal(box.refuses('10.0.0.5', now), true);
});

async function withServer(runtimeName: string, slots: HandshakeSlots, tlsOn: boolean, body: (port: number, held: Conn[]) => Promise<void>): Promise<void> {
  const pair = createSelfSignedCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'] });
  const held: Conn[] = [];
  const server = await new Server({
    addresses: [parseAddress('127.0.0.1:0')],
    handshakes: slots,
    ...(tlsOn ? { tls: { cert: pair.cert, key: pair.key, handshakeTimeoutMs: 60_000 } } : {}),
    onConnection: (conn) => {
      held.push(conn);
      // The protocol would close on the peer's FIN (the listener is half-open).
      conn.setHandler({ data() {}, end: (c) => c.destroy(), close() {} });
    },
  }).start();
  try {
    await body(Number(server.boundAddresses[0]!.split(':').pop()), held);
  } catch (error) {
    throw new Error(`${runtimeName}, tls ${tlsOn}: ${(error as Error).message}`, { cause: error });
  } finally {
    await server.shutdown({ deadlineMs: 0 });
  }
}

function rawPeer(port: number, localAddress = '127.0.0.1') {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  const peer = { socket, closed: false, bytes: 0 };
  socket.on('data', (chunk) => (peer.bytes += chunk.byteLength));
  socket.on('error', () => undefined);
  socket.on('close', () => (peer.closed = true));
  return peer;
}

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('handshake slots: a penalized source is closed at accept, before TLS (no byte sent), on each runtime; another address is let in', async () => {
  const { runtimes } = await testRuntimes();
  for (const runtime of runtimes) {
    setRuntime(runtime);
    for (const tlsOn of [false, true]) {
      const penalties = new SourcePenalties(new Logger({ level: 'silent' }), 'test', { allowance: 0, firstMs: 60_000 });
      const slots = new HandshakeSlots(new Logger({ level: 'silent' }), 'test', { penalties });
      penalties.failed('127.0.0.2');
      await withServer(runtime.name, slots, tlsOn, async (port, held) => {
        const penalized = rawPeer(port, '127.0.0.2');
        // A TLS client would be answered with a ServerHello; this one is closed with nothing sent.
        if (tlsOn) penalized.socket.write(Buffer.from([0x16, 3, 1, 0, 1, 1]));
        await until(() => penalized.closed, 'the penalized source closed');
        assert.equal(penalized.bytes, 0);
        assert.equal(penalties.refused, 1);
        const other = rawPeer(port, '127.0.0.1');
        await until(() => slots.pending === 1, 'the other address holds a slot');
        assert.equal(other.closed, false);
        assert.ok(held.every((conn) => conn.remoteAddress === '127.0.0.1'), 'the penalized one never reached the owner');
        other.socket.destroy();
        await until(() => slots.pending === 0, 'its slot back at its close');
      });
    }
  }
  setRuntime((await testRuntimes()).detected);
});

test('handshake slots: with a bound of N, at most N unauthenticated connections are held in all, TLS phase included; done() frees a slot', async () => {
  const { runtimes } = await testRuntimes();
  for (const runtime of runtimes) {
    setRuntime(runtime);
    const slots = new HandshakeSlots(new Logger({ level: 'silent' }), 'test', { max: 3 });
    await withServer(runtime.name, slots, true, async (port, held) => {
      // Two past TLS, waiting for the protocol's handshake (the owner holds them).
      const secure = [0, 1].map(() => tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }).on('error', () => undefined));
      await Promise.all(secure.map((socket) => new Promise((resolve) => socket.once('secureConnect', resolve))));
      await until(() => held.length === 2, 'two handed over');
      // Silent ones, still in TLS: one slot left, whatever the runtime.
      const silent = Array.from({ length: 5 }, () => rawPeer(port));
      await until(() => silent.filter((peer) => peer.closed).length === 4, 'four of five closed at once');
      assert.equal(slots.pending, 3);
      assert.equal(slots.refused, 4);
      // One authenticates: its slot is free for a new connection.
      slots.done(held[0]!);
      assert.equal(slots.pending, 2);
      const next = rawPeer(port);
      await until(() => slots.pending === 3, 'a new one holds the freed slot');
      assert.equal(next.closed, false);
      for (const socket of secure) socket.destroy();
      for (const peer of [...silent, next]) peer.socket.destroy();
      await until(() => slots.pending === 0, 'every slot back');
    });
  }
  setRuntime((await testRuntimes()).detected);
});

test('handshake slots: IPv6 addresses of one /64 share the per-address bound (one host holds its whole /64)', () => {
  const slots = new HandshakeSlots(new Logger({ level: 'silent' }), 'test', { maxPerIp: 2 });
  assert.equal(slots.take('2001:db8::1'), true);
  assert.equal(slots.take('2001:db8::2'), true);
  assert.equal(slots.take('2001:db8::3'), false, 'a third address of the same /64');
  assert.equal(slots.take('2001:db8:0:1::1'), true, 'another /64');
  slots.giveBack('2001:db8::1');
  assert.equal(slots.take('2001:db8::ffff'), true, 'a slot given back under its /64');
  assert.equal(slots.pending, 3);
});

test('handshake slots: a connection holding a slot that shows another peer leaves the listener\'s per-address count right', async () => {
  const { runtimes } = await testRuntimes();
  for (const runtime of runtimes) {
    setRuntime(runtime);
    const slots = new HandshakeSlots(new Logger({ level: 'silent' }), 'test', {});
    const server = await new Server({
      addresses: [parseAddress('127.0.0.1:0')],
      handshakes: slots,
      limits: { maxConnectionsPerIp: 5 },
      onConnection: (conn) => {
        conn.setHandler({ data() {}, close() {} });
        // A front handing over a visitor, during the handshake.
        conn.showPeer?.('192.0.2.9', 1);
        setTimeout(() => conn.destroy(), 10);
      },
    }).start();
    try {
      const port = Number(server.boundAddresses[0]!.split(':').pop());
      for (let i = 0; i < 3; i++) {
        const peer = rawPeer(port);
        await until(() => peer.closed, 'closed by the server');
      }
      await until(() => server.limit.open === 0, `${runtime.name}: every connection released`);
      assert.equal(server.limit.openFrom('127.0.0.1'), 0, `${runtime.name}: the count of the address it came from`);
      assert.equal(server.limit.openFrom('192.0.2.9'), 0, `${runtime.name}: the count of the address shown`);
      assert.equal(slots.pending, 0);
    } finally {
      await server.shutdown({ deadlineMs: 0 });
    }
  }
  setRuntime((await testRuntimes()).detected);
});
