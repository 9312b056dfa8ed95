import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseRequestHead,
  parseResponseHead,
  ChunkedDecoder,
  BodyReader,
  HeadBuffer,
  encodeChunk,
  encodeLastChunk,
  chunkHeader,
  removeHopByHop,
  getHeader,
  getHeaders,
  serializeRequestHead,
  serializeResponseHead,
  simpleResponse,
  HeaderSerialiseError,
  type RequestParseResult,
  type RequestHead,
  type ResponseHead,
} from '../src/index.js';

const bytes = (text: string): Uint8Array => Buffer.from(text, 'latin1');
const text = (data: Uint8Array): string => Buffer.from(data).toString('latin1');

function req(raw: string, limits = {}): RequestParseResult {
  return parseRequestHead(bytes(raw), limits);
}
function okReq(raw: string, limits = {}): RequestHead {
  const result = req(raw, limits);
  assert.equal(result.kind, 'ok', JSON.stringify(result));
  return (result as { head: RequestHead }).head;
}
function errReq(raw: string, status: number, reasonPart?: string, limits = {}): void {
  const result = req(raw, limits);
  assert.equal(result.kind, 'error', `expected ${status} for ${JSON.stringify(raw)}, got ${JSON.stringify(result)}`);
  if (result.kind !== 'error') return;
  assert.equal(result.status, status, `${JSON.stringify(raw)}: ${result.reason}`);
  if (reasonPart) assert.match(result.reason, new RegExp(reasonPart, 'i'));
}
function okRes(raw: string, options = {}): ResponseHead {
  const result = parseResponseHead(bytes(raw), options);
  assert.equal(result.kind, 'ok', JSON.stringify(result));
  return (result as { head: ResponseHead }).head;
}
function errRes(raw: string, reasonPart?: string): void {
  const result = parseResponseHead(bytes(raw));
  assert.equal(result.kind, 'error', JSON.stringify(result));
  if (result.kind === 'error') {
    assert.equal(result.status, 502);
    if (reasonPart) assert.match(result.reason, new RegExp(reasonPart, 'i'));
  }
}

describe('request heads', () => {
  test('parses method, target, version and ordered headers with original case and duplicates', () => {
    const raw = 'GET http://example.com:8080/a?b=c HTTP/1.1\r\nHost: example.com:8080\r\nX-A: 1\r\nset-cookie: a\r\nSet-Cookie: b\r\n\r\nBODY';
    const result = req(raw);
    assert.equal(result.kind, 'ok');
    if (result.kind !== 'ok') return;
    const head = result.head;
    assert.equal(head.method, 'GET');
    assert.equal(head.target, 'http://example.com:8080/a?b=c');
    assert.equal(head.version, '1.1');
    assert.deepEqual(head.headers, [
      ['Host', 'example.com:8080'],
      ['X-A', '1'],
      ['set-cookie', 'a'],
      ['Set-Cookie', 'b'],
    ]);
    assert.equal(head.host, 'example.com:8080');
    assert.equal(result.consumed, raw.length - 4);
    assert.equal(head.framing, 'none');
    assert.equal(head.keepAlive, true);
  });

  test('trims optional whitespace around values and keeps inner whitespace and obs-text bytes', () => {
    const head = okReq('GET / HTTP/1.1\r\nHost: h\r\nX:  \ta b\t \r\nY: caf\xe9\r\nZ:\r\n\r\n');
    assert.deepEqual(head.headers.slice(1), [
      ['X', 'a b'],
      ['Y', 'caf\xe9'],
      ['Z', ''],
    ]);
  });

  test('is incomplete until the empty line arrives, byte by byte', () => {
    const raw = 'POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n';
    for (let i = 0; i < raw.length; i++) assert.equal(req(raw.slice(0, i)).kind, 'incomplete', `at ${i}`);
    const head = okReq(raw);
    assert.equal(head.contentLength, 3);
    assert.equal(head.framing, 'length');
  });

  test('skips empty lines before the request line', () => {
    assert.equal(okReq('\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n').method, 'GET');
  });

  test('derives keep-alive from version and Connection', () => {
    assert.equal(okReq('GET / HTTP/1.1\r\nHost: h\r\n\r\n').keepAlive, true);
    assert.equal(okReq('GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n').keepAlive, false);
    assert.equal(okReq('GET / HTTP/1.0\r\n\r\n').keepAlive, false);
    const keep = okReq('GET / HTTP/1.0\r\nConnection: Keep-Alive, X-Foo\r\n\r\n');
    assert.equal(keep.keepAlive, true);
    assert.deepEqual(keep.connection, ['keep-alive', 'x-foo']);
  });

  test('derives chunked, upgrade, expect-continue and host', () => {
    const chunked = okReq('POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n');
    assert.equal(chunked.chunked, true);
    assert.equal(chunked.framing, 'chunked');
    assert.equal(chunked.contentLength, undefined);
    const ws = okReq('GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    assert.equal(ws.upgrade, 'websocket');
    assert.equal(okReq('GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n').upgrade, undefined);
    assert.equal(okReq('PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n').expectContinue, true);
    assert.equal(okReq('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n').target, 'example.com:443');
  });

  test('treats HTTP/1.x (x > 1) as 1.1 and answers 505 to other majors', () => {
    assert.equal(okReq('GET / HTTP/1.2\r\nHost: h\r\n\r\n').version, '1.1');
    errReq('GET / HTTP/2.0\r\nHost: h\r\n\r\n', 505);
    errReq('GET / HTTP/0.9\r\n\r\n', 505);
  });

  test('accepts identical repeated Content-Length values and lists', () => {
    assert.equal(okReq('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n').contentLength, 5);
    assert.equal(okReq('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n').contentLength, 5);
    assert.equal(okReq('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n').framing, 'length');
  });
});

describe('request smuggling defences', () => {
  const host = 'Host: h\r\n';
  test('rejects Content-Length together with Transfer-Encoding', () => {
    errReq(`POST / HTTP/1.1\r\n${host}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`, 400, 'both');
    errReq(`POST / HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n`, 400, 'both');
  });
  test('rejects differing Content-Length values', () => {
    errReq(`POST / HTTP/1.1\r\n${host}Content-Length: 5\r\nContent-Length: 6\r\n\r\n`, 400, 'conflicting');
    errReq(`POST / HTTP/1.1\r\n${host}Content-Length: 5, 6\r\n\r\n`, 400);
  });
  test('rejects malformed Content-Length', () => {
    for (const value of ['-1', '+5', '0x10', '5 5', '1e3', '', '1234567890123456', ' ,5', '5,']) {
      errReq(`POST / HTTP/1.1\r\n${host}Content-Length: ${value}\r\n\r\n`, 400, undefined);
    }
  });
  test('rejects a Transfer-Encoding whose final coding is not chunked, and unknown codings', () => {
    errReq(`POST / HTTP/1.1\r\n${host}Transfer-Encoding: gzip\r\n\r\n`, 400, 'does not end with chunked');
    errReq(`POST / HTTP/1.1\r\n${host}Transfer-Encoding: chunked, gzip\r\n\r\n`, 400);
    errReq(`POST / HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n`, 400);
    errReq(`POST / HTTP/1.1\r\n${host}Transfer-Encoding: chunked, chunked\r\n\r\n`, 400, 'more than once');
    errReq(`POST / HTTP/1.1\r\n${host}Transfer-Encoding: gzip, chunked\r\n\r\n`, 501, 'unsupported');
    errReq(`POST / HTTP/1.1\r\n${host}Transfer-Encoding: xchunked\r\n\r\n`, 400);
    errReq(`POST / HTTP/1.1\r\n${host}Transfer-Encoding:\r\n\r\n`, 400, 'empty');
    errReq(`POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n`, 400, '1.0');
  });
  test('rejects invalid header names and whitespace before the colon', () => {
    errReq(`GET / HTTP/1.1\r\n${host}Bad Name: x\r\n\r\n`, 400, 'invalid character in header name');
    errReq(`GET / HTTP/1.1\r\n${host}Bad(Name): x\r\n\r\n`, 400, 'header name');
    errReq(`GET / HTTP/1.1\r\n${host}Content-Length : 5\r\n\r\n`, 400, 'whitespace before colon');
    errReq(`GET / HTTP/1.1\r\n${host}: x\r\n\r\n`, 400, 'header name');
    errReq(`GET / HTTP/1.1\r\n${host}NoColon\r\n\r\n`, 400);
    errReq(`GET / HTTP/1.1\r\n${host}N\xe9: x\r\n\r\n`, 400);
  });
  test('rejects obsolete line folding', () => {
    errReq(`GET / HTTP/1.1\r\n${host}X: a\r\n b\r\n\r\n`, 400, 'folding');
    errReq(`GET / HTTP/1.1\r\n${host}X: a\r\n\tb\r\n\r\n`, 400, 'folding');
  });
  test('rejects lone LF line endings, bare CR and NUL bytes', () => {
    errReq('GET / HTTP/1.1\nHost: h\n\n', 400, 'LF');
    errReq(`GET / HTTP/1.1\r\n${host}X: a\n\r\n`, 400, 'LF');
    errReq(`GET / HTTP/1.1\r\n${host}\n`, 400, 'LF');
    errReq(`GET / HTTP/1.1\r\n${host}X: a\rb\r\n\r\n`, 400, 'value');
    errReq(`GET / HTTP/1.1\r\n${host}X: a\x00b\r\n\r\n`, 400, 'value');
    errReq(`GET / HTTP/1.1\r\n${host}X: a\x7fb\r\n\r\n`, 400, 'value');
    errReq(`GET /\x00 HTTP/1.1\r\n${host}\r\n`, 400);
    errReq(`GET / HTTP/1.1\r\r\n${host}\r\n`, 400);
  });
  test('rejects malformed request lines and versions', () => {
    for (const line of [
      'GET  / HTTP/1.1',
      'GET / HTTP/1.1 ',
      'GET /',
      ' GET / HTTP/1.1',
      'GET / http/1.1',
      'GET / HTTP/1',
      'GET / HTTP/1.1x',
      'GET / HTTP/x.1',
      'G(T / HTTP/1.1',
      'GET /a b HTTP/1.1',
      'GET /caf\xe9 HTTP/1.1',
    ]) {
      errReq(`${line}\r\n${host}\r\n`, 400);
    }
  });
  test('rejects a missing Host on HTTP/1.1 (unless disabled) and a repeated Host', () => {
    errReq('GET / HTTP/1.1\r\n\r\n', 400, 'missing Host');
    assert.equal(okReq('GET / HTTP/1.1\r\n\r\n', { requireHost: false }).host, undefined);
    errReq('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400, 'more than one Host');
  });
  test('rejects garbage before the request line is complete', () => {
    // A TLS ClientHello sent to a plain HTTP port.
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    const result = parseRequestHead(hello);
    assert.equal(result.kind, 'error');
    errReq('GET /x HTTQ', 400);
    errReq('GET /x HTTP/1.1x', 400);
    errReq('GET\t/', 400);
    assert.equal(req('GET /x HTTP/1.').kind, 'incomplete');
    errReq(`GET / HTTP/1.1\r\nBad Name`, 400);
    errReq(`GET / HTTP/1.1\r\n folded`, 400, 'folding');
  });
});

describe('limits', () => {
  test('answers 431 when the head is larger than maxHeadSize, complete or not', () => {
    const big = 'X-Big: ' + 'a'.repeat(70 * 1024) + '\r\n';
    errReq(`GET / HTTP/1.1\r\nHost: h\r\n${big}\r\n`, 431);
    errReq(`GET / HTTP/1.1\r\nHost: h\r\n${big}`, 431);
    errReq(`GET / HTTP/1.1\r\nHost: h\r\nX: ${'a'.repeat(200)}\r\n\r\n`, 431, undefined, { maxHeadSize: 100 });
    assert.equal(req(`GET / HTTP/1.1\r\nHost: h\r\nX: ${'a'.repeat(200)}\r\n\r\n`, { maxHeadSize: 1000 }).kind, 'ok');
  });
  test('answers 431 over maxHeaders fields', () => {
    const fields = Array.from({ length: 11 }, (_, i) => `X-${i}: ${i}\r\n`).join('');
    errReq(`GET / HTTP/1.1\r\nHost: h\r\n${fields}\r\n`, 431, 'too many', { maxHeaders: 10 });
    assert.equal(req(`GET / HTTP/1.1\r\nHost: h\r\n${fields}\r\n`, { maxHeaders: 12 }).kind, 'ok');
  });
  test('answers 414 when the request-target is too long, even before the line ends', () => {
    errReq(`GET /${'a'.repeat(100)} HTTP/1.1\r\nHost: h\r\n\r\n`, 414, undefined, { maxTargetLength: 50 });
    errReq(`GET /${'a'.repeat(100)}`, 414, undefined, { maxTargetLength: 50 });
  });
});

describe('response heads', () => {
  test('parses status, reason, headers and framing', () => {
    const head = okRes('HTTP/1.1 200 OK\r\nContent-Length: 12\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n');
    assert.equal(head.status, 200);
    assert.equal(head.reason, 'OK');
    assert.equal(head.framing, 'length');
    assert.equal(head.contentLength, 12);
    assert.deepEqual(getHeaders(head.headers, 'set-cookie'), ['a', 'b']);
    assert.equal(okRes('HTTP/1.1 404 Not Found Here\r\n\r\n').reason, 'Not Found Here');
    assert.equal(okRes('HTTP/1.1 204\r\n\r\n').reason, '');
    assert.equal(okRes('HTTP/1.1 204 \r\n\r\n').reason, '');
  });
  test('reads to close without a length, which ends keep-alive', () => {
    const head = okRes('HTTP/1.1 200 OK\r\n\r\n');
    assert.equal(head.framing, 'close');
    assert.equal(head.keepAlive, false);
    assert.equal(okRes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n').framing, 'chunked');
    assert.equal(okRes('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n').keepAlive, false);
  });
  test('has no body for 1xx, 204, 304, HEAD and a 2xx to CONNECT', () => {
    assert.equal(okRes('HTTP/1.1 100 Continue\r\n\r\n').framing, 'none');
    assert.equal(okRes('HTTP/1.1 204 No Content\r\n\r\n').framing, 'none');
    assert.equal(okRes('HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n').framing, 'none');
    assert.equal(okRes('HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n', { requestMethod: 'HEAD' }).framing, 'none');
    assert.equal(okRes('HTTP/1.1 200 Connection Established\r\n\r\n', { requestMethod: 'CONNECT' }).framing, 'none');
    assert.equal(okRes('HTTP/1.1 407 Nope\r\nContent-Length: 0\r\n\r\n', { requestMethod: 'CONNECT' }).framing, 'length');
  });
  test('rejects malformed status lines and smuggling-prone framing with 502', () => {
    errRes('HTTP/1.1 20 OK\r\n\r\n');
    errRes('HTTP/1.1 2000 OK\r\n\r\n');
    errRes('HTTP/1.1 099 X\r\n\r\n');
    errRes('HTTP/2 200 OK\r\n\r\n');
    errRes('HTTP/1.1 200 OK\nX: y\r\n\r\n', 'LF');
    errRes('ICY 200 OK\r\n\r\n');
    errRes('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', 'both');
    errRes('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n');
    errRes('HTTP/1.1 200 OK\r\nX : y\r\n\r\n', 'whitespace');
    const garbage = parseResponseHead(bytes('SSH-2.0'));
    assert.equal(garbage.kind, 'error');
    assert.equal(parseResponseHead(bytes('HTTP/1.')).kind, 'incomplete');
  });
});

class Collect {
  parts: Uint8Array[] = [];
  onChunkData(piece: Uint8Array): void {
    this.parts.push(piece.slice());
  }
  get text(): string {
    return this.parts.map(text).join('');
  }
}

describe('chunked decoding', () => {
  test('decodes chunks, extensions and trailers, and reports where the message ends', () => {
    const raw = '5\r\nhello\r\n6;name=value;q="a \\"b\\"" ; flag\r\n world\r\n0\r\nX-Sum: 1\r\nX-Other: two\r\n\r\nNEXT';
    const decoder = new ChunkedDecoder();
    const sink = new Collect();
    const consumed = decoder.push(bytes(raw), sink);
    assert.equal(decoder.error, undefined);
    assert.equal(consumed, raw.length - 4);
    assert.equal(decoder.done, true);
    assert.equal(sink.text, 'hello world');
    assert.deepEqual(decoder.trailers, [
      ['X-Sum', '1'],
      ['X-Other', 'two'],
    ]);
  });
  test('gives the same result fed one byte at a time', () => {
    const raw = 'a\r\n0123456789\r\n1;x=y\r\n!\r\n0\r\nT: v\r\n\r\n';
    const decoder = new ChunkedDecoder();
    const sink = new Collect();
    for (let i = 0; i < raw.length; i++) {
      const consumed = decoder.push(bytes(raw[i]!), sink);
      assert.equal(consumed, 1, `at ${i}: ${decoder.error}`);
    }
    assert.equal(decoder.done, true);
    assert.equal(sink.text, '0123456789!');
    assert.equal(decoder.bodyBytes, 11);
  });
  test('passes data through as views of the input, without copying', () => {
    const input = bytes('4\r\nabcd\r\n');
    const pieces: Uint8Array[] = [];
    new ChunkedDecoder().push(input, { onChunkData: (piece) => pieces.push(piece) });
    assert.equal(pieces.length, 1);
    assert.equal(pieces[0]!.buffer, input.buffer);
  });
  test('accepts upper-case hex and leading zeros', () => {
    const decoder = new ChunkedDecoder();
    const sink = new Collect();
    decoder.push(bytes('0000A\r\n0123456789\r\n0\r\n\r\n'), sink);
    assert.equal(decoder.done, true);
    assert.equal(sink.text, '0123456789');
  });
  for (const [name, raw] of [
    ['a 0x prefix', '0x5\r\nhello\r\n0\r\n\r\n'],
    ['a sign', '+5\r\nhello\r\n0\r\n\r\n'],
    ['leading whitespace', ' 5\r\nhello\r\n0\r\n\r\n'],
    ['trailing whitespace without an extension', '5 \r\nhello\r\n0\r\n\r\n'],
    ['an empty size', '\r\nhello\r\n0\r\n\r\n'],
    ['too many hex digits (overflow)', '1' + '0'.repeat(16) + '\r\n'],
    ['a lone LF after the size', '5\nhello\r\n0\r\n\r\n'],
    ['a bare CR after the size', '5\rhello\r\n0\r\n\r\n'],
    ['data longer than the size', '5\r\nhello!\r\n0\r\n\r\n'],
    ['a lone LF after data', '5\r\nhello\n0\r\n\r\n'],
    ['an extension without a name', '5;=x\r\nhello\r\n0\r\n\r\n'],
    ['an extension with a bad char', '5;a@b\r\nhello\r\n0\r\n\r\n'],
    ['an unterminated quoted extension', '5;a="x\r\nhello\r\n0\r\n\r\n'],
    ['a lone LF in an extension', '5;a\nhello\r\n0\r\n\r\n'],
    ['a malformed trailer', '0\r\nBad Trailer: x\r\n\r\n'],
    ['a trailer with a lone LF', '0\r\nX: y\n\r\n'],
    ['a final line with a lone LF', '0\r\n\n'],
  ] as const) {
    test(`rejects ${name}`, () => {
      const decoder = new ChunkedDecoder();
      assert.equal(decoder.push(bytes(raw)), -1);
      assert.ok(decoder.error);
      assert.equal(decoder.push(bytes('0\r\n\r\n')), -1, 'stays failed');
    });
  }
  test('enforces extension and trailer size limits', () => {
    const ext = new ChunkedDecoder({ maxExtensionSize: 10 });
    assert.equal(ext.push(bytes(`1;${'a'.repeat(20)}\r\nx\r\n0\r\n\r\n`)), -1);
    assert.match(ext.error!, /extensions/);
    const trailer = new ChunkedDecoder({ maxTrailerSize: 10 });
    assert.equal(trailer.push(bytes(`0\r\nX: ${'a'.repeat(20)}\r\n\r\n`)), -1);
    assert.match(trailer.error!, /trailers/);
  });
  test('round-trips what the encoders produce', () => {
    const encoded = Buffer.concat([encodeChunk(bytes('abc')), chunkHeader(2), bytes('de\r\n'), encodeChunk(new Uint8Array(0)), encodeLastChunk([['X-T', '1']])]);
    assert.equal(text(encoded), '3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n');
    const decoder = new ChunkedDecoder();
    const sink = new Collect();
    assert.equal(decoder.push(encoded, sink), encoded.length);
    assert.equal(decoder.done, true);
    assert.equal(sink.text, 'abcde');
    assert.equal(text(encodeLastChunk()), '0\r\n\r\n');
  });
});

describe('body reader', () => {
  test('stops a Content-Length body at its end so the next request is left over', () => {
    const reader = new BodyReader('length', 5);
    assert.equal(reader.push(bytes('abc')), 3);
    assert.equal(reader.done, false);
    assert.equal(reader.push(bytes('deGET /')), 2);
    assert.equal(reader.done, true);
    assert.equal(reader.bytes, 5);
  });
  test('counts from an offset: the body bytes that came after a head in the same chunk', () => {
    const reader = new BodyReader('length', 5);
    assert.equal(reader.push(bytes('HEADabc'), undefined, 4), 3);
    assert.equal(reader.push(bytes('deGET /'), undefined, 0), 2);
    assert.equal(reader.done, true);
    const chunked = new BodyReader('chunked');
    assert.equal(chunked.push(bytes('HEAD2\r\nab\r\n0\r\n\r\nrest'), undefined, 4), 12);
    assert.equal(chunked.done, true);
    const close = new BodyReader('close');
    assert.equal(close.push(bytes('HEADanything'), undefined, 4), 8);
    assert.equal(close.bytes, 8);
  });
  test('follows chunked bodies and reports framing errors', () => {
    const reader = new BodyReader('chunked');
    assert.equal(reader.push(bytes('2\r\nab\r\n0\r\n\r\nrest')), 12);
    assert.equal(reader.done, true);
    const bad = new BodyReader('chunked');
    assert.equal(bad.push(bytes('zz\r\n')), -1);
    assert.ok(bad.error);
  });
  test('is done at once for no body, and never for read-to-close', () => {
    assert.equal(new BodyReader('none').done, true);
    assert.equal(new BodyReader('length', 0).done, true);
    const close = new BodyReader('close');
    assert.equal(close.push(bytes('anything')), 8);
    assert.equal(close.done, false);
  });
});

describe('head buffer', () => {
  test('returns the chunk itself when nothing is held and accumulates partial heads', () => {
    const buffer = new HeadBuffer();
    const first = bytes('GET / HTTP/1.1\r\nHo');
    const view1 = buffer.feed(first);
    assert.equal(view1, first);
    assert.equal(parseRequestHead(view1).kind, 'incomplete');
    buffer.keep(view1);
    first.fill(0); // the runtime may reuse its buffer
    const view2 = buffer.feed(bytes('st: h\r\n\r\n'));
    const result = parseRequestHead(view2);
    assert.equal(result.kind, 'ok');
    assert.equal(buffer.size, view2.length);
    buffer.clear();
    assert.equal(buffer.size, 0);
  });
});

describe('header helpers', () => {
  test('removes hop-by-hop fields and those named in Connection, keeping order', () => {
    const headers: Array<[string, string]> = [
      ['Host', 'h'],
      ['Connection', 'keep-alive, X-Secret'],
      ['Keep-Alive', 'timeout=5'],
      ['X-Secret', '1'],
      ['Proxy-Authorization', 'Basic x'],
      ['Proxy-Connection', 'keep-alive'],
      ['TE', 'trailers'],
      ['Trailer', 'X'],
      ['Transfer-Encoding', 'chunked'],
      ['Upgrade', 'h2c'],
      ['Proxy-Authenticate', 'Basic'],
      ['Set-Cookie', 'a'],
      ['set-cookie', 'b'],
    ];
    assert.deepEqual(removeHopByHop(headers), [
      ['Host', 'h'],
      ['Set-Cookie', 'a'],
      ['set-cookie', 'b'],
    ]);
    assert.deepEqual(removeHopByHop([['Content-Length', '1'], ['A', 'b']], new Set(['content-length'])), [['A', 'b']]);
    assert.equal(getHeader(headers, 'x-secret'), '1');
    assert.equal(getHeader(headers, 'missing'), undefined);
  });
  test('serialises heads that parse back identically', () => {
    const raw = serializeRequestHead('POST', '/a?b', [
      ['Host', 'h'],
      ['X-Caf', 'caf\xe9'],
      ['Content-Length', '0'],
    ]);
    const head = okReq(text(raw));
    assert.deepEqual(head.headers[1], ['X-Caf', 'caf\xe9']);
    const response = serializeResponseHead(200, 'OK', [['Content-Length', '0']]);
    assert.equal(text(response), 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  });
  test('refuses to serialise CR/LF injection', () => {
    assert.throws(() => serializeRequestHead('GET', '/', [['X', 'a\r\nInjected: 1']]), HeaderSerialiseError);
    assert.throws(() => serializeRequestHead('GET', '/', [['X Y', 'a']]), HeaderSerialiseError);
    assert.throws(() => serializeRequestHead('GET', '/ x', []), HeaderSerialiseError);
    assert.throws(() => serializeResponseHead(200, 'OK\r\n', []), HeaderSerialiseError);
  });
  test('builds small complete responses', () => {
    const raw = text(simpleResponse(407, { headers: [['Proxy-Authenticate', 'Basic realm="wmproxy"']] }));
    assert.match(raw, /^HTTP\/1\.1 407 Proxy Authentication Required\r\n/);
    assert.match(raw, /Proxy-Authenticate: Basic realm="wmproxy"\r\n/);
    assert.match(raw, /Connection: close\r\n\r\n407 Proxy Authentication Required\n$/);
    const parsed = okRes(raw);
    assert.equal(parsed.contentLength, Buffer.byteLength('407 Proxy Authentication Required\n'));
  });
});
