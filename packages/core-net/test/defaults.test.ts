import { test } from 'node:test';
import assert from 'node:assert/strict';
import { numbersIn, packageReadme, readmeTable, tableCell } from '@wmproxy/testkit';
import { CORE_NET_DEFAULTS, DEFAULT_HTTP2_POOL_OPTIONS, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_PROCESS_MAX_CONNECTIONS, processConnections } from '../src/index.js';

test('the README\'s defaults table states what CORE_NET_DEFAULTS exports', () => {
  const rows = readmeTable(packageReadme(import.meta.url), 'Defaults');
  const value = (name: string): number[] => numbersIn(tableCell(rows, name, 1));
  for (const key of ['connectTimeoutMs', 'relayIdleTimeoutMs', 'processMaxConnections', 'maxHeadSize', 'maxHeaders'] as const) {
    assert.equal(value(key)[0], CORE_NET_DEFAULTS[key], key);
  }
  assert.deepEqual(value('connectPorts'), [...CORE_NET_DEFAULTS.connectPorts]);
  assert.equal(rows.size, Object.keys(CORE_NET_DEFAULTS).length, 'one row per default');
});

test('CORE_NET_DEFAULTS are the constants the code applies', () => {
  assert.equal(CORE_NET_DEFAULTS.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
  assert.equal(CORE_NET_DEFAULTS.relayIdleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS);
  assert.equal(CORE_NET_DEFAULTS.processMaxConnections, DEFAULT_PROCESS_MAX_CONNECTIONS);
  assert.equal(processConnections().max, CORE_NET_DEFAULTS.processMaxConnections, 'the process limit starts at the default');
});

test('the README\'s HTTP/2 client pool table states DEFAULT_HTTP2_POOL_OPTIONS', () => {
  const rows = readmeTable(packageReadme(import.meta.url), 'HTTP/2 client pool');
  for (const [key, value] of Object.entries(DEFAULT_HTTP2_POOL_OPTIONS)) assert.equal(numbersIn(tableCell(rows, key, 1))[0], value, key);
  assert.equal(DEFAULT_HTTP2_POOL_OPTIONS.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
});
