/**
 * Strict, incremental HTTP/1.1 building blocks shared by the forward proxy
 * (`@wmproxy/http-proxy`) and the reverse proxy (`@wmproxy/reverse`).
 *
 * - `parseRequestHead(buf, limits)` / `parseResponseHead(buf, options)`: parse
 *   a head from the start of a byte buffer; `incomplete` until the empty line
 *   arrives (keep the bytes with `HeadBuffer` and call again), `error` with
 *   the status to answer, or `ok` with the head and `consumed` (the body
 *   starts there). Only CRLF line endings are accepted.
 * - `head.framing` tells how to read the body: `none`, `length`
 *   (`contentLength` bytes), `chunked` (feed a `ChunkedDecoder`) or `close`
 *   (responses only: until the server closes).
 * - `ChunkedDecoder`: incremental strict chunked decoding with zero-copy data
 *   pieces; `encodeChunk`, `chunkHeader`, `encodeLastChunk` to produce it.
 * - `removeHopByHop`, `getHeader(s)`, `serializeRequestHead`,
 *   `serializeResponseHead`, `simpleResponse`, `STATUS_TEXT`.
 * - `BodyReader`: the message-body framer of both directions: counts a body of
 *   known framing through a stream of chunks, says where it ends (validating
 *   chunked framing), and can de-chunk into a sink.
 * - `ResponseHeadReader`: the response side of a client exchange: gathers a
 *   head split over reads (holding bytes only while one is partial), reports
 *   1xx interim heads, then the final head (or 101) with the bytes after it;
 *   `connectionReusable` says whether the connection may carry the next
 *   exchange. Used by both proxies.
 * - `forwardFields(head, kinds, out, sink?)`, `requestFraming(head, out)`,
 *   `responseFraming(...)`: the wire side of forwarding a head to the next
 *   hop (forward.ts): end-to-end fields only, framing rewritten from what the
 *   parser validated; the fields a proxy rewrites by policy (`FieldKinds`)
 *   go to its `PolicySink`. Both proxies use them.
 * - `composeHead(startLine, fields, body?)`: a head plus the first body bytes
 *   in one reused buffer, for one `Conn.write` without allocating (the view
 *   is valid until the next call; Conns copy what they queue). `HeadMemo`
 *   does the same for one sender, copying a head it composed last time.
 * - `BasicAuth`: Basic credentials checked against a user table (constant time).
 * - Parsed names and values of up to 64 bytes are interned (the same bytes
 *   give the same string), and `lowerName` caches lower-cased field names.
 *
 * Typical loop of a server reading requests from a Conn:
 * ```ts
 * const view = state.head.feed(chunk);               // no copy when nothing is held
 * const result = parseRequestHead(view, limits);
 * if (result.kind === 'incomplete') { state.head.keep(view); return; }
 * state.head.clear();
 * if (result.kind === 'error') { conn.write(simpleResponse(result.status)); conn.end(); return; }
 * const body = view.subarray(result.consumed);        // first body bytes (or the next request)
 * ```
 */
export {
  parseRequestHead,
  parseResponseHead,
  isValidHost,
  DEFAULT_MAX_HEAD_SIZE,
  DEFAULT_MAX_HEADERS,
  DEFAULT_MAX_TARGET_LENGTH,
  type HeaderList,
  type HeadLimits,
  type BodyFraming,
  type RequestHead,
  type ResponseHead,
  type RequestErrorStatus,
  type ParseResult,
  type RequestParseResult,
  type ResponseParseResult,
  type ResponseParseOptions,
} from './head.js';
export { ChunkedDecoder, chunkHeader, chunkTrailerCrlf, encodeChunk, encodeLastChunk, type ChunkSink, type ChunkedLimits } from './chunked.js';
export {
  HOP_BY_HOP,
  removeHopByHop,
  canonicalContentLength,
  getHeader,
  getHeaders,
  hasHeader,
  serializeRequestHead,
  serializeResponseHead,
  simpleResponse,
  STATUS_TEXT,
  HeaderSerialiseError,
  type SimpleResponseOptions,
} from './headers.js';
export { normalizePath } from './path.js';
export { HeadBuffer, HeadMemo, BodyReader, composeHead, isComposed } from './buffer.js';
export { ResponseHeadReader, connectionReusable, type ResponseHeadSink } from './response-reader.js';
export { isToken, isFieldValue, lowerName } from './chars.js';
export { BasicAuth, basicCredentials, DEFAULT_BASIC_REALM } from './basic-auth.js';
export {
  FieldKinds,
  WIRE_KINDS,
  FIELD_PLAIN,
  FIELD_HOP_BY_HOP,
  FIELD_FRAMING,
  FIELD_POLICY,
  FRAMING_DECHUNK,
  FRAMING_KEEP_ALIVE,
  forwardFields,
  requestFraming,
  responseFraming,
  type PolicySink,
} from './forward.js';
