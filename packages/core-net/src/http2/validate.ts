import type { Http2Headers } from './hpack/decoder.js';
import { isToken } from '../http1/chars.js';
import { isValidHost } from '../http1/head.js';

/** The request as a server sees it (RFC 9113 §8.3.1). `headers` holds the regular fields only. */
export interface Http2RequestHead {
  method: string;
  /** Absent on CONNECT. */
  scheme: string;
  /** `:authority`, or the Host header when the client sent only that; '' when neither. */
  authority: string;
  /** Absent ('') on CONNECT. */
  path: string;
  headers: Http2Headers;
}

export interface Http2ResponseHead {
  status: number;
  headers: Http2Headers;
}

/** RFC 9113 §8.2.2: fields that only mean something on one HTTP/1.1 connection. */
const CONNECTION_SPECIFIC = new Set(['connection', 'proxy-connection', 'keep-alive', 'transfer-encoding', 'upgrade']);

// tchar (RFC 9110 §5.6.2) without upper case letters: HTTP/2 field names are lower case.
const NAME_CHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_CHAR[c.charCodeAt(0)] = 1;

/** Names seen valid before (bounded: attacker-chosen names must not grow it without end). */
const validNames = new Set<string>();
const VALID_NAMES_CAP = 2048;

function validName(name: string): boolean {
  if (validNames.has(name)) return true;
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || NAME_CHAR[c] !== 1) return false;
  }
  if (validNames.size < VALID_NAMES_CAP) validNames.add(name);
  return true;
}

/** RFC 9113 §8.2.1: no NUL, CR or LF anywhere, no leading or trailing space or tab. */
export function validValue(value: string): boolean {
  const n = value.length;
  if (n === 0) return true;
  let c = value.charCodeAt(0);
  if (c === 0x20 || c === 0x09) return false;
  c = value.charCodeAt(n - 1);
  if (c === 0x20 || c === 0x09) return false;
  for (let i = 0; i < n; i++) {
    c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return false;
  }
  return true;
}

/** What a header section's regular fields said that the connection must enforce. */
export interface FieldFacts {
  /** Declared content-length, or -1. */
  contentLength: number;
}

/**
 * Check the regular fields of a section (from index `start`) and collect
 * them into `out`. Returns an error message, or undefined when valid.
 */
function regularFields(fields: Http2Headers, start: number, out: Http2Headers, facts: FieldFacts, request: boolean): string | undefined {
  for (let i = start; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) return `pseudo-header ${name} after a regular field`;
    if (!validName(name)) return `invalid field name ${JSON.stringify(name.slice(0, 64))}`;
    if (!validValue(value)) return `invalid value for ${name}`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
    if (name === 'te') {
      if (request && value !== 'trailers') return 'TE other than "trailers"';
    } else if (name === 'content-length') {
      const length = parseLength(value);
      if (length < 0) return 'invalid content-length';
      if (facts.contentLength >= 0 && facts.contentLength !== length) return 'conflicting content-length values';
      facts.contentLength = length;
    }
    out.push(name, value);
  }
  return undefined;
}

function parseLength(value: string): number {
  if (value.length === 0 || value.length > 15) return -1;
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * Validate a request header section (RFC 9113 §8.2, §8.3.1). Returns the head
 * or an error message (the request is malformed: a stream error).
 */
export function validateRequest(fields: Http2Headers, facts: FieldFacts): Http2RequestHead | string {
  let method = '';
  let scheme = '';
  let authority = '';
  let path = '';
  let seen = 0;
  let i = 0;
  for (; i < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.charCodeAt(0) !== 0x3a) break;
    const value = fields[i + 1]!;
    let bit: number;
    switch (name) {
      case ':method':
        bit = 1;
        method = value;
        break;
      case ':scheme':
        bit = 2;
        scheme = value;
        break;
      case ':authority':
        bit = 4;
        authority = value;
        break;
      case ':path':
        bit = 8;
        path = value;
        break;
      default:
        return `unknown pseudo-header ${name.slice(0, 64)}`;
    }
    if (seen & bit) return `duplicate ${name}`;
    seen |= bit;
    if (!validValue(value)) return `invalid value for ${name}`;
  }
  const headers: Http2Headers = [];
  const error = regularFields(fields, i, headers, facts, true);
  if (error) return error;
  if (!(seen & 1) || method === '') return 'missing :method';
  // What the HTTP/1 parser enforces too: these become the upstream request line and Host (`GET /a /b` would be two targets).
  if (!isToken(method)) return 'invalid :method';
  if (method === 'CONNECT') {
    if (seen & (2 | 8)) return 'CONNECT with :scheme or :path';
    if (authority === '') return 'CONNECT without :authority';
  } else {
    if (!(seen & 2) || scheme === '') return 'missing :scheme';
    if (!(seen & 8) || path === '') return 'missing :path';
    if (path.charCodeAt(0) !== 0x2f && !(path === '*' && method === 'OPTIONS')) return 'invalid :path';
    if (!visibleAscii(path)) return 'invalid :path';
  }
  if (authority === '') {
    for (let j = 0; j < headers.length; j += 2) {
      if (headers[j] === 'host') {
        authority = headers[j + 1]!;
        break;
      }
    }
  }
  if (!isValidHost(authority)) return 'invalid :authority';
  return { method, scheme, authority, path, headers };
}

/** A request target's characters (RFC 3986: visible ASCII; anything else is percent-encoded). */
function visibleAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

/** Validate a response header section: `:status` (three digits) then regular fields. */
export function validateResponse(fields: Http2Headers, facts: FieldFacts): Http2ResponseHead | string {
  let status = -1;
  let i = 0;
  for (; i < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.charCodeAt(0) !== 0x3a) break;
    if (name !== ':status') return `unknown pseudo-header ${name.slice(0, 64)} in a response`;
    if (status >= 0) return 'duplicate :status';
    const value = fields[i + 1]!;
    status = value.length === 3 ? parseLength(value) : -1;
    if (status < 100) return 'invalid :status';
  }
  if (status < 0) return 'missing :status';
  const headers: Http2Headers = [];
  const error = regularFields(fields, i, headers, facts, false);
  if (error) return error;
  return { status, headers };
}

/** Validate trailers: regular fields only. */
export function validateTrailers(fields: Http2Headers): Http2Headers | string {
  const out: Http2Headers = [];
  const error = regularFields(fields, 0, out, { contentLength: -1 }, false);
  return error ?? out;
}
