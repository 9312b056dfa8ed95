import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_DENY_DESTINATIONS } from '@wmproxy/core-net';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  convertOriginal,
  defaultConfig,
  jsonSchemaText,
  loadConfig,
  loadConfigSync,
  parseConfig,
  parseDuration,
  parseSize,
  parseText,
  redactConfig,
  REDACTED,
  stringifyConfig,
  upstreamTargets,
} from '../src/index.js';

/** The repository root, from src (Bun) or dist/test (Node). */
function repoRoot(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!readdirSync(dir).includes('examples') || !readdirSync(dir).includes('packages')) dir = join(dir, '..');
  return dir;
}
const root = repoRoot();
const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-config-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = join(scratch, name);
  writeFileSync(file, text);
  return file;
}

function issuesOf(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the configuration to be rejected');
}

test('reports every error at once, each with the file, key path, expected and found', () => {
  const file = write(
    'bad.toml',
    `workers = "many"
[[proxy]]
listen = "127.0.0.1:8090"
conect_timeout = "10s"
idle_timeout = 10
[[upstream]]
name = "app"
servers = ["127.0.0.1", { address = "127.0.0.1:3001", weight = 0 }]
[[server]]
listen = "127.0.0.1:8080"
[[server.location]]
upstream = "nope"
`,
  );
  const error = issuesOf(() => loadConfigSync(file));
  const byPath = new Map(error.issues.map((issue) => [issue.path, issue]));
  assert.ok(error.issues.every((issue) => issue.file === file));
  assert.match(byPath.get('workers')!.expected, /"auto" or a number/);
  assert.equal(byPath.get('workers')!.found, '"many" (string)');
  assert.match(byPath.get('proxy[0].conect_timeout')!.expected, /did you mean "connect_timeout"/);
  assert.match(byPath.get('proxy[0].idle_timeout')!.expected, /duration such as 500ms/);
  assert.equal(byPath.get('proxy[0].idle_timeout')!.found, '10 (number)');
  assert.match(byPath.get('upstream[0].servers[0]')!.expected, /address/);
  assert.match(byPath.get('upstream[0].servers[1].weight')!.expected, /at least 1/);
  // A cross-check still runs although the schema failed elsewhere.
  assert.match(byPath.get('server[0].location[0].upstream')!.expected, /name of an upstream \("app"\)/);
  assert.equal(byPath.get('server[0].location[0].upstream')!.found, '"nope"');
  assert.equal(error.issues.length, 6);
  const text = error.message;
  assert.match(text, /bad\.toml: \d+ errors/);
  assert.match(text, /bad\.toml: proxy\[0\]\.idle_timeout: expected a duration such as 500ms, 10s or 2m, at most 24d, found 10 \(number\)/);
});

test('cross-checks: unknown upstreams, port conflicts, open proxies, missing files, timeouts', () => {
  const error = issuesOf(() =>
    parseConfig(
      `
[control]
listen = "0.0.0.0:9999"
[[proxy]]
listen = ":7001"
[[upstream]]
name = "a"
servers = ["127.0.0.1:1"]
health_check = { interval = "1s", timeout = "2s" }
[[upstream]]
name = "a"
servers = ["127.0.0.1:2"]
[[stream]]
listen = "127.0.0.1:7001"
upstream = "b"
[[server]]
listen = "127.0.0.1:7002"
tls = { cert = "missing.pem", key = "missing.key" }
[[server.location]]
path = "/"
static = { root = "no-such-dir" }
upstream = "a"
`,
      'toml',
      'cross.toml',
      { baseDir: scratch },
    ),
  );
  const paths = error.issues.map((issue) => issue.path).sort();
  assert.deepEqual(paths, [
    'control.token',
    'proxy[0].listen',
    'server[0].location[0].static',
    'server[0].location[0].static.root',
    'server[0].tls.cert',
    'server[0].tls.key',
    'stream[0].upstream',
    'upstream[0].health_check.timeout',
    'upstream[1].name',
  ]);
  const conflict = issuesOf(() =>
    parseConfig(
      `[[proxy]]\nlisten = "127.0.0.1:7001"\n[[upstream]]\nname = "a"\nservers = ["127.0.0.1:1"]\n[[stream]]\nlisten = "127.0.0.1:7001"\nupstream = "a"\n`,
      'toml',
      'conflict.toml',
    ),
  );
  assert.equal(conflict.issues.length, 1);
  assert.equal(conflict.issues[0]!.path, 'proxy[0].listen');
  assert.match(conflict.issues[0]!.expected, /no other service listens on \(stream-0 has it\)/);
});

test('syntax errors name the format and the line', () => {
  const toml = issuesOf(() => loadConfigSync(write('syntax.toml', 'a = \n[x')));
  assert.match(toml.issues[0]!.expected, /valid TOML/);
  const yaml = issuesOf(() => loadConfigSync(write('syntax.yaml', 'proxy:\n  - listen: [1, 2\n')));
  assert.match(yaml.issues[0]!.expected, /valid YAML/);
  const json = issuesOf(() => loadConfigSync(write('syntax.json', '{"proxy": [}')));
  assert.match(json.issues[0]!.expected, /valid JSON/);
  const extension = issuesOf(() => loadConfigSync(write('config.ini', '')));
  assert.match(extension.issues[0]!.expected, /\.toml, \.yaml, \.yml or \.json/);
  const missing = issuesOf(() => loadConfigSync(join(scratch, 'absent.toml')));
  assert.equal(missing.issues[0]!.found, 'no such file');
});

test('durations and sizes', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('10s'), 10_000);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseSize('64k'), 65_536);
  assert.equal(parseSize('10m'), 10 * 1024 * 1024);
  assert.equal(parseSize('1g'), 1024 ** 3);
  assert.equal(parseSize(512), 512);
  assert.throws(() => parseSize('ten'));
  const config = parseConfig(
    `[[proxy]]\nlisten = "127.0.0.1:0"\nidle_timeout = "2m"\nconnect_timeout = "500ms"\nmax_header_size = "16k"\n[control]\nenabled = false\n`,
    'toml',
  );
  assert.equal(config.proxies[0]!.idleTimeoutMs, 120_000);
  assert.equal(config.proxies[0]!.connectTimeoutMs, 500);
  assert.equal(config.proxies[0]!.maxHeadSize, 16_384);
});

test('every example in examples/ loads', async () => {
  const files = readdirSync(join(root, 'examples'), { recursive: true })
    .map(String)
    // examples/grafana holds a Grafana dashboard, not a configuration (control's grafana.test.ts checks it).
    .filter((name) => /\.(toml|ya?ml|json)$/.test(name) && !name.startsWith('grafana'));
  assert.ok(files.length >= 6, `found ${files.length} examples`);
  for (const name of files) {
    const config = await loadConfig(join(root, 'examples', name));
    const services = config.proxies.length + config.servers.length + config.streams.length + (config.tunnel.server ? 1 : 0) + config.tunnel.clients.length;
    assert.ok(services > 0, `${name} defines no service`);
  }
});

test('the embedded default is the mixed forward proxy on 127.0.0.1:8090 and the control API on 127.0.0.1:8837', () => {
  const config = defaultConfig();
  assert.deepEqual(config.proxies.map((proxy) => [proxy.listen, proxy.protocols]), [[['127.0.0.1:8090'], ['http', 'https', 'socks5']]]);
  assert.equal(config.control.listen, '127.0.0.1:8837');
  assert.equal(config.control.enabled, true);
});

test('a forward proxy reachable from other hosts is kept off this host\'s loopback unless told otherwise', () => {
  const deny = (proxy: string) => parseConfig(`[[proxy]]\n${proxy}\n`, 'toml', 'deny.toml').proxies[0]!.denyDestinations;
  assert.deepEqual(deny('listen = "0.0.0.0:8090"\nusers = { a = "b" }'), [...DEFAULT_DENY_DESTINATIONS], 'the control API listens there without a token');
  assert.deepEqual(deny('listen = ["127.0.0.1:8090", "10.0.0.5:8090"]\nallow = ["10.0.0.0/8"]'), [...DEFAULT_DENY_DESTINATIONS]);
  assert.deepEqual(deny('listen = "127.0.0.1:8090"'), [], 'local clients reach loopback anyway');
  assert.deepEqual(deny('listen = "0.0.0.0:8090"\nusers = { a = "b" }\ndeny_destinations = []'), [], 'an explicit empty list allows it');
  assert.deepEqual(deny('listen = "0.0.0.0:8090"\nusers = { a = "b" }\ndeny_destinations = ["10.1.0.0/16"]'), ['10.1.0.0/16']);
});

test('every upstream server is checked with TCP by default; a configured check replaces it; false switches it off', () => {
  const config = parseConfig(
    `
[control]
enabled = false
[[upstream]]
name = "plain"
servers = ["127.0.0.1:1"]
[[upstream]]
name = "http"
servers = ["127.0.0.1:2"]
health_check = { type = "http", path = "/healthz", interval = "500ms", timeout = "200ms", expect_status = "200-299" }
[[upstream]]
name = "off"
servers = ["127.0.0.1:3"]
health_check = false
[[stream]]
listen = "127.0.0.1:0"
upstream = "plain"
`,
    'toml',
  );
  const [plain, http, off] = config.upstreams;
  assert.deepEqual(plain!.health, { check: { type: 'tcp' } });
  assert.deepEqual(upstreamTargets(config)[1], { check: { type: 'http', path: '/healthz', expectStatus: '200-299' }, intervalMs: 500, timeoutMs: 200, address: '127.0.0.1:2', pool: 'http' });
  assert.deepEqual(http!.health, { check: { type: 'http', path: '/healthz', expectStatus: '200-299' }, intervalMs: 500, timeoutMs: 200 });
  assert.deepEqual(off!.health, { check: null });
});

test('a gRPC health check: type grpc/grpcs with a service; options of other types refused with their key paths', () => {
  const config = parseConfig(
    `
[control]
enabled = false
[[upstream]]
name = "api"
servers = ["127.0.0.1:50051"]
health_check = { type = "grpc", service = "my.pkg.Users", interval = "1s" }
[[upstream]]
name = "secure"
servers = ["127.0.0.1:50052"]
health_check = { type = "grpcs", host = "api.example.test", tls_verify = false }
[[stream]]
listen = "127.0.0.1:0"
upstream = "api"
`,
    'toml',
  );
  assert.deepEqual(config.upstreams[0]!.health, { check: { type: 'grpc', service: 'my.pkg.Users' }, intervalMs: 1000 });
  assert.deepEqual(config.upstreams[1]!.health, { check: { type: 'grpcs', authority: 'api.example.test', tlsVerify: false } });
  assert.deepEqual(upstreamTargets(config)[0], { check: { type: 'grpc', service: 'my.pkg.Users' }, intervalMs: 1000, address: '127.0.0.1:50051', pool: 'api' });
  const error = issuesOf(() =>
    parseConfig(
      `[[upstream]]\nname = "a"\nservers = ["127.0.0.1:1"]\nhealth_check = { type = "grpc", path = "/x", tls_verify = true, service = "bad\\u0001" }\n[[upstream]]\nname = "b"\nservers = ["127.0.0.1:2"]\nhealth_check = { type = "http", service = "x" }\n`,
      'toml',
      'grpc.toml',
    ),
  );
  assert.deepEqual(error.issues.map((issue) => issue.path).sort(), ['upstream[0].health_check.service', 'upstream[1].health_check.service']);
  const mixed = issuesOf(() =>
    parseConfig(`[[upstream]]\nname = "a"\nservers = ["127.0.0.1:1"]\nhealth_check = { type = "grpc", path = "/x", tls_verify = true }\n`, 'toml', 'grpc.toml'),
  );
  assert.deepEqual(mixed.issues.map((issue) => [issue.path, issue.expected]).sort(), [
    ['upstream[0].health_check.path', 'not an option of a grpc check (service, host, tls_verify)'],
    ['upstream[0].health_check.tls_verify', 'no TLS in a grpc check (set type = "grpcs")'],
  ]);
});

test('an upstream server with protocol = "h2" resolves to HTTP/2; anything else is refused with its key path', () => {
  const config = parseConfig(
    `[control]\nenabled = false\n[[upstream]]\nname = "a"\nservers = [{ address = "127.0.0.1:1", protocol = "h2" }, { address = "127.0.0.1:2", protocol = "http/1.1" }, "127.0.0.1:3"]\n[[stream]]\nlisten = "127.0.0.1:0"\nupstream = "a"\n`,
    'toml',
  );
  const [h2, h1, plain] = config.upstreams[0]!.servers;
  assert.equal(h2!.protocol, 'h2');
  assert.equal(h1!.protocol, undefined);
  assert.equal(plain!.protocol, undefined);
  const error = issuesOf(() => parseConfig(`[[upstream]]\nname = "a"\nservers = [{ address = "127.0.0.1:1", protocol = "h3" }]\n`, 'toml', 'h3.toml'));
  assert.deepEqual(error.issues.map((issue) => issue.path), ['upstream[0].servers[0].protocol']);
});

test('header rules inherit from [reverse] to servers to locations, outer rules first', () => {
  const config = parseConfig(
    `
[control]
enabled = false
[reverse]
request_headers = ["set X-Real-IP {client_ip}"]
[[upstream]]
name = "a"
servers = ["127.0.0.1:1"]
[[server]]
listen = "127.0.0.1:0"
request_headers = ["+ X-Server one"]
response_headers = ["- Server"]
[[server.location]]
path = "/"
upstream = "a"
request_headers = [{ op = "add_if_missing", name = "X-Loc", value = "two" }]
`,
    'toml',
  );
  const location = config.servers[0]!.locations[0]!;
  assert.deepEqual(location.requestHeaders, [
    { op: 'set', name: 'X-Real-IP', value: '{client_ip}' },
    { op: 'add', name: 'X-Server', value: 'one' },
    { op: 'add_if_missing', name: 'X-Loc', value: 'two' },
  ]);
  assert.deepEqual(location.responseHeaders, [{ op: 'remove', name: 'Server' }]);
});

test('rate limits (server and location), the body replay buffer and DNS re-resolution settings', () => {
  const config = parseConfig(
    `
[control]
enabled = false
[reverse]
retry_body_buffer = "128k"
resolve_ttl = "20s"
resolve_min_ttl = "2s"
resolve_max_ttl = "10m"
resolve_record_ttl = true
[[upstream]]
name = "a"
servers = ["127.0.0.1:1"]
[[server]]
listen = "127.0.0.1:0"
rate_limit = { rate = "100r/s", burst = 20 }
[[server.location]]
path = "/"
upstream = "a"
[[server.location]]
path = "/api"
upstream = "a"
rate_limit = { rate = "6000r/m", key = "header:X-Api-Key", status = 429, max_keys = 1000, max_in_flight = 50 }
[[server.location]]
path = "/health"
upstream = "a"
rate_limit = false
`,
    'toml',
  );
  assert.equal(config.reverse.retries.bodyBuffer, 131_072);
  assert.deepEqual(config.reverse.dns, { ttlMs: 20_000, minTtlMs: 2_000, maxTtlMs: 600_000, recordTtl: true, servers: [] });
  const server = config.servers[0]!;
  assert.deepEqual(server.rateLimit, { rate: '100r/s', burst: 20 });
  assert.equal(server.locations[0]!.rateLimit, undefined, 'inherits the server limit');
  assert.deepEqual(server.locations[1]!.rateLimit, { rate: '6000r/m', key: 'header:X-Api-Key', status: 429, maxKeys: 1000, maxInFlight: 50 });
  assert.equal(server.locations[2]!.rateLimit, false);
  const defaults = parseConfig('[control]\nenabled = false\n', 'toml');
  assert.equal(defaults.reverse.retries.bodyBuffer, 65_536);
  assert.deepEqual(defaults.reverse.dns, { ttlMs: 30_000, minTtlMs: 1_000, maxTtlMs: 300_000, recordTtl: false, servers: [] });
  const bad = issuesOf(() =>
    parseConfig('[control]\nenabled = false\n[[upstream]]\nname = "a"\nservers = ["127.0.0.1:1"]\n[[server]]\nlisten = "127.0.0.1:0"\nrate_limit = { rate = "fast", burst = 1 }\n[[server.location]]\nupstream = "a"\n[[server.location]]\npath = "/x"\nupstream = "a"\nrate_limit = { burst = 1 }\n', 'toml'),
  );
  assert.match(bad.message, /server\[0\]\.rate_limit\.rate: expected a rate such as 100r\/s/);
  assert.match(bad.message, /server\[0\]\.location\[1\]\.rate_limit: expected a `rate` or a `max_in_flight` above 0/);
});

const ORIGINAL = `
control = "127.0.0.1:8838"
disable_stdout = true
[proxy]
bind_addr = "0.0.0.0:8090"
flag = "5"
username = "wm"
password = "secret"
udp_bind = "127.0.0.1"
map_http_bind = "127.0.0.1:8001"

[[http.upstream]]
name = "backend"
server = [
  { addr = "127.0.0.1:8080", weight = 3, fall_times = 4, rise_times = 1, fail_timeout = 20 },
  { addr = "127.0.0.1:8081" },
]

[[http.server]]
bind_addr = "127.0.0.1:8082"
server_name = "a.test b.test"
headers = [["proxy", "x-forward-for", "{client_ip}"], ["-", "server"], "proxy + x-via 'wm proxy'"]
rate_limit_nums = 4

[[http.server.location]]
rule = "/"
reverse_proxy = "http://backend"
method = "get"

[[http.server.location]]
rule = "/ext"
reverse_proxy = "https://example.test"

[[stream.server]]
bind_addr = "127.0.0.1:8083"
up_name = "tcpup"
upstream = [{ name = "tcpup", server = [{ addr = "127.0.0.1:9000" }] }]

[[stream.server]]
bind_addr = "127.0.0.1:8084"
bind_mode = "ws2tcp"
proxy_url = "127.0.0.1:5900"

[[stream.server]]
bind_addr = "127.0.0.1:8085"
bind_mode = "ws2tcp"
up_name = "tcpup"

[[stream.server]]
bind_addr = "127.0.0.1:8086"
bind_mode = "tcp2wss"
proxy_url = "gw.test:443/ssh?h=a"
domain = "gw.test"
`;

test('converts the original wmproxy format, with a warning for each key without an equivalent', () => {
  const { config, warnings } = convertOriginal(parseText(ORIGINAL, 'toml', 'original.toml'));
  assert.deepEqual(config.control, { listen: '127.0.0.1:8838' });
  assert.deepEqual(config.proxy, [{ listen: '0.0.0.0:8090', protocols: ['http', 'socks5'], users: { wm: 'secret' }, udp_bind: '127.0.0.1' }]);
  // fall_times, rise_times and fail_timeout become the passive checks.
  assert.deepEqual(config.health, { rise: 1, passive: { consecutive_failures: 4, window: '20s', ejection_time: '20s' } });
  const upstreams = Object.fromEntries((config.upstream ?? []).map((upstream) => [upstream.name, upstream.servers]));
  assert.deepEqual(upstreams.backend, [{ address: '127.0.0.1:8080', weight: 3 }, '127.0.0.1:8081']);
  assert.deepEqual(upstreams['example.test'], [{ address: 'example.test:443', tls: true }]);
  assert.deepEqual(upstreams.tcpup, ['127.0.0.1:9000']);
  const server = config.server![0]!;
  assert.deepEqual(server.server_name, ['a.test', 'b.test']);
  assert.deepEqual(server.request_headers, ['set x-forward-for {client_ip}', 'add x-via wm proxy']);
  assert.deepEqual(server.response_headers, ['remove server']);
  assert.deepEqual(server.location[0], { path: '/', methods: ['GET'], upstream: 'backend' });
  assert.deepEqual(config.stream, [{ listen: '127.0.0.1:8083', upstream: 'tcpup' }]);
  // bind_mode ws2tcp / tcp2wss: WebSocket bridges, to a fixed target, an upstream group, or a URL with its path kept.
  assert.deepEqual(config.ws_proxy, [
    { mode: 'ws2tcp', listen: '127.0.0.1:8084', target: '127.0.0.1:5900' },
    { mode: 'ws2tcp', listen: '127.0.0.1:8085', upstream: 'tcpup' },
    { mode: 'tcp2wss', listen: '127.0.0.1:8086', url: 'wss://gw.test:443/ssh?h=a', server_name: 'gw.test', host: 'gw.test' },
  ]);
  const keys = warnings.map((warning) => warning.split(':')[0]);
  assert.ok(!keys.some((key) => key.endsWith('bind_mode')), `bind_mode is converted, not warned about: ${JSON.stringify(warnings)}`);
  for (const key of ['disable_stdout', 'proxy.map_http_bind', 'http.server[0].rate_limit_nums']) {
    assert.ok(keys.includes(key), `no warning for ${key} in ${JSON.stringify(warnings)}`);
  }
});

test('loads a file in the original format directly, converted with its warnings', () => {
  const dir = join(scratch, 'original');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'wmproxy.toml');
  writeFileSync(file, ORIGINAL);
  const config = loadConfigSync(file);
  assert.equal(config.control.listen, '127.0.0.1:8838');
  assert.deepEqual(config.health.passive, { consecutiveFailures: 4, windowMs: 20_000, baseEjectionMs: 20_000 });
  assert.equal(config.servers[0]!.locations[0]!.upstream, 'backend');
  assert.ok(config.warnings.every((warning) => warning.startsWith(`${file}: `)));
  assert.ok(config.warnings.length >= 3);
  assert.throws(() => loadConfigSync(file, { noConvert: true }), /original wmproxy format/);
});

test('the converted text is a valid configuration in every format', () => {
  const { config } = convertOriginal(parseText(ORIGINAL, 'toml', 'original.toml'));
  for (const format of ['toml', 'yaml', 'json'] as const) {
    const text = stringifyConfig(config, format);
    const loaded = parseConfig(text, format, `converted.${format}`);
    assert.equal(loaded.proxies[0]!.listen[0], '0.0.0.0:8090');
    assert.equal(loaded.warnings.length, 0);
  }
});

test('redaction hides passwords, tokens and credentials in URLs', () => {
  const config = parseConfig(
    `[control]\nlisten = "127.0.0.1:0"\ntoken = "secret-token"\n[[proxy]]\nlisten = "127.0.0.1:0"\nusers = { alice = "pw" }\nparent = "http://u:p@127.0.0.1:3128"\n`,
    'toml',
  );
  const redacted = redactConfig(config.source);
  const text = JSON.stringify(redacted);
  assert.ok(!text.includes('secret-token') && !text.includes('"pw"') && !text.includes('u:p@'));
  assert.equal(redacted.control!.token, REDACTED);
  assert.equal(config.source.control!.token, 'secret-token');
});

test('wmproxy.schema.json is the schema the code validates with', () => {
  const committed = readFileSync(join(root, 'wmproxy.schema.json'), 'utf8');
  assert.equal(committed, jsonSchemaText(), 'regenerate with: wmproxy schema > wmproxy.schema.json');
  const schema = JSON.parse(committed) as { properties: Record<string, { description?: string }> };
  for (const key of ['proxy', 'upstream', 'server', 'stream', 'control', 'log', 'health', 'workers']) {
    assert.ok(schema.properties[key]?.description, `${key} has a description`);
  }
  assert.ok(relative(root, join(root, 'wmproxy.schema.json')));
});

test('service names are unique across proxies, servers and streams', () => {
  const error = issuesOf(() =>
    parseConfig(
      `[control]\nenabled = false\n[[proxy]]\nname = "edge"\nlisten = "127.0.0.1:0"\n[[upstream]]\nname = "a"\nservers = ["127.0.0.1:1"]\n[[stream]]\nname = "edge"\nlisten = "127.0.0.1:0"\nupstream = "a"\n`,
      'toml',
    ),
  );
  assert.deepEqual(error.issues.map((issue) => [issue.path, issue.expected]), [['stream[0].name', 'a name no other service has (proxy[0] is "edge")']]);
});

test('tunnel sections: defaults, map specs and tables, and errors with key paths', () => {
  const config = parseConfig(
    [
      '[tunnel.server]',
      'token = "0123456789abcdef"',
      'allow_ports = ["15000-15999", 18090]',
      'max_connections_per_ip = 16',
      'data_pool = 8',
      'data_max_busy = 4',
      'data_promote_bytes = "1m"',
      'max_handshakes = 100',
      'max_handshakes_per_ip = 10',
      'auth_penalty = { allowance = 0, first = "5s", max = "1m", exempt = ["10.0.0.0/8", "::1"] }',
      '[[tunnel.client]]',
      'server = "tunnel.example.com:7000"',
      'token = "0123456789abcdef"',
      'fingerprint = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"',
      'mappings = ["db=tcp:127.0.0.1:5432:15432,proxy-protocol=v1", { name = "out", kind = "proxy", remote_port = 18090 }]',
      'proxy_users = { ann = "pw" }',
      'proxy_allow = ["203.0.113.0/24"]',
      '[[tunnel.client]]',
      'server = "tunnel.example.com:7000"',
      'token = "0123456789abcdef"',
      'fingerprint = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"',
      '[[tunnel.client.mappings]]',
      'name = "web"',
      'kind = "http"',
      'local = "127.0.0.1:8080"',
      'domains = ["app.example.com"]',
      'basic_auth = { alice = "wonder" }',
      'basic_auth_realm = "staff"',
      'request_headers = ["set X-Tunnel {client_ip}"]',
      'response_headers = ["- Server"]',
    ].join('\n'),
    'toml',
    '/etc/wmproxy/tunnel.toml',
  );
  const server = config.tunnel.server!;
  assert.equal(server.listen, '127.0.0.1:7000');
  assert.equal(server.tls, 'self-signed');
  assert.equal(server.stateDir, '/etc/wmproxy/tunnel-state');
  assert.equal(server.heartbeatMs, 10_000);
  assert.equal(server.maxConnectionsPerIp, 16);
  assert.equal(server.dataPool, 8);
  assert.equal(server.dataMaxBusy, 4);
  assert.equal(server.dataPromoteBytes, 1024 * 1024);
  assert.equal(server.maxHandshakes, 100);
  assert.deepEqual(server.authPenalty, { allowance: 0, firstMs: 5_000, maxMs: 60_000, exempt: ['10.0.0.0/8', '::1'] });
  assert.equal(server.maxHandshakesPerIp, 10);
  assert.equal(server.maxConnections, 0);
  assert.deepEqual(server.allowPorts, [{ from: 15000, to: 15999 }, { from: 18090, to: 18090 }]);
  const [client, web] = config.tunnel.clients;
  assert.equal(client!.service, 'tunnel-client-0');
  assert.deepEqual(web!.mappings, [
    {
      name: 'web',
      kind: 'http',
      localHost: '127.0.0.1',
      localPort: 8080,
      domains: ['app.example.com'],
      basicAuth: { users: { alice: 'wonder' }, realm: 'staff' },
      requestHeaders: [{ op: 'set', name: 'X-Tunnel', value: '{client_ip}' }],
      responseHeaders: [{ op: 'remove', name: 'Server' }],
    },
  ]);
  assert.deepEqual(client!.tls, { fingerprint: 'SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU' });
  assert.deepEqual(client!.mappings, [
    { name: 'db', kind: 'tcp', localHost: '127.0.0.1', localPort: 5432, remotePort: 15432, proxyProtocol: 1 },
    { name: 'out', kind: 'proxy', remotePort: 18090 },
  ]);
  assert.deepEqual(client!.proxy, { users: { ann: 'pw' }, allow: ['203.0.113.0/24'] });
  assert.equal(client!.openProxy, false);
  assert.equal(web!.proxy, undefined);
  assert.throws(
    () =>
      parseConfig(
        [
          '[tunnel.server]',
          'allow_ports = ["9-1"]',
          '[[tunnel.client]]',
          'server = "nohost"',
          'token = "0123456789abcdef"',
          'fingerprint = "nope"',
          'mappings = ["db=tcp:127.0.0.1:5432", "db=tcp:127.0.0.1:5432:1", "db=tcp:127.0.0.1:5432:2", { name = "t", kind = "tcp", local = "127.0.0.1:1", remote_port = 15001, basic_auth = { a = "b" } }, "out=proxy::18090"]',
        ].join('\n'),
        'toml',
        'bad.toml',
      ),
    (error: ConfigError) => {
      const paths = error.issues.map((issue) => issue.path);
      assert.ok(paths.includes('tunnel.server.token'), paths.join(' '));
      assert.ok(paths.includes('tunnel.server.allow_ports[0]'), paths.join(' '));
      assert.ok(paths.includes('tunnel.client[0].server'), paths.join(' '));
      assert.ok(paths.includes('tunnel.client[0].fingerprint'), paths.join(' '));
      assert.ok(paths.includes('tunnel.client[0].mappings[0]'), paths.join(' '));
      assert.ok(paths.includes('tunnel.client[0].mappings[2]'), paths.join(' '));
      // A proxy mapping with neither users nor an allow list would be an open proxy into the client's network.
      const open = error.issues.find((issue) => issue.path === 'tunnel.client[0].proxy_users');
      assert.match(open?.expected ?? '', /open proxy/);
      const tcpAuth = error.issues.find((issue) => issue.path === 'tunnel.client[0].mappings[3]');
      assert.match(tcpAuth?.found ?? '', /apply to http mappings/);
      return true;
    },
  );
});

test("the original's center tunnel keys become [tunnel.server] and [[tunnel.client]] with matching tokens", () => {
  const client = convertOriginal({
    proxy: {
      server: 'tunnel.example.com:8091',
      username: 'wm',
      password: 'secret-pass',
      ts: true,
      domain: 'tunnel.example.com',
      map_tcp_bind: '0.0.0.0:8089',
      mappings: [
        { name: 'web', mode: 'http', local_addr: '127.0.0.1:8080', domain: 'web.example.com', headers: ['proxy x-real-ip {client_ip}', '+ x-served-by tunnel', '- server'] },
        { name: 'ssh', mode: 'tcp', local_addr: '127.0.0.1:22' },
      ],
    },
  });
  assert.ok(!client.warnings.some((warning) => warning.includes('headers')), 'http mapping headers are converted, not warned about');
  const server = convertOriginal({ proxy: { center_addr: '0.0.0.0:8091', username: 'wm', password: 'secret-pass', tc: true, map_tcp_bind: '0.0.0.0:8089' } });
  const tunnelClient = (client.config as { tunnel: { client: Record<string, unknown> } }).tunnel.client;
  const tunnelServer = (server.config as { tunnel: { server: Record<string, unknown> } }).tunnel.server;
  assert.equal(tunnelClient.token, tunnelServer.token);
  assert.equal(tunnelClient.servername, 'tunnel.example.com');
  assert.deepEqual(tunnelClient.mappings, [
    {
      name: 'web',
      kind: 'http',
      local: '127.0.0.1:8080',
      domains: ['web.example.com'],
      request_headers: ['set x-real-ip {client_ip}'],
      response_headers: ['add x-served-by tunnel', 'remove server'],
    },
    { name: 'ssh', kind: 'tcp', local: '127.0.0.1:22', remote_port: 8089 },
  ]);
  assert.deepEqual(tunnelServer, { listen: '0.0.0.0:8091', token: 'wm:secret-pass', allow_ports: [8089], public_host: '0.0.0.0' });
  // Without TLS in the original: converted faithfully, with a warning.
  const plain = convertOriginal({ proxy: { center_addr: '127.0.0.1:8091', username: 'wm', password: 'secret-pass' } });
  assert.equal((plain.config as { tunnel: { server: { plain?: boolean } } }).tunnel.server.plain, true);
  assert.ok(plain.warnings.some((warning) => warning.includes('proxy.tc')));
  // A proxy mapping exposes the client side's proxy, which asks for the original's username and password: never open.
  const proxied = convertOriginal({ proxy: { server: 'h:1', username: 'wm', password: 'secret-pass', map_proxy_bind: '0.0.0.0:18090', mappings: [{ name: 'out', mode: 'proxy' }] } });
  assert.deepEqual((proxied.config as { tunnel: { client: { proxy_users?: unknown } } }).tunnel.client.proxy_users, { wm: 'secret-pass' });
  // A tcp mapping whose public port is not in the file is an error, not a guess.
  assert.throws(() => convertOriginal({ proxy: { server: 'h:1', username: 'a', password: 'b', mappings: [{ name: 'x', mode: 'tcp', local_addr: '127.0.0.1:1' }] } }), /map_tcp_bind/);
});

test('[reverse.tracing] resolves with the package defaults; otlp only with an endpoint; a bad ratio, exporter or endpoint names its key; export headers are redacted', () => {
  const base = '[[upstream]]\nname = "app"\nservers = ["127.0.0.1:1"]\n[[server]]\nlisten = "127.0.0.1:0"\n[[server.location]]\npath = "/"\nupstream = "app"\n';
  assert.deepEqual(parseConfig(base, 'toml').reverse.tracing, { enabled: false, sampleRatio: 1, serviceName: 'wmproxy', exporter: 'wmproxy' });
  const on = parseConfig(`${base}[reverse.tracing]\nenabled = true\nsample_ratio = 0.25\notlp_endpoint = "http://127.0.0.1:4318/v1/traces"\notlp_headers = { "x-api-key" = "k-123" }\notlp_interval = "2s"\n`, 'toml');
  assert.deepEqual(on.reverse.tracing, {
    enabled: true,
    sampleRatio: 0.25,
    serviceName: 'wmproxy',
    exporter: 'wmproxy',
    otlp: { endpoint: 'http://127.0.0.1:4318/v1/traces', headers: { 'x-api-key': 'k-123' }, queueSize: 2048, batchSize: 512, intervalMs: 2000, timeoutMs: 10_000 },
  });
  assert.ok(!JSON.stringify(redactConfig(on.source)).includes('k-123'), 'the API key is redacted');
  assert.equal(parseConfig(`${base}[reverse.tracing]\nenabled = true\nexporter = "otel"\n`, 'toml').reverse.tracing.exporter, 'otel');
  const bad = issuesOf(() => parseConfig(`${base}[reverse.tracing]\nsample_ratio = 2\notlp_endpoint = "udp://x"\nexporter = "jaeger"\n`, 'toml'));
  const paths = bad.issues.map((issue) => issue.path);
  const exporterIssue = bad.issues.find((issue) => issue.path === 'reverse.tracing.exporter');
  assert.equal(exporterIssue?.expected, 'one of "wmproxy", "otel"', JSON.stringify(bad.issues));
  assert.ok(paths.includes('reverse.tracing.sample_ratio'), paths.join(', '));
  assert.ok(paths.includes('reverse.tracing.otlp_endpoint'), paths.join(', '));
});
