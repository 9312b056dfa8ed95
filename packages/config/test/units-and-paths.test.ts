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
