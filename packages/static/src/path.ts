/**
 * Request path → safe relative path. Percent-decoding happens exactly once, per
 * segment, so an encoded `/` (`%2f`) or `\` (`%5c`) can never create a new
 * segment; `.` and `..` are resolved, and climbing above the root is refused.
 * Anything malformed (bad escapes, invalid or overlong UTF-8, NUL, control
 * characters, backslashes) is a 400: the request is rejected, never "fixed".
 */

export type PathResult =
  | { ok: true; segments: string[]; trailingSlash: boolean }
  | { ok: false; reason: string };

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 65 && code <= 70) return code - 55;
  if (code >= 97 && code <= 102) return code - 87;
  return -1;
}

/** Decode one raw segment; undefined when malformed. Fast path when there is no `%`. */
function decodeSegment(raw: string): string | undefined {
  if (raw.indexOf('%') < 0) return raw;
  const bytes = new Uint8Array(raw.length);
  let length = 0;
  for (let i = 0; i < raw.length; i++) {
    const code = raw.charCodeAt(i);
    if (code === 37) {
      const high = hexValue(raw.charCodeAt(i + 1));
      const low = hexValue(raw.charCodeAt(i + 2));
      if (high < 0 || low < 0) return undefined;
      bytes[length++] = high * 16 + low;
      i += 2;
    } else if (code > 0x7e) {
      return undefined; // raw non-ASCII in a request target is not valid HTTP
    } else {
      bytes[length++] = code;
    }
  }
  try {
    return utf8.decode(bytes.subarray(0, length));
  } catch {
    return undefined;
  }
}

function hasForbiddenChar(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    // Control characters (NUL included), DEL, backslash, and `/` inside a segment.
    if (code < 0x20 || code === 0x7f || code === 0x5c || code === 0x2f) return true;
  }
  return false;
}

/**
 * Split, decode and normalise the path part of a request target (no query).
 * `/a/./b/../c/` → `['a', 'c']` with a trailing slash.
 */
export function normalisePath(rawPath: string): PathResult {
  if (rawPath.length === 0 || rawPath.charCodeAt(0) !== 47) return { ok: false, reason: 'path must start with /' };
  const parts = rawPath.split('/');
  const segments: string[] = [];
  let trailingSlash = false;
  for (let i = 1; i < parts.length; i++) {
    const raw = parts[i]!;
    if (raw.indexOf('\\') >= 0) return { ok: false, reason: 'backslash in path' };
    const segment = decodeSegment(raw);
    if (segment === undefined) return { ok: false, reason: 'malformed percent-encoding or UTF-8' };
    if (hasForbiddenChar(segment)) return { ok: false, reason: 'forbidden character in path' };
    const last = i === parts.length - 1;
    if (segment === '' || segment === '.') {
      if (last) trailingSlash = true;
      continue; // `//` and `/./` collapse
    }
    if (segment === '..') {
      if (segments.length === 0) return { ok: false, reason: 'path escapes the root' };
      segments.pop();
      if (last) trailingSlash = true;
      continue;
    }
    trailingSlash = false;
    segments.push(segment);
  }
  return { ok: true, segments, trailingSlash };
}

/** Percent-encode a path for a Location header or a link (segments are already decoded). */
export function encodePath(segments: readonly string[], trailingSlash: boolean): string {
  let out = '';
  for (const segment of segments) out += '/' + encodeURIComponent(segment);
  return trailingSlash || segments.length === 0 ? out + '/' : out;
}

/** True when a segment is hidden by the dot-file rule (`.well-known` at the top excepted). */
export function hasDotSegment(segments: readonly string[]): boolean {
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment.charCodeAt(0) === 46 && !(i === 0 && segment === '.well-known')) return true;
  }
  return false;
}

/** A glob-like matcher (see `Glob`), kept structural to avoid an import cycle. */
interface PathMatcher {
  matches(relative: string): boolean;
}

export interface ResolveOptions {
  /** `ignore` → 404 (default), `deny` → 403, `allow`. `.well-known` at the top is always allowed. */
  dotfiles?: 'ignore' | 'deny' | 'allow';
  /** Paths (or any of their parents) matching one of these → 404. */
  hide?: readonly PathMatcher[];
}

/** 403/404 for dot-files and hidden paths, 0 when the segments may be served. */
export function refusalFor(segments: readonly string[], options: ResolveOptions): 0 | 403 | 404 {
  const dotfiles = options.dotfiles ?? 'ignore';
  if (dotfiles !== 'allow' && hasDotSegment(segments)) return dotfiles === 'deny' ? 403 : 404;
  const hide = options.hide;
  if (hide && hide.length > 0) {
    let prefix = '';
    for (const segment of segments) {
      prefix = prefix === '' ? segment : prefix + '/' + segment;
      for (const glob of hide) if (glob.matches(prefix)) return 404;
    }
  }
  return 0;
}

export type ResolvedPath =
  | { ok: true; path: string; relative: string; segments: string[]; trailingSlash: boolean }
  | { ok: false; status: 400 | 403 | 404; reason: string };

/**
 * Request path (raw, without the query) → file-system path under `root`, or
 * the status refusing it: 400 for anything malformed or escaping the root,
 * 403/404 for dot-files and hidden paths. No I/O: symlinks are checked when
 * the file is opened (`StaticHandler` compares realpaths).
 */
export function resolveFile(root: string, rawPath: string, options: ResolveOptions = {}): ResolvedPath {
  const parsed = normalisePath(rawPath);
  if (!parsed.ok) return { ok: false, status: 400, reason: parsed.reason };
  const refused = refusalFor(parsed.segments, options);
  if (refused) return { ok: false, status: refused, reason: refused === 403 ? 'dot-file' : 'hidden path' };
  const relative = parsed.segments.join('/');
  const base = root.endsWith('/') && root.length > 1 ? root.slice(0, -1) : root;
  return {
    ok: true,
    path: relative === '' ? base : base + '/' + relative,
    relative,
    segments: parsed.segments,
    trailingSlash: parsed.trailingSlash,
  };
}
