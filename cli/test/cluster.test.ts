// Three instances following one configuration in a real etcd: a push reaches
// all three with no request lost under load, a concurrent push is refused,
// and with etcd down they keep serving, then catch up when it returns.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort, etcdForFile, until } from '@wmproxy/testkit';
import { Running, wmproxy } from './helpers.js';

const { skip, etcd } = etcdForFile();
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-cluster-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Every instance reads its ports from its environment (the pusher validates with the defaults): one stored file, three instances. */
function configText(body: string): string {
  return [
    '[control]',
    'listen = "127.0.0.1:${CONTROL_PORT:-18837}"',
    '[[server]]',
    'listen = "127.0.0.1:${HTTP_PORT:-18080}"',
    '[[server.location]]',
    'path = "/"',
    `respond = { status = 200, body = "${body}" }`,
    '',
  ].join('\n');
}

function get(port: number, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.on('timeout', () => req.destroy());
  });
}

async function push(body: string, extra: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const file = join(dir, `push-${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(file, configText(body));
  return wmproxy(['config', 'push', '-c', file, '--store', etcd.url('/three'), ...extra]);
}

test('three instances follow one stored configuration through pushes, a refused concurrent push, and an etcd outage', { skip, timeout: 180_000 }, async () => {
  assert.equal((await push('v1')).code, 0);
  const instances: Array<{ run: Running; http: number; control: number }> = [];
  try {
    for (let i = 0; i < 3; i++) {
      const ports = { http: await closedPort(), control: await closedPort() };
      const run = new Running(['run', '--store', etcd.url('/three')], { HTTP_PORT: String(ports.http), CONTROL_PORT: String(ports.control) });
      instances.push({ run, ...ports });
    }
    await Promise.all(instances.map((instance) => instance.run.waitFor(/running \(pid/)));
    for (const instance of instances) assert.equal((await get(instance.http)).body, 'v1');

    // Under load on all three, a push changes every one; no request fails.
    let running = true;
    const answers: string[] = [];
    const load = Promise.all(
      instances.map(async (instance) => {
        while (running) {
          const reply = await get(instance.http);
          answers.push(reply.status === 200 ? reply.body : `error ${reply.status}`);
        }
      }),
    );
    assert.equal((await push('v2')).code, 0);
    const pushed = Date.now();
    await until(async () => (await Promise.all(instances.map((instance) => get(instance.http)))).every((reply) => reply.body === 'v2'), 'v2 on all three');
    const applied = Date.now() - pushed;
    running = false;
    await load;
    assert.deepEqual(answers.filter((answer) => answer !== 'v1' && answer !== 'v2'), [], 'no request lost while the configuration changed');
    process.stderr.write(`# push to all three instances applied in ${applied} ms (${answers.length} requests during the change)\n`);

    // A push based on a revision someone else has replaced is refused, with the reason.
    type Status = { cluster: { revision: number; members: Array<{ configRevision: number }>; connected: boolean } };
    const statusOf = async (instance: { control: number }): Promise<Status> => (await fetch(`http://127.0.0.1:${instance.control}/status`).then((res) => res.json())) as Status;
    await until(async () => (await statusOf(instances[0]!)).cluster.members.length === 3, 'every instance registered in the store');
    const status = await statusOf(instances[0]!);
    assert.ok(status.cluster.connected);
    const stale = status.cluster.revision - 1;
    const refused = await push('v-stale', ['--expect-revision', String(stale)]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /changed meanwhile \(expected revision \d+, found \d+\)/);
    assert.equal((await get(instances[1]!.http)).body, 'v2');

    // An invalid file is never written.
    const invalidFile = join(dir, 'invalid.toml');
    writeFileSync(invalidFile, '[[server]]\nlisten = "127.0.0.1:1"\n[[server.location]]\npath = "/"\n');
    const invalid = await wmproxy(['config', 'push', '-c', invalidFile, '--store', etcd.url('/three')]);
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /server\[0\]\.location\[0\]/);

    // etcd down: still serving, and the store shown as unreachable.
    await etcd.stop();
    for (const instance of instances) assert.equal((await get(instance.http)).body, 'v2');
    await until(async () => {
      const metrics = await fetch(`http://127.0.0.1:${instances[2]!.control}/metrics`).then((res) => res.text());
      return /wmproxy_config_store_up 0/.test(metrics);
    }, 'the store reported down');
    // etcd back: a new push reaches everyone.
    await etcd.start();
    await until(async () => (await push('v3')).code === 0, 'a push once etcd is back');
    await until(async () => (await Promise.all(instances.map((instance) => get(instance.http)))).every((reply) => reply.body === 'v3'), 'v3 on all three after the outage', 60_000);

    // Pull writes back what was pushed, references and all.
    const pulled = join(dir, 'pulled.toml');
    assert.equal((await wmproxy(['config', 'pull', '--store', etcd.url('/three'), '-o', pulled])).code, 0);
    assert.equal(readFileSync(pulled, 'utf8'), configText('v3'));
  } finally {
    await Promise.all(instances.map((instance) => instance.run.stop()));
  }
});

test('a store URL that is not etcd://HOST:PORT/PREFIX is a usage error: one line, exit 2', async () => {
  for (const args of [['run', '--store', 'nope'], ['config', 'pull', '--store', 'redis://x:1/p'], ['config', 'push', '-c', 'x.toml', '--store', 'etcd://host/p']]) {
    const { code, stderr } = await wmproxy(args);
    assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
    assert.match(stderr, /--store: store ".*": (expected etcd:\/\/HOST:PORT|"host" is not host:port)/);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
  }
});

test('[cluster] store in a file: the instance serves the file until a configuration is pushed to that store, then follows the store', { skip, timeout: 60_000 }, async () => {
  const http = await closedPort();
  const control = await closedPort();
  const file = join(dir, 'bootstrap.toml');
  writeFileSync(file, `[cluster]\nstore = "${etcd.url('/bootstrap')}"\n${configText('from-file')}`);
  const run = new Running(['run', '-c', file], { HTTP_PORT: String(http), CONTROL_PORT: String(control) });
  try {
    await run.waitFor(/running \(pid/);
    assert.equal((await get(http)).body, 'from-file');
    const pushed = join(dir, 'bootstrap-push.toml');
    writeFileSync(pushed, configText('from-store'));
    assert.equal((await wmproxy(['config', 'push', '-c', pushed, '--store', etcd.url('/bootstrap')])).code, 0);
    await until(async () => (await get(http)).body === 'from-store', 'the pushed configuration applied');
    const status = (await fetch(`http://127.0.0.1:${control}/status`).then((res) => res.json())) as { cluster: { store: string; revision: number } };
    assert.equal(status.cluster.store, etcd.url('/bootstrap'));
    assert.ok(status.cluster.revision > 0);
  } finally {
    await run.stop();
  }
});
