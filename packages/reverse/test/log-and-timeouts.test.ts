import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { AccessLog } from '../src/index.js';
import { startBackend, startProxy, request, deadPort, until } from './helpers.js';

test('the access log writes one nginx combined line per request, with upstream address, times and the trace id (- when none)', async () => {
  const backend = await startBackend('b');
  const lines: string[] = [];
  const { proxy, base } = await startProxy({
    accessLog: new AccessLog({ write: (line: string) => lines.push(line) }, 'combined'),
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
  });
  try {
    await request(`${base}/page?x=1`, { headers: { referer: 'http://ref.test/', 'user-agent': 'tester/1.0' } });
    await until(() => lines.length === 1, 'one log line');
    assert.match(
      lines[0]!,
      new RegExp(
        `^127\\.0\\.0\\.1 - - \\[\\d{2}/[A-Z][a-z]{2}/\\d{4}:\\d{2}:\\d{2}:\\d{2} \\+0000\\] "GET /page\\?x=1 HTTP/1\\.1" 200 \\d+ "http://ref\\.test/" "tester/1\\.0" ${backend.address.replace(/\./g, '\\.')} \\d+\\.\\d{3} \\d+\\.\\d{3} -\\n$`,
      ),
    );
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('the JSON access log records errors with their reason', async () => {
  const lines: string[] = [];
  const dead = await deadPort();
  const { proxy, base } = await startProxy({
    accessLog: new AccessLog({ write: (line: string) => lines.push(line) }, 'json'),
    upstreams: [{ name: 'app', servers: [{ address: `127.0.0.1:${dead}` }] }],
  });
  try {
    assert.equal((await request(`${base}/x`)).status, 502);
    await until(() => lines.length === 1, 'one log line');
    const record = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(record.status, 502);
    assert.equal(record.method, 'GET');
    assert.equal(record.uri, '/x');
    assert.equal(record.client_ip, '127.0.0.1');
    assert.match(String(record.reason), /ECONNREFUSED/);
    assert.equal(typeof record.total_time_ms, 'number');
  } finally {
    await proxy.close();
  }
});

test('a client that sends its head too slowly gets 408 and is closed (slow-loris defence)', async () => {
  const backend = await startBackend('b');
  const { proxy, port } = await startProxy({ timeouts: { clientHeaderMs: 300 }, upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString()));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET / HTTP/1.1\r\nHost: a\r\n');
    const drip = setInterval(() => socket.writable && socket.write('X-Drip: 1\r\n'), 50);
    await closed;
    clearInterval(drip);
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.equal(backend.hits, 0);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('an idle keep-alive client connection is closed after the keep-alive timeout', async () => {
  const backend = await startBackend('b');
  const { proxy, port } = await startProxy({ timeouts: { keepAliveMs: 200 }, upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  try {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString()));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await closed;
    assert.match(text, /^HTTP\/1\.1 200 OK/);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('the whole-request timeout answers 504 when an upstream takes too long, even within its first-byte timeout', async () => {
  const { startRaw } = await import('./helpers.js');
  const silent = await startRaw(() => {});
  const { proxy, base } = await startProxy({
    timeouts: { requestMs: 300, firstByteMs: 60_000 },
    upstreams: [{ name: 'app', servers: [{ address: silent.address }] }],
  });
  try {
    const reply = await request(`${base}/slow`);
    assert.equal(reply.status, 504);
    assert.equal(proxy.upstreams.get('app')!.servers[0]!.active, 0);
  } finally {
    await proxy.close();
    await silent.close();
  }
});
