import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { ReverseProxy, type ListenerSpec, type ReverseProxyOptions, type UpstreamSpec } from '../src/index.js';
import { startBackend, until } from './helpers.js';

/** GET on a keep-alive agent, with the client-side port of the connection used. */
function get(url: string, agent: http.Agent): Promise<{ status: number; body: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      let body = '';
      const localPort = res.socket.localPort ?? 0;
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, localPort }));
    });
    req.on('error', reject);
  });
}

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

const refused = (address: string): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = net.connect(portOf(address), address.slice(0, address.lastIndexOf(':')));
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });


function options(upstreams: UpstreamSpec[], servers: ListenerSpec[]): ReverseProxyOptions {
  return { shutdownDeadlineMs: 1_000, hedgeDelayMs: 0, upstreams, servers };
}

test('reload keeps the listening socket and open keep-alive connections; the next request already uses the new routes', async () => {
  let finishSlow: (() => void) | undefined;
  const a = await startBackend('a', (req, res) => {
    if (req.url === '/slow') finishSlow = () => res.end('a slow');
    else res.end('a');
  });
  const b = await startBackend('b');
  const proxy = new ReverseProxy(options([{ name: 'app', servers: [{ address: a.address }] }], [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }]));
  await proxy.start();
  const address = proxy.addresses[0]!;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const slowAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const before = await get(`http://${address}/`, agent);
    assert.equal(before.body, 'a');
    const slow = get(`http://${address}/slow`, slowAgent);
    await until(() => finishSlow !== undefined, 'a request in flight');
    await proxy.reload(
      options(
        [
          { name: 'app', servers: [{ address: b.address }] },
          { name: 'old', servers: [{ address: a.address }] },
        ],
        [{ listen: address, vhosts: [{ locations: [{ path: '/', upstream: 'app' }, { path: '/slow', upstream: 'old' }, { exact: '/new', respond: { status: 200, body: 'new location' } }] }] }],
      ),
    );
    assert.deepEqual(proxy.addresses, [address], 'the same socket');
    finishSlow!();
    assert.equal((await slow).body, 'a slow', 'the request in flight finished');
    const fresh = await get(`http://${address}/new`, agent);
    assert.equal(fresh.body, 'new location');
    assert.equal(fresh.localPort, before.localPort, 'served on the connection opened before the reload');
    const moved = await get(`http://${address}/`, agent);
    assert.equal(moved.body, 'b');
    assert.equal(moved.localPort, before.localPort);
  } finally {
    agent.destroy();
    slowAgent.destroy();
    await proxy.close();
    await a.close();
    await b.close();
  }
});

test('reload opens new listeners and closes removed ones', async () => {
  const a = await startBackend('a');
  const upstreams = [{ name: 'app', servers: [{ address: a.address }] }];
  const vhosts = [{ locations: [{ path: '/', upstream: 'app' }] }];
  const proxy = new ReverseProxy(options(upstreams, [{ listen: '127.0.0.1:0', vhosts }, { listen: '127.0.0.1:0', vhosts }]));
  await proxy.start();
  const [first, second] = proxy.addresses as [string, string];
  const agent = new http.Agent({ keepAlive: true });
  try {
    assert.equal((await get(`http://${second}/`, agent)).body, 'a');
    // (A listener still on '127.0.0.1:0' would be the same one: "any port" is chosen once.)
    await proxy.reload(options(upstreams, [{ listen: first, vhosts }, { listen: '127.0.0.2:0', vhosts }]));
    const [kept, opened] = proxy.addresses as [string, string];
    assert.equal(kept, first);
    assert.match(opened, /^127\.0\.0\.2:/);
    assert.equal((await get(`http://${opened}/`, agent)).body, 'a');
    assert.equal((await get(`http://${kept}/`, agent)).body, 'a');
    assert.equal(await refused(second), true, 'the removed listener no longer accepts');
  } finally {
    agent.destroy();
    await proxy.close();
    await a.close();
  }
});

test('an invalid configuration throws and leaves the running proxy untouched', async () => {
  const a = await startBackend('a');
  const proxy = new ReverseProxy(options([{ name: 'app', servers: [{ address: a.address }] }], [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }]));
  await proxy.start();
  const address = proxy.addresses[0]!;
  const agent = new http.Agent({ keepAlive: true });
  try {
    const upstream = proxy.upstreams.get('app');
    await assert.rejects(
      proxy.reload(options([{ name: 'other', servers: [{ address: a.address }] }], [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }])),
      /unknown upstream "app"/,
    );
    await assert.rejects(proxy.reload(options([{ name: 'app', servers: [{ address: a.address }] }], [{ listen: address, vhosts: [{ locations: [{ regex: '(' , upstream: 'app' }] }] }])));
    await assert.rejects(
      proxy.reload(options([{ name: 'app', servers: [{ address: a.address }] }], [{ listen: address, vhosts: [{ rateLimit: { rate: 'fast' }, locations: [{ path: '/', upstream: 'app' }] }] }])),
      /invalid rate/,
    );
    assert.equal(proxy.upstreams.get('app'), upstream);
    assert.deepEqual(proxy.addresses, [address]);
    assert.equal((await get(`http://${address}/`, agent)).body, 'a');
  } finally {
    agent.destroy();
    await proxy.close();
    await a.close();
  }
});

test('upstream groups that stay keep their pools and counters; a changed group keeps the servers that stay', async () => {
  const a = await startBackend('a');
  const b = await startBackend('b');
  const c = await startBackend('c');
  const listen: ListenerSpec = { listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/one', upstream: 'one' }, { path: '/two', upstream: 'two' }] }] };
  const proxy = new ReverseProxy(
    options(
      [
        { name: 'one', servers: [{ address: a.address }] },
        { name: 'two', servers: [{ address: b.address }] },
      ],
      [listen],
    ),
  );
  await proxy.start();
  const address = proxy.addresses[0]!;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    await get(`http://${address}/one`, agent);
    await get(`http://${address}/two`, agent);
    const one = proxy.upstreams.get('one')!;
    const serverB = proxy.upstreams.get('two')!.servers[0]!;
    assert.equal(serverB.pool.idleCount, 1);
    await proxy.reload(
      options(
        [
          { name: 'one', servers: [{ address: a.address }] },
          { name: 'two', servers: [{ address: b.address }, { address: c.address }] },
        ],
        [{ ...listen, listen: address }],
      ),
    );
    assert.equal(proxy.upstreams.get('one'), one, 'the unchanged group is the same object');
    const two = proxy.upstreams.get('two')!;
    assert.equal(two.servers[0], serverB, 'the server that stayed is the same object');
    assert.equal(serverB.requests, 1, 'its counters carry on');
    assert.equal(serverB.pool.idleCount, 1, 'its idle connection is still pooled');
    const bodies = new Set<string>();
    for (let i = 0; i < 4; i++) bodies.add((await get(`http://${address}/two`, agent)).body);
    assert.deepEqual([...bodies].sort(), ['b', 'c']);
  } finally {
    agent.destroy();
    await proxy.close();
    await a.close();
    await b.close();
    await c.close();
  }
});

test('a WebSocket through a kept listener carries on across a reload', async () => {
  const backend = await startBackend('ws');
  const wss = new WebSocketServer({ server: backend.server });
  wss.on('connection', (socket) => socket.on('message', (data) => socket.send(`echo:${data.toString()}`)));
  const spec = (listen: string, extra = false): ListenerSpec => ({
    listen,
    vhosts: [{ locations: [{ path: '/', upstream: 'ws' }, ...(extra ? [{ exact: '/extra', respond: { status: 204 } }] : [])] }],
  });
  const proxy = new ReverseProxy(options([{ name: 'ws', servers: [{ address: backend.address }] }], [spec('127.0.0.1:0')]));
  await proxy.start();
  const address = proxy.addresses[0]!;
  const ws = new WebSocket(`ws://${address}/chat`);
  const messages: string[] = [];
  ws.on('message', (data) => messages.push(data.toString()));
  try {
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send('one');
    await until(() => messages.length === 1, 'first echo');
    await proxy.reload(options([{ name: 'ws', servers: [{ address: backend.address }, { address: '127.0.0.1:9' }] }], [spec(address, true)]));
    ws.send('two');
    await until(() => messages.length === 2, 'echo after the reload');
    assert.deepEqual(messages, ['echo:one', 'echo:two']);
  } finally {
    ws.terminate();
    await proxy.close();
    wss.close();
    await backend.close();
  }
});

test('a listener whose address set changes is reopened on the addresses that stay', async () => {
  const a = await startBackend('a');
  const upstreams = [{ name: 'app', servers: [{ address: a.address }] }];
  const vhosts = [{ locations: [{ path: '/', upstream: 'app' }] }];
  const proxy = new ReverseProxy(options(upstreams, [{ listen: ['127.0.0.1:0', '127.0.0.2:0'], vhosts }]));
  await proxy.start();
  const [one, two] = proxy.addresses as [string, string];
  const agent = new http.Agent({ keepAlive: true });
  try {
    await proxy.reload(options(upstreams, [{ listen: one, vhosts: [{ locations: [{ path: '/', respond: { status: 200, body: 'reloaded' } }] }] }]));
    assert.deepEqual(proxy.addresses, [one]);
    assert.equal((await get(`http://${one}/`, agent)).body, 'reloaded');
    assert.equal(await refused(two), true);
  } finally {
    agent.destroy();
    await proxy.close();
    await a.close();
  }
});
