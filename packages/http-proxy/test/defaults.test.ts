import { test } from 'node:test';
import assert from 'node:assert/strict';
import { numbersIn, packageReadme, readmeTable, tableCell } from '@wmproxy/testkit';
import { SOCKS5_DEFAULTS } from '@wmproxy/socks5';
import { DEFAULT_FORWARD_BIND, DEFAULT_HEADER_TIMEOUT_MS, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, HTTP_PROXY_DEFAULTS } from '../src/index.js';

test('the README\'s option tables state the defaults HTTP_PROXY_DEFAULTS exports', () => {
  // Both option tables (ForwardProxyOptions, HttpProxyOptions) sit under "Options"; they agree where they overlap.
  const rows = readmeTable(packageReadme(import.meta.url), 'Options');
  const cell = (name: string): string => tableCell(rows, name, 2);
  assert.match(cell('bind'), new RegExp(`^\`${HTTP_PROXY_DEFAULTS.bind}\``));
  assert.match(cell('realm'), new RegExp(`^\`${HTTP_PROXY_DEFAULTS.realm}\``));
  assert.match(cell('via'), new RegExp(`^\`${HTTP_PROXY_DEFAULTS.via}\``));
  for (const key of ['connectTimeoutMs', 'headerTimeoutMs', 'keepAliveTimeoutMs', 'idleTimeoutMs', 'maxHeadSize', 'maxHeaders'] as const) {
    assert.equal(numbersIn(cell(key))[0], HTTP_PROXY_DEFAULTS[key], key);
  }
  // `socks5.udp`, `socks5.udpBind`, `socks5.handshakeTimeoutMs`: `true`, client's local IP, 10 000
  const socks = cell('socks5.udp');
  assert.match(socks, new RegExp(`^\`${SOCKS5_DEFAULTS.udp}\``));
  assert.equal(numbersIn(socks).at(-1), SOCKS5_DEFAULTS.handshakeTimeoutMs);
});

test('the constants the code applies are HTTP_PROXY_DEFAULTS', () => {
  assert.equal(DEFAULT_FORWARD_BIND, HTTP_PROXY_DEFAULTS.bind);
  assert.equal(DEFAULT_HEADER_TIMEOUT_MS, HTTP_PROXY_DEFAULTS.headerTimeoutMs);
  assert.equal(DEFAULT_KEEP_ALIVE_TIMEOUT_MS, HTTP_PROXY_DEFAULTS.keepAliveTimeoutMs);
});
