import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../src/index.js';
import { startBackend, startProxy, request, rawExchange } from './helpers.js';

const respond = (body: string) => ({ respond: { status: 200, body } });

test('virtual hosts: exact name, then the longest wildcard, then the explicit default; port ignored', () => {
  const router = new Router([
    { names: ['other.test'], locations: [{ path: '/', ...respond('other') }] },
    { names: ['fallback.test'], default: true, locations: [{ path: '/', ...respond('default') }] },
    { names: ['*.example.com'], locations: [{ path: '/', ...respond('wild') }] },
    { names: ['*.api.example.com'], locations: [{ path: '/', ...respond('wild-api') }] },
    { names: ['www.example.com'], locations: [{ path: '/', ...respond('www') }] },
  ]);
  const body = (host: string | undefined) => router.route(host, '/', 'GET', '127.0.0.1')?.spec.respond?.body;
  assert.equal(body('www.example.com'), 'www');
  assert.equal(body('WWW.Example.COM:8080'), 'www');
  assert.equal(body('a.example.com'), 'wild');
  assert.equal(body('v1.api.example.com'), 'wild-api');
  assert.equal(body('example.com'), 'default', 'a wildcard does not match the bare domain');
  assert.equal(body('unknown.test'), 'default', 'the server marked default, not the last one');
  assert.equal(body(undefined), 'default');
  assert.equal(body('other.test.'), 'other', 'a trailing dot is ignored');
});

test('locations ahead of the virtual hosts win for every host, even over an exact location; other paths route as usual', () => {
  const router = new Router(
    [
      { names: ['site.test'], locations: [{ path: '/', ...respond('site') }, { exact: '/.well-known/acme-challenge/t', ...respond('exact') }] },
    ],
    undefined,
    undefined,
    [{ path: '/.well-known/acme-challenge/', ...respond('acme') }],
  );
  const body = (host: string | undefined, path: string) => router.route(host, path, 'GET', '127.0.0.1')?.spec.respond?.body;
  assert.equal(body('site.test', '/.well-known/acme-challenge/t'), 'acme');
  assert.equal(body('unknown.test', '/.well-known/acme-challenge/x'), 'acme', 'no virtual host for the name: still answered');
  assert.equal(body('site.test', '/.well-known/other'), 'site');
  assert.equal(body('unknown.test', '/'), undefined);
});

test('locations follow nginx precedence: exact, then regex over prefix, unless the longest prefix says noRegex', () => {
  const router = new Router([
    {
      locations: [
        { path: '/', ...respond('root') },
        { path: '/images/', ...respond('images') },
        { path: '/static/', noRegex: true, ...respond('static') },
        { regex: '\\.(png|jpg)$', ...respond('regex-img') },
        { regex: '^/api/v[0-9]+/', ...respond('regex-api') },
        { exact: '/images/logo.png', ...respond('exact') },
        { path: '/admin/', methods: ['GET'], clientIps: ['10.0.0.0/8'], ...respond('admin') },
      ],
    },
  ]);
  const body = (path: string, method = 'GET', ip = '127.0.0.1') => router.route('h', path, method, ip)?.spec.respond?.body;
  assert.equal(body('/images/logo.png'), 'exact');
  assert.equal(body('/images/cat.png'), 'regex-img', 'a matching regex beats the longest prefix');
  assert.equal(body('/images/readme.txt'), 'images', 'no regex matches: the longest prefix wins');
  assert.equal(body('/static/a.png'), 'static', 'noRegex (^~) stops the regex search');
  assert.equal(body('/api/v2/users'), 'regex-api');
  assert.equal(body('/anything'), 'root');
  assert.equal(body('/admin/x', 'GET', '10.1.2.3'), 'admin');
  assert.equal(body('/admin/x', 'POST', '10.1.2.3'), 'root', 'method condition fails: next best location');
  assert.equal(body('/admin/x', 'GET', '192.168.1.1'), 'root', 'client-IP condition fails');
});

test('routes real requests by Host and path, with fixed responses and 404 when nothing matches', async () => {
  const api = await startBackend('api');
  const web = await startBackend('web');
  const { proxy, base, port } = await startProxy({
    upstreams: [
      { name: 'api', servers: [{ address: api.address }] },
      { name: 'web', servers: [{ address: web.address }] },
    ],
    servers: [
      {
        listen: '127.0.0.1:0',
        vhosts: [
          { names: ['api.test'], locations: [{ path: '/', upstream: 'api' }, { exact: '/ping', respond: { status: 200, body: 'pong', headers: { 'X-Fixed': '1' } } }] },
          { names: ['*.web.test'], locations: [{ path: '/app/', upstream: 'web', stripPrefix: '/app' }] },
        ],
      },
    ],
  });
  try {
    let reply = await request(`${base}/users`, { headers: { host: 'api.test:9999' } });
    assert.equal(reply.body, 'api');
    reply = await request(`${base}/ping`, { headers: { host: 'api.test' } });
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'pong');
    assert.equal(reply.headers['x-fixed'], '1');
    reply = await request(`${base}/app/page`, { headers: { host: 'www.web.test' } });
    assert.equal(reply.body, 'web');
    reply = await request(`${base}/other`, { headers: { host: 'www.web.test' } });
    assert.equal(reply.status, 404);
    reply = await request(`${base}/`, { headers: { host: 'nobody.test' } });
    assert.equal(reply.status, 404, 'no default server configured: 404');
    // absolute-form request-target: its authority decides the virtual host
    const raw = await rawExchange(port, 'GET http://api.test/ping HTTP/1.1\r\nHost: nobody.test\r\nConnection: close\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 200 OK/);
    assert.match(raw, /pong$/);
  } finally {
    await proxy.close();
    await api.close();
    await web.close();
  }
});
