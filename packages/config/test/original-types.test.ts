// The original wmproxy's format is type-checked like the native one: a wrong
// type, an unknown key or a conversion that would open more than the file
// says is an error naming the key path of the original file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, convertOriginal, parseConfig, parseText, type ConfigIssue } from '../src/index.js';

function issuesOf(text: string, format: 'toml' | 'yaml' | 'json' = 'toml'): ConfigIssue[] {
  try {
    parseConfig(text, format, `original.${format}`);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.issues;
  }
  assert.fail(`expected the configuration to be rejected:\n${text}`);
}

/** "path: expected X, found Y" of each issue. */
function lines(text: string, format: 'toml' | 'yaml' | 'json' = 'toml'): string[] {
  return issuesOf(text, format).map((issue) => `${issue.path}: expected ${issue.expected}, found ${issue.found}`);
}

const convert = (text: string) => convertOriginal(parseText(text, 'toml', 'original.toml'), { file: 'original.toml' });

const UPSTREAM = '[[http.upstream]]\nname = "app"\nserver = [{ addr = "127.0.0.1:3000" }]\n';

test('a username or password that is not a string is an error, never a proxy without authentication', () => {
  const text = '[proxy]\nbind_addr = "0.0.0.0:8090"\nusername = 123\npassword = 456\n';
  assert.deepEqual(lines(text), ['proxy.username: expected a string, found 123 (number)', 'proxy.password: expected a string, found 456 (number)']);
  assert.throws(() => convert(text), ConfigError);
  // On loopback too: the file asked for authentication.
  assert.deepEqual(
    issuesOf('[proxy]\nbind_addr = "127.0.0.1:8090"\nusername = "alice"\npassword = ["pw"]\n').map((issue) => issue.path),
    ['proxy.password'],
  );
});

test('a username without a password (or the reverse) is an error naming the missing key', () => {
  assert.deepEqual(lines('[proxy]\nbind_addr = "127.0.0.1:8090"\nusername = "alice"\n'), [
    'proxy.password: expected a string (username is set: username and password come together), found nothing',
  ]);
  assert.deepEqual(issuesOf('[proxy]\nbind_addr = "127.0.0.1:8090"\npassword = "pw"\n').map((issue) => issue.path), ['proxy.username']);
});

test('a proxy reachable from other hosts without credentials is refused, not converted to insecure_open', () => {
  for (const bind of ['0.0.0.0:8090', '10.1.2.3:8090', ':8090', '[::]:8090']) {
    const issues = issuesOf(`[proxy]\nbind_addr = "${bind}"\n`);
    assert.equal(issues.length, 1, JSON.stringify(issues));
    assert.equal(issues[0]!.path, 'proxy.bind_addr');
    assert.match(issues[0]!.expected, /username and password/);
    assert.match(issues[0]!.expected, /wmproxy convert/);
    assert.match(issues[0]!.expected, /insecure_open = true/);
    assert.match(issues[0]!.found, new RegExp(JSON.stringify(bind).replace(/[[\]]/g, '\\$&')));
  }
  // A bare proxy file (the original's server.toml) and the newer `bind` key alike.
  assert.deepEqual(issuesOf('bind_addr = "0.0.0.0:8090"\nflag = 7\n').map((issue) => issue.path), ['bind_addr']);
  assert.deepEqual(issuesOf('[proxy]\nbind = "0.0.0.0:8090"\n').map((issue) => issue.path), ['proxy.bind']);
  // The conversion itself is complete: `wmproxy convert` prints it to be edited, without insecure_open.
  const result = convertOriginal(parseText('[proxy]\nbind_addr = "0.0.0.0:8090"\n', 'toml', 'o.toml'), { keepGoing: true });
  assert.equal(result.complete, true);
  assert.deepEqual(result.config.proxy, [{ listen: '0.0.0.0:8090' }]);
  // With credentials the same address converts.
  const config = parseConfig('[proxy]\nbind_addr = "0.0.0.0:8090"\nusername = "u"\npassword = "p"\n', 'toml');
  assert.deepEqual(config.proxies[0]!.users, { u: 'p' });
  assert.equal(config.source.proxy![0]!.insecure_open, undefined);
});

test('a bind_addr that is not an address is an error, never the default address', () => {
  assert.deepEqual(lines('[proxy]\nbind_addr = 12\n'), ['proxy.bind_addr: expected an address such as 127.0.0.1:8090, [::1]:8090 or :8090, found 12 (number)']);
  assert.deepEqual(issuesOf('[proxy]\nbind_addr = "nowhere"\n').map((issue) => issue.path), ['proxy.bind_addr']);
  assert.deepEqual(issuesOf(`${UPSTREAM}[[http.server]]\nbind_addr = 80\nup_name = "app"\n`).map((issue) => issue.path), ['http.server[0].bind_addr']);
  assert.deepEqual(issuesOf(`${UPSTREAM}[[http.server]]\nup_name = "app"\n`).map((issue) => [issue.path, issue.found]), [['http.server[0].bind_addr', 'nothing']]);
});

test('an up_name that is not a string is an error naming the server or location', () => {
  const text = `${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:0"\nup_name = "app"\n[[http.server.location]]\nrule = "/"\nup_name = "app"\n[[http.server.location]]\nrule = "/api"\nup_name = []\n`;
  assert.deepEqual(lines(text), ['http.server[0].location[1].up_name: expected a string, found a list of 0 items']);
  assert.deepEqual(issuesOf(`${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:0"\nup_name = 5\n`).map((issue) => issue.path), ['http.server[0].up_name']);
});

test('an unknown key is an error, with "did you mean" when a known key is close', () => {
  assert.deepEqual(lines('[proxy]\nbind_addr = "127.0.0.1:8090"\nusename = "alice"\npassword = "pw"\n'), [
    'proxy.username: expected a string (password is set: username and password come together), found nothing',
    'proxy.usename: expected a known key (did you mean "username"?), found unknown key "usename"',
  ]);
  const issues = issuesOf(`${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:0"\n[[http.server.location]]\nrule = "/"\nup_nme = "app"\nfrobnicate = 1\n`);
  assert.deepEqual(
    issues.map((issue) => [issue.path, issue.expected]),
    [
      ['http.server[0].location[0].up_nme', 'a known key (did you mean "up_name"?)'],
      ['http.server[0].location[0].frobnicate', issues[1]!.expected],
    ],
  );
  assert.match(issues[1]!.expected, /^one of the keys rule, method, /);
  assert.deepEqual(issuesOf('control = "127.0.0.1:8837"\n[htpp]\nserver = []\n').map((issue) => issue.expected), ['a known key (did you mean "http"?)']);
});

test('every value the loader reads is type-checked, with its key path', () => {
  const server = (body: string) => `${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:0"\n${body}`;
  const location = (body: string) => server(`[[http.server.location]]\nrule = "/"\nup_name = "app"\n${body}`);
  const cases: Array<[string, string, RegExp]> = [
    ['control = 8837\n[proxy]\nbind_addr = "127.0.0.1:8090"\n', 'control', /^an address/],
    ['control = "127.0.0.1:8837"\ndisable_control = "yes"\n', 'disable_control', /^true or false$/],
    ['control = "127.0.0.1:8837"\ndefault_level = "loud"\n', 'default_level', /^one of "trace"/],
    ['control = "127.0.0.1:8837"\nproxy = 5\n', 'proxy', /^a table$/],
    ['[proxy]\nflag = "fast"\n', 'proxy.flag', /^a flag such as 7/],
    ['[proxy]\nflag = 8\n', 'proxy.flag', /^a flag with http/],
    ['[proxy]\nflag = 1.5\n', 'proxy.flag', /^a flag such as 7/],
    ['[proxy]\nudp_bind = 5\n', 'proxy.udp_bind', /^a string$/],
    ['[proxy]\nudp_bind = "localhost"\n', 'proxy.udp_bind', /^an IP address$/],
    ['[http]\nserver = 5\n', 'http.server', /^a list of tables$/],
    ['[http]\nserver = [5]\n', 'http.server[0]', /^a table$/],
    ['[http]\nproxy_connect_timeout = true\n', 'http.proxy_connect_timeout', /^a duration/],
    ['[http]\nproxy_read_timeout = "soon"\n', 'http.proxy_read_timeout', /^a duration/],
    ['[http]\naccess_log = 1\n', 'http.access_log', /^a string$/],
    ['[http]\nlog_names = { access = 1 }\n', 'http.log_names.access', /^a string/],
    ['[[http.upstream]]\nname = 1\nserver = [{ addr = "127.0.0.1:1" }]\n', 'http.upstream[0].name', /^a string$/],
    ['[[http.upstream]]\nname = "a"\nserver = [{ weight = 2 }]\n', 'http.upstream[0].server[0].addr', /\(required\)$/],
    ['[[http.upstream]]\nname = "a"\nserver = [{ addr = 1 }]\n', 'http.upstream[0].server[0].addr', /^an address/],
    ['[[http.upstream]]\nname = "a"\nserver = [{ addr = "127.0.0.1:1", weight = 0 }]\n', 'http.upstream[0].server[0].weight', /^an integer from 1 to 65535$/],
    ['[[http.upstream]]\nname = "a"\nserver = [{ addr = "127.0.0.1:1", weight = 70000 }]\n', 'http.upstream[0].server[0].weight', /^an integer from 1 to 65535$/],
    ['[[http.upstream]]\nname = "a"\nserver = [{ addr = "127.0.0.1:1", fall_times = "2" }]\n', 'http.upstream[0].server[0].fall_times', /^an integer of at least 1$/],
    ['[[http.upstream]]\nname = "a"\nserver = [{ addr = "127.0.0.1:1", rise_times = -1 }]\n', 'http.upstream[0].server[0].rise_times', /^an integer of at least 1$/],
    ['[[http.upstream]]\nname = "a"\nserver = [{ addr = "127.0.0.1:1", fail_timeout = "later" }]\n', 'http.upstream[0].server[0].fail_timeout', /^a duration/],
    [server('server_name = 1\n'), 'http.server[0].server_name', /^a string$/],
    [server('root = false\n'), 'http.server[0].root', /^a string$/],
    [server('cert = "a.pem"\n'), 'http.server[0].key', /cert and key come together/],
    [server('headers = "x"\n'), 'http.server[0].headers', /^a list of header rules/],
    [server('headers = ["+ x-a 1", 5]\n'), 'http.server[0].headers[1]', /^a header rule/],
    [server('headers = ["x-only"]\n'), 'http.server[0].headers[0]', /^a header rule/],
    [server('location = { rule = "/" }\nup_name = "app"\nupstream = 1\n'), 'http.server[0].upstream', /^a list of tables$/],
    [location('method = 1\n'), 'http.server[0].location[0].method', /^a string$/],
    [location('is_ws = "yes"\n'), 'http.server[0].location[0].is_ws', /^true or false$/],
    [location('reverse_proxy = 5\n'), 'http.server[0].location[0].reverse_proxy', /^a string$/],
    [location('reverse_proxy = "ftp://app"\n'), 'http.server[0].location[0].reverse_proxy', /^an http:\/\/ or https:\/\/ URL/],
    [location('static_response = 200\n'), 'http.server[0].location[0].static_response', /^a string$/],
    [location('file_server = true\n'), 'http.server[0].location[0].file_server', /^a table$/],
    [location('root = "."\nfile_server = { browse = "yes" }\n'), 'http.server[0].location[0].file_server.browse', /^true or false$/],
    [location('root = "."\nfile_server = { index = "index.html" }\n'), 'http.server[0].location[0].file_server.index', /^a list of strings$/],
    [location('root = "."\nfile_server = { hide = [".git", 1] }\n'), 'http.server[0].location[0].file_server.hide[1]', /^a string$/],
    [location('file_server = { browse = true }\n'), 'http.server[0].location[0].file_server.root', /\(required\)$/],
    [server('[[http.server.location]]\nup_name = "app"\n'), 'http.server[0].location[0].rule', /\(required\)$/],
    [server('[[http.server.location]]\nrule = 5\nup_name = "app"\n'), 'http.server[0].location[0].rule', /^a path rule/],
    [server('[[http.server.location]]\nrule = { path = "/", method = 1 }\nup_name = "app"\n'), 'http.server[0].location[0].rule.method', /^a string$/],
    [server('[[http.server.location]]\nrule = { path = "/", client_ip = "10.0.0.0/99" }\nup_name = "app"\n'), 'http.server[0].location[0].rule.client_ip', /^IP addresses or CIDR ranges/],
    ['[[stream.upstream]]\nname = "t"\nserver = [{ addr = "127.0.0.1:1" }]\n[[stream.server]]\nbind_addr = "127.0.0.1:0"\nup_name = "t"\nbind_mode = "sctp"\n', 'stream.server[0].bind_mode', /^one of "tcp", "udp"/],
    ['[[stream.upstream]]\nname = "t"\nserver = [{ addr = "127.0.0.1:1" }]\n[[stream.server]]\nbind_addr = "127.0.0.1:0"\nup_name = "t"\ntimeout = -1\n', 'stream.server[0].timeout', /^a duration/],
    ['[[stream.upstream]]\nname = "t"\nserver = [{ addr = "127.0.0.1:1" }]\n[[stream.server]]\nbind_addr = "127.0.0.1:0"\nup_name = "u"\n', 'stream.server[0].up_name', /^the name of a \[\[stream.upstream\]\] \("t"\)$/],
    ['[[stream.upstream]]\nname = "t"\nserver = [{ addr = "127.0.0.1:1" }]\n[[stream.server]]\nup_name = "t"\n', 'stream.server[0].bind_addr', /\(required\)$/],
  ];
  for (const [text, path, expected] of cases) {
    const issues = issuesOf(text);
    const issue = issues.find((candidate) => candidate.path === path);
    assert.ok(issue, `no issue at ${path} for\n${text}\ngot ${JSON.stringify(issues)}`);
    assert.match(issue.expected, expected, `${path} for\n${text}`);
  }
});

test('access lists and match conditions without an equivalent are errors, since dropping them would let more in', () => {
  const base = `${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:0"\n`;
  assert.deepEqual(issuesOf(`[http]\nallow_ip = "10.0.0.0/8"\n${base}up_name = "app"\n`).map((issue) => issue.path), ['http.allow_ip']);
  assert.deepEqual(issuesOf(`${base}deny_ip = "10.0.0.1"\nup_name = "app"\n`).map((issue) => issue.path), ['http.server[0].deny_ip']);
  const issues = issuesOf(`${base}[[http.server.location]]\nrule = { path = "/admin", host = "internal.test" }\nup_name = "app"\nallow_ip = "127.0.0.1"\n`);
  assert.deepEqual(issues.map((issue) => issue.path), ['http.server[0].location[0].rule.host', 'http.server[0].location[0].allow_ip']);
  assert.match(issues[1]!.expected, /let every client in/);
});

test('the flag words of the original ("http https socks5") choose the protocols', () => {
  const proxy = (flag: string) => convert(`[proxy]\nbind_addr = "127.0.0.1:8090"\nflag = ${flag}\n`).config.proxy![0]!.protocols;
  assert.deepEqual(proxy('"http https"'), ['http', 'https']);
  assert.deepEqual(proxy('"socks5"'), ['socks5']);
  assert.deepEqual(proxy('"4"'), ['socks5']);
  assert.deepEqual(proxy('3'), ['http', 'https']);
});

test('errors found after conversion name the key of the original file', () => {
  const text = `${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:0"\n[[http.server.location]]\nrule = "/"\nup_name = "app"\n[[http.server.location]]\nrule = "/x"\nup_name = "nope"\n[[http.server.location]]\nrule = "~ ("\nup_name = "app"\n`;
  assert.deepEqual(
    issuesOf(text).map((issue) => issue.path),
    ['http.server[0].location[2].rule', 'http.server[0].location[1].up_name'],
  );
  // Two servers on one port, both in the original's terms.
  const clash = `${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:8081"\nup_name = "app"\n[[stream.server]]\nbind_addr = "127.0.0.1:8081"\nproxy_url = "tcp://127.0.0.1:9000"\n`;
  for (const issue of issuesOf(clash)) assert.match(issue.path, /^(http|stream)\.server\[0\]/);
});

test('a named location (@name) is dropped, not turned into a catch-all "/"', () => {
  const { config, warnings } = convert(`${UPSTREAM}[[http.upstream]]\nname = "ws"\nserver = [{ addr = "127.0.0.1:3001" }]\n[[http.server]]\nbind_addr = "127.0.0.1:0"\n[[http.server.location]]\nrule = "/api"\nup_name = "app"\n[[http.server.location]]\nrule = "@ws"\nreverse_proxy = "http://ws"\n`);
  assert.deepEqual(config.server![0]!.location, [{ path: '/api', upstream: 'app' }]);
  assert.ok(warnings.some((warning) => warning.startsWith('http.server[0].location[1].rule: named location @ws')), JSON.stringify(warnings));
});

test('a location answers with its static_response before the server\'s up_name, as in the original', () => {
  const { config } = convert(`${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:0"\nup_name = "app"\n[[http.server.location]]\nrule = "/ok"\nstatic_response = "I'm ok"\n`);
  assert.deepEqual(config.server![0]!.location, [{ path: '/ok', respond: { status: 200, body: "I'm ok" } }]);
});

test('durations in the original\'s units (a number of seconds, 2min) convert', () => {
  const { config } = convert('[http]\nproxy_connect_timeout = 3\nproxy_read_timeout = "2min"\nclient_ka_timeout = "1500ms"\n');
  assert.deepEqual(config.reverse, { connect_timeout: '3s', read_timeout: '2m', keepalive_timeout: '1500ms' });
});

test('YAML and JSON files of the original format are checked the same way', () => {
  assert.deepEqual(issuesOf('proxy:\n  bind_addr: 0.0.0.0:8090\n  username: 12\n  password: pw\n', 'yaml').map((issue) => issue.path), ['proxy.username']);
  assert.deepEqual(issuesOf(JSON.stringify({ proxy: { bind_addr: '127.0.0.1:8090', flag: [1] } }), 'json').map((issue) => issue.path), ['proxy.flag']);
  // null is an absent value, as serde reads it.
  assert.equal(parseConfig('proxy:\n  bind_addr: 127.0.0.1:8090\n  username:\n  password:\n', 'yaml').proxies[0]!.users, undefined);
});

test('a client_ip of the original matches what the original matches: a /0 or IPv6 prefix is a single address there', () => {
  const { config } = convert(`${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:0"\n[[http.server.location]]\nrule = { path = "/", client_ip = "10.0.0.1/0 10.1.0.0/16 ::1/64 127.0.0.1" }\nup_name = "app"\n`);
  assert.deepEqual(config.server![0]!.location[0]!.client_ips, ['10.0.0.1', '10.1.0.0/16', '::1', '127.0.0.1']);
});

test('a server\'s timeouts win over its locations\', which are global in wmproxy', () => {
  const { config, warnings } = convert(`${UPSTREAM}[[http.server]]\nbind_addr = "127.0.0.1:0"\nproxy_read_timeout = "5s"\n[[http.server.location]]\nrule = "/"\nup_name = "app"\nproxy_read_timeout = "9s"\n`);
  assert.equal(config.reverse!.read_timeout, '5s');
  assert.ok(warnings.some((warning) => warning.startsWith('http.server[0].location[0].proxy_read_timeout: differs from reverse.read_timeout = 5s')), JSON.stringify(warnings));
});

test('the encrypted link of the original: server/ts/two_way_tls on the client, tc/two_way_tls on the server, one cert/key pair', () => {
  const client = convert('[proxy]\nbind_addr = "127.0.0.1:8090"\nserver = "proxy.example:8091"\nts = true\ntwo_way_tls = true\ncert = "pair.pem"\nkey = "pair.key"\ndomain = "proxy.example"\n');
  assert.deepEqual(client.warnings, []);
  const clientProxy = (client.config.proxy as Array<Record<string, unknown>>)[0]!;
  assert.equal(clientProxy.parent, 'https://proxy.example:8091');
  assert.deepEqual(clientProxy.parent_tls, { ca: 'pair.pem', cert: 'pair.pem', key: 'pair.key', server_name: 'proxy.example' });
  assert.equal(clientProxy.tls, undefined, 'the client port stays plain without tc');

  // tc with two_way_tls: clients need a certificate, which counts as credentials on a public address.
  const server = convert('[proxy]\nbind_addr = "0.0.0.0:8091"\ntc = true\ntwo_way_tls = true\ncert = "pair.pem"\nkey = "pair.key"\n');
  assert.deepEqual(server.warnings, []);
  assert.deepEqual((server.config.proxy as Array<Record<string, unknown>>)[0]!.tls, { cert: 'pair.pem', key: 'pair.key', client_ca: 'pair.pem' });

  const plainParent = convert('[proxy]\nserver = "127.0.0.1:8091"\n');
  assert.equal((plainParent.config.proxy as Array<Record<string, unknown>>)[0]!.parent, 'http://127.0.0.1:8091');
});

test('tc without a certificate is an error (no built-in certificate), and tc alone does not open a public port', () => {
  assert.deepEqual(issuesOf('[proxy]\ntc = true\n').map((issue) => [issue.path, issue.expected]), [['proxy.tc', 'cert and key with tc = true (wmproxy has no built-in certificate)']]);
  const open = issuesOf('[proxy]\nbind_addr = "0.0.0.0:8091"\ntc = true\ncert = "pair.pem"\nkey = "pair.key"\n');
  assert.ok(open.some((issue) => issue.path === 'proxy.bind_addr'), JSON.stringify(open));
});
