import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { http2RequestToHttp1Fields, http1FieldsToHttp2, hostOf } from '../../src/index.js';

describe('HTTP/2 ↔ HTTP/1.1 field translation', () => {
  test('to HTTP/1.1: Host from :authority (over a Host field), cookie crumbs joined, TE dropped', () => {
    const fields = http2RequestToHttp1Fields({
      method: 'GET',
      scheme: 'https',
      authority: 'example.com',
      path: '/',
      headers: ['cookie', 'a=1', 'accept', '*/*', 'host', 'other.example', 'cookie', 'b=2', 'te', 'trailers', 'cookie', 'c=3'],
    });
    assert.deepEqual(fields, [
      ['host', 'example.com'],
      ['accept', '*/*'],
      ['cookie', 'a=1; b=2; c=3'],
    ]);
  });

  test('to HTTP/2: lower-case names; hop-by-hop, Connection-named and Host fields removed; TE only as trailers', () => {
    const out = http1FieldsToHttp2([
      ['Host', 'example.com'],
      ['Content-Type', 'text/plain'],
      ['Connection', 'keep-alive, X-Private'],
      ['Keep-Alive', 'timeout=5'],
      ['X-Private', 'secret'],
      ['Transfer-Encoding', 'chunked'],
      ['Upgrade', 'websocket'],
      ['TE', 'trailers, deflate'],
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
    ]);
    assert.deepEqual(out, ['content-type', 'text/plain', 'set-cookie', 'a=1', 'set-cookie', 'b=2', 'te', 'trailers']);
    assert.deepEqual(http1FieldsToHttp2([['TE', 'gzip']]), []);
    assert.deepEqual(http1FieldsToHttp2([['Content-Length', '5'], ['X-Drop', '1']], new Set(['x-drop'])), ['content-length', '5']);
  });

  test('hostOf finds Host whatever its case', () => {
    assert.equal(hostOf([['accept', '*/*'], ['HOST', 'a.example:8080']]), 'a.example:8080');
    assert.equal(hostOf([]), '');
  });
});
