// gRPC health checks against real @grpc/grpc-js servers (grpc.health.v1
// implemented in @wmproxy/testkit/grpc with its own protobuf code): SERVING,
// NOT_SERVING, unknown service, no health service, TLS, a killed server, a
// paused one, malformed answers, and the checker's transitions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import fc from 'fast-check';
import { NOT_SERVING, SERVING, grpcHealthServer, spawnGrpcHealthServer } from '@wmproxy/testkit/grpc';
import { WireError, encodeGrpcMessage } from '@wmproxy/core-net';
import {
  HealthChecker,
  decodeHealthCheckRequest,
  decodeHealthCheckResponse,
  encodeHealthCheckRequest,
  encodeHealthCheckResponse,
  parseTargetUrl,
  probeGrpc,
  resolveCheck,
  describeCheck,
  checkKey,
  TargetError,
  type GrpcCheck,
  type ResolvedGrpcCheck,
  type TransitionEvent,
} from '../src/index.js';
import { closedPort, nextEvent, selfSigned } from './helpers.js';

function resolved(port: number, check: Partial<GrpcCheck> = {}): ResolvedGrpcCheck {
  return resolveCheck(`127.0.0.1:${port}`, { type: 'grpc', ...check } as GrpcCheck) as ResolvedGrpcCheck;
}

test('gRPC: SERVING is healthy, for the whole server and for a named service; the server got the service names', async () => {
  const server = await grpcHealthServer({ statuses: { '': SERVING, 'svc.Users': SERVING } });
  try {
    const whole = await probeGrpc('127.0.0.1', server.port, resolved(server.port), 1000);
    assert.equal(whole.ok, true, whole.reason);
    assert.equal(whole.reason, 'SERVING');
    const named = await probeGrpc('127.0.0.1', server.port, resolved(server.port, { service: 'svc.Users' }), 1000);
    assert.equal(named.ok, true, named.reason);
    assert.deepEqual(server.requests, ['', 'svc.Users']);
  } finally {
    await server.close();
  }
});

test('gRPC: NOT_SERVING, an unknown service and a server without the health service are unhealthy, each with its reason', async () => {
  const server = await grpcHealthServer({ statuses: { '': NOT_SERVING, 'svc.Up': SERVING, 'svc.Unknown': 0 } });
  const bare = await grpcHealthServer({ health: false });
  try {
    const down = await probeGrpc('127.0.0.1', server.port, resolved(server.port), 1000);
    assert.equal(down.ok, false);
    assert.equal(down.reason, 'NOT_SERVING');
    const unknownService = await probeGrpc('127.0.0.1', server.port, resolved(server.port, { service: 'svc.Nope' }), 1000);
    assert.equal(unknownService.ok, false);
    assert.equal(unknownService.reason, 'service "svc.Nope" unknown (grpc-status 5 NOT_FOUND: unknown service svc.Nope)');
    const unknownStatus = await probeGrpc('127.0.0.1', server.port, resolved(server.port, { service: 'svc.Unknown' }), 1000);
    assert.equal(unknownStatus.reason, 'UNKNOWN');
    const none = await probeGrpc('127.0.0.1', bare.port, resolved(bare.port), 1000);
    assert.equal(none.ok, false);
    assert.match(none.reason, /^no health service \(grpc-status 12 UNIMPLEMENTED/);
  } finally {
    await server.close();
    await bare.close();
  }
});

test('gRPC over TLS (grpcs): verified against a CA, refused without it, accepted with tlsVerify false', async () => {
  const { cert, key } = selfSigned();
  const server = await grpcHealthServer({ tls: { cert, key } });
  try {
    const address = `127.0.0.1:${server.port}`;
    const trusted = await probeGrpc('127.0.0.1', server.port, resolveCheck(address, { type: 'grpcs', ca: cert, servername: 'localhost' }) as ResolvedGrpcCheck, 2000);
    assert.equal(trusted.ok, true, trusted.reason);
    const untrusted = await probeGrpc('127.0.0.1', server.port, resolveCheck(address, { type: 'grpcs' }) as ResolvedGrpcCheck, 2000);
    assert.equal(untrusted.ok, false);
    assert.match(untrusted.reason, /certificate|self.signed|TLS/i);
    const insecure = await probeGrpc('127.0.0.1', server.port, resolveCheck(address, { type: 'grpcs', tlsVerify: false }) as ResolvedGrpcCheck, 2000);
    assert.equal(insecure.reason, 'SERVING');
    // Plain h2c to a TLS port is not a gRPC answer.
    const plain = await probeGrpc('127.0.0.1', server.port, resolved(server.port), 500);
    assert.equal(plain.ok, false);
  } finally {
    await server.close();
  }
});

test('gRPC: a killed server is ECONNREFUSED; a paused (blackholed) one times out', async () => {
  const server = await spawnGrpcHealthServer();
  try {
    const check = resolved(server.port);
    assert.equal((await probeGrpc('127.0.0.1', server.port, check, 2000)).reason, 'SERVING');
    server.pause();
    const paused = await probeGrpc('127.0.0.1', server.port, check, 300);
    assert.equal(paused.ok, false);
    assert.equal(paused.reason, 'timeout after 300 ms');
    server.resume();
    await server.kill();
    const killed = await probeGrpc('127.0.0.1', server.port, check, 1000);
    assert.equal(killed.ok, false);
    assert.equal(killed.reason, 'ECONNREFUSED');
  } finally {
    await server.kill();
  }
  const refused = await closedPort();
  assert.equal((await probeGrpc('127.0.0.1', refused, resolved(refused), 500)).reason, 'ECONNREFUSED');
});

test('gRPC: answers that are not a proper HealthCheckResponse fail with what was wrong', async () => {
  let answer: (stream: http2.ServerHttp2Stream) => void = () => undefined;
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.resume();
    stream.on('end', () => answer(stream));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const grpcAnswer = (body: Uint8Array, status = '0') => (stream: http2.ServerHttp2Stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': status }));
    stream.end(body);
  };
  try {
    const probe = () => probeGrpc('127.0.0.1', port, resolved(port), 1000);
    answer = (stream) => stream.respond({ ':status': 404 }, { endStream: true });
    assert.equal((await probe()).reason, 'HTTP status 404 (not a gRPC answer)');
    answer = (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'text/html' });
      stream.end('<html>');
    };
    assert.equal((await probe()).reason, 'content-type "text/html" is not application/grpc');
    answer = grpcAnswer(encodeGrpcMessage(Uint8Array.of(0x08)));
    assert.equal((await probe()).reason, 'malformed HealthCheckResponse: truncated varint');
    answer = grpcAnswer(encodeGrpcMessage(Uint8Array.of(0x0a, 0x01, 0x01)));
    assert.equal((await probe()).reason, 'malformed HealthCheckResponse: HealthCheckResponse.status is not a varint');
    answer = grpcAnswer(new Uint8Array(0));
    assert.equal((await probe()).reason, 'expected one HealthCheckResponse, got 0');
    answer = grpcAnswer(encodeGrpcMessage(Uint8Array.of(0x08, 0x01)), '14');
    assert.equal((await probe()).reason, 'grpc-status 14 UNAVAILABLE');
    // Unknown fields are skipped; the last status wins (protobuf merge).
    answer = grpcAnswer(encodeGrpcMessage(Uint8Array.of(0x08, 0x02, 0x12, 0x01, 0x78, 0x08, 0x01)));
    assert.equal((await probe()).reason, 'SERVING');
    answer = () => undefined; // never answers: the deadline, with grpc-timeout sent
    assert.equal((await probeGrpc('127.0.0.1', port, resolved(port), 200)).reason, 'timeout after 200 ms');
  } finally {
    server.close();
  }
});

test('a checker with a grpc target goes healthy, then unhealthy when the service stops serving', async () => {
  const server = await grpcHealthServer({ statuses: { 'svc.Users': SERVING } });
  const health = new HealthChecker({ active: { intervalMs: 50, timeoutMs: 50, rise: 1, fall: 1 } });
  try {
    const up = nextEvent<TransitionEvent>(health.events, 'transition');
    health.add(`grpc://127.0.0.1:${server.port}/svc.Users`);
    const first = await up;
    assert.equal(first.to, 'healthy');
    assert.equal(first.check, 'grpc service "svc.Users"');
    const down = nextEvent<TransitionEvent>(health.events, 'transition');
    server.statuses.set('svc.Users', NOT_SERVING);
    const second = await down;
    assert.equal(second.to, 'unhealthy');
    assert.equal(second.reason, 'NOT_SERVING');
  } finally {
    await health.close();
    await server.close();
  }
});

test('grpc:// and grpcs:// targets: the path is the service; the key tells services apart', () => {
  assert.deepEqual(parseTargetUrl('grpc://127.0.0.1:50051'), { address: '127.0.0.1:50051', check: { type: 'grpc' } });
  assert.deepEqual(parseTargetUrl('grpc://Example.test:50051/my.pkg.Users'), { address: 'example.test:50051', check: { type: 'grpc', service: 'my.pkg.Users' } });
  assert.deepEqual(parseTargetUrl('grpcs://example.test/a%2Fb'), { address: 'example.test:443', check: { type: 'grpcs', service: 'a/b' } });
  assert.throws(() => parseTargetUrl('grpc://example.test'), /grpc:\/\/ needs a port/);
  assert.throws(() => parseTargetUrl('grpc://example.test:1/x?y=1'), TargetError);
  assert.throws(() => resolveCheck('a:1', { type: 'grpc', service: 'bad\nname' }), /invalid gRPC service name/);
  const a = resolveCheck('a:1', { type: 'grpc', service: 'x' });
  const b = resolveCheck('a:1', { type: 'grpc', service: 'y' });
  assert.notEqual(checkKey('a:1', a), checkKey('a:1', b));
  assert.equal(describeCheck(resolveCheck('a:1', { type: 'grpcs' })), 'grpcs');
  assert.equal((resolveCheck('example.test:443', { type: 'grpcs' }) as ResolvedGrpcCheck).authority, 'example.test');
});

test('health messages: request and response round trip; hostile bytes only ever throw WireError', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (service) => {
      const framed = encodeHealthCheckRequest(service);
      // What UTF-8 can carry of the string (lone surrogates become U+FFFD).
      assert.equal(decodeHealthCheckRequest(framed.subarray(5)), new TextDecoder().decode(new TextEncoder().encode(service)));
    }),
    { numRuns: 200, seed: 17 },
  );
  for (const status of [0, 1, 2, 3, 1000]) assert.equal(decodeHealthCheckResponse(encodeHealthCheckResponse(status)), status);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      for (const decode of [decodeHealthCheckResponse, decodeHealthCheckRequest]) {
        try {
          decode(bytes);
        } catch (error) {
          assert.ok(error instanceof WireError, String(error));
        }
      }
    }),
    { numRuns: 2000, seed: 17 },
  );
});
