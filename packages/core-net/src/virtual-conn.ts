import { ConnBase } from './conn-base.js';
import { NetError } from './errors.js';
import type { Conn } from './types.js';

/**
 * The base of connections that are not sockets: a tunnel stream, an HTTP/2
 * stream, one end of an in-memory pair. Subclasses implement how bytes
 * leave (`write`, `end`, `destroy`) and flow control (`pause`, `resume`),
 * and deliver what arrives with `dispatchData`, `dispatchEnd` and
 * `dispatchClose`; handler switching, early buffering and `releaseConn`
 * work as for sockets.
 */
export abstract class VirtualConn extends ConnBase {
  remoteAddress = '';
  remotePort = 0;
  localAddress = '';
  localPort = 0;
  bytesRead = 0;
  bytesWritten = 0;
  servername: string | undefined = undefined;

  showPeer(address: string, port: number): void {
    this.remoteAddress = address;
    this.remotePort = port;
  }

  setNoDelay(): void {
    // Nothing to batch: a virtual stream writes through to its carrier.
  }

  /** Show the addresses of the connection this stream travels in (an HTTP/2 stream's, a tunnel's). */
  protected addressesOf(carrier: Conn): void {
    this.remoteAddress = carrier.remoteAddress;
    this.remotePort = carrier.remotePort;
    this.localAddress = carrier.localAddress;
    this.localPort = carrier.localPort;
  }
}

export const DEFAULT_PAIR_HIGH_WATER_MARK = 64 * 1024;

/**
 * One end of an in-memory duplex. Written bytes are delivered to the peer
 * on a microtask; while the peer is paused they queue on this side, and
 * `write` returns false above the high-water mark until the peer resumes
 * and drains them (the same contract as a socket, so bridges and engines
 * can be tested without the kernel).
 */
class PairEnd extends VirtualConn {
  peer!: PairEnd;
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  private paused = false;
  private ending = false;
  private ended = false;
  private needDrain = false;
  private scheduled = false;

  constructor(private readonly highWaterMark: number) {
    super();
    this.remoteAddress = this.localAddress = 'memory';
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed || this.ending) return false;
    if (chunk.byteLength === 0) return this.queued < this.highWaterMark;
    this.queue.push(chunk);
    this.queued += chunk.byteLength;
    this.bytesWritten += chunk.byteLength;
    this.schedule();
    if (this.queued >= this.highWaterMark) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.schedule();
  }

  destroy(error?: Error): void {
    if (this.closed) return;
    this.queue.length = 0;
    this.queued = 0;
    this.dispatchClose(error);
    const peer = this.peer;
    if (!peer.closed) queueMicrotask(() => peer.dispatchClose(error ? new NetError('ECONNRESET', 'peer reset the in-memory stream') : undefined));
  }

  pause(): void {
    this.peer.paused = true;
  }

  resume(): void {
    const writer = this.peer;
    if (!writer.paused) return;
    writer.paused = false;
    writer.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Deliver what this end wrote to its peer, as far as the peer accepts. */
  private flush(): void {
    this.scheduled = false;
    const peer = this.peer;
    while (this.queue.length > 0 && !this.paused && !peer.closed) {
      const chunk = this.queue.shift()!;
      this.queued -= chunk.byteLength;
      peer.bytesRead += chunk.byteLength;
      peer.dispatchData(chunk);
    }
    if (this.queue.length === 0 && this.ending && !this.ended && !peer.closed) {
      this.ended = true;
      peer.dispatchEnd();
      // Both directions finished: the pair is done, as a socket closes after FIN both ways.
      if (peer.ended) {
        this.dispatchClose(undefined);
        peer.dispatchClose(undefined);
      }
    }
    if (this.needDrain && this.queued < this.highWaterMark && !this.closed) {
      this.needDrain = false;
      this.handler.drain?.(this);
    }
  }
}

/** Two connected in-memory `Conn`s. */
export function connPair(highWaterMark = DEFAULT_PAIR_HIGH_WATER_MARK): [Conn, Conn] {
  const a = new PairEnd(highWaterMark);
  const b = new PairEnd(highWaterMark);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
