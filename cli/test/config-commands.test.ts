import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Running, curl, runJs, wmproxy } from './helpers.js';

const repo = join(runJs, '..', '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-cli-config-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

async function backend(): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer((request, response) => response.end(`backend ${request.url}`));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { address, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

test('check: exit 0 for a valid file, 1 with every error for an invalid one, 2 without -c', async () => {
  const valid = await wmproxy(['check', '-c', join(repo, 'examples', 'reverse-proxy.toml')]);
  assert.equal(valid.code, 0, valid.stderr);
  assert.match(valid.stdout, /valid \(0 forward proxies, 1 server, 2 upstreams, 0 streams/);
  const file = join(scratch, 'invalid.yaml');
  writeFileSync(file, 'proxy:\n  - listen: "127.0.0.1:99999"\n    idle_timeout: soon\n');
  const invalid = await wmproxy(['check', '-c', file]);
  assert.equal(invalid.code, 1);
  assert.match(invalid.stderr, /invalid\.yaml: 2 errors/);
  assert.match(invalid.stderr, /invalid\.yaml: proxy\[0\]\.listen: expected an address/);
  assert.match(invalid.stderr, /invalid\.yaml: proxy\[0\]\.idle_timeout: expected a duration such as 500ms, 10s or 2m, at most 24d, found "soon" \(string\)/);
  const json = await wmproxy(['check', '-c', file, '--json']);
  assert.equal(json.code, 1);
  assert.equal((JSON.parse(json.stdout) as { errors: unknown[] }).errors.length, 2);
  const missing = await wmproxy(['check']);
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
  const bad = await wmproxy(['check', '-c', file, '--frobnicate']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^wmproxy check: Nonexistent flag: --frobnicate\n$/);
});

test('schema prints exactly the committed wmproxy.schema.json', async () => {
  const run = await wmproxy(['schema']);
  assert.equal(run.code, 0);
  assert.equal(run.stdout, readFileSync(join(repo, 'wmproxy.schema.json'), 'utf8'));
});

test('convert prints the new format and one warning per key without an equivalent', async () => {
  const run = await wmproxy(['convert', join(repo, 'examples', 'original', 'reverse.toml')]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /\[\[upstream\]\]\nname = "server"/);
  assert.match(run.stdout, /\[health\.passive\]\nconsecutive_failures = 2/);
  assert.match(run.stderr, /warning: .*reverse\.toml: proxy\.center: applies to the center tunnel/);
  assert.match(run.stderr, /warning: .*reverse\.toml: http\.server\[0\]\.limit_req: no equivalent/);
  // The output is itself a valid configuration.
  const converted = join(repo, 'examples', 'original', `converted-${process.pid}.toml`);
  writeFileSync(converted, run.stdout);
  try {
    const check = await wmproxy(['check', '-c', converted]);
    assert.equal(check.code, 0, check.stderr);
  } finally {
    rmSync(converted, { force: true });
  }
  const yaml = await wmproxy(['convert', join(repo, 'examples', 'original', 'reverse.toml'), '--format', 'yaml']);
  assert.match(yaml.stdout, /^log:\n/);
  assert.equal((await wmproxy(['convert', join(scratch, 'absent.toml')])).code, 1);
  assert.equal((await wmproxy(['convert'])).code, 2);
  assert.equal((await wmproxy(['convert', 'x.toml', '--format', 'ini'])).code, 2);
});

test('run serves the configuration; status, reload (SIGHUP too) and stop drive it', async () => {
  const app = await backend();
  const file = join(scratch, 'run.toml');
  const config = (users: string) => `[control]\nlisten = "127.0.0.1:0"\ntoken = "cli-token-123"\n[[proxy]]\nname = "mixed"\nlisten = "127.0.0.1:0"\n${users}`;
  writeFileSync(file, config(''));
  const running = new Running(['run', '-c', file]);
  try {
    const proxy = (await running.waitFor(/forward mixed listening on (\S+)/))[1]!;
    const control = (await running.waitFor(/control control listening on (\S+)/))[1]!;
    assert.equal((await curl(['-x', `http://${proxy}`, `http://${app.address}/a`])).stdout, 'backend /a');
    const status = await wmproxy(['status', '--control', control]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`forward +mixed +${proxy.replace(/\./g, '\\.')}`));
    const json = await wmproxy(['status', '--control', control, '--json']);
    assert.equal((JSON.parse(json.stdout) as { status: { services: unknown[] } }).status.services.length, 2);
    // Reloading needs the token; a rejected file leaves the running configuration.
    const noToken = await wmproxy(['reload', '--control', control]);
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /401/);
    writeFileSync(file, config('users = { alice = 12 }\n'));
    const rejected = await wmproxy(['reload', '--control', control, '--token', 'cli-token-123']);
    assert.equal(rejected.code, 1);
    assert.match(rejected.stderr, /run\.toml: proxy\[0\]\.users\.alice: expected a string/);
    assert.equal((await curl(['-x', `http://${proxy}`, `http://${app.address}/b`])).stdout, 'backend /b');
    writeFileSync(file, config('users = { alice = "pw" }\n'));
    const applied = await wmproxy(['reload', '--control', control, '--token', 'cli-token-123']);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /socket kept/);
    assert.equal((await curl(['-o', '/dev/null', '-w', '%{http_code}', '-x', `http://${proxy}`, `http://${app.address}/c`])).stdout, '407');
    // SIGHUP reloads too.
    writeFileSync(file, config(''));
    running.kill('SIGHUP');
    await running.waitFor(/reloaded: proxy "mixed"/);
    assert.equal((await curl(['-x', `http://${proxy}`, `http://${app.address}/d`])).stdout, 'backend /d');
    const stop = await wmproxy(['stop', '--control', control, '--token', 'cli-token-123']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(await running.exited, 0);
    assert.match(running.stdout, /wmproxy stopped/);
    const gone = await wmproxy(['status', '--control', control]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /cannot reach the control API/);
  } finally {
    running.kill();
    await app.close();
  }
});

test('run stops gracefully on SIGTERM and refuses an invalid file with exit 1', async () => {
  const file = join(scratch, 'term.json');
  writeFileSync(file, JSON.stringify({ control: { enabled: false }, proxy: [{ name: 'p', listen: '127.0.0.1:0' }] }));
  const running = new Running(['run', '-c', file]);
  await running.waitFor(/running \(pid \d+\)/);
  assert.equal(await running.stop(), 0);
  const bad = join(scratch, 'bad.toml');
  writeFileSync(bad, '[[proxy]]\nlisten = "nowhere"\n');
  const refused = await wmproxy(['run', '-c', bad]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /bad\.toml: proxy\[0\]\.listen: expected an address/);
  assert.equal((await wmproxy(['run', '--workers', '0'])).code, 2);
  assert.equal((await wmproxy(['run', '--workers', 'many'])).code, 2);
});

test('run --workers 2: two worker processes serve, status lists them, SIGTERM stops them all', async () => {
  const app = await backend();
  const file = join(scratch, 'workers.toml');
  writeFileSync(file, '[control]\nlisten = "127.0.0.1:0"\n[[proxy]]\nname = "mixed"\nlisten = "127.0.0.1:0"\n');
  const running = new Running(['run', '-c', file, '--workers', '2']);
  try {
    await running.waitFor(/running \(pid \d+, 2 worker processes\)/);
    const proxy = (await running.waitFor(/forward mixed listening on (\S+)/))[1]!;
    const control = (await running.waitFor(/control control listening on (\S+)/))[1]!;
    assert.doesNotMatch(proxy, /:0$/);
    for (let i = 0; i < 4; i++) assert.equal((await curl(['-x', `http://${proxy}`, `http://${app.address}/w${i}`])).stdout, `backend /w${i}`);
    const json = await wmproxy(['status', '--control', control, '--json']);
    const workers = (JSON.parse(json.stdout) as { status: { workers: Array<{ pid: number; state: string }> } }).status.workers;
    assert.equal(workers.length, 2);
    assert.deepEqual(workers.map((worker) => worker.state), ['running', 'running']);
    const text = await wmproxy(['status', '--control', control]);
    assert.match(text.stdout, new RegExp(`worker +1 +pid ${workers[1]!.pid}, running`));
    assert.equal(await running.stop(), 0);
    for (const worker of workers) assert.throws(() => process.kill(worker.pid, 0), /ESRCH/, `worker ${worker.pid} exited`);
  } finally {
    running.kill();
    await app.close();
  }
});
