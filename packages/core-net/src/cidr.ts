import { isIP } from 'node:net';

/**
 * CIDR lists for allow/deny decisions. IPv4-mapped IPv6 addresses
 * (`::ffff:10.0.0.1`, what dual-stack listeners report) match IPv4 rules.
 */

interface Range {
  v6: boolean;
  bits: bigint;
  mask: bigint;
  text: string;
}

export class CidrError extends Error {
  constructor(readonly input: string, reason: string) {
    super(`invalid CIDR "${input}": ${reason}`);
    this.name = 'CidrError';
  }
}

function ipv4ToBigInt(ip: string): bigint {
  let value = 0n;
  for (const part of ip.split('.')) value = (value << 8n) | BigInt(Number(part));
  return value;
}

function ipv6ToBigInt(ip: string): bigint {
  let text = ip;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  let tail: number[] = [];
  // An embedded IPv4 suffix (::ffff:1.2.3.4) becomes two groups, and holds
  // two places when "::" is expanded (`::0:ffff:1.2.3.4` is IPv4-mapped).
  const lastColon = text.lastIndexOf(':');
  const suffix = text.slice(lastColon + 1);
  if (suffix.includes('.')) {
    const v4 = Number(ipv4ToBigInt(suffix));
    tail = [(v4 >>> 16) & 0xffff, v4 & 0xffff];
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  let groups: string[];
  if (rest === undefined) groups = headGroups;
  else groups = [...headGroups, ...new Array<string>(8 - headGroups.length - restGroups.length).fill('0'), ...restGroups];
  let values = groups.map((group) => parseInt(group, 16));
  if (tail.length === 2) values = [...values.slice(0, 6), ...tail];
  let value = 0n;
  for (const group of values) value = (value << 16n) | BigInt(group);
  return value;
}

/** Normalise an address for matching: IPv4-mapped IPv6 becomes plain IPv4. */
export function normaliseIp(ip: string): string {
  const lower = ip.toLowerCase();
  if (lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4) return lower.slice(7);
  // Any other spelling of an IPv4-mapped address (::ffff:7f00:1, as WHATWG URL
  // prints it, or 0:0:0:0:0:ffff:7f00:1) must match IPv4 rules too.
  if (lower.includes('ffff') && isIP(lower) === 6) {
    const value = ipv6ToBigInt(lower);
    if (value >> 32n === 0xffffn) {
      const v4 = Number(value & 0xffffffffn);
      return `${v4 >>> 24}.${(v4 >>> 16) & 255}.${(v4 >>> 8) & 255}.${v4 & 255}`;
    }
  }
  return lower;
}

/** An IP address as a number: `value` has 32 bits for IPv4, 128 for IPv6. */
export interface IpValue {
  v6: boolean;
  value: bigint;
}

/**
 * The numeric value of an IP literal, IPv4-mapped IPv6 (any spelling) read as
 * IPv4; undefined for anything else (names, and IPv4 spellings such as
 * `127.1` that only a resolver reads).
 */
export function parseIp(ip: string): IpValue | undefined {
  const normalised = normaliseIp(ip);
  const family = isIP(normalised);
  if (family === 0) return undefined;
  return family === 4 ? { v6: false, value: ipv4ToBigInt(normalised) } : { v6: true, value: ipv6ToBigInt(normalised) };
}

export function parseCidr(input: string): Range {
  const text = input.trim();
  const slash = text.indexOf('/');
  const written = slash < 0 ? text : text.slice(0, slash);
  const ip = normaliseIp(written);
  const family = isIP(ip);
  if (family === 0) throw new CidrError(input, `"${ip}" is not an IP address`);
  // An IPv4-mapped range (::ffff:10.0.0.0/104) is the IPv4 range it maps (10.0.0.0/8).
  const mapped = family === 4 && isIP(written) === 6;
  const writtenWidth = family === 4 && !mapped ? 32 : 128;
  const width = family === 4 ? 32 : 128;
  let prefix = width;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > writtenWidth) {
      throw new CidrError(input, `prefix must be 0-${writtenWidth}`);
    }
    prefix = Number(prefixText);
    if (mapped) {
      if (prefix < 96) throw new CidrError(input, 'an IPv4-mapped range needs a prefix of 96-128');
      prefix -= 96;
    }
  }
  const all = (1n << BigInt(width)) - 1n;
  const mask = prefix === 0 ? 0n : (all >> BigInt(width - prefix)) << BigInt(width - prefix);
  const value = family === 4 ? ipv4ToBigInt(ip) : ipv6ToBigInt(ip);
  return { v6: family === 6, bits: value & mask, mask, text };
}

export class CidrList {
  private readonly ranges: Range[];
  constructor(cidrs: Iterable<string> = []) {
    this.ranges = [...cidrs].map(parseCidr);
  }
  get size(): number {
    return this.ranges.length;
  }
  /** True when `ip` lies in any range. A non-IP never matches. */
  contains(ip: string): boolean {
    const parsed = parseIp(ip);
    return parsed !== undefined && this.matches(parsed.v6, parsed.value);
  }
  /** True when the address `value` (of `parseIp`) lies in any range of its family. */
  matches(v6: boolean, value: bigint): boolean {
    for (const range of this.ranges) {
      if (range.v6 === v6 && (value & range.mask) === range.bits) return true;
    }
    return false;
  }
  toJSON(): string[] {
    return this.ranges.map((range) => range.text);
  }
}

/**
 * An allow list and a deny list together: deny wins; an empty allow list
 * allows everything not denied.
 */
export class AccessPolicy {
  readonly allow: CidrList;
  readonly deny: CidrList;
  constructor(options: { allow?: Iterable<string>; deny?: Iterable<string> } = {}) {
    this.allow = new CidrList(options.allow);
    this.deny = new CidrList(options.deny);
  }
  permits(ip: string): boolean {
    if (this.deny.contains(ip)) return false;
    return this.allow.size === 0 || this.allow.contains(ip);
  }
}
