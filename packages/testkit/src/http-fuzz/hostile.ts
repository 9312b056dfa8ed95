import net from 'node:net';
import { fuzzId } from './grammar.js';
import { refResponses } from './reference.js';

/** A request the hostile origin received. */
export interface HostileSeen {
  conn: number;
  id: string | undefined;
  method: string;
  head: string;
}

const TUNNELLED = Buffer.from('HTTP/1.1 200 OK\r\nX-Resp: tunnel\r\nContent-Length: 9\r\n\r\ntunnelled', 'latin1');
const UNKNOWN = Buffer.from('HTTP/1.1 404 Not Found\r\nX-Resp: unknown\r\nContent-Length: 0\r\n\r\n', 'latin1');

/**
 * A raw origin that answers each request for `/fz/<id>` with the scripted
 * bytes for that id, odd framing and all, in one write. It keeps the
 * connection open when a strict client would read its answer as one complete
 * response (trailing bytes and all: the proxy must then not reuse it), and
 * closes it after answers that a client could only end at close (or not at all).
 */
export class HostileOrigin {
  port = 0;
  readonly seen: HostileSeen[] = [];
  private readonly script = new Map<string, Buffer>();
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;

  private constructor() {
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  static async start(): Promise<HostileOrigin> {
    const origin = new HostileOrigin();
    await new Promise<void>((resolve) => origin.server.listen(0, '127.0.0.1', () => resolve()));
    origin.port = (origin.server.address() as net.AddressInfo).port;
    return origin;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Answer `id` with `bytes`. */
  set(id: string, bytes: Buffer): void {
    this.script.set(id, bytes);
  }

  /** Forget the script and the record; close every connection (between cases). */
  async reset(): Promise<void> {
    this.script.clear();
    this.seen.length = 0;
    const closing = [...this.sockets].map((socket) => new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.destroy();
    }));
    await Promise.all(closing);
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffer = Buffer.alloc(0);
    let done = false;
    let tunnel = false;
    socket.on('end', () => socket.end());
    socket.on('data', (chunk: Buffer) => {
      if (tunnel) {
        // Whatever comes through a tunnel reaches "another server": it answers as itself.
        this.seen.push({ conn: socket.remotePort ?? 0, id: undefined, method: 'TUNNEL', head: chunk.toString('latin1').slice(0, 200) });
        socket.write(TUNNELLED);
        return;
      }
      if (done) return;
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const headEnd = buffer.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const head = buffer.subarray(0, headEnd).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? '0');
        let end = headEnd + 4 + length;
        if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
          const last = buffer.indexOf('\r\n0\r\n\r\n', headEnd);
          const first = buffer.subarray(headEnd + 4, headEnd + 9).toString('latin1') === '0\r\n\r\n' ? headEnd + 9 : -1;
          if (first < 0 && last < 0) return;
          end = first >= 0 ? first : last + 7;
        }
        if (buffer.length < end) return;
        buffer = buffer.subarray(end);
        const [method = '', target = ''] = head.split(' ', 2);
        const id = fuzzId(target);
        this.seen.push({ conn: socket.remotePort ?? 0, id, method, head });
        const answer = (id !== undefined ? this.script.get(id) : undefined) ?? UNKNOWN;
        if (answer.length === 0) {
          // Scripted silence: read the request, close without a byte.
          done = true;
          socket.end();
          return;
        }
        socket.write(answer);
        const parsed = refResponses(answer, [method], false);
        const first = parsed.responses[0];
        if (method === 'CONNECT' && first && first.status >= 200 && first.status < 300) {
          tunnel = true;
          return;
        }
        if (parsed.error !== undefined || !first || first.framing === 'close') {
          done = true;
          socket.end();
          return;
        }
      }
    });
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
