import { getHeader, type HeaderSource } from './types.js';

/**
 * Validators and preconditions (RFC 9110 sections 8.8 and 13). Pure functions.
 */

/** IMF-fixdate for a time in seconds. */
export function httpDate(seconds: number): string {
  return new Date(seconds * 1000).toUTCString();
}

/** Seconds since the epoch, or undefined when the header is not a valid HTTP date. */
export function parseHttpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

/**
 * Strong ETag from inode, size and modification time (ms), all in hex:
 * `"<ino>-<size>-<mtime>"`, plus `-<coding>` for a compressed representation.
 * Any change of content that changes size or mtime, or a replacement by
 * rename (new inode), changes the tag.
 */
export function makeEtag(ino: number, size: number, mtimeMs: number, coding?: string): string {
  const base = `${ino.toString(16)}-${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}`;
  return coding ? `"${base}-${coding}"` : `"${base}"`;
}

interface EntityTag {
  weak: boolean;
  /** Including the quotes. */
  opaque: string;
}

/** Parse `If-Match` / `If-None-Match`: `*` gives 'any'; malformed members are skipped. */
export function parseEtagList(value: string): EntityTag[] | 'any' {
  const trimmed = value.trim();
  if (trimmed === '*') return 'any';
  const tags: EntityTag[] = [];
  let i = 0;
  while (i < trimmed.length) {
    const char = trimmed[i]!;
    if (char === ',' || char === ' ' || char === '\t') {
      i++;
      continue;
    }
    let weak = false;
    if (char === 'W' && trimmed[i + 1] === '/') {
      weak = true;
      i += 2;
    }
    if (trimmed[i] !== '"') {
      // Skip a malformed member up to the next comma.
      const comma = trimmed.indexOf(',', i);
      i = comma < 0 ? trimmed.length : comma + 1;
      continue;
    }
    const close = trimmed.indexOf('"', i + 1);
    if (close < 0) break;
    tags.push({ weak, opaque: trimmed.slice(i, close + 1) });
    i = close + 1;
  }
  return tags;
}

/** Strong comparison: both strong and identical. `etag` is our (strong) tag. */
export function strongMatch(list: EntityTag[] | 'any', etag: string): boolean {
  if (list === 'any') return true;
  for (const tag of list) if (!tag.weak && tag.opaque === etag) return true;
  return false;
}

/** Weak comparison: opaque tags identical, weakness ignored. */
export function weakMatch(list: EntityTag[] | 'any', etag: string): boolean {
  if (list === 'any') return true;
  for (const tag of list) if (tag.opaque === etag) return true;
  return false;
}

export type PreconditionResult = 'proceed' | 'not-modified' | 'failed';

/**
 * RFC 9110 section 13.2.2, steps 1-4, for a representation that exists:
 * If-Match (strong) else If-Unmodified-Since → 412; then If-None-Match (weak)
 * else If-Modified-Since (GET/HEAD only) → 304 for GET/HEAD.
 */
export function evaluatePreconditions(
  request: HeaderSource,
  etag: string,
  mtimeSeconds: number,
): PreconditionResult {
  const ifMatch = getHeader(request, 'if-match');
  if (ifMatch !== undefined) {
    if (!strongMatch(parseEtagList(ifMatch), etag)) return 'failed';
  } else {
    const since = parseHttpDate(getHeader(request, 'if-unmodified-since'));
    if (since !== undefined && mtimeSeconds > since) return 'failed';
  }
  const ifNoneMatch = getHeader(request, 'if-none-match');
  if (ifNoneMatch !== undefined) {
    if (weakMatch(parseEtagList(ifNoneMatch), etag)) return 'not-modified';
  } else {
    const since = parseHttpDate(getHeader(request, 'if-modified-since'));
    if (since !== undefined && mtimeSeconds <= since) return 'not-modified';
  }
  return 'proceed';
}

/**
 * If-Range (RFC 9110 section 13.1.5): an entity tag must match strongly; a date
 * must equal Last-Modified exactly. Anything else means "send the whole thing".
 */
export function ifRangeAllows(value: string | undefined, etag: string, mtimeSeconds: number): boolean {
  if (value === undefined) return true;
  const trimmed = value.trim();
  if (trimmed.startsWith('"') || trimmed.startsWith('W/')) {
    return trimmed === etag; // a weak tag never matches (strong comparison)
  }
  const date = parseHttpDate(trimmed);
  return date !== undefined && date === mtimeSeconds;
}
