import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConnPool, DnsCache, REVERSE_DEFAULTS } from '../src/index.js';

/** This package's directory, from src (Bun) or dist/test (Node). */
function packageDir(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!readdirSync(dir).includes('README.md')) dir = join(dir, '..');
  return dir;
}
const readme = readFileSync(join(packageDir(), 'README.md'), 'utf8');

/** Cells of the first table under the heading that starts with `heading`, keyed by the option's backticked name. */
function table(heading: string): Map<string, string[]> {
  const lines = readme.split('\n');
  const start = lines.findIndex((line) => line.startsWith(`### ${heading}`));
  assert.ok(start >= 0, `README has a "### ${heading}" section`);
  const rows = new Map<string, string[]>();
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('#')) break;
    if (!line.startsWith('| `')) continue;
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim());
    rows.set(/^`([^`]+)`/.exec(cells[0]!)![1]!, cells);
  }
  return rows;
}

/** The numbers a default cell states, with digit groups (`60 000`) joined. */
function numbers(cell: string): number[] {
  return [...cell.replace(/(\d) (?=\d{3}\b)/g, '$1').matchAll(/\d+(\.\d+)?/g)].map((match) => Number(match[0]));
}

function cell(rows: Map<string, string[]>, name: string, column: number): string {
  const row = rows.get(name);
  assert.ok(row, `README table row for ${name}`);
  return row[column]!;
}

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
});

test('a pool and a DNS cache built without options use REVERSE_DEFAULTS', () => {
  const pool = new ConnPool();
  assert.equal(pool.maxIdle, REVERSE_DEFAULTS.pool.maxIdle);
  assert.equal(pool.idleTimeoutMs, REVERSE_DEFAULTS.pool.idleTimeoutMs);
  const dns = new DnsCache();
  assert.deepEqual([dns.ttlMs, dns.minTtlMs, dns.maxTtlMs], [REVERSE_DEFAULTS.dns.ttlMs, REVERSE_DEFAULTS.dns.minTtlMs, REVERSE_DEFAULTS.dns.maxTtlMs]);
});
