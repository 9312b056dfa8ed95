// http mappings served by the reverse engine: several clients serving one
// mapping form a load-balanced, health-checked group; a client whose local
// service dies, or that vanishes, leaves the rotation without a visitor
// seeing an error for idempotent requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { TunnelClient, TunnelHttpFront, TunnelServer, groupName, parseMapSpec } from '../src/index.js';
import { httpGet as get, until } from './helpers.js';

interface Backend {
  port: number;
  hits: number;
  close(): Promise<void>;
}

/** A local service that names itself (and the path it saw) in every answer. */
async function backend(name: string): Promise<Backend> {
  const state = { hits: 0 };
  const server = http.createServer((req, res) => {
    state.hits++;
    res.setHeader('content-type', 'text/plain');
    res.end(`${name} ${req.url} ${req.headers['x-forwarded-for'] ?? '-'}`);
  });
  server.keepAliveTimeout = 500;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    get hits() {
      return state.hits;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function client(server: TunnelServer, name: string, specs: string[]): TunnelClient {
  return new TunnelClient({
    server: `127.0.0.1:${server.port}`,
    token: 'secret',
    name,
    tls: false,
    backoffInitialMs: 50,
    backoffMaxMs: 200,
    mappings: specs.map(parseMapSpec),
  }).start();
}

test('an http mapping served by two clients is one balanced group; Host and path pick the mapping; unknown hosts get 404', async () => {
  const a = await backend('a');
  const b = await backend('b');
  const api = await backend('api');
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const front = await new TunnelHttpFront(server, { listen: '127.0.0.1:0' }).start();
  const first = client(server, 'one', [`web=http:127.0.0.1:${a.port}@app.test`, `api=http:127.0.0.1:${api.port}@app.test/api/`]);
  const second = client(server, 'two', [`web=http:127.0.0.1:${b.port}@app.test`, `wild=http:127.0.0.1:${b.port}@*.app.test`]);
  try {
    await Promise.all([first.ready(), second.ready()]);
    await front.sync();
    const port = Number(front.addresses[0]!.split(':').pop());
    const seen: string[] = [];
    for (let i = 0; i < 8; i++) {
      const reply = await get(port, 'app.test', `/page/${i}`);
      assert.equal(reply.status, 200);
      const [who, path, forwarded] = reply.body.split(' ');
      assert.equal(path, `/page/${i}`);
      assert.equal(forwarded, '127.0.0.1', 'the engine adds X-Forwarded-For with the visitor address');
      seen.push(who!);
    }
    assert.deepEqual([...new Set(seen)].sort(), ['a', 'b'], 'both clients serve the mapping');
    assert.equal((await get(port, 'app.test', '/api/v1')).body.split(' ')[0], 'api', 'the longer path prefix wins');
    assert.equal((await get(port, 'x.app.test', '/')).body.split(' ')[0], 'b', 'a wildcard domain of one client');
    const unknown = await get(port, 'other.test', '/');
    assert.equal(unknown.status, 404);
    assert.match(unknown.body, /no tunnel mapping/);
    const group = front.engine!.upstreams.get(groupName('web'))!;
    assert.equal(group.servers.length, 2);
    assert.ok(group.servers.every((s) => s.transport === 'tunnel'));
  } finally {
    await first.stop({ deadlineMs: 100 });
    await second.stop({ deadlineMs: 100 });
    await front.close();
    await server.stop({ deadlineMs: 100 });
    await Promise.all([a.close(), b.close(), api.close()]);
  }
});

test('concurrent visitors of an http mapping each get the answer to their own request (request heads composed in one turn stay apart in the tunnel)', async () => {
  const a = await backend('a');
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const front = await new TunnelHttpFront(server, { listen: '127.0.0.1:0' }).start();
  const one = client(server, 'one', [`web=http:127.0.0.1:${a.port}@app.test`]);
  try {
    await one.ready();
    await front.sync();
    const port = Number(front.addresses[0]!.split(':').pop());
    // Many visitors at once: several request heads are composed in the engine's
    // shared buffer within one event-loop turn, before the tunnel's writer runs.
    for (let round = 0; round < 5; round++) {
      const paths = Array.from({ length: 40 }, (_, i) => `/visitor/${round}/${i}/${'x'.repeat(i)}`);
      const replies = await Promise.all(paths.map((path) => get(port, 'app.test', path)));
      replies.forEach((reply, i) => {
        assert.equal(reply.status, 200);
        assert.equal(reply.body.split(' ')[1], paths[i], 'a visitor got the answer to another request');
      });
    }
  } finally {
    await one.stop({ deadlineMs: 100 });
    await front.close();
    await server.stop({ deadlineMs: 100 });
    await a.close();
  }
});

test('a client whose local service dies is taken out by active checks through the tunnel, and a vanished client at once; visitors see no error', async () => {
  const a = await backend('a');
  const b = await backend('b');
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const front = await new TunnelHttpFront(server, {
    listen: '127.0.0.1:0',
    health: { check: { type: 'http', path: '/healthz' }, intervalMs: 100, timeoutMs: 500, rise: 1, fall: 1 },
  }).start();
  const first = client(server, 'one', [`web=http:127.0.0.1:${a.port}@app.test`]);
  const second = client(server, 'two', [`web=http:127.0.0.1:${b.port}@app.test`]);
  try {
    await Promise.all([first.ready(), second.ready()]);
    await front.sync();
    const port = Number(front.addresses[0]!.split(':').pop());
    // Active checks reach both local services through the tunnel.
    await until(() => a.hits > 0 && b.hits > 0, 'health checks through the tunnel');
    const engine = front.engine!;
    await a.close();
    await until(() => engine.health.snapshot().targets.filter((t) => t.state === 'unhealthy').length === 1, 'the dead local service marked unhealthy');
    for (let i = 0; i < 10; i++) {
      const reply = await get(port, 'app.test', `/after-death/${i}`);
      assert.equal(reply.status, 200, reply.body);
      assert.equal(reply.body.split(' ')[0], 'b');
    }
    // Now the second client vanishes: its server leaves the group at once; with nobody left, a clear 503.
    await second.stop({ deadlineMs: 0 });
    await until(() => server.clients().length === 1, 'the second client gone');
    await front.sync();
    const group = engine.upstreams.get(groupName('web'))!;
    assert.equal(group.servers.length, 1, 'only the first client is left in the group');
    await first.stop({ deadlineMs: 0 });
    await until(() => server.clients().length === 0, 'every client gone');
    await front.sync();
    const none = await get(port, 'app.test', '/');
    assert.equal(none.status, 503);
    assert.match(none.body, /no tunnel client serving "web"/);
  } finally {
    await first.stop({ deadlineMs: 0 });
    await second.stop({ deadlineMs: 0 });
    await front.close();
    await server.stop({ deadlineMs: 100 });
    await b.close();
  }
});

test('a client that vanishes mid-traffic costs idempotent requests nothing: they are retried on the other client', async () => {
  const a = await backend('a');
  const b = await backend('b');
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const front = await new TunnelHttpFront(server, { listen: '127.0.0.1:0' }).start();
  const first = client(server, 'one', [`web=http:127.0.0.1:${a.port}@app.test`]);
  const second = client(server, 'two', [`web=http:127.0.0.1:${b.port}@app.test`]);
  try {
    await Promise.all([first.ready(), second.ready()]);
    await front.sync();
    const port = Number(front.addresses[0]!.split(':').pop());
    let failures = 0;
    let served = 0;
    const load = (async () => {
      for (let i = 0; i < 200; i++) {
        const reply = await get(port, 'app.test', `/r/${i}`);
        if (reply.status === 200) served++;
        else failures++;
      }
    })();
    await until(() => served >= 20, 'traffic flowing');
    await second.stop({ deadlineMs: 0 });
    await load;
    assert.equal(failures, 0);
    assert.equal(served, 200);
    assert.ok(a.hits > 0 && b.hits > 0);
  } finally {
    await first.stop({ deadlineMs: 0 });
    await front.close();
    await server.stop({ deadlineMs: 100 });
    await Promise.all([a.close(), b.close()]);
  }
});

test("an http mapping's basic auth and header rules are applied by the engine; passwords stay out of the snapshots", async () => {
  const seen: http.IncomingHttpHeaders[] = [];
  const local = http.createServer((req, res) => {
    seen.push(req.headers);
    res.setHeader('server', 'local/1.0');
    res.setHeader('x-internal', 'yes');
    res.end('private');
  });
  await new Promise<void>((resolve) => local.listen(0, '127.0.0.1', resolve));
  const localPort = (local.address() as { port: number }).port;
  const server = await new TunnelServer({ listen: '127.0.0.1:0', token: 'secret', tls: false, heartbeatMs: 1000 }).start();
  const front = await new TunnelHttpFront(server, { listen: '127.0.0.1:0' }).start();
  const mapping = {
    ...parseMapSpec(`web=http:127.0.0.1:${localPort}@app.test,auth=alice:wonder:land`),
    requestHeaders: [{ op: 'set' as const, name: 'X-Visitor', value: '{client_ip} {method} {path}' }, { op: 'remove' as const, name: 'X-Secret' }],
    responseHeaders: [{ op: 'remove' as const, name: 'Server' }, { op: 'remove' as const, name: 'X-Internal' }, { op: 'add' as const, name: 'X-Via', value: 'tunnel' }],
  };
  const owner = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', name: 'one', tls: false, mappings: [mapping] }).start();
  const other = new TunnelClient({
    server: `127.0.0.1:${server.port}`,
    token: 'secret',
    name: 'two',
    tls: false,
    mappings: [{ ...mapping, basicAuth: { users: { mallory: 'x' } } }],
  });
  try {
    await owner.ready();
    await front.sync();
    const port = Number(front.addresses[0]!.split(':').pop());
    const ask = (headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> =>
      new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: '/doc?x=1', headers: { host: 'app.test', ...headers }, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const denied = await ask({});
    assert.equal(denied.status, 401);
    assert.equal(denied.headers['www-authenticate'], 'Basic realm="wmproxy"');
    assert.equal((await ask({ authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` })).status, 401);
    assert.equal(seen.length, 0, 'no request without valid credentials reached the local service');

    const ok = await ask({ authorization: `Basic ${Buffer.from('alice:wonder:land').toString('base64')}`, 'x-secret': 'drop me' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'private');
    assert.equal(seen[0]!['x-visitor'], '127.0.0.1 GET /doc');
    assert.equal(seen[0]!['x-secret'], undefined);
    assert.equal(ok.headers.server, undefined);
    assert.equal(ok.headers['x-internal'], undefined);
    assert.equal(ok.headers['x-via'], 'tunnel');

    // /status and the dashboard read snapshots: user names, never passwords.
    const shown = JSON.stringify([server.clients(), server.mappings()]);
    assert.ok(shown.includes('"alice":"***"'), shown);
    assert.ok(!shown.includes('wonder'), 'no password in the snapshots');

    // Another client may join the group only with the same rules.
    other.start();
    const [result] = await other.ready();
    assert.equal(result!.ok, false);
    assert.match(result!.reason ?? '', /different definition/);
  } finally {
    await other.stop({ deadlineMs: 0 });
    await owner.stop({ deadlineMs: 0 });
    await front.close();
    await server.stop({ deadlineMs: 0 });
    local.closeAllConnections();
    await new Promise<void>((resolve) => local.close(() => resolve()));
  }
});
