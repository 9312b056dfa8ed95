/** `wmproxy run` as a user sees it: what it prints, and how it fails on a port it cannot have. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Running, curl, wmproxy } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-cli-run-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

/** A listener on a free loopback port, bound with SO_REUSEPORT where the runtime supports it (Bun; Node from 22.12). */
async function holder(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, reusePort: true } as net.ListenOptions, resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** A port that was free a moment ago (two servers must name the same one). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test('run exits 1 with one line naming the control API when the control port is taken', async () => {
  const taken = await holder();
  try {
    const file = join(scratch, 'control-taken.toml');
    writeFileSync(file, `[control]\nlisten = "127.0.0.1:${taken.port}"\n[[proxy]]\nname = "p"\nlisten = "127.0.0.1:0"\n`);
    const run = await wmproxy(['run', '-c', file], { timeoutMs: 20_000 });
    assert.equal(run.code, 1, `stdout ${run.stdout}\nstderr ${run.stderr}`);
    const errors = run.stderr.split('\n').filter((line) => line.startsWith('wmproxy run:'));
    assert.deepEqual(errors, [`wmproxy run: control API: listen EADDRINUSE: address already in use 127.0.0.1:${taken.port}`]);
    assert.doesNotMatch(run.stdout, /running/);
  } finally {
    await taken.close();
  }
});

test('run exits 1 with one line when a proxy port is taken', async () => {
  const taken = await holder();
  try {
    const file = join(scratch, 'proxy-taken.toml');
    writeFileSync(file, `[control]\nenabled = false\n[[proxy]]\nname = "p"\nlisten = "127.0.0.1:${taken.port}"\n`);
    const run = await wmproxy(['run', '-c', file], { timeoutMs: 20_000 });
    assert.equal(run.code, 1, `stdout ${run.stdout}\nstderr ${run.stderr}`);
    const errors = run.stderr.split('\n').filter((line) => line.startsWith('wmproxy run:'));
    assert.deepEqual(errors, [`wmproxy run: listen EADDRINUSE: address already in use 127.0.0.1:${taken.port}`]);
  } finally {
    await taken.close();
  }
});

test('run prints the shared address for every server of one listener', async () => {
  const port = await freePort();
  const file = join(scratch, 'vhosts.toml');
  writeFileSync(
    file,
    `[control]\nenabled = false\n` +
      `[[server]]\nname = "a"\nlisten = "127.0.0.1:${port}"\nserver_name = ["a.test"]\n[[server.location]]\nrespond = { status = 200, body = "a" }\n` +
      `[[server]]\nname = "b"\nlisten = "127.0.0.1:${port}"\nserver_name = ["b.test"]\n[[server.location]]\nrespond = { status = 200, body = "b" }\n`,
  );
  const running = new Running(['run', '-c', file]);
  try {
    await running.waitFor(/running \(pid \d+\)/);
    assert.match(running.stdout, new RegExp(`^http a listening on 127\\.0\\.0\\.1:${port}$`, 'm'));
    assert.match(running.stdout, new RegExp(`^http b listening on 127\\.0\\.0\\.1:${port}$`, 'm'));
    assert.doesNotMatch(running.stdout, /listening on $/m);
    assert.equal((await curl(['-H', 'Host: b.test', `http://127.0.0.1:${port}/`])).stdout, 'b');
    assert.equal(await running.stop(), 0);
  } finally {
    running.kill();
  }
});

test('run: an upstream server with protocol = "h2" is reached over h2c; reverse-proxy --to h2c:// does the same', async () => {
  const http2 = await import('node:http2');
  const backend = http2.createServer();
  // Sessions that carried requests (the default TCP health check connects too, without any).
  const sessions = new Set<unknown>();
  backend.on('stream', (stream, headers) => {
    sessions.add(stream.session);
    stream.respond({ ':status': 200 });
    stream.end(`h2 backend saw ${headers[':method']} ${headers[':path']}`);
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const backendPort = (backend.address() as net.AddressInfo).port;
  const port = await freePort();
  const file = join(scratch, 'h2-upstream.toml');
  writeFileSync(
    file,
    `[control]\nenabled = false\n[[upstream]]\nname = "h2"\nservers = [{ address = "127.0.0.1:${backendPort}", protocol = "h2" }]\n` +
      `[[server]]\nlisten = "127.0.0.1:${port}"\n[[server.location]]\npath = "/"\nupstream = "h2"\n`,
  );
  const running = new Running(['run', '-c', file]);
  const cli = new Running(['reverse-proxy', '--from', '127.0.0.1:0', '--to', `h2c://127.0.0.1:${backendPort}`]);
  try {
    await running.waitFor(/running \(pid \d+\)/);
    assert.equal((await curl([`http://127.0.0.1:${port}/from-run`])).stdout, 'h2 backend saw GET /from-run');
    const cliPort = await cli.port(/reverse proxy ready listen=127\.0\.0\.1:(\d+)/);
    assert.equal((await curl([`http://127.0.0.1:${cliPort}/from-cli`])).stdout, 'h2 backend saw GET /from-cli');
    assert.equal(sessions.size, 2, 'one HTTP/2 connection from each proxy');
    assert.equal(await running.stop(), 0);
    assert.equal(await cli.stop('SIGINT'), 0);
  } finally {
    running.kill();
    cli.kill();
    backend.close();
  }
});
