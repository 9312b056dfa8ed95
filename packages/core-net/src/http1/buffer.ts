import { ChunkedDecoder, type ChunkedLimits, type ChunkSink } from './chunked.js';
import type { BodyFraming } from './head.js';

/** Messages up to this size are composed in the shared buffer; larger ones get their own. */
const COMPOSE_SIZE = 64 * 1024;
let composeStore: Buffer | undefined;

/** Views of the compose buffer's first N bytes, by N (small N only): the same response size needs no new view. */
const VIEW_CACHE = 4096;
const views: Array<Uint8Array | undefined> = [];

function storeFor(total: number): Buffer {
  return total <= COMPOSE_SIZE ? (composeStore ??= Buffer.allocUnsafeSlow(COMPOSE_SIZE)) : Buffer.allocUnsafe(total);
}

function composed(out: Buffer, total: number): Uint8Array {
  if (out !== composeStore) return out;
  if (total > VIEW_CACHE) return out.subarray(0, total);
  return (views[total] ??= out.subarray(0, total));
}

/** Copy `text` one byte per character (latin1) into `out` at `at`; returns the end. */
function put(out: Buffer, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
  return at;
}

/** Body runs up to this long are copied byte by byte (no view of `body` is made). */
const COPY_LOOP_MAX = 256;

/**
 * An outgoing message head, `startLine` (with its CRLF) then `name: value`
 * lines and the empty line, followed by `body` (the first body bytes, if
 * any; bytes [bodyStart, bodyEnd) of it), as one byte run: a response goes
 * out in one write without allocating. Passing the range rather than a
 * `subarray` matters on Bun: the first view made of a socket's chunk costs
 * more than the rest of the copy. Text is written one byte per character
 * (latin1), unvalidated: the caller vouches for the fields (parsed strictly,
 * or checked configuration). The result is a view of a process-wide buffer, valid until
 * the next call: hand it to `Conn.write` straight away. Conns do not keep it
 * past `write` (Bun's sends at once and copies what it could not send;
 * Node's copies it first, see `isComposed`).
 */
export function composeHead(
  startLine: string,
  fields: ReadonlyArray<readonly [string, string]>,
  body?: Uint8Array,
  bodyStart = 0,
  bodyEnd = body === undefined ? 0 : body.byteLength,
): Uint8Array {
  const bodyLength = body === undefined ? 0 : bodyEnd - bodyStart;
  let total = startLine.length + 2 + bodyLength;
  for (let i = 0; i < fields.length; i++) total += fields[i]![0].length + fields[i]![1].length + 4;
  const out = storeFor(total);
  const at = writeHead(out, startLine, fields);
  if (bodyLength > 0) writeBody(out, at, body!, bodyStart, bodyEnd);
  return composed(out, total);
}

function writeHead(out: Buffer, startLine: string, fields: ReadonlyArray<readonly [string, string]>): number {
  let at = put(out, 0, startLine);
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    at = put(out, at, field[0]);
    out[at++] = 0x3a;
    out[at++] = 0x20;
    at = put(out, at, field[1]);
    out[at++] = 0x0d;
    out[at++] = 0x0a;
  }
  out[at++] = 0x0d;
  out[at++] = 0x0a;
  return at;
}

function writeBody(out: Buffer, at: number, body: Uint8Array, bodyStart: number, bodyEnd: number): void {
  if (bodyStart === 0 && bodyEnd === body.byteLength) out.set(body, at);
  else if (bodyEnd - bodyStart <= COPY_LOOP_MAX) for (let i = bodyStart; i < bodyEnd; i++) out[at++] = body[i]!;
  else out.set(body.subarray(bodyStart, bodyEnd), at);
}

/**
 * `composeHead` for one sender (a connection's requests, its responses),
 * remembering the last head as bytes: the same head again (a keep-alive
 * client's requests, an upstream's responses within the same second) is
 * copied instead of encoded character by character. Fields are compared by
 * their strings, mostly a pointer compare: the parser hands out the same
 * string for the same bytes. A sender whose heads keep changing is only
 * remembered now and then, so misses cost little.
 */
export class HeadMemo {
  private startLine = '';
  /** Names and values of the remembered head, in order; `count` of them are set. */
  private readonly strings: string[] = [];
  private count = 0;
  private head: Uint8Array | undefined;
  private misses = 0;

  compose(
    startLine: string,
    fields: ReadonlyArray<readonly [string, string]>,
    body?: Uint8Array,
    bodyStart = 0,
    bodyEnd = body === undefined ? 0 : body.byteLength,
  ): Uint8Array {
    const head = this.head;
    if (head !== undefined && this.matches(startLine, fields)) {
      this.misses = 0;
      const bodyLength = body === undefined ? 0 : bodyEnd - bodyStart;
      const total = head.byteLength + bodyLength;
      const out = storeFor(total);
      out.set(head, 0);
      if (bodyLength > 0) writeBody(out, head.byteLength, body!, bodyStart, bodyEnd);
      return composed(out, total);
    }
    const out = composeHead(startLine, fields, body, bodyStart, bodyEnd);
    const misses = ++this.misses;
    if (misses <= 2 || (misses & 15) === 0) this.remember(startLine, fields, out, out.byteLength - (body === undefined ? 0 : bodyEnd - bodyStart));
    return out;
  }

  /**
   * As `compose` (no body), with one more field last whose value changes
   * with every message (a tracing `traceparent`): the memo still covers the
   * fields that repeat.
   */
  composeWithField(startLine: string, fields: ReadonlyArray<readonly [string, string]>, name: string, value: string): Uint8Array {
    const head = this.head;
    if (head === undefined || !this.matches(startLine, fields)) {
      // Remember the repeating part for the next message, then compose this one whole.
      const misses = ++this.misses;
      if (misses <= 2 || (misses & 15) === 0) {
        const base = composeHead(startLine, fields);
        this.remember(startLine, fields, base, base.byteLength);
      }
      return composeHead(startLine, [...fields, [name, value]]);
    }
    this.misses = 0;
    // The remembered head ends with the empty line: the field goes before it.
    const keep = head.byteLength - 2;
    const total = keep + name.length + value.length + 6;
    const out = storeFor(total);
    out.set(head, 0);
    let at = put(out, keep, name);
    out[at++] = 58; // :
    out[at++] = 32;
    at = put(out, at, value);
    out[at++] = 13;
    out[at++] = 10;
    out[at++] = 13;
    out[at++] = 10;
    return composed(out, total);
  }

  private matches(startLine: string, fields: ReadonlyArray<readonly [string, string]>): boolean {
    if (startLine !== this.startLine || fields.length * 2 !== this.count) return false;
    const strings = this.strings;
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i]!;
      if (field[0] !== strings[2 * i] || field[1] !== strings[2 * i + 1]) return false;
    }
    return true;
  }

  private remember(startLine: string, fields: ReadonlyArray<readonly [string, string]>, out: Uint8Array, headLength: number): void {
    this.startLine = startLine;
    const strings = this.strings;
    for (let i = 0; i < fields.length; i++) {
      strings[2 * i] = fields[i]![0];
      strings[2 * i + 1] = fields[i]![1];
    }
    this.count = fields.length * 2;
    // A copy: `out` is the shared compose buffer.
    this.head = new Uint8Array(out.subarray(0, headLength));
  }
}

/** True when `chunk` is (a view of) the buffer `composeHead` reuses: a Conn that queues it must copy it. */
export function isComposed(chunk: Uint8Array): boolean {
  return composeStore !== undefined && chunk.buffer === composeStore.buffer;
}

/**
 * Holds the bytes of a head that has not fully arrived: a head split over
 * chunks is gathered into one buffer; a complete one (the common case: one
 * chunk) is never copied.
 */
export class HeadBuffer {
  private storage: Buffer | undefined;
  private length = 0;

  /** Bytes currently held. */
  get size(): number {
    return this.length;
  }

  /**
   * Everything received so far, ending with `chunk`. When nothing is held
   * this is `chunk` itself (no copy); otherwise `chunk` is appended.
   */
  feed(chunk: Uint8Array): Uint8Array {
    if (this.length === 0) return chunk;
    this.append(chunk);
    return this.storage!.subarray(0, this.length);
  }

  /** Keep `view` (what `feed` returned) because the head is still incomplete. */
  keep(view: Uint8Array): void {
    if (this.length === 0) this.append(view);
  }

  /** Forget the held bytes (after a head was parsed, or on error). */
  clear(): void {
    this.length = 0;
    if (this.storage && this.storage.length > 16 * 1024) this.storage = undefined;
  }

  private append(chunk: Uint8Array): void {
    const needed = this.length + chunk.length;
    if (!this.storage || this.storage.length < needed) {
      let capacity = this.storage ? this.storage.length * 2 : 4096;
      while (capacity < needed) capacity *= 2;
      const next = Buffer.allocUnsafe(capacity);
      if (this.storage && this.length > 0) this.storage.copy(next, 0, 0, this.length);
      this.storage = next;
    }
    this.storage.set(chunk, this.length);
    this.length = needed;
  }
}

/**
 * Follows a message body of known framing through a stream of chunks and
 * says where it ends, so the bytes after it (the next message on a keep-alive
 * connection) are not mistaken for body. For `chunked` the framing is
 * validated (see `ChunkedDecoder`); a proxy can forward `chunk.subarray(0, consumed)` as is.
 */
export class BodyReader {
  /** The whole body has passed. (`close` framing is done only when the caller sees the peer close.) */
  done: boolean;
  error: string | undefined;
  /** Body bytes seen (decoded bytes for chunked). */
  bytes = 0;
  readonly framing: BodyFraming;
  private remaining: number;
  private readonly decoder: ChunkedDecoder | undefined;

  constructor(framing: BodyFraming, contentLength = 0, limits?: ChunkedLimits) {
    this.framing = framing;
    this.remaining = framing === 'length' ? contentLength : 0;
    this.done = framing === 'none' || (framing === 'length' && contentLength === 0);
    this.decoder = framing === 'chunked' ? new ChunkedDecoder(limits) : undefined;
  }

  /**
   * Account for `chunk` (from `start`: the bytes after a head in the same
   * chunk, without making a view of them). Returns how many of its bytes
   * from `start` belong to the body (the rest follows the body), or -1 on a
   * chunked framing error. `sink` receives decoded data for chunked bodies
   * and the body bytes otherwise.
   */
  push(chunk: Uint8Array, sink?: ChunkSink, start = 0): number {
    if (this.done) return 0;
    switch (this.framing) {
      case 'length': {
        const take = Math.min(this.remaining, chunk.length - start);
        this.remaining -= take;
        this.bytes += take;
        if (this.remaining === 0) this.done = true;
        if (sink && take > 0) sink.onChunkData(start === 0 && take === chunk.length ? chunk : chunk.subarray(start, start + take));
        return take;
      }
      case 'chunked': {
        const decoder = this.decoder!;
        const consumed = decoder.push(start === 0 ? chunk : chunk.subarray(start), sink);
        this.bytes = decoder.bodyBytes;
        if (consumed < 0) {
          this.error = decoder.error;
          return -1;
        }
        if (decoder.done) this.done = true;
        return consumed;
      }
      case 'close': {
        const take = chunk.length - start;
        this.bytes += take;
        if (sink && take > 0) sink.onChunkData(start === 0 ? chunk : chunk.subarray(start));
        return take;
      }
      default:
        return 0;
    }
  }

  /** Trailer fields of a chunked body (empty otherwise). */
  get trailers(): ReadonlyArray<[string, string]> {
    return this.decoder?.trailers ?? [];
  }
}
