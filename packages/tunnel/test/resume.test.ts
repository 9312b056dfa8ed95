// TLS session resumption of data connections: the client keeps the ticket
// its session (and each data connection) got and offers it on every data
// connection it dials, which then skips the certificate and the signature.
// The pin still holds: a server with another certificate is refused, ticket
// or not; a restarted server (new ticket keys) works with full handshakes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort, trackedServer } from '@wmproxy/testkit';
import { TunnelClient, TunnelServer, parseMapSpec } from '../src/index.js';
import { until, visit } from './helpers.js';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-resume-'));
  dirs.push(dir);
  return dir;
}

function echoServer() {
  return trackedServer((socket) => {
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('end', () => socket.end());
  });
}

/** A TLS tunnel (self-signed in `dir`, pinned), visitors on data connections at open, so each takes one and the pool redials. */
async function start(dir: string, port = 0) {
  return new TunnelServer({ listen: `127.0.0.1:${port}`, token: 'secret', stateDir: dir, heartbeatMs: 1000, dataPool: 2, dataPromoteBytes: 0 }).start();
}

test('data connections resume the TLS session: those after the first handshake are resumed, visitors work', async () => {
  const echo = await echoServer();
  const publicPort = await closedPort();
  const server = await start(stateDir());
  const client = new TunnelClient({ server: `127.0.0.1:${server.port}`, token: 'secret', tls: { fingerprint: server.fingerprint! }, backoffInitialMs: 50, backoffMaxMs: 200, mappings: [parseMapSpec(`svc=tcp:127.0.0.1:${echo.port}:${publicPort}`)] }).start();
  try {
    await client.ready();
    await until(() => server.clients()[0]?.idleDataConnections === 2, 'the pool full');
    // The session's ticket came before the pool was dialled: every data connection resumed it.
    assert.equal(client.status().dataConnections, 2);
    assert.equal(client.status().dataResumed, 2);
    for (let i = 0; i < 3; i++) assert.equal((await visit(publicPort, (socket) => socket.end(`visitor ${i}`))).toString(), `visitor ${i}`);
    assert.equal(server.clients()[0]!.dataStreams, 3, 'each visitor took a data connection');
    await until(() => server.clients()[0]?.idleDataConnections === 2 && client.status().dataConnections === 5, 'the pool refilled');
    assert.equal(client.status().dataResumed, 5, 'the replacements resumed too');
  } finally {
    await client.stop({ deadlineMs: 100 });
    await server.stop({ deadlineMs: 0 });
    await echo.close();
  }
});

test('a restarted server (new ticket keys) works, and one with another certificate is refused although the client holds a session', async () => {
  const echo = await echoServer();
  const publicPort = await closedPort();
  const dir = stateDir();
  let server = await start(dir);
  const port = server.port;
  const client = new TunnelClient({ server: `127.0.0.1:${port}`, token: 'secret', tls: { fingerprint: server.fingerprint! }, backoffInitialMs: 50, backoffMaxMs: 200, mappings: [parseMapSpec(`svc=tcp:127.0.0.1:${echo.port}:${publicPort}`)] }).start();
  try {
    await client.ready();
    await until(() => client.status().dataResumed === 2, 'the pool resumed');
    // Same certificate, new process state: the old ticket resumes nothing; the new session's does.
    let registered = new Promise((resolve) => client.once('registered', resolve));
    await server.stop({ deadlineMs: 0 });
    server = await start(dir, port);
    await registered;
    assert.equal((await visit(publicPort, (socket) => socket.end('after a restart'))).toString(), 'after a restart');
    await until(() => server.clients()[0]?.idleDataConnections === 2, 'the pool full again');
    // Another certificate on the same port: the pin refuses it (a session does not stand in for the certificate).
    const failures: Error[] = [];
    client.on('retry', (error) => failures.push(error));
    await server.stop({ deadlineMs: 0 });
    const impostor = await start(stateDir(), port);
    try {
      await until(() => failures.some((error) => /pinned/.test(error.message)), 'the impostor refused');
      assert.equal(impostor.clients().length, 0);
      assert.equal(client.status().connected, false);
    } finally {
      await impostor.stop({ deadlineMs: 0 });
    }
    registered = new Promise((resolve) => client.once('registered', resolve));
    server = await start(dir, port);
    await registered;
    assert.equal((await visit(publicPort, (socket) => socket.end('back'))).toString(), 'back');
  } finally {
    await client.stop({ deadlineMs: 100 });
    await server.stop({ deadlineMs: 0 });
    await echo.close();
  }
});
