// core-net's Relay as a two-hop TLS relay, for bench/relay-tls.mjs: the path one tunnel data connection per
// visitor takes, without the tunnel. Runs on Bun (src) or Node (dist) with the core-net of any checkout:
//   bun|node bench/lib/relay-pair-core.mjs TREE far LOCAL_PORT       -> prints {"control":N}
//   bun|node bench/lib/relay-pair-core.mjs TREE near CONTROL_PORT PUBLIC_PORT
// far: TLS in, plain out (relay B); near: plain in, TLS out (relay A). Relay's default idle timeout stays on, as
// in the tunnel.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [tree, role, a, b] = process.argv.slice(2);
const isBun = typeof globalThis.Bun !== 'undefined';
const entry = join(tree, 'packages/core-net', isBun ? 'src/index.ts' : 'dist/src/index.js');
const { connect, createSelfSignedCertificate, Relay, runtime, runtimeReady, setRuntime, nodeRuntime } = await import(pathToFileURL(entry).href);
await runtimeReady();
// RELAY_RUNTIME=node: core-net's node:net/node:tls runtime, on Bun too (Bun's node:tls, as SNI listeners use).
if (process.env.RELAY_RUNTIME === 'node') setRuntime(nodeRuntime);
// RELAY_STATS=1: on SIGTERM, print (stderr) how many data events and writes each side of each relay saw, and
// their mean sizes (what the runtime reads and writes at a time).
const stats = process.env.RELAY_STATS ? new Map() : undefined;
function count(conn, name) {
  if (!stats) return;
  const row = { name, reads: 0, readBytes: 0, writes: 0, writeBytes: 0, full: 0 };
  stats.set(conn, row);
  const { write } = conn;
  conn.write = (chunk) => {
    row.writes++;
    row.writeBytes += chunk.byteLength;
    const ok = write.call(conn, chunk);
    if (!ok) row.full++;
    return ok;
  };
  const install = conn.setHandler.bind(conn);
  conn.setHandler = (handler, unread) => {
    const data = handler.data;
    install({ ...handler, data: (c, chunk) => (row.reads++, (row.readBytes += chunk.byteLength), data(c, chunk)) }, unread);
  };
}

// Knobs, to try what the relay could do differently without changing core-net:
//   RELAY_SPLIT=N    write each chunk as slices of at most N bytes (RELAY_SPLIT_SIDE=tls or plain: on that side only);
//   RELAY_NODELAY=0  leave Nagle on (core-net's runtimes turn it off on every socket).
const split = Number(process.env.RELAY_SPLIT ?? 0);
const splitSide = process.env.RELAY_SPLIT_SIDE;
const noDelay = process.env.RELAY_NODELAY !== '0';
function splitWrites(conn) {
  const write = conn.write.bind(conn);
  conn.write = (chunk) => {
    let ok = true;
    for (let at = 0; at < chunk.byteLength; at += split) ok = write(chunk.subarray(at, at + split));
    return ok;
  };
}

function pair(conn, target, tls) {
  conn.setNoDelay(noDelay);
  connect({ host: '127.0.0.1', port: target, ...(tls ? { tls: { rejectUnauthorized: false } } : {}) }).then(
    (upstream) => {
      upstream.setNoDelay(noDelay);
      if (split > 0) {
        // conn is the plain side on `near` (tls: out is TLS), the TLS side on `far`.
        const [plainSide, tlsSide] = tls ? [conn, upstream] : [upstream, conn];
        if (splitSide !== 'tls') splitWrites(plainSide);
        if (splitSide !== 'plain') splitWrites(tlsSide);
      }
      count(conn, `${role} in${tls ? '' : ' (tls)'}`);
      count(upstream, `${role} out${tls ? ' (tls)' : ''}`);
      new Relay(conn, upstream);
    },
    () => conn.destroy(),
  );
}

if (role === 'far') {
  const cert = createSelfSignedCertificate();
  const local = Number(a);
  const listener = await runtime().listen({ host: '127.0.0.1', port: 0, tls: { cert: cert.cert, key: cert.key }, onConnection: (conn) => pair(conn, local, false) });
  console.log(JSON.stringify({ control: listener.port }));
} else {
  const control = Number(a);
  await runtime().listen({ host: '127.0.0.1', port: Number(b), onConnection: (conn) => pair(conn, control, true) });
  console.log(JSON.stringify({ ready: true }));
}
process.on('SIGTERM', () => {
  for (const row of stats?.values() ?? []) {
    const mean = (bytes, n) => (n ? (bytes / n / 1024).toFixed(1) : '-');
    process.stderr.write(`${row.name}: ${row.reads} reads of ${mean(row.readBytes, row.reads)} KiB, ${row.writes} writes of ${mean(row.writeBytes, row.writes)} KiB, ${row.full} full\n`);
  }
  process.exit(0);
});
