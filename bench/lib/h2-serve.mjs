// A minimal HTTP/2 server on core-net's own codec, answering every request with
// the same 100-byte body: `bun|node bench/lib/h2-serve.mjs PORT [CERT KEY]`
// (TLS with ALPN h2 when CERT and KEY are given, else h2c by prior knowledge).
// Also `... PORT CERT KEY node-http2` for the node:http2 comparator.
import { readFileSync } from 'node:fs';
import { Server, parseAddress, Http2Session } from '@wmproxy/core-net';

const [port, certFile, keyFile, kind = 'wmproxy'] = process.argv.slice(2);
const body = new Uint8Array(100).fill(0x61);
const headers = ['content-type', 'text/plain', 'content-length', '100'];

if (kind === 'node-http2') {
  const http2 = await import('node:http2');
  const server = http2.createSecureServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
    res.end(body);
  });
  server.listen(Number(port), '127.0.0.1', () => process.stderr.write(`node:http2 on ${port}\n`));
} else {
  const sessionHandler = {
    stream(stream) {
      stream.respond(200, headers);
      stream.end(body);
    },
  };
  const tls = certFile ? { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), alpn: ['h2'] } : undefined;
  const server = await new Server({
    addresses: [parseAddress(`127.0.0.1:${port}`)],
    tls,
    onConnection(conn) {
      new Http2Session(conn, 'server', sessionHandler);
    },
  }).start();
  process.stderr.write(`h2 ${tls ? 'TLS' : 'h2c'} on ${server.boundAddresses.join(',')}\n`);
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
