// One side of bench/tunnel-resume.mjs, in its own process (Bun runs the
// TypeScript sources, Node the compiled dist). Role `server`: a TLS tunnel
// server (self-signed, data connections taken at open, pool `POOL`), prints
// `{ port, fingerprint }`. Role `client`: a pinned client of it; with
// MODE=full its TLS session is never kept, so every data connection is a
// full handshake (the comparator); prints `ready` once its pool is dialled,
// and its status with the time of each data connection dial (connect, TLS,
// auth) on each `status` line read from stdin.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const onBun = typeof globalThis.Bun !== 'undefined';
const { TunnelServer, TunnelClient, parseMapSpec } = await import(onBun ? '../../packages/tunnel/src/index.ts' : '../../packages/tunnel/dist/src/index.js');
const role = process.argv[2];
const pool = Number(process.env.POOL ?? 4);

if (role === 'server') {
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'bench', stateDir: mkdtempSync(join(tmpdir(), 'wmproxy-resume-bench-')), heartbeatMs: 10_000, dataPool: pool, dataPromoteBytes: 0, logger: undefined }).start();
  console.log(JSON.stringify({ port: server.port, fingerprint: server.fingerprint }));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
} else {
  const client = new TunnelClient({
    server: `127.0.0.1:${process.env.PORT}`,
    token: 'bench',
    tls: { fingerprint: process.env.FINGERPRINT },
    mappings: [parseMapSpec(`svc=tcp:127.0.0.1:${process.env.LOCAL}:${process.env.PUBLIC}`)],
  });
  // The comparator: the client's kept session (a private field) pinned to none.
  if (process.env.MODE === 'full') Object.defineProperty(client, 'tlsSession', { get: () => undefined, set() {} });
  const dials = [];
  const dialData = client.dialData.bind(client);
  client.dialData = async (mux) => {
    const started = performance.now();
    await dialData(mux);
    dials.push(performance.now() - started);
  };
  client.start();
  await client.ready();
  while (client.status().dataConnections < pool) await new Promise((resolve) => setTimeout(resolve, 10));
  console.log('ready');
  const lines = createInterface({ input: process.stdin });
  lines.on('line', () => {
    const status = client.status();
    console.log(JSON.stringify({ dataConnections: status.dataConnections, dataResumed: status.dataResumed, dials: dials.splice(0) }));
  });
  lines.on('close', () => process.exit(0));
}
