import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connPair, NetError, type Conn, type Transport, type TransportTarget } from '@wmproxy/core-net';
import { ReverseProxy } from '../src/index.js';
import { request, startProxy, until, keepAliveAgent } from './helpers.js';

/**
 * A transport with no sockets: each named service is an in-process HTTP
 * responder on the far end of an in-memory pair (what a tunnel stream or an
 * HTTP/2 stream looks like to the engine). `down` services refuse.
 */
class MemoryTransport implements Transport {
  readonly kind = 'memory';
  readonly opened = new Map<string, number>();
  readonly down = new Set<string>();

  connect(target: TransportTarget): Promise<Conn> {
    this.opened.set(target.host, (this.opened.get(target.host) ?? 0) + 1);
    if (this.down.has(target.host)) return Promise.reject(new NetError('ECONNREFUSED', `${target.host} is down`, { address: target.host }));
    const [near, far] = connPair();
    let pending = '';
    far.setHandler({
      data(conn, chunk) {
        pending += Buffer.from(chunk).toString('latin1');
        let end: number;
        while ((end = pending.indexOf('\r\n\r\n')) >= 0) {
          const head = pending.slice(0, end);
          pending = pending.slice(end + 4);
          const body = `${target.host} ${head.slice(0, head.indexOf(' '))} ${head.split(' ')[1]}`;
          conn.write(Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`));
        }
      },
      end: (conn) => conn.end(),
      close() {},
    });
    return Promise.resolve(near);
  }
}

test('servers reached through an embedder transport are proxied, pooled, balanced and health-checked through it', async () => {
  const memory = new MemoryTransport();
  memory.down.add('svc-down');
  const { proxy, base } = await startProxy({
    transports: { memory },
    health: { active: { intervalMs: 50, rise: 1, fall: 1 } },
    upstreams: [
      {
        name: 'app',
        policy: 'round_robin',
        servers: [
          { address: 'svc-a:80', transport: 'memory' },
          { address: 'svc-b:80', transport: 'memory' },
          { address: 'svc-down:80', transport: 'memory' },
        ],
        health: { check: { type: 'http', path: '/healthz' }, intervalMs: 50, rise: 1, fall: 1 },
      },
    ],
  });
  const agent = keepAliveAgent();
  try {
    // The active check went through the transport, and found the refusing service down.
    await until(() => proxy.health.snapshot().targets.some((t) => t.target === 'svc-down:80' && t.state === 'unhealthy'), 'svc-down marked unhealthy');
    assert.ok((memory.opened.get('svc-down') ?? 0) >= 1);
    const seen = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const reply = await request(`${base}/item/${i}`, { agent });
      assert.equal(reply.status, 200);
      const [service, method, path] = reply.body.split(' ');
      assert.equal(method, 'GET');
      assert.equal(path, `/item/${i}`);
      seen.set(service!, (seen.get(service!) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), ['svc-a', 'svc-b']);
    const pooled = proxy.upstreams.get('app')!.servers.reduce((sum, server) => sum + server.pool.reused, 0);
    assert.ok(pooled > 0, 'connections from the transport are kept alive and reused');
  } finally {
    agent.destroy();
    await proxy.close();
  }
});

test('a server naming an unknown transport is refused when the proxy is built', () => {
  assert.throws(
    () => new ReverseProxy({ upstreams: [{ name: 'app', servers: [{ address: 'svc:80', transport: 'tunnel' }] }] }),
    /unknown transport "tunnel"/,
  );
});
