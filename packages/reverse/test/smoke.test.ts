import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startProxy, request, keepAliveAgent } from './helpers.js';

test('proxies a GET to a backend and reuses the upstream connection', async () => {
  const a = await startBackend('a');
  const { proxy, base } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: a.address }] }] });
  const agent = keepAliveAgent();
  try {
    for (let i = 0; i < 5; i++) {
      const reply = await request(`${base}/x`, { agent });
      assert.equal(reply.status, 200);
      assert.equal(reply.body, 'a');
    }
    const reply = await request(`${base}/x`, { method: 'POST', body: 'hello', agent });
    assert.equal(reply.status, 200);
    assert.equal(proxy.upstreams.get('app')!.servers[0]!.pool.reused >= 4, true);
  } finally {
    agent.destroy();
    await proxy.close();
    await a.close();
  }
});
