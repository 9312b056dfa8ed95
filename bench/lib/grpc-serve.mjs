// A minimal gRPC unary server on core-net's HTTP/2 codec (h2c by prior
// knowledge): every call, whatever its path, reads the request to its end and
// answers one 16-byte message and `grpc-status: 0` in trailers, as a gRPC
// server does. Fast enough that the proxies in front, not it, are measured.
//   bun|node bench/lib/grpc-serve.mjs PORT
import { Server, parseAddress, Http2Session } from '@wmproxy/core-net';

const [port] = process.argv.slice(2);
const reply = new Uint8Array([0, 0, 0, 0, 16, ...new Uint8Array(16).fill(0x61)]);
const head = ['content-type', 'application/grpc'];
const trailers = ['grpc-status', '0'];

const streamHandler = {
  data() {},
  end(stream) {
    stream.respond(200, head);
    stream.end(reply, trailers);
  },
  close() {},
};
const sessionHandler = {
  stream(stream) {
    stream.setHandler(streamHandler);
  },
};
const server = await new Server({
  addresses: [parseAddress(`127.0.0.1:${port}`)],
  onConnection(conn) {
    new Http2Session(conn, 'server', sessionHandler);
  },
}).start();
process.stderr.write(`gRPC h2c on ${server.boundAddresses.join(',')}\n`);
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
