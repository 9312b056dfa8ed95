import { asBuffer, hashByte, latin1Hashed, lowerName, COLON, CR, FIELD_VALUE, HASH_SEED, HTAB, LF, SP, TARGET, TOKEN } from './chars.js';

/**
 * Strict HTTP/1.1 message-head parsing (RFC 9112) over raw bytes.
 *
 * Line endings: only CRLF is accepted. A lone LF line ending (which nginx and
 * llhttp's lenient mode accept) is rejected with 400, as is a bare CR anywhere
 * in the head: a proxy that reads line ends differently from the server behind
 * it is the classic request-smuggling set-up.
 */

/** Header fields in arrival order, original case, duplicates kept (`Set-Cookie`). */
export type HeaderList = Array<[name: string, value: string]>;

export interface HeadLimits {
  /** Largest head (start line + fields + final CRLF) in bytes; over it: 431. Default 64 KiB. */
  maxHeadSize?: number;
  /** Most header fields; over it: 431. Default 128. */
  maxHeaders?: number;
  /** Longest request-target in bytes; over it: 414. Default 16 KiB. Requests only. */
  maxTargetLength?: number;
  /**
   * Answer 400 to an HTTP/1.1 request without a Host field (RFC 9112 section 3.2).
   * Default true. Two or more Host fields are always a 400.
   */
  requireHost?: boolean;
}

export const DEFAULT_MAX_HEAD_SIZE = 64 * 1024;
export const DEFAULT_MAX_HEADERS = 128;
export const DEFAULT_MAX_TARGET_LENGTH = 16 * 1024;

/**
 * How the body that follows a head is delimited:
 * - `none`: no body (requests without length or chunked; 1xx/204/304 and HEAD responses);
 * - `length`: exactly `contentLength` bytes;
 * - `chunked`: chunked coding (decode with `ChunkedDecoder`);
 * - `close`: a response body read until the server closes the connection.
 */
export type BodyFraming = 'none' | 'length' | 'chunked' | 'close';

interface MessageHeadBase {
  /** `1.0` or `1.1` (any HTTP/1.x with x >= 1 is treated as 1.1, RFC 9110 section 6.2). */
  version: '1.0' | '1.1';
  headers: HeaderList;
  /** The validated Content-Length (undefined when absent or when the message is chunked). */
  contentLength: number | undefined;
  /** Transfer-Encoding is exactly `chunked`. */
  chunked: boolean;
  framing: BodyFraming;
  /** Whether the connection may carry another message after this one. */
  keepAlive: boolean;
  /** Tokens of the Connection field(s), lower case (`close`, `upgrade`, `keep-alive`, names of hop-by-hop fields). */
  connection: string[];
  /** The Upgrade field's value when Connection lists `upgrade`, else undefined. */
  upgrade: string | undefined;
}

export interface RequestHead extends MessageHeadBase {
  /** The method exactly as sent (case-sensitive token). */
  method: string;
  /** The raw request-target: origin-form `/p?q`, absolute-form `http://h/p`, authority-form `h:443`, or `*`. */
  target: string;
  /** `Expect: 100-continue` was sent. */
  expectContinue: boolean;
  /** The Host field's value, if present. */
  host: string | undefined;
}

export interface ResponseHead extends MessageHeadBase {
  status: number;
  /** The reason phrase (may be empty). */
  reason: string;
}

/** Status codes the request parser answers with. */
export type RequestErrorStatus = 400 | 414 | 431 | 501 | 505;

export type ParseResult<H, S extends number> =
  | { kind: 'incomplete' }
  | { kind: 'error'; status: S; reason: string }
  | { kind: 'ok'; head: H; consumed: number };

export type RequestParseResult = ParseResult<RequestHead, RequestErrorStatus>;
/** Response errors carry 502: what a proxy answers its client for a broken upstream. */
export type ResponseParseResult = ParseResult<ResponseHead, 502>;

export interface ResponseParseOptions extends HeadLimits {
  /**
   * The method of the request this response answers. `HEAD` makes the
   * response bodyless; a 2xx to `CONNECT` starts a tunnel (framing `none`).
   */
  requestMethod?: string;
}

const INCOMPLETE = Object.freeze({ kind: 'incomplete' as const });

class HeadError {
  constructor(readonly status: number, readonly reason: string) {}
}

function fail(status: number, reason: string): never {
  throw new HeadError(status, reason);
}

/** What the header fields say about framing, collected in one pass. */
interface Derived {
  contentLength: number | undefined;
  chunked: boolean;
  transferEncoding: boolean;
  /** Every transfer coding listed, lower case, in order. */
  codings: string[];
  connection: string[];
  upgradeValue: string | undefined;
  expectContinue: boolean;
  host: string | undefined;
  hostCount: number;
}

const HTTP_PREFIX = [0x48, 0x54, 0x54, 0x50, 0x2f]; // "HTTP/"

/**
 * Parse an HTTP/1.x request head from the start of `buf`.
 *
 * Returns `incomplete` while the head has not fully arrived (call again with
 * more bytes), `error` with the status to answer (400 malformed, 414 target
 * too long, 431 head too large or too many fields, 501 unsupported transfer
 * coding, 505 unsupported HTTP version), or `ok` with the head and the number
 * of bytes it took (the body, if any, starts at `consumed`).
 *
 * Garbage is detected as early as possible: a partial request line that can
 * no longer become valid is rejected without waiting for more bytes.
 *
 * Rejected with 400 (request-smuggling defences): Content-Length together
 * with Transfer-Encoding; differing Content-Length values; a
 * Transfer-Encoding whose final coding is not `chunked` (other codings before
 * `chunked` get 501); Transfer-Encoding on HTTP/1.0; invalid field names;
 * whitespace before the colon; obsolete line folding; bare CR, lone LF or NUL;
 * a malformed request line or version; a missing (1.1) or repeated Host.
 */
export function parseRequestHead(buf: Uint8Array, limits: HeadLimits = {}): RequestParseResult {
  try {
    return parseRequest(asBuffer(buf), limits);
  } catch (error) {
    if (error instanceof HeadError) return { kind: 'error', status: error.status as RequestErrorStatus, reason: error.reason };
    throw error;
  }
}

/**
 * Parse an HTTP/1.x response head (status line and fields) from the start of
 * `buf`. Same strictness as `parseRequestHead`; every error has status 502.
 * Interim 1xx responses parse as their own head (framing `none`): read the
 * next head after them.
 */
export function parseResponseHead(buf: Uint8Array, options: ResponseParseOptions = {}): ResponseParseResult {
  try {
    return parseResponse(asBuffer(buf), options);
  } catch (error) {
    if (error instanceof HeadError) return { kind: 'error', status: 502, reason: error.reason };
    throw error;
  }
}

function parseRequest(b: Buffer, limits: HeadLimits): RequestParseResult {
  const len = b.length;
  const maxHead = limits.maxHeadSize ?? DEFAULT_MAX_HEAD_SIZE;
  const maxTarget = limits.maxTargetLength ?? DEFAULT_MAX_TARGET_LENGTH;
  let pos = 0;
  // RFC 9112 section 2.2: ignore empty lines before the request line.
  while (pos + 1 < len && b[pos] === CR && b[pos + 1] === LF) pos += 2;
  if (pos < len && b[pos] === LF) fail(400, 'lone LF line ending');
  const lf = lineFeed(b, pos);
  if (lf < 0) {
    checkPartialRequestLine(b, pos, len, maxTarget);
    if (len > maxHead) fail(431, 'request head too large');
    return INCOMPLETE;
  }
  if (lf === pos || b[lf - 1] !== CR) fail(400, 'lone LF line ending');
  // Request line: method SP request-target SP HTTP-version
  const lineEnd = lf - 1;
  let i = scanHashed(b, pos, lineEnd, TOKEN);
  if (i === pos) fail(400, 'invalid method');
  if (i === lineEnd || b[i] !== SP) fail(400, 'invalid character in method');
  const method = latin1Hashed(b, pos, i, scannedHash);
  const targetStart = ++i;
  i = scanHashed(b, targetStart, lineEnd, TARGET);
  if (i === targetStart) fail(400, 'invalid request-target');
  if (i - targetStart > maxTarget) fail(414, 'request-target too long');
  if (i === lineEnd || b[i] !== SP) fail(400, 'invalid character in request-target');
  const target = latin1Hashed(b, targetStart, i, scannedHash);
  const version = parseVersion(b, i + 1, lineEnd, 400);
  if (version === undefined) fail(400, 'invalid HTTP version');
  if (version === 'unsupported') fail(505, 'HTTP version not supported');

  const headers: HeaderList = [];
  const derived = resetDerived(shared);
  const consumed = parseFields(b, lf + 1, maxHead, limits.maxHeaders ?? DEFAULT_MAX_HEADERS, headers, derived, 400);
  if (consumed < 0) {
    if (len > maxHead) fail(431, 'request head too large');
    return INCOMPLETE;
  }
  if (derived.hostCount > 1) fail(400, 'more than one Host field');
  if (derived.hostCount === 0 && version === '1.1' && limits.requireHost !== false) fail(400, 'missing Host field');
  // The Host is copied into routing decisions, X-Forwarded-Host and Forwarded: only the RFC 9110 syntax passes.
  if (derived.host !== undefined && !isValidHost(derived.host)) fail(400, 'invalid Host field');
  const framingOk = checkFraming(derived, version, 400);
  const keepAlive = isKeepAlive(version, derived.connection);
  const head: RequestHead = {
    method,
    target,
    version,
    headers,
    contentLength: derived.contentLength,
    chunked: derived.chunked,
    framing: framingOk === 'chunked' ? 'chunked' : derived.contentLength !== undefined ? 'length' : 'none',
    keepAlive,
    connection: derived.connection,
    upgrade: derived.upgradeValue !== undefined && derived.connection.includes('upgrade') ? derived.upgradeValue : undefined,
    expectContinue: derived.expectContinue,
    host: derived.host,
  };
  return { kind: 'ok', head, consumed };
}

function parseResponse(b: Buffer, options: ResponseParseOptions): ResponseParseResult {
  const len = b.length;
  const maxHead = options.maxHeadSize ?? DEFAULT_MAX_HEAD_SIZE;
  const lf = lineFeed(b, 0);
  if (lf < 0) {
    for (let i = 0; i < len && i < HTTP_PREFIX.length; i++) if (b[i] !== HTTP_PREFIX[i]) fail(502, 'invalid status line');
    if (len > maxHead) fail(502, 'response head too large');
    return INCOMPLETE;
  }
  if (lf === 0 || b[lf - 1] !== CR) fail(502, 'lone LF line ending');
  const lineEnd = lf - 1;
  // Status line: HTTP-version SP 3DIGIT SP [reason-phrase]
  const version = parseVersion(b, 0, Math.min(8, lineEnd), 502);
  if (version === undefined || version === 'unsupported') fail(502, 'invalid HTTP version in status line');
  if (lineEnd < 12 || b[8] !== SP) fail(502, 'invalid status line');
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const d = b[i]! - 0x30;
    if (d < 0 || d > 9) fail(502, 'invalid status code');
    status = status * 10 + d;
  }
  if (status < 100) fail(502, 'invalid status code');
  let reason = '';
  if (lineEnd > 12) {
    if (b[12] !== SP) fail(502, 'invalid status line');
    if (scanHashed(b, 13, lineEnd, FIELD_VALUE) !== lineEnd) fail(502, 'invalid character in reason phrase');
    reason = latin1Hashed(b, 13, lineEnd, scannedHash);
  }
  const headers: HeaderList = [];
  const derived = resetDerived(shared);
  const consumed = parseFields(b, lf + 1, maxHead, options.maxHeaders ?? DEFAULT_MAX_HEADERS, headers, derived, 502);
  if (consumed < 0) {
    if (len > maxHead) fail(502, 'response head too large');
    return INCOMPLETE;
  }
  const method = options.requestMethod;
  const bodyless =
    (status >= 100 && status < 200) || status === 204 || status === 304 || method === 'HEAD' || (method === 'CONNECT' && status >= 200 && status < 300);
  let framing: BodyFraming;
  if (bodyless) {
    // Framing fields of a bodyless response describe what a GET would have returned: not validated for use.
    framing = 'none';
    if (derived.transferEncoding && derived.contentLength !== undefined) fail(502, 'both Content-Length and Transfer-Encoding');
  } else {
    framing = checkFraming(derived, version, 502) === 'chunked' ? 'chunked' : derived.contentLength !== undefined ? 'length' : 'close';
  }
  const head: ResponseHead = {
    status,
    reason,
    version,
    headers,
    contentLength: derived.chunked ? undefined : derived.contentLength,
    chunked: derived.chunked,
    framing,
    keepAlive: framing !== 'close' && isKeepAlive(version, derived.connection),
    connection: derived.connection,
    upgrade: derived.upgradeValue !== undefined && derived.connection.includes('upgrade') ? derived.upgradeValue : undefined,
  };
  return { kind: 'ok', head, consumed };
}

/** No Connection tokens: shared by every head without a Connection field (frozen, so it cannot be changed by accident). */
const NO_TOKENS = Object.freeze([]) as unknown as string[];
/** Reused by every parse (parsing is synchronous and does not nest); the head takes only `connection`. */
const shared = newDerived();

function resetDerived(d: Derived): Derived {
  d.contentLength = undefined;
  d.chunked = false;
  d.transferEncoding = false;
  if (d.codings.length !== 0) d.codings.length = 0;
  d.connection = NO_TOKENS;
  d.upgradeValue = undefined;
  d.expectContinue = false;
  d.host = undefined;
  d.hostCount = 0;
  return d;
}

/** The hash (`hashByte` from `HASH_SEED`) of the bytes the last `scanHashed` passed. */
let scannedHash = HASH_SEED;

/**
 * Index of the first byte in [from, end) that `table` does not allow (or
 * `end`), hashing the bytes passed into `scannedHash` for `latin1Hashed`.
 */
function scanHashed(b: Buffer, from: number, end: number, table: Uint8Array): number {
  let hash = HASH_SEED;
  let i = from;
  for (; i < end; i++) {
    const c = b[i]!;
    if (table[c] !== 1) break;
    hash = hashByte(hash, c);
  }
  scannedHash = hash;
  return i;
}

/**
 * The first LF at or after `from`, or -1. Start lines are short: a loop here
 * is cheaper than a native `indexOf` call; a long one (a big target) is
 * handed to `indexOf` after the first 64 bytes.
 */
function lineFeed(b: Buffer, from: number): number {
  const stop = Math.min(b.length, from + 64);
  for (let i = from; i < stop; i++) if (b[i] === LF) return i;
  return stop < b.length ? b.indexOf(LF, stop) : -1;
}

function newDerived(): Derived {
  return {
    contentLength: undefined,
    chunked: false,
    transferEncoding: false,
    codings: [],
    connection: [],
    upgradeValue: undefined,
    expectContinue: false,
    host: undefined,
    hostCount: 0,
  };
}

/** `HTTP/x.y` spanning exactly [start, end): '1.0' | '1.1', 'unsupported' (another major), or undefined (malformed). */
function parseVersion(b: Buffer, start: number, end: number, _status: number): '1.0' | '1.1' | 'unsupported' | undefined {
  if (end - start !== 8) return undefined;
  for (let k = 0; k < 5; k++) if (b[start + k] !== HTTP_PREFIX[k]) return undefined;
  const major = b[start + 5]! - 0x30;
  const minor = b[start + 7]! - 0x30;
  if (major < 0 || major > 9 || minor < 0 || minor > 9 || b[start + 6] !== 0x2e) return undefined;
  if (major !== 1) return 'unsupported';
  return minor === 0 ? '1.0' : '1.1';
}

/**
 * Reject a partial request line that can no longer become valid (binary
 * garbage, a TLS ClientHello on a plain port), or whose target is already too long.
 */
function checkPartialRequestLine(b: Buffer, start: number, end: number, maxTarget: number): void {
  let i = start;
  while (i < end && TOKEN[b[i]!] === 1) i++;
  if (i === end) return;
  if (i === start || b[i] !== SP) fail(400, 'invalid method');
  const targetStart = ++i;
  while (i < end && TARGET[b[i]!] === 1) i++;
  if (i - targetStart > maxTarget) fail(414, 'request-target too long');
  if (i === end) return;
  if (i === targetStart || b[i] !== SP) fail(400, 'invalid request-target');
  i++;
  for (let k = 0; i < end; i++, k++) {
    const c = b[i]!;
    if (k < 5 ? c !== HTTP_PREFIX[k] : k === 6 ? c !== 0x2e : k === 8 ? c !== CR : k < 8 ? c < 0x30 || c > 0x39 : true) {
      fail(400, 'invalid HTTP version');
    }
  }
}

/**
 * Parse header lines from `pos` up to and including the empty line. Returns
 * the offset after the head, or -1 when it has not all arrived. One pass per
 * line: the name and value loops validate, hash (for `latin1Hashed`) and
 * find the line end together.
 */
function parseFields(b: Buffer, pos: number, maxHead: number, maxHeaders: number, headers: HeaderList, d: Derived, status: number): number {
  const len = b.length;
  const tooLarge = status === 400 ? 431 : status;
  for (;;) {
    if (pos >= len) return -1;
    const first = b[pos]!;
    if (first === CR) {
      // The empty line ending the head.
      if (pos + 1 >= len) return -1;
      if (b[pos + 1] !== LF) fail(status, 'invalid header name');
      if (pos + 2 > maxHead) fail(tooLarge, 'head too large');
      return pos + 2;
    }
    if (first === LF) fail(status, 'lone LF line ending');
    if (first === SP || first === HTAB) fail(status, 'obsolete line folding');
    const i = scanHashed(b, pos, len, TOKEN);
    const nameHash = scannedHash;
    if (i === len) return -1;
    if (b[i] !== COLON) {
      if (b[i] === SP || b[i] === HTAB) {
        let k = i;
        while (k < len && (b[k] === SP || b[k] === HTAB)) k++;
        if (k === len) return -1;
        if (b[k] === COLON) fail(status, 'whitespace before colon');
      }
      fail(status, i === pos ? 'invalid header name' : 'invalid character in header name');
    }
    if (i === pos) fail(status, 'empty header name');
    let k = i + 1;
    while (k < len && (b[k] === SP || b[k] === HTAB)) k++;
    const valueStart = k;
    let valueEnd = k;
    let hash = HASH_SEED;
    let valueHash = hash;
    for (; k < len; k++) {
      const c = b[k]!;
      if (FIELD_VALUE[c] !== 1) break;
      hash = hashByte(hash, c);
      if (c !== SP && c !== HTAB) {
        valueEnd = k + 1;
        valueHash = hash;
      }
    }
    if (k === len) return -1;
    const stop = b[k]!;
    if (stop === LF) fail(status, 'lone LF line ending');
    if (stop !== CR) fail(status, 'invalid character in header value');
    if (k + 1 === len) return -1;
    if (b[k + 1] !== LF) fail(status, 'invalid character in header value');
    const lf = k + 1;
    if (lf + 1 > maxHead) fail(tooLarge, 'head too large');
    if (headers.length >= maxHeaders) fail(tooLarge, 'too many header fields');
    const name = latin1Hashed(b, pos, i, nameHash);
    const value = latin1Hashed(b, valueStart, valueEnd, valueHash);
    headers.push([name, value]);
    derive(name, value, d, status);
    pos = lf + 1;
  }
}

function parseField(b: Buffer, start: number, end: number, headers: HeaderList, d: Derived, status: number): void {
  let i = start;
  let hash = HASH_SEED;
  for (; i < end; i++) {
    const c = b[i]!;
    if (TOKEN[c] !== 1) break;
    hash = hashByte(hash, c);
  }
  if (i === end || b[i] !== COLON) {
    const c = b[start]!;
    if (c === SP || c === HTAB) fail(status, 'obsolete line folding');
    if (i < end && (b[i] === SP || b[i] === HTAB)) {
      let k = i;
      while (k < end && (b[k] === SP || b[k] === HTAB)) k++;
      if (k < end && b[k] === COLON) fail(status, 'whitespace before colon');
    }
    fail(status, i === start ? 'invalid header name' : 'invalid character in header name');
  }
  if (i === start) fail(status, 'empty header name');
  const name = latin1Hashed(b, start, i, hash);
  i++;
  while (i < end && (b[i] === SP || b[i] === HTAB)) i++;
  let valueEnd = end;
  while (valueEnd > i && (b[valueEnd - 1] === SP || b[valueEnd - 1] === HTAB)) valueEnd--;
  hash = HASH_SEED;
  for (let k = i; k < valueEnd; k++) {
    const c = b[k]!;
    if (FIELD_VALUE[c] !== 1) fail(status, 'invalid character in header value');
    hash = hashByte(hash, c);
  }
  const value = latin1Hashed(b, i, valueEnd, hash);
  headers.push([name, value]);
  derive(name, value, d, status);
}

function derive(name: string, value: string, d: Derived, status: number): void {
  switch (name.length) {
    case 4:
      if (lowerName(name) === 'host') {
        d.hostCount++;
        d.host = value;
      }
      return;
    case 6:
      if (lowerName(name) === 'expect' && value.toLowerCase() === '100-continue') d.expectContinue = true;
      return;
    case 7:
      if (lowerName(name) === 'upgrade') d.upgradeValue = d.upgradeValue === undefined ? value : `${d.upgradeValue}, ${value}`;
      return;
    case 10:
      if (lowerName(name) === 'connection') {
        if (d.connection === NO_TOKENS) d.connection = [];
        addConnectionTokens(value, d.connection);
      }
      return;
    case 14:
      if (lowerName(name) === 'content-length') {
        const length = parseContentLength(value);
        if (length < 0) fail(status, 'invalid Content-Length');
        if (d.contentLength !== undefined && d.contentLength !== length) fail(status, 'conflicting Content-Length values');
        d.contentLength = length;
      }
      return;
    case 17:
      if (lowerName(name) === 'transfer-encoding') {
        d.transferEncoding = true;
        const before = d.codings.length;
        addTokens(value, d.codings);
        if (d.codings.length === before) fail(status, 'empty Transfer-Encoding');
      }
      return;
    default:
  }
}

/** Content-Length: digits only, or a list of identical values (RFC 9110 section 8.6). -1 if invalid. */
function parseContentLength(value: string): number {
  let result = -1;
  let current = -1;
  let digits = 0;
  for (let i = 0; i <= value.length; i++) {
    const c = i < value.length ? value.charCodeAt(i) : 0x2c;
    if (c >= 0x30 && c <= 0x39) {
      if (++digits > 15) return -1;
      current = (current < 0 ? 0 : current * 10) + (c - 0x30);
    } else if (c === 0x2c) {
      if (current < 0) return -1;
      if (result >= 0 && result !== current) return -1;
      result = current;
      current = -1;
      digits = 0;
      // optional whitespace after a comma
      while (i + 1 < value.length && (value.charCodeAt(i + 1) === SP || value.charCodeAt(i + 1) === HTAB)) i++;
    } else if ((c === SP || c === HTAB) && current >= 0) {
      // whitespace before a comma
      while (i + 1 < value.length && (value.charCodeAt(i + 1) === SP || value.charCodeAt(i + 1) === HTAB)) i++;
      if (i + 1 < value.length && value.charCodeAt(i + 1) !== 0x2c) return -1;
    } else return -1;
  }
  return result;
}

/** Split a comma-separated field into lower-case tokens (empty elements skipped). */
function addTokens(value: string, into: string[]): void {
  // The usual case, one bare token (`keep-alive`, `close`, `chunked`): no slicing.
  if (value.indexOf(',') < 0 && value.length > 0 && value.charCodeAt(0) > SP && value.charCodeAt(value.length - 1) > SP) {
    into.push(lowerName(value));
    return;
  }
  let start = 0;
  for (let i = 0; i <= value.length; i++) {
    if (i === value.length || value.charCodeAt(i) === 0x2c) {
      const token = value.slice(start, i).trim();
      if (token.length > 0) into.push(token.toLowerCase());
      start = i + 1;
    }
  }
}

/**
 * Fields a Connection token is never allowed to remove. RFC 9110 section 7.6.1
 * has intermediaries drop every field Connection names, but a client that
 * names Content-Length would then have its body read as the next request on a
 * pooled upstream connection (and a backend that names it would leave the
 * client without framing). Such a token is ignored: the field stays and
 * frames the message as the parser already decided.
 */
const NEVER_NOMINATED: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

function addConnectionTokens(value: string, into: string[]): void {
  const before = into.length;
  addTokens(value, into);
  for (let i = into.length - 1; i >= before; i--) if (NEVER_NOMINATED.has(into[i]!)) into.splice(i, 1);
}

/**
 * Host name characters: RFC 3986 unreserved (letters, digits, `-._~`). The RFC's
 * reg-name also allows pct-encoding and sub-delims (`!$&'()*+,;=`), which no
 * DNS name or IPv4 address uses and which read as list or parameter
 * separators once copied into X-Forwarded-Host or Forwarded: refused.
 */
const HOST_NAME = new Uint8Array(256);
for (let c = 0; c < 128; c++) {
  const isAlnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  HOST_NAME[c] = isAlnum || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e ? 1 : 0;
}

/**
 * RFC 9110 section 7.2: `Host = uri-host [ ":" port ]`, where uri-host is an
 * IP-literal in brackets, or a host name of HOST_NAME characters (which covers
 * IPv4 addresses). Empty is allowed (a target without an authority). No
 * userinfo, no path, no whitespace, no separators.
 */
export function isValidHost(value: string): boolean {
  const length = value.length;
  if (length === 0) return true;
  let i = 0;
  if (value.charCodeAt(0) === 0x5b /* [ */) {
    const close = value.indexOf(']');
    if (close < 3) return false;
    for (i = 1; i < close; i++) {
      const c = value.charCodeAt(i);
      const ok = (c >= 0x30 && c <= 0x3a) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) || c === 0x2e;
      if (!ok) return false;
    }
    i = close + 1;
  } else {
    while (i < length && value.charCodeAt(i) !== COLON) {
      const c = value.charCodeAt(i);
      if (c > 0x7f || HOST_NAME[c] !== 1) return false;
      i++;
    }
    if (i === 0) return false;
  }
  if (i === length) return true;
  if (value.charCodeAt(i) !== COLON) return false;
  // port = *DIGIT (RFC 3986 allows it empty); at most 5 digits.
  if (length - i - 1 > 5) return false;
  for (let j = i + 1; j < length; j++) {
    const c = value.charCodeAt(j);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** Apply the framing rules; returns 'chunked' or 'plain'. */
function checkFraming(d: Derived, version: '1.0' | '1.1', status: number): 'chunked' | 'plain' {
  if (!d.transferEncoding) return 'plain';
  if (d.contentLength !== undefined) fail(status, 'both Content-Length and Transfer-Encoding');
  if (version === '1.0') fail(status, 'Transfer-Encoding in an HTTP/1.0 message');
  const codings = d.codings;
  // RFC 9112 section 6.3: a request whose final coding is not chunked cannot be framed: 400.
  if (codings[codings.length - 1] !== 'chunked') fail(status, 'Transfer-Encoding does not end with chunked');
  for (let i = 0; i < codings.length - 1; i++) {
    if (codings[i] === 'chunked') fail(status, 'chunked applied more than once');
    // A coding this proxy cannot decode or re-frame: 501 (RFC 9112 section 6.1).
    fail(status === 400 ? 501 : status, `unsupported transfer coding "${codings[i]}"`);
  }
  d.chunked = true;
  return 'chunked';
}

function isKeepAlive(version: '1.0' | '1.1', connection: string[]): boolean {
  // Most messages have no Connection field: no native `includes` call for them.
  if (connection.length === 0) return version === '1.1';
  if (connection.includes('close')) return false;
  return version === '1.1' || connection.includes('keep-alive');
}

/**
 * Parse one `name: value` line (bytes [start, end), without its CRLF) into
 * `headers` with the same rules as a head's fields. Returns an error reason,
 * or undefined when the line was valid. Used for chunked trailers.
 */
export function parseFieldLine(b: Buffer, start: number, end: number, headers: HeaderList): string | undefined {
  try {
    parseField(b, start, end, headers, newDerived(), 400);
    return undefined;
  } catch (error) {
    if (error instanceof HeadError) return error.reason;
    throw error;
  }
}
