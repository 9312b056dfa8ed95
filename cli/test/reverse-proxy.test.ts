import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// cli/test (Bun, sources) or cli/dist/test (Node, compiled): find cli/bin/run.js either way.
const here = fileURLToPath(new URL('.', import.meta.url));
const runJs = [join(here, '..', 'bin', 'run.js'), join(here, '..', '..', 'bin', 'run.js')].find((path) => existsSync(path))!;

function env(): NodeJS.ProcessEnv {
  const copy = { ...process.env };
  delete copy.NODE_ENV;
  return copy;
}

function runToExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [runJs, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env() });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const safety = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(safety);
      resolve({ code, stderr });
    });
  });
}

/** Start the proxy and resolve with its port once it logged that it is ready. */
function startCli(args: string[]): Promise<{ child: ChildProcess; port: number; stderr: () => string; exited: Promise<number | null> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [runJs, 'reverse-proxy', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env() });
    let stderr = '';
    const exited = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
    const safety = setTimeout(() => child.kill('SIGKILL'), 60_000);
    void exited.then(() => clearTimeout(safety));
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /reverse proxy ready listen=127\.0\.0\.1:(\d+)/.exec(stderr);
      if (match) resolve({ child, port: Number(match[1]), stderr: () => stderr, exited });
    });
    child.on('error', reject);
    void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
}

function get(port: number, path: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      })
      .on('error', reject);
  });
}

async function backend(name: string): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer((req, res) => {
    res.setHeader('X-Seen-Env', String(req.headers['x-env']));
    res.end(req.url === '/health' ? 'ok' : name);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

test('wmproxy reverse-proxy balances over --to servers, applies --header rules and writes the access log', async () => {
  const a = await backend('a');
  const b = await backend('b');
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-rp-'));
  const logFile = join(dir, 'access.log');
  const cli = await startCli([
    '--from', '127.0.0.1:0',
    '--to', `${a.url},${b.url}`,
    '--health-path', '/health',
    '--health-interval', '200ms',
    '--header', 'set X-Env test',
    '--header', 'down:set X-Proxy wmproxy',
    '--access-log', logFile,
  ]);
  try {
    const bodies: string[] = [];
    for (let i = 0; i < 4; i++) {
      const reply = await get(cli.port, '/x');
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['x-seen-env'], 'test');
      assert.equal(reply.headers['x-proxy'], 'wmproxy');
      bodies.push(reply.body);
    }
    assert.deepEqual(bodies.sort(), ['a', 'a', 'b', 'b']);
  } finally {
    cli.child.kill('SIGINT');
    assert.equal(await cli.exited, 0);
    a.server.close();
    b.server.close();
  }
  const lines = readFileSync(logFile, 'utf8').trim().split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /"GET \/x HTTP\/1\.1" 200 /);
});

test('wmproxy reverse-proxy rejects bad arguments with exit 2 and one line', async () => {
  for (const args of [
    ['--from', '127.0.0.1:0'],
    ['--from', 'nonsense', '--to', 'http://127.0.0.1:1'],
    ['--from', '127.0.0.1:0', '--to', 'ftp://127.0.0.1:1'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--policy', 'lottery'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--header', 'set X-A'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--health-interval', 'soon'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--rise', '0'],
    ['--from', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--panic-threshold', '120'],
  ]) {
    const run = await runToExit(['reverse-proxy', ...args]);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
  }
});
