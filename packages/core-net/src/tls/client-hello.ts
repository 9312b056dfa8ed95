/**
 * Reads the server name (SNI) and ALPN protocols of a TLS ClientHello before
 * the handshake starts, so a listener can answer ACME TLS-ALPN-01 validation
 * (RFC 8737) with a challenge certificate while every other client of the
 * same name gets the real one. Only the first record is read: a ClientHello
 * split over records (rare, never from ACME validators) reads as `other`.
 */

export interface ClientHello {
  /** Lower-cased SNI host name ('' when none). */
  servername: string;
  /** ALPN protocols offered, in order. */
  alpn: string[];
}

/** Most bytes worth waiting for: a record header and the largest record. */
export const CLIENT_HELLO_MAX_BYTES = 5 + 16384;

const decoder = new TextDecoder();

/**
 * `incomplete`: more bytes needed; `other`: not a ClientHello this parser
 * reads (hand it to TLS unchanged, which answers bad input itself).
 * Every length is checked against its enclosing one: no read past a bound.
 */
export function parseClientHello(data: Uint8Array): ClientHello | 'incomplete' | 'other' {
  if (data.byteLength < 5) return data.byteLength === 0 || data[0] === 0x16 ? 'incomplete' : 'other';
  if (data[0] !== 0x16 || data[1] !== 0x03) return 'other';
  const recordLength = (data[3]! << 8) | data[4]!;
  if (recordLength > 16384 || recordLength < 4) return 'other';
  if (data.byteLength < 5 + recordLength) return 'incomplete';
  const end = 5 + recordLength;
  let at = 5;
  if (data[at] !== 0x01) return 'other';
  const helloLength = (data[at + 1]! << 16) | (data[at + 2]! << 8) | data[at + 3]!;
  at += 4;
  if (at + helloLength > end) return 'other';
  const helloEnd = at + helloLength;
  at += 2 + 32; // version, random
  if (at + 1 > helloEnd) return 'other';
  at += 1 + data[at]!; // session id
  if (at + 2 > helloEnd) return 'other';
  at += 2 + ((data[at]! << 8) | data[at + 1]!); // cipher suites
  if (at + 1 > helloEnd) return 'other';
  at += 1 + data[at]!; // compression methods
  const hello: ClientHello = { servername: '', alpn: [] };
  if (at === helloEnd) return hello; // no extensions
  if (at + 2 > helloEnd) return 'other';
  const extensionsEnd = at + 2 + ((data[at]! << 8) | data[at + 1]!);
  if (extensionsEnd > helloEnd) return 'other';
  at += 2;
  while (at + 4 <= extensionsEnd) {
    const type = (data[at]! << 8) | data[at + 1]!;
    const length = (data[at + 2]! << 8) | data[at + 3]!;
    at += 4;
    if (at + length > extensionsEnd) return 'other';
    if (type === 0 && !readServerName(data, at, at + length, hello)) return 'other';
    if (type === 16 && !readAlpn(data, at, at + length, hello)) return 'other';
    at += length;
  }
  return at === extensionsEnd ? hello : 'other';
}

function readServerName(data: Uint8Array, at: number, end: number, hello: ClientHello): boolean {
  if (at + 2 > end || at + 2 + ((data[at]! << 8) | data[at + 1]!) !== end) return false;
  at += 2;
  while (at + 3 <= end) {
    const type = data[at]!;
    const length = (data[at + 1]! << 8) | data[at + 2]!;
    at += 3;
    if (at + length > end) return false;
    if (type === 0 && hello.servername === '') hello.servername = decoder.decode(data.subarray(at, at + length)).toLowerCase();
    at += length;
  }
  return at === end;
}

function readAlpn(data: Uint8Array, at: number, end: number, hello: ClientHello): boolean {
  if (at + 2 > end || at + 2 + ((data[at]! << 8) | data[at + 1]!) !== end) return false;
  at += 2;
  while (at < end) {
    const length = data[at]!;
    at += 1;
    if (length === 0 || at + length > end) return false;
    hello.alpn.push(decoder.decode(data.subarray(at, at + length)));
    at += length;
  }
  return true;
}
