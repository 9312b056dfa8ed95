import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** cli/bin/run.js, from cli/test (Bun) or cli/dist/test (Node). */
function runJs(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'bin', 'run.js'))) dir = dirname(dir);
  return join(dir, 'bin', 'run.js');
}

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-file-server-'));
mkdirSync(join(scratch, 'site', 'docs'), { recursive: true });
writeFileSync(join(scratch, 'site', 'hello.txt'), 'hello from the cli\n');
writeFileSync(join(scratch, 'site', 'index.html'), '<h1>spa</h1>');
writeFileSync(join(scratch, 'site', 'docs', 'a.txt'), 'a');
after(() => rmSync(scratch, { recursive: true, force: true }));

function start(args: string[]): { child: ChildProcess; url: Promise<string>; stdout: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [runJs(), 'file-server', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /url=(http:\/\/\S+)/.exec(stderr);
      if (match) resolve(match[1]!);
    });
    void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
  return { child, url, stdout: () => stdout, exited };
}

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [runJs(), 'file-server', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

test('file-server serves a directory with the given flags and logs access to stdout', async () => {
  const server = start([
    '--root', join(scratch, 'site'),
    '--listen', '127.0.0.1:0',
    '--browse', '--spa', '--cors',
    '--cache', '*.txt=public, max-age=60',
    '--header', 'X-Test: yes',
    '--access-log', '-',
  ]);
  try {
    const url = await server.url;
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
    assert.match(server.stdout(), /"GET \/hello\.txt HTTP\/1\.1" 200 19 /);
  } finally {
    server.child.kill('SIGTERM');
  }
  assert.equal(await server.exited, 0);
});

test('file-server exits 2 with one line on a bad flag', async () => {
  const { code, stderr } = await run(['--no-such-flag']);
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
  const results = await Promise.all(cases.map(run));
  results.forEach(({ code, stderr }, i) => {
    assert.equal(code, 2, cases[i]!.join(' '));
    assert.match(stderr, /^wmproxy file-server: .+\n$/);
  });
});
