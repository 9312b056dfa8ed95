// Property-based tests of address and CIDR parsing against a plain BigInt
// reference: every spelling of an address reads as the same number, CIDR
// containment agrees with comparing prefixes, and IPv4-mapped IPv6 matches
// IPv4 rules. Runs are bounded so the file takes a few seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import {
  AddressError,
  CidrError,
  CidrList,
  formatHostPort,
  isDeniedDestination,
  normaliseIp,
  parseAddress,
  parseCidr,
  parseIp,
} from '../src/index.js';

const RUNS = { numRuns: 400 };
const MASK32 = 0xffff_ffffn;
const MASK128 = (1n << 128n) - 1n;

// ---- reference formatting ------------------------------------------------

function v4Text(value: bigint): string {
  const n = Number(value);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function groupsOf(value: bigint): number[] {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  return groups;
}

/** A spelling of a 128-bit value: which zero run is compressed, hex case and padding, an IPv4 tail. */
interface V6Spelling {
  compress: number; // index of the zero run to write as "::" (modulo the runs found; -1: none)
  upper: boolean;
  pad: boolean;
  v4Tail: boolean;
}

function v6Text(value: bigint, spelling: V6Spelling): string {
  const groups = groupsOf(value);
  const hex = (group: number) => {
    let text = group.toString(16);
    if (spelling.pad) text = text.padStart(4, '0');
    return spelling.upper ? text.toUpperCase() : text;
  };
  let parts: string[] = groups.map(hex);
  if (spelling.v4Tail) parts = [...parts.slice(0, 6), v4Text(value & MASK32)];
  const slots = parts.length;
  // Zero runs among the hex groups (an IPv4 tail is never compressed).
  const runs: Array<[number, number]> = [];
  for (let i = 0; i < (spelling.v4Tail ? 6 : 8); ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < (spelling.v4Tail ? 6 : 8) && groups[j] === 0) j++;
    runs.push([i, j]);
    i = j;
  }
  if (spelling.compress < 0 || runs.length === 0) return parts.join(':');
  const [from, to] = runs[spelling.compress % runs.length]!;
  return `${parts.slice(0, from).join(':')}::${parts.slice(to, slots).join(':')}`;
}

const v4Value = fc.bigInt({ min: 0n, max: MASK32 });
/** IPv6 values, biased towards the special ranges where spellings and mappings differ. */
const v6Value = fc.oneof(
  fc.bigInt({ min: 0n, max: MASK128 }),
  v4Value.map((v4) => (0xffffn << 32n) | v4), // IPv4-mapped
  v4Value.map((v4) => v4), // IPv4-compatible, :: and ::1
  fc.tuple(fc.bigInt({ min: 0n, max: 0xffffn }), fc.bigInt({ min: 0n, max: 0xffffn })).map(([a, b]) => (a << 112n) | b),
  // Group by group, zeros likely: runs of zeros anywhere, so "::" lands in every place.
  fc
    .array(fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 })
    .map((groups) => groups.reduce((value, group) => (value << 16n) | BigInt(group), 0n)),
);
const spelling = fc.record({ compress: fc.integer({ min: -1, max: 3 }), upper: fc.boolean(), pad: fc.boolean(), v4Tail: fc.boolean() });

/** The reference reading of an address: IPv4-mapped IPv6 is IPv4. */
function reference(v6: boolean, value: bigint): { v6: boolean; value: bigint } {
  if (v6 && value >> 32n === 0xffffn) return { v6: false, value: value & MASK32 };
  return { v6, value };
}

test('every spelling of an IPv6 address is a valid literal and parses to its value', () => {
  fc.assert(
    fc.property(v6Value, spelling, (value, how) => {
      const text = v6Text(value, how);
      assert.equal(isIP(text), 6, text);
      const parsed = parseIp(text);
      assert.deepEqual(parsed, reference(true, value), text);
      // The normalised text is a literal of the same value.
      assert.deepEqual(parseIp(normaliseIp(text)), parsed, text);
    }),
    RUNS,
  );
});

test('IPv4 addresses parse to their value; IPv4-mapped spellings parse to the same', () => {
  fc.assert(
    fc.property(v4Value, spelling, (value, how) => {
      const text = v4Text(value);
      assert.deepEqual(parseIp(text), { v6: false, value });
      const mapped = v6Text((0xffffn << 32n) | value, how);
      assert.deepEqual(parseIp(mapped), { v6: false, value }, mapped);
      assert.equal(normaliseIp(mapped), text, mapped);
    }),
    RUNS,
  );
});

test('host:port round-trips through formatHostPort and parseAddress for IPs and names', () => {
  const host = fc.oneof(
    v4Value.map(v4Text),
    fc.tuple(v6Value, spelling).map(([value, how]) => v6Text(value, how)),
    fc.domain().filter((name) => name.length <= 253),
  );
  fc.assert(
    fc.property(host, fc.integer({ min: 0, max: 65535 }), (name, port) => {
      const address = parseAddress(formatHostPort(name, port));
      assert.equal(address.host, name);
      assert.equal(address.port, port);
      assert.equal(address.family, isIP(name));
      assert.equal(address.wildcard, false);
    }),
    RUNS,
  );
});

test('parseAddress and parseCidr fail only with their own errors, whatever the input', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[0-9a-fA-F:.[\]/%x]{0,48}$/)), (input) => {
      try {
        parseAddress(input);
      } catch (error) {
        assert.ok(error instanceof AddressError, `${JSON.stringify(input)}: ${String(error)}`);
      }
      try {
        parseCidr(input);
      } catch (error) {
        assert.ok(error instanceof CidrError, `${JSON.stringify(input)}: ${String(error)}`);
      }
      // Neither throws: a non-IP simply does not match, and is refused as a destination.
      assert.equal(typeof new CidrList(['10.0.0.0/8']).contains(input), 'boolean');
      assert.equal(typeof isDeniedDestination(new CidrList(['10.0.0.0/8']), input), 'boolean');
    }),
    RUNS,
  );
});

/** A range and an address, the address often inside the range. */
const v4Case = fc.tuple(v4Value, fc.integer({ min: 0, max: 32 }), v4Value, fc.boolean()).map(([net, prefix, other, inside]) => {
  const host = 32n - BigInt(prefix);
  const address = inside ? ((net >> host) << host) | (other & ((1n << host) - 1n)) : other;
  return { net, prefix, address };
});
const v6Case = fc.tuple(v6Value, fc.integer({ min: 0, max: 128 }), v6Value, fc.boolean(), spelling, spelling).map(([net, prefix, other, inside, netHow, addressHow]) => {
  const host = 128n - BigInt(prefix);
  const address = inside ? ((net >> host) << host) | (other & ((1n << host) - 1n)) : other;
  return { net, prefix, address, netHow, addressHow };
});

test('IPv4 CIDR containment agrees with comparing prefixes as numbers', () => {
  fc.assert(
    fc.property(v4Case, ({ net, prefix, address }) => {
      const list = new CidrList([`${v4Text(net)}/${prefix}`]);
      const host = 32n - BigInt(prefix);
      assert.equal(list.contains(v4Text(address)), net >> host === address >> host);
    }),
    RUNS,
  );
});

test('IPv6 CIDR containment agrees with comparing prefixes as numbers, IPv4-mapped ranges read as IPv4', () => {
  fc.assert(
    fc.property(v6Case, ({ net, prefix, address, netHow, addressHow }) => {
      const cidr = `${v6Text(net, netHow)}/${prefix}`;
      const rangeRef = reference(true, net);
      // An IPv4-mapped range narrower than the mapped block is an IPv4 range; wider ones are refused.
      if (!rangeRef.v6 && prefix < 96) {
        assert.throws(() => parseCidr(cidr), CidrError);
        return;
      }
      const width = rangeRef.v6 ? 128n : 32n;
      const rangePrefix = BigInt(rangeRef.v6 ? prefix : prefix - 96);
      const addressRef = reference(true, address);
      const expected = addressRef.v6 === rangeRef.v6 && rangeRef.value >> (width - rangePrefix) === addressRef.value >> (width - rangePrefix);
      assert.equal(new CidrList([cidr]).contains(v6Text(address, addressHow)), expected, `${cidr} ∋ ${v6Text(address, addressHow)}`);
    }),
    RUNS,
  );
});

test('an IPv4 deny rule matches an IPv4 address exactly when it matches each of its IPv6 spellings', () => {
  const embeddings: Array<(v4: bigint) => bigint> = [
    (v4) => (0xffffn << 32n) | v4, // mapped
    (v4) => v4, // compatible
    (v4) => (0xffff0000n << 32n) | v4, // translated
    (v4) => (0x0064ff9bn << 96n) | v4, // NAT64
    (v4) => (0x2002n << 112n) | (v4 << 80n), // 6to4
  ];
  fc.assert(
    fc.property(v4Case, spelling, fc.integer({ min: 0, max: embeddings.length - 1 }), ({ net, prefix, address }, how, which) => {
      const deny = new CidrList([`${v4Text(net)}/${prefix}`]);
      const direct = isDeniedDestination(deny, v4Text(address));
      const embedded = v6Text(embeddings[which]!(address), how);
      // The unspecified and loopback addresses have extra meanings of their own (tested elsewhere).
      fc.pre(address !== 0n && address !== 1n);
      assert.equal(isDeniedDestination(deny, embedded), direct, `${embedded} vs ${v4Text(address)} under ${v4Text(net)}/${prefix}`);
    }),
    RUNS,
  );
});
