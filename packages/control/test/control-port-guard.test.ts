/**
 * No path from a proxy client to the control API: a forward proxy on
 * loopback has no deny list (it serves this host's own user), so without
 * this guard `curl -x` could GET and POST the control API through it, from
 * anything that can reach the proxy, bypassing the API's browser defences.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { promisify } from 'node:util';
import { parseConfig } from '@wmproxy/config';
import { protectLocalPort, resolveDestination, silentLogger, systemResolver, type NetError } from '@wmproxy/core-net';
import { Instance } from '../src/index.js';

const run = promisify(execFile);

async function curl(args: string[]): Promise<{ code: number; status: string }> {
  try {
    const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', ...args]);
    return { code: 0, status: stdout };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string };
    return { code: failed.code ?? -1, status: failed.stdout ?? '' };
  }
}

test('the forward proxy refuses the control API port on every address of this host, by HTTP, CONNECT and SOCKS5; other local ports stay reachable', async () => {
  const origin = http.createServer((_req, res) => res.end('origin'));
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  const originPort = (origin.address() as { port: number }).port;
  const config = parseConfig(`[control]\nlisten = "127.0.0.1:0"\n[[proxy]]\nname = "p"\nlisten = "127.0.0.1:0"\n`, 'toml');
  const instance = await Instance.start(config, { logger: silentLogger });
  try {
    const proxy = instance.addressesOf('p')[0]!;
    const control = instance.controlAddress!;
    const port = control.slice(control.lastIndexOf(':') + 1);
    const viaProxy = ['-x', `http://${proxy}`];
    for (const host of ['127.0.0.1', 'localhost', '127.0.0.2', '0.0.0.0', '[::ffff:127.0.0.1]', '[::1]']) {
      assert.equal((await curl([...viaProxy, `http://${host}:${port}/status`])).status, '403', `GET via ${host}`);
      assert.equal((await curl([...viaProxy, '-X', 'POST', '-H', 'X-Wmproxy-Request: 1', `http://${host}:${port}/stop`])).status, '403', `POST via ${host}`);
    }
    // CONNECT: the proxy answers 403 and curl gives up before any TLS.
    const tunnel = await curl([...viaProxy, '-p', `http://127.0.0.1:${port}/status`]);
    assert.notEqual(tunnel.code, 0);
    assert.notEqual(tunnel.status, '200');
    // SOCKS5: the request is refused (curl exit 97: the proxy handshake failed).
    const socks = await curl(['--socks5-hostname', proxy, `http://localhost:${port}/status`]);
    assert.equal(socks.code, 97);
    // The instance is still there and was not stopped.
    assert.equal((await curl([`http://${control}/status`])).status, '200');
    // Any other port of this host is served as before.
    assert.equal((await curl([...viaProxy, `http://127.0.0.1:${originPort}/`])).status, '200');
    assert.equal((await curl(['--socks5-hostname', proxy, `http://localhost:${originPort}/`])).status, '200');
  } finally {
    await instance.stop();
    origin.close();
  }
});

test('a protected port stays refused until every owner released it', async () => {
  const refused = () => assert.rejects(resolveDestination('127.0.0.1', 65_001, undefined, systemResolver), (error: NetError) => error.code === 'EFORBIDDEN');
  const allowed = async () => assert.equal(await resolveDestination('127.0.0.1', 65_001, undefined, systemResolver), undefined);
  await allowed();
  const first = protectLocalPort(65_001);
  const second = protectLocalPort(65_001);
  await refused();
  first();
  first();
  await refused();
  second();
  await allowed();
  // A name is resolved and refused too, and a foreign address is not this host.
  const again = protectLocalPort(65_001);
  await assert.rejects(resolveDestination('localhost', 65_001, undefined, systemResolver), /control port/);
  assert.deepEqual(await resolveDestination('192.0.2.1', 65_001, undefined, systemResolver), ['192.0.2.1']);
  again();
});
