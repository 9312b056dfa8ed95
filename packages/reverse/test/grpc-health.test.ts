// An upstream group checked with gRPC health (`type: 'grpc'`): the health
// package probes, the proxy's rotation follows, no engine code involved.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NOT_SERVING, SERVING, grpcHealthServer } from '@wmproxy/testkit/grpc';
import { startProxy, until } from './helpers.js';

test('servers checked with grpc.health.v1: NOT_SERVING leaves rotation, SERVING again brings it back', async () => {
  const a = await grpcHealthServer({ statuses: { 'app.Api': SERVING } });
  const b = await grpcHealthServer({ statuses: { 'app.Api': NOT_SERVING } });
  const addressA = `127.0.0.1:${a.port}`;
  const addressB = `127.0.0.1:${b.port}`;
  const { proxy } = await startProxy({
    upstreams: [
      {
        name: 'app',
        servers: [{ address: addressA }, { address: addressB }],
        health: { check: { type: 'grpc', service: 'app.Api' }, intervalMs: 50, timeoutMs: 50, rise: 1, fall: 1, jitter: 0 },
      },
    ],
  });
  try {
    await until(() => proxy.health.state(addressA) === 'healthy' && proxy.health.state(addressB) === 'unhealthy', 'a healthy, b unhealthy');
    assert.deepEqual(proxy.health.available('app'), [addressA]);
    const checks = proxy.health.snapshot().targets.find((target) => target.target === addressB)!.checks;
    assert.equal(checks[0]!.check, 'grpc service "app.Api"');
    assert.equal(checks[0]!.history.at(-1)!.reason, 'NOT_SERVING');
    b.statuses.set('app.Api', SERVING);
    await until(() => proxy.health.state(addressB) === 'healthy', 'b healthy again');
    assert.deepEqual(proxy.health.available('app').sort(), [addressA, addressB].sort());
    assert.ok(b.requests.every((service) => service === 'app.Api'));
  } finally {
    await proxy.close();
    await a.close();
    await b.close();
  }
});
