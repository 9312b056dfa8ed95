import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { startBackend, startProxy, startRaw, deadPort, type Backend } from './helpers.js';
import { SAFE_METHODS } from '../src/index.js';

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** A backend that reads the request until `complete(bytes)` says it is all there, then resets the connection without answering. */
async function resetter(complete: (received: Buffer) => boolean): Promise<Awaited<ReturnType<typeof startRaw>> & { seen: number }> {
  let seen = 0;
  const raw = await startRaw((socket: net.Socket) => {
    seen++;
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (complete(received)) {
        const reset = (socket as net.Socket & { resetAndDestroy?: () => void }).resetAndDestroy;
        if (typeof reset === 'function') reset.call(socket);
        else socket.destroy();
      }
    });
  });
  return Object.defineProperty(raw, 'seen', { get: () => seen }) as typeof raw & { seen: number };
}

/** A node:http backend answering `<method> <length> <sha256>` of the body it received. */
function digestBackend(name: string): Promise<Backend> {
  return startBackend(name, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.end(`${req.method} ${body.byteLength} ${sha(body)}`);
    });
  });
}

function send(url: string, method: string, body: Buffer, chunked = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(body.byteLength) };
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    if (chunked) {
      // Several chunks, so that the proxy sees the body in pieces.
      for (let at = 0; at < body.byteLength; at += 7_000) req.write(body.subarray(at, at + 7_000));
      req.end();
    } else req.end(body);
  });
}

/** The whole request (head, and a Content-Length or chunked body) is in `received`. */
function wholeRequest(received: Buffer): boolean {
  const end = received.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const head = received.subarray(0, end).toString('latin1');
  const length = /\r\ncontent-length: *(\d+)/i.exec(head);
  if (length) return received.byteLength - end - 4 >= Number(length[1]);
  return received.subarray(end).includes('\r\n0\r\n\r\n');
}

/**
 * A proxy over two servers, tried in order: the first resets every request
 * once it has read it whole, the second answers with a digest of the body.
 * PUT is declared safe to send twice (by default only the safe methods are).
 */
async function failingThenGood(options: { bodyBuffer?: number } = {}): Promise<{
  base: string;
  first: { seen: number };
  second: Backend;
  close(): Promise<void>;
}> {
  const first = await resetter(wholeRequest);
  const second = await digestBackend('second');
  const { proxy, base } = await startProxy({
    hedgeDelayMs: 0,
    retries: { ...options, methods: [...SAFE_METHODS, 'PUT'] },
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: first.address }, { address: second.address }] }],
  });
  return {
    base,
    first,
    second,
    close: async () => {
      await proxy.close();
      await first.close();
      await second.close();
    },
  };
}

test('a PUT whose first server resets after reading the body is replayed byte for byte to the next server', async () => {
  const body = randomBytes(40_000);
  const setup = await failingThenGood();
  try {
    const reply = await send(`${setup.base}/doc`, 'PUT', body);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, `PUT ${body.byteLength} ${sha(body)}`);
    assert.equal(setup.first.seen, 1, 'the first server got the request');
    assert.equal(setup.second.hits, 1);
  } finally {
    await setup.close();
  }
});

test('a chunked PUT body is replayed too, its chunk framing intact', async () => {
  const body = randomBytes(30_000);
  const setup = await failingThenGood();
  try {
    const reply = await send(`${setup.base}/doc`, 'PUT', body, true);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, `PUT ${body.byteLength} ${sha(body)}`);
    assert.equal(setup.second.hits, 1);
  } finally {
    await setup.close();
  }
});

test('a body larger than retries.bodyBuffer is streamed without a copy and not retried: the client gets 502', async () => {
  const body = randomBytes(200_000);
  const setup = await failingThenGood({ bodyBuffer: 16 * 1024 });
  try {
    const reply = await send(`${setup.base}/doc`, 'PUT', body, true);
    assert.equal(reply.status, 502);
    assert.equal(setup.second.hits, 0, 'never replayed');
    // Within the buffer, the same setup replays.
    const small = randomBytes(10_000);
    const again = await send(`${setup.base}/doc`, 'PUT', small);
    assert.equal(again.body, `PUT ${small.byteLength} ${sha(small)}`);
  } finally {
    await setup.close();
  }
});

test('bodyBuffer 0 turns replay off: a PUT with a body is not retried after a reset', async () => {
  const setup = await failingThenGood({ bodyBuffer: 0 });
  try {
    assert.equal((await send(`${setup.base}/doc`, 'PUT', randomBytes(1_000))).status, 502);
    assert.equal(setup.second.hits, 0);
  } finally {
    await setup.close();
  }
});

test('a POST is never replayed once sent, but moves on whole when the connect failed', async () => {
  const body = randomBytes(20_000);
  const setup = await failingThenGood();
  const dead = await deadPort();
  const refused = await startProxy({
    hedgeDelayMs: 0,
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: `127.0.0.1:${dead}` }, { address: setup.second.address }] }],
  });
  try {
    assert.equal((await send(`${setup.base}/form`, 'POST', body)).status, 502);
    assert.equal(setup.second.hits, 0);
    const reply = await send(`${refused.base}/form`, 'POST', body);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, `POST ${body.byteLength} ${sha(body)}`);
  } finally {
    await refused.proxy.close();
    await setup.close();
  }
});
