import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@wmproxy/core-net';
import { loadConfig, parseConfig } from '@wmproxy/config';
import { Instance } from '../src/index.js';
import { closedPort, testPki } from '@wmproxy/testkit';
import { RawClient, accepts, backend, curl, until } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-control-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

const NO_CONTROL = '[control]\nenabled = false\n';

test('starts a forward proxy from a configuration and serves HTTP, CONNECT and SOCKS5 clients', async () => {
  const app = await backend('from-backend');
  const instance = await Instance.start(parseConfig(`${NO_CONTROL}[[proxy]]\nname = "mixed"\nlisten = "127.0.0.1:0"\n`, 'toml'), { logger: silentLogger });
  try {
    const [proxy] = instance.addressesOf('mixed');
    assert.ok(proxy);
    const plain = await curl(['-x', `http://${proxy}`, `http://${app.address}/plain`]);
    assert.equal(plain.stdout, 'from-backend /plain');
    const tunnel = await curl(['-p', '-x', `http://${proxy}`, `http://${app.address}/tunnel`]);
    assert.equal(tunnel.stdout, 'from-backend /tunnel');
    const socks = await curl(['--socks5-hostname', proxy, `http://${app.address}/socks`]);
    assert.equal(socks.stdout, 'from-backend /socks');
    assert.equal(instance.status().services[0]!.kind, 'forward');
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('reload keeps a forward listener\'s socket: same port, open tunnels survive, new connections get the new settings', async () => {
  const app = await backend('kept');
  const before = parseConfig(`${NO_CONTROL}[[proxy]]\nname = "p"\nlisten = "127.0.0.1:0"\n`, 'toml');
  const instance = await Instance.start(before, { logger: silentLogger });
  const raw = await RawClient.connect(instance.addressesOf('p')[0]!);
  try {
    const [address] = instance.addressesOf('p');
    raw.send(`CONNECT ${app.address} HTTP/1.1\r\nHost: ${app.address}\r\n\r\n`);
    assert.match(await raw.readUntil('\r\n\r\n'), /^HTTP\/1\.1 200/);
    const result = await instance.reload(parseConfig(`${NO_CONTROL}[[proxy]]\nname = "p"\nlisten = "127.0.0.1:0"\nusers = { alice = "secret" }\n`, 'toml'));
    assert.equal(result.ok, true);
    assert.match(result.changes.join('\n'), /socket kept/);
    assert.deepEqual(instance.addressesOf('p'), [address]);
    // The tunnel opened before the reload still carries traffic.
    raw.send(`GET /through-old-tunnel HTTP/1.1\r\nHost: ${app.address}\r\nConnection: close\r\n\r\n`);
    assert.match(await raw.readUntil('kept /through-old-tunnel'), /200 OK/);
    // New connections to the same port need the credentials now.
    const refused = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-x', `http://${address}`, `http://${app.address}/x`]);
    assert.equal(refused.stdout, '407');
    const allowed = await curl(['-x', `http://alice:secret@${address}`, `http://${app.address}/y`]);
    assert.equal(allowed.stdout, 'kept /y');
  } finally {
    raw.close();
    await instance.stop();
    await app.kill();
  }
});

test('reload opens new listeners and drains and closes removed ones', async () => {
  const app = await backend('moved');
  const instance = await Instance.start(parseConfig(`${NO_CONTROL}[[proxy]]\nname = "old"\nlisten = "127.0.0.1:0"\n`, 'toml'), { logger: silentLogger });
  try {
    const [old] = instance.addressesOf('old');
    const result = await instance.reload(parseConfig(`${NO_CONTROL}[[proxy]]\nname = "new"\nlisten = "127.0.0.2:0"\n`, 'toml'));
    assert.equal(result.ok, true);
    const [fresh] = instance.addressesOf('new');
    assert.ok(fresh?.startsWith('127.0.0.2:'));
    assert.equal((await curl(['-x', `http://${fresh}`, `http://${app.address}/n`])).stdout, 'moved /n');
    await until(async () => !(await accepts(old!)), 'the removed listener to close');
    assert.deepEqual(instance.addressesOf('old'), []);
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('an invalid file is rejected with its errors and the running configuration stays', async () => {
  const app = await backend('still-here');
  const file = join(scratch, 'reload.toml');
  writeFileSync(file, `${NO_CONTROL}[[proxy]]\nname = "p"\nlisten = "127.0.0.1:0"\n`);
  const instance = await Instance.start(await loadConfig(file), { logger: silentLogger, load: () => loadConfig(file) });
  try {
    const [address] = instance.addressesOf('p');
    writeFileSync(file, `${NO_CONTROL}[[proxy]]\nname = "p"\nlisten = "127.0.0.1:0"\nidle_timeout = "forever"\nprotocols = ["gopher"]\n`);
    const result = await instance.reload();
    assert.equal(result.ok, false);
    const paths = result.errors!.map((issue) => issue.path).sort();
    assert.deepEqual(paths, ['proxy[0].idle_timeout', 'proxy[0].protocols[0]']);
    assert.ok(result.errors!.every((issue) => issue.file === file));
    assert.equal(instance.status().reloads.failed, 1);
    assert.deepEqual(instance.addressesOf('p'), [address]);
    assert.equal((await curl(['-x', `http://${address}`, `http://${app.address}/ok`])).stdout, 'still-here /ok');
    assert.equal(instance.config.proxies[0]!.idleTimeoutMs, 300_000);
  } finally {
    await instance.stop();
    await app.kill();
  }
});

function reverseConfig(servers: string[], extraLocation = ''): string {
  return `${NO_CONTROL}
[[upstream]]
name = "app"
servers = [${servers.map((server) => JSON.stringify(server)).join(', ')}]
health_check = { interval = "100ms", timeout = "80ms", rise = 1, fall = 1 }
[[server]]
name = "web"
listen = "127.0.0.1:0"
${extraLocation}
[[server.location]]
path = "/"
upstream = "app"
`;
}

test('runs a reverse proxy from a configuration; reload keeps the health state of servers that stay', async () => {
  const one = await backend('one');
  const two = await backend('two');
  const instance = await Instance.start(parseConfig(reverseConfig([one.address]), 'toml'), { logger: silentLogger });
  try {
    const [web] = instance.addressesOf('web');
    assert.equal((await curl([`http://${web}/a`])).stdout, 'one /a');
    await until(() => instance.upstreams()[0]!.servers[0]!.state === 'healthy', 'the server to be healthy');
    const transitions: string[] = [];
    instance.events.on('event', (event) => {
      if (event.type === 'transition') transitions.push(`${String(event.target)} ${String(event.to)}`);
    });
    const result = await instance.reload(parseConfig(reverseConfig([one.address, two.address], '[[server.location]]\nexact = "/ping"\nrespond = { status = 200, body = "pong" }'), 'toml'));
    assert.equal(result.ok, true, result.message);
    const servers = instance.upstreams()[0]!.servers;
    assert.equal(servers.length, 2);
    // The server that stayed kept its state (no trip through "unknown").
    assert.equal(servers[0]!.state, 'healthy');
    assert.ok(!transitions.includes(`${one.address} unknown`));
    const [after] = instance.addressesOf('web');
    assert.equal(after, web, 'the listener kept its port');
    assert.equal((await curl([`http://${after}/ping`])).stdout, 'pong');
    await until(() => instance.upstreams()[0]!.servers[1]!.state === 'healthy', 'the new server to be checked');
    // A dead backend turns unhealthy without any reload.
    await one.kill();
    await until(() => instance.upstreams()[0]!.servers[0]!.state === 'unhealthy', 'the killed server to turn unhealthy');
    assert.equal((await curl([`http://${after}/b`])).stdout, 'two /b');
  } finally {
    await instance.stop();
    await one.kill();
    await two.kill();
  }
});

test('serves static files from a location and streams over TCP', async () => {
  const app = await backend('tcp');
  const root = join(scratch, 'site');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'index.html'), '<p>static page</p>\n');
  const instance = await Instance.start(
    parseConfig(
      `${NO_CONTROL}
[[upstream]]
name = "app"
servers = ["${app.address}"]
[[server]]
name = "site"
listen = "127.0.0.1:0"
[[server.location]]
path = "/"
static = { root = "${root}" }
[[stream]]
name = "tcp"
listen = "127.0.0.1:0"
upstream = "app"
`,
      'toml',
    ),
    { logger: silentLogger },
  );
  try {
    const page = await curl(['-i', `http://${instance.addressesOf('site')[0]}/`]);
    assert.match(page.stdout, /^HTTP\/1\.1 200/);
    assert.match(page.stdout, /<p>static page<\/p>/);
    const streamed = await curl([`http://${instance.addressesOf('tcp')[0]}/via-stream`]);
    assert.equal(streamed.stdout, 'tcp /via-stream');
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('writes the error and access logs to files in the configured format and reopens them (SIGUSR1)', async () => {
  const app = await backend('logged');
  const dir = join(scratch, 'logs');
  const access = join(dir, 'access.log');
  const errors = join(dir, 'error.log');
  const instance = await Instance.start(
    parseConfig(
      `${NO_CONTROL}
[log]
level = "warn"
levels = { reverse = "info" }
format = "json"
file = "${errors}"
access_log = "${access}"
access_format = "json"
[[upstream]]
name = "app"
servers = ["${app.address}"]
[[server]]
name = "web"
listen = "127.0.0.1:0"
[[server.location]]
upstream = "app"
`,
      'toml',
    ),
  );
  const { readFileSync, renameSync, existsSync } = await import('node:fs');
  try {
    const [web] = instance.addressesOf('web');
    assert.equal((await curl([`http://${web}/first`])).stdout, 'logged /first');
    const firstLine = await until(() => (existsSync(access) ? readFileSync(access, 'utf8').trim() : ''), 'the access log line');
    const record = JSON.parse(firstLine) as { uri: string; status: number; upstream_addr: string };
    assert.equal(record.uri, '/first');
    assert.equal(record.status, 200);
    assert.equal(record.upstream_addr, app.address);
    // The reverse proxy logs at its own level (info); the rest at the global one (warn).
    const errorLog = readFileSync(errors, 'utf8');
    assert.match(errorLog, /"level":"info","msg":"listening","service":"reverse"/);
    assert.ok(!errorLog.includes('wmproxy started'), 'instance info lines are below the global level');
    // logrotate: move the file away, then ask for a reopen.
    renameSync(access, `${access}.1`);
    instance.reopenLogs();
    assert.equal((await curl([`http://${web}/second`])).stdout, 'logged /second');
    const reopened = await until(() => (existsSync(access) ? readFileSync(access, 'utf8').trim() : ''), 'a line in the reopened access log');
    assert.equal((JSON.parse(reopened) as { uri: string }).uri, '/second');
    assert.ok(!readFileSync(`${access}.1`, 'utf8').includes('/second'));
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('serves HTTPS with the certificate and key files each server names', async () => {
  const { spawnSync } = await import('node:child_process');
  const app = await backend('secure');
  const dir = join(scratch, 'tls');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir, { recursive: true });
  for (const name of ['a.test', 'b.test']) {
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`)], { stdio: 'ignore' });
    assert.equal(made.status, 0, 'openssl made a certificate');
  }
  const server = (name: string) => `
[[server]]
name = "${name}"
listen = "127.0.0.1:0"
server_name = ["${name}"]
tls = { cert = "${join(dir, `${name}.pem`)}", key = "${join(dir, `${name}.key`)}" }
[[server.location]]
upstream = "app"
`;
  const instance = await Instance.start(parseConfig(`${NO_CONTROL}[[upstream]]\nname = "app"\nservers = ["${app.address}"]\n${server('a.test')}${server('b.test')}`, 'toml'), { logger: silentLogger });
  try {
    for (const name of ['a.test', 'b.test']) {
      const [address] = instance.addressesOf(name);
      const port = address!.slice(address!.lastIndexOf(':') + 1);
      const result = await curl(['--cacert', join(dir, `${name}.pem`), '--resolve', `${name}:${port}:127.0.0.1`, `https://${name}:${port}/tls`]);
      assert.equal(result.stdout, 'secure /tls', result.stderr);
    }
  } finally {
    await instance.stop();
    await app.kill();
  }
});

test('a reload applies the global health options (panic threshold) to the running checker', async () => {
  const one = await backend('one');
  const dead = `127.0.0.1:${await closedPort()}`;
  const config = (threshold: number) => `[health]\npanic_threshold = ${threshold}\n${reverseConfig([one.address, dead])}`;
  const instance = await Instance.start(parseConfig(config(40), 'toml'), { logger: silentLogger });
  try {
    await until(() => instance.upstreams()[0]!.servers[1]!.state === 'unhealthy', 'the dead server to be marked down');
    assert.equal(instance.health.inPanic('app'), false, '1 of 2 available is not below 40 %');
    assert.ok(!instance.recentEvents.some((event) => event.type === 'panic'));
    const result = await instance.reload(parseConfig(config(60), 'toml'));
    assert.equal(result.ok, true, result.message);
    assert.ok(instance.recentEvents.some((event) => event.type === 'panic' && event.panic === true), 'the new threshold puts the pool in panic at once');
  } finally {
    await instance.stop();
    await one.kill();
  }
});

test('a [[proxy]] with tls serves an HTTPS proxy; a reload that changes its TLS is refused with a reason and changes nothing', async () => {
  const app = await backend('tls');
  const pki = testPki();
  const tls = (cert: string): string => `tls = { cert = "${cert}", key = "${pki.server.keyPath}", client_ca = "${pki.ca.certPath}" }\n`;
  const instance = await Instance.start(parseConfig(`${NO_CONTROL}[[proxy]]\nname = "p"\nlisten = "127.0.0.1:0"\n${tls(pki.server.certPath)}`, 'toml'), { logger: silentLogger });
  try {
    const [address] = instance.addressesOf('p');
    const through = ['--proxy', `https://${address}`, '--proxy-cacert', pki.ca.certPath, '--proxy-cert', pki.client.certPath, '--proxy-key', pki.client.keyPath];
    assert.equal((await curl([...through, `http://${app.address}/a`])).stdout, 'tls /a');
    const result = await instance.reload(parseConfig(`${NO_CONTROL}[[proxy]]\nname = "p"\nlisten = "127.0.0.1:0"\n${tls(pki.rogueServer.certPath)}`, 'toml'));
    assert.equal(result.ok, false);
    assert.match(result.message ?? '', /TLS settings .* changed; .* restart/);
    assert.equal((await curl([...through, `http://${app.address}/b`])).stdout, 'tls /b');
  } finally {
    await instance.stop();
    await app.kill();
    pki.cleanup();
  }
});
