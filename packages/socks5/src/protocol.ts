import { isIP } from 'node:net';
import { normaliseIp } from '@wmproxy/core-net';

/** RFC 1928 / RFC 1929 wire constants. */
export const SOCKS_VERSION = 0x05;
export const AUTH_VERSION = 0x01;

export const Method = {
  noAuth: 0x00,
  userPass: 0x02,
  noAcceptable: 0xff,
} as const;

export const Command = {
  connect: 0x01,
  bind: 0x02,
  udpAssociate: 0x03,
} as const;

export const AddressType = {
  ipv4: 0x01,
  domain: 0x03,
  ipv6: 0x04,
} as const;

/** A SOCKS address on the wire: an IP literal or a domain name, and a port. */
export interface SocksAddress {
  host: string;
  port: number;
  /** The address type it was (or will be) sent as. */
  type: 0x01 | 0x03 | 0x04;
}

/** Result of reading an address: the address and where the bytes after it start. */
export type AddressRead = { address: SocksAddress; next: number } | 'incomplete' | 'bad-type';

/** Read ATYP, DST.ADDR and DST.PORT starting at `offset` (the ATYP byte). */
export function readAddress(buf: Uint8Array, offset: number): AddressRead {
  if (buf.byteLength <= offset) return 'incomplete';
  const type = buf[offset]!;
  let start = offset + 1;
  let end: number;
  if (type === AddressType.ipv4) end = start + 4;
  else if (type === AddressType.ipv6) end = start + 16;
  else if (type === AddressType.domain) {
    if (buf.byteLength <= start) return 'incomplete';
    end = start + 1 + buf[start]!;
    start += 1;
  } else return 'bad-type';
  if (buf.byteLength < end + 2) return 'incomplete';
  const port = (buf[end]! << 8) | buf[end + 1]!;
  let host: string;
  if (type === AddressType.ipv4) host = `${buf[start]}.${buf[start + 1]}.${buf[start + 2]}.${buf[start + 3]}`;
  else if (type === AddressType.ipv6) host = formatIpv6(buf, start);
  else host = Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('latin1');
  return { address: { host, port, type }, next: end + 2 };
}

/**
 * The canonical text of 16 address bytes (RFC 5952: longest zero run as
 * `::`). IPv4-mapped addresses come back as plain IPv4, so that policy checks
 * and connects see `127.0.0.1` whichever way a client spelled it.
 */
function formatIpv6(buf: Uint8Array, start: number): string {
  let mapped = buf[start + 10] === 0xff && buf[start + 11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (buf[start + i] !== 0) mapped = false;
  if (mapped) return `${buf[start + 12]}.${buf[start + 13]}.${buf[start + 14]}.${buf[start + 15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((buf[start + i]! << 8) | buf[start + i + 1]!);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string => groups.slice(from, to).map((group) => group.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/**
 * Encode ATYP + ADDR + PORT for `host`: IPv4 and IPv6 literals (IPv4-mapped
 * IPv6 becomes plain IPv4), anything else as a domain name (at most 255 bytes).
 */
export function encodeAddress(host: string, port: number): Uint8Array {
  const ip = normaliseIp(host);
  const family = isIP(ip);
  if (family === 4) {
    const out = new Uint8Array(7);
    out[0] = AddressType.ipv4;
    const parts = ip.split('.');
    for (let i = 0; i < 4; i++) out[1 + i] = Number(parts[i]);
    writePort(out, 5, port);
    return out;
  }
  if (family === 6) {
    const out = new Uint8Array(19);
    out[0] = AddressType.ipv6;
    writeIpv6(out, 1, ip);
    writePort(out, 17, port);
    return out;
  }
  const name = Buffer.from(host, 'latin1');
  if (name.byteLength === 0 || name.byteLength > 255) throw new RangeError(`domain name must be 1-255 bytes: "${host}"`);
  const out = new Uint8Array(4 + name.byteLength);
  out[0] = AddressType.domain;
  out[1] = name.byteLength;
  out.set(name, 2);
  writePort(out, 2 + name.byteLength, port);
  return out;
}

function writePort(out: Uint8Array, at: number, port: number): void {
  out[at] = (port >> 8) & 0xff;
  out[at + 1] = port & 0xff;
}

function writeIpv6(out: Uint8Array, at: number, ip: string): void {
  let text = ip;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail = text.slice(lastColon + 1).split('.').map(Number);
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups =
    rest === undefined ? headGroups : [...headGroups, ...new Array<string>(8 - headGroups.length - restGroups.length).fill('0'), ...restGroups];
  for (let i = 0; i < 8; i++) {
    const value = parseInt(groups[i] ?? '0', 16);
    out[at + 2 * i] = value >> 8;
    out[at + 2 * i + 1] = value & 0xff;
  }
  if (tail.length === 4) out.set(tail, at + 12);
}

/** VER REP RSV ATYP BND.ADDR BND.PORT. Unusable bound addresses become 0.0.0.0:0. */
export function encodeReply(reply: number, boundHost = '0.0.0.0', boundPort = 0): Uint8Array {
  const host = isIP(normaliseIp(boundHost)) === 0 ? '0.0.0.0' : boundHost;
  const address = encodeAddress(host, boundPort);
  const out = new Uint8Array(3 + address.byteLength);
  out[0] = SOCKS_VERSION;
  out[1] = reply;
  out.set(address, 3);
  return out;
}

/** RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA: the UDP request/reply header of RFC 1928 section 7. */
export function encodeUdpDatagram(host: string, port: number, data: Uint8Array): Uint8Array {
  const address = encodeAddress(host, port);
  const out = new Uint8Array(3 + address.byteLength + data.byteLength);
  out.set(address, 3);
  out.set(data, 3 + address.byteLength);
  return out;
}

export type UdpDatagramRead = { address: SocksAddress; data: Uint8Array } | 'fragmented' | 'malformed';

export function readUdpDatagram(buf: Uint8Array): UdpDatagramRead {
  if (buf.byteLength < 4) return 'malformed';
  if (buf[2] !== 0) return 'fragmented';
  const read = readAddress(buf, 3);
  if (typeof read === 'string') return 'malformed';
  return { address: read.address, data: buf.subarray(read.next) };
}
