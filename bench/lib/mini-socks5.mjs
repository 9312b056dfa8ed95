// A minimal SOCKS5 relay (no auth, CONNECT only) built directly on
// @wmproxy/core-net: Server + connect + relay, with a hand-rolled handshake.
// It measures core-net's own relaying cost, without the socks5 package.
// Usage: bun|node bench/lib/mini-socks5.mjs PORT   (WMPROXY_RUNTIME=node forces node:net under Bun)
import { Server, connect, relay, parseAddress, runtimeReady } from '@wmproxy/core-net';

const port = Number(process.argv[2] ?? 1080);
const NO_AUTH = Uint8Array.of(5, 0);
const SUCCEEDED = Uint8Array.of(5, 0, 0, 1, 0, 0, 0, 0, 0, 0);
const FAILED = Uint8Array.of(5, 1, 0, 1, 0, 0, 0, 0, 0, 0);

/** The destination in a complete CONNECT request, or undefined while bytes are missing. */
function parseRequest(bytes) {
  if (bytes.length < 5) return undefined;
  const type = bytes[3];
  let host;
  let offset;
  if (type === 1) {
    offset = 8;
    if (bytes.length < offset + 2) return undefined;
    host = bytes.subarray(4, 8).join('.');
  } else if (type === 3) {
    offset = 5 + bytes[4];
    if (bytes.length < offset + 2) return undefined;
    host = new TextDecoder().decode(bytes.subarray(5, offset));
  } else {
    throw new Error(`address type ${type} not supported here`);
  }
  return { host, port: (bytes[offset] << 8) | bytes[offset + 1] };
}

const handshake = {
  data(conn, chunk) {
    const state = conn.userData;
    state.buffer = state.buffer.length ? Buffer.concat([state.buffer, chunk]) : Buffer.from(chunk);
    if (state.stage === 0) {
      if (state.buffer.length < 2 || state.buffer.length < 2 + state.buffer[1]) return;
      state.buffer = state.buffer.subarray(2 + state.buffer[1]);
      state.stage = 1;
      conn.write(NO_AUTH);
    }
    if (state.stage === 1) {
      let target;
      try {
        target = parseRequest(state.buffer);
      } catch {
        conn.destroy();
        return;
      }
      if (!target) return;
      state.stage = 2;
      conn.pause();
      connect({ host: target.host, port: target.port, timeoutMs: 5000 }).then(
        (upstream) => {
          conn.write(SUCCEEDED);
          conn.resume();
          relay(conn, upstream, { idleTimeoutMs: 60_000 });
        },
        () => {
          conn.write(FAILED);
          conn.end();
        },
      );
    }
  },
  close() {},
};

const runtime = await runtimeReady();
const server = await new Server({
  addresses: [parseAddress(`127.0.0.1:${port}`)],
  onConnection(conn) {
    conn.userData = { stage: 0, buffer: Buffer.alloc(0) };
    conn.setHandler(handshake);
  },
}).start();
console.log(`mini-socks5 on ${server.boundAddresses.join(' ')} (${runtime.name} sockets)`);
process.on('SIGTERM', () => {
  server.shutdown({ deadlineMs: 1000 }).then(() => process.exit(0));
});
