import { test } from 'node:test';
import assert from 'node:assert/strict';
import { numbersIn, packageReadme, readmeTable, tableCell } from '@wmproxy/testkit';
import { CORE_NET_DEFAULTS } from '@wmproxy/core-net';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, SOCKS5_DEFAULTS } from '../src/index.js';

test('the README\'s options table states the defaults SOCKS5_DEFAULTS exports', () => {
  const rows = readmeTable(packageReadme(import.meta.url), 'Options');
  const cell = (name: string): string => tableCell(rows, name, 2);
  for (const key of ['connectTimeoutMs', 'handshakeTimeoutMs', 'idleTimeoutMs'] as const) assert.equal(numbersIn(cell(key))[0], SOCKS5_DEFAULTS[key], key);
  assert.equal(cell('udp'), `\`${SOCKS5_DEFAULTS.udp}\``);
});

test('SOCKS5_DEFAULTS take core-net\'s connect and relay defaults', () => {
  assert.equal(SOCKS5_DEFAULTS.connectTimeoutMs, CORE_NET_DEFAULTS.connectTimeoutMs);
  assert.equal(SOCKS5_DEFAULTS.idleTimeoutMs, CORE_NET_DEFAULTS.relayIdleTimeoutMs);
  assert.equal(DEFAULT_HANDSHAKE_TIMEOUT_MS, SOCKS5_DEFAULTS.handshakeTimeoutMs);
});
