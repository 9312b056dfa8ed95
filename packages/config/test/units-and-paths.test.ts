// Edge cases the property tests found in the native loader and in parseSize.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig, parseSize, SizeError } from '../src/index.js';

test('an unknown key made of digits is named as a key, not as a list position', () => {
  try {
    parseConfig('[control]\nenabled = false\n[health]\n"0" = false\n', 'toml');
    assert.fail('expected the configuration to be rejected');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.issues.map((issue) => [issue.path, issue.found]), [['health["0"]', 'unknown key "0"']]);
  }
});

test('parseSize refuses byte counts a number cannot hold exactly', () => {
  assert.equal(parseSize(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
  assert.throws(() => parseSize(2 ** 53), SizeError);
  assert.throws(() => parseSize('99999999999999999999'), SizeError);
  assert.throws(() => parseSize('9999999999g'), SizeError);
  assert.equal(parseSize('8388607g'), 8388607 * 1024 ** 3);
});

test('parseSize reads the sizes the schema accepts, and no others', () => {
  for (const [text, bytes] of [['64k', 65536], ['64KiB', 65536], ['64kb', 65536], ['1m', 1048576], ['512b', 512], ['512', 512], ['1.5k', 1536]] as const) {
    assert.equal(parseSize(text), bytes, text);
  }
  for (const text of ['64ib', '64i', '64bb', '64 kk', '1t', '-1', '']) assert.throws(() => parseSize(text), SizeError, text);
});

test('a duration longer than a timer can wait, or a size a number cannot hold, is a ConfigError at its key path', () => {
  const base = '[[proxy]]\nname = "p"\nlisten = "127.0.0.1:0"\n';
  const refused = (extra: string, path: string, expected: RegExp) =>
    assert.throws(
      () => parseConfig(base + extra, 'toml', 'limits.toml'),
      (error: unknown) => error instanceof ConfigError && error.message.includes(`limits.toml: ${path}: expected`) && expected.test(error.message),
    );
  // setTimeout fires after 1 ms for more than 2^31 - 1 ms: a 30-day timeout would be none at all.
  refused('header_timeout = "30d"\n', 'proxy[0].header_timeout', /at most 24d, found "30d"/);
  refused('header_timeout = "999999999999999999999d"\n', 'proxy[0].header_timeout', /at most 24d/);
  refused('max_header_size = "99999999999999999999g"\n', 'proxy[0].max_header_size', /a size in bytes/);
  assert.equal(parseConfig(base + 'header_timeout = "24d"\n', 'toml', 'limits.toml').proxies[0]!.headerTimeoutMs, 24 * 86_400_000);
});

test('a cluster-scoped rate limit needs [cluster] redis, named at its key path; with it, the limit and the cluster settings resolve', () => {
  const server = '[[server]]\nlisten = "127.0.0.1:0"\n[[server.location]]\npath = "/"\nrespond = { status = 200 }\nrate_limit = { rate = "100r/s", scope = "cluster", fallback = "open" }\n';
  assert.throws(
    () => parseConfig(server, 'toml', 'rl.toml'),
    (error: unknown) => error instanceof ConfigError && /rl\.toml: server\[0\]\.location\[0\]\.rate_limit\.scope: expected a `\[cluster\] redis` URL/.test(error.message),
  );
  const config = parseConfig(`[cluster]\nredis = "redis://127.0.0.1:6379"\ninstances = 3\n${server}`, 'toml', 'rl.toml');
  assert.deepEqual(config.cluster, { redis: 'redis://127.0.0.1:6379', store: undefined, instances: 3, redisTimeoutMs: 500 });
  assert.deepEqual(config.servers[0]!.locations[0]!.rateLimit, { rate: '100r/s', scope: 'cluster', fallback: 'open' });
});
