import { test } from 'node:test';
import assert from 'node:assert/strict';
import { recordingServer } from '@wmproxy/testkit';
import { RawClient, startProxy } from './helpers.js';

test('a Connection header naming Content-Length cannot smuggle a request to the parent proxy', async () => {
  const parent = await recordingServer();
  const child = await startProxy({ upstream: `http://127.0.0.1:${parent.port}` });
  const client = await RawClient.connect(child.port);
  try {
    // What the front proxy's deny list would refuse if it came as a request of its own.
    const smuggled = 'GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n';
    client.send(`POST http://app.test/form HTTP/1.1\r\nHost: app.test\r\nConnection: Content-Length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
    const [response] = await client.responses(1);
    assert.equal(response?.status, 200);
    assert.equal(parent.seen.length, 1, 'the parent read exactly one request');
    assert.match(parent.seen[0]!.head, /^POST http:\/\/app\.test\/form /);
    assert.match(parent.seen[0]!.head, new RegExp(`\r\nContent-Length: ${smuggled.length}(\r\n|$)`, 'i'));
    assert.equal(parent.seen[0]!.body, smuggled);
  } finally {
    client.close();
    await child.close();
    await parent.close();
  }
});

test('Content-Length: 7, 7 reaches the next hop as one Content-Length: 7', async () => {
  const parent = await recordingServer();
  const child = await startProxy({ upstream: `http://127.0.0.1:${parent.port}` });
  const client = await RawClient.connect(child.port);
  try {
    client.send('POST http://app.test/ HTTP/1.1\r\nHost: app.test\r\nContent-Length: 7, 7\r\n\r\npayload');
    await client.responses(1);
    const lengths = parent.seen[0]!.head.split('\r\n').filter((line) => /^content-length:/i.test(line));
    assert.deepEqual(lengths, ['Content-Length: 7']);
  } finally {
    client.close();
    await child.close();
    await parent.close();
  }
});
