// gRPC through the reverse proxy with real peers: @grpc/grpc-js clients →
// wmproxy (h2c, and h2 over TLS by ALPN) → h2c/h2 upstreams → @grpc/grpc-js
// servers. All four call kinds, trailers and statuses intact, per-call load
// balancing on one channel, the proxy's own failures as gRPC statuses,
// retries only on UNAVAILABLE, deadlines from grpc-timeout, cancellation,
// and a backend killed mid-stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { closedPort, selfSignedCert } from '@wmproxy/testkit';
import { echoClient, grpcEchoServer, spawnGrpcEchoServer, unary, type EchoClient } from '@wmproxy/testkit/grpc';
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


/** A raw HTTP/2 gRPC call (no client-side deadline): the response head and trailers as the proxy sent them. */
function rawCall(address: string, path: string, text: string, headers: Record<string, string> = {}): Promise<{ head: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer; endedAtHead: boolean }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${address}`);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let endedAtHead = false;
    stream.on('response', (h, flags) => {
      head = h;
      endedAtHead = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', reject);
    stream.on('close', () => {
      session.close();
      resolve({ head, trailers, body: Buffer.concat(chunks), endedAtHead });
    });
    const payload = Buffer.from(text);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(payload.byteLength, 1);
    stream.end(Buffer.concat([prefix, payload]));
  });
}

test('failures of the proxy itself are gRPC statuses: HTTP 200, trailers-only, grpc-status and grpc-message', async () => {
  const dead = await closedPort();
  const front = await grpcProxy([{ name: 'gone', servers: [{ address: `127.0.0.1:${dead}`, transport: 'h2c' }] }]);
  const client = echoClient(front.h2c);
  try {
    const raw = await rawCall(front.h2c, '/wmproxy.test.Echo/Unary', 'hi');
    assert.equal(raw.head[':status'], 200, 'not a 502 page');
    assert.equal(raw.endedAtHead, true, 'trailers-only: one HEADERS frame with END_STREAM');
    assert.equal(raw.head['grpc-status'], String(grpc.status.UNAVAILABLE));
    // The reason (which names the upstream's address) goes to the log only, as an HTTP client gets a bare 502 page.
    assert.equal(raw.head['grpc-message'], 'upstream unavailable');
    assert.equal(raw.body.byteLength, 0);
    const outcome = await unary(client, 'hi');
    assert.equal(outcome.code, grpc.status.UNAVAILABLE);
    assert.equal(outcome.details, 'upstream unavailable', 'the proxy’s message, not grpc-js’s "Received HTTP status code"');
    // Not gRPC: the same failure is still a 502 page.
    const page = await rawCall(front.h2c, '/x', 'hi', { 'content-type': 'text/plain' });
    assert.equal(page.head[':status'], 502);
  } finally {
    client.close();
    await front.proxy.close();
  }
});

test('retries: UNAVAILABLE (refused connect or a trailers-only status 14) moves on; other statuses are the answer', async () => {
  const dead = await closedPort();
  const unavailable = await grpcEchoServer({ name: 'unavailable', failAll: grpc.status.UNAVAILABLE });
  const precondition = await grpcEchoServer({ name: 'precondition', failAll: grpc.status.FAILED_PRECONDITION });
  const good = await grpcEchoServer({ name: 'good' });
  const server = (port: number) => ({ address: `127.0.0.1:${port}`, transport: 'h2c' });
  const retrying = await grpcProxy([{ name: 'r', policy: 'first', servers: [server(dead), server(unavailable.port), server(good.port)] }], { retries: { tries: 3 } });
  const final = await grpcProxy([{ name: 'f', policy: 'first', servers: [server(precondition.port), server(good.port)] }], { retries: { tries: 3 } });
  const a = echoClient(retrying.h2c);
  const b = echoClient(final.h2c);
  try {
    for (let i = 0; i < 3; i++) {
      const outcome = await unary(a, `call ${i}`);
      assert.equal(outcome.code, grpc.status.OK, outcome.details);
      assert.equal(outcome.value, `good:call ${i}`, 'the request body was replayed to the next server');
    }
    assert.equal(unavailable.calls.Unary, 3, 'the UNAVAILABLE server was asked, then passed over');
    const failed = await unary(b, 'once');
    assert.equal(failed.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(failed.details, 'precondition fails every call');
    assert.equal(good.calls.Unary, 3, 'a call that got an answer (not UNAVAILABLE) is never sent again');
  } finally {
    a.close();
    b.close();
    await retrying.proxy.close();
    await final.proxy.close();
    for (const s of [unavailable, precondition, good]) await s.close();
  }
});

test('a call whose backend dies before answering is UNAVAILABLE before any response byte: the proxy retries it on the next server', async () => {
  const doomed = await spawnGrpcEchoServer('doomed');
  const steady = await grpcEchoServer({ name: 'steady' });
  const server = (port: number) => ({ address: `127.0.0.1:${port}`, transport: 'h2c' });
  const { proxy, h2c } = await grpcProxy([{ name: 'g', policy: 'first', servers: [server(doomed.port), server(steady.port)] }], { retries: { tries: 2 } });
  const client = echoClient(h2c);
  try {
    const arrived = new Promise<void>((resolve) => {
      let out = '';
      doomed.child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('unary sleep:300')) resolve();
      });
    });
    const call = unary(client, 'sleep:300');
    await arrived;
    await doomed.kill();
    const outcome = await call;
    assert.equal(outcome.code, grpc.status.OK, outcome.details);
    assert.equal(outcome.value, 'steady:sleep:300', 'the call (a POST) was replayed to the next server');
    assert.equal(steady.calls.Unary, 1);
  } finally {
    client.close();
    await proxy.close();
    await doomed.kill();
    await steady.close();
  }
});

/** An h2c server that takes every call and never answers (nor enforces deadlines): counts streams opened and reset, keeps each call's grpc-timeout. */
async function silentServer(): Promise<{ port: number; opened: number; reset: number; timeouts: Array<string | undefined>; close(): Promise<void> }> {
  const server = http2.createServer();
  const state = { port: 0, opened: 0, reset: 0, timeouts: [] as Array<string | undefined>, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  server.on('session', (session) => session.on('error', () => undefined));
  server.on('stream', (stream, headers) => {
    state.opened++;
    state.timeouts.push(headers['grpc-timeout'] as string | undefined);
    stream.on('error', () => undefined);
    stream.on('close', () => state.reset++);
    stream.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as { port: number }).port;
  return state;
}

test('deadlines: grpc-timeout (capped by the request timeout) ends the call with DEADLINE_EXCEEDED, leaves upstream as the time left, and cancels the upstream stream', async () => {
  const silent = await silentServer();
  const slow = await grpcEchoServer({ name: 'slow' });
  const quiet = await grpcProxy([{ name: 'silent', servers: [{ address: `127.0.0.1:${silent.port}`, transport: 'h2c' }] }], { timeouts: { requestMs: 30_000 } });
  const front = await grpcProxy([{ name: 'slow', servers: [{ address: `127.0.0.1:${slow.port}`, transport: 'h2c' }] }], { timeouts: { requestMs: 400 } });
  try {
    // The upstream never answers and knows no deadline: only the proxy's reading of grpc-timeout ends the call.
    const short = await rawCall(quiet.h2c, '/wmproxy.test.Echo/Unary', 'x', { 'grpc-timeout': '200000u' });
    assert.equal(short.head[':status'], 200);
    assert.equal(short.endedAtHead, true);
    assert.equal(short.head['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED));
    assert.match(decodeURIComponent(String(short.head['grpc-message'])), /grpc-timeout 200000u/);
    await until(() => silent.reset === 1, 'the upstream stream was cancelled');
    assert.equal(silent.opened, 1);
    // The deadline leaves as what is left of it, in milliseconds (200000u = 200 ms).
    const forwarded = silent.timeouts[0];
    assert.match(forwarded ?? '', /^\d+m$/, `forwarded grpc-timeout: ${forwarded}`);
    const leftMs = Number(forwarded!.slice(0, -1));
    assert.ok(leftMs >= 1 && leftMs <= 200, `${leftMs} ms left of 200`);
    // What leaves for the upstream is capped too: a hostile deadline and a malformed one both become what is left of 400 ms.
    const silentCapped = await silentServer();
    const capped = await grpcProxy([{ name: 'capped', servers: [{ address: `127.0.0.1:${silentCapped.port}`, transport: 'h2c' }] }], { timeouts: { requestMs: 400 } });
    try {
      for (const sent of ['99999999H', '1.5S']) await rawCall(capped.h2c, '/wmproxy.test.Echo/Unary', 'x', { 'grpc-timeout': sent });
      assert.equal(silentCapped.timeouts.length, 2);
      for (const forwarded of silentCapped.timeouts) {
        assert.match(forwarded ?? '', /^\d+m$/, `forwarded grpc-timeout: ${forwarded}`);
        assert.ok(Number(forwarded!.slice(0, -1)) <= 400, `${forwarded} is more than the 400 ms the proxy allows`);
      }
    } finally {
      await capped.proxy.close();
      await silentCapped.close();
    }
    // A hostile deadline (about 11,000 years) is capped by the configured request timeout.
    const hostile = await rawCall(front.h2c, '/wmproxy.test.Echo/Unary', 'sleep:20000', { 'grpc-timeout': '99999999H' });
    assert.equal(hostile.head['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED));
    // Ended at 400 ms by the proxy, or by the server, which got what was left of those 400 ms as its grpc-timeout.
    assert.match(decodeURIComponent(String(hostile.head['grpc-message'])), /^deadline exceeded$|^Deadline exceeded/);
    await until(() => slow.cancelled === 1, 'the upstream call was cancelled');
    // Malformed values are ignored (the request timeout still applies); a deadline after the head ends the stream with trailers.
    const stream = await rawCall(front.h2c, '/wmproxy.test.Echo/ServerStream', 'count:1000:50', { 'grpc-timeout': '1.5S' });
    assert.equal(stream.head[':status'], 200);
    assert.equal(stream.head['grpc-status'], undefined, 'messages were flowing: the status comes in trailers');
    assert.ok(stream.body.byteLength > 0);
    assert.equal(stream.trailers['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED));
    await until(() => slow.cancelled === 2, 'the streaming upstream call was cancelled');
  } finally {
    await quiet.proxy.close();
    await front.proxy.close();
    await silent.close();
    await slow.close();
  }
});

test('a client cancelling a call (RST_STREAM) cancels the upstream stream', async () => {
  const slow = await grpcEchoServer({ name: 'slow' });
  const front = await grpcProxy([{ name: 'slow', servers: [{ address: `127.0.0.1:${slow.port}`, transport: 'h2c' }] }]);
  const client = echoClient(front.h2c);
  try {
    const unaryCall = client.Unary(Buffer.from('sleep:20000'), new grpc.Metadata(), {}, () => undefined);
    const streaming = client.ServerStream(Buffer.from('count:100000:20'));
    streaming.on('error', () => undefined);
    await until(() => slow.calls.Unary === 1 && slow.calls.ServerStream === 1, 'both calls reached the server');
    await new Promise((resolve) => streaming.once('data', resolve));
    unaryCall.cancel();
    streaming.cancel();
    await until(() => slow.cancelled === 2, 'both upstream calls were cancelled');
    const after = await unary(client, 'still here');
    assert.equal(after.value, 'slow:still here');
  } finally {
    client.close();
    await front.proxy.close();
    await slow.close();
  }
});

test('a backend killed mid-stream: its calls end with UNAVAILABLE, other calls and the proxy carry on', async () => {
  const doomed = await spawnGrpcEchoServer('doomed');
  const steady = await grpcEchoServer({ name: 'steady' });
  const { proxy } = await startProxy({
    upstreams: [
      { name: 'doomed', servers: [{ address: `127.0.0.1:${doomed.port}`, transport: 'h2c' }] },
      { name: 'steady', servers: [{ address: `127.0.0.1:${steady.port}`, transport: 'h2c' }] },
    ],
    servers: [
      { listen: '127.0.0.1:0', http2: 'h2c', vhosts: [{ names: ['doomed'], locations: [{ path: '/', upstream: 'doomed' }] }, { names: ['steady'], locations: [{ path: '/', upstream: 'steady' }] }] },
    ],
  });
  const address = proxy.addresses[0]!;
  const toDoomed = echoClient(address, { channel: { 'grpc.default_authority': 'doomed' } });
  const toSteady = echoClient(address, { channel: { 'grpc.default_authority': 'steady' } });
  try {
    const dying = collect(toDoomed.ServerStream(Buffer.from('count:100000:10')));
    const living = collect(toSteady.ServerStream(Buffer.from('count:40:10')));
    const firstMessage = new Promise<void>((resolve) => {
      const stream = toDoomed.ServerStream(Buffer.from('count:100000:10'));
      stream.on('error', () => undefined);
      stream.once('data', () => resolve());
    });
    await firstMessage;
    await doomed.kill();
    const died = await dying;
    assert.ok(died.messages.length > 0, 'messages flowed before the kill');
    assert.equal(died.status.code, grpc.status.UNAVAILABLE, died.status.details);
    const lived = await living;
    assert.equal(lived.status.code, grpc.status.OK, 'a call on another backend is unaffected');
    assert.equal(lived.messages.length, 40);
    const next = await unary(toDoomed, 'anyone?');
    assert.equal(next.code, grpc.status.UNAVAILABLE, 'new calls to the dead backend: UNAVAILABLE from the proxy');
    assert.equal((await unary(toSteady, 'fine')).value, 'steady:fine');
  } finally {
    toDoomed.close();
    toSteady.close();
    await proxy.close();
    await doomed.kill();
    await steady.close();
  }
});
