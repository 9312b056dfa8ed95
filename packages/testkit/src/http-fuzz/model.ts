import { fuzzId } from './grammar.js';

/**
 * What a proxy believes a client sent: its own request parser run over the
 * client's bytes. The parser is injected (`@wmproxy/core-net`'s
 * `parseRequestHead` and `BodyReader`), since testkit sits below core-net.
 */
export type ModelFraming = 'none' | 'length' | 'chunked' | 'close';

export interface ModelHead {
  method: string;
  target: string;
  version: string;
  framing: ModelFraming;
  contentLength: number | undefined;
  keepAlive: boolean;
}

export type ModelHeadResult =
  | { kind: 'incomplete' }
  | { kind: 'error'; status: number; reason: string }
  | { kind: 'ok'; head: ModelHead; consumed: number };

export interface ModelBodyReader {
  done: boolean;
  error: string | undefined;
  push(chunk: Uint8Array, sink?: { onChunkData(piece: Uint8Array): void }, start?: number): number;
}

export interface Http1Parser {
  parseRequestHead(buf: Uint8Array, limits?: { requireHost?: boolean }): ModelHeadResult;
  BodyReader: new (framing: ModelFraming, contentLength?: number) => ModelBodyReader;
}

export interface ModelRequest {
  index: number;
  method: string;
  target: string;
  version: string;
  /** `<case>-<n>` from the target, if it has one. */
  id: string | undefined;
  framing: ModelFraming;
  /** The decoded body as far as it arrived. */
  body: Buffer;
  /** The body ended (false: the bytes ran out, or its chunked framing was bad). */
  complete: boolean;
  bodyError: string | undefined;
  keepAlive: boolean;
  /** Byte offsets of the request in the stream. */
  start: number;
  end: number;
}

export interface Model {
  requests: ModelRequest[];
  /** Why parsing stopped. `closed`: a request without keep-alive (nothing after it is read). */
  end: 'clean' | 'incomplete' | 'head-error' | 'body-error' | 'closed';
  errorStatus?: number;
  errorReason?: string;
  /** Where parsing stopped. */
  at: number;
}

/**
 * Parse `bytes` the way the proxy does: request heads and framed bodies one
 * after the other, stopping at an error, at the end of the bytes, or (unless
 * `pastClose`) after a request that closes the connection.
 */
export function modelRequests(bytes: Buffer, parser: Http1Parser, limits: { requireHost?: boolean }, pastClose = false): Model {
  const requests: ModelRequest[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const result = parser.parseRequestHead(bytes.subarray(pos), limits);
    if (result.kind === 'incomplete') return { requests, end: 'incomplete', at: pos };
    if (result.kind === 'error') return { requests, end: 'head-error', errorStatus: result.status, errorReason: result.reason, at: pos };
    const head = result.head;
    const start = pos;
    pos += result.consumed;
    const parts: Buffer[] = [];
    const reader = new parser.BodyReader(head.framing, head.contentLength ?? 0);
    let complete = true;
    let bodyError: string | undefined;
    if (head.framing !== 'none') {
      const taken = reader.push(bytes, { onChunkData: (piece) => parts.push(Buffer.from(piece)) }, pos);
      if (taken < 0) {
        complete = false;
        bodyError = reader.error ?? 'bad body';
      } else {
        pos += taken;
        complete = reader.done;
      }
    }
    requests.push({
      index: requests.length,
      method: head.method,
      target: head.target,
      version: head.version,
      id: fuzzId(head.target),
      framing: head.framing,
      body: Buffer.concat(parts),
      complete,
      bodyError,
      keepAlive: head.keepAlive,
      start,
      end: pos,
    });
    if (bodyError !== undefined) return { requests, end: 'body-error', errorStatus: 400, errorReason: bodyError, at: pos };
    if (!complete) return { requests, end: 'incomplete', at: pos };
    if (!head.keepAlive && !pastClose) return { requests, end: 'closed', at: pos };
  }
  return { requests, end: 'clean', at: pos };
}
