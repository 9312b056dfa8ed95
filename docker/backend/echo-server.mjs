// The e2e backend: answers every request with a JSON description of what it
// received, so a test can see exactly what the proxy forwarded.
//   GET /bytes/N   N bytes of 'x' (a larger body through the proxy)
//   anything else  {"server", "method", "url", "headers", "remoteAddress", "bodyBytes"}
// HTTP on $PORT (default 8080); HTTPS on $TLS_PORT (default 8443) when
// $TLS_CERT and $TLS_KEY hold PEM text. Runs on Node or Bun.
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { hostname } from 'node:os';

const name = process.env.SERVER_NAME || hostname();

function handle(request, response) {
  let bodyBytes = 0;
  request.on('data', (chunk) => (bodyBytes += chunk.length));
  request.on('end', () => {
    const bytes = /^\/bytes\/(\d+)$/.exec(request.url ?? '');
    if (bytes) {
      const size = Math.min(Number(bytes[1]), 1 << 30);
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
      const block = Buffer.alloc(64 * 1024, 'x');
      let left = size;
      const pump = () => {
        while (left > 0) {
          const part = left >= block.length ? block : block.subarray(0, left);
          left -= part.length;
          if (!response.write(part)) return void response.once('drain', pump);
        }
        response.end();
      };
      return pump();
    }
    const body = JSON.stringify({
      server: name,
      method: request.method,
      url: request.url,
      headers: request.headers,
      remoteAddress: request.socket.remoteAddress,
      tls: Boolean(request.socket.encrypted),
      bodyBytes,
    });
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });
}

const port = Number(process.env.PORT || 8080);
createServer(handle).listen(port, '0.0.0.0', () => console.log(`echo: http on ${port}`));
if (process.env.TLS_CERT && process.env.TLS_KEY) {
  const tlsPort = Number(process.env.TLS_PORT || 8443);
  createTlsServer({ cert: process.env.TLS_CERT, key: process.env.TLS_KEY }, handle).listen(tlsPort, '0.0.0.0', () =>
    console.log(`echo: https on ${tlsPort}`),
  );
}
process.on('SIGTERM', () => process.exit(0));
