import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BasicAuth, ParentProxyError, TargetError, basicCredentials, parseAbsoluteTarget, parseConnectTarget, parseParentProxy } from '../src/index.js';

test('parses absolute-form targets', () => {
  assert.deepEqual(parseAbsoluteTarget('http://Example.com/a?b'), { host: 'example.com', port: 80, authority: 'example.com:80', path: '/a?b', hostHeader: 'example.com' });
  assert.deepEqual(parseAbsoluteTarget('http://127.0.0.1:8080'), { host: '127.0.0.1', port: 8080, authority: '127.0.0.1:8080', path: '/', hostHeader: '127.0.0.1:8080' });
  assert.deepEqual(parseAbsoluteTarget('HTTP://[::1]:81?q'), { host: '::1', port: 81, authority: '[::1]:81', path: '/?q', hostHeader: '[::1]:81' });
  assert.equal(parseAbsoluteTarget('http://user:pw@h.test/').host, 'h.test');
  for (const bad of ['https://h/', '/path', 'http://', 'http://h:0/', 'http://h:99999/', 'http://[::1/', 'http://a b/', 'http://h/#frag', 'http://::1/']) {
    assert.throws(() => parseAbsoluteTarget(bad), TargetError, bad);
  }
});

test('parses CONNECT targets (port required)', () => {
  assert.deepEqual(parseConnectTarget('example.com:443'), { host: 'example.com', port: 443, authority: 'example.com:443' });
  assert.deepEqual(parseConnectTarget('[2001:db8::1]:22'), { host: '2001:db8::1', port: 22, authority: '[2001:db8::1]:22' });
  for (const bad of ['example.com', 'example.com:', ':443', '2001:db8::1:22', 'h:+1']) assert.throws(() => parseConnectTarget(bad), TargetError, bad);
});

test('parses parent proxy URLs', () => {
  assert.deepEqual(parseParentProxy('http://127.0.0.1:3128'), { kind: 'http', host: '127.0.0.1', port: 3128 });
  assert.deepEqual(parseParentProxy('socks5://u:p%40ss@[::1]:1080'), { kind: 'socks5', host: '::1', port: 1080, username: 'u', password: 'p@ss' });
  assert.equal(parseParentProxy('http://a:b@proxy.test').port, 8080);
  assert.equal(parseParentProxy('http://a:b@proxy.test:1').authorization, basicCredentials('a', 'b'));
  for (const bad of ['ftp://h:1', 'h:1', 'http://h:1/path', 'http://:1', 'socks5://h:70000']) assert.throws(() => parseParentProxy(bad), ParentProxyError, bad);
});

test('checks Basic credentials', () => {
  const auth = new BasicAuth({ alice: 'pa:ss', 'ünï': 'çödé' });
  assert.equal(auth.check(basicCredentials('alice', 'pa:ss')), 'alice');
  assert.equal(auth.check('basic ' + Buffer.from('alice:pa:ss').toString('base64')), 'alice', 'scheme is case-insensitive');
  assert.equal(auth.check(basicCredentials('ünï', 'çödé')), 'ünï');
  assert.equal(auth.check(basicCredentials('alice', 'pa:sS')), undefined);
  assert.equal(auth.check(basicCredentials('bob', 'pa:ss')), undefined);
  assert.equal(auth.check('Bearer xyz'), undefined);
  assert.equal(auth.check('Basic !!!'), undefined);
  assert.equal(auth.check(undefined), undefined);
  assert.equal(auth.challenge, 'Basic realm="wmproxy"');
});

test('refuses an open proxy on a non-loopback address unless told', async () => {
  const { openProxyRefusal } = await import('../src/index.js');
  const { parseAddressList } = await import('@wmproxy/core-net');
  assert.equal(openProxyRefusal(parseAddressList('127.0.0.1:8090, [::1]:8090, localhost:1'), {}), undefined);
  assert.match(openProxyRefusal(parseAddressList('127.0.0.1:8090, 0.0.0.0:8090'), {})!, /open proxy on 0\.0\.0\.0:8090/);
  assert.match(openProxyRefusal(parseAddressList(':8090'), {})!, /every address/);
  assert.equal(openProxyRefusal(parseAddressList(':8090'), { users: { a: 'b' } }), undefined);
  assert.equal(openProxyRefusal(parseAddressList(':8090'), { allow: ['10.0.0.0/8'] }), undefined);
  assert.equal(openProxyRefusal(parseAddressList(':8090'), { insecureOpen: true }), undefined);
  assert.match(openProxyRefusal(parseAddressList(':8090'), { users: {}, allow: [] })!, /--insecure-open/);
});
