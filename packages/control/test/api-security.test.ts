/**
 * The control API against the requests a hostile web page can make a
 * browser send (cross-site simple POSTs, DNS rebinding), and against a port
 * someone else already holds. Requests are written by hand on raw sockets,
 * so that Host, Origin, Sec-Fetch-Site and Content-Type are exactly as forged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger, silentLogger } from '@wmproxy/core-net';
import { loadConfig, parseConfig } from '@wmproxy/config';
import { ControlClient, Instance } from '../src/index.js';
import { until } from './helpers.js';
import { reusePortHolder } from '@wmproxy/testkit';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-api-security-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const TOKEN = 'test-token-1234';

interface Answer {
  status: number;
  head: string;
  body: string;
}

/** One request on its own connection, exactly as given (`Connection: close` and the length are added). */
function raw(address: string, method: string, path: string, headers: Record<string, string>, body = '', localAddress?: string): Promise<Answer> {
  const colon = address.lastIndexOf(':');
  const lines = [`${method} ${path} HTTP/1.1`, ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`), 'connection: close'];
  if (method !== 'GET' && method !== 'HEAD') lines.push(`content-length: ${Buffer.byteLength(body)}`);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(address.slice(colon + 1)), ...(localAddress ? { localAddress } : {}) });
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.once('error', reject);
    socket.once('close', () => {
      const split = received.indexOf('\r\n\r\n');
      const head = split === -1 ? received : received.slice(0, split);
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0), head, body: split === -1 ? '' : received.slice(split + 4) });
    });
    socket.write(lines.join('\r\n') + '\r\n\r\n' + body);
  });
}

interface Started {
  instance: Instance;
  address: string;
  port: number;
  stops: number[];
  logged: string[];
}

/** An instance with only the control API (and one HTTP server, for `/config`), reading `extra` into `[control]`. */
async function started(control = '', servers = ''): Promise<Started> {
  const file = join(scratch, `config-${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(file, `[control]\nlisten = "127.0.0.1:0"\n${control}\n${servers}`);
  const stops: number[] = [];
  const logged: string[] = [];
  const logger = new Logger({ level: 'warn', sink: { write: (line: string) => logged.push(line) } });
  const instance = await Instance.start(await loadConfig(file), { logger, load: () => loadConfig(file), onStopRequested: () => stops.push(Date.now()) });
  const address = instance.controlAddress!;
  return { instance, address, port: Number(address.slice(address.lastIndexOf(':') + 1)), stops, logged };
}

test('a source sending wrong tokens is penalized: 429 for it (the right token too) but /healthz, one log line; another address still gets in', async () => {
  const { instance, address, port, logged, stops } = await started(`token = "${TOKEN}"`);
  const host = `127.0.0.1:${port}`;
  // A mutation needs the token even on loopback (reads there do not, but a wrong token on them counts too).
  const from2 = (token: string) => raw(address, 'POST', '/stop', { host, authorization: `Bearer ${token}`, 'content-type': 'application/json' }, '{}', '127.0.0.2');
  try {
    // Two wrong tokens allowed; the third starts the penalty.
    for (let i = 0; i < 3; i++) assert.equal((await from2('guess-' + i)).status, 401);
    const refused = await from2(TOKEN);
    assert.equal(refused.status, 429, 'penalized: the token is not even looked at');
    assert.equal(stops.length, 0);
    assert.equal((await raw(address, 'GET', '/healthz', { host }, '', '127.0.0.2')).status, 200);
    assert.equal((await raw(address, 'GET', '/config', { host, authorization: `Bearer ${TOKEN}` })).status, 200, '127.0.0.1 is another source');
    const lines = logged.filter((line) => line.includes('control api auth penalty: source penalized'));
    assert.equal(lines.length, 1, logged.join(''));
    assert.match(lines[0]!, /client=127\.0\.0\.2 .*failures=3/);
  } finally {
    await instance.stop();
  }
});

test('a cross-site page cannot stop or reload the instance: simple POSTs and foreign origins get 403 and it keeps running', async () => {
  const { instance, address, port, stops, logged } = await started();
  const host = `127.0.0.1:${port}`;
  try {
    // What a form or `fetch(..., { mode: 'no-cors' })` on another site sends.
    const form = await raw(address, 'POST', '/stop', { host, origin: 'http://evil.example', 'sec-fetch-site': 'cross-site', 'content-type': 'text/plain' }, 'x');
    assert.equal(form.status, 403);
    assert.match(form.body, /cross-site/);
    // An older browser: Origin only.
    const origin = await raw(address, 'POST', '/stop', { host, origin: 'http://evil.example', 'content-type': 'text/plain' }, 'x');
    assert.equal(origin.status, 403);
    assert.match(origin.body, /another origin \(http:\/\/evil\.example\)/);
    // Another port of this host is the same site, not the same origin.
    const sameSite = await raw(address, 'POST', '/reload', { host, origin: 'http://127.0.0.1:1', 'sec-fetch-site': 'same-site', 'x-wmproxy-request': '1' });
    assert.equal(sameSite.status, 403);
    const sandboxed = await raw(address, 'POST', '/stop', { host, origin: 'null', 'content-type': 'application/x-www-form-urlencoded' }, 'a=1');
    assert.equal(sandboxed.status, 403);
    // No Origin and a simple content type: nothing a CORS preflight would have stopped.
    const simple = await raw(address, 'POST', '/reload', { host, 'content-type': 'text/plain' }, 'x');
    assert.equal(simple.status, 403);
    assert.match(simple.body, /application\/json or an X-Wmproxy-Request: 1 header/);
    const bare = await raw(address, 'POST', '/stop', { host });
    assert.equal(bare.status, 403);

    assert.equal((await raw(address, 'GET', '/healthz', { host })).status, 200, 'still running');
    assert.equal(instance.stopping, false);
    assert.equal(stops.length, 0);
    assert.equal(instance.metrics.reloadsOk + instance.metrics.reloadsFailed, 0, 'no reload ran');
    assert.ok(logged.some((line) => /control API refused a request/.test(line) && /reason=cross-site/.test(line)), logged.join(''));
  } finally {
    await instance.stop();
  }
});

test('the CLI client, JSON requests and same-origin pages can still reload and stop', async () => {
  const { instance, address, port, stops } = await started();
  const host = `127.0.0.1:${port}`;
  try {
    const page = await raw(address, 'POST', '/reload', { host, origin: `http://${host}`, 'sec-fetch-site': 'same-origin', 'x-wmproxy-request': '1' });
    assert.equal(page.status, 200, page.body);
    const json = await raw(address, 'POST', '/reload', { host, 'content-type': 'application/json' });
    assert.equal(json.status, 200, json.body);
    const viaLocalhost = await raw(address, 'POST', '/reload', { host: `localhost:${port}`, origin: `http://localhost:${port}`, 'content-type': 'application/json; charset=utf-8' }, '{}');
    assert.equal(viaLocalhost.status, 200, viaLocalhost.body);
    const client = new ControlClient({ address });
    assert.equal((await client.request('POST', '/reload')).status, 200);
    assert.equal((await client.request('POST', '/stop')).status, 202);
    await until(() => stops.length === 1, 'the stop to complete');
  } finally {
    await instance.stop();
  }
});

test('a request naming a foreign Host gets 421 on every path but /healthz (DNS rebinding); the listen address and localhost names are answered', async () => {
  const { instance, address, port, logged } = await started();
  try {
    for (const path of ['/', '/status', '/upstreams', '/config', '/metrics', '/events', '/no-such-path']) {
      const answer = await raw(address, 'GET', path, { host: `rebind.evil.example:${port}` });
      assert.equal(answer.status, 421, `${path}: ${answer.head}`);
      assert.match(answer.body, /rebind\.evil\.example/);
    }
    assert.equal((await raw(address, 'POST', '/stop', { host: `rebind.evil.example:${port}`, 'x-wmproxy-request': '1' })).status, 421);
    // Bun's own parser answers 400 first (HTTP/1.1 requires Host); Node's lets it reach the guard.
    assert.ok([400, 421].includes((await raw(address, 'GET', '/status', {})).status), 'no Host at all');
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`, 'localhost', 'localhost:1']) {
      assert.equal((await raw(address, 'GET', '/status', { host })).status, 200, host);
    }
    const healthz = await raw(address, 'GET', '/healthz', { host: 'rebind.evil.example' });
    assert.equal(healthz.status, 200, 'probes may use any name');
    assert.match(healthz.body, /ok\n/);
    assert.equal(instance.stopping, false);
    assert.ok(logged.some((line) => /reason=host/.test(line) && /rebind\.evil\.example/.test(line)), logged.join(''));
  } finally {
    await instance.stop();
  }
});

test('with a token, reads on loopback still refuse a foreign Host unless they carry the token', async () => {
  const { instance, address, port } = await started(`token = "${TOKEN}"`);
  try {
    assert.equal((await raw(address, 'GET', '/config', { host: `127.0.0.1:${port}` })).status, 200, 'reads need no token on loopback');
    assert.equal((await raw(address, 'GET', '/config', { host: `rebind.evil.example:${port}` })).status, 421);
    assert.equal((await raw(address, 'GET', '/config', { host: `rebind.evil.example:${port}`, authorization: `Bearer ${TOKEN}` })).status, 200, 'a page cannot know the token');
    assert.equal((await raw(address, 'GET', `/status?token=${TOKEN}`, { host: 'wmproxy.example:8080' })).status, 200, 'behind a proxy, with the token');
    const anonymous = await raw(address, 'POST', '/stop', { host: `127.0.0.1:${port}`, 'x-wmproxy-request': '1' });
    assert.equal(anonymous.status, 401);
    // The token in the query is no proof against a cross-site form: it still needs a preflighted request.
    const form = await raw(address, 'POST', `/stop?token=${TOKEN}`, { host: `127.0.0.1:${port}`, 'content-type': 'text/plain' }, 'x');
    assert.equal(form.status, 403);
    assert.equal(instance.stopping, false);
  } finally {
    await instance.stop();
  }
});

test('control.allowed_hosts adds names the API answers to, on any port', async () => {
  const { instance, address } = await started('allowed_hosts = ["Dashboard.Internal", "10.1.2.3", "[fd00::1]"]');
  try {
    for (const host of ['dashboard.internal:9443', 'DASHBOARD.INTERNAL', '10.1.2.3:8837', '[fd00::1]:8837']) {
      assert.equal((await raw(address, 'GET', '/status', { host })).status, 200, host);
    }
    assert.equal((await raw(address, 'GET', '/status', { host: 'other.internal:9443' })).status, 421);
    assert.equal((await raw(address, 'GET', '/status', { host: 'dashboard.internal.evil.example' })).status, 421);
  } finally {
    await instance.stop();
  }
  assert.throws(() => parseConfig('[control]\nallowed_hosts = ["dashboard.internal:8837"]\n', 'toml'), /allowed_hosts/, 'a name, not host:port');
});

test('GET /config hides the values of secret-bearing header rules, respond headers and health-check credentials', async () => {
  const servers = `
[reverse]
request_headers = ["set Authorization Bearer s3cret-1", "add X-Real-IP {client_ip}", "- Cookie"]
[[upstream]]
name = "app"
servers = ["127.0.0.1:1"]
health_check = { type = "http", path = "/health?access_token=s3cret-2&verbose=1", headers = { "X-Api-Key" = "s3cret-3", "Accept" = "text/plain" }, interval = "1h" }
[[upstream]]
name = "cache"
servers = ["127.0.0.1:2"]
health_check = { send = "AUTH s3cret-4\\r\\nPING\\r\\n", expect = "+PONG", interval = "1h" }
[[server]]
listen = "127.0.0.1:0"
response_headers = [{ op = "set", name = "Set-Cookie", value = "sid=s3cret-5" }, { op = "set", name = "X-Frame-Options", value = "DENY" }]
[[server.location]]
path = "/api/"
upstream = "app"
request_headers = ["+ X-Api-Key s3cret-6", "Proxy-Authorization Basic s3cret-7", "? X-Upstream-Token s3cret-8", "set X-Client-Secret s3cret-9"]
[[server.location]]
path = "/"
respond = { status = 200, body = "hello", headers = { "X-Session-Id" = "s3cret-10", "Content-Type" = "text/plain" } }
`;
  const { instance, address, port } = await started('', servers);
  try {
    const answer = await raw(address, 'GET', '/config', { host: `127.0.0.1:${port}` });
    assert.equal(answer.status, 200);
    assert.doesNotMatch(answer.body, /s3cret/, answer.body);
    const { config } = JSON.parse(answer.body.slice(answer.body.indexOf('{'), answer.body.lastIndexOf('}') + 1)) as { config: Record<string, unknown> };
    const text = JSON.stringify(config);
    // What is not secret stays readable.
    for (const kept of ['add X-Real-IP {client_ip}', '- Cookie', 'verbose=1', 'text/plain', 'DENY', '+PONG', 'hello']) assert.ok(text.includes(kept), kept);
    assert.ok(text.includes('set Authorization <redacted>'), text);
    assert.ok(text.includes('access_token=<redacted>'), text);
  } finally {
    await instance.stop();
  }
});

test('the control API refuses a port that is already taken, also by a socket bound with SO_REUSEPORT', async () => {
  const taken = await reusePortHolder();
  try {
    const config = parseConfig(`[control]\nlisten = "127.0.0.1:${taken.port}"\n`, 'toml');
    await assert.rejects(Instance.start(config, { logger: silentLogger }), (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, 'EADDRINUSE');
      assert.equal(error.message, `control API: listen EADDRINUSE: address already in use 127.0.0.1:${taken.port}`);
      return true;
    });
    // Every connection still reaches the holder: nothing else joined its port.
    for (let i = 0; i < 8; i++) {
      await new Promise<void>((resolve, reject) => net.connect({ host: '127.0.0.1', port: taken.port }).once('close', () => resolve()).once('error', reject));
    }
    await until(() => taken.accepted() === 8, 'the holder to accept all eight connections');
  } finally {
    await taken.close();
  }
});

test('a second instance cannot start on the control port of a running one', async () => {
  const first = await started(`token = "${TOKEN}"`);
  try {
    const config = parseConfig(`[control]\nlisten = "${first.address}"\n`, 'toml');
    await assert.rejects(Instance.start(config, { logger: silentLogger }), /control API: listen EADDRINUSE/);
    // The tokenless second instance would have answered some of these.
    for (let i = 0; i < 8; i++) {
      const answer = await raw(first.address, 'POST', '/reload', { host: first.address, 'x-wmproxy-request': '1' });
      assert.equal(answer.status, 401);
    }
  } finally {
    await first.instance.stop();
  }
});

test('with workers, a listen port another process holds is refused before any worker starts', { timeout: 60_000 }, async () => {
  const taken = await reusePortHolder();
  try {
    const config = parseConfig(`[control]\nenabled = false\n[[proxy]]\nname = "p"\nlisten = "127.0.0.1:${taken.port}"\n`, 'toml');
    await assert.rejects(Instance.start(config, { logger: silentLogger, workers: 2 }), (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, 'EADDRINUSE');
      assert.equal(error.message, `listen EADDRINUSE: address already in use 127.0.0.1:${taken.port}`);
      return true;
    });
  } finally {
    await taken.close();
  }
});
