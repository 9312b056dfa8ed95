import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CHROMIUM, chromiumDumpDom, selfSignedCert } from '@wmproxy/testkit';
import { AccessLog, type AccessLogSink } from '../src/index.js';
import { deadPort, startBackend, startProxy, startRaw, until, type Backend } from './helpers.js';

// HTTP/2 towards clients (h2 by ALPN, h2c by prior knowledge) with real
// peers: curl, nghttp, h2load, node:http2 and headless Chromium. Each stream
// goes through the same exchange as an HTTP/1.1 request: the assertions on
// routing, retries, header rules and the access log check that.

const run = promisify(execFile);
const { cert, key } = selfSignedCert();
const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-reverse-h2-'));
writeFileSync(join(scratch, 'cert.pem'), cert);
after(() => rmSync(scratch, { recursive: true, force: true }));

const BIG = Buffer.alloc(1024 * 1024 + 17, 0).map((_, i) => (i * 7) % 251);

/** A backend with /big (1 MiB + 17), /echo (counts the body, answers its length), /page (HTML), and its name elsewhere. */
function appBackend(name: string): Promise<Backend> {
  return startBackend(name, (req, res) => {
    if (req.url === '/big') {
      res.setHeader('content-length', BIG.byteLength);
      res.end(BIG);
      return;
    }
    if (req.url === '/echo') {
      let size = 0;
      req.on('data', (chunk: Buffer) => (size += chunk.byteLength));
      req.on('end', () => res.end(`${req.method} ${size} ${req.headers['transfer-encoding'] ?? 'length'} ${req.headers['x-trailer-seen'] ?? ''}`));
      return;
    }
    if (req.url === '/page') {
      res.setHeader('content-type', 'text/html');
      res.end('<!doctype html><title>h2</title><body><pre id="out">waiting</pre><script>fetch("/data").then((r) => r.text()).then(() => { const entries = performance.getEntries().filter((e) => e.nextHopProtocol !== undefined); document.getElementById("out").textContent = "protocols:" + entries.map((e) => e.name.replace(location.origin, "") + "=" + e.nextHopProtocol).join(","); });</script></body>');
      return;
    }
    res.setHeader('x-backend', name);
    res.end(`${name} ${req.method} ${req.url} host=${req.headers.host}`);
  });
}

async function proxies(backend: Backend, extra: Partial<Parameters<typeof startProxy>[0]> = {}) {
  const locations = [{ path: '/', upstream: 'app', responseHeaders: [{ op: 'set' as const, name: 'X-Served-By', value: 'wmproxy {scheme}' }] }];
  const { proxy } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [
      { listen: '127.0.0.1:0', tls: { cert, key }, vhosts: [{ locations }] },
      { listen: '127.0.0.1:0', http2: 'h2c', vhosts: [{ locations }] },
      { listen: '127.0.0.1:0', vhosts: [{ locations }] },
    ],
    ...extra,
  });
  const [tls, h2c, plain] = proxy.addresses.map((address) => Number(address.slice(address.lastIndexOf(':') + 1)));
  return { proxy, tls: tls!, h2c: h2c!, plain: plain! };
}

async function curl(args: string[]): Promise<{ body: string; version: string; status: number }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '20', '-w', '\n%{http_version} %{http_code}', ...args], { maxBuffer: 8 << 20 });
  const cut = stdout.lastIndexOf('\n');
  const [version, status] = stdout.slice(cut + 1).split(' ');
  return { body: stdout.slice(0, cut), version: version!, status: Number(status) };
}

function h2get(session: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ...headers });
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    stream.on('response', (h) => (head = h));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    stream.end();
  });
}

test('curl --http2 over TLS gets h2 by ALPN, --http1.1 falls back on the same port, h2c by prior knowledge beside HTTP/1.1', async () => {
  const backend = await appBackend('a');
  const { proxy, tls, h2c, plain } = await proxies(backend);
  try {
    const viaTls = await curl(['--http2', '--cacert', join(scratch, 'cert.pem'), `https://127.0.0.1:${tls}/hello?x=1`]);
    assert.equal(viaTls.version, '2');
    assert.equal(viaTls.status, 200);
    assert.equal(viaTls.body, `a GET /hello?x=1 host=127.0.0.1:${tls}`);
    const fallback = await curl(['--http1.1', '--cacert', join(scratch, 'cert.pem'), `https://127.0.0.1:${tls}/hello`]);
    assert.equal(fallback.version, '1.1');
    assert.equal(fallback.body, `a GET /hello host=127.0.0.1:${tls}`);

    const prior = await curl(['--http2-prior-knowledge', '-D', '-', `http://127.0.0.1:${h2c}/p`]);
    assert.equal(prior.version, '2');
    assert.match(prior.body, /^HTTP\/2 200/);
    // The response header rule ran (same policy layer), names lower-cased on h2.
    assert.match(prior.body, /\r\nx-served-by: wmproxy http\r\n/);
    assert.match(prior.body, /a GET \/p host=127\.0\.0\.1:\d+$/);
    const oneOne = await curl([`http://127.0.0.1:${h2c}/p`]);
    assert.equal(oneOne.version, '1.1');
    assert.equal(oneOne.status, 200);
    // A listener without http2 = "h2c" does not speak it: the preface is a bad HTTP/1 request.
    const refused = await curl(['--http2-prior-knowledge', `http://127.0.0.1:${plain}/p`]).catch((error: Error) => error);
    assert.ok(refused instanceof Error || refused.version !== '2');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('nghttp downloads 1 MiB byte-exact through the proxy, and h2load gets only 2xx over many streams', async () => {
  const backend = await appBackend('a');
  const { proxy, tls, h2c } = await proxies(backend);
  try {
    const { stdout } = await run('nghttp', [`https://127.0.0.1:${tls}/big`], { encoding: 'buffer', maxBuffer: 8 << 20 });
    assert.equal(stdout.byteLength, BIG.byteLength);
    assert.ok(Buffer.compare(stdout, BIG) === 0, 'the body is byte-exact');
    for (const url of [`https://127.0.0.1:${tls}/small`, `http://127.0.0.1:${h2c}/small`]) {
      const { stdout: report } = await run('h2load', ['-n', '400', '-c', '4', '-m', '10', url]);
      assert.match(report, /requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed/);
      assert.match(report, /status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx/);
    }
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('a request body is streamed upstream as it arrives (chunked without content-length), with backpressure; trailers reach the server, but not forwarding fields or credentials', async () => {
  let received = 0;
  let ended = false;
  const backend = await startBackend('a', (req, res) => {
    req.on('data', (chunk: Buffer) => (received += chunk.byteLength));
    req.on('end', () => {
      ended = true;
      res.end(`${received} ${req.headers['transfer-encoding']} ${req.trailers['x-sum'] ?? '-'} ${Object.keys(req.trailers).sort().join(',')}`);
    });
  });
  const { proxy, h2c } = await proxies(backend);
  const session = http2.connect(`http://127.0.0.1:${h2c}`);
  try {
    const stream = session.request({ ':method': 'POST', ':path': '/upload' }, { waitForTrailers: true });
    // Trailers the proxy's policy owns (forwarding, credentials, framing) do not go upstream.
    stream.on('wantTrailers', () => stream.sendTrailers({ 'x-sum': '42', 'x-forwarded-for': '6.6.6.6', authorization: 'Basic eDp5', cookie: 'a=b' }));
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    const done = new Promise<string>((resolve, reject) => {
      stream.on('end', () => resolve(Buffer.concat(chunks).toString()));
      stream.on('error', reject);
    });
    stream.write(Buffer.alloc(10_000, 1));
    // The first piece reaches the server while the client has not finished: streamed, not buffered.
    await until(() => received === 10_000, 'the first piece upstream');
    assert.equal(ended, false);
    // More than the stream window (256 KiB) and the hold limit: flows only with backpressure honoured.
    const big = Buffer.alloc(600_000, 2);
    stream.end(big);
    assert.equal(await done, '610000 chunked 42 x-sum');
  } finally {
    session.close();
    await proxy.close();
    await backend.close();
  }
});

test('a client RST_STREAM mid-response aborts the upstream attempt; the connection and its other streams go on', async () => {
  let upstreamClosed = 0;
  let started = 0;
  const backend = await startBackend('a', (req, res) => {
    if (req.url === '/endless') {
      started++;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(Buffer.alloc(1000, 1));
      const timer = setInterval(() => res.write(Buffer.alloc(1000, 1)), 20);
      res.on('close', () => {
        clearInterval(timer);
        upstreamClosed++;
      });
      return;
    }
    res.end('fine');
  });
  const { proxy, h2c } = await proxies(backend);
  const session = http2.connect(`http://127.0.0.1:${h2c}`);
  try {
    const stream = session.request({ ':path': '/endless' });
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await until(() => upstreamClosed === 1, 'the upstream response to be aborted');
    const other = await h2get(session, '/other');
    assert.equal(other.status, 200);
    assert.equal(other.body.toString(), 'fine');
    assert.equal(started, 1);
  } finally {
    session.close();
    await proxy.close();
    await backend.close();
  }
});

test('the policy layer serves h2 streams: retries to the next server, local 404, access log with HTTP/2.0', async () => {
  const backend = await appBackend('live');
  const lines: string[] = [];
  const sink: AccessLogSink = { write: (line: string) => lines.push(line) };
  const { proxy } = await startProxy({
    accessLog: new AccessLog(sink, 'combined'),
    upstreams: [{ name: 'app', policy: 'round_robin', servers: [{ address: `127.0.0.1:${await deadPort()}` }, { address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', http2: 'h2c', vhosts: [{ names: ['app.test'], locations: [{ path: '/api/', upstream: 'app' }] }] }],
  });
  const port = Number(proxy.addresses[0]!.split(':').pop());
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    for (let i = 0; i < 4; i++) {
      const reply = await h2get(session, `/api/${i}`, { ':authority': 'app.test' });
      assert.equal(reply.status, 200);
      assert.equal(reply.body.toString(), `live GET /api/${i} host=app.test`);
    }
    const missing = await h2get(session, '/elsewhere', { ':authority': 'app.test' });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers['connection'], undefined);
    await until(() => lines.length === 5, 'five access log lines');
    assert.equal(lines.filter((line) => line.includes('"GET /api/') && line.includes(' HTTP/2.0" 200 ')).length, 4);
  } finally {
    session.close();
    await proxy.close();
    await backend.close();
  }
});

test('stop sends GOAWAY: the stream in flight completes, and the connection then closes', async () => {
  let release: (() => void) | undefined;
  const backend = await startBackend('a', (_req, res) => {
    release = () => res.end('late but whole');
  });
  const { proxy, h2c } = await proxies(backend);
  const session = http2.connect(`http://127.0.0.1:${h2c}`);
  const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
  try {
    const pending = h2get(session, '/slow');
    await until(() => release !== undefined, 'the request upstream');
    const closing = proxy.close();
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    release!();
    const reply = await pending;
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'late but whole');
    await closing;
    await until(() => session.closed || session.destroyed, 'the connection to close');
  } finally {
    session.destroy();
    await backend.close();
  }
});

test('reload retiring a listener sends GOAWAY on its h2 connections without losing the stream in flight', async () => {
  let release: (() => void) | undefined;
  const backend = await startBackend('a', (req, res) => {
    if (req.url === '/slow') release = () => res.end('kept');
    else res.end('new');
  });
  const options = {
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', http2: 'h2c' as const, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }],
  };
  const { proxy } = await startProxy(options);
  const port = Number(proxy.addresses[0]!.split(':').pop());
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
  try {
    const pending = h2get(session, '/slow');
    await until(() => release !== undefined, 'the request upstream');
    // The listener gains TLS: it is retired and a new one opens.
    await proxy.reload({ ...options, servers: [{ listen: '127.0.0.1:0', tls: { cert, key }, vhosts: options.servers[0]!.vhosts }] });
    await goaway;
    release!();
    const reply = await pending;
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'kept');
  } finally {
    session.destroy();
    await proxy.close();
    await backend.close();
  }
});

test('headless Chromium loads a page and a fetch over h2 through the proxy (nextHopProtocol h2)', { skip: CHROMIUM ? false : 'chromium is not installed' }, async () => {
  const backend = await appBackend('a');
  const { proxy, tls } = await proxies(backend);
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-h2-'));
  try {
    const dom = await chromiumDumpDom(`https://127.0.0.1:${tls}/page`, { profileDir: profile, extra: ['--ignore-certificate-errors'] });
    const match = /protocols:([^<]*)/.exec(dom);
    assert.ok(match, `the page script ran: ${dom.slice(0, 500)}`);
    const protocols = new Map(match[1]!.split(',').map((entry) => entry.split('=') as [string, string]));
    assert.equal(protocols.get('/page'), 'h2');
    assert.equal(protocols.get('/data'), 'h2');
  } finally {
    rmSync(profile, { recursive: true, force: true });
    await proxy.close();
    await backend.close();
  }
});

test('an HTTP/2 connection without streams is closed after the keep-alive timeout (GOAWAY), like an idle HTTP/1 one', async () => {
  const backend = await appBackend('a');
  const { proxy } = await startProxy({
    timeouts: { keepAliveMs: 300 },
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', http2: 'h2c', vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }],
  });
  const port = Number(proxy.addresses[0]!.split(':').pop());
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
    const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
    assert.equal((await h2get(session, '/x')).status, 200);
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    await closed;
  } finally {
    session.destroy();
    await proxy.close();
    await backend.close();
  }
});

/**
 * A backend that never sends 100 Continue itself: /hints answers 103 Early
 * Hints then 200; /upload reads a content-length body and answers its size.
 * `interims` counts the 1xx it sent (to show whose 100 the client got).
 */
async function interimBackend() {
  const seen = { requests: 0, expect: 0 };
  const raw = await startRaw((socket) => {
    let buffered = Buffer.alloc(0);
    let want = -1;
    let path = '';
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (want < 0) {
          const end = buffered.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buffered.subarray(0, end).toString('latin1');
          buffered = buffered.subarray(end + 4);
          seen.requests++;
          if (/\r\nexpect: *100-continue/i.test(head)) seen.expect++;
          path = head.split(' ')[1]!;
          want = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        }
        if (buffered.byteLength < want) return;
        buffered = buffered.subarray(want);
        if (path === '/hints') {
          socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nConnection: keep-alive\r\n\r\n');
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nLink: </style.css>; rel=preload\r\n\r\nhints');
        } else {
          const body = `got ${want}`;
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        }
        want = -1;
      }
    });
  });
  return { raw, seen };
}

test('interim responses reach HTTP/2 clients (curl, nghttp, node:http2): 103 Early Hints relayed as informational HEADERS; expect: 100-continue answered by the proxy itself', async () => {
  const { raw, seen } = await interimBackend();
  const { proxy } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: raw.address }] }],
    servers: [{ listen: '127.0.0.1:0', tls: { cert, key }, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }],
  });
  try {
    const port = Number(proxy.addresses[0]!.split(':').pop());
    const url = `https://127.0.0.1:${port}`;
    const cacert = join(scratch, 'cert.pem');
    // curl: the 103 comes before the 200, with its Link field.
    const hints = await run('curl', ['-sS', '-v', '--http2', '--cacert', cacert, '--max-time', '20', `${url}/hints`]);
    assert.equal(hints.stdout, 'hints');
    const received = hints.stderr.split('\n').filter((line) => line.startsWith('< '));
    const at103 = received.findIndex((line) => line.startsWith('< HTTP/2 103'));
    const at200 = received.findIndex((line) => line.startsWith('< HTTP/2 200'));
    assert.ok(at103 >= 0 && at200 > at103, hints.stderr);
    assert.ok(received.slice(at103, at200).some((line) => /^< link: <\/style\.css>; rel=preload/i.test(line)), hints.stderr);

    // nghttp: the informational HEADERS (:status 103, with its link) is received before the final one.
    const nghttp = (await run('nghttp', ['-v', `${url}/hints`])).stdout;
    const at103n = nghttp.search(/recv \(stream_id=\d+\) :status: 103/);
    const at200n = nghttp.search(/recv \(stream_id=\d+\) :status: 200/);
    assert.ok(at103n >= 0 && at200n > at103n, nghttp);
    assert.match(nghttp.slice(at103n, at200n), /recv \(stream_id=\d+\) link: <\/style\.css>; rel=preload/);

    // curl with a body and Expect: the 100 arrives (the backend sends none) and the body goes through.
    const file = join(scratch, 'upload.bin');
    writeFileSync(file, Buffer.alloc(100_000, 7));
    const upload = await run('curl', ['-sS', '-v', '--http2', '--cacert', cacert, '--max-time', '20', '--expect100-timeout', '15', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, `${url}/upload`]);
    assert.equal(upload.stdout, 'got 100000');
    assert.match(upload.stderr, /< HTTP\/2 100/);

    // node:http2: the 'continue' event comes before any body byte is sent; then 'headers' for a 103.
    const session = http2.connect(url, { ca: cert });
    try {
      const answer = await new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/upload', expect: '100-continue', 'content-length': '3' });
        let continued = false;
        stream.on('continue', () => {
          continued = true;
          stream.end('abc');
        });
        let status = 0;
        const chunks: Buffer[] = [];
        stream.on('response', (head) => (status = Number(head[':status'])));
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString(), continued }));
        stream.on('error', reject);
      });
      assert.deepEqual(answer, { status: 200, body: 'got 3', continued: true });
      const informational = await new Promise<number[]>((resolve, reject) => {
        const stream = session.request({ ':path': '/hints' });
        const statuses: number[] = [];
        stream.on('headers', (head) => statuses.push(Number(head[':status'])));
        stream.on('response', (head) => statuses.push(Number(head[':status'])));
        stream.resume();
        stream.on('end', () => resolve(statuses));
        stream.on('error', reject);
      });
      assert.deepEqual(informational, [103, 200]);
    } finally {
      session.close();
    }
    // Expect went upstream end to end (the backend may still refuse); two uploads and three hints were all it saw.
    assert.equal(seen.requests, 5);
    assert.equal(seen.expect, 2);
  } finally {
    await proxy.close();
    await raw.close();
  }
});
