import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { canonicalContentLength, isValidHost, normalizePath, parseRequestHead, parseResponseHead, removeHopByHop } from '../src/index.js';

const request = (text: string) => parseRequestHead(Buffer.from(text, 'latin1'));

test('Connection tokens naming Content-Length, Transfer-Encoding or Host are ignored by the parser', () => {
  const result = request('POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Content-Length, host, Transfer-Encoding, x-trace\r\nContent-Length: 3\r\n\r\nabc');
  assert.equal(result.kind, 'ok');
  if (result.kind !== 'ok') return;
  assert.deepEqual(result.head.connection, ['keep-alive', 'x-trace']);
  assert.equal(result.head.framing, 'length');
  const response = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok'));
  assert.equal(response.kind, 'ok');
  if (response.kind === 'ok') assert.deepEqual(response.head.connection, []);
});

test('removeHopByHop drops what Connection names, except framing and routing fields, and sends one plain Content-Length', () => {
  const out = removeHopByHop([
    ['Host', 'a'],
    ['Connection', 'Content-Length, Host, X-Trace'],
    ['Content-Length', '5, 5'],
    ['Content-Length', '5'],
    ['X-Trace', '1'],
    ['Keep-Alive', 'timeout=5'],
  ]);
  assert.deepEqual(out, [
    ['Host', 'a'],
    ['Content-Length', '5'],
  ]);
  assert.equal(canonicalContentLength(' 007 , 7'), '7');
  assert.equal(canonicalContentLength('0'), '0');
});

test('a Host field must be host[:port]: no userinfo, path, list, quote or whitespace', () => {
  for (const good of ['', 'a', 'a.b.c', 'xn--bcher-kva.example', 'a-b_c~d', '127.0.0.1', '127.0.0.1:80', '[::1]', '[::1]:8080', '[::ffff:127.0.0.1]:1', 'a:']) {
    assert.equal(isValidHost(good), true, good);
  }
  for (const bad of ['a b', 'a,b', 'a;b', 'a"b', 'a/b', 'a@b', 'a\\b', ':80', '[::1', '[]', '[::1]x', 'a:8o', 'a:123456', '[zz]', 'é.example', 'a%20b']) {
    assert.equal(isValidHost(bad), false, bad);
  }
  const result = request('GET / HTTP/1.1\r\nHost: evil.test, good.test\r\n\r\n');
  assert.equal(result.kind, 'error');
  if (result.kind === 'error') assert.equal(result.status, 400);
});

test('normalizePath decodes unreserved escapes, removes dot segments and merges slashes, as nginx matches', () => {
  const cases: Array<[string, string | undefined]> = [
    ['/', '/'],
    ['/a/b', '/a/b'],
    ['/%61dmin', '/admin'],
    ['/%7euser/%2f/%2F', '/~user/%2F/%2F'],
    ['//admin//x', '/admin/x'],
    ['/./a/./b/.', '/a/b/'],
    ['/a/../b', '/b'],
    ['/a/%2e%2e/b', '/b'],
    ['/a/b/..', '/a/'],
    ['/.well-known/x', '/.well-known/x'],
    ['/a/..%2fb', '/a/..%2Fb'],
    ['/..', undefined],
    ['/a/../..', undefined],
    ['/%00', undefined],
    ['/%g0', undefined],
    ['/%4', undefined],
    ['/public/..\\admin', undefined],
    ['/a\\b', undefined],
    ['/a/%5Cb', '/a/%5Cb'],
  ];
  for (const [input, expected] of cases) assert.equal(normalizePath(input), expected, input);
});

const pathChar = fc.constantFrom('a', 'b', '.', '/', '%2e', '%2E', '%2f', '%61', '%7e', '~', '-', '%25', '%00', '%');
const pathArbitrary = fc.array(pathChar, { maxLength: 24 }).map((parts) => `/${parts.join('')}`);

test('normalizePath is idempotent and leaves no dot segment, empty segment or encoded unreserved character', () => {
  fc.assert(
    fc.property(pathArbitrary, (path) => {
      const once = normalizePath(path);
      if (once === undefined) return;
      assert.equal(normalizePath(once), once);
      assert.ok(once.startsWith('/'));
      const segments = once.split('/').slice(1, -1);
      assert.ok(!segments.some((segment) => segment === '' || segment === '.' || segment === '..'), once);
      assert.ok(!/%(2[dDeE]|5[fF]|7[eE]|[46][1-9a-fA-F]|[57][0-9aA]|3[0-9])/.test(once), once);
    }),
    { numRuns: 500, seed: 13 },
  );
});

test('normalizePath agrees with the WHATWG URL parser on where a path lands, whenever both accept it', () => {
  fc.assert(
    fc.property(pathArbitrary, (path) => {
      const ours = normalizePath(path);
      if (ours === undefined || path.includes('%2f') || path.includes('%2F')) return;
      // URL keeps empty segments and encoded letters; compare after the same two steps.
      const url = new URL(path.replace(/\/+/g, '/'), 'http://h').pathname;
      const decoded = url.replace(/%([0-9A-Fa-f]{2})/g, (match, hex: string) => {
        const c = parseInt(hex, 16);
        return /[A-Za-z0-9\-._~]/.test(String.fromCharCode(c)) ? String.fromCharCode(c) : match.toUpperCase();
      });
      if (decoded.includes('/./') || decoded.includes('/../') || decoded.endsWith('/.') || decoded.endsWith('/..')) return;
      assert.equal(ours, decoded.replace(/\/+/g, '/'), path);
    }),
    { numRuns: 500, seed: 7 },
  );
});
