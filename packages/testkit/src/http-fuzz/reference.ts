/**
 * Reference HTTP/1.1 parsers for the fuzzers' oracles, written from RFC 9112
 * independently of @wmproxy/core-net (which they check). They are a strict
 * *client's* view: what a careful user agent makes of a proxy's output.
 */

export type Fields = Array<[string, string]>;

export type RefResult<T> = { kind: 'ok'; value: T; consumed: number } | { kind: 'incomplete' } | { kind: 'error'; reason: string };

const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const HEXDIG = /^[0-9A-Fa-f]+$/;
const QDTEXT_OR_PAIR = /^"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"$/;

/** The first CRLF at or after `from` (a bare LF or CR before it is an error), or -1 when none yet. */
function lineEnd(buf: Buffer, from: number): number | 'error' {
  for (let i = from; i < buf.length; i++) {
    const c = buf[i]!;
    if (c === 0x0a) return 'error';
    if (c === 0x0d) {
      if (i + 1 >= buf.length) return -1;
      return buf[i + 1] === 0x0a ? i : 'error';
    }
  }
  return -1;
}

/** Parse `name: value` lines up to the empty line. Returns the fields and the offset after the empty line. */
export function refFields(buf: Buffer, from: number): RefResult<Fields> {
  const fields: Fields = [];
  let pos = from;
  for (;;) {
    const end = lineEnd(buf, pos);
    if (end === 'error') return { kind: 'error', reason: 'bare CR or LF in the field section' };
    if (end < 0) return { kind: 'incomplete' };
    if (end === pos) return { kind: 'ok', value: fields, consumed: end + 2 };
    const line = buf.subarray(pos, end).toString('latin1');
    const colon = line.indexOf(':');
    if (colon <= 0) return { kind: 'error', reason: `bad field line ${JSON.stringify(line)}` };
    const name = line.slice(0, colon);
    if (!TCHAR.test(name)) return { kind: 'error', reason: `bad field name ${JSON.stringify(name)}` };
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) return { kind: 'error', reason: `bad field value ${JSON.stringify(value)}` };
    fields.push([name, value]);
    pos = end + 2;
  }
}

export function fieldValues(fields: Fields, name: string): string[] {
  const lower = name.toLowerCase();
  return fields.filter(([key]) => key.toLowerCase() === lower).map(([, value]) => value);
}

/** Strict RFC 9112 section 7.1 chunked decoding (BWS and quoted-pairs in extensions allowed, as the ABNF says). */
export function refChunked(buf: Buffer, from: number): RefResult<{ body: Buffer; trailers: Fields }> {
  const parts: Buffer[] = [];
  let pos = from;
  for (;;) {
    const end = lineEnd(buf, pos);
    if (end === 'error') return { kind: 'error', reason: 'bare CR or LF in a chunk-size line' };
    if (end < 0) return buf.length - pos > 4096 ? { kind: 'error', reason: 'chunk-size line too long' } : { kind: 'incomplete' };
    const line = buf.subarray(pos, end).toString('latin1');
    const semicolon = line.indexOf(';');
    const sizeText = (semicolon < 0 ? line : line.slice(0, semicolon)).replace(/[ \t]+$/, '');
    if (semicolon < 0 && sizeText !== line) return { kind: 'error', reason: 'whitespace after chunk-size without an extension' };
    if (!HEXDIG.test(sizeText)) return { kind: 'error', reason: `bad chunk-size ${JSON.stringify(sizeText)}` };
    const trimmed = sizeText.replace(/^0+(?=.)/, '');
    if (trimmed.length > 12) return { kind: 'error', reason: 'chunk-size too large' };
    if (semicolon >= 0 && !validExtensions(line.slice(semicolon))) return { kind: 'error', reason: `bad chunk-ext ${JSON.stringify(line.slice(semicolon))}` };
    const size = parseInt(trimmed, 16);
    pos = end + 2;
    if (size === 0) {
      const trailers = refFields(buf, pos);
      if (trailers.kind !== 'ok') return trailers;
      return { kind: 'ok', value: { body: Buffer.concat(parts), trailers: trailers.value }, consumed: trailers.consumed };
    }
    if (buf.length < pos + size + 2) return { kind: 'incomplete' };
    parts.push(buf.subarray(pos, pos + size));
    pos += size;
    if (buf[pos] !== 0x0d || buf[pos + 1] !== 0x0a) return { kind: 'error', reason: 'chunk-data not followed by CRLF' };
    pos += 2;
  }
}

/** `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`. */
function validExtensions(text: string): boolean {
  let rest = text;
  while (rest.length > 0) {
    const match = /^[ \t]*;[ \t]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?:[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[!#$%&'*+\-.^_`|~0-9A-Za-z]+))?/.exec(rest);
    if (!match) return false;
    const value = match[2];
    if (value !== undefined && value.startsWith('"') && !QDTEXT_OR_PAIR.test(value)) return false;
    rest = rest.slice(match[0].length);
  }
  return true;
}

export interface RefResponse {
  version: string;
  status: number;
  reason: string;
  fields: Fields;
  framing: 'none' | 'length' | 'chunked' | 'close';
  body: Buffer;
  trailers: Fields;
}

/**
 * One response from the start of `buf`, as the answer to `method`, the way a
 * strict client reads it: CRLF only, no obs-fold, Transfer-Encoding only as
 * exactly `chunked`, Content-Length only as one field of digits, never both.
 * `eof`: the connection has closed after `buf` (ends a close-delimited body;
 * a message cut short by the close stays `incomplete`: an aborted response).
 */
export function refResponse(buf: Buffer, method: string, eof: boolean): RefResult<RefResponse> {
  const end = lineEnd(buf, 0);
  if (end === 'error') return { kind: 'error', reason: 'bare CR or LF in the status line' };
  if (end < 0) {
    const start = buf.subarray(0, 7).toString('latin1');
    return 'HTTP/1.'.startsWith(start) && buf.length < 8192 ? { kind: 'incomplete' } : { kind: 'error', reason: 'not a status line' };
  }
  const statusLine = buf.subarray(0, end).toString('latin1');
  const match = /^HTTP\/(1\.\d) (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/.exec(statusLine);
  if (!match) return { kind: 'error', reason: `bad status line ${JSON.stringify(statusLine)}` };
  const status = Number(match[2]);
  if (status < 100) return { kind: 'error', reason: 'status below 100' };
  const fields = refFields(buf, end + 2);
  if (fields.kind !== 'ok') return fields;
  const headEnd = fields.consumed;
  const te = fieldValues(fields.value, 'transfer-encoding');
  const cl = fieldValues(fields.value, 'content-length');
  const response: RefResponse = { version: match[1]!, status, reason: match[3] ?? '', fields: fields.value, framing: 'none', body: Buffer.alloc(0), trailers: [] };
  // Framing fields of a bodyless response do not frame anything: a careful client ignores them.
  // A 2xx to CONNECT starts a tunnel: what follows is not HTTP.
  if (method === 'HEAD' || (status >= 100 && status < 200) || status === 204 || status === 304 || (method === 'CONNECT' && status >= 200 && status < 300)) {
    return { kind: 'ok', value: response, consumed: headEnd };
  }
  if (te.length > 0 && cl.length > 0) return { kind: 'error', reason: 'both Transfer-Encoding and Content-Length' };
  if (cl.length > 1) return { kind: 'error', reason: 'more than one Content-Length field' };
  if (cl.length === 1 && !/^\d{1,15}$/.test(cl[0]!)) return { kind: 'error', reason: `invalid Content-Length ${JSON.stringify(cl[0])}` };
  if (te.length > 1 || (te.length === 1 && te[0]!.toLowerCase() !== 'chunked')) return { kind: 'error', reason: `Transfer-Encoding other than chunked: ${JSON.stringify(te)}` };
  if (te.length === 1) {
    const chunked = refChunked(buf, headEnd);
    // Cut short by a close: `incomplete` still (the caller knows the connection closed: an aborted response).
    if (chunked.kind !== 'ok') return chunked;
    response.framing = 'chunked';
    response.body = chunked.value.body;
    response.trailers = chunked.value.trailers;
    return { kind: 'ok', value: response, consumed: chunked.consumed };
  }
  if (cl.length === 1) {
    const length = Number(cl[0]);
    if (buf.length - headEnd < length) return { kind: 'incomplete' };
    response.framing = 'length';
    response.body = buf.subarray(headEnd, headEnd + length);
    return { kind: 'ok', value: response, consumed: headEnd + length };
  }
  if (!eof) return { kind: 'incomplete' };
  response.framing = 'close';
  response.body = buf.subarray(headEnd);
  return { kind: 'ok', value: response, consumed: buf.length };
}

/**
 * Every response in `buf` in order, skipping interim 1xx ones (a 101 is final),
 * for requests made with `methods` (the last is reused for extra responses).
 * `rest` is what follows the last complete response; `error` why parsing stopped.
 */
export function refResponses(buf: Buffer, methods: string[], eof: boolean): { responses: RefResponse[]; interim: number; rest: Buffer; error?: string } {
  const responses: RefResponse[] = [];
  let interim = 0;
  let pos = 0;
  while (pos < buf.length) {
    const method = methods[Math.min(responses.length, methods.length - 1)] ?? 'GET';
    const result = refResponse(buf.subarray(pos), method, eof);
    if (result.kind === 'incomplete') break;
    if (result.kind === 'error') return { responses, interim, rest: buf.subarray(pos), error: result.reason };
    pos += result.consumed;
    if (result.value.status < 200 && result.value.status !== 101) {
      interim++;
      continue;
    }
    responses.push(result.value);
    if (result.value.status === 101) return { responses, interim, rest: buf.subarray(pos) };
  }
  return { responses, interim, rest: buf.subarray(pos) };
}
