import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { HealthChecker, type TransitionEvent, type TargetSpec } from '../src/index.js';
import { backend, closedPort, nextEvent, pingServer, selfSigned } from './helpers.js';

/** Add one target to a fresh checker and return its first transition (the first probe decides). */
async function firstTransition(spec: TargetSpec, timeoutMs = 500): Promise<TransitionEvent> {
  const health = new HealthChecker({ active: { intervalMs: Math.max(50, timeoutMs), timeoutMs } });
  try {
    const event = nextEvent<TransitionEvent>(health.events, 'transition');
    health.add(spec);
    return await event;
  } finally {
    await health.close();
  }
}

test('a listening TCP target is healthy; a closed port is unhealthy with ECONNREFUSED', async () => {
  const server = await backend('hang');
  const refused = await closedPort();
  try {
    const up = await firstTransition({ address: server.address });
    assert.equal(up.from, 'unknown');
    assert.equal(up.to, 'healthy');
    assert.equal(up.reason, 'connected');
    assert.ok(up.latencyMs >= 0);
    const down = await firstTransition({ address: `127.0.0.1:${refused}` });
    assert.equal(down.to, 'unhealthy');
    assert.equal(down.reason, 'ECONNREFUSED');
    assert.equal(down.failures, 1);
  } finally {
    await server.close();
  }
});

test('HTTP: status outside the expected list is unhealthy, with the status in the reason', async () => {
  const server = await backend('status503');
  try {
    const down = await firstTransition({ address: server.address, check: { type: 'http', path: '/health' } });
    assert.equal(down.to, 'unhealthy');
    assert.equal(down.reason, 'status 503 not in 200-399');
    const accepted = await firstTransition({ address: server.address, check: { type: 'http', expectStatus: '500-599' } });
    assert.equal(accepted.to, 'healthy');
    assert.equal(accepted.reason, 'status 503');
    server.mode = 'status500';
    const custom = await firstTransition({ address: server.address, check: { type: 'http', expectStatus: '200,204' } });
    assert.equal(custom.reason, 'status 500 not in 200,204');
  } finally {
    await server.close();
  }
});

test('HTTP: the request carries method, path, Host and extra headers, and closes', async () => {
  const server = await backend('ok');
  try {
    await firstTransition({
      address: server.address,
      check: { type: 'http', method: 'head', path: '/ready?x=1', host: 'api.example.test', headers: { 'X-Probe': 'yes' } },
    });
    const request = server.requests.at(-1)!;
    assert.equal(request.method, 'HEAD');
    assert.equal(request.path, '/ready?x=1');
    assert.equal(request.headers.host, 'api.example.test');
    assert.equal(request.headers['x-probe'], 'yes');
    assert.equal(request.headers.connection, 'close');
    await firstTransition({ address: server.address, check: { type: 'http' } });
    assert.equal(server.requests.at(-1)!.headers.host, server.address);
  } finally {
    await server.close();
  }
});

test('HTTP: the body must match a substring or /regex/; chunked bodies are decoded', async () => {
  const server = await backend('wrongBody');
  try {
    const regex = await firstTransition({ address: server.address, check: { type: 'http', expectBody: '/ok/' } });
    assert.equal(regex.to, 'unhealthy');
    assert.equal(regex.reason, 'body did not match /ok/');
    const text = await firstTransition({ address: server.address, check: { type: 'http', expectBody: 'all ok' } });
    assert.equal(text.reason, 'body did not contain "all ok"');
    server.mode = 'ok';
    const good = await firstTransition({ address: server.address, check: { type: 'http', expectBody: '/ALL OK/i' } });
    assert.equal(good.to, 'healthy');
    assert.equal(good.reason, 'status 200, body matched');
    server.mode = 'chunked';
    const chunked = await firstTransition({ address: server.address, check: { type: 'http', expectBody: 'all ok here!' } });
    assert.equal(chunked.to, 'healthy');
    const limited = await firstTransition({ address: server.address, check: { type: 'http', expectBody: 'here', maxBodyBytes: 4 } });
    assert.equal(limited.to, 'unhealthy');
    assert.equal(limited.reason, 'body did not contain "here" in the first 4 bytes');
  } finally {
    await server.close();
  }
});

test('HTTP: a server that accepts but never answers fails on the timeout', async () => {
  const server = await backend('hang');
  try {
    const event = await firstTransition({ address: server.address, check: { type: 'http' } }, 150);
    assert.equal(event.to, 'unhealthy');
    assert.equal(event.reason, 'timeout after 150 ms (no response)');
  } finally {
    await server.close();
  }
});

test('HTTP: a slow answer fails within a short timeout and passes within a long one', async () => {
  const server = await backend('slow');
  server.slowMs = 300;
  try {
    const slow = await firstTransition({ address: server.address, check: { type: 'http' } }, 100);
    assert.equal(slow.reason, 'timeout after 100 ms (no response)');
    const patient = await firstTransition({ address: server.address, check: { type: 'http' } }, 3000);
    assert.equal(patient.to, 'healthy');
  } finally {
    await server.close();
  }
});

test('HTTP: a connection reset before the answer is a failure', async () => {
  const server = await backend('reset');
  try {
    const event = await firstTransition({ address: server.address, check: { type: 'http' } });
    assert.equal(event.to, 'unhealthy');
    assert.match(event.reason, /before the response/);
  } finally {
    await server.close();
  }
});

test('HTTPS: certificates are verified by default; SNI is sent; the opt-out and a CA work', async () => {
  const pair = selfSigned();
  const server = await backend('ok', { tls: pair });
  try {
    const verified = await firstTransition({ address: server.address, check: { type: 'https', servername: 'localhost' } });
    assert.equal(verified.to, 'unhealthy');
    assert.match(verified.reason, /certificate|self.signed|TLS/i);
    const insecure = await firstTransition({ address: server.address, check: { type: 'https', tlsVerify: false, servername: 'localhost' } });
    assert.equal(insecure.to, 'healthy');
    assert.equal(server.requests.at(-1)!.servername, 'localhost');
    const trusted = await firstTransition({ address: server.address, check: { type: 'https', servername: 'localhost', ca: pair.cert } });
    assert.equal(trusted.to, 'healthy');
  } finally {
    await server.close();
  }
});

test('TCP send/expect: the reply must contain the expected bytes (text or hex)', async () => {
  const server = await pingServer();
  try {
    const good = await firstTransition({ address: `127.0.0.1:${server.port}`, check: { type: 'tcp', send: 'PING\r\n', expect: '+PONG' } });
    assert.equal(good.to, 'healthy');
    assert.equal(good.reason, 'connected, got "+PONG"');
    const hex = await firstTransition({
      address: `127.0.0.1:${server.port}`,
      check: { type: 'tcp', send: '50 49 4e 47 0d 0a', expect: '2b504f4e47', encoding: 'hex' },
    });
    assert.equal(hex.to, 'healthy');
    const silent = await firstTransition({ address: `127.0.0.1:${server.port}`, check: { type: 'tcp', send: 'HELLO\r\n', expect: '+PONG' } }, 150);
    assert.equal(silent.to, 'unhealthy');
    assert.equal(silent.reason, 'timeout after 150 ms (waiting for "+PONG")');
  } finally {
    await server.close();
  }
});

test('IPv6 targets: any spelling of the address is one target, and HTTP sends a bracketed Host', async () => {
  const heads: string[] = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', (chunk) => {
      heads.push(chunk.toString('latin1'));
      socket.end('HTTP/1.1 204 No Content\r\n\r\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '::1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const health = new HealthChecker({ active: { intervalMs: 1000 } });
  try {
    const up = nextEvent<TransitionEvent>(health.events, 'transition');
    const key = health.add(`http://[0:0:0:0:0:0:0:1]:${port}/v6`);
    assert.equal(health.add({ address: `[::1]:${port}`, check: { type: 'http', path: '/v6' } }), key);
    const event = await up;
    assert.equal(event.target, `[::1]:${port}`);
    assert.equal(event.to, 'healthy');
    assert.equal(event.reason, 'status 204');
    assert.match(heads[0]!, new RegExp(`\\r\\nHost: \\[::1\\]:${port}\\r\\n`));
    assert.equal(health.isAvailable(`[0::1]:${port}`), true);
    assert.equal(health.state(`[0::1]:${port}`), 'healthy');
  } finally {
    await health.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
