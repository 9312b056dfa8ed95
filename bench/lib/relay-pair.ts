// The ceiling of a two-hop JS relay on Bun, for bench/tunnel.mjs (`--only relay-tcp,relay-tls,relay-mux`): the
// least code that carries a visitor's bytes through two Bun processes, on Bun's native sockets (no core-net, no
// stream layer, no handshake), so that what wmproxy's tunnel costs beyond it shows.
//   bun bench/lib/relay-pair.ts far MODE LOCAL_PORT     -> prints {"control":N}
//   bun bench/lib/relay-pair.ts near MODE CONTROL_PORT PUBLIC_PORT
// MODE:
//   tcp  one plain TCP connection near -> far per visitor;
//   tls  the same with TLS between them;
//   mux  every visitor over one TLS connection: frames of [u32 id][u32 length][payload] (length 0: the visitor
//        closed), written once per event-loop turn (setImmediate) in one write. No flow control and no bound on
//        what is queued: a measurement of the request path's floor, not a design (run only its HTTP phase).
import { createSelfSignedCertificate } from '@wmproxy/core-net';
import type { Socket } from 'bun';

const [role, mode, a, b] = process.argv.slice(2) as [string, string, string, string];
const cert = createSelfSignedCertificate();
const serverTls = mode === 'tcp' ? undefined : { cert: cert.cert, key: cert.key };
const clientTls = mode === 'tcp' ? undefined : { rejectUnauthorized: false };

/** A socket's write remainder, then its peer paused until it drains. */
interface Side {
  peer: Socket<Side> | undefined;
  pending: Uint8Array[];
  early: Uint8Array[];
  id: number;
}

function side(): Side {
  return { peer: undefined, pending: [], early: [], id: 0 };
}

function send(socket: Socket<Side>, chunk: Uint8Array, source: Socket<Side> | undefined): void {
  const state = socket.data;
  if (state.pending.length > 0) {
    state.pending.push(chunk);
    return;
  }
  const sent = socket.write(chunk);
  if (sent < chunk.byteLength) {
    state.pending.push(chunk.subarray(Math.max(sent, 0)));
    source?.pause();
  }
}

function drain(socket: Socket<Side>): void {
  const state = socket.data;
  while (state.pending.length > 0) {
    const head = state.pending[0]!;
    const sent = socket.write(head);
    if (sent < head.byteLength) {
      state.pending[0] = head.subarray(Math.max(sent, 0));
      return;
    }
    state.pending.shift();
  }
  state.peer?.resume();
}

/** Both sockets of a pair, bytes both ways. */
const pairHandlers = {
  open(socket: Socket<Side>) {
    socket.setNoDelay(true);
  },
  data(socket: Socket<Side>, chunk: Uint8Array) {
    const peer = socket.data.peer;
    if (peer) send(peer, chunk, socket);
    else socket.data.early.push(new Uint8Array(chunk));
  },
  drain,
  end(socket: Socket<Side>) {
    socket.data.peer?.end();
  },
  close(socket: Socket<Side>) {
    socket.data.peer?.end();
  },
  error() {},
};

function link(x: Socket<Side>, y: Socket<Side>): void {
  x.data.peer = y;
  y.data.peer = x;
  for (const chunk of x.data.early.splice(0)) send(y, chunk, x);
  for (const chunk of y.data.early.splice(0)) send(x, chunk, y);
}

function dialPair(visitor: Socket<Side>, port: number, tls: typeof clientTls): void {
  void Bun.connect<Side>({ hostname: '127.0.0.1', port, data: side(), ...(tls ? { tls } : {}), socket: pairHandlers } as never).then(
    (upstream: Socket<Side>) => link(visitor, upstream),
    () => visitor.end(),
  );
}

// ---- mux mode -----------------------------------------------------------------

let tunnel: Socket<Side> | undefined;
const streams = new Map<number, Socket<Side>>();
let out: Uint8Array[] = [];
let outBytes = 0;
let scheduled = false;

function frame(id: number, payload: Uint8Array | undefined): void {
  const header = new Uint8Array(8);
  const view = new DataView(header.buffer);
  view.setUint32(0, id);
  view.setUint32(4, payload?.byteLength ?? 0);
  out.push(header);
  outBytes += 8;
  if (payload) {
    out.push(new Uint8Array(payload));
    outBytes += payload.byteLength;
  }
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}

function flush(): void {
  scheduled = false;
  if (!tunnel || outBytes === 0) return;
  const batch = Buffer.concat(out, outBytes);
  out = [];
  outBytes = 0;
  send(tunnel, batch, undefined);
}

/** Streams of the far side whose connect to the local service is under way: their bytes, copied. */
const connecting = new Map<number, Uint8Array[]>();

/** Tunnel bytes in: frames out to their streams (a partial frame waits for the rest). */
let inbuf = new Uint8Array(0);
function fromTunnel(chunk: Uint8Array, onOpen: ((id: number) => void) | undefined): void {
  const buf = inbuf.byteLength > 0 ? Buffer.concat([inbuf, chunk]) : chunk;
  let at = 0;
  while (buf.byteLength - at >= 8) {
    const view = new DataView(buf.buffer, buf.byteOffset + at, 8);
    const id = view.getUint32(0);
    const length = view.getUint32(4);
    if (buf.byteLength - at - 8 < length) break;
    const payload = buf.subarray(at + 8, at + 8 + length);
    at += 8 + length;
    const early = connecting.get(id);
    if (early) {
      early.push(length === 0 ? new Uint8Array(0) : new Uint8Array(payload));
      continue;
    }
    const stream = streams.get(id);
    if (length === 0) {
      streams.delete(id);
      stream?.end();
    } else if (stream) send(stream, payload, undefined);
    else if (onOpen) {
      connecting.set(id, [new Uint8Array(payload)]);
      onOpen(id);
    }
  }
  inbuf = at < buf.byteLength ? new Uint8Array(buf.subarray(at)) : new Uint8Array(0);
}

const streamHandlers = {
  open(socket: Socket<Side>) {
    socket.setNoDelay(true);
  },
  data(socket: Socket<Side>, chunk: Uint8Array) {
    frame(socket.data.id, chunk);
  },
  drain,
  end(socket: Socket<Side>) {
    if (streams.delete(socket.data.id)) frame(socket.data.id, undefined);
    socket.end();
  },
  close(socket: Socket<Side>) {
    if (streams.delete(socket.data.id)) frame(socket.data.id, undefined);
  },
  error() {},
};

// ---- roles --------------------------------------------------------------------

if (role === 'far') {
  const local = Number(a);
  const listener = Bun.listen<Side>({
    hostname: '127.0.0.1',
    port: 0,
    ...(serverTls ? { tls: serverTls } : {}),
    socket:
      mode === 'mux'
        ? {
            open(socket: Socket<Side>) {
              socket.data = side();
              socket.setNoDelay(true);
              tunnel = socket;
            },
            data(_socket: Socket<Side>, chunk: Uint8Array) {
              fromTunnel(chunk, (id) => {
                void Bun.connect<Side>({ hostname: '127.0.0.1', port: local, data: { ...side(), id }, socket: streamHandlers } as never).then(
                  (socket: Socket<Side>) => {
                    const early = connecting.get(id) ?? [];
                    connecting.delete(id);
                    streams.set(id, socket);
                    for (const piece of early) {
                      if (piece.byteLength === 0) {
                        streams.delete(id);
                        socket.end();
                      } else send(socket, piece, undefined);
                    }
                  },
                  () => {
                    connecting.delete(id);
                    frame(id, undefined);
                  },
                );
              });
            },
            drain,
            close() {
              process.exit(0);
            },
            error() {},
          }
        : {
            ...pairHandlers,
            open(socket: Socket<Side>) {
              socket.data = side();
              socket.setNoDelay(true);
              dialPair(socket, local, undefined);
            },
          },
  } as never);
  console.log(JSON.stringify({ control: (listener as { port: number }).port }));
} else {
  const control = Number(a);
  const publicPort = Number(b);
  if (mode === 'mux') {
    tunnel = await Bun.connect<Side>({
      hostname: '127.0.0.1',
      port: control,
      data: side(),
      tls: clientTls,
      socket: {
        open(socket: Socket<Side>) {
          socket.setNoDelay(true);
        },
        data(_socket: Socket<Side>, chunk: Uint8Array) {
          fromTunnel(chunk, undefined);
        },
        drain,
        close() {
          process.exit(0);
        },
        error() {},
      },
    } as never);
  }
  let nextId = 1;
  Bun.listen<Side>({
    hostname: '127.0.0.1',
    port: publicPort,
    socket:
      mode === 'mux'
        ? {
            ...streamHandlers,
            open(socket: Socket<Side>) {
              socket.data = { ...side(), id: nextId++ };
              socket.setNoDelay(true);
              streams.set(socket.data.id, socket);
            },
          }
        : {
            ...pairHandlers,
            open(socket: Socket<Side>) {
              socket.data = side();
              socket.setNoDelay(true);
              dialPair(socket, control, clientTls);
            },
          },
  } as never);
}
process.on('SIGTERM', () => process.exit(0));
