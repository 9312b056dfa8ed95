import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { Instance } from '../src/index.js';
import { RawClient, backend, until } from './helpers.js';

const NO_CONTROL = '[control]\nenabled = false\n';

test('a configuration file\'s per-IP connection limits reach the running server and forward proxy, and a reload changes them', async () => {
  const app = await backend('limited');
  const config = (perIp: number) =>
    parseConfig(
      `${NO_CONTROL}[[upstream]]\nname = "app"\nservers = ["${app.address}"]\n` +
        `[[server]]\nname = "web"\nlisten = "127.0.0.1:0"\nmax_connections_per_ip = ${perIp}\n[[server.location]]\npath = "/"\nupstream = "app"\n` +
        `[[proxy]]\nname = "fwd"\nlisten = "127.0.0.1:0"\nmax_connections_per_ip = ${perIp}\n`,
      'toml',
    );
  const instance = await Instance.start(config(1), { logger: silentLogger });
  const open: RawClient[] = [];
  try {
    const web = instance.addressesOf('web')[0]!;
    const fwd = instance.addressesOf('fwd')[0]!;
    open.push(await RawClient.connect(web), await RawClient.connect(fwd));
    // The first connection holds the one slot: the next from 127.0.0.1 is refused (503 on HTTP, closed on the forward port).
    const second = await RawClient.connect(web);
    open.push(second);
    second.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.match(await second.readUntil('\r\n\r\n'), /^HTTP\/1\.1 503 /);
    const forwardSecond = await RawClient.connect(fwd).catch(() => undefined);
    if (forwardSecond) {
      open.push(forwardSecond);
      await until(() => forwardSecond.closed, 'the forward port to close the connection over its limit');
    }
    // Reloaded with a higher limit, a new connection is served while the first is still open.
    const result = await instance.reload(config(4));
    assert.equal(result.ok, true, result.message);
    const third = await RawClient.connect(web);
    open.push(third);
    third.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.match(await third.readUntil('limited'), /^HTTP\/1\.1 200 /);
  } finally {
    for (const client of open) client.close();
    await instance.stop();
    await app.kill();
  }
});
