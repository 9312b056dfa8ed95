import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Glob,
  MimeTable,
  StaticHandler,
  bodyChunks,
  evaluatePreconditions,
  normalisePath,
  resolveFile,
  parseRange,
  rankCodings,
  renderHead,
  toWebResponse,
  StaticOptionsError,
} from '../src/index.js';
import { makeFixture, parseMultipart } from './helpers.js';

const fixture = makeFixture();
process.on('exit', () => fixture.cleanup());

test('normalisePath decodes once, resolves dot-segments and refuses escapes', () => {
  assert.deepEqual(normalisePath('/a/./b/../c/'), { ok: true, segments: ['a', 'c'], trailingSlash: true });
  assert.deepEqual(normalisePath('/a%20b/%C3%A9'), { ok: true, segments: ['a b', 'é'], trailingSlash: false });
  assert.deepEqual(normalisePath('/%252e%252e'), { ok: true, segments: ['%2e%2e'], trailingSlash: false });
  assert.deepEqual(normalisePath('/a/..'), { ok: true, segments: [], trailingSlash: true });
  for (const bad of ['/..', '/a/../..', '/%2e%2e', '/a%2fb', '/a%5cb', '/a\\b', '/a%00', '/%c0%ae', '/%ff', '/%', '/%g0', 'a/b', '', '/a%7f']) {
    assert.equal(normalisePath(bad).ok, false, bad);
  }
});

test('resolveFile maps a request path under the root or gives the refusing status', () => {
  assert.deepEqual(resolveFile('/srv/www', '/a/../b%20c.txt'), {
    ok: true,
    path: '/srv/www/b c.txt',
    relative: 'b c.txt',
    segments: ['b c.txt'],
    trailingSlash: false,
  });
  assert.equal((resolveFile('/srv/www/', '/') as { path: string }).path, '/srv/www');
  assert.equal((resolveFile('/srv/www', '/..%2fetc/passwd') as { status: number }).status, 400);
  assert.equal((resolveFile('/srv/www', '/.env') as { status: number }).status, 404);
  assert.equal((resolveFile('/srv/www', '/.env', { dotfiles: 'deny' }) as { status: number }).status, 403);
  assert.equal(resolveFile('/srv/www', '/.env', { dotfiles: 'allow' }).ok, true);
  assert.equal(resolveFile('/srv/www', '/.well-known/x').ok, true);
  assert.equal((resolveFile('/srv/www', '/secret/x.txt', { hide: [new Glob('secret')] }) as { status: number }).status, 404);
});

test('parseRange: single, suffix, open, multiple, coalescing, invalid and unsatisfiable', () => {
  assert.deepEqual(parseRange('bytes=0-9', 100, 10), { kind: 'ranges', ranges: [[0, 10]] });
  assert.deepEqual(parseRange('bytes=-10', 100, 10), { kind: 'ranges', ranges: [[90, 100]] });
  assert.deepEqual(parseRange('bytes=-1000', 100, 10), { kind: 'ranges', ranges: [[0, 100]] });
  assert.deepEqual(parseRange('bytes=95-', 100, 10), { kind: 'ranges', ranges: [[95, 100]] });
  assert.deepEqual(parseRange('BYTES = 50-59, 0-9', 100, 10), { kind: 'ranges', ranges: [[0, 10], [50, 60]] });
  assert.deepEqual(parseRange('bytes=0-10,5-20,21-30', 100, 10), { kind: 'ranges', ranges: [[0, 31]] });
  assert.deepEqual(parseRange('bytes=0-1,,2-3', 100, 10), { kind: 'ranges', ranges: [[0, 4]] });
  assert.deepEqual(parseRange('bytes=100-', 100, 10), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=-0', 100, 10), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=0-', 0, 10), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=200-300,0-1', 100, 10), { kind: 'ranges', ranges: [[0, 2]] });
  for (const bad of ['bytes=1-0', 'bytes=a-b', 'bytes=', 'pages=1-2', 'bytes=1', 'bytes=0-1,0-1,0-1']) {
    assert.deepEqual(parseRange(bad, 100, 2), { kind: 'ignore' }, bad);
  }
});

test('preconditions follow RFC 9110 section 13.2.2 order', () => {
  const etag = '"abc"';
  const mtime = 1_700_000_000;
  const at = (seconds: number) => new Date(seconds * 1000).toUTCString();
  const check = (headers: Record<string, string>) => evaluatePreconditions(headers, etag, mtime);
  assert.equal(check({}), 'proceed');
  assert.equal(check({ 'if-match': '"x", "abc"' }), 'proceed');
  assert.equal(check({ 'if-match': 'W/"abc"' }), 'failed');
  assert.equal(check({ 'if-unmodified-since': at(mtime - 1) }), 'failed');
  assert.equal(check({ 'if-unmodified-since': 'garbage' }), 'proceed');
  assert.equal(check({ 'if-none-match': 'W/"abc"' }), 'not-modified');
  assert.equal(check({ 'if-modified-since': at(mtime) }), 'not-modified');
  assert.equal(check({ 'if-modified-since': at(mtime - 1) }), 'proceed');
  assert.equal(check({ 'if-none-match': '"zzz"', 'if-modified-since': at(mtime + 10) }), 'proceed');
  assert.equal(check({ 'if-match': '"zzz"', 'if-none-match': '"abc"' }), 'failed');
});

test('rankCodings orders by q-value then server preference', () => {
  assert.deepEqual(rankCodings('gzip, br', ['br', 'zstd', 'gzip']), ['br', 'gzip']);
  assert.deepEqual(rankCodings('gzip;q=1, br;q=0.8', ['br', 'zstd', 'gzip']), ['gzip', 'br']);
  assert.deepEqual(rankCodings('*;q=0.5, gzip;q=0', ['br', 'zstd', 'gzip']), ['br', 'zstd']);
  assert.deepEqual(rankCodings('x-gzip', ['gzip']), ['gzip']);
  assert.deepEqual(rankCodings('identity', ['br', 'gzip']), []);
  assert.deepEqual(rankCodings(undefined, ['br']), []);
});

test('Glob: base-name patterns, path patterns, **, classes and alternatives', () => {
  assert.ok(new Glob('*.key').matches('a/b/c.key'));
  assert.ok(!new Glob('*.key').matches('a/b/c.keys'));
  assert.ok(new Glob('assets/**').matches('assets/x/y.js'));
  assert.ok(!new Glob('assets/**').matches('other/assets/y.js'));
  assert.ok(new Glob('/**/*.{png,jpg}').matches('img/a/b.jpg'));
  assert.ok(new Glob('**/*.png').matches('b.png'));
  assert.ok(new Glob('app.[0-9a-f][0-9a-f]*.js').matches('app.1f3e.js'));
  assert.ok(!new Glob('app.[0-9a-f][0-9a-f]*.js').matches('app.zz.js'));
  assert.ok(new Glob('file?.txt').matches('file1.txt'));
});

test('MimeTable: mime-db types, charset for text only, overrides by extension or name', () => {
  const table = new MimeTable({ md: 'text/markdown; charset=utf-8', Makefile: 'text/x-makefile' });
  assert.equal(table.lookup('a.css').contentType, 'text/css; charset=utf-8');
  assert.equal(table.lookup('a.WASM').contentType, 'application/wasm');
  assert.equal(table.lookup('a.svg').contentType, 'image/svg+xml');
  assert.equal(table.lookup('a.mp4').contentType, 'video/mp4');
  assert.equal(table.lookup('a.md').contentType, 'text/markdown; charset=utf-8');
  assert.equal(table.lookup('Makefile').contentType, 'text/x-makefile');
  assert.equal(table.lookup('noext').contentType, 'application/octet-stream');
  assert.equal(table.lookup('a.css').compressible, true);
  assert.equal(table.lookup('a.png').compressible, false);
});

test('options are validated', () => {
  assert.throws(() => new StaticHandler({ root: '' }), StaticOptionsError);
  assert.throws(() => new StaticHandler({ root: '.', index: ['../x'] }), StaticOptionsError);
  assert.throws(() => new StaticHandler({ root: '.', headers: [{ name: 'Bad Name', value: 'x' }] }), StaticOptionsError);
  assert.throws(() => new StaticHandler({ root: '.', headers: [{ name: 'X', value: 'a\r\nb' }] }), StaticOptionsError);
});

test('request targets: absolute-form keeps the path, anything else not starting with / is 400', async () => {
  const handler = new StaticHandler({ root: fixture.root, statCacheMs: 0 });
  const absolute = await handler.handle({ method: 'GET', target: 'http://example.com/hello.txt?x=1', headers: {} });
  assert.equal(absolute.status, 200);
  assert.equal(absolute.headers['content-length'], '12');
  assert.equal((await handler.handle({ method: 'GET', target: '*', headers: {} })).status, 400);
  assert.equal((await handler.handle({ method: 'GET', target: 'hello.txt', headers: {} })).status, 400);
});

test('embedding: handle() + toWebResponse() gives a web Response', async () => {
  const handler = new StaticHandler({ root: fixture.root });
  const response = toWebResponse(
    await handler.handle({ method: 'GET', target: '/big.bin', headers: new Headers({ range: 'bytes=1000-1999,5000-5009' }) }),
  );
  assert.equal(response.status, 206);
  const body = Buffer.from(await response.arrayBuffer());
  assert.equal(Number(response.headers.get('content-length')), body.length);
  const parts = parseMultipart(body, response.headers.get('content-type')!);
  assert.ok(parts[0]!.data.equals(fixture.big.subarray(1000, 2000)));
  assert.ok(parts[1]!.data.equals(fixture.big.subarray(5000, 5010)));
  const whole = toWebResponse(await handler.handle({ method: 'GET', target: '/big.bin', headers: {} }));
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(fixture.big));
});

test('embedding: renderHead() + bodyChunks() for a raw connection, in bounded chunks', async () => {
  const handler = new StaticHandler({ root: fixture.root });
  const response = await handler.handle({ method: 'GET', target: '/big.bin', headers: { 'if-none-match': '"x"' } });
  const head = new TextDecoder().decode(renderHead(response, true));
  assert.match(head, /^HTTP\/1\.1 200 OK\r\ndate: .+ GMT\r\n/);
  assert.match(head, /\r\ncontent-length: 300000\r\n/);
  assert.ok(head.endsWith('connection: keep-alive\r\n\r\n'));
  const chunks: Uint8Array[] = [];
  for await (const chunk of bodyChunks(response.body)) chunks.push(chunk);
  assert.ok(chunks.length > 1 && chunks.every((c) => c.length <= 64 * 1024));
  assert.ok(Buffer.concat(chunks).equals(fixture.big));
  const notModified = await handler.handle({ method: 'GET', target: '/big.bin', headers: { 'if-none-match': response.headers['etag']! } });
  assert.match(new TextDecoder().decode(renderHead(notModified, false)), /^HTTP\/1\.1 304 Not Modified\r\n[\s\S]*connection: close\r\n\r\n$/);
  assert.equal(notModified.body.kind, 'empty');
});

test('memory cache serves small files from memory and sees changes once metadata expires', async () => {
  const { writeFileSync, utimesSync } = await import('node:fs');
  const { join } = await import('node:path');
  const handler = new StaticHandler({ root: fixture.root, statCacheMs: 0 });
  const path = join(fixture.root, 'cached.txt');
  writeFileSync(path, 'first');
  const first = await handler.handle({ method: 'GET', target: '/cached.txt', headers: {} });
  assert.equal(first.body.kind, 'bytes');
  writeFileSync(path, 'second!');
  utimesSync(path, new Date(), new Date(Date.now() + 5000));
  const second = await handler.handle({ method: 'GET', target: '/cached.txt', headers: {} });
  assert.equal(second.body.kind === 'bytes' && Buffer.from(second.body.data).toString(), 'second!');
  const uncached = new StaticHandler({ root: fixture.root, memoryCache: false });
  assert.equal((await uncached.handle({ method: 'GET', target: '/cached.txt', headers: {} })).body.kind, 'file');
});

test('the memo answers repeated plain requests without I/O, never conditional or ranged ones', async () => {
  const handler = new StaticHandler({ root: fixture.root, statCacheMs: 60_000 });
  const plain = { method: 'GET', target: '/hello.txt', headers: {} };
  assert.equal(handler.cached(plain), undefined);
  const first = await handler.handle(plain);
  assert.equal(handler.cached(plain), first);
  assert.equal(handler.cached({ ...plain, method: 'HEAD' }), undefined);
  assert.equal(handler.cached({ ...plain, headers: { range: 'bytes=0-1' } }), undefined);
  assert.equal(handler.cached({ ...plain, headers: { 'if-none-match': first.headers['etag']! } }), undefined);
  assert.equal((await handler.handle({ ...plain, headers: { 'if-none-match': first.headers['etag']! } })).status, 304);
  assert.equal((await handler.handle({ ...plain, headers: { range: 'bytes=0-1' } })).status, 206);
  assert.equal(handler.cached({ method: 'GET', target: '/missing', headers: {} }), undefined);
  await handler.handle({ method: 'GET', target: '/missing', headers: {} });
  assert.equal(handler.cached({ method: 'GET', target: '/missing', headers: {} }), undefined);
  const negotiated = new StaticHandler({ root: fixture.root, precompressed: true });
  await negotiated.handle({ method: 'GET', target: '/app.js', headers: {} });
  assert.ok(negotiated.cached({ method: 'GET', target: '/app.js', headers: {} }));
  assert.equal(negotiated.cached({ method: 'GET', target: '/app.js', headers: { 'accept-encoding': 'br' } }), undefined);
  const browse = new StaticHandler({ root: fixture.root, browse: true });
  const html = await browse.handle({ method: 'GET', target: '/list/', headers: new Headers() });
  assert.equal(html.headers['content-type'], 'text/html; charset=utf-8');
  const json = await browse.handle({ method: 'GET', target: '/list/', headers: new Headers({ accept: 'application/json' }) });
  assert.equal(json.headers['content-type'], 'application/json; charset=utf-8');
  const none = new StaticHandler({ root: fixture.root, statCacheMs: 0 });
  await none.handle(plain);
  assert.equal(none.cached(plain), undefined);
});
