import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Running, curl, wmproxy } from './helpers.js';

/** The "listening" log line of `wmproxy proxy` on every IPv4 address, with the bound port. */
const listening = /listening .*address=0\.0\.0\.0:(\d+)/;
/** A proxy reachable from other hosts, for the test's duration: credentials and a loopback-only client list guard it. */
const EXPOSED = ['proxy', '--bind', '0.0.0.0:0', '--user', 'alice', '--pass', 's3cret', '--allow', '127.0.0.0/8'];

/** Stands in for the control API on loopback: `POST /stop` answered without a token. */
let victim: Server;
let victimPort = 0;
const hits: string[] = [];
test('setup: a loopback service', async () => {
  victim = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.end('stopped');
  });
  victim.listen(0, '127.0.0.1');
  await once(victim, 'listening');
  victimPort = (victim.address() as AddressInfo).port;
});
after(() => victim?.close());

const status = async (args: string[]) => (await curl(['-o', '/dev/null', '-w', '%{http_code}', ...args])).stdout;

test('wmproxy proxy on a non-loopback bind refuses this host (0.0.0.0, 0, 127.1, [::ffff:127.0.0.1]) over HTTP and CONNECT by default', async () => {
  const proxy = new Running(EXPOSED);
  try {
    const port = await proxy.port(listening);
    const via = `http://alice:s3cret@127.0.0.1:${port}`;
    for (const host of ['0.0.0.0', '0', '127.1', '127.0.0.1', 'localhost', '[::ffff:127.0.0.1]']) {
      assert.equal(await status(['-x', via, '-X', 'POST', `http://${host}:${victimPort}/stop`]), '403', `POST http://${host}:${victimPort}/stop`);
    }
    const tunnel = await curl(['-p', '-x', via, `http://0.0.0.0:${victimPort}/stop`]);
    assert.notEqual(tunnel.code, 0);
    assert.match(tunnel.stderr, /403/);
    assert.deepEqual(hits, [], 'the loopback service was never reached');
    assert.equal(await proxy.stop(), 0);
  } finally {
    proxy.kill();
  }
});

test('wmproxy proxy on a non-loopback bind allows CONNECT to 443 and 8443 only by default; --connect-ports and --deny-dest none change that', async () => {
  const strict = new Running([...EXPOSED, '--deny-dest', 'none']);
  try {
    const port = await strict.port(listening);
    const via = `http://alice:s3cret@127.0.0.1:${port}`;
    assert.equal(await status(['-x', via, `http://127.0.0.1:${victimPort}/plain`]), '200', '--deny-dest none lets loopback through');
    const tunnel = await curl(['-p', '-x', via, `http://127.0.0.1:${victimPort}/tunnelled`]);
    assert.match(tunnel.stderr, /403/, 'CONNECT to a port other than 443 and 8443');
    await strict.stop();
  } finally {
    strict.kill();
  }
  const open = new Running([...EXPOSED, '--deny-dest', 'none', '--connect-ports', `443,${victimPort}`]);
  try {
    const port = await open.port(listening);
    const tunnel = await curl(['-p', '-x', `http://alice:s3cret@127.0.0.1:${port}`, `http://127.0.0.1:${victimPort}/tunnelled`]);
    assert.equal(tunnel.stdout, 'stopped', tunnel.stderr);
    await open.stop();
  } finally {
    open.kill();
  }
  assert.deepEqual(hits.splice(0), ['GET /plain', 'GET /tunnelled']);
});

test('wmproxy proxy refuses a bad --connect-ports and --deny-dest none mixed with CIDRs, with exit 2', async () => {
  for (const [args, message] of [
    [['--connect-ports', '443,0'], '"0" is not a port'],
    [['--connect-ports', 'https'], '"https" is not a port'],
    [['--deny-dest', 'none', '--deny-dest', '10.0.0.0/8'], 'cannot be combined'],
  ] as const) {
    const { code, stderr } = await wmproxy(['proxy', '--bind', '127.0.0.1:0', ...args]);
    assert.equal(code, 2, args.join(' '));
    assert.match(stderr, new RegExp(message));
  }
});
