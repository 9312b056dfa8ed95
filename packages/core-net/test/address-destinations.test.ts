import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CidrList,
  DEFAULT_DENY_DESTINATIONS,
  NetError,
  isDeniedDestination,
  resolveDestination,
  type Resolver,
} from '../src/index.js';

const defaults = new CidrList(DEFAULT_DENY_DESTINATIONS);

test('the default deny list refuses every spelling of this host', () => {
  for (const ip of [
    '0.0.0.0',
    '0.1.2.3',
    '127.0.0.1',
    '127.255.255.254',
    '::',
    '0:0:0:0:0:0:0:0',
    '::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::FFFF:7F00:1',
    '0:0:0:0:0:ffff:7f00:1',
    '::ffff:0.0.0.0',
    '::127.0.0.1', // IPv4-compatible
    '::ffff:0:127.0.0.1', // IPv4-translated
    '64:ff9b::127.0.0.1', // NAT64
    '64:ff9b::',
    '2002:7f00:1::1', // 6to4
    '2002::',
  ]) {
    assert.equal(isDeniedDestination(defaults, ip), true, ip);
  }
});

test('the default deny list refuses link-local, multicast, broadcast and cloud metadata, in every spelling', () => {
  for (const ip of [
    '169.254.169.254',
    '169.254.0.1',
    '::ffff:169.254.169.254',
    '::ffff:a9fe:a9fe',
    '64:ff9b::a9fe:a9fe',
    '2002:a9fe:a9fe::',
    'fe80::1',
    'fe80::1%lo',
    'febf:ffff::1',
    '224.0.0.251',
    '239.255.255.250',
    'ff02::1',
    'ff05::1:3',
    '255.255.255.255',
    'fd00:ec2::254',
    '100.100.100.200',
  ]) {
    assert.equal(isDeniedDestination(defaults, ip), true, ip);
  }
});

test('the default deny list lets private, shared and public addresses through', () => {
  for (const ip of [
    '10.0.0.1',
    '172.16.0.1',
    '192.168.1.1',
    '100.64.0.1',
    '1.1.1.1',
    '::ffff:10.0.0.1',
    'fc00::1',
    'fd00:ec2::253',
    'fec0::1',
    '2001:db8::1',
    '64:ff9b::a00:1',
    '2002:a00:1::1',
    '2001::1', // Teredo is not decoded
  ]) {
    assert.equal(isDeniedDestination(defaults, ip), false, ip);
  }
});

test('an IPv4 rule covers the IPv4-mapped, -compatible, -translated, NAT64 and 6to4 spellings of its addresses', () => {
  const deny = new CidrList(['10.0.0.0/8']);
  for (const ip of ['10.1.2.3', '::ffff:10.1.2.3', '::ffff:a01:203', '::10.1.2.3', '::ffff:0:10.1.2.3', '64:ff9b::10.1.2.3', '2002:a01:203::1']) {
    assert.equal(isDeniedDestination(deny, ip), true, ip);
  }
  for (const ip of ['11.1.2.3', '::ffff:11.1.2.3', '::11.1.2.3', '64:ff9b::11.1.2.3', '2002:b01:203::1', '2003:a01:203::1', '64:ff9c::10.1.2.3']) {
    assert.equal(isDeniedDestination(deny, ip), false, ip);
  }
});

test('the unspecified address counts as loopback: a list of 127.0.0.0/8 and ::1 refuses 0.0.0.0 and ::', () => {
  const deny = new CidrList(['127.0.0.0/8', '::1/128']);
  for (const ip of ['0.0.0.0', '::', '::ffff:0.0.0.0', '::ffff:0:0.0.0.0']) assert.equal(isDeniedDestination(deny, ip), true, ip);
  assert.equal(isDeniedDestination(new CidrList(['::1/128']), '::'), true, ':: dials ::1');
  assert.equal(isDeniedDestination(new CidrList(['127.0.0.0/8']), '0.0.0.0'), true, '0.0.0.0 dials 127.0.0.1');
  assert.equal(isDeniedDestination(deny, '0.0.0.1'), false, 'only the unspecified address itself is dialled as loopback');
});

test('an IPv4-mapped address with its zero groups written out is still mapped (a "::" before an IPv4 tail holds two groups less)', () => {
  const deny = new CidrList(['127.0.0.0/8']);
  for (const ip of ['::0:ffff:127.0.0.1', '0::0:ffff:127.0.0.1', '::0:0:ffff:127.0.0.1', '0:0:0:0:0:ffff:127.0.0.1']) {
    assert.equal(deny.contains(ip), true, ip);
    assert.equal(isDeniedDestination(deny, ip), true, ip);
  }
  assert.equal(new CidrList(['1::2:0:0/96']).contains('1::2:1.2.3.4'), true, 'the group before the IPv4 tail keeps its place');
  assert.equal(new CidrList(['1::/96']).contains('1::2:1.2.3.4'), false);
});

test('a string that is not an IP literal is refused by any deny list', () => {
  const deny = new CidrList(['192.0.2.0/24']);
  for (const text of ['localhost', '127.1', '0x7f.1', '2130706433', '', '[::1]', '1.2.3.4 ']) assert.equal(isDeniedDestination(deny, text), true, JSON.stringify(text));
});

const staticResolver = (table: Record<string, string[]>): Resolver => async (host) => {
  const found = table[host];
  if (!found) throw new NetError('ENOTFOUND', `cannot resolve ${host}`);
  return found;
};

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof NetError, String(error));
    return error.code;
  }
  return 'resolved';
}

test('resolveDestination refuses a name if any of its addresses is denied, and returns the vetted addresses to dial', async () => {
  const resolver = staticResolver({ 'mixed.test': ['192.0.2.1', '::'], 'good.test': ['192.0.2.1', '2001:db8::1'], 'empty.test': [] });
  assert.equal(await refusal(resolveDestination('mixed.test', 80, defaults, resolver)), 'EFORBIDDEN');
  assert.deepEqual(await resolveDestination('good.test', 80, defaults, resolver), ['192.0.2.1', '2001:db8::1']);
  assert.equal(await refusal(resolveDestination('empty.test', 80, defaults, resolver)), 'ENOTFOUND');
  assert.equal(await refusal(resolveDestination('bad_name!', 80, defaults, resolver)), 'ENOTFOUND');
});

test('resolveDestination checks IP literals as written and hands back their plain form', async () => {
  const resolver = staticResolver({});
  assert.equal(await refusal(resolveDestination('::ffff:127.0.0.1', 80, defaults, resolver)), 'EFORBIDDEN');
  assert.deepEqual(await resolveDestination('::ffff:192.0.2.1', 80, defaults, resolver), ['192.0.2.1']);
  assert.equal(await resolveDestination('192.0.2.1', 80, undefined, resolver), undefined, 'nothing to check: the connector decides');
  assert.deepEqual(await resolveDestination('192.0.2.1', 80, undefined, resolver, true), ['192.0.2.1']);
});

test('resolveDestination never accepts port 0, with or without a deny list', async () => {
  const resolver = staticResolver({ 'good.test': ['192.0.2.1'] });
  assert.equal(await refusal(resolveDestination('192.0.2.1', 0, undefined, resolver)), 'EFORBIDDEN');
  assert.equal(await refusal(resolveDestination('good.test', 0, defaults, resolver)), 'EFORBIDDEN');
});
