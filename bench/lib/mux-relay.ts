// The multiplexer alone, for profiling it apart from the CLI: @wmproxy/tunnel's Mux over one TLS connection between
// two Bun processes (no handshake, no mappings, no auth), core-net relay on both ends. `node bench/tunnel.mjs
// --only mux-bun` runs it as an extra row. MUX_WINDOW, MUX_HIGH_WATER (bytes) and MUX_TLS=0 try other settings.
//   bun bench/lib/mux-relay.ts server PUBLIC_PORT   -> prints {"control":N}
//   bun bench/lib/mux-relay.ts client CONTROL_PORT LOCAL_PORT
import { connect, createSelfSignedCertificate, relay, runtime, runtimeReady, type Conn } from '@wmproxy/core-net';
import { Mux } from '@wmproxy/tunnel';

const window = Number(process.env.MUX_WINDOW ?? 0) || undefined;
const highWater = Number(process.env.MUX_HIGH_WATER ?? 0) || undefined;
const tls = process.env.MUX_TLS !== '0';
await runtimeReady();
const [role, a, b] = process.argv.slice(2);
if (role === 'server') {
  const cert = createSelfSignedCertificate();
  let mux: Mux | undefined;
  const control = await runtime().listen({
    host: '127.0.0.1', port: 0, ...(tls ? { tls: { cert: cert.cert, key: cert.key } } : {}),
    onConnection(conn) {
      mux = new Mux(conn, { side: 'server', initialWindow: window, streamHighWater: highWater });
      mux.established = true;
      mux.setEvents({});
    },
  });
  await runtime().listen({
    host: '127.0.0.1', port: Number(a),
    onConnection(conn: Conn) {
      conn.setNoDelay(true);
      mux!.open(new Uint8Array(0)).then((stream) => void relay(conn, stream, { idleTimeoutMs: 0 }), () => conn.destroy());
    },
  });
  console.log(JSON.stringify({ control: control.port }));
} else {
  const conn = await connect({ host: '127.0.0.1', port: Number(a), ...(tls ? { tls: { rejectUnauthorized: false } } : {}) });
  const mux = new Mux(conn, { side: 'client', initialWindow: window, streamHighWater: highWater });
  mux.established = true;
  mux.setEvents({
    open(_m, stream) {
      connect({ host: '127.0.0.1', port: Number(b) }).then((local) => {
        local.setNoDelay(true);
        stream.accept();
        void relay(stream, local, { idleTimeoutMs: 0 });
      }, () => stream.reject('refused'));
    },
  });
}
// Exit (and so write a --cpu-prof profile) on SIGTERM.
process.on('SIGTERM', () => process.exit(0));
