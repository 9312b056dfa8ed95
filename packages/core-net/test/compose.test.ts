import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { composeHead, HeadMemo, isComposed, lowerName, nodeRuntime, parseRequestHead, parseResponseHead, runtimeReady, type Runtime } from '../src/index.js';

const runtimes: Runtime[] = [nodeRuntime];
const detected = await runtimeReady();
if (detected.name === 'bun') runtimes.unshift(detected);

const text = (data: Uint8Array): string => Buffer.from(data).toString('latin1');

describe('composeHead', () => {
  test('writes the start line, the fields, the empty line and the first body bytes as one run', () => {
    const out = composeHead('HTTP/1.1 200 OK\r\n', [['Content-Length', '5'], ['X-Obs', 'caf\u00e9']], Buffer.from('hello'));
    assert.equal(text(out), 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Obs: caf\u00e9\r\n\r\nhello');
    assert.equal(out[out.byteLength - 6], 0x0a);
    assert.ok(isComposed(out));
  });

  test('reuses one buffer: a result is only valid until the next call', () => {
    const first = composeHead('GET /a HTTP/1.1\r\n', [['Host', 'x']]);
    const copy = Buffer.from(first);
    composeHead('PUT /b HTTP/1.1\r\n', [['Host', 'y']]);
    assert.equal(text(copy), 'GET /a HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(text(first), 'PUT /b HTTP/1.1\r\nHost: y\r\n\r\n');
  });

  test('takes a range of the body, copied without a view when short', () => {
    const chunk = Buffer.from('HEADhello worldNEXT');
    const out = composeHead('HTTP/1.1 200 OK\r\n', [['Content-Length', '11']], chunk, 4, 15);
    assert.equal(text(out), 'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world');
    const long = Buffer.concat([Buffer.from('HEAD'), Buffer.alloc(1000, 0x62), Buffer.from('NEXT')]);
    assert.equal(text(composeHead('HTTP/1.1 200 OK\r\n', [], long, 4, 1004)), `HTTP/1.1 200 OK\r\n\r\n${'b'.repeat(1000)}`);
  });

  test('HeadMemo composes the same bytes as composeHead, whether the head repeats or changes', () => {
    const memo = new HeadMemo();
    const body = Buffer.from('HEADhello');
    for (let i = 0; i < 40; i++) {
      // Repeats, then a value that changes every time (the memo stops remembering), then repeats again.
      const value = i < 10 || i >= 30 ? 'same' : `v${i}`;
      const fields: Array<[string, string]> = [['Server', 'x'], ['X-V', value]];
      const expected = text(composeHead('HTTP/1.1 200 OK\r\n', fields, body, 4, 9));
      assert.equal(text(memo.compose('HTTP/1.1 200 OK\r\n', fields, body, 4, 9)), expected, `round ${i}`);
      assert.equal(text(memo.compose('HTTP/1.1 200 OK\r\n', fields)), expected.slice(0, -5), `round ${i}, no body`);
    }
    assert.equal(text(memo.compose('HTTP/1.1 404 Not Found\r\n', [['Server', 'x']])), 'HTTP/1.1 404 Not Found\r\nServer: x\r\n\r\n');
    assert.equal(text(memo.compose('HTTP/1.1 404 Not Found\r\n', [])), 'HTTP/1.1 404 Not Found\r\n\r\n');
  });

  test('a message larger than the shared buffer gets its own', () => {
    const body = Buffer.alloc(100 * 1024, 0x61);
    const out = composeHead('HTTP/1.1 200 OK\r\n', [], body);
    assert.equal(out.byteLength, 19 + body.byteLength);
    assert.equal(isComposed(out), false);
    assert.equal(text(out.subarray(0, 19)), 'HTTP/1.1 200 OK\r\n\r\n');
  });
});

describe('parsed strings are reused only for identical bytes', () => {
  test('values of the same length but different bytes stay different', () => {
    for (let i = 0; i < 50; i++) {
      for (const value of ['aaaa', 'aaab', 'baaa', 'AAAA']) {
        const result = parseRequestHead(Buffer.from(`GET /${value} HTTP/1.1\r\nHost: h\r\nX-V: ${value}\r\n\r\n`));
        assert.equal(result.kind, 'ok');
        if (result.kind !== 'ok') return;
        assert.equal(result.head.target, `/${value}`);
        assert.deepEqual(result.head.headers[1], ['X-V', value]);
      }
    }
  });

  test('trailing whitespace is not part of a reused value', () => {
    const a = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nServer: x  \r\nContent-Length: 0\r\n\r\n'));
    const b = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n'));
    assert.ok(a.kind === 'ok' && b.kind === 'ok');
    assert.equal(a.head.headers[0]![1], 'x');
    assert.equal(b.head.headers[0]![1], 'x');
  });

  test('lowerName lower-cases field names', () => {
    assert.equal(lowerName('Content-Length'), 'content-length');
    assert.equal(lowerName('Content-Length'), 'content-length');
    assert.equal(lowerName('x-already-lower'), 'x-already-lower');
  });
});

/** A server that reads nothing until `drain()`, then collects everything until the peer closes. */
async function stalledServer(): Promise<{ port: number; drain(): Promise<Buffer>; close(): Promise<void> }> {
  let socket: net.Socket | undefined;
  let connected!: () => void;
  const accepted = new Promise<void>((resolve) => (connected = resolve));
  const server = net.createServer({ pauseOnConnect: true }, (s) => {
    socket = s;
    connected();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    async drain() {
      await accepted;
      const chunks: Buffer[] = [];
      return new Promise<Buffer>((resolve, reject) => {
        socket!.on('data', (chunk: Buffer) => chunks.push(chunk));
        socket!.on('error', reject);
        socket!.on('end', () => {
          socket!.end();
          resolve(Buffer.concat(chunks));
        });
        socket!.resume();
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

for (const rt of runtimes) {
  test(`the ${rt.name} runtime does not keep a composed head it could not send at once`, async () => {
    const server = await stalledServer();
    const conn = await rt.connectIp({ ip: '127.0.0.1', port: server.port, timeoutMs: 2000 });
    // Fill the socket buffers so that what follows is queued in user space.
    const filler = Buffer.alloc(8 * 1024 * 1024, 0x2e);
    let accepted = conn.write(filler);
    accepted = conn.write(composeHead('HTTP/1.1 200 OK\r\n', [['X-First', 'one']])) && accepted;
    assert.equal(accepted, false, 'the writes should have been queued');
    // Reuse the shared buffer before the queued head went out.
    conn.write(composeHead('HTTP/1.1 204 No Content\r\n', [['X-Second', 'two']]));
    conn.end();
    const received = await server.drain();
    const expected = 'HTTP/1.1 200 OK\r\nX-First: one\r\n\r\nHTTP/1.1 204 No Content\r\nX-Second: two\r\n\r\n';
    assert.equal(received.byteLength, filler.byteLength + expected.length);
    assert.equal(text(received.subarray(filler.byteLength)), expected);
    conn.destroy();
    await server.close();
  });
}

test('HeadMemo.composeWithField: the remembered fields plus one changing field last, byte for byte what composeHead makes of them all', () => {
  const memo = new HeadMemo();
  const fields: Array<[string, string]> = [['Host', 'a.test'], ['X-Forwarded-For', '10.0.0.1']];
  const line = 'GET /x HTTP/1.1\r\n';
  for (let i = 0; i < 40; i++) {
    const value = `00-${String(i).padStart(32, '0')}-${String(i).padStart(16, '0')}-01`;
    const out = Buffer.from(memo.composeWithField(line, fields, 'traceparent', value));
    assert.deepEqual(out, Buffer.from(composeHead(line, [...fields, ['traceparent', value]])), `message ${i}`);
  }
  // A different head is composed whole, then remembered in its turn.
  const other: Array<[string, string]> = [['Host', 'b.test']];
  assert.equal(Buffer.from(memo.composeWithField(line, other, 'traceparent', 'v')).toString('latin1'), 'GET /x HTTP/1.1\r\nHost: b.test\r\ntraceparent: v\r\n\r\n');
});
