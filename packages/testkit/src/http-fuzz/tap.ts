import net from 'node:net';

/** One connection through the tap: the bytes each way, in order. */
export interface TapConnection {
  /** The tap's local port towards the origin (the origin sees it as the peer's port). */
  originPort: number;
  /** What the proxy sent (towards the origin). */
  up: Buffer;
  /** What the origin answered. */
  down: Buffer;
}

interface Pair {
  inbound: net.Socket;
  outbound: net.Socket;
  up: Buffer[];
  down: Buffer[];
  originPort: number;
  closed: Promise<void>;
}

/**
 * A recording TCP relay in front of an origin: every connection the proxy
 * opens is relayed to `target` and both directions are kept byte for byte.
 * `settle()` ends the origin side of every connection whose proxy side has
 * gone and waits (bounded) until the origin has closed them all, so that the
 * origin has parsed everything it was sent; `take()` hands over the record.
 */
export class Tap {
  port = 0;
  private readonly server: net.Server;
  private pairs: Pair[] = [];

  private constructor(private readonly targetPort: number) {
    this.server = net.createServer({ allowHalfOpen: true }, (inbound) => this.accept(inbound));
  }

  static async start(targetPort: number): Promise<Tap> {
    const tap = new Tap(targetPort);
    await new Promise<void>((resolve) => tap.server.listen(0, '127.0.0.1', () => resolve()));
    tap.port = (tap.server.address() as net.AddressInfo).port;
    return tap;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private accept(inbound: net.Socket): void {
    inbound.pause();
    const outbound = net.connect({ port: this.targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const pair: Pair = { inbound, outbound, up: [], down: [], originPort: 0, closed: Promise.resolve() };
    let inboundGone = false;
    let outboundGone = false;
    pair.closed = new Promise<void>((resolve) => {
      const check = (): void => {
        if (inboundGone && outboundGone) resolve();
      };
      inbound.on('close', () => {
        inboundGone = true;
        // The proxy is gone: tell the origin (FIN), which then finishes and closes.
        if (!outbound.destroyed) outbound.end();
        check();
      });
      outbound.on('close', () => {
        outboundGone = true;
        if (!inbound.destroyed) inbound.end();
        check();
      });
    });
    inbound.on('error', () => inbound.destroy());
    outbound.on('error', () => outbound.destroy());
    outbound.on('connect', () => {
      pair.originPort = outbound.localPort ?? 0;
      inbound.resume();
    });
    inbound.on('data', (chunk: Buffer) => {
      pair.up.push(chunk);
      outbound.write(chunk);
    });
    inbound.on('end', () => outbound.end());
    outbound.on('data', (chunk: Buffer) => {
      pair.down.push(chunk);
      if (!inbound.destroyed) inbound.write(chunk);
    });
    outbound.on('end', () => {
      if (!inbound.destroyed) inbound.end();
    });
    this.pairs.push(pair);
  }

  /** Wait until every relayed connection is closed on both sides (the origin closes once it sees our FIN); destroy stragglers after `limitMs`. */
  async settle(limitMs = 2_000): Promise<void> {
    const pairs = this.pairs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, limitMs);
    });
    await Promise.race([Promise.all(pairs.map((pair) => pair.closed)), limit]);
    clearTimeout(timer);
    for (const pair of pairs) {
      pair.inbound.destroy();
      pair.outbound.destroy();
    }
    await Promise.all(pairs.map((pair) => pair.closed));
  }

  /** The connections recorded since the last call. */
  take(): TapConnection[] {
    const out = this.pairs.map((pair) => ({ originPort: pair.originPort, up: Buffer.concat(pair.up), down: Buffer.concat(pair.down) }));
    this.pairs = this.pairs.filter((pair) => !pair.inbound.destroyed || !pair.outbound.destroyed);
    return out;
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) {
      pair.inbound.destroy();
      pair.outbound.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
