import { VirtualConn } from '../virtual-conn.js';
import { NetError } from '../errors.js';
import { ErrorCode } from './constants.js';
import type { Http2Stream, Http2StreamError, Http2StreamHandler } from './session.js';

/**
 * One HTTP/2 stream's body as a core-net `Conn`: for tunnels (CONNECT over
 * HTTP/2, RFC 9113 §8.5) and anything that relays bytes (`relay()`). The
 * head must already be sent (server: `respond`; client: `session.request`).
 * `write`/`end` are DATA and END_STREAM, `pause`/`resume` hold the peer's
 * window, `destroy` resets the stream (CANCEL); the peer's reset closes the
 * Conn with ECONNRESET.
 */
export class Http2StreamConn extends VirtualConn {
  constructor(readonly stream: Http2Stream) {
    super();
    this.addressesOf(stream.session.conn);
    stream.userData = this;
    stream.setHandler(streamHandler);
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed) return false;
    this.bytesWritten += chunk.byteLength;
    return this.stream.write(chunk);
  }

  end(): void {
    if (!this.closed) this.stream.end();
  }

  destroy(error?: Error): void {
    if (this.closed) return;
    this.stream.reset(ErrorCode.CANCEL);
    // reset() closed the stream: its close handler ran dispatchClose, with the CANCEL error.
    if (!this.closed) this.dispatchClose(error);
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }
}

const streamHandler: Http2StreamHandler = {
  data(stream, chunk) {
    const conn = stream.userData as Http2StreamConn;
    conn.bytesRead += chunk.byteLength;
    conn.dispatchData(chunk);
  },
  end(stream) {
    (stream.userData as Http2StreamConn).dispatchEnd();
  },
  drain(stream) {
    const conn = stream.userData as Http2StreamConn;
    conn.handler.drain?.(conn);
  },
  close(stream, error?: Http2StreamError) {
    const conn = stream.userData as Http2StreamConn;
    conn.dispatchClose(error && error.code !== ErrorCode.NO_ERROR ? new NetError('ECONNRESET', error.message) : undefined);
  },
};
