/**
 * Byte classes for HTTP/1.1 parsing (RFC 9110 section 5.6.2, RFC 9112).
 * Lookup tables built once at load time: the hot path does one array read
 * per byte and never compiles a regular expression.
 */

/** tchar: `!#$%&'*+-.^_`|~`, digits and letters. */
export const TOKEN = new Uint8Array(256);
/** field-vchar / obs-text plus SP and HTAB: what a field value may hold. */
export const FIELD_VALUE = new Uint8Array(256);
/** Visible ASCII (0x21-0x7E): what a request-target may hold. */
export const TARGET = new Uint8Array(256);
/** Hex digit value + 1 (0 = not a hex digit). */
export const HEX = new Uint8Array(256);

for (let c = 0; c < 256; c++) {
  const isAlnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  TOKEN[c] = isAlnum || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)) ? 1 : 0;
  FIELD_VALUE[c] = c === 0x09 || (c >= 0x20 && c <= 0x7e) || c >= 0x80 ? 1 : 0;
  TARGET[c] = c >= 0x21 && c <= 0x7e ? 1 : 0;
  if (c >= 0x30 && c <= 0x39) HEX[c] = c - 0x30 + 1;
  else if (c >= 0x41 && c <= 0x46) HEX[c] = c - 0x41 + 11;
  else if (c >= 0x61 && c <= 0x66) HEX[c] = c - 0x61 + 11;
}

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;

/** A zero-copy Buffer view over any Uint8Array (for native latin1 decoding and indexOf). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** True when `text` is a non-empty token (method names, header names). */
export function isToken(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff || TOKEN[c] !== 1) return false;
  }
  return true;
}

/** True when `text` may be sent as a field value (no CR, LF, NUL or other controls). */
export function isFieldValue(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff || FIELD_VALUE[c] !== 1) return false;
  }
  return true;
}

/** Buffer's native latin1 decoder (present on Node and Bun, missing from @types/node). */
type Latin1Buffer = Buffer & { latin1Slice(start: number, end: number): string };

/** Decode bytes [start, end) one char per byte, so obs-text round-trips unchanged. */
export function latin1(b: Buffer, start: number, end: number): string {
  return (b as Latin1Buffer).latin1Slice(start, end);
}
