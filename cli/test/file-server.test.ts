import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedCert } from '@wmproxy/testkit';
import { Running, curl, wmproxy } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-file-server-'));
mkdirSync(join(scratch, 'site', 'docs'), { recursive: true });
writeFileSync(join(scratch, 'site', 'hello.txt'), 'hello from the cli\n');
writeFileSync(join(scratch, 'site', 'index.html'), '<h1>spa</h1>');
writeFileSync(join(scratch, 'site', 'docs', 'a.txt'), 'a');
after(() => rmSync(scratch, { recursive: true, force: true }));

test('file-server serves a directory with the given flags and logs access to stdout', async () => {
  const server = new Running([
    'file-server',
    '--root', join(scratch, 'site'),
    '--listen', '127.0.0.1:0',
    '--browse', '--spa', '--cors',
    '--cache', '*.txt=public, max-age=60',
    '--header', 'X-Test: yes',
    '--access-log', '-',
  ]);
  try {
    const url = (await server.waitFor(/url=(http:\/\/\S+)/, { stream: 'stderr' }))[1]!;
    const file = await fetch(`${url}/hello.txt`);
    assert.equal(file.status, 200);
    assert.equal(await file.text(), 'hello from the cli\n');
    assert.equal(file.headers.get('cache-control'), 'public, max-age=60');
    assert.equal(file.headers.get('x-test'), 'yes');
    assert.equal(file.headers.get('access-control-allow-origin'), '*');
    const ranged = await fetch(`${url}/hello.txt`, { headers: { range: 'bytes=0-4' } });
    assert.equal(ranged.status, 206);
    assert.equal(await ranged.text(), 'hello');
    const listing = await fetch(`${url}/docs/`, { headers: { accept: 'application/json' } });
    assert.deepEqual((await listing.json() as Array<{ name: string }>).map((e) => e.name), ['a.txt']);
    const spa = await fetch(`${url}/some/route`);
    assert.equal(await spa.text(), '<h1>spa</h1>');
    assert.match(server.stdout, /"GET \/hello\.txt HTTP\/1\.1" 200 19 /);
  } finally {
    server.kill('SIGTERM');
  }
  assert.equal(await server.exited, 0);
});

const { cert, key } = selfSignedCert();
writeFileSync(join(scratch, 'cert.pem'), cert);
writeFileSync(join(scratch, 'key.pem'), key);
const blob = Buffer.alloc(300_000).map((_, i) => (i * 13) % 256);
writeFileSync(join(scratch, 'site', 'blob.bin'), blob);

/** curl's `-w` line after the body: `<http_version> <status> <size_download>`. */
async function h2curl(args: string[]): Promise<{ version: string; status: number; size: number; out: string }> {
  const { stdout, stderr, code } = await curl(['-w', '\n%{http_version} %{http_code} %{size_download}', ...args]);
  assert.equal(code, 0, stderr);
  const cut = stdout.lastIndexOf('\n');
  const [version, status, size] = stdout.slice(cut + 1).split(' ');
  return { version: version!, status: Number(status), size: Number(size), out: stdout.slice(0, cut) };
}

for (const mode of ['tls', 'h2c'] as const) {
  test(`file-server ${mode === 'tls' ? '--cert/--key serves h2 by ALPN' : '--h2c serves h2 by prior knowledge'}: whole files byte-exact, ranges, conditional requests, HEAD`, async () => {
    const server = new Running([
      'file-server', '--root', join(scratch, 'site'), '--listen', '127.0.0.1:0', '--access-log', '-',
      ...(mode === 'tls' ? ['--cert', join(scratch, 'cert.pem'), '--key', join(scratch, 'key.pem')] : ['--h2c']),
    ]);
    try {
      const url = (await server.waitFor(/url=(https?:\/\/\S+)/, { stream: 'stderr' }))[1]!;
      const h2 = mode === 'tls' ? ['--http2', '--cacert', join(scratch, 'cert.pem')] : ['--http2-prior-knowledge'];
      const out = join(scratch, `download-${mode}`);
      const whole = await h2curl([...h2, '-o', out, `${url}/blob.bin`]);
      assert.deepEqual([whole.version, whole.status, whole.size], ['2', 200, blob.byteLength]);
      assert.ok(Buffer.compare(readFileSync(out), blob) === 0, 'byte-exact');
      const range = await h2curl([...h2, '-r', '100-109', '-o', out, `${url}/blob.bin`]);
      assert.deepEqual([range.version, range.status, range.size], ['2', 206, 10]);
      assert.ok(Buffer.compare(readFileSync(out), blob.subarray(100, 110)) === 0);
      const head = await h2curl([...h2, '-I', `${url}/blob.bin`]);
      assert.deepEqual([head.version, head.status, head.size], ['2', 200, 0]);
      assert.match(head.out, /content-length: 300000/);
      const etag = /etag: (\S+)/.exec(head.out)![1]!;
      const notModified = await h2curl([...h2, '-H', `If-None-Match: ${etag}`, `${url}/blob.bin`]);
      assert.deepEqual([notModified.status, notModified.size], [304, 0]);
      const text = await h2curl([...h2, `${url}/hello.txt`]);
      assert.equal(text.out, 'hello from the cli\n');
      // HTTP/1.1 still answers on the same port.
      const oneOne = await h2curl([...(mode === 'tls' ? ['--http1.1', '--cacert', join(scratch, 'cert.pem')] : []), `${url}/hello.txt`]);
      assert.deepEqual([oneOne.version, oneOne.out], ['1.1', 'hello from the cli\n']);
      assert.match(server.stdout, /"GET \/hello\.txt HTTP\/2\.0" 200 19 /);
    } finally {
      server.kill('SIGTERM');
    }
    assert.equal(await server.exited, 0);
  });
}

test('file-server exits 2 with one line on a bad flag', async () => {
  const { code, stderr } = await wmproxy(['file-server', '--no-such-flag']);
  assert.equal(code, 2);
  assert.equal(stderr.trim().split('\n').length, 1);
});

test('file-server exits 2 on bad values', async () => {
  const cases = [
    ['--root', join(scratch, 'missing')],
    ['--root', scratch, '--listen', 'nope'],
    ['--root', scratch, '--cache', 'no-equals-sign'],
    ['--root', scratch, '--header', 'Bad Header'],
    ['--root', scratch, '--dotfiles', 'sometimes'],
    ['--root', scratch, '--index', '../escape.html'],
    ['--root', scratch, '--workers', '0'],
    ['--root', scratch, '--cert', join(scratch, 'cert.pem')],
    ['--root', scratch, '--cert', join(scratch, 'cert.pem'), '--key', join(scratch, 'key.pem'), '--h2c'],
    ['--root', scratch, '--cert', join(scratch, 'missing.pem'), '--key', join(scratch, 'key.pem')],
    ['--root', scratch, '--h2c', '--workers', '2'],
  ];
  const results = await Promise.all(cases.map((args) => wmproxy(['file-server', ...args])));
  results.forEach(({ code, stderr }, i) => {
    assert.equal(code, 2, cases[i]!.join(' '));
    assert.match(stderr, /^wmproxy file-server: .+\n$/);
  });
});
