import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { trackedServer } from '@wmproxy/testkit';
import { RawClient, parseResponses, startProxy, type TestProxy } from './helpers.js';

/** Guards a test that would otherwise wait for the proxy's 300 s idle timeout. */
const HANG_GUARD = { timeout: 20_000 };

interface Recorder {
  port: number;
  /** What each connection received, in order of arrival. */
  received: string[];
  connections: number;
  /** Resolves when a connection ends (FIN or reset). */
  ended: Promise<void>;
  /** Resolves once the first connection has received `text`. */
  receivedText(text: string): Promise<void>;
  close(): Promise<void>;
}

/** A TCP target that records what it receives (echoing it when `echo`) and tells when a connection ends. */
async function startRecorder(echo = false): Promise<Recorder> {
  const received: string[] = [];
  const waiters: Array<{ text: string; resolve(): void }> = [];
  let markEnded!: () => void;
  const ended = new Promise<void>((resolve) => (markEnded = resolve));
  const server = await trackedServer((socket: net.Socket) => {
    state.connections++;
    const index = received.push('') - 1;
    socket.on('data', (chunk: Buffer) => {
      received[index] += chunk.toString('latin1');
      if (echo) socket.write(chunk);
      for (const waiter of [...waiters]) {
        if (received[0]!.includes(waiter.text)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
    });
    socket.on('end', markEnded);
    socket.on('close', markEnded);
  });
  const state: Recorder = {
    port: server.port,
    received,
    connections: 0,
    ended,
    receivedText: (text) => (received[0]?.includes(text) ? Promise.resolve() : new Promise((resolve) => waiters.push({ text, resolve }))),
    close: server.close,
  };
  return state;
}

describe('request bodies the proxy must not pass on', () => {
  let proxy: TestProxy;
  before(async () => {
    proxy = await startProxy();
  });
  after(async () => {
    await proxy.close();
  });

  for (const [name, framing] of [
    ['Content-Length', 'Content-Length: 5\r\n\r\nhello'],
    ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
  ] as const) {
    test(`answers 400 to a CONNECT with ${name} and opens no tunnel`, HANG_GUARD, async () => {
      const target = await startRecorder(true);
      try {
        const client = await RawClient.connect(proxy.port);
        client.send(`CONNECT 127.0.0.1:${target.port} HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\n${framing}`);
        const text = await client.waitClosed();
        assert.match(text, /^HTTP\/1\.1 400 /);
        assert.doesNotMatch(text, /hello/, 'the body was not echoed back through a tunnel');
        assert.equal(target.connections, 0, 'the target was never connected');
      } finally {
        await target.close();
      }
    });
  }

  test('accepts a CONNECT with Content-Length: 0 (no content)', async () => {
    const target = await startRecorder(true);
    try {
      const client = await RawClient.connect(proxy.port);
      client.send(`CONNECT 127.0.0.1:${target.port} HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\nContent-Length: 0\r\n\r\n`);
      await client.until((text) => text.includes('\r\n\r\n'));
      client.send('ping');
      const text = await client.until((all) => all.endsWith('ping'));
      assert.match(text, /^HTTP\/1\.1 200 /);
      client.close();
    } finally {
      await target.close();
    }
  });
});

describe('a client that goes away in the middle of a request body', () => {
  let proxy: TestProxy;
  before(async () => {
    // The default idle timeout (300 s): only noticing the client's departure frees the upstream in time.
    proxy = await startProxy();
  });
  after(async () => {
    await proxy.close();
  });

  const head = (port: number) => `POST http://127.0.0.1:${port}/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n`;

  test('closing (FIN) after part of the body closes the upstream connection at once', HANG_GUARD, async () => {
    const target = await startRecorder();
    try {
      const client = await RawClient.connect(proxy.port);
      client.send(head(target.port) + 'x'.repeat(10));
      // Wait until the upstream has the partial body, so the FIN arrives mid-body.
      await target.receivedText('xxxxxxxxxx');
      client.socket.end();
      await target.ended;
      const text = await client.waitClosed();
      assert.equal(parseResponses(text).length, 0, 'no response was made up');
    } finally {
      await target.close();
    }
  });

  test('a head, part of the body and FIN in one packet (while connecting) close the upstream at once', HANG_GUARD, async () => {
    const target = await startRecorder();
    try {
      const client = await RawClient.connect(proxy.port);
      client.socket.end(head(target.port) + 'x'.repeat(10));
      await target.ended;
      await client.waitClosed();
      assert.ok(target.received.every((seen) => seen.length < head(target.port).length + 1000), 'the body never completed');
    } finally {
      await target.close();
    }
  });

  test('a reset after part of the body closes the upstream connection at once', HANG_GUARD, async () => {
    const target = await startRecorder();
    try {
      const client = await RawClient.connect(proxy.port);
      client.send(head(target.port) + 'x'.repeat(10));
      await target.receivedText('xxxxxxxxxx');
      client.socket.resetAndDestroy();
      await target.ended;
    } finally {
      await target.close();
    }
  });
});
