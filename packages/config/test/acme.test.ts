// `tls = "auto"` and `[acme]`: defaults, directory names, paths resolved
// against the file, and names ACME cannot validate refused at their key path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ACME_DEFAULTS, ACME_DIRECTORIES } from '@wmproxy/acme';
import { ConfigError, parseConfig } from '../src/index.js';

const server = (names: string) => `[[server]]\nlisten = "127.0.0.1:8443"\nserver_name = ${names}\ntls = "auto"\n[[server.location]]\npath = "/"\nrespond = { status = 200 }\n`;

function issues(text: string): Array<{ path: string; expected: string }> {
  try {
    parseConfig(text, 'toml', '/etc/wmproxy/acme.toml');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.issues.map((issue) => ({ path: issue.path, expected: issue.expected }));
  }
  return [];
}

test('tls = "auto" alone turns automatic HTTPS on with every default (Let\'s Encrypt, both challenges, storage beside the file, redirect on port 80)', () => {
  const config = parseConfig(server('["example.com", "www.example.com"]'), 'toml', '/etc/wmproxy/site.toml');
  assert.equal(config.servers[0]!.tls, 'auto');
  assert.deepEqual(config.acme, {
    email: undefined,
    directory: ACME_DIRECTORIES.production,
    caRoot: undefined,
    challenges: [...ACME_DEFAULTS.challenges],
    storage: join('/etc/wmproxy', ACME_DEFAULTS.storage),
    renewBeforeMs: undefined,
    orderTimeoutMs: ACME_DEFAULTS.orderTimeoutMs,
    redirect: true,
    httpPort: 80,
  });
  assert.equal(parseConfig('[[proxy]]\nlisten = "127.0.0.1:0"\n', 'toml').acme, undefined, 'no auto server, no [acme]: off');
});

test('[acme] takes staging or a URL, the challenge order, storage, renew_before, redirect and http_port', () => {
  const config = parseConfig(
    `[acme]\nemail = "ops@example.com"\ndirectory = "staging"\nchallenges = ["http-01"]\nstorage = "/var/lib/wmproxy/acme"\nrenew_before = "30d"\norder_timeout = "90s"\nredirect = false\nhttp_port = 8080\n${server('["example.com"]')}`,
    'toml',
  );
  assert.equal(config.acme!.directory, ACME_DIRECTORIES.staging);
  assert.deepEqual(config.acme!.challenges, ['http-01']);
  assert.equal(config.acme!.storage, '/var/lib/wmproxy/acme');
  assert.equal(config.acme!.renewBeforeMs, 30 * 24 * 3600_000);
  assert.equal(config.acme!.orderTimeoutMs, 90_000);
  assert.equal(config.acme!.redirect, false);
  assert.equal(config.acme!.httpPort, 8080);
  assert.equal(parseConfig(`[acme]\ndirectory = "https://ca.internal/acme/directory"\n${server('["a.internal.test"]')}`, 'toml').acme!.directory, 'https://ca.internal/acme/directory');
});

test('names ACME cannot validate, a missing server_name, a bad directory or challenge fail at their key path', () => {
  assert.deepEqual(issues(server('["*.example.com", "localhost", "10.0.0.1", "ok.example.com"]')).map((issue) => issue.path), ['server[0].server_name[0]', 'server[0].server_name[1]', 'server[0].server_name[2]']);
  assert.match(issues(server('["*.example.com"]'))[0]!.expected, /DNS-01/);
  assert.deepEqual(issues(`[[server]]\nlisten = "127.0.0.1:8443"\ntls = "auto"\n[[server.location]]\npath = "/"\nrespond = { status = 200 }\n`).map((issue) => issue.path), ['server[0].server_name']);
  assert.deepEqual(issues(`[acme]\ndirectory = "letsencrypt"\n`).map((issue) => issue.path), ['acme.directory']);
  assert.deepEqual(issues(`[acme]\nchallenges = ["dns-01"]\n`).map((issue) => issue.path), ['acme.challenges[0]']);
  assert.deepEqual(issues(`[acme]\nca_root = "no-such-root.pem"\n`).map((issue) => issue.path), ['acme.ca_root']);
  assert.deepEqual(issues(`[[server]]\nlisten = "127.0.0.1:8443"\nserver_name = ["a.example.com"]\ntls = "manual"\n[[server.location]]\npath = "/"\nrespond = { status = 200 }\n`).map((issue) => issue.path), ['server[0].tls']);
});

const tunnel = (extra: string) => `[tunnel.server]\nlisten = "127.0.0.1:7000"\nhttp_listen = "127.0.0.1:80"\n${extra}`;

test('https_tls = "auto" on the tunnel server turns automatic HTTPS on for its http mappings', () => {
  const config = parseConfig(tunnel('token = "tunnel-secret"\nallow_domains = ["*.example.com"]\nhttps_listen = "127.0.0.1:443"\nhttps_tls = "auto"\n'), 'toml', '/etc/wmproxy/tunnel.toml');
  assert.equal(config.tunnel.server!.httpsAuto, true);
  assert.equal(config.acme!.directory, ACME_DIRECTORIES.production);
  assert.equal(config.acme!.storage, join('/etc/wmproxy', ACME_DEFAULTS.storage));
  // Per-client allow lists are enough when there is no shared token.
  const perClient = parseConfig(tunnel('clients = [{ name = "office", token = "office-secret", allow_domains = ["app.example.com"] }]\nhttps_listen = "127.0.0.1:443"\nhttps_tls = "auto"\n'), 'toml');
  assert.equal(perClient.tunnel.server!.httpsAuto, true);
  assert.equal(parseConfig(tunnel('token = "tunnel-secret"\n'), 'toml').tunnel.server!.httpsAuto, false);
});

test('https_tls = "auto" needs https_listen and an allow list of domains, and excludes https_cert', () => {
  // Without a domain list any token holder could make the server order certificates for any name.
  const open = issues(tunnel('token = "tunnel-secret"\nhttps_listen = "127.0.0.1:443"\nhttps_tls = "auto"\n'));
  assert.deepEqual(open.map((issue) => issue.path), ['tunnel.server.allow_domains']);
  assert.match(open[0]!.expected, /certificates are ordered for the domains clients announce/);
  assert.deepEqual(issues(tunnel('clients = [{ name = "a", token = "a-secret-1", allow_domains = ["a.example.com"] }, { name = "b", token = "b-secret-1" }]\nhttps_listen = "127.0.0.1:443"\nhttps_tls = "auto"\n')).map((issue) => issue.path), ['tunnel.server.allow_domains']);
  assert.deepEqual(issues(tunnel('token = "tunnel-secret"\nallow_domains = ["*.example.com"]\nhttps_tls = "auto"\n')).map((issue) => issue.path), ['tunnel.server.https_tls']);
  assert.deepEqual(issues(tunnel('token = "tunnel-secret"\nallow_domains = ["*.example.com"]\nhttps_listen = "127.0.0.1:443"\nhttps_tls = "manual"\n')).map((issue) => issue.path), ['tunnel.server.https_tls']);
});
