// HTTP backends for the abuse and soak benchmarks, one node:http server per
// port in this one process, all on 127.0.0.1:
//   GET /health       "ok"
//   GET anything      "hello\n"
//   POST/PUT          reads the whole body first, then answers "got N bytes\n"
//                     (so a slow body holds the proxy's upstream connection)
//   Upgrade: websocket  101, then echoes every byte (the proxy only tunnels)
// Node's own request and header timeouts are off: the proxies in front are
// what is measured. Prints "ready PORT..." once every port listens.
// Usage: node bench/lib/backend.mjs PORT [PORT...]
import { createHash } from 'node:crypto';
import http from 'node:http';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const ports = process.argv.slice(2).map(Number);
const HELLO = Buffer.from('hello\n');
const HELLO_HEADERS = { 'Content-Type': 'text/plain', 'Content-Length': String(HELLO.length) };

function onRequest(req, res) {
  if (req.method === 'GET' || req.method === 'HEAD') {
    if (req.url === '/health') return res.end('ok');
    res.writeHead(200, HELLO_HEADERS);
    return res.end(HELLO);
  }
  let bytes = 0;
  req.on('data', (chunk) => (bytes += chunk.length));
  req.on('end', () => res.end(`got ${bytes} bytes\n`));
  req.on('error', () => res.destroy());
}

function onUpgrade(req, socket, head) {
  const key = req.headers['sec-websocket-key'];
  if (!key) return socket.destroy();
  const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  socket.on('error', () => {});
  if (head.length > 0) socket.write(head);
  socket.pipe(socket);
}

let listening = 0;
for (const port of ports) {
  const server = http.createServer({ requestTimeout: 0, headersTimeout: 0, keepAliveTimeout: 120_000 }, onRequest);
  server.keepAliveTimeout = 120_000;
  server.maxHeadersCount = 0;
  server.on('upgrade', onUpgrade);
  server.on('clientError', (_error, socket) => socket.destroy());
  server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
    if (++listening === ports.length) console.log(`ready ${ports.join(' ')}`);
  });
}
process.on('SIGTERM', () => process.exit(0));
