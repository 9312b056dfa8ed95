// The ceiling of a two-hop JS relay on Node, for bench/tunnel.mjs (`--only relay-tcp-node,relay-tls-node`): as
// relay-pair.ts on Bun, the least code that carries a visitor's bytes through two Node processes: node:net and
// node:tls sockets joined with pipe() both ways (backpressure and half-close by node:stream), one TCP or TLS
// connection near -> far per visitor. What a Node tunnel costs beyond it is the tunnel's own.
//   node bench/lib/relay-pair-node.mjs far MODE LOCAL_PORT     -> prints {"control":N}
//   node bench/lib/relay-pair-node.mjs near MODE CONTROL_PORT PUBLIC_PORT
import net from 'node:net';
import tls from 'node:tls';
import { createSelfSignedCertificate } from '@wmproxy/core-net';

const [role, mode, a, b] = process.argv.slice(2);
const secure = mode === 'tls';

/** Bytes both ways; either side's error or close ends the other. */
function join(x, y) {
  x.setNoDelay(true);
  y.setNoDelay(true);
  x.pipe(y);
  y.pipe(x);
  const kill = () => (x.destroy(), y.destroy());
  x.on('error', kill);
  y.on('error', kill);
  x.on('close', kill);
  y.on('close', kill);
}

if (role === 'far') {
  const local = Number(a);
  const onVisitor = (socket) => {
    socket.pause();
    join(socket, net.connect({ host: '127.0.0.1', port: local, allowHalfOpen: true }));
  };
  const cert = secure ? createSelfSignedCertificate() : undefined;
  const server = secure
    ? tls.createServer({ cert: cert.cert, key: cert.key, allowHalfOpen: true }, onVisitor)
    : net.createServer({ allowHalfOpen: true }, onVisitor);
  server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ control: server.address().port })));
} else {
  const control = Number(a);
  net
    .createServer({ allowHalfOpen: true }, (socket) => {
      socket.pause();
      const options = { host: '127.0.0.1', port: control, allowHalfOpen: true };
      join(socket, secure ? tls.connect({ ...options, rejectUnauthorized: false }) : net.connect(options));
    })
    .listen(Number(b), '127.0.0.1');
}
process.on('SIGTERM', () => process.exit(0));
