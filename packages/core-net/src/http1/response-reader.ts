import { HeadBuffer } from './buffer.js';
import { parseResponseHead, type ResponseHead, type ResponseParseOptions } from './head.js';

/** What a `ResponseHeadReader` reports, in order: interim heads, then one final head or an error. */
export interface ResponseHeadSink {
  /** An interim response (100 Continue, 103 Early Hints; not 101): the final one is still to come. */
  onInterim(head: ResponseHead): void;
  /**
   * The final head, or a 101. What follows it in the same read (body bytes,
   * or the switched protocol's first bytes) is `chunk` from `start`: valid
   * during this call only (it may be the reader's own buffer).
   */
  onFinal(head: ResponseHead, chunk: Uint8Array, start: number): void;
  /** The head is malformed: the connection cannot be trusted any more. */
  onBadHead(reason: string): void;
}

/** One options object for every parse (read synchronously by the parser). */
const options: ResponseParseOptions = { requestMethod: undefined };

/**
 * Reads the response heads that answer one request from a connection's
 * reads: any number of 1xx interim heads, then the final head (the body is
 * the caller's, through a `BodyReader`). A head split over reads is gathered
 * in a buffer that exists only while a head is partial, so a reader that is
 * not mid-head holds no bytes. Shared by the reverse proxy's exchange and the
 * forward proxy's session.
 */
export class ResponseHeadReader {
  private buffer: HeadBuffer | undefined = undefined;

  /** Bytes of a partial head held (0: none, so a response has not begun). */
  get pending(): number {
    return this.buffer === undefined ? 0 : this.buffer.size;
  }

  /** Forget a partial head (the connection is dropped, or the request is sent elsewhere). */
  clear(): void {
    this.buffer = undefined;
  }

  /**
   * Read `chunk` for a request sent with `method` (HEAD and CONNECT change
   * the framing). Calls the sink for each head it completes; stops after the
   * final head or an error. Nothing is reported while the head is partial.
   */
  push(chunk: Uint8Array, method: string, sink: ResponseHeadSink): void {
    let view = this.buffer === undefined ? chunk : this.buffer.feed(chunk);
    for (;;) {
      options.requestMethod = method;
      const result = parseResponseHead(view, options);
      if (result.kind === 'incomplete') {
        (this.buffer ??= new HeadBuffer()).keep(view);
        return;
      }
      if (result.kind === 'error') {
        this.buffer = undefined;
        sink.onBadHead(result.reason);
        return;
      }
      const head = result.head;
      if (head.status >= 200 || head.status === 101) {
        // `view` may be the buffer's storage: still valid, as the buffer is only dropped here.
        this.buffer = undefined;
        sink.onFinal(head, view, result.consumed);
        return;
      }
      // A copy (a Buffer's `slice` is a view): the read buffer may be reused.
      const rest = view.byteLength > result.consumed ? Uint8Array.prototype.slice.call(view, result.consumed) : undefined;
      this.buffer = undefined;
      sink.onInterim(head);
      if (rest === undefined) return;
      view = rest;
    }
  }
}

/**
 * May the connection carry another exchange after this one? Only when the
 * response said keep-alive, its end was delimited by its framing (not the
 * close), the request body was wholly sent, and nothing followed the
 * response (a server that sends more than it framed cannot be trusted).
 */
export function connectionReusable(head: ResponseHead, requestBodyDone: boolean, trailingBytes: boolean): boolean {
  return head.keepAlive && head.framing !== 'close' && requestBodyDone && !trailingBytes;
}
