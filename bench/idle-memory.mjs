// Memory held per idle keep-alive client connection of the reverse proxy.
// Usage: bun bench/idle-memory.mjs [connections=5000] [--no-request]
//        node --expose-gc bench/idle-memory.mjs [...]
// The proxy runs in this process; the backend and the clients in a child
// (node), so RSS here is the proxy's. Each client sends one GET, reads the
// answer and stays open (with --no-request: only connects). Prints the RSS
// and heap growth divided by the number of connections.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ReverseProxy } from '@wmproxy/reverse';

const child = process.argv[2] === '--child';
if (child) {
  // Backend, then clients.
  const http = await import('node:http');
  const net = await import('node:net');
  const backend = http.createServer((_req, res) => res.end('ok'));
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  process.send({ backend: `127.0.0.1:${backend.address().port}` });
  process.on('message', async ({ port, n, request }) => {
    const sockets = [];
    const batch = 100;
    for (let i = 0; i < n; i += batch) {
      await Promise.all(
        Array.from({ length: Math.min(batch, n - i) }, () => new Promise((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1');
          sockets.push(socket);
          socket.on('error', reject);
          if (!request) return socket.on('connect', resolve);
          socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: app\r\nUser-Agent: idle-memory\r\n\r\n'));
          socket.once('data', () => resolve());
        })),
      );
    }
    process.send({ open: sockets.length });
  });
} else {
  const n = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 5000);
  const request = !process.argv.includes('--no-request');
  const proc = spawn('node', [fileURLToPath(import.meta.url), '--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = () => new Promise((resolve) => proc.once('message', resolve));
  const { backend } = await next();
  const proxy = new ReverseProxy({
    requestHedgeMs: 0,
    timeouts: { keepAliveMs: 600_000 },
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }],
    upstreams: [{ name: 'app', servers: [{ address: backend }] }],
  });
  await proxy.start();
  const port = Number(proxy.addresses[0].split(':').pop());
  const gc = () => (typeof Bun !== 'undefined' ? Bun.gc(true) : globalThis.gc?.());
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  // Warm up (JIT, shared buffers), then measure.
  proc.send({ port, n: 200, request });
  await next();
  await settle();
  // TYPES=1 (Bun): also the heap objects per connection, by type.
  const types = async () => (process.env.TYPES && typeof Bun !== 'undefined' ? (await import('bun:jsc')).heapStats().objectTypeCounts : {});
  const typesBefore = await types();
  const before = process.memoryUsage();
  proc.send({ port, n, request });
  await next();
  await settle();
  const after = process.memoryUsage();
  const typesAfter = await types();
  const objects = Object.entries(typesAfter)
    .map(([type, count]) => [type, Math.round(((count - (typesBefore[type] ?? 0)) / n) * 100) / 100])
    .filter(([, perConn]) => perConn >= 0.5);
  const per = (key) => Math.round((after[key] - before[key]) / n);
  console.log(JSON.stringify({ runtime: typeof Bun !== 'undefined' ? `bun ${Bun.version}` : `node ${process.version}`, connections: n, request, rssPerConn: per('rss'), heapUsedPerConn: per('heapUsed'), ...(objects.length > 0 ? { objectsPerConn: Object.fromEntries(objects) } : {}) }));
  proc.kill();
  await proxy.close();
  process.exit(0);
}
