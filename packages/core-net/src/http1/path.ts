import { HEX } from './chars.js';

/**
 * Request-path normalisation, done once before a path is matched against
 * locations and then forwarded as matched (nginx's `$uri`, minus the decoding
 * of reserved characters). Without it, `/%61dmin`, `//admin`, `/x/../admin`
 * and `/x/%2e%2e/admin` all miss a location on `/admin` and reach a backend
 * that reads them as `/admin`.
 *
 * - percent-encoded unreserved characters (ALPHA, DIGIT, `-._~`) are decoded
 *   (RFC 3986 section 6.2.2.2); other escapes are kept, with upper-case hex;
 * - `.` and `..` segments are removed (RFC 3986 section 5.2.4);
 * - runs of `/` become one (nginx's `merge_slashes on`).
 *
 * `%2F` stays encoded: it is data inside one segment, not a separator, and a
 * backend that decodes it before splitting is the one that would disagree.
 * Returned `undefined` (answer 400): a malformed escape, an encoded NUL,
 * `..` climbing above the root (nginx refuses these too), or a raw `\`: not
 * valid in a path (RFC 3986), and the WHATWG URL parser that many backends
 * use reads it as `/`, so `/public/..\admin` would land on `/admin` there.
 */
export function normalizePath(path: string): string | undefined {
  if (!needsNormalizing(path)) return path;
  if (path.indexOf('\\') >= 0) return undefined;
  const decoded = decodeUnreserved(path);
  if (decoded === undefined) return undefined;
  return removeDotSegments(decoded);
}

/** One scan: most paths have no `%`, no `//` and no dot segment, and are returned as they are. */
function needsNormalizing(path: string): boolean {
  let previous = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 /* % */ || c === 0x5c /* \ */) return true;
    if (previous === 0x2f /* / */ && (c === 0x2f || c === 0x2e /* . */)) return true;
    previous = c;
  }
  return false;
}

function isUnreserved(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

const UPPER_HEX = '0123456789ABCDEF';

function decodeUnreserved(path: string): string | undefined {
  if (path.indexOf('%') < 0) return path;
  let out = '';
  let from = 0;
  for (let i = 0; i < path.length; i++) {
    if (path.charCodeAt(i) !== 0x25) continue;
    const high = i + 1 < path.length ? HEX[path.charCodeAt(i + 1)] ?? 0 : 0;
    const low = i + 2 < path.length ? HEX[path.charCodeAt(i + 2)] ?? 0 : 0;
    if (high === 0 || low === 0) return undefined;
    const byte = (high - 1) * 16 + (low - 1);
    if (byte === 0) return undefined;
    out += path.slice(from, i);
    out += isUnreserved(byte) ? String.fromCharCode(byte) : `%${UPPER_HEX[byte >> 4]}${UPPER_HEX[byte & 15]}`;
    i += 2;
    from = i + 1;
  }
  return out + path.slice(from);
}

/** Dot segments out and empty segments merged; a trailing slash is kept (also after a final `.` or `..`). */
function removeDotSegments(path: string): string | undefined {
  const segments = path.split('/');
  const out: string[] = [];
  const last = segments.length - 1;
  let trailingSlash = false;
  // segments[0] is the empty string before the leading slash.
  for (let i = 1; i <= last; i++) {
    const segment = segments[i]!;
    if (segment === '' || segment === '.') {
      if (i === last) trailingSlash = true;
      continue;
    }
    if (segment === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      if (i === last) trailingSlash = true;
      continue;
    }
    out.push(segment);
  }
  if (out.length === 0) return '/';
  return `/${out.join('/')}${trailingSlash ? '/' : ''}`;
}
