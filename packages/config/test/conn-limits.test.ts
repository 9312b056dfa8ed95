import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../src/index.js';

function issues(text: string): Map<string, { expected: string; found: string }> {
  try {
    parseConfig(text, 'toml');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return new Map(error.issues.map((issue) => [issue.path, issue]));
  }
  assert.fail('expected the configuration to be rejected');
}

const UPSTREAM = `[[upstream]]
name = "app"
servers = ["127.0.0.1:3001"]
`;

test('connection limits default to the process limit of 9000 and no per-listener or per-IP limit, with 503 answers', () => {
  const config = parseConfig(
    `${UPSTREAM}
[[proxy]]
listen = "127.0.0.1:8090"
[[server]]
listen = "127.0.0.1:8080"
[[server.location]]
upstream = "app"
[[stream]]
listen = "127.0.0.1:9000"
upstream = "app"
`,
    'toml',
  );
  assert.equal(config.maxConnections, 9000);
  assert.deepEqual([config.proxies[0]!.maxConnections, config.proxies[0]!.maxConnectionsPerIp], [0, 0]);
  assert.deepEqual([config.servers[0]!.maxConnections, config.servers[0]!.maxConnectionsPerIp, config.servers[0]!.connectionLimitStatus], [0, 0, 503]);
  assert.deepEqual([config.streams[0]!.maxConnections, config.streams[0]!.maxConnectionsPerIp], [0, 0]);
});

test('reads the process, listener and per-IP connection limits of proxies, servers and streams', () => {
  const config = parseConfig(
    `max_connections = 20000
${UPSTREAM}
[[proxy]]
listen = "127.0.0.1:8090"
max_connections = 500
max_connections_per_ip = 20
[[server]]
listen = "127.0.0.1:8080"
max_connections = 4000
max_connections_per_ip = 100
connection_limit_status = 429
[[server.location]]
upstream = "app"
[[stream]]
listen = "127.0.0.1:9000"
upstream = "app"
max_connections = 300
max_connections_per_ip = 3
`,
    'toml',
  );
  assert.equal(config.maxConnections, 20000);
  assert.deepEqual([config.proxies[0]!.maxConnections, config.proxies[0]!.maxConnectionsPerIp], [500, 20]);
  assert.deepEqual([config.servers[0]!.maxConnections, config.servers[0]!.maxConnectionsPerIp, config.servers[0]!.connectionLimitStatus], [4000, 100, 429]);
  assert.deepEqual([config.streams[0]!.maxConnections, config.streams[0]!.maxConnectionsPerIp], [300, 3]);
});

test('rejects negative limits, a non-error limit status, different limits on one port and limits on a UDP stream', () => {
  const found = issues(`max_connections = -1
${UPSTREAM}
[[server]]
listen = "127.0.0.1:8080"
server_name = ["a.example"]
max_connections_per_ip = 10
connection_limit_status = 200
[[server.location]]
upstream = "app"
[[server]]
listen = "127.0.0.1:8080"
server_name = ["b.example"]
max_connections_per_ip = 20
[[server.location]]
upstream = "app"
[[stream]]
listen = "127.0.0.1:9000"
protocol = "udp"
upstream = "app"
max_connections = 5
`);
  assert.match(found.get('max_connections')!.expected, /at least 0/);
  assert.match(found.get('server[0].connection_limit_status')!.expected, /0 or a status from 400 to 599/);
  assert.match(found.get('server[1].max_connections_per_ip')!.expected, /^10, as server\[0\] on the same port/);
  assert.equal(found.get('server[1].max_connections_per_ip')!.found, '20');
  assert.match(found.get('stream[0].max_connections')!.expected, /no connection limit on a udp stream/);
});
