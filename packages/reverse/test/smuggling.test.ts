import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, startProxy, rawExchange } from './helpers.js';

const cases: Array<[string, string]> = [
  ['Content-Length and Transfer-Encoding together', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ['two differing Content-Length fields', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde'],
  ['an invalid chunk size', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'],
  ['a chunk size with a 0x prefix', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n'],
  ['a bare LF line ending in the head', 'GET / HTTP/1.1\nHost: a\r\n\r\n'],
  ['a bare CR in a header', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n'],
  ['obsolete line folding', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n'],
  ['a Transfer-Encoding other than chunked last', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'],
  ['whitespace before the colon', 'GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n'],
];

for (const [name, payload] of cases) {
  test(`request smuggling: ${name} is answered 400 and the connection closed`, async () => {
    let completed = 0;
    const backend = await startBackend('b', (req, res) => {
      req.resume();
      req.on('error', () => {});
      req.on('end', () => {
        completed++;
        res.end('reached');
      });
    });
    const { proxy, port } = await startProxy({ upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
    try {
      // A second, valid request follows: it must not be served on the same connection.
      const raw = await rawExchange(port, payload + 'GET /second HTTP/1.1\r\nHost: a\r\n\r\n', 3_000);
      assert.match(raw, /^HTTP\/1\.1 400 /);
      assert.match(raw, /Connection: close/i);
      assert.equal((raw.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'one response, then the connection closed');
      // A bad head never leaves the proxy; a bad chunked body aborts the upstream
      // connection mid-body, so the backend never sees a complete request.
      assert.equal(completed, 0, 'no complete request reached the backend');
      if (!name.includes('chunk size')) assert.equal(backend.hits, 0, 'nothing reached the backend');
    } finally {
      await proxy.close();
      await backend.close();
    }
  });
}
