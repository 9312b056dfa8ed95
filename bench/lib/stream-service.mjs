// A TCP service for stream benchmarks (the "local service" behind a tunnel),
// run as its own process: `node bench/lib/stream-service.mjs` prints
// `{"port":N}` on stdout once it listens on 127.0.0.1. Each connection sends
// one command byte, with a u64 big-endian byte count after D and U:
//   D n  the service writes n bytes (honouring backpressure), then ends;
//   U n  the service reads n bytes, then answers "k" and ends;
//   P    the service answers "p" and keeps the connection open (idle).
// The visitor side of the protocol is in this file too (download, upload, ping).
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const CHUNK = Buffer.alloc(1 << 20, 0x78);

function serve(socket) {
  socket.setNoDelay(true);
  let head = Buffer.alloc(0);
  let command;
  let remaining = 0n;
  socket.on('error', () => socket.destroy());
  const onData = (chunk) => {
    if (command === 'U') return consume(chunk);
    head = head.length ? Buffer.concat([head, chunk]) : chunk;
    const c = String.fromCharCode(head[0]);
    if (c === 'P') {
      command = 'P';
      head = Buffer.alloc(0);
      socket.write('p');
      command = undefined; // a ping may follow another
      return;
    }
    if (head.length < 9) return;
    remaining = head.readBigUInt64BE(1);
    const rest = head.subarray(9);
    head = Buffer.alloc(0);
    command = c;
    if (c === 'D') {
      socket.removeListener('data', onData);
      socket.resume();
      return sendBytes(socket, remaining);
    }
    if (c === 'U') return consume(rest);
    socket.destroy();
  };
  const consume = (chunk) => {
    remaining -= BigInt(chunk.length);
    if (remaining <= 0n) {
      socket.removeListener('data', onData);
      socket.end('k');
    }
  };
  socket.on('data', onData);
}

function sendBytes(socket, total) {
  let left = total;
  const pump = () => {
    while (left > 0n) {
      const size = left >= BigInt(CHUNK.length) ? CHUNK.length : Number(left);
      left -= BigInt(size);
      if (!socket.write(size === CHUNK.length ? CHUNK : CHUNK.subarray(0, size))) return socket.once('drain', pump);
    }
    socket.end();
  };
  pump();
}

function command(letter, bytes) {
  const head = Buffer.alloc(9);
  head.write(letter, 0, 'latin1');
  head.writeBigUInt64BE(BigInt(bytes), 1);
  return head;
}

/** Connect to 127.0.0.1:port; rejects on error or after timeoutMs. */
function open(port, timeoutMs) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`connect to ${port} timed out`))), timeoutMs);
    socket.once('connect', () => (clearTimeout(timer), resolve(socket)));
    socket.once('error', (error) => (clearTimeout(timer), reject(error)));
  });
}

/**
 * Read `bytes` from the service through `port`; resolves with {seconds, bytes}
 * (connect to last byte). Rejects when the stream ends short or stalls for timeoutMs.
 */
export async function download(port, bytes, timeoutMs = 60_000) {
  const start = performance.now();
  const socket = await open(port, timeoutMs);
  return new Promise((resolve, reject) => {
    let got = 0;
    let timer = setTimeout(fail, timeoutMs, 'stalled');
    function fail(why) {
      socket.destroy();
      reject(new Error(`download through ${port}: ${why} after ${got} of ${bytes} bytes`));
    }
    socket.on('data', (chunk) => {
      got += chunk.length;
      timer.refresh();
      if (got >= bytes) {
        clearTimeout(timer);
        const seconds = (performance.now() - start) / 1000;
        socket.destroy();
        resolve({ seconds, bytes: got });
      }
    });
    socket.once('error', (error) => (clearTimeout(timer), fail(error.code ?? error.message)));
    socket.once('close', () => got < bytes && (clearTimeout(timer), fail('closed')));
    socket.write(command('D', bytes));
  });
}

/** Write `bytes` to the service through `port` and wait for its acknowledgement. */
export async function upload(port, bytes, timeoutMs = 60_000) {
  const start = performance.now();
  const socket = await open(port, timeoutMs);
  return new Promise((resolve, reject) => {
    let sent = 0;
    let done = false;
    const timer = setTimeout(fail, timeoutMs, 'stalled');
    function fail(why) {
      done = true;
      socket.destroy();
      reject(new Error(`upload through ${port}: ${why} after ${sent} of ${bytes} bytes`));
    }
    socket.once('data', () => {
      done = true;
      clearTimeout(timer);
      const seconds = (performance.now() - start) / 1000;
      socket.destroy();
      resolve({ seconds, bytes });
    });
    socket.once('error', (error) => !done && (clearTimeout(timer), fail(error.code ?? error.message)));
    socket.once('close', () => !done && (clearTimeout(timer), fail('closed')));
    socket.write(command('U', bytes));
    const pump = () => {
      while (sent < bytes && !done) {
        const size = Math.min(CHUNK.length, bytes - sent);
        sent += size;
        timer.refresh();
        if (!socket.write(size === CHUNK.length ? CHUNK : CHUNK.subarray(0, size))) return socket.once('drain', pump);
      }
    };
    pump();
  });
}

/**
 * Open a stream through `port` and complete one ping round trip (so the
 * stream reaches the service end to end); resolves with the open socket.
 */
export async function ping(port, timeoutMs = 10_000) {
  const socket = await open(port, timeoutMs);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`ping through ${port} timed out`))), timeoutMs);
    socket.once('data', () => (clearTimeout(timer), socket.removeAllListeners('close'), resolve(socket)));
    socket.once('error', (error) => (clearTimeout(timer), reject(error)));
    socket.once('close', () => (clearTimeout(timer), reject(new Error(`ping through ${port}: closed`))));
    socket.write('P');
  });
}

/**
 * Open a download of `bytes` and never read it: the stalled stream. The
 * returned socket is paused from the start (the kernel and relay buffers fill).
 */
export async function stalledDownload(port, bytes, timeoutMs = 10_000) {
  const socket = await open(port, timeoutMs);
  socket.pause();
  socket.on('error', () => {});
  socket.write(command('D', bytes));
  return socket;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const server = net.createServer({ noDelay: true }, serve);
  server.maxConnections = 100_000;
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
  // Ends with its parent (the bench) even when that one is SIGKILLed.
  const parent = process.ppid;
  setInterval(() => process.ppid !== parent && process.exit(0), 1000).unref();
}
