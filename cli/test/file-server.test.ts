import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Running, wmproxy } from './helpers.js';

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
  ];
  const results = await Promise.all(cases.map((args) => wmproxy(['file-server', ...args])));
  results.forEach(({ code, stderr }, i) => {
    assert.equal(code, 2, cases[i]!.join(' '));
    assert.match(stderr, /^wmproxy file-server: .+\n$/);
  });
});
