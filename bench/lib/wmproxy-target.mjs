// wmproxy as the abuse and soak benchmarks run it: the reverse proxy, the
// forward proxy, or both in one process, built from the packages with the
// client timeouts and connection limits of the run (the CLI commands take
// the limits as flags but keep their default timeouts of 10 s to 75 s; the
// benchmarks set one short timeout on every proxy they compare).
//
//   bun|node bench/lib/wmproxy-target.mjs '{"mode":"reverse","port":8080,"backends":[3001,3002],
//       "timeoutMs":8000,"maxConnections":4096,"maxConnectionsPerIp":100,"statsMs":0,"logLevel":"info"}'
//   mode "both" also needs "forwardPort".
// Logs go to standard error. Standard output gets a line per health event of
// the reverse proxy, whatever the log level (what the control API's /status
// and /events show): `health {"target":...,"from":...,"to":...}` and
// `eject {"target":...,"reason":...}`; and, with statsMs > 0, a line
// `stats {"rss":...,"heapUsed":...,...}` that often, taken after a full
// garbage collection (Bun.gc(true), or gc() under node --expose-gc), so that
// heapUsed is the live heap. With "leak": true it leaks on purpose (about
// 128 KiB of heap a second and a file descriptor every 2 s: a little over
// the soak benchmark's allowances in its --ci window), for its --self-test.
// Stops on SIGTERM.
import { openSync } from 'node:fs';
import { Logger, processConnections, setProcessConnectionLimit } from '@wmproxy/core-net';
import { createForwardProxyServer } from '@wmproxy/http-proxy';
import { ReverseProxy } from '@wmproxy/reverse';

const options = JSON.parse(process.argv[2] ?? '{}');
const timeoutMs = options.timeoutMs ?? 10_000;
const logger = new Logger({ level: options.logLevel ?? 'info' });
// One listener per kind here, each with its own limit (as `wmproxy reverse-proxy` and `wmproxy proxy` do).
setProcessConnectionLimit(0);
const limits = { maxConnections: options.maxConnections ?? 0, maxConnectionsPerIp: options.maxConnectionsPerIp ?? 0 };

const closers = [];
if (options.mode === 'reverse' || options.mode === 'both') {
  const proxy = new ReverseProxy({
    logger: logger.child({ service: 'reverse' }),
    timeouts: { clientHeaderMs: timeoutMs, clientBodyMs: timeoutMs, keepAliveMs: timeoutMs, firstByteMs: timeoutMs, idleMs: timeoutMs, tunnelIdleMs: timeoutMs },
    health: { panicThreshold: 50 },
    upstreams: [
      {
        name: 'app',
        servers: options.backends.map((port) => ({ address: `127.0.0.1:${port}` })),
        health: { check: { type: 'http', path: '/health' }, intervalMs: 1_000, timeoutMs: 1_000, rise: 2, fall: 3 },
      },
    ],
    servers: [{ listen: `127.0.0.1:${options.port}`, ...limits, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }],
    shutdownDeadlineMs: 1_000,
  });
  proxy.health.events.on('transition', (event) => process.stdout.write(`health ${JSON.stringify(event)}\n`));
  proxy.health.events.on('eject', (event) => process.stdout.write(`eject ${JSON.stringify(event)}\n`));
  await proxy.start();
  closers.push(() => proxy.close());
}
if (options.mode === 'forward' || options.mode === 'both') {
  const server = createForwardProxyServer({
    bind: `127.0.0.1:${options.mode === 'both' ? options.forwardPort : options.port}`,
    headerTimeoutMs: timeoutMs,
    idleTimeoutMs: timeoutMs,
    http: { keepAliveTimeoutMs: timeoutMs },
    ...limits,
    logger: logger.child({ service: 'proxy' }),
  });
  await server.start();
  closers.push(() => server.shutdown({ deadlineMs: 1_000 }));
}
logger.info('wmproxy target ready', { mode: options.mode });

if (options.statsMs > 0) {
  const fullGc = globalThis.Bun ? () => globalThis.Bun.gc(true) : globalThis.gc;
  setInterval(() => {
    fullGc?.();
    const memory = process.memoryUsage();
    const { open } = processConnections();
    process.stdout.write(`stats ${JSON.stringify({ rss: memory.rss, heapUsed: memory.heapUsed, heapTotal: memory.heapTotal, external: memory.external, arrayBuffers: memory.arrayBuffers, connections: open })}\n`);
  }, options.statsMs).unref();
}

if (options.leak) {
  const kept = [];
  setInterval(() => kept.push(new Array(4096).fill(kept.length + 0.5)), 250).unref();
  setInterval(() => kept.push(openSync('/dev/null', 'r')), 2_000).unref();
}

process.once('SIGTERM', async () => {
  await Promise.all(closers.map((close) => close()));
  process.exit(0);
});
