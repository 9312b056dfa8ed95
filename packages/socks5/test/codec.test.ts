import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Socks5Server, encodeAddress, encodeReply, encodeUdpDatagram, readAddress, readUdpDatagram } from '../src/index.js';

function roundTrip(host: string, port = 443): unknown {
  const read = readAddress(encodeAddress(host, port), 0);
  assert.ok(typeof read !== 'string');
  return read.address;
}

test('addresses round-trip: IPv4, IPv6 in canonical form, names', () => {
  assert.deepEqual(roundTrip('10.1.2.3'), { host: '10.1.2.3', port: 443, type: 1 });
  assert.deepEqual(roundTrip('::1'), { host: '::1', port: 443, type: 4 });
  assert.deepEqual(roundTrip('2001:DB8:0:0:0:0:0:1'), { host: '2001:db8::1', port: 443, type: 4 });
  assert.deepEqual(roundTrip('1:0:0:2:0:0:0:3'), { host: '1:0:0:2::3', port: 443, type: 4 });
  assert.deepEqual(roundTrip('fe80::1:2'), { host: 'fe80::1:2', port: 443, type: 4 });
  assert.deepEqual(roundTrip('1:2:3:4:5:6:7:8', 65535), { host: '1:2:3:4:5:6:7:8', port: 65535, type: 4 });
  assert.deepEqual(roundTrip('example.com', 80), { host: 'example.com', port: 80, type: 3 });
});

test('IPv4-mapped IPv6 reads and writes as plain IPv4, however it is spelled', () => {
  assert.deepEqual(roundTrip('::ffff:127.0.0.1'), { host: '127.0.0.1', port: 443, type: 1 });
  const mapped = Uint8Array.of(4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1, 0, 80);
  const read = readAddress(mapped, 0);
  assert.ok(typeof read !== 'string');
  assert.equal(read.address.host, '127.0.0.1');
});

test('partial addresses are incomplete; unknown types are reported', () => {
  const full = encodeAddress('example.com', 80);
  for (let length = 0; length < full.byteLength; length++) assert.equal(readAddress(full.subarray(0, length), 0), 'incomplete');
  assert.equal(readAddress(Uint8Array.of(2, 1, 2, 3), 0), 'bad-type');
});

test('names over 255 bytes are refused', () => {
  assert.throws(() => encodeAddress('a'.repeat(256), 80), RangeError);
});

test('replies carry the bound address; a non-IP bound address becomes 0.0.0.0:0', () => {
  assert.deepEqual([...encodeReply(0, '::ffff:10.0.0.1', 1080)], [5, 0, 0, 1, 10, 0, 0, 1, 0x04, 0x38]);
  assert.deepEqual([...encodeReply(5, 'not-an-ip', 0)], [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
});

test('UDP datagrams: header round trip, fragments and garbage recognised', () => {
  const datagram = encodeUdpDatagram('::1', 53, Buffer.from('query'));
  const read = readUdpDatagram(datagram);
  assert.ok(typeof read !== 'string');
  assert.equal(read.address.host, '::1');
  assert.equal(Buffer.from(read.data).toString(), 'query');
  const fragment = datagram.slice();
  fragment[2] = 1;
  assert.equal(readUdpDatagram(fragment), 'fragmented');
  assert.equal(readUdpDatagram(Uint8Array.of(0, 0)), 'malformed');
  assert.equal(readUdpDatagram(Uint8Array.of(0, 0, 0, 9, 1, 2)), 'malformed');
});

test('server options are checked up front', () => {
  assert.throws(() => new Socks5Server({ udpBind: 'eth0' }), /udpBind must be an IP address/);
  assert.throws(() => new Socks5Server({ connectTimeoutMs: -1 }), /connectTimeoutMs must be a positive/);
  assert.throws(() => new Socks5Server({ handshakeTimeoutMs: 0 }), /handshakeTimeoutMs must be a positive/);
  assert.throws(() => new Socks5Server({ destinationDeny: ['not-a-cidr'] }), /invalid CIDR/);
  assert.doesNotThrow(() => new Socks5Server({ idleTimeoutMs: 0, udpBind: '[::1]', destinationDeny: ['::1', '127.0.0.0/8'] }));
});
