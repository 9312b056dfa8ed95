// Properties of the configuration loaders (native and original format) and
// of the unit parsers, checked on generated input with fast-check. Runs are
// bounded (a few hundred cases each) so that the file takes a few seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  buildConfig,
  ConfigError,
  convertOriginal,
  DurationError,
  formatDuration,
  jsonSchema,
  parseDuration,
  MAX_DURATION_MS,
  parseSize,
  parseText,
  SizeError,
  stringifyConfig,
  type ConfigFile,
  type ConfigIssue,
  type WmproxyConfig,
} from '../src/index.js';

const RUNS = 300;
const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-config-props-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
mkdirSync(join(scratch, 'public'));
writeFileSync(join(scratch, 'cert.pem'), '');
writeFileSync(join(scratch, 'key.pem'), '');

type Segment = string | number;
type Json = unknown;

/** `a.b[0]["x y"]` → ['a', 'b', 0, 'x y'] (the inverse of errors.ts joinPath). */
function segmentsOf(path: string): Segment[] {
  const segments: Segment[] = [];
  const pattern = /(?:^|\.)([A-Za-z_$][\w$-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/gy;
  let at = 0;
  while (at < path.length) {
    pattern.lastIndex = at;
    const match = pattern.exec(path);
    assert.ok(match, `not a key path: ${JSON.stringify(path)}`);
    segments.push(match[1] ?? (match[2] !== undefined ? Number(match[2]) : (JSON.parse(match[3]!) as string)));
    at = pattern.lastIndex;
  }
  return segments;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The value at `segments`, or `missing` (with whether its parent is a table, for an error about a missing required key). */
function lookup(data: Json, segments: Segment[]): { found: boolean; parentIsTable: boolean } {
  let node: unknown = data;
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    const container = node;
    if (typeof segment === 'number' ? Array.isArray(container) && segment < container.length : isPlainObject(container) && Object.hasOwn(container, segment)) {
      node = (container as Record<string | number, unknown>)[segment];
    } else return { found: false, parentIsTable: i === segments.length - 1 && isPlainObject(container) };
  }
  return { found: true, parentIsTable: false };
}

/** Every issue names a key of the input, or a missing key of a table of the input (a required key). */
function assertPathsExist(issues: readonly ConfigIssue[], data: Json): void {
  for (const issue of issues) {
    if (issue.path === '') continue;
    const { found, parentIsTable } = lookup(data, segmentsOf(issue.path));
    assert.ok(found || (parentIsTable && issue.found.startsWith('nothing')), `issue at ${issue.path} is not in the input: ${JSON.stringify(issue)}\n${JSON.stringify(data)}`);
  }
}

/** buildConfig, which may only fail with a ConfigError. */
function load(data: Json, file = '<props>'): { config?: WmproxyConfig; issues: ConfigIssue[] } {
  try {
    return { config: buildConfig(structuredClone(data), file, { baseDir: scratch }), issues: [] };
  } catch (error) {
    if (error instanceof ConfigError) return { issues: error.issues };
    throw error;
  }
}

function setPath(data: Record<string, unknown>, segments: readonly Segment[], value: unknown): void {
  let node: Record<string | number, unknown> = data;
  for (let i = 0; i < segments.length - 1; i++) {
    const segment = segments[i]!;
    const next = segments[i + 1]!;
    const child = node[segment];
    if (typeof next === 'number' ? !Array.isArray(child) : !isPlainObject(child)) node[segment] = typeof next === 'number' ? [] : {};
    node = node[segment] as Record<string | number, unknown>;
  }
  const last = segments[segments.length - 1]!;
  if (value === undefined) {
    if (Array.isArray(node) && typeof last === 'number') node.splice(last, 1);
    else delete node[last];
  } else node[last] = value;
}

/** What a user might put anywhere: JSON values, and strings that look like the values the loaders expect. */
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(
    undefined,
    null,
    '',
    ' ',
    '0',
    '-1',
    '10s',
    '2min',
    '1e400',
    '999999999999999999999d',
    '64k',
    '127.0.0.1:0',
    '0.0.0.0:8090',
    ':8090',
    '[::1]:0',
    'http://app',
    '/',
    '~ (',
    '@named',
    'proxy + x-a b',
    '10.0.0.0/8',
    'app',
    'GET',
    0,
    -1,
    1.5,
    65536,
    Number.MAX_SAFE_INTEGER,
    true,
    [],
    {},
    ['a'],
    [1],
    [{}],
  ),
);

// ---------------------------------------------------------------- native format

/** Key paths of the native schema, with index 0 for lists (from the published JSON Schema). */
function schemaPaths(): Segment[][] {
  const out: Segment[][] = [];
  const walk = (schema: Record<string, unknown>, path: Segment[], depth: number) => {
    if (depth > 6) return;
    const variants = Array.isArray(schema.anyOf) ? (schema.anyOf as Array<Record<string, unknown>>) : [schema];
    for (const variant of variants) {
      if (isPlainObject(variant.properties)) {
        for (const [key, child] of Object.entries(variant.properties as Record<string, Record<string, unknown>>)) {
          out.push([...path, key]);
          walk(child, [...path, key], depth + 1);
        }
      }
      if (isPlainObject(variant.items)) walk(variant.items as Record<string, unknown>, [...path, 0], depth + 1);
    }
  };
  walk(jsonSchema(), [], 0);
  return out;
}
const NATIVE_PATHS = schemaPaths();

const nativeBase = (): Record<string, unknown> => ({
  control: { enabled: false },
  proxy: [{ name: 'p', listen: '127.0.0.1:0', users: { u: 'pw' } }],
  upstream: [{ name: 'app', servers: ['127.0.0.1:3000', { address: '127.0.0.1:3001', weight: 2 }] }],
  server: [{ listen: '127.0.0.1:0', location: [{ path: '/', upstream: 'app' }, { path: '/s', static: { root: 'public' } }] }],
  stream: [{ listen: '127.0.0.1:0', upstream: 'app' }],
});

test('native loader: any value at any known key gives a configuration or a ConfigError naming keys of the input', () => {
  assert.ok(NATIVE_PATHS.length > 100, `only ${NATIVE_PATHS.length} key paths found in the schema`);
  const mutation = fc.tuple(fc.constantFrom(...NATIVE_PATHS), anyValue);
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (mutations) => {
      const data = nativeBase();
      for (const [path, value] of mutations) setPath(data, path, value);
      const { issues } = load(data);
      assertPathsExist(issues, data);
    }),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------- original format

const originalBase = (): Record<string, unknown> => ({
  control: '127.0.0.1:8837',
  proxy: { bind_addr: '127.0.0.1:8090', flag: 7, username: 'u', password: 'pw', udp_bind: '127.0.0.1' },
  http: {
    proxy_connect_timeout: '10s',
    log_names: { access: 'logs/access.log trace' },
    access_log: 'access main',
    upstream: [{ name: 'app', server: [{ addr: '127.0.0.1:3000', weight: 2, fall_times: 2, rise_times: 1, fail_timeout: 30 }, { addr: '127.0.0.1:3001' }] }],
    server: [
      {
        bind_addr: '127.0.0.1:0',
        server_name: 'a.test b.test',
        root: 'public',
        headers: ['proxy x-real-ip {client_ip}', '+ x-served-by wmproxy', ['-', 'server']],
        location: [
          { rule: '/', up_name: 'app', method: 'GET' },
          { rule: '/files', file_server: { browse: true, index: ['index.html'], hide: ['.git'] } },
          { rule: '/ok', static_response: 'ok' },
          { rule: { path: '/ext', method: 'get post', client_ip: '127.0.0.1 10.0.0.0/8' }, reverse_proxy: 'http://127.0.0.1:3002' },
        ],
      },
    ],
  },
  stream: {
    upstream: [{ name: 'tcp', server: [{ addr: '127.0.0.1:9000' }] }],
    server: [{ bind_addr: '127.0.0.1:0', up_name: 'tcp', timeout: '10s' }],
  },
});

/** Every key the original-format loader reads, and a few it warns about or does not know. */
const ORIGINAL_PATHS: Segment[][] = [
  ['control'],
  ['disable_control'],
  ['disable_stdout'],
  ['default_level'],
  ['pidfile'],
  ['bind_addr'],
  ['frobnicate'],
  ['proxy'],
  ...['bind_addr', 'bind', 'flag', 'username', 'password', 'udp_bind', 'center', 'usename'].map((key) => ['proxy', key]),
  ['http'],
  ...['proxy_connect_timeout', 'proxy_read_timeout', 'client_ka_timeout', 'access_log', 'error_log', 'log_names', 'allow_ip', 'max_read_buf', 'upstream', 'server', 'limit_req_zone'].map((key) => ['http', key]),
  ['http', 'log_names', 'access'],
  ['http', 'upstream', 0],
  ...['name', 'server', 'bind'].map((key) => ['http', 'upstream', 0, key]),
  ['http', 'upstream', 0, 'server', 0],
  ...['addr', 'weight', 'fall_times', 'rise_times', 'fail_timeout', 'status'].map((key) => ['http', 'upstream', 0, 'server', 1, key]),
  ['http', 'server', 0],
  ...['bind_addr', 'server_name', 'cert', 'key', 'root', 'up_name', 'headers', 'location', 'upstream', 'proxy_read_timeout', 'deny_ip', 'limit_req', 'bind_ssl'].map((key) => ['http', 'server', 0, key]),
  ['http', 'server', 0, 'headers', 1],
  ['http', 'server', 0, 'location', 0],
  ['http', 'server', 0, 'location', 4],
  ...['rule', 'up_name', 'method', 'headers', 'reverse_proxy', 'proxy_pass', 'proxy_url', 'file_server', 'root', 'static_response', 'is_ws', 'upstream', 'allow_ip', 'try_paths'].map((key) => ['http', 'server', 0, 'location', 0, key]),
  ...['path', 'method', 'client_ip', 'host', 'remote_ip'].map((key) => ['http', 'server', 0, 'location', 3, 'rule', key]),
  ...['root', 'browse', 'index', 'hide', 'path404', 'precompressed', 'cors', 'cache_time'].map((key) => ['http', 'server', 0, 'location', 1, 'file_server', key]),
  ['stream'],
  ['stream', 'upstream', 0, 'name'],
  ['stream', 'upstream', 0, 'server'],
  ...['bind_addr', 'bind_mode', 'up_name', 'server_name', 'proxy_url', 'timeout', 'upstream', 'headers'].map((key) => ['stream', 'server', 0, key]),
];

test('original loader: any value at any key gives a configuration or a ConfigError naming keys of the original file, and never an open proxy', () => {
  const mutation = fc.tuple(fc.constantFrom(...ORIGINAL_PATHS), anyValue);
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (mutations) => {
      const data = originalBase();
      for (const [path, value] of mutations) setPath(data, path, value);
      const { config, issues } = load(data);
      assertPathsExist(issues, data);
      if (config?.source.proxy) {
        for (const proxy of config.source.proxy) {
          assert.equal(proxy.insecure_open, undefined, 'a conversion never sets insecure_open');
        }
      }
    }),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------- valid configurations round-trip

const port = fc.integer({ min: 1024, max: 65535 });
// Hours stay under MAX_DURATION_MS (24.8 days): longer durations are refused, as timers cannot wait that long.
const duration = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 3600 }), fc.constantFrom('ms', 's', 'm')),
  fc.tuple(fc.integer({ min: 1, max: 596 }), fc.constant('h')),
).map(([n, unit]) => `${n}${unit}`);
const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
const loopback = port.map((value) => `127.0.0.1:${value}`);

/** Valid original-format files: distinct ports, credentials wherever a proxy is public. */
const originalConfig = fc
  .record({
    proxy: fc.option(
      fc.record({
        public: fc.boolean(),
        flag: fc.constantFrom(1, 2, 3, 4, 5, 6, 7, 'http https', 'socks5', 'http https socks5'),
        // `${` starts an environment reference (env.ts), which a literal password would have to write as `$${`.
        credentials: fc.option(fc.tuple(name, fc.string({ minLength: 1, maxLength: 8 }).filter((password) => !password.includes('${')))),
        udp: fc.boolean(),
      }),
    ),
    upstreams: fc.uniqueArray(name, { minLength: 1, maxLength: 3 }),
    weights: fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 3 }),
    fall: fc.option(fc.integer({ min: 1, max: 10 })),
    failTimeout: fc.option(fc.oneof(fc.integer({ min: 1, max: 600 }), duration)),
    timeouts: fc.record({ proxy_connect_timeout: fc.option(duration), proxy_read_timeout: fc.option(fc.integer({ min: 1, max: 600 })), client_ka_timeout: fc.option(duration) }),
    locations: fc.array(fc.record({ rule: fc.constantFrom('/', '/api', '= /health', '~* \\.php$', 'static'), kind: fc.constantFrom('up_name', 'reverse_proxy', 'static_response', 'file_server'), method: fc.option(fc.constantFrom('GET', 'get post')) }), { maxLength: 4 }),
    headers: fc.array(fc.constantFrom('proxy x-real-ip {client_ip}', '+ x-a b', '- server', '? x-b c', 'x-c d'), { maxLength: 3 }),
    stream: fc.option(fc.record({ udp: fc.boolean(), timeout: fc.option(duration) })),
    ports: fc.uniqueArray(port, { minLength: 4, maxLength: 4 }),
  })
  .map((spec) => {
    const [proxyPort, serverPort, streamPort, controlPort] = spec.ports as [number, number, number, number];
    const data: Record<string, unknown> = { control: `127.0.0.1:${controlPort}` };
    if (spec.proxy) {
      const credentials = spec.proxy.public && !spec.proxy.credentials ? (['u', 'pw'] as const) : spec.proxy.credentials;
      data.proxy = {
        bind_addr: `${spec.proxy.public ? '0.0.0.0' : '127.0.0.1'}:${proxyPort}`,
        flag: spec.proxy.flag,
        ...(credentials ? { username: credentials[0], password: credentials[1] } : {}),
        ...(spec.proxy.udp ? { udp_bind: '127.0.0.1' } : {}),
      };
    }
    const servers = spec.weights.map((weight, index) => ({
      addr: `127.0.0.1:${3000 + index}`,
      weight,
      ...(index === 0 && spec.fall !== null ? { fall_times: spec.fall } : {}),
      ...(index === 0 && spec.failTimeout !== null ? { fail_timeout: spec.failTimeout } : {}),
    }));
    const timeouts = Object.fromEntries(Object.entries(spec.timeouts).filter(([, value]) => value !== null));
    const seen = new Set<string>();
    const locations = spec.locations
      .filter((location) => !seen.has(location.rule) && seen.add(location.rule))
      .map((location) => ({
        rule: location.rule,
        ...(location.method ? { method: location.method } : {}),
        ...(location.kind === 'up_name' ? { up_name: spec.upstreams[0] } : {}),
        ...(location.kind === 'reverse_proxy' ? { reverse_proxy: `http://${spec.upstreams[spec.upstreams.length - 1]}` } : {}),
        ...(location.kind === 'static_response' ? { static_response: '200 ok' } : {}),
        ...(location.kind === 'file_server' ? { file_server: { root: 'public', browse: true } } : {}),
      }));
    data.http = {
      ...timeouts,
      upstream: spec.upstreams.map((upstream) => ({ name: upstream, server: servers })),
      server: [{ bind_addr: `127.0.0.1:${serverPort}`, up_name: spec.upstreams[0], headers: spec.headers, location: locations }],
    };
    if (spec.stream) {
      data.stream = {
        upstream: [{ name: 'tcp', server: [{ addr: '127.0.0.1:9000' }] }],
        server: [{ bind_addr: `127.0.0.1:${streamPort}`, up_name: 'tcp', ...(spec.stream.udp ? { bind_mode: 'udp' } : {}), ...(spec.stream.timeout ? { timeout: spec.stream.timeout } : {}) }],
      };
    }
    return data;
  });

/** The resolved configuration, without what names the file. */
function resolved(config: WmproxyConfig): unknown {
  const { file: _file, warnings: _warnings, source: _source, ...rest } = config;
  return rest;
}

test('original loader: a valid file loads the same twice, and as its conversion in every format', () => {
  fc.assert(
    fc.property(originalConfig, fc.constantFrom('toml', 'yaml', 'json' as const), (data, format) => {
      const first = load(data, 'original.toml');
      assert.deepEqual(first.issues, [], JSON.stringify(data));
      const again = load(data, 'original.toml');
      assert.deepEqual(resolved(again.config!), resolved(first.config!));
      const { config } = convertOriginal(structuredClone(data));
      const text = stringifyConfig(config, format);
      const native = load(parseText(text, format, `converted.${format}`), `converted.${format}`);
      assert.deepEqual(native.issues, [], text);
      assert.deepEqual(resolved(native.config!), resolved(first.config!));
      assert.deepEqual(native.config!.warnings, []);
    }),
    { numRuns: 200 },
  );
});

test('native loader: a valid file loads the same twice and after a trip through every format', () => {
  const native = fc
    .record({
      upstreams: fc.uniqueArray(name, { minLength: 1, maxLength: 3 }),
      proxyTimeout: fc.option(duration),
      retries: fc.integer({ min: 1, max: 5 }),
      headerSize: fc.option(fc.oneof(fc.integer({ min: 1024, max: 1 << 20 }), fc.constantFrom('64k', '1m', '128K', '32kb'))),
      ports: fc.uniqueArray(port, { minLength: 3, maxLength: 3 }),
    })
    .map((spec): ConfigFile => ({
      control: { listen: `127.0.0.1:${spec.ports[2]}` },
      reverse: { retries: spec.retries, ...(spec.headerSize !== null ? { max_header_size: spec.headerSize } : {}) },
      proxy: [{ listen: `127.0.0.1:${spec.ports[0]}`, ...(spec.proxyTimeout ? { idle_timeout: spec.proxyTimeout } : {}) }],
      upstream: spec.upstreams.map((upstream, index) => ({ name: upstream, servers: [`127.0.0.1:${4000 + index}`] })),
      server: [{ listen: `127.0.0.1:${spec.ports[1]}`, location: spec.upstreams.map((upstream, index) => ({ path: index === 0 ? '/' : `/${upstream}/`, upstream })) }],
    }));
  fc.assert(
    fc.property(native, fc.constantFrom('toml', 'yaml', 'json' as const), (data, format) => {
      const first = load(data);
      assert.deepEqual(first.issues, []);
      assert.deepEqual(resolved(load(data).config!), resolved(first.config!));
      const trip = load(parseText(stringifyConfig(data, format), format, `trip.${format}`));
      assert.deepEqual(resolved(trip.config!), resolved(first.config!));
    }),
    { numRuns: 200 },
  );
});

// ---------------------------------------------------------------- units

const UNITS = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as const;
const SIZE_SCHEMA = new RegExp('^[0-9]+(\\.[0-9]+)?\\s*([kKmMgG]([iI]?[bB])?|[bB])?$');

test('sizes: every spelling of a unit gives the same bytes, and bigger numbers or units never give fewer', () => {
  const unit = fc.constantFrom('', 'k', 'm', 'g');
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1 << 20 }), unit, fc.constantFrom('', 'b', 'B', 'ib', 'iB', 'IB'), fc.boolean(), (n, u, suffix, upper) => {
      const spelled = `${n}${upper ? u.toUpperCase() : u}${u === '' && suffix.toLowerCase().startsWith('i') ? '' : suffix}`;
      assert.equal(parseSize(spelled), n * UNITS[u]);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1 << 20 }), fc.integer({ min: 0, max: 1 << 20 }), unit, unit, (a, b, u, v) => {
      const [small, big] = a <= b ? [a, b] : [b, a];
      assert.ok(parseSize(`${small}${u}`) <= parseSize(`${big}${u}`));
      const [lo, hi] = UNITS[u] <= UNITS[v] ? [u, v] : [v, u];
      assert.ok(parseSize(`${a}${lo}`) <= parseSize(`${a}${hi}`));
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.maxSafeNat(), (n) => {
      assert.equal(parseSize(n), n);
      assert.equal(parseSize(String(n)), n);
    }),
    { numRuns: RUNS },
  );
});

test('sizes: any input gives a safe number of bytes or a SizeError, and is accepted exactly when the schema accepts it', () => {
  const text = fc.oneof(
    fc.string({ maxLength: 12 }),
    fc.tuple(fc.stringMatching(/^[0-9]{1,30}(\.[0-9]{1,3})?$/), fc.constantFrom('', ' ', 'k', 'K', 'kb', 'KiB', 'ib', 'm', 'g', 'G', 't', 'b', 'bb', 'kk')).map(([n, u]) => `${n}${u}`),
  );
  fc.assert(
    fc.property(fc.oneof(text, fc.double(), fc.integer()), (input) => {
      let bytes: number | undefined;
      try {
        bytes = parseSize(input);
      } catch (error) {
        assert.ok(error instanceof SizeError, String(error));
      }
      if (bytes !== undefined) assert.ok(Number.isSafeInteger(bytes) && bytes >= 0, `${JSON.stringify(input)} → ${bytes}`);
      if (typeof input === 'string' && input === input.trim()) {
        // The schema is the gate of the configuration file; parseSize must not read what it refuses, nor refuse what it lets through (short of more bytes than a number holds).
        const schema = SIZE_SCHEMA.test(input);
        if (bytes !== undefined) assert.ok(schema, `parseSize reads ${JSON.stringify(input)}, which the schema refuses`);
        else if (schema) assert.ok(Number(/^[0-9.]+/.exec(input)![0]) * 1024 ** 3 > Number.MAX_SAFE_INTEGER, `parseSize refuses ${JSON.stringify(input)}, which the schema accepts`);
      }
    }),
    { numRuns: 500 },
  );
});

test('durations: parts add up, bigger numbers or units never give less, longer than a timer can wait is refused, and formatDuration reads back', () => {
  const part = fc.integer({ min: 0, max: 10_000 });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 400 }), part, part, part, (h, m, s, ms) => {
      assert.equal(parseDuration(`${h}h${m}m${s}s${ms}ms`), h * 3_600_000 + m * 60_000 + s * 1000 + ms);
      assert.equal(parseDuration(`${h}H${m}M`), parseDuration(`${h}h${m}m`));
    }),
    { numRuns: RUNS },
  );
  const unit = fc.constantFrom('ms', 's', 'm', 'h', 'd');
  const factor: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  /** The duration in ms, or undefined when it must be refused as too long. */
  const parsed = (n: number, u: string): number | undefined => {
    if (n * factor[u]! > MAX_DURATION_MS) {
      assert.throws(() => parseDuration(`${n}${u}`), /too long/);
      return undefined;
    }
    return parseDuration(`${n}${u}`);
  };
  fc.assert(
    fc.property(part, part, unit, unit, (a, b, u, v) => {
      const [small, big] = a <= b ? [a, b] : [b, a];
      const bigMs = parsed(big, u);
      if (bigMs !== undefined) assert.ok(parsed(small, u)! <= bigMs);
      const [lo, hi] = factor[u]! <= factor[v]! ? [u, v] : [v, u];
      const hiMs = parsed(a, hi);
      if (hiMs !== undefined) assert.ok(parsed(a, lo)! <= hiMs);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS - 86_400 }), (ms) => {
      const back = parseDuration(formatDuration(ms));
      // formatDuration keeps three decimals of its unit: exact below a minute, within 0.05 % above.
      if (ms < 60_000) assert.equal(back, ms);
      else assert.ok(Math.abs(back - ms) <= ms * 0.0005, `${ms} → ${formatDuration(ms)} → ${back}`);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 10 }), (input) => {
      try {
        const ms = parseDuration(input);
        assert.ok(Number.isFinite(ms) && ms >= 0, `${JSON.stringify(input)} → ${ms}`);
      } catch (error) {
        assert.ok(error instanceof DurationError, String(error));
      }
    }),
    { numRuns: RUNS },
  );
});
