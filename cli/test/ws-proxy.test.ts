import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { Running, curl, wmproxy } from './helpers.js';

const listening = /listening .*address=127\.0\.0\.1:(\d+)/;

let echo: net.Server;
let echoPort = 0;
test('setup: a TCP echo target', async () => {
  echo = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as net.AddressInfo).port;
});
after(() => echo?.close());

test('wmproxy ws-proxy: tcp2ws into ws2tcp carries bytes to a TCP echo and back, keeping the path', async () => {
  const ws2tcp = new Running(['ws-proxy', '--mode', 'ws2tcp', '--from', '127.0.0.1:0', '--to', `127.0.0.1:${echoPort}`, '--path', '/tunnel', '--bearer', 'tok']);
  let tcp2ws: Running | undefined;
  try {
    const wsPort = await ws2tcp.port(listening);
    // The upgrade without the token is a 401; at another path a 404.
    const upgrade = ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13', '-H', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='];
    assert.equal((await curl([...upgrade, `http://127.0.0.1:${wsPort}/tunnel`])).stdout, '401');
    assert.equal((await curl([...upgrade, '-H', 'Authorization: Bearer tok', `http://127.0.0.1:${wsPort}/elsewhere`])).stdout, '404');
    tcp2ws = new Running(['ws-proxy', '--mode', 'tcp2ws', '--from', '127.0.0.1:0', '--to', `127.0.0.1:${wsPort}/tunnel?x=1`, '--header', 'Authorization: Bearer tok']);
    const tcpPort = await tcp2ws.port(listening);
    const socket = net.connect(tcpPort, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('through two bridges');
    const [data] = await once(socket, 'data');
    assert.equal(String(data), 'through two bridges');
    socket.end();
    await once(socket, 'close');
    assert.equal(await tcp2ws.stop(), 0);
    assert.equal(await ws2tcp.stop(), 0);
  } finally {
    tcp2ws?.kill();
    ws2tcp.kill();
  }
});

test('wmproxy ws-proxy refuses flags of the other mode with one line and status 2', async () => {
  const bad = await wmproxy(['ws-proxy', '--mode', 'ws2tcp', '--to', '127.0.0.1:1', '--insecure']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--insecure applies to tcp2ws and tcp2wss only/);
  const scheme = await wmproxy(['ws-proxy', '--mode', 'tcp2wss', '--to', 'ws://127.0.0.1:1/']);
  assert.equal(scheme.code, 2);
  assert.match(scheme.stderr, /needs a wss:\/\/ URL/);
});
