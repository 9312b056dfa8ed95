import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HpackDecoder, HpackEncoder, huffmanDecode, huffmanEncode, huffmanLength, Http2Error, ErrorCode } from '../../src/index.js';

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const pairs = (list: string[]): Array<[string, string]> => {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < list.length; i += 2) out.push([list[i]!, list[i + 1]!]);
  return out;
};
function decode(decoder: HpackDecoder, block: string): Array<[string, string]> {
  const out: string[] = [];
  decoder.decode(hex(block), out);
  return pairs(out);
}
function tableOf(decoder: HpackDecoder): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 1; i <= decoder.table.count; i++) out.push([decoder.table.name(i), decoder.table.value(i)]);
  return out;
}

// RFC 7541 Appendix C, verbatim.
const REQ1: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']];
const REQ2: Array<[string, string]> = [...REQ1, ['cache-control', 'no-cache']];
const REQ3: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']];
const RESP1: Array<[string, string]> = [[':status', '302'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['location', 'https://www.example.com']];
const RESP2: Array<[string, string]> = [[':status', '307'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['location', 'https://www.example.com']];
const RESP3: Array<[string, string]> = [
  [':status', '200'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'], ['location', 'https://www.example.com'],
  ['content-encoding', 'gzip'], ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
];

describe('HPACK (RFC 7541 Appendix C)', () => {
  test('C.2: literal with indexing, without indexing, never indexed, indexed', () => {
    const d = new HpackDecoder();
    assert.deepEqual(decode(d, '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'), [['custom-key', 'custom-header']]);
    assert.equal(d.table.size, 55);
    assert.deepEqual(decode(d, '040c 2f73 616d 706c 652f 7061 7468'), [[':path', '/sample/path']]);
    assert.deepEqual(decode(d, '1008 7061 7373 776f 7264 0673 6563 7265 74'), [['password', 'secret']]);
    assert.equal(d.table.count, 1);
    assert.deepEqual(decode(d, '82'), [[':method', 'GET']]);
  });

  test('C.3: requests without Huffman share a dynamic table', () => {
    const d = new HpackDecoder();
    assert.deepEqual(decode(d, '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'), REQ1);
    assert.equal(d.table.size, 57);
    assert.deepEqual(decode(d, '8286 84be 5808 6e6f 2d63 6163 6865'), REQ2);
    assert.equal(d.table.size, 110);
    assert.deepEqual(decode(d, '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'), REQ3);
    assert.equal(d.table.size, 164);
    assert.deepEqual(tableOf(d), [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']]);
  });

  test('C.4: the same requests with Huffman', () => {
    const d = new HpackDecoder();
    assert.deepEqual(decode(d, '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'), REQ1);
    assert.deepEqual(decode(d, '8286 84be 5886 a8eb 1064 9cbf'), REQ2);
    assert.deepEqual(decode(d, '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'), REQ3);
    assert.equal(d.table.size, 164);
  });

  test('C.5: responses with a 256-byte table evict the oldest entries', () => {
    const d = new HpackDecoder({ maxTableSize: 256 });
    d.table.resize(256);
    assert.deepEqual(decode(d, `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
      2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`), RESP1);
    assert.equal(d.table.size, 222);
    assert.deepEqual(decode(d, '4803 3330 37c1 c0bf'), RESP2);
    assert.equal(d.table.size, 222);
    assert.deepEqual(decode(d, `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
      54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d
      6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`), RESP3);
    assert.equal(d.table.size, 215);
    assert.deepEqual(tableOf(d), [
      ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
      ['content-encoding', 'gzip'],
      ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
    ]);
  });

  test('C.6: the same responses with Huffman', () => {
    const d = new HpackDecoder({ maxTableSize: 256 });
    d.table.resize(256);
    assert.deepEqual(decode(d, `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
      2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`), RESP1);
    assert.deepEqual(decode(d, '4883 640e ffc1 c0bf'), RESP2);
    assert.deepEqual(decode(d, `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
      77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07`), RESP3);
    assert.equal(d.table.size, 215);
  });

  test('Huffman encoding of the Appendix C strings matches the RFC bytes', () => {
    const cases: Array<[string, string]> = [
      ['www.example.com', 'f1e3c2e5f23a6ba0ab90f4ff'],
      ['no-cache', 'a8eb10649cbf'],
      ['custom-key', '25a849e95ba97d7f'],
      ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07abe941054d444a8200595040b8166e082a62d1bff'],
      ['foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1', '94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007'],
    ];
    for (const [text, coded] of cases) {
      const out = new Uint8Array(huffmanLength(text));
      assert.equal(huffmanEncode(text, out, 0), out.byteLength);
      assert.equal(toHex(out), coded);
    }
  });

  test('the encoder produces C.3-style blocks a decoder reads back, indexing repeats', () => {
    const e = new HpackEncoder({ huffman: false });
    const first = e.encode(REQ1.flat());
    assert.equal(toHex(first), '828684410f7777772e6578616d706c652e636f6d');
    const second = e.encode(REQ2.flat());
    assert.equal(toHex(second), '828684be58086e6f2d6361636865');
  });
});

describe('HPACK limits', () => {
  const fail = (block: Uint8Array, decoder = new HpackDecoder()): Http2Error => {
    try {
      decoder.decode(block, []);
    } catch (error) {
      assert.ok(error instanceof Http2Error);
      assert.equal(error.code, ErrorCode.COMPRESSION_ERROR);
      return error;
    }
    assert.fail('expected a COMPRESSION_ERROR');
  };

  test('rejects index 0, indexes past the tables, truncated and overflowing integers', () => {
    fail(hex('80'));
    fail(hex('be'));
    fail(hex('ff'));
    fail(hex('ff ff ff ff ff 0f'));
    fail(hex('1f ff ff ff ff ff ff 7f'));
  });

  test('rejects strings running past the block and invalid Huffman (EOS, long or zero padding)', () => {
    fail(hex('000a 6162'));
    fail(hex('0081 ff 00')); // 8 ones of padding is too long
    fail(hex('0084 ff ff ff ff 00')); // EOS inside the string
    fail(hex('0081 00 00'));
  });

  test('a table size update must come first and stay within our setting', () => {
    fail(hex('82 20'));
    fail(hex('3fe21f'), new HpackDecoder({ maxTableSize: 4096 })); // 4096 + 1
    const d = new HpackDecoder();
    d.decode(hex('20 82'), []);
    assert.equal(d.table.maxSize, 0);
  });

  test('an HPACK bomb (one big entry referenced many times) is decoded but flagged, not materialised', () => {
    const d = new HpackDecoder({ maxHeaderListSize: 16 * 1024 });
    const value = 'x'.repeat(200);
    const enc = new HpackEncoder({ huffman: false });
    const first = enc.encode(['x-big', value]);
    const refs = new Uint8Array(1000).fill(0xbe); // index 62 = the entry just added
    const block = new Uint8Array(first.byteLength + refs.byteLength);
    block.set(first);
    block.set(refs, first.byteLength);
    const out: string[] = [];
    const result = d.decode(block, out);
    assert.equal(result.tooLarge, true);
    assert.equal(out.length, 0);
    // The table is still in step: a following block can reference the entry.
    const next: string[] = [];
    d.decode(hex('be'), next);
    assert.deepEqual(next, ['x-big', value]);
  });

  test('authorization and short cookies are never indexed; long cookies are', () => {
    const e = new HpackEncoder({ huffman: false });
    const block = e.encode(['authorization', 'Bearer abc', 'cookie', 'a=1', 'cookie', 'session=' + 'z'.repeat(40)]);
    // authorization: 0001 + name index 23 → 0x1f 0x08; cookie (32) short: 0x1f 0x11
    assert.equal(block[0], 0x1f);
    assert.equal(block[1], 23 - 15);
    const d = new HpackDecoder();
    const out: string[] = [];
    d.decode(block, out);
    assert.deepEqual(pairs(out), [['authorization', 'Bearer abc'], ['cookie', 'a=1'], ['cookie', 'session=' + 'z'.repeat(40)]]);
    assert.deepEqual(tableOf(d), [['cookie', 'session=' + 'z'.repeat(40)]]);
  });
});

describe('HPACK properties', () => {
  const name = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
  const value = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 80 });
  const list = fc.array(fc.tuple(fc.oneof(name, fc.constantFrom('content-type', ':path', 'cookie', 'authorization', 'date')), value), { maxLength: 30 });

  test('a sequence of lists survives encode → decode with a shared, evicting table', () => {
    fc.assert(
      fc.property(fc.array(list, { minLength: 1, maxLength: 8 }), fc.integer({ min: 0, max: 4096 }), fc.boolean(), (lists, size, huffman) => {
        const e = new HpackEncoder({ maxTableSize: 4096, huffman });
        const d = new HpackDecoder();
        e.setPeerMaxTableSize(size);
        for (const fields of lists) {
          const out: string[] = [];
          d.decode(e.encode(fields.flat()), out);
          assert.deepEqual(pairs(out), fields);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('Huffman round-trips any bytes', () => {
    fc.assert(
      fc.property(value, (text) => {
        const coded = new Uint8Array(huffmanLength(text));
        huffmanEncode(text, coded, 0);
        const out = new Uint8Array(coded.byteLength * 2 + 8);
        const n = huffmanDecode(coded, 0, coded.byteLength, out);
        assert.equal(String.fromCharCode(...out.subarray(0, n)), text);
      }),
    );
  });

  test('random blocks never crash the decoder: fields or a COMPRESSION_ERROR', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (block) => {
        try {
          new HpackDecoder().decode(block, []);
        } catch (error) {
          assert.ok(error instanceof Http2Error && error.code === ErrorCode.COMPRESSION_ERROR, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('HPACK response heads', () => {
  test('the same header list encodes once, then reuses its bytes; a table size change re-encodes', () => {
    const e = new HpackEncoder();
    const d = new HpackDecoder();
    const headers = ['content-type', 'text/plain', 'content-length', '100', 'server', 'wmproxy'];
    const blocks: string[] = [];
    for (let i = 0; i < 4; i++) {
      const block = e.encodeResponse(200, headers);
      blocks.push(toHex(block));
      const out: string[] = [];
      d.decode(block, out);
      assert.deepEqual(out, [':status', '200', ...headers]);
    }
    assert.notEqual(blocks[0], blocks[1]); // the first adds entries; the second references them
    assert.equal(blocks[1], blocks[2]);
    assert.equal(blocks[2], blocks[3]);
    e.setPeerMaxTableSize(0);
    const after = e.encodeResponse(200, headers);
    const out: string[] = [];
    // The block starts with the size update that empties the peer's table, and references nothing.
    d.decode(after, out);
    assert.deepEqual(out, [':status', '200', ...headers]);
    assert.equal(d.table.count, 0);
  });
});

test('a repeated non-indexed value (date within its second) encodes to the same bytes, and a new one to its own', () => {
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const blocks: Array<[string, string[]]> = [];
  const dates = ['Mon, 07 Dec 2026 12:00:00 GMT', 'Mon, 07 Dec 2026 12:00:00 GMT', 'Mon, 07 Dec 2026 12:00:01 GMT', 'Mon, 07 Dec 2026 12:00:01 GMT'];
  for (const date of dates) {
    const headers = ['date', date, 'etag', `"${date.length}-abcdef"`, 'content-length', '6'];
    blocks.push([toHex(encoder.encodeResponse(200, headers)), headers]);
  }
  for (const [block, headers] of blocks) {
    const out: string[] = [];
    decoder.decode(hex(block), out);
    assert.deepEqual(out, [':status', '200', ...headers]);
  }
  assert.equal(blocks[0]![0], blocks[1]![0]);
  assert.notEqual(blocks[1]![0], blocks[2]![0]);
  assert.equal(blocks[2]![0], blocks[3]![0]);
});
