import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError, IssueList, interpolateEnv, parseConfig } from '../src/index.js';

const env = { PORT: '9001', TOKEN: 's3cret-token-value', EMPTY: '' };

test('references in string values are replaced; defaults apply when unset (and with :- when empty); $${ is a literal', () => {
  const config = parseConfig(
    [
      '[control]',
      'listen = "127.0.0.1:${CONTROL_PORT:-8899}"',
      'token = "${TOKEN}"',
      '[[proxy]]',
      'name = "p-${EMPTY:-fallback}-${EMPTY-kept}"',
      'listen = "127.0.0.1:${PORT}"',
      '[[upstream]]',
      'name = "app"',
      'servers = ["127.0.0.1:3000"]',
      '[[server]]',
      'listen = "127.0.0.1:0"',
      '[[server.location]]',
      'regex = "^/literal/$${x}$"',
      'upstream = "app"',
    ].join('\n'),
    'toml',
    'env.toml',
    { env },
  );
  assert.equal(config.control.listen, '127.0.0.1:8899');
  assert.equal(config.control.token, 's3cret-token-value');
  assert.equal(config.proxies[0]!.name, 'p-fallback-');
  assert.equal(config.proxies[0]!.listen[0], '127.0.0.1:9001');
  // What is shown (GET /config, config push) keeps the reference, never the secret.
  assert.equal((config.source.control as { token?: string }).token, '${TOKEN}');
  assert.ok(!JSON.stringify(config.source).includes('s3cret-token-value'));
});

test('an unset variable without a default, and a malformed reference, are ConfigErrors at their key paths', () => {
  assert.throws(
    () => parseConfig('[[proxy]]\nname = "p"\nlisten = "127.0.0.1:${NOPE}"\n[control]\ntoken = "${bad name}"\n', 'toml', 'env.toml', { env }),
    (error: unknown) =>
      error instanceof ConfigError &&
      /env\.toml: proxy\[0\]\.listen: expected the environment variable NOPE to be set \(or a default: \$\{NOPE:-value\}\), found NOPE unset/.test(error.message) &&
      /env\.toml: control\.token: expected an environment reference/.test(error.message),
  );
});

test('substitution never changes the shape: any text without references comes back as written; references only ever produce the variable text', () => {
  fc.assert(
    fc.property(fc.string(), (text) => {
      const issues = new IssueList('x');
      const out = interpolateEnv({ a: [text] }, {}, issues) as { a: string[] };
      if (!text.includes('${')) assert.equal(out.a[0], text);
      else if (issues.issues.length > 0) assert.equal(out.a[0], text, 'a failed value is left as written');
    }),
  );
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme-ascii' }), fc.string({ unit: 'grapheme-ascii' }), (before, value) => {
      fc.pre(!before.includes('$'));
      const issues = new IssueList('x');
      const out = interpolateEnv(`${before}\${V}${before}`, { V: value }, issues);
      assert.equal(out, `${before}${value}${before}`);
      assert.equal(issues.issues.length, 0);
    }),
  );
});
