// Backends registered in etcd under leases (`wmproxy service register`) are
// the servers of a group with `servers = "etcd+/PREFIX"`: one that registers
// joins, one killed leaves when its lease expires, one stopped leaves at once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort, etcdForFile, until } from '@wmproxy/testkit';
import { Running, wmproxy } from './helpers.js';

const { skip, etcd } = etcdForFile();
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-discovery-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function backend(name: string): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => res.end(name));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function get(port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(res.statusCode === 200 ? body : `status ${res.statusCode}`));
    });
    req.on('error', () => resolve('error'));
    req.on('timeout', () => req.destroy());
  });
}

/** What ten requests reached. */
async function reached(port: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < 10; i++) seen.add(await get(port));
  return seen;
}

test('servers registered in etcd under leases join a group; a killed one leaves when its lease expires, a stopped one at once', { skip, timeout: 120_000 }, async () => {
  const a = await backend('a');
  const b = await backend('b');
  const port = await closedPort();
  const control = await closedPort();
  const file = join(dir, 'edge.toml');
  writeFileSync(file, [
    '[cluster]',
    `store = "${etcd.url('/edge')}"`,
    '[control]',
    `listen = "127.0.0.1:${control}"`,
    '[[upstream]]',
    'name = "app"',
    'servers = "etcd+/services/app"',
    'health_check = false',
    '[[server]]',
    `listen = "127.0.0.1:${port}"`,
    '[[server.location]]',
    'path = "/"',
    'upstream = "app"',
    '',
  ].join('\n'));
  const run = new Running(['run', '-c', file]);
  const registrants: Running[] = [];
  const register = async (address: string): Promise<Running> => {
    const registrant = new Running(['service', 'register', '--store', etcd.url(), '--prefix', '/services/app', '--address', address, '--ttl', '2']);
    registrants.push(registrant);
    await registrant.waitFor(/registered/);
    return registrant;
  };
  try {
    await run.waitFor(/running \(pid/);
    // `[cluster] store` with nothing pushed there yet: the file serves, and the store is followed.
    assert.match(run.stderr, /no configuration stored yet/);
    assert.equal(await get(port), 'status 503', 'no server registered yet');
    const first = await register(a.address);
    await until(async () => (await get(port)) === 'a', 'a registered and reached');
    await register(b.address);
    await until(async () => (await reached(port)).has('b'), 'b joins');
    // The control API shows the servers found, which the configuration does not list.
    const view = (await fetch(`http://127.0.0.1:${control}/upstreams`).then((res) => res.json())) as { upstreams: Array<{ name: string; servers: Array<{ address: string }> }> } | Array<{ name: string; servers: Array<{ address: string }> }>;
    const groups = Array.isArray(view) ? view : view.upstreams;
    assert.deepEqual(groups.find((group) => group.name === 'app')!.servers.map((server) => server.address).sort(), [a.address, b.address].sort());
    // a's registrant dies without deregistering: its lease (2 s) expires and a leaves.
    first.kill('SIGKILL');
    await until(async () => {
      const seen = await reached(port);
      return seen.size === 1 && seen.has('b');
    }, 'a gone once its lease expired');
    // b's registrant stops cleanly: revoked at once.
    assert.equal(await registrants[1]!.stop(), 0);
    assert.match(registrants[1]!.stdout, /deregistered/);
    await until(async () => (await get(port)) === 'status 503', 'b gone');
  } finally {
    for (const registrant of registrants) await registrant.stop('SIGKILL');
    await run.stop();
    await a.close();
    await b.close();
  }
});

test('etcd+ discovery needs a [cluster] store; a bad --address is a usage error', { skip }, async () => {
  const file = join(dir, 'no-store.toml');
  writeFileSync(file, '[[upstream]]\nname = "app"\nservers = "etcd+/services/app"\n');
  const checked = await wmproxy(['check', '-c', file]);
  assert.equal(checked.code, 1);
  assert.match(checked.stderr + checked.stdout, /upstream\[0\]\.servers.*\[cluster\] store/s);
  const bad = await wmproxy(['service', 'register', '--store', etcd.url(), '--prefix', '/services/app', '--address', 'nope']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--address nope: expected host:port/);
});
