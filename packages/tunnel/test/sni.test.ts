import { test, before } from 'node:test';
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { readClientHelloSni, MAX_CLIENT_HELLO_BYTES } from '../src/sni.js';

/** The first flight of a TLS client that `start` points at a plain listener's port (the hello, whole); `start` returns how to stop it. */
async function capture(start: (port: number) => () => void): Promise<Uint8Array> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const captured = new Promise<Uint8Array>((resolve) => {
      server.once('connection', (socket) => {
        const chunks: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          const all = Buffer.concat(chunks);
          if (readClientHelloSni(all).kind !== 'partial') {
            resolve(new Uint8Array(all));
            socket.destroy();
          }
        });
      });
    });
    const stop = start(port);
    const bytes = await captured;
    stop();
    return bytes;
  } finally {
    server.close();
  }
}

/** The first flight a real TLS client (node:tls) sends for `servername`. */
function captureClientHello(servername: string | undefined): Promise<Uint8Array> {
  return capture((port) => {
    const client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(servername ? { servername } : {}) });
    client.on('error', () => undefined);
    return () => client.destroy();
  });
}

/** The same handshake message cut into records of `sizes` bytes (the last takes the rest). */
function refragment(hello: Uint8Array, sizes: number[]): Uint8Array {
  const body = hello.subarray(5, 5 + ((hello[3]! << 8) | hello[4]!));
  const out: number[] = [];
  let at = 0;
  for (let i = 0; at < body.length; i++) {
    const size = i < sizes.length ? Math.max(1, sizes[i]!) : body.length - at;
    const piece = body.subarray(at, Math.min(body.length, at + size));
    out.push(0x16, 0x03, 0x01, piece.length >> 8, piece.length & 0xff, ...piece);
    at += piece.length;
  }
  return Uint8Array.from(out);
}

let named: Uint8Array;
let unnamed: Uint8Array;
before(async () => {
  named = await captureClientHello('App.Example.TEST');
  unnamed = await captureClientHello(undefined);
});

test('reads the server name of a real ClientHello, lower-cased; none without SNI', () => {
  assert.deepEqual(readClientHelloSni(named), { kind: 'sni', name: 'app.example.test' });
  assert.deepEqual(readClientHelloSni(unnamed), { kind: 'none' });
});

test('any prefix is partial, the whole hello decides; bytes after it do not matter', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: named.length - 1 }), fc.uint8Array({ maxLength: 64 }), (cut, extra) => {
      assert.deepEqual(readClientHelloSni(named.subarray(0, cut)), { kind: 'partial' });
      const longer = new Uint8Array(named.length + extra.length);
      longer.set(named);
      longer.set(extra, named.length);
      assert.deepEqual(readClientHelloSni(longer), { kind: 'sni', name: 'app.example.test' });
    }),
  );
});

test('a hello split over several records reads the same', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 12 }), (sizes) => {
      assert.deepEqual(readClientHelloSni(refragment(named, sizes)), { kind: 'sni', name: 'app.example.test' });
      assert.deepEqual(readClientHelloSni(refragment(unnamed, sizes)), { kind: 'none' });
    }),
  );
});

test('hostile input never throws: random bytes, and a real hello with bytes flipped, give a result', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      assert.ok(['partial', 'invalid', 'none', 'sni'].includes(readClientHelloSni(bytes).kind));
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(named.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (flips) => {
      const mutated = Uint8Array.from(named);
      for (const [at, value] of flips) mutated[at] = value;
      const result = readClientHelloSni(mutated);
      // Whatever came out, a name is always a plain lower-case host name.
      if (result.kind === 'sni') assert.match(result.name, /^[a-z0-9_.-]+$/);
    }),
    { numRuns: 2000 },
  );
});

test('not TLS, an oversized hello, and a name that is not a host name are invalid', () => {
  assert.equal(readClientHelloSni(Buffer.from('GET / HTTP/1.1\r\n\r\n')).kind, 'invalid');
  const huge = Uint8Array.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00]);
  const result = readClientHelloSni(huge);
  assert.equal(result.kind, 'invalid');
  assert.match((result as { reason: string }).reason, new RegExp(`over the ${MAX_CLIENT_HELLO_BYTES}-byte limit`));
  // Replace the name's first byte with '/', keeping every length.
  const text = Buffer.from(named).indexOf('App.Example.TEST');
  assert.ok(text > 0);
  const bad = Uint8Array.from(named);
  bad[text] = '/'.charCodeAt(0);
  assert.deepEqual(readClientHelloSni(bad), { kind: 'invalid', reason: 'server name is not a host name' });
});

/** The first flight of another TLS client: `command` run with `args(port)`. */
function captureFrom(command: string, args: (port: number) => string[]): Promise<Uint8Array> {
  return capture((port) => {
    const child = spawn(command, args(port), { stdio: ['pipe', 'ignore', 'ignore'] });
    child.on('error', () => undefined);
    return () => child.kill();
  });
}

test('hellos of other TLS clients (openssl s_client, curl): their server name, lower-cased, without a trailing dot', async () => {
  const clients: Array<[string, (port: number, name: string) => string[]]> = [
    ['openssl', (port, name) => ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', name]],
    ['curl', (port, name) => ['-sk', '--max-time', '3', '--connect-to', `${name}:443:127.0.0.1:${port}`, `https://${name}/`]],
  ];
  for (const [command, args] of clients) {
    for (const name of ['Mixed.Case.TEST', 'trailing.dot.test.', 'a-b_c.x9.test']) {
      const hello = await captureFrom(command, (port) => args(port, name));
      assert.deepEqual(readClientHelloSni(hello), { kind: 'sni', name: name.toLowerCase().replace(/\.$/, '') }, `${command} ${name}`);
    }
  }
});
