// Property-based tests of the SOCKS5 parser in every state (greeting, RFC 1929
// credentials, request, UDP datagram header): arbitrary bytes split at
// arbitrary points never throw, valid input is answered the same however it is
// split, and garbage gets a protocol-level failure and a close. The expected
// answers come from a small whole-buffer reference reader written here;
// the client (socks5Connect / encodeAddress) is checked against the server.
// Targets are never dialled: the servers refuse every destination.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import fc from 'fast-check';
import { NetError, parseIp } from '@wmproxy/core-net';
import { encodeAddress, encodeUdpDatagram, readAddress, readUdpDatagram, socks5Connect } from '../src/index.js';
import { HandshakeReader } from '../src/handshake.js';
import { UdpClient, openSocks, readReply, request, startProxy, type TestProxy } from './helpers.js';

const USER = 'alice';
const PASS = 's3cret';
const utf8 = new TextDecoder();

// ---- generators ------------------------------------------------------------

/** ATYP + DST.ADDR as sent on the wire (a name may be empty or any bytes). */
const wireAddress = fc.oneof(
  fc.uint8Array({ minLength: 4, maxLength: 4 }).map((bytes) => [1, ...bytes]),
  fc.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes) => [4, ...bytes]),
  // IPv4-mapped IPv6, which the server reads as IPv4.
  fc.uint8Array({ minLength: 4, maxLength: 4 }).map((bytes) => [4, ...new Array<number>(10).fill(0), 0xff, 0xff, ...bytes]),
  fc.uint8Array({ minLength: 0, maxLength: 64 }).map((bytes) => [3, bytes.length, ...bytes]),
);

/** A well-formed handshake: greeting offering the wanted method, credentials when `auth`, a request, maybe trailing payload. */
const handshake = (auth: boolean) =>
  fc
    .record({
      otherMethods: fc.uint8Array({ maxLength: 6 }),
      at: fc.nat(),
      rightPassword: fc.boolean(),
      command: fc.constantFrom(0, 1, 2, 3, 9),
      address: wireAddress,
      port: fc.integer({ min: 0, max: 65535 }),
      trailing: fc.uint8Array({ maxLength: 16 }),
    })
    .map((h) => {
      const methods = [...h.otherMethods];
      methods.splice(h.at % (methods.length + 1), 0, auth ? 2 : 0);
      const bytes = [5, methods.length, ...methods];
      if (auth) {
        const password = h.rightPassword ? PASS : 'wrong';
        bytes.push(1, USER.length, ...Buffer.from(USER), password.length, ...Buffer.from(password));
      }
      bytes.push(5, h.command, 0, ...h.address, h.port >> 8, h.port & 0xff, ...h.trailing);
      return Uint8Array.from(bytes);
    });

/** Garbage: random bytes, and well-formed handshakes with a byte changed or cut short (to reach the later states). */
const garbage = (auth: boolean) =>
  fc.oneof(
    fc.uint8Array({ maxLength: 48 }),
    fc.uint8Array({ maxLength: 48 }).map((bytes) => Uint8Array.from([5, ...bytes])),
    fc.tuple(handshake(auth), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat()).map(([bytes, at, value, cut]) => {
      const changed = bytes.slice();
      changed[at % changed.length] = value;
      return changed.subarray(0, cut % (changed.length + 1));
    }),
  );

/** Cut `bytes` into pieces at arbitrary points. */
const splits = fc.array(fc.nat(), { maxLength: 8 });
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const point of [...points, bytes.length]) {
    if (point > from) pieces.push(bytes.subarray(from, point));
    from = Math.max(from, point);
  }
  return pieces;
}

// ---- the reference reader --------------------------------------------------

const reply = (code: number) => [5, code, 0, 1, 0, 0, 0, 0, 0, 0];
const SOCKS4_REJECTED = [0, 0x5b, 0, 0, 0, 0, 0, 0];

/** What the server answers to `input` followed by silence: its bytes, whether it closes by itself, the target it vets. */
interface Expected {
  bytes: number[];
  closes: boolean;
  target?: { type: number; raw: Uint8Array; port: number };
}

function expected(input: Uint8Array, auth: boolean): Expected {
  const out: number[] = [];
  const need = (n: number) => input.length >= n;
  const waits = (): Expected => ({ bytes: out, closes: false });
  const closes = (...answer: number[]): Expected => ({ bytes: [...out, ...answer], closes: true });
  if (!need(1)) return waits();
  if (input[0] !== 5) return closes(...(input[0] === 4 ? SOCKS4_REJECTED : []));
  if (!need(2)) return waits();
  const count = input[1]!;
  if (count === 0) return closes(5, 0xff);
  if (!need(2 + count)) return waits();
  const wanted = auth ? 2 : 0;
  if (!input.subarray(2, 2 + count).includes(wanted)) return closes(5, 0xff);
  out.push(5, wanted);
  let i = 2 + count;
  if (auth) {
    if (!need(i + 1)) return waits();
    if (input[i] !== 1) return closes(1, 1);
    if (!need(i + 2)) return waits();
    const userEnd = i + 2 + input[i + 1]!;
    if (!need(userEnd + 1)) return waits();
    const passEnd = userEnd + 1 + input[userEnd]!;
    if (!need(passEnd)) return waits();
    const user = utf8.decode(input.subarray(i + 2, userEnd));
    const pass = utf8.decode(input.subarray(userEnd + 1, passEnd));
    if (user !== USER || pass !== PASS) return closes(1, 1);
    out.push(1, 0);
    i = passEnd;
  }
  if (!need(i + 1)) return waits();
  if (input[i] !== 5) return closes(...reply(0x01));
  if (!need(i + 4)) return waits();
  const command = input[i + 1]!;
  const type = input[i + 3]!;
  let start = i + 4;
  let length: number;
  if (type === 1) length = 4;
  else if (type === 4) length = 16;
  else if (type === 3) {
    if (!need(i + 5)) return waits();
    length = input[i + 4]!;
    start++;
  } else return closes(...reply(0x08));
  if (!need(start + length + 2)) return waits();
  const port = (input[start + length]! << 8) | input[start + length + 1]!;
  const target = { type, raw: input.subarray(start, start + length), port };
  // CONNECT is refused by the destination policy (0x02); BIND, UDP (disabled here) and unknown commands are 0x07.
  return { ...closes(...reply(command === 1 ? 0x02 : 0x07)), target: command === 1 ? target : undefined };
}

/** The value of a target as the server should see it: IPs as numbers (IPv4-mapped read as IPv4), names as latin1. */
function targetValue(type: number, raw: Uint8Array): string {
  if (type === 3) return `name:${Buffer.from(raw).toString('latin1')}`;
  let value = 0n;
  for (const byte of raw) value = (value << 8n) | BigInt(byte);
  if (type === 4 && value >> 32n === 0xffffn) return `ip4:${value & 0xffff_ffffn}`;
  return `ip${type === 1 ? 4 : 6}:${value}`;
}

function seenValue(host: string): string {
  const ip = parseIp(host);
  return ip ? `ip${ip.v6 ? 6 : 4}:${ip.value}` : `name:${host}`;
}

// ---- pure parser properties -------------------------------------------------

/** Feed chunks to a HandshakeReader as the server does; the sequence of messages and errors it yields. */
function drive(chunks: Uint8Array[], auth: boolean): string[] {
  const reader = new HandshakeReader();
  const events: string[] = [];
  let stage: 'greeting' | 'credentials' | 'request' | 'done' = 'greeting';
  for (const chunk of chunks) {
    assert.equal(reader.push(chunk), true);
    while (stage !== 'done') {
      const read = stage === 'greeting' ? reader.readGreeting() : stage === 'credentials' ? reader.readCredentials() : reader.readRequest();
      if (read === 'incomplete') break;
      events.push(JSON.stringify(read, (_key, value: unknown) => (value instanceof Uint8Array ? [...value] : value)));
      if ('error' in read) stage = 'done';
      else stage = stage === 'greeting' ? (auth ? 'credentials' : 'request') : stage === 'credentials' ? 'request' : 'done';
    }
  }
  events.push(`stage=${stage} buffered=${reader.buffered}`);
  return events;
}

/** Auth or not, and input for it. */
const anyInput = fc.boolean().chain((auth) => fc.tuple(fc.constant(auth), fc.oneof(handshake(auth), garbage(auth)), splits));

test('the handshake reader never throws and yields the same messages however the bytes are split', () => {
  fc.assert(
    fc.property(anyInput, ([auth, bytes, cuts]) => {
      assert.deepEqual(drive(split(bytes, cuts), auth), drive([bytes], auth));
      // One byte at a time, the worst split.
      assert.deepEqual(drive([...bytes].map((byte) => Uint8Array.of(byte)), auth), drive([bytes], auth));
    }),
    { numRuns: 400 },
  );
});

test('the handshake reader agrees with the reference reader on where the handshake ends and what it asks for', () => {
  fc.assert(
    fc.property(anyInput, ([auth, bytes]) => {
      const events = drive([bytes], auth);
      const want = expected(bytes, auth);
      const last = events.at(-2);
      if (want.target) {
        const request = JSON.parse(last!) as { command: number; address: { host: string; port: number; type: number } };
        assert.equal(request.command, 1);
        assert.equal(seenValue(request.address.host), targetValue(want.target.type, want.target.raw));
        assert.equal(request.address.port, want.target.port);
      }
      // An unfinished handshake leaves the reader waiting; a finished or failed one does not.
      if (!want.closes) assert.match(events.at(-1)!, /^stage=(greeting|credentials|request) /);
    }),
    { numRuns: 400 },
  );
});

test('readAddress never throws at any offset; a complete address reads back and every prefix is incomplete', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (bytes, offset) => {
      const read = readAddress(bytes, offset % (bytes.length + 2));
      if (typeof read === 'string') return;
      const start = offset % (bytes.length + 2);
      assert.ok(read.next <= bytes.length);
      for (let end = start; end < read.next; end++) assert.equal(readAddress(bytes.subarray(0, end), start), 'incomplete');
    }),
    { numRuns: 300 },
  );
});

test('what the client encodes (encodeAddress) the server reads back (readAddress): IPs as the same address, names byte for byte', () => {
  const host = fc.oneof(
    fc.ipV4(),
    fc.ipV6(),
    fc.domain(),
    fc.string({ unit: fc.integer({ min: 1, max: 255 }).map((code) => String.fromCharCode(code)), minLength: 1, maxLength: 255 }),
  );
  fc.assert(
    fc.property(host, fc.integer({ min: 0, max: 65535 }), (name, port) => {
      const read = readAddress(encodeAddress(name, port), 0);
      assert.ok(typeof read !== 'string');
      assert.equal(read.address.port, port);
      assert.equal(seenValue(read.address.host), seenValue(name));
    }),
    { numRuns: 300 },
  );
});

test('readUdpDatagram never throws; what encodeUdpDatagram wraps it unwraps intact', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const read = readUdpDatagram(bytes);
      if (typeof read === 'string') {
        assert.ok(read === 'fragmented' || read === 'malformed');
        if (bytes.length >= 4) assert.equal(read === 'fragmented', bytes[2] !== 0);
        return;
      }
      assert.equal(bytes[2], 0);
      const header = bytes.length - read.data.length;
      assert.deepEqual(readAddress(bytes.subarray(0, header), 3), { address: read.address, next: header });
    }),
    { numRuns: 400 },
  );
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain()), fc.integer({ min: 0, max: 65535 }), fc.uint8Array({ maxLength: 64 }), (host, port, data) => {
      const read = readUdpDatagram(encodeUdpDatagram(host, port, data));
      assert.ok(typeof read !== 'string');
      assert.equal(seenValue(read.address.host), seenValue(host));
      assert.equal(read.address.port, port);
      assert.deepEqual([...read.data], [...data]);
    }),
    { numRuns: 300 },
  );
});

// ---- the server over real sockets -------------------------------------------

interface Exchange {
  /** Everything the server sent. */
  received: Buffer;
  /** The server ended or closed the connection before we did. */
  closedByServer: boolean;
}

/**
 * Send `pieces` (each in its own write, yielding in between), then wait for
 * the server to close; when `hangUp`, close our side first (a client that
 * stops mid-handshake). A server that neither answers nor closes fails the run.
 */
async function exchange(port: number, pieces: Uint8Array[], hangUp: boolean): Promise<Exchange> {
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true, allowHalfOpen: true });
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  let closedByServer = false;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('end', () => {
    closedByServer = true;
    socket.end();
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  for (const piece of pieces) {
    socket.write(piece);
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (hangUp) socket.end();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<'hung'>((resolve) => (timer = setTimeout(resolve, 5_000, 'hung')));
  const outcome = await Promise.race([closed.then(() => 'closed' as const), guard]);
  clearTimeout(timer);
  socket.destroy();
  assert.equal(outcome, 'closed', `the server neither closed nor answered in full: got ${Buffer.concat(chunks).toString('hex')}`);
  return { received: Buffer.concat(chunks), closedByServer };
}

describe('the SOCKS5 server, fed valid handshakes and garbage over TCP', () => {
  const seen: string[] = [];
  const refuseAll = (host: string, port: number) => {
    seen.push(`${seenValue(host)}:${port}`);
    return false;
  };
  let open: TestProxy;
  let authed: TestProxy;
  before(async () => {
    // Every destination refused and UDP off: nothing is ever dialled, and every answer is known in advance.
    open = await startProxy({ allowDestination: refuseAll, udp: false });
    authed = await startProxy({ allowDestination: refuseAll, udp: false, users: { [USER]: PASS } });
  });
  after(async () => {
    await open.close();
    await authed.close();
  });

  test('a valid handshake, split anywhere, is answered as the reference says, the target as sent, then closed', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean().chain((auth) => fc.tuple(fc.constant(auth), handshake(auth), splits)), async ([auth, bytes, cuts]) => {
        const want = expected(bytes, auth);
        seen.length = 0;
        const got = await exchange((auth ? authed : open).port, split(bytes, cuts), false);
        assert.deepEqual([...got.received], want.bytes);
        assert.equal(got.closedByServer, true);
        assert.deepEqual(seen, want.target ? [`${targetValue(want.target.type, want.target.raw)}:${want.target.port}`] : []);
      }),
      { numRuns: 200 },
    );
  });

  test('garbage gets the failure answer of the state it broke (or none for a non-SOCKS greeting) and a close', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean().chain((auth) => fc.tuple(fc.constant(auth), garbage(auth), splits)), async ([auth, bytes, cuts]) => {
        const want = expected(bytes, auth);
        const got = await exchange((auth ? authed : open).port, split(bytes, cuts), !want.closes);
        if (want.closes) {
          assert.deepEqual([...got.received], want.bytes);
          assert.equal(got.closedByServer, true);
        } else {
          // Hung up mid-handshake: whatever was answered before is a prefix of the expected answers.
          assert.deepEqual([...got.received], want.bytes.slice(0, got.received.length));
        }
      }),
      { numRuns: 300 },
    );
    // The server is still serving.
    const client = await openSocks(open.port);
    client.send(request(2, '127.0.0.1', 1));
    assert.equal((await readReply(client)).reply, 0x07);
    client.close();
  });

  test('socks5Connect (the client) and the server agree on every target, and on the refusal', async () => {
    const host = fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain());
    await fc.assert(
      fc.asyncProperty(host, fc.integer({ min: 1, max: 65535 }), fc.boolean(), async (name, port, auth) => {
        seen.length = 0;
        const proxy = auth ? { host: '127.0.0.1', port: authed.port, username: USER, password: PASS } : { host: '127.0.0.1', port: open.port };
        await assert.rejects(socks5Connect({ proxy, host: name, port }), (error: unknown) => error instanceof NetError && error.code === 'EFORBIDDEN');
        assert.deepEqual(seen, [`${seenValue(name)}:${port}`]);
      }),
      { numRuns: 150 },
    );
  });
});

describe('the SOCKS5 UDP relay, fed garbage datagrams', () => {
  test('drops every malformed, fragmented or refused datagram and keeps relaying', async () => {
    // The one destination allowed: a counting echo on loopback.
    const echo = dgram.createSocket('udp4');
    let echoed = 0;
    echo.on('message', (data, info) => {
      echoed++;
      echo.send(data, info.port, info.address);
    });
    await new Promise<void>((resolve) => echo.bind(0, '127.0.0.1', resolve));
    const echoPort = echo.address().port;
    const proxy = await startProxy({ allowDestination: (host, port) => host === '127.0.0.1' && port === echoPort });
    const control = await openSocks(proxy.port);
    const client = await UdpClient.open();
    try {
      control.send(request(3, '0.0.0.0', 0));
      const { reply, port: relayPort } = await readReply(control);
      assert.equal(reply, 0x00);
      const drops = () => proxy.logs.filter((line) => line.includes('socks5 udp datagram dropped')).length;
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 64 }), wireAddress.map((address) => Uint8Array.from([0, 0, 0, ...address, 0, 53, 1, 2]))), async (datagram) => {
          const read = readUdpDatagram(datagram);
          // The one allowed target is left out, so that every datagram here must be dropped.
          fc.pre(typeof read === 'string' || read.address.host !== '127.0.0.1' || read.address.port !== echoPort);
          const before = drops();
          client.socket.send(datagram, relayPort, '127.0.0.1');
          // One at a time (a burst could overflow a socket buffer): wait for this one's drop line.
          while (drops() === before) await new Promise((resolve) => setTimeout(resolve, 1));
        }),
        { numRuns: 300 },
      );
      client.sendTo(relayPort, [0, 0, 0, 1, 127, 0, 0, 1, echoPort >> 8, echoPort & 0xff], 'still here');
      assert.equal((await client.receive()).subarray(10).toString(), 'still here');
      assert.equal(echoed, 1, 'no garbage datagram reached the target');
    } finally {
      client.close();
      control.close();
      echo.close();
      await proxy.close();
    }
  });
});
