import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { recordingServer } from '@wmproxy/testkit';
import { startBackend, startProxy, startRaw, rawExchange, request, until, sleep, memoryLogger } from './helpers.js';

/** Records each request as a simple origin reads it (Content-Length framing only) and answers `ok N`. */
const recordingBackend = recordingServer;

test('a Connection header naming Content-Length cannot smuggle the body as a second request', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const smuggled = 'GET /admin HTTP/1.1\r\nHost: a\r\n\r\n';
    const payload = `POST /form HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Content-Length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`;
    const raw = await rawExchange(port, payload, 1_000);
    assert.equal((raw.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'one request, one response');
    assert.equal(backend.seen.length, 1, 'the backend read exactly one request');
    assert.match(backend.seen[0]!.head, /^POST \/form /);
    assert.match(backend.seen[0]!.head, new RegExp(`\r\nContent-Length: ${smuggled.length}(\r\n|$)`, 'i'));
    assert.equal(backend.seen[0]!.body, smuggled, 'the body arrived as a body');
    assert.ok(!backend.seen.some((seen) => seen.head.startsWith('GET /admin')), 'no smuggled request');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('Connection naming Host or Transfer-Encoding removes neither from the forwarded request', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const payload = 'POST /c HTTP/1.1\r\nHost: app.test\r\nConnection: host, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    const raw = await rawExchange(port, payload, 1_000);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    // (This backend frames by Content-Length only: the chunked body reads as more; the head is what counts.)
    assert.match(backend.seen[0]!.head, /^POST \/c /);
    assert.match(backend.seen[0]!.head, /\r\nHost: app\.test/i);
    assert.match(backend.seen[0]!.head, /\r\nTransfer-Encoding: chunked/i);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('a backend whose Connection names Content-Length still reaches the client with its framing, and the next response is intact', async () => {
  const backend = await startRaw((socket) => {
    let count = 0;
    socket.on('data', () => {
      count++;
      socket.write(`HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nresp${count}`);
    });
  });
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const raw = await rawExchange(port, 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\n', 500);
    assert.match(raw, /\r\nContent-Length: 5\r\n/i, 'framing kept');
    assert.ok(raw.endsWith('resp1'));
    const again = await rawExchange(port, 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n', 500);
    assert.equal((again.match(/HTTP\/1\.1 200/g) ?? []).length, 2);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('Content-Length: 5, 5 goes upstream as one plain Content-Length: 5', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const raw = await rawExchange(port, 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 05\r\n\r\nhello', 500);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    const lengths = backend.seen[0]!.head.split('\r\n').filter((line) => /^content-length:/i.test(line));
    assert.deepEqual(lengths, ['Content-Length: 5']);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('an absolute-form request-target regenerates the Host sent upstream (RFC 9112 section 3.2.2)', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [
      {
        listen: '127.0.0.1:0',
        vhosts: [
          { names: ['public.test'], locations: [{ path: '/', upstream: 'app' }] },
          { names: ['internal.test'], locations: [{ path: '/', respond: { status: 403, body: 'internal' } }] },
        ],
      },
    ],
  });
  try {
    const raw = await rawExchange(port, 'GET http://public.test/x HTTP/1.1\r\nHost: internal.test\r\n\r\n', 500);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.equal(backend.seen.length, 1);
    const hosts = backend.seen[0]!.head.split('\r\n').filter((line) => /^host:/i.test(line));
    assert.deepEqual(hosts, ['Host: public.test']);
    assert.match(backend.seen[0]!.head, /\r\nX-Forwarded-Host: public\.test/i);
    assert.match(backend.seen[0]!.head, /^GET \/x HTTP\/1\.1/);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('an absolute-form target with userinfo or a bad authority is refused', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    for (const target of ['http://user@public.test/', 'http://a b/', 'http://a,b/', 'http:///x']) {
      const raw = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`, 500);
      assert.match(raw, /^HTTP\/1\.1 400 /, target);
    }
    assert.equal(backend.seen.length, 0);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('a Host that is not host[:port] is answered 400 and never reaches X-Forwarded-Host or Forwarded', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    for (const host of ['evil.test, good.test', 'a"b', 'a;for=1.2.3.4', 'a/b', 'a@b', 'a b', 'a:99999x', '[::1']) {
      const raw = await rawExchange(port, `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 500);
      assert.match(raw, /^HTTP\/1\.1 400 /, host);
    }
    assert.equal(backend.seen.length, 0);
    for (const host of ['app.test', 'app.test:8080', '127.0.0.1:1', '[::1]:8080', 'under_score.test']) {
      const raw = await rawExchange(port, `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 300);
      assert.match(raw, /^HTTP\/1\.1 200 /, host);
    }
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('encoded, doubled-slash and dot-segment variants of a denied prefix meet the deny rule, and the upstream gets the normalised path', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [
      {
        listen: '127.0.0.1:0',
        vhosts: [{ locations: [{ path: '/', upstream: 'app' }, { path: '/admin', respond: { status: 403, body: 'denied' } }] }],
      },
    ],
  });
  try {
    const variants = ['/admin', '/%61dmin', '/%61%64%6D%69%6E/x', '//admin', '/./admin', '/x/../admin', '/x/%2e%2e/admin', '/x/%2E./admin', '/public/..//admin/'];
    for (const path of variants) {
      const raw = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`, 300);
      assert.match(raw, /^HTTP\/1\.1 403 /, path);
    }
    assert.equal(backend.seen.length, 0, 'no variant reached the upstream');
    for (const path of ['/..', '/../admin', '/a/%00', '/a/%zz', '/a%2', '/public/..\\admin']) {
      const raw = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`, 300);
      assert.match(raw, /^HTTP\/1\.1 400 /, path);
    }
    const raw = await rawExchange(port, 'GET /a//b/./c/%7Euser/%2f?q=/../x HTTP/1.1\r\nHost: a\r\n\r\n', 300);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.match(backend.seen[0]!.head, /^GET \/a\/b\/c\/~user\/%2F\?q=\/\.\.\/x HTTP\/1\.1/, 'normalised path, query untouched');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('a client that ends its side mid-body frees the upstream connection at once, without blaming the server', async () => {
  let upstreamClosed = 0;
  let upstreamOpened = 0;
  const backend = await startRaw((socket) => {
    upstreamOpened++;
    socket.on('close', () => upstreamClosed++);
    socket.resume();
  });
  const { logger, lines } = memoryLogger();
  const { proxy, port } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    // Long enough that only the fix can close the upstream before the test ends.
    timeouts: { clientBodyMs: 600_000 },
    logger,
  });
  try {
    const client = net.connect(port, '127.0.0.1');
    client.on('error', () => {});
    const answer: Buffer[] = [];
    client.on('data', (chunk: Buffer) => answer.push(chunk));
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    client.write('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n' + 'x'.repeat(1000));
    await until(() => upstreamOpened === 1, 'the upstream connection');
    client.end();
    await until(() => upstreamClosed === 1, 'the upstream connection to close after the client left mid-body');
    await new Promise<void>((resolve) => (client.destroyed ? resolve() : client.once('close', () => resolve())));
    assert.match(Buffer.concat(answer).toString('latin1'), /^HTTP\/1\.1 400 /);
    assert.ok(!lines.some((line) => /passive failure|upstream attempt failed/.test(line)), 'the server is not blamed');
    const [server] = proxy.snapshot().upstreams['app']!;
    assert.equal(server!.active, 0, 'no lease left behind');
    assert.equal(server!.failures, 0, 'no failure counted');
    assert.equal(server!.available, true);
    assert.ok(lines.some((line) => line.includes('client closed before sending the whole request body')));
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('a client that ends its side mid-head is closed at once, not at the header timeout', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }], timeouts: { clientHeaderMs: 600_000 } });
  try {
    const client = net.connect(port, '127.0.0.1');
    client.on('error', () => {});
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    client.end('GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ');
    await new Promise<void>((resolve) => client.once('close', () => resolve()));
    assert.equal(backend.seen.length, 0);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('request hedging never sends a DELETE, PUT or POST twice by default; GET is still hedged', async () => {
  const arrivals: string[] = [];
  const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
    arrivals.push(req.method!);
    req.resume();
    // Slow enough that a hedge is due (the hedge delay is 50 ms).
    setTimeout(() => res.end('done'), 300);
  };
  const a = await startBackend('a', handler);
  const b = await startBackend('b', handler);
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: a.address }, { address: b.address }] }],
    requestHedgeMs: 50,
    requestHedgeBudget: 1,
  });
  try {
    for (const method of ['DELETE', 'PUT', 'POST']) {
      arrivals.length = 0;
      const reply = await request(`${base}/item`, { method });
      assert.equal(reply.status, 200);
      await sleep(350);
      assert.deepEqual(arrivals, [method], `${method} ran once`);
    }
    arrivals.length = 0;
    const reply = await request(`${base}/item`);
    assert.equal(reply.status, 200);
    await until(() => arrivals.length === 2, 'the GET to be hedged');
  } finally {
    await proxy.close();
    await a.close();
    await b.close();
  }
});

test('a 503 is retried for GET but not for DELETE unless retries.methods names it', async () => {
  const hits = { a: 0, b: 0 };
  const a = await startBackend('a', (req, res) => {
    hits.a++;
    req.resume();
    res.statusCode = 503;
    res.end('busy');
  });
  const b = await startBackend('b', (req, res) => {
    hits.b++;
    req.resume();
    res.statusCode = 503;
    res.end('busy');
  });
  const upstreams = [{ name: 'app', servers: [{ address: a.address }, { address: b.address }] }];
  const first = await startProxy({ upstreams, requestHedgeMs: 0 });
  const second = await startProxy({ upstreams, requestHedgeMs: 0, retries: { methods: ['GET', 'DELETE'] } });
  try {
    assert.equal((await request(`${first.base}/x`, { method: 'DELETE' })).status, 503);
    assert.equal(hits.a + hits.b, 1, 'DELETE not retried');
    assert.equal((await request(`${first.base}/x`)).status, 503);
    assert.ok(hits.a + hits.b > 2, 'GET retried');
    hits.a = hits.b = 0;
    assert.equal((await request(`${second.base}/x`, { method: 'DELETE' })).status, 503);
    assert.ok(hits.a + hits.b > 1, 'DELETE retried when configured');
  } finally {
    await first.proxy.close();
    await second.proxy.close();
    await a.close();
    await b.close();
  }
});

test('running out of descriptors is the proxy failing, not the server: 503, and no passive failure is reported', async () => {
  const backend = await recordingBackend();
  const { logger, lines } = memoryLogger();
  const emfile = Object.assign(new Error('too many open files'), { code: 'EMFILE' });
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    connector: () => Promise.reject(emfile),
    logger,
  });
  try {
    for (let i = 0; i < 6; i++) assert.equal((await request(`${base}/x`)).status, 503);
    assert.ok(!lines.some((line) => line.includes('passive failure')), 'no passive failure reported');
    const [server] = proxy.snapshot().upstreams['app']!;
    assert.equal(server!.available, true, 'the server stays in rotation');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('CONNECT is refused with 405 by the reverse proxy and never reaches an upstream', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    for (const target of ['/x', 'app.test:443']) {
      const raw = await rawExchange(port, `CONNECT ${target} HTTP/1.1\r\nHost: app.test\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n`, 300);
      assert.match(raw, /^HTTP\/1\.1 (405|400) /, target);
      assert.equal((raw.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'nothing after it is served on that connection');
    }
    assert.equal(backend.seen.length, 0);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('an interim 1xx response reaches the client as HTTP/1.1 without the upstream hop-by-hop fields', async () => {
  const backend = await startRaw((socket) => {
    socket.once('data', () => {
      socket.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=1\r\n\r\n');
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
  });
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const raw = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', 300);
    assert.match(raw, /^HTTP\/1\.1 103 Early Hints\r\nLink: <\/a\.css>; rel=preload\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('a HEAD request refused for a malformed body gets its 400 without content', async () => {
  const backend = await recordingBackend();
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const raw = await rawExchange(port, 'HEAD /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 300);
    assert.match(raw, /^HTTP\/1\.1 400 /);
    assert.ok(raw.endsWith('\r\n\r\n'), 'no content after the head');
  } finally {
    await proxy.close();
    await backend.close();
  }
});
