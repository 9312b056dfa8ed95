/**
 * The server name a TLS client asks for, read from its ClientHello without
 * terminating TLS (SNI passthrough, as HAProxy's `req.ssl_sni`). The bytes
 * come from anyone on the network: every length is checked against what is
 * left, the hello may be split across records and reads, and the whole
 * handshake message is capped.
 */

/** A ClientHello larger than this is refused (real ones are 0.2–2 KiB; post-quantum key shares stay under 4 KiB). */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;

export type SniResult =
  /** More bytes are needed. */
  | { kind: 'partial' }
  /** A ClientHello with a host name (lower case, without a trailing dot). */
  | { kind: 'sni'; name: string }
  /** A well-formed ClientHello without a server name. */
  | { kind: 'none' }
  /** Not TLS, not a ClientHello, or malformed. */
  | { kind: 'invalid'; reason: string };

const PARTIAL: SniResult = { kind: 'partial' };
const NONE: SniResult = { kind: 'none' };
const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXTENSION_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST = 0x00;
const HOST_NAME = /^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/;

function invalid(reason: string): SniResult {
  return { kind: 'invalid', reason };
}

/**
 * Read the SNI of the ClientHello at the start of `data` (everything the
 * client sent so far). Pure: call again with more bytes on `partial`.
 */
export function readClientHelloSni(data: Uint8Array): SniResult {
  // The handshake message may span several records: collect their fragments.
  const parts: Uint8Array[] = [];
  let offset = 0;
  let have = 0;
  let need = -1;
  while (need < 0 || have < need) {
    if (data.length - offset < 5) return PARTIAL;
    if (data[offset] !== RECORD_HANDSHAKE) return invalid(offset === 0 ? 'not a TLS handshake record' : 'the ClientHello is interleaved with another record type');
    if (data[offset + 1] !== 0x03) return invalid('unknown TLS record version');
    const length = (data[offset + 3]! << 8) | data[offset + 4]!;
    if (length === 0) return invalid('empty handshake record');
    if (length > 16_384) return invalid('record longer than TLS allows');
    if (data.length - offset - 5 < length) return PARTIAL;
    parts.push(data.subarray(offset + 5, offset + 5 + length));
    offset += 5 + length;
    have += length;
    if (need < 0 && have >= 4) {
      const head = parts.length === 1 ? parts[0]! : concat(parts, have);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('the first handshake message is not a ClientHello');
      need = 4 + ((head[1]! << 16) | (head[2]! << 8) | head[3]!);
      if (need > MAX_CLIENT_HELLO_BYTES) return invalid(`ClientHello of ${need} bytes is over the ${MAX_CLIENT_HELLO_BYTES}-byte limit`);
    }
  }
  const handshake = parts.length === 1 ? parts[0]! : concat(parts, have);
  return parseClientHello(handshake.subarray(4, need));
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The ClientHello body (after the 4-byte handshake header). */
function parseClientHello(body: Uint8Array): SniResult {
  let at = 2 + 32; // legacy_version, random
  if (body.length < at + 1) return invalid('ClientHello truncated');
  at += 1 + body[at]!; // legacy_session_id
  if (body.length < at + 2) return invalid('ClientHello truncated');
  const suites = (body[at]! << 8) | body[at + 1]!;
  at += 2 + suites;
  if (body.length < at + 1) return invalid('ClientHello truncated');
  at += 1 + body[at]!; // legacy_compression_methods
  if (at === body.length) return NONE; // no extensions at all
  if (body.length < at + 2) return invalid('ClientHello truncated');
  const extensionsEnd = at + 2 + ((body[at]! << 8) | body[at + 1]!);
  if (extensionsEnd !== body.length) return invalid('extension block length does not match the ClientHello');
  at += 2;
  while (at < extensionsEnd) {
    if (extensionsEnd - at < 4) return invalid('extension header truncated');
    const type = (body[at]! << 8) | body[at + 1]!;
    const length = (body[at + 2]! << 8) | body[at + 3]!;
    at += 4;
    if (extensionsEnd - at < length) return invalid('extension truncated');
    if (type === EXTENSION_SERVER_NAME) return serverName(body.subarray(at, at + length));
    at += length;
  }
  return NONE;
}

function serverName(ext: Uint8Array): SniResult {
  if (ext.length < 2) return invalid('server_name extension truncated');
  const listEnd = 2 + ((ext[0]! << 8) | ext[1]!);
  if (listEnd !== ext.length) return invalid('server_name list length does not match');
  let at = 2;
  while (at < listEnd) {
    if (listEnd - at < 3) return invalid('server_name entry truncated');
    const type = ext[at]!;
    const length = (ext[at + 1]! << 8) | ext[at + 2]!;
    at += 3;
    if (listEnd - at < length) return invalid('server_name entry truncated');
    if (type === NAME_TYPE_HOST) {
      if (length === 0 || length > 253) return invalid('server name of bad length');
      let name = '';
      for (let i = at; i < at + length; i++) name += String.fromCharCode(ext[i]!);
      name = name.toLowerCase();
      if (name.endsWith('.')) name = name.slice(0, -1);
      // RFC 6066: a host name, ASCII, no IP literal; anything else never matches a mapping.
      if (!HOST_NAME.test(name)) return invalid('server name is not a host name');
      return { kind: 'sni', name };
    }
    at += length;
  }
  return NONE;
}
