import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AccessLog, createStaticServer, type StaticServer } from '../src/index.js';
import { ADAPTERS, CSS, SECRET, makeFixture, parseMultipart, request, type RawResponse } from './helpers.js';

const fixture = makeFixture();
after(() => fixture.cleanup());

const IMMUTABLE = 'public, max-age=31536000, immutable';

for (const runtime of ADAPTERS) {
  describe(`file server on ${runtime}`, () => {
    let main: StaticServer;
    let spa: StaticServer;
    let tryFiles: StaticServer;
    let symlinks: StaticServer;
    let get: (target: string, headers?: Record<string, string>) => Promise<RawResponse>;

    before(async () => {
      main = await createStaticServer({
        runtime,
        root: fixture.root,
        listen: '127.0.0.1:0',
        browse: true,
        precompressed: true,
        compress: true,
        cors: true,
        robots: true,
        hide: ['*.key'],
        cacheControl: [{ pattern: 'assets/**', value: IMMUTABLE }],
        headers: [{ name: 'X-Served-By', value: 'wmproxy' }],
        mimeTypes: { special: 'text/x-special; charset=latin1' },
        notFoundPage: '404.html',
        statCacheMs: 0,
        maxRanges: 10,
      });
      spa = await createStaticServer({ runtime, root: fixture.root, listen: '127.0.0.1:0', spa: true });
      tryFiles = await createStaticServer({
        runtime,
        root: fixture.root,
        listen: '127.0.0.1:0',
        tryFiles: ['{path}', '{path}.html', '{path}/', '=410'],
      });
      symlinks = await createStaticServer({ runtime, root: fixture.root, listen: '127.0.0.1:0', followSymlinks: true });
      get = (target, headers) => request(main.port, 'GET', target, headers);
    });
    after(async () => {
      await Promise.all([main.close(), spa.close(), tryFiles.close(), symlinks.close()]);
    });

    describe('methods', () => {
      test('serves a file to GET with length, type, validators and extra headers', async () => {
        const res = await get('/hello.txt');
        assert.equal(res.status, 200);
        assert.equal(res.body.toString(), 'hello world\n');
        assert.equal(res.headers['content-length'], '12');
        assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
        assert.match(res.headers['etag']!, /^"[0-9a-f]+-c-[0-9a-f]+"$/);
        assert.equal(res.headers['last-modified'], new Date(Math.floor(Date.parse(res.headers['last-modified']!) / 1000) * 1000).toUTCString());
        assert.equal(res.headers['accept-ranges'], 'bytes');
        assert.equal(res.headers['x-served-by'], 'wmproxy');
      });

      test('answers HEAD with the GET headers and no body', async () => {
        const res = await request(main.port, 'HEAD', '/data.bin');
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-length'], '10000');
        assert.equal(res.body.length, 0);
      });

      test('serves an empty file', async () => {
        const res = await get('/empty.txt');
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-length'], '0');
        assert.equal(res.body.length, 0);
      });

      test('serves a large file from disk byte-exactly', async () => {
        const res = await get('/big.bin');
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-length'], String(fixture.big.length));
        assert.ok(res.body.equals(fixture.big));
      });

      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
        test(`refuses ${method} with 405 and Allow`, async () => {
          const res = await request(main.port, method, '/hello.txt', { 'content-length': '0' });
          assert.equal(res.status, 405);
          assert.equal(res.headers['allow'], 'GET, HEAD, OPTIONS');
        });
      }

      test('refuses OPTIONS without CORS preflight headers with 405', async () => {
        const res = await request(spa.port, 'OPTIONS', '/hello.txt');
        assert.equal(res.status, 405);
        assert.equal(res.headers['allow'], 'GET, HEAD');
      });
    });

    describe('path safety', () => {
      // Every one of these must stay inside the root. Bun.serve merges dot-segments
      // (plain or %2e-encoded) before the handler sees the URL, so there those land
      // inside the root and are not found; everything else is a 400 on both.
      const dotSegments = ['/../secret.txt', '/docs/../../secret.txt', '/%2e%2e/secret.txt', '/%2E%2E/secret.txt', '/.%2e/secret.txt', '/docs/%2e%2e/%2e%2e/secret.txt'];
      const malformed = [
        '/..%2fsecret.txt',
        '/..%2Fsecret.txt',
        '/%2e%2e%2fsecret.txt',
        '/..%5csecret.txt',
        '/..%5Csecret.txt',
        '/..\\secret.txt',
        '/docs\\..\\..\\secret.txt',
        '/hello.txt%00.html',
        '/hello.txt%00',
        '/%c0%ae%c0%ae/secret.txt',
        '/%c0%af',
        '/%e0%80%ae%e0%80%ae/secret.txt',
        '/%ff%fe',
        '/%',
        '/%zz',
        '/%2',
        '/a%0d%0ab',
      ];
      for (const target of dotSegments) {
        test(`refuses ${target}`, async () => {
          const res = await get(target);
          assert.ok(!res.body.toString('latin1').includes(SECRET));
          if (runtime === 'bun') assert.ok(res.status === 404 || res.status === 400, `status ${res.status}`);
          else assert.equal(res.status, 400);
        });
      }
      for (const target of malformed) {
        test(`refuses ${JSON.stringify(target)} with 400`, async () => {
          const res = await get(target);
          assert.ok(!res.body.toString('latin1').includes(SECRET));
          assert.ok(res.status === 400 || (runtime === 'bun' && res.status === 404 && target.includes('\\')), `status ${res.status}`);
        });
      }

      test('decodes percent-escapes once only', async () => {
        assert.equal((await get('/%252e%252e/secret.txt')).status, 404);
        assert.equal((await get('/hello%2etxt')).body.toString(), 'hello world\n');
        assert.equal((await get('/list/a%3Cb%3E%26c.txt')).body.toString(), 'x');
      });

      test('normalises dot-segments and repeated slashes inside the root', async () => {
        assert.equal((await get('/docs/../hello.txt')).body.toString(), 'hello world\n');
        assert.equal((await get('/./docs/./index.html')).body.toString(), '<h1>docs</h1>\n');
        assert.equal((await get('//hello.txt')).body.toString(), 'hello world\n');
      });

      test('refuses a symlink that leaves the root with 403, serves one inside', async () => {
        const out = await get('/link-out.txt');
        assert.equal(out.status, 403);
        assert.ok(!out.body.toString().includes(SECRET));
        assert.equal((await get('/link-in.txt')).body.toString(), 'hello world\n');
      });

      test('follows a symlink out of the root when allowed', async () => {
        const res = await request(symlinks.port, 'GET', '/link-out.txt');
        assert.equal(res.status, 200);
        assert.equal(res.body.toString(), SECRET);
      });

      test('hides dot-files, encoded or not, but serves .well-known', async () => {
        assert.equal((await get('/.secret')).status, 404);
        assert.equal((await get('/%2esecret')).status, 404);
        assert.equal((await get('/list/.hidden')).status, 404);
        const wellKnown = await get('/.well-known/security.txt');
        assert.equal(wellKnown.status, 200);
        assert.match(wellKnown.body.toString(), /Contact:/);
      });

      test('hides paths matching the hide list', async () => {
        assert.equal((await get('/private.key')).status, 404);
        assert.equal((await get('/list/key.key')).status, 404);
        assert.equal((await request(spa.port, 'GET', '/private.key')).status, 200);
      });
    });

    describe('directories', () => {
      test('redirects a directory without a trailing slash, keeping the query', async () => {
        const res = await get('/docs?x=1&y=%20');
        assert.equal(res.status, 301);
        assert.equal(res.headers['location'], '/docs/?x=1&y=%20');
      });

      test('never redirects to another host (//name)', async () => {
        const res = await get('//evil.example');
        assert.equal(res.status, 301);
        assert.equal(res.headers['location'], '/evil.example/');
      });

      test('serves the index file of a directory', async () => {
        assert.equal((await get('/docs/')).body.toString(), '<h1>docs</h1>\n');
        assert.equal((await get('/')).body.toString(), '<h1>home</h1>\n');
      });

      test('uses the index names given, in order', async () => {
        const server = await createStaticServer({ runtime, root: fixture.root, listen: '127.0.0.1:0', index: ['missing.htm', 'page.html'] });
        try {
          assert.equal((await request(server.port, 'GET', '/nested/')).body.toString(), '<p>page</p>\n');
          assert.equal((await request(server.port, 'GET', '/docs/')).status, 404);
        } finally {
          await server.close();
        }
      });

      test('lists a directory as HTML with escaped names, without hidden entries', async () => {
        const res = await get('/list/');
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
        const html = res.body.toString();
        assert.ok(html.includes('a&lt;b&gt;&amp;c.txt'));
        assert.ok(html.includes('href="./a%3Cb%3E%26c.txt"'));
        assert.ok(!html.includes('a<b>'));
        assert.ok(html.includes('href="./sub/"'));
        assert.ok(!html.includes('.hidden'));
        assert.ok(!html.includes('key.key'));
      });

      test('lists as JSON when the client accepts JSON, sorted by the query', async () => {
        const res = await get('/list/?sort=size&order=desc', { accept: 'application/json' });
        assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
        const entries = JSON.parse(res.body.toString()) as Array<{ name: string; isDir: boolean; size: number; url: string }>;
        assert.deepEqual(entries.map((e) => e.name), ['sub', 'zz.txt', 'm.txt', 'a<b>&c.txt']);
        assert.equal(entries[3]!.url, '/list/a%3Cb%3E%26c.txt');
        const byName = JSON.parse((await get('/list/?sort=name', { accept: 'application/json' })).body.toString()) as Array<{ name: string }>;
        assert.deepEqual(byName.map((e) => e.name), ['sub', 'a<b>&c.txt', 'm.txt', 'zz.txt']);
      });

      test('does not list directories unless browsing is on', async () => {
        assert.equal((await request(tryFiles.port, 'GET', '/list/')).status, 410);
        assert.equal((await request(symlinks.port, 'GET', '/list/')).status, 404);
      });
    });

    describe('fallbacks', () => {
      test('serves the custom 404 page with status 404', async () => {
        const res = await get('/nope.txt');
        assert.equal(res.status, 404);
        assert.equal(res.body.toString(), '<h1>custom not found</h1>\n');
        assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
      });

      test('SPA: unknown page paths get index.html, unknown assets 404', async () => {
        const page = await request(spa.port, 'GET', '/app/settings/profile');
        assert.equal(page.status, 200);
        assert.equal(page.body.toString(), '<h1>home</h1>\n');
        assert.equal((await request(spa.port, 'GET', '/missing.png')).status, 404);
        assert.equal((await request(spa.port, 'GET', '/missing.png', { accept: 'text/html' })).status, 200);
        assert.equal((await request(spa.port, 'GET', '/hello.txt')).body.toString(), 'hello world\n');
      });

      test('try_files: candidates in order, then the final status', async () => {
        assert.equal((await request(tryFiles.port, 'GET', '/nested/page')).body.toString(), '<p>page</p>\n');
        assert.equal((await request(tryFiles.port, 'GET', '/docs')).body.toString(), '<h1>docs</h1>\n');
        assert.equal((await request(tryFiles.port, 'GET', '/hello.txt')).body.toString(), 'hello world\n');
        assert.equal((await request(tryFiles.port, 'GET', '/nothing')).status, 410);
        assert.equal((await request(tryFiles.port, 'GET', '/.secret')).status, 404);
      });

      test('try_files with a fallback file', async () => {
        const server = await createStaticServer({ runtime, root: fixture.root, listen: '127.0.0.1:0', tryFiles: ['{path}', '/nested/page.html'] });
        try {
          const res = await request(server.port, 'GET', '/whatever/route');
          assert.equal(res.status, 200);
          assert.equal(res.body.toString(), '<p>page</p>\n');
        } finally {
          await server.close();
        }
      });

      test('robots.txt switch answers Disallow when no file exists', async () => {
        const res = await get('/robots.txt');
        assert.equal(res.status, 200);
        assert.equal(res.body.toString(), 'User-agent: *\nDisallow: /\n');
        assert.equal((await request(spa.port, 'GET', '/robots.txt')).status, 404); // switch off
      });
    });

    describe('conditional requests', () => {
      let etag: string;
      let lastModified: string;
      let mtime: number;
      before(async () => {
        const res = await get('/data.bin');
        etag = res.headers['etag']!;
        lastModified = res.headers['last-modified']!;
        mtime = Date.parse(lastModified);
      });
      const date = (ms: number) => new Date(ms).toUTCString();

      test('If-None-Match with the current ETag → 304 with validators, no body', async () => {
        const res = await get('/data.bin', { 'if-none-match': etag });
        assert.equal(res.status, 304);
        assert.equal(res.headers['etag'], etag);
        assert.equal(res.body.length, 0);
      });
      test('If-None-Match compares weakly and accepts lists and *', async () => {
        assert.equal((await get('/data.bin', { 'if-none-match': `W/${etag}` })).status, 304);
        assert.equal((await get('/data.bin', { 'if-none-match': `"nope", ${etag}` })).status, 304);
        assert.equal((await get('/data.bin', { 'if-none-match': '*' })).status, 304);
        assert.equal((await get('/data.bin', { 'if-none-match': '"nope"' })).status, 200);
        assert.equal((await request(main.port, 'HEAD', '/data.bin', { 'if-none-match': etag })).status, 304);
      });
      test('If-Modified-Since → 304 when not modified since, 200 when modified', async () => {
        assert.equal((await get('/data.bin', { 'if-modified-since': lastModified })).status, 304);
        assert.equal((await get('/data.bin', { 'if-modified-since': date(mtime + 3600_000) })).status, 304);
        assert.equal((await get('/data.bin', { 'if-modified-since': date(mtime - 1000) })).status, 200);
        assert.equal((await get('/data.bin', { 'if-modified-since': 'not a date' })).status, 200);
      });
      test('If-Modified-Since is ignored when If-None-Match is present', async () => {
        const res = await get('/data.bin', { 'if-none-match': '"nope"', 'if-modified-since': date(mtime + 3600_000) });
        assert.equal(res.status, 200);
      });
      test('If-Match compares strongly → 412 on mismatch', async () => {
        assert.equal((await get('/data.bin', { 'if-match': etag })).status, 200);
        assert.equal((await get('/data.bin', { 'if-match': '*' })).status, 200);
        assert.equal((await get('/data.bin', { 'if-match': '"nope"' })).status, 412);
        assert.equal((await get('/data.bin', { 'if-match': `W/${etag}` })).status, 412);
      });
      test('If-Unmodified-Since → 412 when modified since, ignored under If-Match', async () => {
        assert.equal((await get('/data.bin', { 'if-unmodified-since': date(mtime - 1000) })).status, 412);
        assert.equal((await get('/data.bin', { 'if-unmodified-since': lastModified })).status, 200);
        assert.equal((await get('/data.bin', { 'if-match': etag, 'if-unmodified-since': date(mtime - 1000) })).status, 200);
      });
      test('precondition failures come before If-None-Match', async () => {
        assert.equal((await get('/data.bin', { 'if-match': '"nope"', 'if-none-match': etag })).status, 412);
      });
      test('a changed file gets a new ETag and is served again', async () => {
        const { writeFileSync, utimesSync } = await import('node:fs');
        const path = join(fixture.root, 'changing.txt');
        writeFileSync(path, 'one');
        utimesSync(path, new Date(1_600_000_000_000), new Date(1_600_000_000_000));
        const first = await get('/changing.txt');
        writeFileSync(path, 'two!');
        const second = await get('/changing.txt', { 'if-none-match': first.headers['etag']! });
        assert.equal(second.status, 200);
        assert.equal(second.body.toString(), 'two!');
        assert.notEqual(second.headers['etag'], first.headers['etag']);
      });
    });

    describe('ranges', () => {
      for (const [file, bytes] of [['data.bin', fixture.data], ['big.bin', fixture.big]] as const) {
        const size = bytes.length;
        const url = `/${file}`;
        test(`${file}: a single range → 206 with Content-Range`, async () => {
          const res = await get(url, { range: 'bytes=0-9' });
          assert.equal(res.status, 206);
          assert.equal(res.headers['content-range'], `bytes 0-9/${size}`);
          assert.equal(res.headers['content-length'], '10');
          assert.ok(res.body.equals(bytes.subarray(0, 10)));
        });
        test(`${file}: suffix and open-ended ranges`, async () => {
          const suffix = await get(url, { range: 'bytes=-500' });
          assert.equal(suffix.headers['content-range'], `bytes ${size - 500}-${size - 1}/${size}`);
          assert.ok(suffix.body.equals(bytes.subarray(size - 500)));
          const open = await get(url, { range: 'bytes=9500-' });
          assert.equal(open.status, 206);
          assert.ok(open.body.equals(bytes.subarray(9500)));
          const clamped = await get(url, { range: `bytes=${size - 10}-${size + 1000}` });
          assert.equal(clamped.headers['content-range'], `bytes ${size - 10}-${size - 1}/${size}`);
          assert.ok(clamped.body.equals(bytes.subarray(size - 10)));
        });
        test(`${file}: multiple ranges → multipart/byteranges, sorted and byte-exact`, async () => {
          const res = await get(url, { range: 'bytes=0-9, 100-109,50-59' });
          assert.equal(res.status, 206);
          assert.match(res.headers['content-type']!, /^multipart\/byteranges; boundary=/);
          assert.equal(Number(res.headers['content-length']), res.body.length);
          const parts = parseMultipart(res.body, res.headers['content-type']!);
          assert.deepEqual(parts.map((p) => p.headers['content-range']), [`bytes 0-9/${size}`, `bytes 50-59/${size}`, `bytes 100-109/${size}`]);
          for (const part of parts) assert.equal(part.headers['content-type'], 'application/octet-stream');
          assert.ok(parts[0]!.data.equals(bytes.subarray(0, 10)));
          assert.ok(parts[1]!.data.equals(bytes.subarray(50, 60)));
          assert.ok(parts[2]!.data.equals(bytes.subarray(100, 110)));
        });
        test(`${file}: overlapping and adjacent ranges are coalesced`, async () => {
          const res = await get(url, { range: 'bytes=0-99,50-149,150-199' });
          assert.equal(res.status, 206);
          assert.equal(res.headers['content-range'], `bytes 0-199/${size}`);
          assert.ok(res.body.equals(bytes.subarray(0, 200)));
        });
        test(`${file}: unsatisfiable → 416 with bytes */size`, async () => {
          const res = await get(url, { range: `bytes=${size}-` });
          assert.equal(res.status, 416);
          assert.equal(res.headers['content-range'], `bytes */${size}`);
          assert.equal((await get(url, { range: 'bytes=-0' })).status, 416);
        });
        for (const invalid of ['bytes=abc', 'bytes=5-1', 'items=0-1', 'bytes=0-1,x', 'bytes', 'bytes=--1']) {
          test(`${file}: invalid Range "${invalid}" is ignored → 200`, async () => {
            const res = await get(url, { range: invalid });
            assert.equal(res.status, 200);
            assert.ok(res.body.equals(bytes));
          });
        }
        test(`${file}: more ranges than the cap → whole file`, async () => {
          const many = Array.from({ length: 11 }, (_, i) => `${i * 10}-${i * 10 + 1}`).join(',');
          const res = await get(url, { range: `bytes=${many}` });
          assert.equal(res.status, 200);
          assert.ok(res.body.equals(bytes));
        });
        test(`${file}: If-Range with the current ETag or date → 206, stale → 200`, async () => {
          const { headers } = await request(main.port, 'HEAD', url);
          assert.equal((await get(url, { range: 'bytes=0-1', 'if-range': headers['etag']! })).status, 206);
          assert.equal((await get(url, { range: 'bytes=0-1', 'if-range': headers['last-modified']! })).status, 206);
          const stale = await get(url, { range: 'bytes=0-1', 'if-range': '"stale"' });
          assert.equal(stale.status, 200);
          assert.ok(stale.body.equals(bytes));
          assert.equal((await get(url, { range: 'bytes=0-1', 'if-range': `W/${headers['etag']}` })).status, 200);
          assert.equal((await get(url, { range: 'bytes=0-1', 'if-range': 'Thu, 01 Jan 1970 00:00:00 GMT' })).status, 200);
        });
      }
      test('HEAD ignores Range', async () => {
        const res = await request(main.port, 'HEAD', '/data.bin', { range: 'bytes=0-9' });
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-length'], '10000');
      });
    });

    describe('content codings', () => {
      test('picks the precompressed sibling the client prefers, with Vary and a distinct ETag', async () => {
        const identity = await get('/app.js');
        assert.equal(identity.body.toString(), 'console.log("identity");\n');
        assert.equal(identity.headers['vary'], 'Accept-Encoding');
        const br = await get('/app.js', { 'accept-encoding': 'gzip, deflate, br, zstd' });
        assert.equal(br.body.toString(), 'BROTLI-BYTES');
        assert.equal(br.headers['content-encoding'], 'br');
        assert.equal(br.headers['content-type'], 'text/javascript; charset=utf-8');
        assert.equal(br.headers['vary'], 'Accept-Encoding');
        assert.notEqual(br.headers['etag'], identity.headers['etag']);
        const gz = await get('/app.js', { 'accept-encoding': 'gzip' });
        assert.equal(gz.body.toString(), 'GZIP-BYTES');
        assert.equal(gz.headers['content-encoding'], 'gzip');
        assert.notEqual(gz.headers['etag'], br.headers['etag']);
        const zstd = await get('/app.js', { 'accept-encoding': 'zstd, gzip;q=0.5' });
        assert.equal(zstd.body.toString(), 'ZSTD-BYTES');
        assert.equal(zstd.headers['content-encoding'], 'zstd');
      });
      test('honours q-values, q=0 and *', async () => {
        assert.equal((await get('/app.js', { 'accept-encoding': 'br;q=0.5, gzip;q=1' })).body.toString(), 'GZIP-BYTES');
        assert.equal((await get('/app.js', { 'accept-encoding': 'br;q=0, gzip;q=0' })).body.toString(), 'console.log("identity");\n');
        assert.equal((await get('/app.js', { 'accept-encoding': '*' })).body.toString(), 'BROTLI-BYTES');
        assert.equal((await get('/app.js', { 'accept-encoding': '*;q=0.1, br;q=0' })).body.toString(), 'ZSTD-BYTES');
      });
      test('conditional requests use the ETag of the chosen coding', async () => {
        const br = await get('/app.js', { 'accept-encoding': 'br' });
        assert.equal((await get('/app.js', { 'accept-encoding': 'br', 'if-none-match': br.headers['etag']! })).status, 304);
        assert.equal((await get('/app.js', { 'accept-encoding': 'gzip', 'if-none-match': br.headers['etag']! })).status, 200);
      });
      test('compresses compressible files on the fly', async () => {
        const res = await get('/style.css', { 'accept-encoding': 'gzip' });
        assert.equal(res.headers['content-encoding'], 'gzip');
        assert.equal(res.headers['vary'], 'Accept-Encoding');
        assert.ok(res.body.length < CSS.length);
        assert.equal(gunzipSync(res.body).toString(), CSS);
        const plain = await get('/style.css');
        assert.equal(plain.headers['content-encoding'], undefined);
        assert.equal(plain.body.toString(), CSS);
        assert.notEqual(plain.headers['etag'], res.headers['etag']);
        const png = await get('/photo.png', { 'accept-encoding': 'gzip' });
        assert.equal(png.headers['content-encoding'], undefined);
      });
    });

    describe('headers', () => {
      test('MIME types from mime-db, charset for text only, overrides', async () => {
        assert.equal((await get('/index.html')).headers['content-type'], 'text/html; charset=utf-8');
        assert.equal((await get('/photo.png')).headers['content-type'], 'image/png');
        assert.equal((await get('/data.json')).headers['content-type'], 'application/json; charset=utf-8');
        assert.equal((await get('/unknown.xyzq')).headers['content-type'], 'application/octet-stream');
        assert.equal((await get('/custom.special')).headers['content-type'], 'text/x-special; charset=latin1');
      });
      test('Cache-Control by glob rule', async () => {
        assert.equal((await get('/assets/app.1234abcd.js')).headers['cache-control'], IMMUTABLE);
        assert.equal((await get('/hello.txt')).headers['cache-control'], undefined);
      });
      test('CORS headers on responses, and preflight answers', async () => {
        const res = await get('/hello.txt', { origin: 'https://site.example' });
        assert.equal(res.headers['access-control-allow-origin'], '*');
        assert.match(res.headers['access-control-expose-headers']!, /Content-Range/);
        const preflight = await request(main.port, 'OPTIONS', '/hello.txt', {
          origin: 'https://site.example',
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'range, if-none-match',
        });
        assert.equal(preflight.status, 204);
        assert.equal(preflight.headers['access-control-allow-origin'], '*');
        assert.equal(preflight.headers['access-control-allow-methods'], 'GET, HEAD, OPTIONS');
        assert.equal(preflight.headers['access-control-allow-headers'], 'range, if-none-match');
        assert.equal(preflight.headers['access-control-max-age'], '86400');
        assert.equal((await request(spa.port, 'GET', '/hello.txt', { origin: 'https://x' })).headers['access-control-allow-origin'], undefined);
      });
      test('CORS with an origin list echoes allowed origins only', async () => {
        const server = await createStaticServer({ runtime, root: fixture.root, listen: '127.0.0.1:0', cors: { origins: ['https://ok.example'] } });
        try {
          const ok = await request(server.port, 'GET', '/hello.txt', { origin: 'https://ok.example' });
          assert.equal(ok.headers['access-control-allow-origin'], 'https://ok.example');
          assert.match(ok.headers['vary']!, /Origin/);
          const no = await request(server.port, 'GET', '/hello.txt', { origin: 'https://bad.example' });
          assert.equal(no.headers['access-control-allow-origin'], undefined);
        } finally {
          await server.close();
        }
      });
      test('--domain: other Host names get 421', async () => {
        const server = await createStaticServer({ runtime, root: fixture.root, listen: '127.0.0.1:0', domain: 'files.example' });
        try {
          assert.equal((await request(server.port, 'GET', '/hello.txt')).status, 421);
          assert.equal((await request(server.port, 'GET', '/hello.txt', { host: 'files.example:80' })).status, 200);
        } finally {
          await server.close();
        }
      });
    });

    describe('workers', () => {
      const native = runtime === (typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined' ? 'bun' : 'node');
      test('several worker processes serve one port and all stop on close', { skip: !native }, async () => {
        const server = await createStaticServer({ runtime, root: fixture.root, listen: '127.0.0.1:0', workers: 2 });
        try {
          const answers = await Promise.all(Array.from({ length: 8 }, () => request(server.port, 'GET', '/data.bin', { range: 'bytes=0-9' })));
          for (const res of answers) {
            assert.equal(res.status, 206);
            assert.ok(res.body.equals(fixture.data.subarray(0, 10)));
          }
        } finally {
          await server.close();
        }
        await assert.rejects(request(server.port, 'GET', '/hello.txt'));
      });
    });

    describe('access log', () => {
      for (const format of ['combined', 'json'] as const) {
        test(`writes ${format} lines`, async () => {
          const file = join(fixture.dir, `access-${runtime}-${format}.log`);
          const log = new AccessLog(file, format);
          const server = await createStaticServer({ runtime, root: fixture.root, listen: '127.0.0.1:0', accessLog: log });
          await request(server.port, 'GET', '/hello.txt?q=1', { 'user-agent': 'tester/1', referer: 'http://ref.example/' });
          await request(server.port, 'GET', '/missing');
          await server.close();
          await log.close();
          const lines = readFileSync(file, 'utf8').trim().split('\n');
          assert.equal(lines.length, 2);
          if (format === 'combined') {
            assert.match(lines[0]!, /^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET \/hello\.txt\?q=1 HTTP\/1\.1" 200 12 "http:\/\/ref\.example\/" "tester\/1"$/);
            assert.match(lines[1]!, /" 404 \d+ "-" "-"$/);
          } else {
            const record = JSON.parse(lines[0]!) as Record<string, unknown>;
            assert.equal(record.uri, '/hello.txt?q=1');
            assert.equal(record.status, 200);
            assert.equal(record.bytes, 12);
            assert.equal(record.userAgent, 'tester/1');
            assert.match(String(record.remote), /127\.0\.0\.1/);
          }
        });
      }
    });
  });
}
