import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';

// Sources run from cli/test/, compiled tests from cli/dist/test/.
const runJs = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../bin/run.js' : '../bin/run.js', import.meta.url));
const children: ChildProcess[] = [];
after(() => {
  for (const child of children) child.kill('SIGKILL');
});

/** The runtime that runs these tests also runs the CLI (bun for bun test, node for node --test). */
function cli(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [runJs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return child;
}

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [runJs, ...args], (error, _stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stderr }));
  });
}

/** Read the bound port from the "listening" log line; stderr keeps being drained so the child never blocks or gets EPIPE. */
function listeningPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let seen = '';
    child.stderr!.on('data', (chunk) => {
      seen += String(chunk);
      const match = /listening .*address=127\.0\.0\.1:(\d+)/.exec(seen);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', () => reject(new Error(`proxy exited before listening: ${seen}`)));
  });
}

function curl(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-s', '--max-time', '10', ...args], (error, stdout) => resolve({ code: error ? Number(error.code) : 0, stdout }));
  });
}

let backend: Server;
let backendPort = 0;
test('setup: a backend', async () => {
  backend = createServer((req, res) => res.end(`hello from ${req.url}`));
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  backendPort = (backend.address() as AddressInfo).port;
});
after(() => backend?.close());

test('wmproxy proxy serves HTTP, CONNECT and SOCKS5 on one port', async () => {
  const child = cli(['proxy', '--bind', '127.0.0.1:0']);
  const port = await listeningPort(child);
  const target = `http://127.0.0.1:${backendPort}/x`;
  assert.equal((await curl(['-x', `http://127.0.0.1:${port}`, target])).stdout, 'hello from /x');
  assert.equal((await curl(['-p', '-x', `http://127.0.0.1:${port}`, target])).stdout, 'hello from /x');
  assert.equal((await curl(['--socks5-hostname', `127.0.0.1:${port}`, `http://localhost:${backendPort}/y`])).stdout, 'hello from /y');
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
});

test('wmproxy proxy with --user/--pass refuses anonymous clients on every protocol', async () => {
  const child = cli(['proxy', '--bind', '127.0.0.1:0', '--user', 'alice', '--pass', 's3cret']);
  const port = await listeningPort(child);
  const target = `http://127.0.0.1:${backendPort}/`;
  const anonymous = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-x', `http://127.0.0.1:${port}`, target]);
  assert.equal(anonymous.stdout, '407');
  assert.notEqual((await curl(['--socks5', `127.0.0.1:${port}`, target])).code, 0);
  assert.equal((await curl(['-x', `http://alice:s3cret@127.0.0.1:${port}`, target])).stdout, 'hello from /');
  assert.equal((await curl(['--socks5', `127.0.0.1:${port}`, '--proxy-user', 'alice:s3cret', target])).stdout, 'hello from /');
  child.kill('SIGTERM');
  await once(child, 'exit');
});

test('wmproxy proxy refuses an open proxy on a public address, bad flags and bad addresses with exit 2', async () => {
  for (const [args, message] of [
    [['proxy', '--bind', '0.0.0.0:0'], 'refusing to run an open proxy'],
    [['proxy', '--bind', ':0'], 'refusing to run an open proxy'],
    [['proxy', '--bogus'], 'Nonexistent flag'],
    [['proxy', '--bind', '::1:80'], 'need brackets'],
    [['proxy', '--flag', 'ftp'], '"ftp" is not one of'],
    [['proxy', '--user', 'alice'], '--user and --pass go together'],
  ] as const) {
    const { code, stderr } = await run([...args]);
    assert.equal(code, 2, args.join(' '));
    assert.match(stderr, new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    assert.equal(stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${stderr}`);
  }
});

test('wmproxy version and --help answer', async () => {
  const version = await new Promise<string>((resolve) => execFile(process.execPath, [runJs, 'version'], (_e, stdout) => resolve(stdout)));
  assert.match(version, /^wmproxy \d+\.\d+\.\d+ \((bun|node) /);
  const help = await new Promise<string>((resolve) => execFile(process.execPath, [runJs, 'proxy', '--help'], (_e, stdout) => resolve(stdout)));
  assert.match(help, /--insecure-open/);
});
