import { isFieldValue, isToken, lowerName } from './chars.js';
import type { HeaderList } from './head.js';

/**
 * Header-list helpers, the head serialisers and small canned responses.
 */

/** Fields that describe one connection, never forwarded (RFC 9110 section 7.6.1, plus the legacy proxy ones). */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Framing and routing fields: a Connection token naming one is ignored (see head.ts, which does the same for `connection`). */
const NEVER_NOMINATED: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

/**
 * A copy of `headers` without hop-by-hop fields: the fixed set above, every
 * field named in Connection (but never Content-Length or Host: removing those
 * would change the message's framing or routing at the next hop), and any
 * extra lower-case names in `alsoRemove` (for example `content-length`, when
 * the caller re-frames the body). Content-Length goes out once, as the
 * single number the parser validated (`5, 5` becomes `5`), so the next hop
 * cannot read it differently.
 */
export function removeHopByHop(headers: HeaderList, alsoRemove?: ReadonlySet<string>): HeaderList {
  let named: Set<string> | undefined;
  for (const [name, value] of headers) {
    if (name.length === 10 && name.toLowerCase() === 'connection') {
      for (const token of value.split(',')) {
        const trimmed = token.trim().toLowerCase();
        if (trimmed && !NEVER_NOMINATED.has(trimmed)) (named ??= new Set()).add(trimmed);
      }
    }
  }
  const out: HeaderList = [];
  let lengthPlaced = false;
  for (const field of headers) {
    const lower = lowerName(field[0]);
    if (HOP_BY_HOP.has(lower) || named?.has(lower) || alsoRemove?.has(lower)) continue;
    if (lower === 'content-length') {
      if (lengthPlaced) continue;
      lengthPlaced = true;
      out.push([field[0], canonicalContentLength(field[1])]);
      continue;
    }
    out.push(field);
  }
  return out;
}

/**
 * The one number of a Content-Length value the parser accepted (`5, 5`, ` 5`):
 * a list of equal values collapses to one (RFC 9110 section 8.6).
 */
export function canonicalContentLength(value: string): string {
  const comma = value.indexOf(',');
  const first = comma < 0 ? value : value.slice(0, comma);
  const trimmed = first.trim();
  // Leading zeros are valid but read as octal by some parsers: send the plain number.
  return trimmed.length > 1 && trimmed.charCodeAt(0) === 0x30 ? String(Number(trimmed)) : trimmed;
}

/** The first value of a field (case-insensitive name), or undefined. */
export function getHeader(headers: HeaderList, name: string): string | undefined {
  const lower = lowerName(name);
  for (const [key, value] of headers) if (key.length === lower.length && lowerName(key) === lower) return value;
  return undefined;
}

/** Every value of a field, in order. */
export function getHeaders(headers: HeaderList, name: string): string[] {
  const lower = lowerName(name);
  const out: string[] = [];
  for (const [key, value] of headers) if (key.length === lower.length && lowerName(key) === lower) out.push(value);
  return out;
}

/** True when a field of that name is present. */
export function hasHeader(headers: HeaderList, name: string): boolean {
  return getHeader(headers, name) !== undefined;
}

export class HeaderSerialiseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HeaderSerialiseError';
  }
}

function appendFields(text: string, headers: HeaderList): string {
  for (const [name, value] of headers) {
    // Refuse to emit what would split the message (CR/LF injection).
    if (!isToken(name) || !isFieldValue(value)) throw new HeaderSerialiseError(`invalid header field ${JSON.stringify(name)}`);
    text += `${name}: ${value}\r\n`;
  }
  return text + '\r\n';
}

/**
 * `METHOD target HTTP/1.1 CRLF fields CRLF` as bytes (latin1, so obs-text
 * values pass through unchanged). Throws HeaderSerialiseError on a name or
 * value that could split the message.
 */
export function serializeRequestHead(method: string, target: string, headers: HeaderList, version: '1.0' | '1.1' = '1.1'): Uint8Array {
  if (!isToken(method)) throw new HeaderSerialiseError(`invalid method ${JSON.stringify(method)}`);
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) throw new HeaderSerialiseError('invalid request-target');
  }
  return Buffer.from(appendFields(`${method} ${target} HTTP/${version}\r\n`, headers), 'latin1');
}

/** `HTTP/1.1 status reason CRLF fields CRLF` as bytes. */
export function serializeResponseHead(status: number, reason: string, headers: HeaderList, version: '1.0' | '1.1' = '1.1'): Uint8Array {
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new HeaderSerialiseError(`invalid status ${status}`);
  if (!isFieldValue(reason)) throw new HeaderSerialiseError('invalid reason phrase');
  return Buffer.from(appendFields(`HTTP/${version} ${status} ${reason}\r\n`, headers), 'latin1');
}

/** Reason phrases for the statuses proxies produce themselves. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  100: 'Continue',
  101: 'Switching Protocols',
  200: 'OK',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  411: 'Length Required',
  413: 'Content Too Large',
  414: 'URI Too Long',
  417: 'Expectation Failed',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

export interface SimpleResponseOptions {
  /** Extra fields (before Content-Length / Connection). */
  headers?: HeaderList;
  /** Plain-text body; defaults to `<status> <reason>\n`. */
  body?: string;
  /** Add `Connection: close` (default true: error answers usually end the connection). */
  close?: boolean;
  /** Omit the body (answer to HEAD), keeping Content-Length. */
  head?: boolean;
}

/** A complete small response (head and text body) as bytes: for errors, 407s, status pages. */
export function simpleResponse(status: number, options: SimpleResponseOptions = {}): Uint8Array {
  const reason = STATUS_TEXT[status] ?? 'Unknown';
  const body = options.body ?? `${status} ${reason}\n`;
  const bodyBytes = Buffer.from(body, 'utf8');
  const headers: HeaderList = [...(options.headers ?? [])];
  headers.push(['Content-Type', 'text/plain; charset=utf-8'], ['Content-Length', String(bodyBytes.length)]);
  if (options.close !== false) headers.push(['Connection', 'close']);
  const head = serializeResponseHead(status, reason, headers);
  if (options.head) return head;
  return Buffer.concat([head, bodyBytes]);
}
