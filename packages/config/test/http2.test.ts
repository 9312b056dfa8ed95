import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'wmproxy-config-h2-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'c.pem'), 'cert');
writeFileSync(join(dir, 'k.pem'), 'key');

const UPSTREAM = `[[upstream]]
name = "app"
servers = ["127.0.0.1:3001"]
`;

function issues(text: string): Map<string, { expected: string; found: string }> {
  try {
    parseConfig(text, 'toml');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return new Map(error.issues.map((issue) => [issue.path, issue]));
  }
  assert.fail('expected the configuration to be rejected');
}

test('http2 defaults to true (h2 by ALPN on tls servers) and reads false and "h2c"', () => {
  const config = parseConfig(
    `${UPSTREAM}
[[server]]
listen = "127.0.0.1:8443"
tls = { cert = "${join(dir, 'c.pem')}", key = "${join(dir, 'k.pem')}" }
[[server.location]]
upstream = "app"
[[server]]
listen = "127.0.0.1:8080"
http2 = "h2c"
[[server.location]]
upstream = "app"
[[server]]
listen = "127.0.0.1:8081"
http2 = false
[[server.location]]
upstream = "app"
`,
    'toml',
  );
  assert.deepEqual(config.servers.map((server) => server.http2), [true, 'h2c', false]);
});

test('rejects a bad http2 value, "h2c" on a tls server and servers of one port that disagree, with their key paths', () => {
  const found = issues(`${UPSTREAM}
[[server]]
listen = "127.0.0.1:8443"
http2 = "h2c"
tls = { cert = "${join(dir, 'c.pem')}", key = "${join(dir, 'k.pem')}" }
[[server.location]]
upstream = "app"
[[server]]
listen = "127.0.0.1:8080"
server_name = ["a.example"]
[[server.location]]
upstream = "app"
[[server]]
listen = "127.0.0.1:8080"
server_name = ["b.example"]
http2 = "h2c"
[[server.location]]
upstream = "app"
[[server]]
listen = "127.0.0.1:8082"
http2 = "yes"
[[server.location]]
upstream = "app"
`);
  assert.match(found.get('server[0].http2')!.expected, /"h2c" is for servers without tls/);
  assert.match(found.get('server[2].http2')!.expected, /^true, as server\[1\] on the same port/);
  assert.equal(found.get('server[2].http2')!.found, '"h2c"');
  assert.match(found.get('server[3].http2')!.expected, /true, false or "h2c"/);
});
