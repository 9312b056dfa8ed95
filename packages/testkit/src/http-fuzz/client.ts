import net from 'node:net';

/**
 * A raw client connection for the fuzzers: writes bytes exactly as given and
 * keeps everything it receives; `until()` waits (bounded, never asserted on)
 * for a condition on the received bytes or for the peer to close.
 */
export class RawClient {
  received = Buffer.alloc(0);
  /** The peer closed (FIN or reset). */
  closed = false;
  reset = false;
  private readonly socket: net.Socket;
  private waiter: (() => void) | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.waiter?.();
    });
    socket.on('end', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => {
      this.reset = true;
      this.closed = true;
      this.waiter?.();
    });
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Write and wait until the bytes are handed to the kernel (so that split writes tend to arrive as separate segments). */
  write(bytes: Buffer): Promise<void> {
    if (this.socket.destroyed || !this.socket.writable) return Promise.resolve();
    return new Promise((resolve) => this.socket.write(bytes, () => resolve()));
  }

  /** Resolve once `condition()` holds, the peer closed, or `limitMs` passed; true if the condition held. */
  until(condition: () => boolean, limitMs: number): Promise<boolean> {
    if (condition()) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(condition());
      }, limitMs);
      this.waiter = () => {
        if (condition() || this.closed) {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve(condition());
        }
      };
    });
  }

  /** Half-close our side, then wait (bounded) for the peer to close. */
  async finish(limitMs: number): Promise<void> {
    if (!this.socket.destroyed && this.socket.writable) this.socket.end();
    await this.until(() => false, limitMs);
    this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
