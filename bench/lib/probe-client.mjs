// The well-behaved client of the abuse benchmark, in its own process (so that
// the abusers' event loop does not delay it): open-loop GETs at a fixed rate
// over a few keep-alive connections, plus a lower rate of requests that each
// open a new connection (`Connection: close`), as new visitors do. Latency
// runs from the scheduled send time to the last byte of the answer (a request
// waiting for a free connection counts its wait). With `directPort`, a
// quarter of `rate` also goes straight to that backend: the same latency
// without the proxy, in the same seconds, shows how much of a slow second
// was the shared machine. Driven over IPC by the benchmark (child_process.fork):
//   {type: 'start', port, requestTarget, host, rate, newRate, directPort}   (connections come from 127.0.0.1, which the abusers never use)
//   {type: 'mark'}  -> replies {type: 'phase', keepAlive, fresh, direct} (stats) for the samples since the last mark
//   {type: 'stop'}  -> exits
// stats: {count, p50, p99, max, errors, codes}.
import { LoadClient, percentile } from '../reverse-common.mjs';
import { RoundRobinClient } from './round-robin-client.mjs';

let keepAlive;
let fresh;
let direct;
let samples = { keepAlive: [], fresh: [], direct: [] };
let errors = { keepAlive: {}, fresh: {}, direct: {} };
let timer;

function summary(latencies, failed) {
  const sorted = [...latencies].sort((a, b) => a - b);
  const errorCount = Object.values(failed).reduce((sum, n) => sum + n, 0);
  return { count: sorted.length + errorCount, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? NaN, errors: errorCount, codes: failed };
}

function send(client, kind) {
  const scheduled = performance.now();
  client.request((status, error) => {
    if (status === 200) samples[kind].push(performance.now() - scheduled);
    else {
      const code = error ?? `HTTP ${status}`;
      errors[kind][code] = (errors[kind][code] ?? 0) + 1;
    }
  });
}

function start({ port, requestTarget = '/', host, rate = 200, newRate = 20, directPort }) {
  const head = (close) => Buffer.from(`GET ${requestTarget} HTTP/1.1\r\nHost: ${host ?? `127.0.0.1:${port}`}\r\nUser-Agent: wmproxy-bench-probe\r\n${close ? 'Connection: close\r\n' : ''}\r\n`, 'latin1');
  keepAlive = new RoundRobinClient({ port, maxConns: 16, timeoutMs: 5_000 });
  keepAlive.head = head(false);
  fresh = new LoadClient({ port, maxConns: 64, timeoutMs: 5_000 });
  fresh.head = head(true);
  if (directPort) direct = new RoundRobinClient({ port: directPort, maxConns: 4, timeoutMs: 5_000 });
  const t0 = performance.now();
  let sentKeepAlive = 0;
  let sentFresh = 0;
  let sentDirect = 0;
  // Every 2 ms, send what the schedule says is due (open loop: a slow answer does not delay the next request).
  timer = setInterval(() => {
    const elapsed = (performance.now() - t0) / 1000;
    for (const due = Math.floor(elapsed * rate); sentKeepAlive < due; sentKeepAlive++) send(keepAlive, 'keepAlive');
    for (const due = Math.floor(elapsed * newRate); sentFresh < due; sentFresh++) send(fresh, 'fresh');
    if (direct) for (const due = Math.floor((elapsed * rate) / 4); sentDirect < due; sentDirect++) send(direct, 'direct');
  }, 2);
}

process.on('message', (message) => {
  if (message.type === 'start') start(message);
  else if (message.type === 'mark') {
    const reply = { type: 'phase', keepAlive: summary(samples.keepAlive, errors.keepAlive), fresh: summary(samples.fresh, errors.fresh), direct: summary(samples.direct, errors.direct) };
    samples = { keepAlive: [], fresh: [], direct: [] };
    errors = { keepAlive: {}, fresh: {}, direct: {} };
    process.send(reply);
  } else if (message.type === 'stop') {
    clearInterval(timer);
    keepAlive?.close();
    fresh?.close();
    direct?.close();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
