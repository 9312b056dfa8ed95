import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { parseHeaderRule } from '../src/index.js';
import { startBackend, startProxy, request, rawExchange, type Backend } from './helpers.js';

/** A backend that answers with the request headers it received, as JSON, and two Set-Cookie fields. */
function echoBackend(): Promise<Backend> {
  return startBackend('echo', (req, res) => {
    res.setHeader('Set-Cookie', ['a=1; Path=/', 'b=2; Path=/', 'c=3']);
    res.setHeader('Connection', 'keep-alive, X-Drop-Me');
    res.setHeader('X-Drop-Me', 'secret');
    res.setHeader('Server', 'backend/1.0');
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ headers: req.headers, raw: req.rawHeaders, url: req.url }));
  });
}

test('hop-by-hop fields are removed both ways, Host passes through, Set-Cookie order is kept', async () => {
  const backend = await echoBackend();
  const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const raw = await rawExchange(
      port,
      'GET /p?q=1 HTTP/1.1\r\nHost: site.test:8443\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nX-Keep: yes\r\nX-Keep: twice\r\n\r\n',
      500,
    );
    const [head, body] = raw.split('\r\n\r\n') as [string, string];
    const seen = JSON.parse(body) as { headers: IncomingHttpHeaders; url: string };
    assert.equal(seen.url, '/p?q=1');
    assert.equal(seen.headers.host, 'site.test:8443');
    for (const name of ['x-hop', 'keep-alive', 'te', 'proxy-authorization']) assert.equal(seen.headers[name], undefined, `${name} removed`);
    assert.equal(seen.headers['x-keep'], 'yes, twice');
    assert.deepEqual(
      head.split('\r\n').filter((line) => line.startsWith('Set-Cookie')),
      ['Set-Cookie: a=1; Path=/', 'Set-Cookie: b=2; Path=/', 'Set-Cookie: c=3'],
    );
    assert.doesNotMatch(head, /X-Drop-Me/i, 'a field the upstream listed in Connection is not forwarded');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('X-Forwarded-*, X-Real-IP and Forwarded are set, and spoofed ones from untrusted clients replaced', async () => {
  const backend = await echoBackend();
  const { proxy, base } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const reply = await request(`${base}/`, {
      headers: { host: 'site.test', 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6', forwarded: 'for=6.6.6.6', 'x-forwarded-proto': 'https' },
    });
    const seen = (JSON.parse(reply.body) as { headers: IncomingHttpHeaders }).headers;
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen['x-real-ip'], '127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'http');
    assert.equal(seen['x-forwarded-host'], 'site.test');
    assert.equal(seen.forwarded, 'for=127.0.0.1;proto=http;host=site.test');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('from a trusted proxy, incoming forwarding headers are kept and extended', async () => {
  const backend = await echoBackend();
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', forwarding: { trustedProxies: ['127.0.0.0/8', '::1'] }, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }],
  });
  try {
    const reply = await request(`${base}/`, {
      headers: { host: 'site.test', 'x-forwarded-for': '203.0.113.7', 'x-real-ip': '203.0.113.7', forwarded: 'for=203.0.113.7', 'x-forwarded-proto': 'https' },
    });
    const seen = (JSON.parse(reply.body) as { headers: IncomingHttpHeaders }).headers;
    assert.equal(seen['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(seen['x-real-ip'], '203.0.113.7');
    assert.equal(seen['x-forwarded-proto'], 'https');
    assert.equal(seen.forwarded, 'for=203.0.113.7, for=127.0.0.1;proto=http;host=site.test');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('header rules set, add, add-if-missing and remove, with variables, both ways', async () => {
  const backend = await echoBackend();
  const rules = ['set X-Client {client_ip}', 'add X-Tag one', 'add X-Tag two', 'default X-Env prod', 'default X-Present fallback', 'remove X-Secret', 'X-Route: {method} {host}{uri}'];
  const response = ['down:remove Server', 'down:set X-Upstream {upstream_addr}', 'down:add X-Status {status}'];
  const parsed = [...rules, ...response].map(parseHeaderRule);
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [
      {
        listen: '127.0.0.1:0',
        vhosts: [
          {
            locations: [
              {
                path: '/',
                upstream: 'app',
                requestHeaders: parsed.filter((p) => !p.response).map((p) => p.rule),
                responseHeaders: parsed.filter((p) => p.response).map((p) => p.rule),
              },
            ],
          },
        ],
      },
    ],
  });
  try {
    const reply = await request(`${base}/x?y=1`, { headers: { host: 'site.test', 'x-secret': 'hide', 'x-present': 'mine', 'x-client': 'spoof' } });
    const seen = (JSON.parse(reply.body) as { headers: IncomingHttpHeaders }).headers;
    assert.equal(seen['x-client'], '127.0.0.1');
    assert.equal(seen['x-tag'], 'one, two');
    assert.equal(seen['x-env'], 'prod');
    assert.equal(seen['x-present'], 'mine');
    assert.equal(seen['x-secret'], undefined);
    assert.equal(seen['x-route'], 'GET site.test/x?y=1');
    assert.equal(reply.headers.server, undefined);
    assert.equal(reply.headers['x-upstream'], backend.address);
    assert.equal(reply.headers['x-status'], '200');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('default traceparent {new_traceparent} starts a W3C trace when the client sent none, forwards the client\'s unchanged, and each request gets its own', async () => {
  const backend = await echoBackend();
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app', requestHeaders: [parseHeaderRule('default traceparent {new_traceparent}').rule] }] }] }],
  });
  try {
    const seen = async (headers: Record<string, string>) => (JSON.parse((await request(`${base}/t`, { headers })).body) as { headers: IncomingHttpHeaders }).headers.traceparent;
    const first = await seen({});
    const second = await seen({});
    const shape = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-01$/;
    assert.match(String(first), shape);
    assert.match(String(second), shape);
    assert.notEqual(first, second);
    assert.notEqual(String(first).slice(3, 35), String(second).slice(3, 35), 'a new trace id per request');
    const client = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    assert.equal(await seen({ traceparent: client }), client);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('header rule syntax errors are reported', () => {
  assert.throws(() => parseHeaderRule('set X-A'), /needs a value/);
  assert.throws(() => parseHeaderRule('frobnicate X-A b'), /invalid header rule/);
  assert.throws(() => parseHeaderRule('set X-A {nope}'), /unknown variable/);
  assert.deepEqual(parseHeaderRule('remove X-A'), { rule: { op: 'remove', name: 'X-A' }, response: false });
});

test('a location with basicAuth answers 401 with a challenge until the credentials match, then proxies', async () => {
  let reached = 0;
  const backend = await startBackend('auth', (_req, res) => {
    reached++;
    res.end('secret page');
  });
  const { proxy, base } = await startProxy({
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [
      {
        listen: '127.0.0.1:0',
        vhosts: [{ locations: [{ path: '/', upstream: 'app', basicAuth: { users: { alice: 'wonder:land' }, realm: 'tunnel "web"' } }, { path: '/open', upstream: 'app' }] }],
      },
    ],
  });
  const basic = (text: string): string => `Basic ${Buffer.from(text).toString('base64')}`;
  try {
    const none = await request(`${base}/`);
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Basic realm="tunnel web"');
    for (const wrong of [basic('alice:wonder'), basic('bob:wonder:land'), 'Bearer x', basic('alice')]) {
      assert.equal((await request(`${base}/`, { headers: { authorization: wrong } })).status, 401, wrong);
    }
    assert.equal(reached, 0, 'no unauthenticated request reached the upstream');
    const ok = await request(`${base}/page`, { headers: { authorization: basic('alice:wonder:land') } });
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'secret page');
    assert.equal((await request(`${base}/open`)).status, 200, 'a location without basicAuth is open');
    assert.equal(reached, 2);
  } finally {
    await proxy.close();
    await backend.close();
  }
});
