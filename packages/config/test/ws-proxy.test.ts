/**
 * `[[ws_proxy]]` (WebSocket ↔ TCP bridges) and the `websocket_to_tcp`
 * location: defaults, units, and each mistake reported at its key path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WS_BRIDGE_DEFAULTS } from '@wmproxy/ws-bridge';
import { ConfigError, parseConfig, redactConfig } from '../src/index.js';

function issues(text: string): Array<{ path: string; expected: string }> {
  try {
    parseConfig(text, 'toml', 'ws.toml');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.issues.map((issue) => ({ path: issue.path, expected: issue.expected }));
  }
  assert.fail('expected the configuration to be rejected');
}

test('[[ws_proxy]] ws2tcp and tcp2wss resolve with defaults and units', () => {
  const config = parseConfig(
    `[[upstream]]
name = "vnc"
servers = ["127.0.0.1:5900", "127.0.0.1:5901"]

[[ws_proxy]]
name = "desk"
mode = "ws2tcp"
listen = "127.0.0.1:6080"
upstream = "vnc"
path = "/websockify"
origins = ["https://desk.example"]
auth = { users = { ann = "pw" }, bearer = ["s3cret-token"] }
ping = "10s"
max_message = "1m"

[[ws_proxy]]
mode = "tcp2wss"
listen = "127.0.0.1:2222"
url = "wss://gw.example/ssh?host=a"
server_name = "gw.example"
headers = { "X-Team" = "ops" }
offer = ["binary"]
`,
    'toml',
    'ws.toml',
  );
  const [desk, ssh] = config.wsProxies;
  assert.equal(desk!.name, 'desk');
  assert.deepEqual(desk!.listen, ['127.0.0.1:6080']);
  assert.equal(desk!.ws2tcp!.upstream, 'vnc');
  assert.equal(desk!.ws2tcp!.path, '/websockify');
  assert.deepEqual(desk!.ws2tcp!.auth, { basic: [{ user: 'ann', pass: 'pw' }], bearer: ['s3cret-token'] });
  assert.equal(desk!.ws2tcp!.text, 'refuse');
  assert.deepEqual(desk!.ws2tcp!.subprotocols, [...WS_BRIDGE_DEFAULTS.subprotocols]);
  assert.equal(desk!.pingIntervalMs, 10_000);
  assert.equal(desk!.pongTimeoutMs, WS_BRIDGE_DEFAULTS.pongTimeoutMs);
  assert.equal(desk!.maxMessageSize, 1024 * 1024);
  assert.equal(desk!.tcp2ws, undefined);
  assert.equal(ssh!.name, 'ws-proxy-1');
  assert.deepEqual(ssh!.tcp2ws, { url: 'wss://gw.example/ssh?host=a', host: undefined, servername: 'gw.example', ca: undefined, insecure: false, origin: undefined, headers: [['X-Team', 'ops']], subprotocols: ['binary'] });
  // Credentials never leave through GET /config.
  const shown = JSON.stringify(redactConfig(config.source));
  assert.ok(!shown.includes('s3cret-token') && !shown.includes('"pw"'), shown);
});

test('[[ws_proxy]] mistakes are reported at their key paths', () => {
  const found = issues(`[[upstream]]
name = "a"
servers = ["127.0.0.1:1"]

[[ws_proxy]]
mode = "ws2tcp"
listen = "127.0.0.1:7100"
target = "127.0.0.1:5900"
upstream = "a"
url = "ws://x/"

[[ws_proxy]]
mode = "ws2tcp"
listen = "127.0.0.1:7101"
upstream = "nope"

[[ws_proxy]]
mode = "tcp2wss"
listen = "127.0.0.1:7100"
url = "ws://plain.example/"
token_file = "t.cfg"

[[ws_proxy]]
mode = "tcp2ws"
listen = "127.0.0.1:7102"
insecure = true

[[ws_proxy]]
mode = "ws2wat"
listen = "127.0.0.1:7103"
`);
  const paths = found.map((issue) => issue.path).sort();
  assert.deepEqual(paths, [
    'ws_proxy[0].upstream',
    'ws_proxy[0].url',
    'ws_proxy[1].upstream',
    'ws_proxy[2].listen',
    'ws_proxy[2].token_file',
    'ws_proxy[2].url',
    'ws_proxy[3].insecure',
    'ws_proxy[3].url',
    'ws_proxy[4].mode',
  ]);
  const at = (path: string) => found.filter((issue) => issue.path === path).map((issue) => issue.expected).join(' | ');
  assert.match(at('ws_proxy[0].upstream'), /only one of target, upstream, token_file/);
  assert.match(at('ws_proxy[1].upstream'), /the name of an upstream \("a"\)/);
  assert.match(at('ws_proxy[2].url'), /a wss:\/\/ URL/);
  assert.match(at('ws_proxy[2].listen'), /no other service listens on/);
  assert.match(at('ws_proxy[3].url'), /the ws:\/\/ URL to bridge to/);
  assert.match(at('ws_proxy[4].mode'), /one of "ws2tcp", "tcp2ws", "tcp2wss"/);
});

test('a websocket_to_tcp location takes the ws2tcp keys and is one of the location actions', () => {
  const config = parseConfig(
    `[[server]]
listen = "127.0.0.1:7200"
[[server.location]]
path = "/vnc/"
websocket_to_tcp = { target = "127.0.0.1:5900", text = "forward", subprotocols = ["binary"] }
[[server.location]]
path = "/"
respond = { status = 200 }
`,
    'toml',
    'loc.toml',
  );
  const location = config.servers[0]!.locations[0]!;
  assert.equal(location.websocketToTcp!.target, '127.0.0.1:5900');
  assert.equal(location.websocketToTcp!.text, 'forward');
  assert.deepEqual(location.websocketToTcp!.subprotocols, ['binary']);
  const found = issues(`[[server]]
listen = "127.0.0.1:7201"
[[server.location]]
path = "/a"
upstream = "x"
websocket_to_tcp = { target = "127.0.0.1:1" }
[[server.location]]
path = "/b"
websocket_to_tcp = { origins = ["*"] }
`);
  assert.deepEqual(found.map((issue) => issue.path).sort(), ['server[0].location[0].upstream', 'server[0].location[0].websocket_to_tcp', 'server[0].location[1].websocket_to_tcp']);
  assert.match(found.find((issue) => issue.path === 'server[0].location[1].websocket_to_tcp')!.expected, /one of target, upstream, token_file/);
});
