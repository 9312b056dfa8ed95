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

/**
 * Strings of recently decoded short byte runs, by a hash of their bytes. A
 * proxy sees the same header names and most of the same values (`Host`,
 * `Content-Type`, `Server`, this second's `Date`) on every message: reusing
 * the string saves an allocation and a native call per field. Direct-mapped,
 * so a miss costs one compare and a slot is simply overwritten.
 */
const INTERN_SLOTS = 1024;
/** Longer runs are decoded without the cache. */
const INTERN_MAX = 64;
const interned: Array<string | undefined> = new Array<string | undefined>(INTERN_SLOTS).fill(undefined);

/** Starting value of the byte hash `latin1Hashed` takes (fold bytes in with `hashByte`). */
export const HASH_SEED = 0x811c9dc5;
/** FNV-1a step. */
export function hashByte(hash: number, byte: number): number {
  return Math.imul(hash ^ byte, 0x01000193);
}

/**
 * `latin1(b, start, end)`, reusing the string last decoded from the same
 * bytes. `hash` is `hashByte` folded over the bytes from `HASH_SEED` (the
 * parser computes it in the loop that validates them).
 */
export function latin1Hashed(b: Buffer, start: number, end: number, hash: number): string {
  const length = end - start;
  if (length === 0) return '';
  if (length > INTERN_MAX) return (b as Latin1Buffer).latin1Slice(start, end);
  const slot = (hash ^ (hash >>> 13) ^ length) & (INTERN_SLOTS - 1);
  const cached = interned[slot];
  if (cached !== undefined && cached.length === length) {
    let i = 0;
    while (i < length && cached.charCodeAt(i) === b[start + i]) i++;
    if (i === length) return cached;
  }
  const text = (b as Latin1Buffer).latin1Slice(start, end);
  interned[slot] = text;
  return text;
}

const lowered = new Map<string, string>();
/**
 * `name.toLowerCase()` for field names, remembered (header names repeat;
 * the mixed-case spelling would otherwise allocate a new string per use).
 */
export function lowerName(name: string): string {
  let lower = lowered.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (name.length <= INTERN_MAX) {
      if (lowered.size >= 4096) lowered.clear();
      lowered.set(name, lower);
    }
  }
  return lower;
}
