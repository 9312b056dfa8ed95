import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { Logger, NetError } from '@wmproxy/core-net';
import { STALL_AFTER } from '@wmproxy/health';
import { defaultConnector, ReverseProxy, type Connector } from '../src/index.js';
import { startRaw, deadPort, until } from './helpers.js';

function tcpEcho(name: string) {
  return startRaw((socket) => {
    socket.write(`${name}\n`);
    socket.pipe(socket);
  });
}

function talk(port: number, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk.toString();
      if (text.includes(message)) socket.end();
    });
    socket.on('connect', () => socket.write(message));
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
  });
}

test('TCP streams are balanced, and a server refusing connections is skipped with no client-visible error', async () => {
  const one = await tcpEcho('one');
  const two = await tcpEcho('two');
  const dead = await deadPort();
  const proxy = new ReverseProxy({
    upstreams: [{ name: 'tcp', servers: [{ address: one.address }, { address: `127.0.0.1:${dead}` }, { address: two.address }] }],
    streams: [{ protocol: 'tcp', listen: '127.0.0.1:0', upstream: 'tcp' }],
    health: { passive: { enabled: false } },
  });
  await proxy.start();
  try {
    const port = Number(proxy.streams[0]!.addresses[0]!.split(':').pop());
    const greetings: string[] = [];
    for (let i = 0; i < 6; i++) {
      const text = await talk(port, `ping${i}`);
      assert.ok(text.endsWith(`ping${i}`), text);
      greetings.push(text.split('\n')[0]!);
    }
    assert.equal(greetings.filter((g) => g === 'one').length, 3);
    assert.equal(greetings.filter((g) => g === 'two').length, 3);
  } finally {
    await proxy.close();
    await one.close();
    await two.close();
  }
});

test('TCP: a server that accepts and closes (or resets) before any byte is passed over like a refusal, and counted as a failure', async () => {
  const closer = await startRaw((socket) => socket.end()); // e.g. Docker's userland proxy in front of a refusing container
  const resetter = await startRaw((socket) => socket.resetAndDestroy());
  const one = await tcpEcho('one');
  const lines: string[] = [];
  const proxy = new ReverseProxy({
    logger: new Logger({ level: 'warn', json: true, sink: { write: (line: string) => lines.push(line) } }),
    upstreams: [{ name: 'tcp', servers: [{ address: closer.address }, { address: resetter.address }, { address: one.address }] }],
    streams: [{ protocol: 'tcp', listen: '127.0.0.1:0', upstream: 'tcp' }],
    health: { passive: { enabled: false } },
  });
  await proxy.start();
  try {
    const port = Number(proxy.streams[0]!.addresses[0]!.split(':').pop());
    for (let i = 0; i < 6; i++) {
      // Server-speaks-first: the client waits for the greeting, so nothing was exchanged when a server closed.
      const text = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        let received = '';
        socket.on('data', (chunk) => {
          received += chunk.toString();
          if (received === 'one\n') socket.write(`ping${i}`);
          if (received.endsWith(`ping${i}`)) socket.end();
        });
        socket.on('close', () => resolve(received));
        socket.on('error', reject);
      });
      assert.equal(text, `one\nping${i}`, 'every connection ends up on the server that talks');
    }
    // Each bad server is logged as failed: closed (or reset) before any byte, or, when the
    // runtime saw the reset while still connecting, as a failed connect.
    assert.ok(lines.some((line) => line.includes(closer.address) && /before any byte|connect failed/.test(line)), lines.join('\n'));
    assert.ok(lines.some((line) => line.includes(resetter.address) && /ECONNRESET/.test(line)), lines.join('\n'));
  } finally {
    await proxy.close();
    await Promise.all([closer.close(), resetter.close(), one.close()]);
  }
});

test('TCP: client-speaks-first and a client that half-closes before sending still work through the first-byte gate', async () => {
  // No greeting: answers what it reads, and says goodbye on FIN.
  const quiet = await startRaw((socket) => {
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('end', () => socket.end('bye\n'));
  });
  const proxy = new ReverseProxy({
    upstreams: [{ name: 'tcp', servers: [{ address: quiet.address }] }],
    streams: [{ protocol: 'tcp', listen: '127.0.0.1:0', upstream: 'tcp' }],
  });
  await proxy.start();
  try {
    const port = Number(proxy.streams[0]!.addresses[0]!.split(':').pop());
    assert.equal(await talk(port, 'hello'), 'hellobye\n', 'the client spoke first; its FIN after the echo got the goodbye');
    const farewell = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.end());
      let text = '';
      socket.on('data', (chunk) => (text += chunk.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    assert.equal(farewell, 'bye\n', 'the FIN reached the server and its reply came back');
  } finally {
    await proxy.close();
    await quiet.close();
  }
});

test('UDP: each client address gets its own upstream session, closed after the idle timeout', async () => {
  const upstreamSocket = dgram.createSocket('udp4');
  const peers = new Set<string>();
  upstreamSocket.on('message', (message, info) => {
    peers.add(`${info.address}:${info.port}`);
    upstreamSocket.send(Buffer.from(`echo:${message.toString()}`), info.port, info.address);
  });
  await new Promise<void>((resolve) => upstreamSocket.bind(0, '127.0.0.1', () => resolve()));
  const upstreamPort = upstreamSocket.address().port;
  const proxy = new ReverseProxy({
    upstreams: [{ name: 'udp', servers: [{ address: `127.0.0.1:${upstreamPort}` }] }],
    streams: [{ protocol: 'udp', listen: '127.0.0.1:0', upstream: 'udp', idleTimeoutMs: 300 }],
  });
  await proxy.start();
  const clients: dgram.Socket[] = [];
  try {
    const stream = proxy.streams[0]!;
    const port = Number(stream.addresses[0]!.split(':').pop());
    const replies: string[] = [];
    for (const name of ['a', 'b']) {
      const client = dgram.createSocket('udp4');
      clients.push(client);
      client.on('message', (message) => replies.push(`${name}<-${message.toString()}`));
      await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', () => resolve()));
      client.send(`hi-${name}`, port, '127.0.0.1');
      client.send(`again-${name}`, port, '127.0.0.1');
    }
    await until(() => replies.length === 4, 'four replies');
    assert.deepEqual(replies.sort(), ['a<-echo:again-a', 'a<-echo:hi-a', 'b<-echo:again-b', 'b<-echo:hi-b']);
    assert.equal(peers.size, 2, 'one upstream socket per client address');
    assert.equal(stream.udpSessionCount, 2);
    await until(() => stream.udpSessionCount === 0, 'sessions expired');
  } finally {
    for (const client of clients) client.close();
    await proxy.close();
    upstreamSocket.close();
  }
});

test('TCP: a blackholed server (connects never complete) leaves the rotation after a few lost connect races; every connection is served', async () => {
  const one = await tcpEcho('one');
  const hang = '127.0.0.1:9'; // never dialled: the connector stands in for dropped SYNs
  let hangDials = 0;
  const connector: Connector = (server, timeoutMs, signal) => {
    if (server.address !== hang) return defaultConnector(server, timeoutMs, signal);
    hangDials++;
    return new Promise((_, reject) => {
      const timer = setTimeout(() => reject(new NetError('ETIMEDOUT', 'connect timed out')), timeoutMs);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(new NetError('EABORTED', 'aborted'));
      });
    });
  };
  const ejections: string[] = [];
  const proxy = new ReverseProxy({
    hedgeDelayMs: 20,
    timeouts: { connectMs: 10_000 },
    connector,
    upstreams: [{ name: 'tcp', servers: [{ address: hang }, { address: one.address }] }],
    streams: [{ protocol: 'tcp', listen: '127.0.0.1:0', upstream: 'tcp' }],
  });
  let dialsAtEjection = -1;
  proxy.health.events.on('eject', (event) => {
    ejections.push(`${event.target} ${event.reason}`);
    dialsAtEjection = hangDials;
  });
  await proxy.start();
  try {
    const port = Number(proxy.streams[0]!.addresses[0]!.split(':').pop());
    // Round robin sends every other connection to the blackhole until it is out: at least STALL_AFTER
    // of them (after the first, each is hedged at once, and judged once it has had the delay).
    let i = 0;
    for (; i < 400 && (dialsAtEjection < 0 || i < 12); i++) {
      const text = await talk(port, `ping${i}`);
      assert.equal(text, `one\nping${i}`);
    }
    assert.ok(dialsAtEjection >= STALL_AFTER, `ejected after ${dialsAtEjection} dials, ${i} connections`);
    for (let j = 0; j < 10; j++) assert.equal(await talk(port, `more${j}`), `one\nmore${j}`);
    assert.equal(hangDials, dialsAtEjection, 'new connections went to the healthy server once the stalled one was out');
    assert.equal(proxy.health.isStalled(hang), true);
    assert.equal(proxy.health.isAvailable(hang), false);
    assert.deepEqual(ejections.map((line) => line.split(' ')[0]), [hang]);
    assert.match(ejections[0]!, /stalled/, 'reported as a health ejection with its reason');
  } finally {
    await proxy.close();
    await one.close();
  }
});
