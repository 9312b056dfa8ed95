import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  AddressCounts,
  Logger,
  Server,
  nodeRuntime,
  parseAddress,
  processConnections,
  runtimeReady,
  setProcessConnectionLimit,
  setRuntime,
  type ConnHandler,
  type ConnLimitOptions,
  type Runtime,
} from '../src/index.js';

test('AddressCounts: bounds in all and per address, 0 for none, entries gone at zero', () => {
  const counts = new AddressCounts();
  counts.add('a');
  counts.add('a');
  counts.add('b');
  assert.equal(counts.total, 3);
  assert.equal(counts.addresses, 2);
  assert.equal(counts.over('a', 0, 2), 'address');
  assert.equal(counts.over('b', 0, 2), undefined);
  assert.equal(counts.over('c', 3, 0), 'all');
  assert.equal(counts.over('a', 0, 0), undefined);
  counts.remove('a');
  counts.remove('b');
  assert.equal(counts.of('a'), 1);
  assert.equal(counts.of('b'), 0);
  assert.equal(counts.addresses, 1, 'an address at zero leaves the map');
  assert.equal(counts.over('a', 0, 2), undefined);
});

const runtimes: Runtime[] = [nodeRuntime];
const detected = await runtimeReady();
if (detected.name === 'bun') runtimes.unshift(detected);

const GREETING = 'admitted\n';

/** Admitted connections are greeted, then kept open until the client ends them. */
const keepOpen: ConnHandler = {
  data() {},
  end(conn) {
    conn.end();
  },
  close() {},
};

async function limitedServer(limits: ConnLimitOptions, logLines: string[] = []) {
  const logger = new Logger({ level: 'warn', sink: { write: (line: string) => logLines.push(line) } });
  const server = await new Server({
    addresses: [parseAddress('127.0.0.1:0')],
    limits,
    logger,
    onConnection(conn) {
      conn.setHandler(keepOpen);
      conn.write(Buffer.from(GREETING));
    },
  }).start();
  const port = Number(server.boundAddresses[0]!.split(':').pop());
  return { server, port };
}

interface Dialled {
  socket: net.Socket;
  /** The server greeted it (it was counted), rather than closing it. */
  admitted: boolean;
  /** Bytes received before the greeting or the close. */
  received: string;
}

/** Connect (from `localAddress`, another loopback address, when given) and wait for the greeting or the close. */
function dial(port: number, localAddress = '127.0.0.1'): Promise<Dialled> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: false });
    let received = '';
    let settled = false;
    const settle = (admitted: boolean) => {
      if (settled) return;
      settled = true;
      resolve({ socket, admitted, received });
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (received.includes(GREETING)) settle(true);
    });
    socket.on('error', () => settle(false));
    socket.on('close', () => settle(false));
  });
}

function closeAll(dialled: Dialled[]): void {
  for (const { socket } of dialled) socket.destroy();
}

async function until(condition: () => boolean, limitMs = 5000): Promise<void> {
  const giveUpAt = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

for (const rt of runtimes) {
  describe(`connection limits on the ${rt.name} runtime`, () => {
    setRuntime(rt);
    after(() => setRuntime(detected));

    test('refuses a client\'s connection over max_connections_per_ip while the others are open, and accepts it again once one closes', async () => {
      setRuntime(rt);
      const log: string[] = [];
      const { server, port } = await limitedServer({ maxConnectionsPerIp: 3 }, log);
      const open = [await dial(port), await dial(port), await dial(port)];
      assert.deepEqual(open.map((d) => d.admitted), [true, true, true]);
      const over = await dial(port);
      assert.equal(over.admitted, false);
      assert.equal(over.received, '', 'a refused connection is closed without a byte');
      // Another client address is not affected by this one's count.
      const other = await dial(port, '127.0.0.2');
      assert.equal(other.admitted, true);
      assert.equal(server.limit.openFrom('127.0.0.1'), 3);
      open.pop()!.socket.end();
      await until(() => server.limit.openFrom('127.0.0.1') === 2);
      const again = await dial(port);
      assert.equal(again.admitted, true);
      assert.equal(log.filter((line) => line.includes('connection limit reached')).length, 1);
      assert.match(log[0]!, /limit=client max=3 client=127\.0\.0\.1 refused=1/);
      closeAll([...open, other, again]);
      await server.shutdown({ deadlineMs: 1000 });
    });

    test('an accepted connection shown as another peer (showPeer) is counted, and released, under that peer', async () => {
      setRuntime(rt);
      const logger = new Logger({ level: 'warn', sink: { write: () => undefined } });
      const server = await new Server({
        addresses: [parseAddress('127.0.0.1:0')],
        limits: { maxConnectionsPerIp: 2 },
        logger,
        onConnection(conn) {
          // A local front handing over a visitor names it.
          conn.showPeer?.('192.0.2.7', 4000 + conn.remotePort);
          conn.setHandler(keepOpen);
          conn.write(Buffer.from(GREETING));
        },
      }).start();
      const port = Number(server.boundAddresses[0]!.split(':').pop());
      const open = [await dial(port), await dial(port), await dial(port)];
      // Counted under the shown peer: loopback stays free, the shown address has all three.
      assert.deepEqual(open.map((d) => d.admitted), [true, true, true]);
      assert.equal(server.limit.openFrom('127.0.0.1'), 0);
      assert.equal(server.limit.openFrom('192.0.2.7'), 3);
      closeAll(open);
      await until(() => server.limit.open === 0);
      assert.equal(server.limit.openFrom('192.0.2.7'), 0);
      assert.equal(server.limit.openFrom('127.0.0.1'), 0);
      await server.shutdown({ deadlineMs: 1000 });
    });

    test('refuses any client over max_connections, and accepts again once a connection closes', async () => {
      setRuntime(rt);
      const { server, port } = await limitedServer({ maxConnections: 2 });
      const open = [await dial(port, '127.0.0.1'), await dial(port, '127.0.0.2')];
      assert.deepEqual(open.map((d) => d.admitted), [true, true]);
      assert.equal((await dial(port, '127.0.0.3')).admitted, false);
      assert.equal((await dial(port, '127.0.0.1')).admitted, false);
      assert.equal(server.limit.refused, 2);
      open.shift()!.socket.destroy();
      await until(() => server.limit.open === 1);
      const again = await dial(port, '127.0.0.3');
      assert.equal(again.admitted, true);
      closeAll([...open, again]);
      await server.shutdown({ deadlineMs: 1000 });
    });

    test('answers a refused connection with the refusal bytes before closing it', async () => {
      setRuntime(rt);
      const refusal = Buffer.from('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      const { server, port } = await limitedServer({ maxConnections: 1, refusal });
      const first = await dial(port);
      assert.equal(first.admitted, true);
      const over = await new Promise<string>((resolve) => {
        const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
        let text = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => (text += chunk));
        socket.on('error', () => {});
        socket.on('close', () => resolve(text));
      });
      assert.equal(over, refusal.toString());
      closeAll([first]);
      await server.shutdown({ deadlineMs: 1000 });
    });

    test('counts return to zero after clients reset their connections, and the full limit is available again', async () => {
      setRuntime(rt);
      const before = processConnections().open;
      const { server, port } = await limitedServer({ maxConnections: 20, maxConnectionsPerIp: 10 });
      const open: Dialled[] = [];
      for (let i = 0; i < 20; i++) open.push(await dial(port, i % 2 === 0 ? '127.0.0.1' : '127.0.0.2'));
      assert.ok(open.every((d) => d.admitted));
      assert.equal(processConnections().open, before + 20);
      // RST, not FIN: the abrupt end of a client that crashed or was killed.
      for (const { socket } of open) socket.resetAndDestroy();
      await until(() => server.connectionCount === 0);
      assert.equal(server.limit.open, 0);
      assert.equal(server.limit.clients, 0, 'no per-address entry is left behind');
      assert.equal(processConnections().open, before);
      const reopened: Dialled[] = [];
      for (let i = 0; i < 10; i++) reopened.push(await dial(port));
      assert.ok(reopened.every((d) => d.admitted));
      assert.equal((await dial(port)).admitted, false);
      closeAll(reopened);
      await server.shutdown({ deadlineMs: 1000 });
    });

    test('the process limit counts the connections of every listener together', async () => {
      setRuntime(rt);
      const before = processConnections();
      const a = await limitedServer({});
      const b = await limitedServer({});
      setProcessConnectionLimit(before.open + 2);
      try {
        const open = [await dial(a.port), await dial(b.port)];
        assert.deepEqual(open.map((d) => d.admitted), [true, true]);
        assert.equal((await dial(a.port, '127.0.0.2')).admitted, false);
        assert.equal((await dial(b.port, '127.0.0.3')).admitted, false);
        open[0]!.socket.end();
        await until(() => a.server.limit.open === 0);
        const again = await dial(b.port);
        assert.equal(again.admitted, true);
        closeAll([...open, again]);
      } finally {
        setProcessConnectionLimit(before.max);
        await a.server.shutdown({ deadlineMs: 1000 });
        await b.server.shutdown({ deadlineMs: 1000 });
      }
    });

    test('new limits from a reload apply to new connections and leave open ones alone', async () => {
      setRuntime(rt);
      const { server, port } = await limitedServer({ maxConnectionsPerIp: 5 });
      const open = [await dial(port), await dial(port), await dial(port)];
      assert.ok(open.every((d) => d.admitted));
      server.setLimits({ maxConnectionsPerIp: 2 });
      assert.equal((await dial(port)).admitted, false);
      assert.equal(server.connectionCount, 3, 'connections over the new limit stay open');
      open[0]!.socket.end();
      open[1]!.socket.end();
      await until(() => server.limit.open === 1);
      const again = await dial(port);
      assert.equal(again.admitted, true);
      closeAll([...open, again]);
      await server.shutdown({ deadlineMs: 1000 });
    });

    test('rejects a limit that is not a whole number', () => {
      assert.throws(() => new Server({ addresses: [], limits: { maxConnections: -1 }, onConnection() {} }), /maxConnections must be a whole number/);
      assert.throws(() => setProcessConnectionLimit(1.5), /process connection limit/);
    });
  });
}
