// A gRPC unary load generator on core-net's HTTP/2 client pool (one h2c
// connection per --connections, streams multiplexed): each call is a POST
// with a 10-byte gRPC message; its outcome is the grpc-status of its
// trailers (or of a trailers-only answer), a reset or a refused connect.
// Latency runs from the call to its end.
//   Closed loop: --concurrency C --calls N (C calls in flight at all times)
//   Open loop:   --rate R --seconds S (R calls a second on schedule; per-second outcomes)
// Prints one JSON line: calls, ok, failed (by reason), calls/s, p50/p99 ms.
import { Http2ClientPool } from '@wmproxy/core-net';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : fallback;
};
const [host, port] = arg('target', '127.0.0.1:8080').split(':');
const concurrency = Number(arg('concurrency', '64'));
const total = Number(arg('calls', '0'));
const rate = Number(arg('rate', '0'));
const seconds = Number(arg('seconds', '0'));
const connections = Number(arg('connections', '1'));
const deadlineMs = Number(arg('deadline-ms', '5000'));
const path = arg('path', '/bench.Echo/Unary');

const body = new Uint8Array([0, 0, 0, 0, 10, ...new TextEncoder().encode('0123456789')]);
const pools = Array.from({ length: connections }, () => new Http2ClientPool({ host, port: Number(port), maxConnections: 1, pingIntervalMs: 0, idleTimeoutMs: 0 }));
const head = { method: 'POST', path, headers: ['content-type', 'application/grpc', 'te', 'trailers'] };
const latencies = [];
const failed = {};
let ok = 0;
let started = 0;
let done = 0;
const perSecond = [];
const t0 = performance.now();

function record(second, good, reason) {
  const slot = (perSecond[second] ??= { ok: 0, failed: 0 });
  if (good) {
    ok++;
    slot.ok++;
  } else {
    failed[reason] = (failed[reason] ?? 0) + 1;
    slot.failed++;
  }
}

/** One call; resolves when it ended. */
function call() {
  const sent = performance.now();
  const second = Math.floor((sent - t0) / 1000);
  const pool = pools[started++ % connections];
  return new Promise((resolve) => {
    pool.request(
      head,
      {
        data() {},
        close(c, error) {
          done++;
          latencies.push(performance.now() - sent);
          if (error) record(second, false, `reset ${error.code}`);
          else {
            const status = grpcStatus(c.trailers) ?? grpcStatus(c.response?.headers);
            if (c.response?.status !== 200) record(second, false, `http ${c.response?.status}`);
            else if (status === '0') record(second, true);
            else record(second, false, `grpc-status ${status}`);
          }
          resolve();
        },
      },
      { body, deadlineMs },
    );
  });
}

function grpcStatus(fields) {
  if (!fields) return undefined;
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === 'grpc-status') return fields[i + 1];
  return undefined;
}

await Promise.all(pools.map((pool) => pool.ready()));
if (rate > 0) {
  // Open loop: calls leave on schedule, whatever the answers.
  const end = t0 + seconds * 1000;
  const inFlight = new Set();
  let due = t0;
  while (performance.now() < end) {
    const now = performance.now();
    while (due <= now) {
      const p = call();
      inFlight.add(p);
      p.then(() => inFlight.delete(p));
      due += 1000 / rate;
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(inFlight);
} else {
  const worker = async () => {
    while (started < total) await call();
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}
const elapsed = (performance.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p) => Number((latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN).toFixed(2));
for (const pool of pools) pool.destroy();
console.log(JSON.stringify({ calls: done, ok, failed, rps: Math.round(done / elapsed), p50: pct(0.5), p99: pct(0.99), max: pct(1), perSecond: rate > 0 ? perSecond : undefined }));
process.exit(0);
