import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ACME_DEFAULTS } from '@wmproxy/acme';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CORE_NET_DEFAULTS, DEFAULT_PENALTY_ALLOWANCE, DEFAULT_PENALTY_FIRST_MS, DEFAULT_PENALTY_MAX_MS, DEFAULT_PENALTY_MAX_SOURCES } from '@wmproxy/core-net';
import { DEFAULT_ACTIVE, DEFAULT_CONCURRENCY, DEFAULT_PANIC_THRESHOLD, DEFAULT_PASSIVE, HEALTH_DEFAULTS } from '@wmproxy/health';
import { HTTP_PROXY_DEFAULTS } from '@wmproxy/http-proxy';
import { REVERSE_DEFAULTS } from '@wmproxy/reverse';
import { DEFAULT_DATA_MAX_BUSY, DEFAULT_DATA_POOL, DEFAULT_DATA_PROMOTE_BYTES, DEFAULT_MAX_HANDSHAKES, DEFAULT_MAX_HANDSHAKES_PER_IP } from '@wmproxy/tunnel';
import { WS_BRIDGE_DEFAULTS } from '@wmproxy/ws-bridge';
import { SOCKS5_DEFAULTS } from '@wmproxy/socks5';
import { STATIC_DEFAULTS } from '@wmproxy/static';
import { CONTROL_DEFAULTS, buildConfig, jsonSchema, parseDuration, parseSize } from '../src/index.js';

/** This package's directory, from src (Bun) or dist/test (Node). */
function packageDir(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!readdirSync(dir).includes('README.md')) dir = join(dir, '..');
  return dir;
}

type Node = { properties?: Record<string, Node>; items?: Node; anyOf?: Node[]; default?: unknown };

/** Every `default` of the JSON Schema by key path as the README writes it (`upstream[].keepalive`). */
function schemaDefaults(): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const walk = (node: Node, path: string): void => {
    if (path !== '' && node.default !== undefined) out.set(path, node.default);
    for (const [key, child] of Object.entries(node.properties ?? {})) walk(child, path === '' ? key : `${path}.${key}`);
    if (node.items) walk(node.items, `${path}[]`);
    const members = node.anyOf ?? [];
    for (const member of members) if (member.properties) walk({ properties: member.properties }, path);
    // A list or a string (`servers`): its items as `path[]`. A table or a list of tables is documented as the table.
    if (!members.some((member) => member.properties)) for (const member of members) if (member.items) walk(member.items, `${path}[]`);
  };
  walk(jsonSchema() as Node, '');
  return out;
}

/** README rows whose Default cell is one plain value (`"5s"`, `256`, `[502,503,504]`), by key. */
function readmeDefaults(): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const line of readFileSync(join(packageDir(), 'README.md'), 'utf8').split('\n')) {
    if (!line.startsWith('| `')) continue;
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim());
    const key = /^`([a-z_.[\]]+)`$/.exec(cells[0]!)?.[1];
    const value = /^`([^`]+)`$/.exec(cells[3] ?? '')?.[1];
    if (key === undefined || value === undefined) continue;
    try {
      out.set(key, JSON.parse(value));
    } catch {
      // prose, an enum spelled without quotes: not a single value to compare
    }
  }
  return out;
}

/** Durations and sizes compare by what they mean (`"60s"` is `"1m"`). */
function meaning(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  for (const parse of [parseDuration, parseSize]) {
    try {
      return parse(value);
    } catch {
      // not this kind of value
    }
  }
  return value;
}

test('the README states the default the schema gives for every key it lists', () => {
  const schema = schemaDefaults();
  const readme = readmeDefaults();
  assert.ok(readme.size > 50, `README rows parsed (${readme.size})`);
  for (const [key, value] of readme) {
    assert.ok(schema.has(key), `${key}: README says ${JSON.stringify(value)}, the schema has no default`);
    assert.deepEqual(meaning(value), meaning(schema.get(key)), `${key}: README and schema disagree`);
  }
});

test('the README lists every key the schema gives a default', () => {
  const listed = readFileSync(join(packageDir(), 'README.md'), 'utf8');
  // A server's rate_limit is the same table as a location's, documented once there.
  const documented = (key: string): string => key.replace(/^server\[\]\.rate_limit\./, 'server[].location[].rate_limit.');
  const missing = [...schemaDefaults().keys()].filter((key) => !listed.includes(`| \`${documented(key)}\` |`));
  assert.deepEqual(missing, []);
});

test('the schema defaults are the ones the packages export', () => {
  const schema = schemaDefaults();
  const { timeouts, retries, dns, pool } = REVERSE_DEFAULTS;
  const expected: Record<string, unknown> = {
    'reverse.connect_timeout': timeouts.connectMs,
    'reverse.read_timeout': timeouts.firstByteMs,
    'reverse.idle_timeout': timeouts.idleMs,
    'reverse.client_header_timeout': timeouts.clientHeaderMs,
    'reverse.client_body_timeout': timeouts.clientBodyMs,
    'reverse.keepalive_timeout': timeouts.keepAliveMs,
    'reverse.tunnel_idle_timeout': timeouts.tunnelIdleMs,
    'tunnel.server.data_pool': DEFAULT_DATA_POOL,
    'tunnel.server.data_max_busy': DEFAULT_DATA_MAX_BUSY,
    'tunnel.server.data_promote_bytes': DEFAULT_DATA_PROMOTE_BYTES,
    'tunnel.server.max_handshakes': DEFAULT_MAX_HANDSHAKES,
    'tunnel.server.max_handshakes_per_ip': DEFAULT_MAX_HANDSHAKES_PER_IP,
    'tunnel.server.auth_penalty.enabled': true,
    'tunnel.server.auth_penalty.allowance': DEFAULT_PENALTY_ALLOWANCE,
    'tunnel.server.auth_penalty.first': DEFAULT_PENALTY_FIRST_MS,
    'tunnel.server.auth_penalty.max': DEFAULT_PENALTY_MAX_MS,
    'tunnel.server.auth_penalty.max_sources': DEFAULT_PENALTY_MAX_SOURCES,
    'reverse.request_timeout': timeouts.requestMs,
    'reverse.retries': retries.tries,
    'reverse.retry_timeout': retries.totalMs,
    'reverse.retry_on_status': retries.onStatus,
    'reverse.retry_methods': retries.methods,
    'reverse.retry_budget_percent': retries.budgetPercent,
    'reverse.retry_budget_min_concurrency': retries.budgetMinConcurrency,
    'reverse.retry_body_buffer': REVERSE_DEFAULTS.retryBodyBuffer,
    'reverse.hedge_delay': REVERSE_DEFAULTS.hedgeDelayMs,
    'reverse.hedge_request': REVERSE_DEFAULTS.requestHedgeMs,
    'reverse.hedge_request_budget': REVERSE_DEFAULTS.requestHedgeBudget,
    'reverse.resolve_ttl': dns.ttlMs,
    'reverse.resolve_min_ttl': dns.minTtlMs,
    'reverse.resolve_max_ttl': dns.maxTtlMs,
    'reverse.resolve_record_ttl': dns.recordTtl,
    'reverse.max_header_size': REVERSE_DEFAULTS.maxHeadSize,
    'reverse.shutdown_timeout': REVERSE_DEFAULTS.shutdownDeadlineMs,
    'reverse.tracing.enabled': REVERSE_DEFAULTS.tracing.enabled,
    'reverse.tracing.sample_ratio': REVERSE_DEFAULTS.tracing.sampleRatio,
    'reverse.tracing.service_name': REVERSE_DEFAULTS.tracing.serviceName,
    'reverse.tracing.exporter': REVERSE_DEFAULTS.tracing.exporter,
    'reverse.tracing.otlp_queue_size': REVERSE_DEFAULTS.tracing.otlp.queueSize,
    'reverse.tracing.otlp_batch_size': REVERSE_DEFAULTS.tracing.otlp.batchSize,
    'reverse.tracing.otlp_interval': REVERSE_DEFAULTS.tracing.otlp.intervalMs,
    'reverse.tracing.otlp_timeout': REVERSE_DEFAULTS.tracing.otlp.timeoutMs,
    'server[].connection_limit_status': REVERSE_DEFAULTS.connectionLimitStatus,
    'server[].http2': REVERSE_DEFAULTS.http2,
    'upstream[].keepalive': pool.maxIdle,
    'upstream[].keepalive_timeout': pool.idleTimeoutMs,
    'health.interval': DEFAULT_ACTIVE.intervalMs,
    'health.timeout': DEFAULT_ACTIVE.timeoutMs,
    'health.rise': DEFAULT_ACTIVE.rise,
    'health.fall': DEFAULT_ACTIVE.fall,
    'health.jitter': DEFAULT_ACTIVE.jitter,
    'health.initial': DEFAULT_ACTIVE.initial,
    'health.panic_threshold': DEFAULT_PANIC_THRESHOLD,
    'health.concurrency': DEFAULT_CONCURRENCY,
    'health.passive.enabled': DEFAULT_PASSIVE.enabled,
    'health.passive.consecutive_failures': DEFAULT_PASSIVE.consecutiveFailures,
    'health.passive.window': DEFAULT_PASSIVE.windowMs,
    'health.passive.ejection_time': DEFAULT_PASSIVE.baseEjectionMs,
    'health.passive.max_ejection_time': DEFAULT_PASSIVE.maxEjectionMs,
    'health.passive.max_ejection_percent': DEFAULT_PASSIVE.maxEjectionPercent,
    'health.passive.count_5xx': DEFAULT_PASSIVE.count5xx,
    'acme.challenges': ACME_DEFAULTS.challenges,
    'acme.storage': ACME_DEFAULTS.storage,
    'acme.redirect': ACME_DEFAULTS.redirect,
    'acme.http_port': ACME_DEFAULTS.httpPort,
    'health.fail_mode': HEALTH_DEFAULTS.failMode,
    'health.slow_start': HEALTH_DEFAULTS.slowStartMs,
    'proxy[].protocols': HTTP_PROXY_DEFAULTS.protocols,
    'proxy[].realm': HTTP_PROXY_DEFAULTS.realm,
    'proxy[].via': HTTP_PROXY_DEFAULTS.via,
    'proxy[].connect_timeout': HTTP_PROXY_DEFAULTS.connectTimeoutMs,
    'proxy[].header_timeout': HTTP_PROXY_DEFAULTS.headerTimeoutMs,
    'proxy[].keepalive_timeout': HTTP_PROXY_DEFAULTS.keepAliveTimeoutMs,
    'proxy[].idle_timeout': HTTP_PROXY_DEFAULTS.idleTimeoutMs,
    'proxy[].max_header_size': HTTP_PROXY_DEFAULTS.maxHeadSize,
    'proxy[].udp': SOCKS5_DEFAULTS.udp,
    'stream[].tries': REVERSE_DEFAULTS.stream.tries,
    'ws_proxy[].listen': WS_BRIDGE_DEFAULTS.listen,
    'ws_proxy[].path': WS_BRIDGE_DEFAULTS.path,
    'ws_proxy[].subprotocols': WS_BRIDGE_DEFAULTS.subprotocols,
    'ws_proxy[].text': WS_BRIDGE_DEFAULTS.text,
    'ws_proxy[].ping': WS_BRIDGE_DEFAULTS.pingIntervalMs,
    'ws_proxy[].pong_timeout': WS_BRIDGE_DEFAULTS.pongTimeoutMs,
    'ws_proxy[].max_message': WS_BRIDGE_DEFAULTS.maxMessageSize,
    'ws_proxy[].connect_timeout': WS_BRIDGE_DEFAULTS.connectTimeoutMs,
    'ws_proxy[].handshake_timeout': WS_BRIDGE_DEFAULTS.handshakeTimeoutMs,
    'server[].location[].websocket_to_tcp.ping': WS_BRIDGE_DEFAULTS.pingIntervalMs,
    'server[].location[].websocket_to_tcp.max_message': WS_BRIDGE_DEFAULTS.maxMessageSize,
    'server[].location[].rate_limit.burst': REVERSE_DEFAULTS.rateLimit.burst,
    'server[].location[].rate_limit.status': REVERSE_DEFAULTS.rateLimit.status,
    'server[].location[].rate_limit.max_keys': REVERSE_DEFAULTS.rateLimit.maxKeys,
    'server[].location[].rate_limit.max_in_flight': REVERSE_DEFAULTS.rateLimit.maxInFlight,
    'server[].location[].static.index': STATIC_DEFAULTS.index,
    'server[].location[].static.browse': STATIC_DEFAULTS.browse,
    'server[].location[].static.spa': STATIC_DEFAULTS.spa,
    'server[].location[].static.precompressed': STATIC_DEFAULTS.precompressed,
    'server[].location[].static.dotfiles': STATIC_DEFAULTS.dotfiles === 'allow',
    'server[].location[].static.cors': STATIC_DEFAULTS.cors,
    'control.enabled': CONTROL_DEFAULTS.enabled,
    'control.listen': CONTROL_DEFAULTS.listen,
    workers: CONTROL_DEFAULTS.workers,
    max_connections: CORE_NET_DEFAULTS.processMaxConnections,
  };
  for (const [key, value] of Object.entries(expected)) {
    assert.deepEqual(meaning(schema.get(key)), Array.isArray(value) ? [...value] : value, key);
  }
});

test('a file that sets nothing resolves to the packages\' own defaults', () => {
  const config = buildConfig({ upstream: [{ name: 'app', servers: ['127.0.0.1:3000'] }] }, '<test>');
  const { retryBodyBuffer, hedgeDelayMs, requestHedgeMs, requestHedgeBudget, maxHeadSize, shutdownDeadlineMs } = REVERSE_DEFAULTS;
  assert.deepEqual(config.reverse, {
    timeouts: { ...REVERSE_DEFAULTS.timeouts },
    retries: { ...REVERSE_DEFAULTS.retries, onStatus: [...REVERSE_DEFAULTS.retries.onStatus], methods: [...REVERSE_DEFAULTS.retries.methods], bodyBuffer: retryBodyBuffer },
    hedgeDelayMs,
    requestHedgeMs,
    requestHedgeBudget,
    dns: { ...REVERSE_DEFAULTS.dns, servers: [...REVERSE_DEFAULTS.dns.servers] },
    maxHeadSize,
    shutdownTimeoutMs: shutdownDeadlineMs,
    tracing: { enabled: REVERSE_DEFAULTS.tracing.enabled, sampleRatio: REVERSE_DEFAULTS.tracing.sampleRatio, serviceName: REVERSE_DEFAULTS.tracing.serviceName, exporter: REVERSE_DEFAULTS.tracing.exporter },
  });
  assert.deepEqual(config.upstreams[0]!.pool, { ...REVERSE_DEFAULTS.pool });
});

test('a forward proxy, a stream, a static location and the control section that set nothing resolve to their packages\' defaults', () => {
  const config = buildConfig(
    {
      proxy: [{ name: 'p', listen: '127.0.0.1:0' }],
      upstream: [{ name: 'app', servers: ['127.0.0.1:3000'] }],
      stream: [
        { name: 't', listen: '127.0.0.1:0', upstream: 'app' },
        { name: 'u', listen: '127.0.0.1:0', upstream: 'app', protocol: 'udp' },
      ],
      server: [{ listen: '127.0.0.1:0', location: [{ path: '/', static: { root: '.' } }] }],
    },
    '<test>',
  );
  const proxy = config.proxies[0]!;
  assert.deepEqual(proxy.protocols, [...HTTP_PROXY_DEFAULTS.protocols]);
  assert.equal(proxy.realm, HTTP_PROXY_DEFAULTS.realm);
  assert.equal(proxy.via, HTTP_PROXY_DEFAULTS.via);
  assert.equal(proxy.udp, SOCKS5_DEFAULTS.udp);
  assert.equal(proxy.connectTimeoutMs, HTTP_PROXY_DEFAULTS.connectTimeoutMs);
  assert.equal(proxy.connectTimeoutMs, CORE_NET_DEFAULTS.connectTimeoutMs);
  assert.equal(proxy.headerTimeoutMs, HTTP_PROXY_DEFAULTS.headerTimeoutMs);
  assert.equal(proxy.keepAliveTimeoutMs, HTTP_PROXY_DEFAULTS.keepAliveTimeoutMs);
  assert.equal(proxy.idleTimeoutMs, CORE_NET_DEFAULTS.relayIdleTimeoutMs);
  assert.equal(proxy.maxHeadSize, CORE_NET_DEFAULTS.maxHeadSize);
  const [tcp, udp] = config.streams;
  assert.equal(tcp!.tries, REVERSE_DEFAULTS.stream.tries);
  assert.equal(tcp!.idleTimeoutMs, REVERSE_DEFAULTS.stream.tcpIdleTimeoutMs);
  assert.equal(udp!.idleTimeoutMs, REVERSE_DEFAULTS.stream.udpIdleTimeoutMs);
  const files = config.servers[0]!.locations[0]!.static!;
  assert.deepEqual(files.index, [...STATIC_DEFAULTS.index]);
  assert.equal(files.browse, STATIC_DEFAULTS.browse);
  assert.equal(files.spa, STATIC_DEFAULTS.spa);
  assert.equal(files.cors, STATIC_DEFAULTS.cors);
  assert.equal(config.control.enabled, CONTROL_DEFAULTS.enabled);
  assert.equal(config.control.listen, CONTROL_DEFAULTS.listen);
  assert.equal(config.workers, CONTROL_DEFAULTS.workers);
  assert.equal(config.maxConnections, CORE_NET_DEFAULTS.processMaxConnections);
});
