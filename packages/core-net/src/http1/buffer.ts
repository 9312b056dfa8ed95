import { ChunkedDecoder, type ChunkedLimits, type ChunkSink } from './chunked.js';
import type { BodyFraming } from './head.js';

/**
 * Holds the bytes of a head that has not fully arrived. Chunks delivered by
 * a Conn are only valid during the `data` call, so a partial head must be
 * copied; a complete one (the common case: one chunk) never is.
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
   * Account for `chunk`. Returns how many of its bytes belong to the body
   * (the rest follows the body), or -1 on a chunked framing error. `sink`
   * receives decoded data for chunked bodies and the body bytes otherwise.
   */
  push(chunk: Uint8Array, sink?: ChunkSink): number {
    if (this.done) return 0;
    switch (this.framing) {
      case 'length': {
        const take = Math.min(this.remaining, chunk.length);
        this.remaining -= take;
        this.bytes += take;
        if (this.remaining === 0) this.done = true;
        if (sink && take > 0) sink.onChunkData(take === chunk.length ? chunk : chunk.subarray(0, take));
        return take;
      }
      case 'chunked': {
        const decoder = this.decoder!;
        const consumed = decoder.push(chunk, sink);
        this.bytes = decoder.bodyBytes;
        if (consumed < 0) {
          this.error = decoder.error;
          return -1;
        }
        if (decoder.done) this.done = true;
        return consumed;
      }
      case 'close':
        this.bytes += chunk.length;
        if (sink && chunk.length > 0) sink.onChunkData(chunk);
        return chunk.length;
      default:
        return 0;
    }
  }

  /** Trailer fields of a chunked body (empty otherwise). */
  get trailers(): ReadonlyArray<[string, string]> {
    return this.decoder?.trailers ?? [];
  }
}
