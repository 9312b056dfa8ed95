import { test } from 'node:test';
import assert from 'node:assert/strict';
import { numbersIn, packageReadme, readmeTable, tableCell } from '@wmproxy/testkit';
import { ConnPool, DnsCache, REVERSE_DEFAULTS } from '../src/index.js';

const readme = packageReadme(import.meta.url);
const table = (heading: string): Map<string, string[]> => readmeTable(readme, heading);
const numbers = numbersIn;
const cell = tableCell;

test('the README tables state the defaults REVERSE_DEFAULTS exports', () => {
  const proxy = table('ReverseProxy');
  for (const key of ['hedgeDelayMs', 'requestHedgeMs', 'requestHedgeBudget', 'shutdownDeadlineMs'] as const) {
    assert.equal(numbers(cell(proxy, key, 2))[0], REVERSE_DEFAULTS[key], key);
  }
  assert.equal(numbers(cell(table('ListenerSpec'), 'connectionLimitStatus', 2))[0], REVERSE_DEFAULTS.connectionLimitStatus);
  const upstream = table('UpstreamSpec');
  assert.equal(numbers(cell(upstream, 'pool.maxIdle', 2))[0], REVERSE_DEFAULTS.pool.maxIdle, 'pool.maxIdle');
  assert.equal(numbers(cell(upstream, 'pool.idleTimeoutMs', 2))[0], REVERSE_DEFAULTS.pool.idleTimeoutMs, 'pool.idleTimeoutMs');
  const timeouts = table('Timeouts');
  for (const [key, value] of Object.entries(REVERSE_DEFAULTS.timeouts)) assert.equal(numbers(cell(timeouts, key, 1))[0], value, `timeouts.${key}`);
  const retries = table('Retries');
  const { onStatus, methods, onTimeout, ...counts } = REVERSE_DEFAULTS.retries;
  for (const [key, value] of Object.entries(counts)) assert.equal(numbers(cell(retries, key, 1))[0], value, `retries.${key}`);
  assert.deepEqual(numbers(cell(retries, 'onStatus', 1)), onStatus);
  assert.deepEqual(cell(retries, 'methods', 1).split(' (')[0]!.split(', '), [...methods]);
  assert.equal(cell(retries, 'onTimeout', 1), String(onTimeout));
  assert.equal(numbers(cell(retries, 'bodyBuffer', 1))[0], REVERSE_DEFAULTS.retryBodyBuffer);
  const tracing = table('Tracing');
  const { otlp, ...plain } = REVERSE_DEFAULTS.tracing;
  const bare = (key: string) => cell(tracing, key, 2).replace(/`/g, '');
  assert.equal(bare('enabled'), String(plain.enabled));
  assert.equal(numbers(cell(tracing, 'sampleRatio', 2))[0], plain.sampleRatio);
  assert.equal(bare('serviceName'), plain.serviceName);
  assert.equal(bare('exporter'), plain.exporter);
  for (const [key, value] of Object.entries(otlp)) assert.equal(numbers(cell(tracing, `otlp.${key}`, 2))[0], value, `tracing.otlp.${key}`);
});

test('a pool and a DNS cache built without options use REVERSE_DEFAULTS', () => {
  const pool = new ConnPool();
  assert.equal(pool.maxIdle, REVERSE_DEFAULTS.pool.maxIdle);
  assert.equal(pool.idleTimeoutMs, REVERSE_DEFAULTS.pool.idleTimeoutMs);
  const dns = new DnsCache();
  assert.deepEqual([dns.ttlMs, dns.minTtlMs, dns.maxTtlMs], [REVERSE_DEFAULTS.dns.ttlMs, REVERSE_DEFAULTS.dns.minTtlMs, REVERSE_DEFAULTS.dns.maxTtlMs]);
});
