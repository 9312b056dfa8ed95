import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { getHeader, getHeaders, type HeaderList, type RequestHead, type ResponseHead } from '@wmproxy/core-net';

/** RFC 6455 section 1.3. */
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY_PATTERN = /^[A-Za-z0-9+/]{22}==$/;

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** A fresh Sec-WebSocket-Key (16 random bytes, base64). */
export function newKey(): string {
  return randomBytes(16).toString('base64');
}

/** Comma-separated tokens of every field with this name, trimmed, empty ones dropped. */
export function headerTokens(headers: HeaderList, name: string): string[] {
  const out: string[] = [];
  for (const value of getHeaders(headers, name)) {
    for (const part of value.split(',')) {
      const token = part.trim();
      if (token !== '') out.push(token);
    }
  }
  return out;
}

export interface HandshakeRefusal {
  status: number;
  /** Said in the body and the log line. */
  why: string;
  headers?: HeaderList;
}

export interface UpgradeRequest {
  key: string;
  /** Sec-WebSocket-Protocol values offered, in the client's order of preference. */
  protocols: string[];
  origin: string | undefined;
}

/** Check the request is a version-13 WebSocket upgrade (RFC 6455 section 4.2.1). */
export function checkUpgrade(head: RequestHead): UpgradeRequest | HandshakeRefusal {
  if (head.method !== 'GET') return { status: 405, why: 'a WebSocket upgrade is a GET', headers: [['Allow', 'GET']] };
  if (head.version !== '1.1') return { status: 400, why: 'a WebSocket upgrade needs HTTP/1.1' };
  const upgrade = head.upgrade?.split(',').some((token) => token.trim().toLowerCase() === 'websocket');
  if (!upgrade) return { status: 426, why: 'this endpoint speaks WebSocket only', headers: [['Upgrade', 'websocket'], ['Connection', 'Upgrade']] };
  const version = getHeader(head.headers, 'sec-websocket-version');
  if (version?.trim() !== '13') return { status: 426, why: 'Sec-WebSocket-Version must be 13', headers: [['Sec-WebSocket-Version', '13']] };
  const keys = getHeaders(head.headers, 'sec-websocket-key');
  const key = keys.length === 1 ? keys[0]!.trim() : '';
  if (!KEY_PATTERN.test(key)) return { status: 400, why: 'Sec-WebSocket-Key must be 16 bytes in base64' };
  return { key, protocols: headerTokens(head.headers, 'sec-websocket-protocol'), origin: getHeader(head.headers, 'origin') };
}

export function isRefusal(value: UpgradeRequest | HandshakeRefusal): value is HandshakeRefusal {
  return 'status' in value;
}

/** The 101 answer. */
export function switchingProtocols(key: string, protocol: string | undefined): Uint8Array {
  let head = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n`;
  if (protocol !== undefined) head += `Sec-WebSocket-Protocol: ${protocol}\r\n`;
  return Buffer.from(head + '\r\n', 'latin1');
}

/** Credentials a ws2tcp listener asks for. */
export interface AuthOptions {
  /** HTTP Basic: `user:pass` pairs (RFC 7617). */
  basic?: Array<{ user: string; pass: string }>;
  /** Bearer tokens (RFC 6750) accepted in Authorization. */
  bearer?: string[];
}

/** True when the Authorization field carries one of the configured credentials. Constant-time comparisons. */
export function authorized(headers: HeaderList, auth: AuthOptions): boolean {
  const value = getHeader(headers, 'authorization');
  if (value === undefined) return false;
  const space = value.indexOf(' ');
  if (space < 0) return false;
  const scheme = value.slice(0, space).toLowerCase();
  const credentials = value.slice(space + 1).trim();
  if (scheme === 'basic' && auth.basic) {
    const decoded = Buffer.from(credentials, 'base64').toString('utf8');
    let match = false;
    for (const { user, pass } of auth.basic) match = sameSecret(decoded, `${user}:${pass}`) || match;
    return match;
  }
  if (scheme === 'bearer' && auth.bearer) {
    let match = false;
    for (const token of auth.bearer) match = sameSecret(credentials, token) || match;
    return match;
  }
  return false;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  // Compare against itself on a length mismatch so the time does not tell the length apart from the content.
  return timingSafeEqual(a, a.length === b.length ? b : a) && a.length === b.length;
}

/** The challenge of a 401, naming the schemes configured. */
export function challenge(auth: AuthOptions): HeaderList {
  const out: HeaderList = [];
  if (auth.basic) out.push(['WWW-Authenticate', 'Basic realm="wmproxy", charset="UTF-8"']);
  if (auth.bearer) out.push(['WWW-Authenticate', 'Bearer realm="wmproxy"']);
  return out;
}

/** Check a server's answer to our upgrade (RFC 6455 section 4.1, client side). A string is the complaint. */
export function checkUpgradeResponse(head: ResponseHead, key: string, offered: string[]): { protocol: string | undefined } | string {
  if (head.status !== 101) return `the server answered ${head.status} ${head.reason}`.trim();
  if (!head.upgrade || head.upgrade.trim().toLowerCase() !== 'websocket') return 'the 101 answer does not upgrade to websocket';
  if (getHeader(head.headers, 'sec-websocket-accept')?.trim() !== acceptKey(key)) return 'Sec-WebSocket-Accept does not match the key';
  if (getHeader(head.headers, 'sec-websocket-extensions') !== undefined) return 'the server chose an extension that was not offered';
  const protocols = headerTokens(head.headers, 'sec-websocket-protocol');
  if (protocols.length > 1) return 'the server chose several subprotocols';
  const protocol = protocols[0];
  if (protocol !== undefined && !offered.includes(protocol)) return `the server chose subprotocol ${protocol}, which was not offered`;
  return { protocol };
}
