import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { selfSigned, testRuntimes } from '../helpers.js';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Server,
  connect,
  parseAddress,
  setRuntime,
  Http2Session,
  ErrorCode,
  type Http2Stream,
  type Http2Headers,
} from '../../src/index.js';

const run = promisify(execFile);
const { runtimes, detected } = await testRuntimes();

let dir = '';
let cert = '';
let key = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'wmproxy-h2-'));
  ({ cert, key } = selfSigned(dir, 'localhost', 'DNS:localhost,IP:127.0.0.1'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const BIG = new Uint8Array(1024 * 1024).map((_, i) => i % 251);

function header(list: Http2Headers, name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}

/** The application under test: /hello, /echo (body back + a trailer with its length), /big (1 MiB). */
const app = {
  stream(stream: Http2Stream) {
    const head = stream.request!;
    if (head.path === '/echo') {
      const chunks: Uint8Array[] = [];
      let size = 0;
      stream.setHandler({
        data(_s, chunk) {
          chunks.push(chunk);
          size += chunk.byteLength;
        },
        end(s) {
          s.respond(200, ['content-type', 'application/octet-stream', 'x-method', head.method]);
          for (const chunk of chunks) s.write(chunk);
          s.end(undefined, ['x-body-length', String(size)]);
        },
        close() {},
      });
      return;
    }
    if (head.path === '/big') {
      stream.respond(200, ['content-length', String(BIG.byteLength)]);
      let at = 0;
      const pump = (s: Http2Stream): void => {
        while (at < BIG.byteLength) {
          const piece = BIG.subarray(at, at + 32 * 1024);
          at += piece.byteLength;
          if (at >= BIG.byteLength) {
            s.end(piece);
            return;
          }
          if (!s.write(piece)) return;
        }
      };
      stream.setHandler({ data() {}, drain: pump, close() {} });
      pump(stream);
      return;
    }
    const body = `hello ${head.method} ${head.authority} ${head.path}`;
    stream.respond(200, ['content-type', 'text/plain', 'content-length', String(body.length)]);
    stream.end(new TextEncoder().encode(body));
  },
};

async function startServer(tls: boolean): Promise<{ port: number; server: Server; sessions: Http2Session[] }> {
  const sessions: Http2Session[] = [];
  const server = await new Server({
    addresses: [parseAddress('127.0.0.1:0')],
    ...(tls ? { tls: { cert, key, alpn: ['h2', 'http/1.1'] } } : {}),
    onConnection(conn) {
      sessions.push(new Http2Session(conn, 'server', app));
    },
  }).start();
  const port = Number(server.boundAddresses[0]!.split(':').pop());
  return { port, server, sessions };
}

function nodeRequest(session: http2.ClientHttp2Session, path: string, method = 'GET', body?: Uint8Array): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer; trailers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': method, ':path': path }, { endStream: !body });
    const chunks: Buffer[] = [];
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => {
      headers = h;
      status = Number(h[':status']);
    });
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve({ status, headers, body: Buffer.concat(chunks), trailers }));
    req.on('error', reject);
    if (body) req.end(body);
  });
}

for (const rt of runtimes) {
  describe(`HTTP/2 interop on the ${rt.name} runtime`, () => {
    after(() => setRuntime(detected));

    test('a TLS listener with ALPN h2 serves curl --http2 and nghttp; h2c serves curl --http2-prior-knowledge', async () => {
      setRuntime(rt);
      const tls = await startServer(true);
      const plain = await startServer(false);
      try {
        const a = await run('curl', ['-sk', '--http2', '-w', '\n%{http_version} %{http_code}', `https://127.0.0.1:${tls.port}/x?y=1`]);
        assert.equal(a.stdout, `hello GET 127.0.0.1:${tls.port} /x?y=1\n2 200`);
        const b = await run('curl', ['-s', '--http2-prior-knowledge', '-w', '\n%{http_version} %{http_code}', `http://127.0.0.1:${plain.port}/plain`]);
        assert.equal(b.stdout, `hello GET 127.0.0.1:${plain.port} /plain\n2 200`);
        writeFileSync(join(dir, 'upload'), BIG);
        const c = await run('curl', ['-s', '--http2-prior-knowledge', '--data-binary', `@${join(dir, 'upload')}`, '-o', join(dir, 'echoed'), '-w', '%{http_code} %{size_download}', `http://127.0.0.1:${plain.port}/echo`]);
        assert.equal(c.stdout, `200 ${BIG.byteLength}`);
        assert.deepEqual(new Uint8Array(readFileSync(join(dir, 'echoed'))), BIG);
        const n = await run('nghttp', ['-nv', `https://127.0.0.1:${tls.port}/a`, `https://127.0.0.1:${tls.port}/b`]);
        assert.equal(n.stdout.match(/recv \(stream_id=\d+\) :status: 200/g)?.length, 2);
        assert.match(n.stdout, /recv SETTINGS frame <length=0, flags=0x01/);
        const big = await run('nghttp', [`https://127.0.0.1:${tls.port}/big`], { encoding: 'buffer', maxBuffer: 4 << 20 });
        assert.deepEqual(new Uint8Array(big.stdout), BIG);
        // curl without h2 in ALPN gets no h2: the listener does not force a protocol.
        const h1 = await run('curl', ['-sk', '--http1.1', '-o', '/dev/null', '-w', '%{http_version}', `https://127.0.0.1:${tls.port}/`]).catch((e: { stdout: string }) => e);
        assert.notEqual((h1 as { stdout: string }).stdout, '2');
      } finally {
        await tls.server.shutdown({ deadlineMs: 100 });
        await plain.server.shutdown({ deadlineMs: 100 });
      }
    });

    test('h2load completes every request over TLS', async () => {
      setRuntime(rt);
      const tls = await startServer(true);
      try {
        const r = await run('h2load', ['-n', '2000', '-c', '4', '-m', '10', `https://127.0.0.1:${tls.port}/`]);
        assert.match(r.stdout, /2000 succeeded, 0 failed/);
        assert.match(r.stdout, /status codes: 2000 2xx/);
      } finally {
        await tls.server.shutdown({ deadlineMs: 100 });
      }
    });

    test('a node:http2 client: concurrent streams, an echoed 1 MiB upload with trailers, a 1 MiB download', async () => {
      setRuntime(rt);
      const plain = await startServer(false);
      const client = http2.connect(`http://127.0.0.1:${plain.port}`);
      try {
        const many = await Promise.all(Array.from({ length: 50 }, (_, i) => nodeRequest(client, `/n${i}`)));
        many.forEach((r, i) => {
          assert.equal(r.status, 200);
          assert.equal(r.body.toString(), `hello GET 127.0.0.1:${plain.port} /n${i}`);
        });
        const echo = await nodeRequest(client, '/echo', 'POST', BIG);
        assert.equal(echo.status, 200);
        assert.equal(echo.headers['x-method'], 'POST');
        assert.deepEqual(new Uint8Array(echo.body), BIG);
        assert.equal(echo.trailers['x-body-length'], String(BIG.byteLength));
        const big = await nodeRequest(client, '/big');
        assert.deepEqual(new Uint8Array(big.body), BIG);
        assert.equal(plain.sessions.length, 1);
      } finally {
        client.close();
        await plain.server.shutdown({ deadlineMs: 100 });
      }
    });

    test('our client against a node:http2 server: GET, POST with trailers both ways, max concurrent streams respected', async () => {
      setRuntime(rt);
      const server = http2.createServer({ settings: { maxConcurrentStreams: 3 } });
      let peak = 0;
      let open = 0;
      server.on('stream', (stream, headers) => {
        open++;
        peak = Math.max(peak, open);
        stream.on('close', () => open--);
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const body = Buffer.concat(chunks);
          stream.respond({ ':status': 201, 'x-path': String(headers[':path']), 'x-te': String(headers['te'] ?? '') }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'x-got': String(body.byteLength) }));
          setTimeout(() => stream.end(body), 5);
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as { port: number }).port;
      const conn = await connect({ host: '127.0.0.1', port });
      const session = new Http2Session(conn, 'client', {});
      try {
        const exchange = (path: string, body?: Uint8Array) =>
          new Promise<{ status: number; headers: Http2Headers; body: Buffer; trailers?: Http2Headers }>((resolve, reject) => {
            const stream = session.request({ method: body ? 'POST' : 'GET', scheme: 'http', authority: `127.0.0.1:${port}`, path, headers: ['te', 'trailers'] }, !body);
            const chunks: Uint8Array[] = [];
            stream.setHandler({
              data: (_s, c) => chunks.push(c),
              end: (s, trailers) => resolve({ status: s.response!.status, headers: s.response!.headers, body: Buffer.concat(chunks), trailers }),
              close: (_s, error) => error && reject(error),
            });
            if (body) stream.end(body, ['x-client-trailer', 'yes']);
          });
        const get = await exchange('/one');
        assert.equal(get.status, 201);
        assert.equal(header(get.headers, 'x-path'), '/one');
        assert.equal(header(get.headers, 'x-te'), 'trailers');
        assert.equal(header(get.trailers!, 'x-got'), '0');
        const post = await exchange('/up', BIG);
        assert.deepEqual(new Uint8Array(post.body), BIG);
        assert.equal(header(post.trailers!, 'x-got'), String(BIG.byteLength));
        // The server allows 3 streams: open only what the session says is available.
        await new Promise((r) => setTimeout(r, 20));
        assert.equal(session.availableStreams, 3);
        const batch: Promise<unknown>[] = [];
        for (let i = 0; i < 3; i++) batch.push(exchange(`/c${i}`));
        assert.equal(session.availableStreams, 0);
        assert.throws(() => session.request({ method: 'GET', scheme: 'http', authority: 'x', path: '/', headers: [] }, true), /no stream available/);
        await Promise.all(batch);
        assert.equal(peak, 3);
      } finally {
        session.close();
        await new Promise((resolve) => server.close(resolve));
      }
    });

    test('graceful GOAWAY: streams in flight finish, then the connection ends', async () => {
      setRuntime(rt);
      const plain = await startServer(false);
      const client = http2.connect(`http://127.0.0.1:${plain.port}`);
      try {
        // The request body comes in two parts; GOAWAY goes out between them.
        const req = client.request({ ':method': 'POST', ':path': '/echo' });
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        const done = new Promise((resolve) => req.on('end', resolve));
        req.write(Buffer.from('first '));
        await new Promise((r) => setTimeout(r, 30));
        let goaway = -1;
        client.on('goaway', (code) => (goaway = code));
        const closed = new Promise((resolve) => client.on('close', resolve));
        plain.sessions[0]!.close();
        await new Promise((r) => setTimeout(r, 30));
        req.end(Buffer.from('second'));
        await done;
        assert.equal(Buffer.concat(chunks).toString(), 'first second');
        await closed;
        assert.equal(goaway, ErrorCode.NO_ERROR);
      } finally {
        client.destroy();
        await plain.server.shutdown({ deadlineMs: 100 });
      }
    });
  });
}
