// Property-based tests of the HTTP/1.1 parsers (docs/fuzzing.md): the chunked
// decoder against generated encodings split anywhere and against an
// independent RFC 9112 reference, and the decoder and the head parsers
// against llhttp (node:http's parser, strict, in a child `node` process).
// Each property is bounded (fixed seed, about a hundred runs); `npm run fuzz`
// runs them longer with random seeds.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LlhttpOracle, OriginUnavailable, RunTracker, propertyParameters, instantiate, refChunked, renderRequest, renderResponse, requestArb, responseArb } from '@wmproxy/testkit/http-fuzz';
import { ChunkedDecoder, parseRequestHead, parseResponseHead } from '../src/index.js';

// ---------------------------------------------------------------- generators

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,6}$/;
const tokenArb = fc.stringMatching(TOKEN);
/** quoted-string: qdtext and quoted-pairs, obs-text included. */
const quotedArb = fc
  .array(fc.oneof(fc.constantFrom(' ', '\t', 'a', '!', '#', '[', ']', '~', '\x80', '\xff'), fc.constantFrom('\\"', '\\\\', '\\a', '\\ ', '\\\xe9')), { maxLength: 5 })
  .map((parts) => `"${parts.join('')}"`);
const bwsArb = fc.constantFrom('', '', '', ' ', '\t', ' \t');

/** One chunk-ext as RFC 9112 spells it: BWS ";" BWS name [ BWS "=" BWS value ]. */
const extArb = fc
  .tuple(bwsArb, bwsArb, tokenArb, fc.option(fc.tuple(bwsArb, bwsArb, fc.oneof(tokenArb, quotedArb)), { nil: undefined }))
  .map(([before, after, name, value]) => `${before};${after}${name}${value ? `${value[0]}=${value[1]}${value[2]}` : ''}`);
const extsArb = fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.array(extArb, { minLength: 1, maxLength: 2 }).map((e) => e.join('')) });

const trailerArb = fc
  .tuple(tokenArb, fc.constantFrom('', ' ', '\t'), fc.stringMatching(/^[!-~]([ -~\x80-\xff]{0,6}[!-~])?$/), fc.constantFrom('', ' '))
  .map(([name, ows, value, trailing]) => ({ line: `${name}:${ows}${value}${trailing}`, name, value }));

interface Encoding {
  body: Buffer;
  encoded: Buffer;
  trailers: Array<[string, string]>;
  /** Bytes of the next message, after the encoding. */
  next: Buffer;
}

/** A valid chunked encoding of a random body: random chunk sizes, size spellings, extensions, trailers. */
const encodingArb: fc.Arbitrary<Encoding> = fc
  .record({
    body: fc.uint8Array({ maxLength: 200 }),
    cuts: fc.array(fc.nat({ max: 200 }), { maxLength: 5 }),
    sizes: fc.array(fc.record({ upper: fc.boolean(), zeros: fc.nat({ max: 3 }), ext: extsArb }), { minLength: 8, maxLength: 8 }),
    lastZeros: fc.nat({ max: 2 }),
    lastExt: extsArb,
    trailers: fc.array(trailerArb, { maxLength: 2 }),
    next: fc.constantFrom('', 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n', '0\r\n\r\n', 'x', '\r\n'),
  })
  .map(({ body, cuts, sizes, lastZeros, lastExt, trailers, next }) => {
    const data = Buffer.from(body);
    const points = [...new Set(cuts.filter((c) => c > 0 && c < data.length))].sort((a, b) => a - b);
    const parts: Buffer[] = [];
    let start = 0;
    points.push(data.length);
    points.forEach((point, i) => {
      if (point <= start) return;
      const spell = sizes[i % sizes.length]!;
      const hex = (point - start).toString(16);
      const size = '0'.repeat(spell.zeros) + (spell.upper ? hex.toUpperCase() : hex);
      parts.push(Buffer.from(`${size}${spell.ext}\r\n`, 'latin1'), data.subarray(start, point), Buffer.from('\r\n'));
      start = point;
    });
    let tail = `${'0'.repeat(lastZeros + 1)}${lastExt}\r\n`;
    for (const trailer of trailers) tail += `${trailer.line}\r\n`;
    parts.push(Buffer.from(`${tail}\r\n`, 'latin1'));
    return {
      body: data,
      encoded: Buffer.concat(parts),
      trailers: trailers.map((t): [string, string] => [t.name, t.value]),
      next: Buffer.from(next, 'latin1'),
    };
  });

/** A position in [0, 1), uniform (fast-check's doubles crowd towards 0). */
const positionArb = fc.noBias(fc.nat({ max: 999_999 })).map((n) => n / 1_000_000);
/** Split points of a byte string (sorted, inside it). */
const splitsArb = fc.array(positionArb, { maxLength: 6 });

function pieces(bytes: Buffer, splits: number[]): Buffer[] {
  const points = [...new Set(splits.map((s) => Math.floor(s * bytes.length)).filter((p) => p > 0 && p < bytes.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let start = 0;
  for (const point of [...points, bytes.length]) {
    out.push(bytes.subarray(start, point));
    start = point;
  }
  return out;
}

/** Feed `chunks` to a fresh decoder: the decoded body, where the message ended in the stream (or -1), or the error. */
function decode(chunks: Buffer[]): { body: Buffer; end: number; error?: string; decoder: ChunkedDecoder } {
  const decoder = new ChunkedDecoder();
  const out: Buffer[] = [];
  let offset = 0;
  for (const chunk of chunks) {
    const consumed = decoder.push(chunk, { onChunkData: (piece) => out.push(Buffer.from(piece)) });
    if (consumed < 0) return { body: Buffer.concat(out), end: -1, error: decoder.error ?? 'error', decoder };
    if (decoder.done) return { body: Buffer.concat(out), end: offset + consumed, decoder };
    assert.equal(consumed, chunk.length, 'an unfinished message takes every byte it is given');
    offset += chunk.length;
  }
  return { body: Buffer.concat(out), end: -1, decoder };
}

const mutationArb = fc.record({
  at: positionArb,
  op: fc.constantFrom('insert', 'replace', 'delete'),
  byte: fc.constantFrom(0x00, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x2b, 0x2d, 0x30, 0x3b, 0x3d, 0x5c, 0x61, 0x78, 0x7f, 0x80, 0xff),
});

function mutate(bytes: Buffer, mutation: { at: number; op: string; byte: number }): Buffer {
  const at = Math.floor(mutation.at * bytes.length);
  const b = Buffer.from([mutation.byte]);
  if (mutation.op === 'insert') return Buffer.concat([bytes.subarray(0, at), b, bytes.subarray(at)]);
  if (mutation.op === 'replace') return Buffer.concat([bytes.subarray(0, at), b, bytes.subarray(at + 1)]);
  return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
}

// ---------------------------------------------------------------- chunked: pure properties

test('chunked: any valid encoding, split anywhere, decodes to the body and ends exactly where the encoding ends', () => {
  fc.assert(
    fc.property(encodingArb, splitsArb, (encoding, splits) => {
      const stream = Buffer.concat([encoding.encoded, encoding.next]);
      const result = decode(pieces(stream, splits));
      assert.equal(result.error, undefined, `rejected a valid encoding: ${JSON.stringify(encoding.encoded.toString('latin1'))}`);
      assert.equal(result.end, encoding.encoded.length, 'consumed exactly the encoding (no byte of the next message)');
      assert.ok(result.body.equals(encoding.body), 'decoded body');
      assert.equal(result.decoder.bodyBytes, encoding.body.length);
      assert.deepEqual(result.decoder.trailers, encoding.trailers);
    }),
    propertyParameters(300, 0xc0ded),
  );
});

test('chunked: a corrupted encoding is read as the RFC 9112 reference reads it, or rejected, never desynchronised', () => {
  fc.assert(
    fc.property(encodingArb, mutationArb, splitsArb, (encoding, mutation, splits) => {
      const corrupted = mutate(encoding.encoded, mutation);
      const stream = Buffer.concat([corrupted, encoding.next]);
      const ours = decode(pieces(stream, splits));
      const reference = refChunked(stream, 0);
      const shown = JSON.stringify(stream.toString('latin1'));
      if (reference.kind === 'ok') {
        assert.equal(ours.error, undefined, `rejected what the reference accepts: ${shown}`);
        assert.equal(ours.end, reference.consumed, `message end differs: ${shown}`);
        assert.ok(ours.body.equals(reference.value.body), `body differs: ${shown}`);
      } else if (reference.kind === 'error') {
        assert.equal(ours.end, -1, `accepted what the reference rejects (${reference.reason}): ${shown}`);
        assert.notEqual(ours.error, undefined, `waits for more after what the reference rejects (${reference.reason}): ${shown}`);
      } else {
        // The reference waits for more bytes: so may we, or we may already have seen an error.
        assert.equal(ours.end, -1, `finished a message the reference finds incomplete: ${shown}`);
      }
    }),
    propertyParameters(1000, 0xc0de5),
  );
});

test('chunked: extensions follow the ABNF exactly: BWS around ";" and "=", none before the CRLF', () => {
  const accepts = (line: string): boolean => decode([Buffer.from(`${line}\r\nhello\r\n0\r\n\r\n`, 'latin1')]).end > 0;
  for (const good of ['5;a', '5;a=b', '5 ;a=b', '5; a = b', '5;a="b c"', '5;a="\\"";b', '5;a=b ;c', '5;a ;b', '5;a="x" ;b']) assert.ok(accepts(good), good);
  for (const bad of ['5;a=b ', '5;a ', '5;a="x" ', '5;a=b\t', '5 ', '5;', '5;a=', '5;a=b c', '5;a="x"y']) assert.ok(!accepts(bad), bad);
});

test('chunked: a trailer byte that can never be valid is refused when it arrives, before a caller could forward it', () => {
  // Found by the corrupted-encoding property: "0\r\n\r\x00" waited for an LF, and push() had
  // reported the bytes as consumed, so a proxy passed a bare CR (and whatever followed it, up
  // to 16 KiB without an LF) to the origin before the line was checked.
  for (const [start, bad] of [
    ['0\r\nX: a', '\rGET /smuggled HTTP/1.1\r'],
    ['0\r\n', '\r\x00'],
    ['0\r\nX', ' : a\r\n\r\n'],
    ['0\r\nX: a\r\n', ' folded\r\n\r\n'],
    ['0\r\nX: a', '\x00b\r\n\r\n'],
    ['0\r\n', 'X\r\n\r\n'],
  ] as const) {
    const decoder = new ChunkedDecoder();
    assert.equal(decoder.push(Buffer.from(start, 'latin1')), start.length, JSON.stringify(start));
    assert.equal(decoder.push(Buffer.from(bad, 'latin1')), -1, JSON.stringify(start + bad));
    assert.match(decoder.error ?? '', /trailer/);
  }
  const decoder = new ChunkedDecoder();
  const whole = '0\r\nX-A: 1\r\nX-B:\t2 \r\n\r\nNEXT';
  assert.equal(decoder.push(Buffer.from(whole, 'latin1')), whole.length - 4);
  assert.deepEqual(decoder.trailers, [['X-A', '1'], ['X-B', '2']]);
});

// ---------------------------------------------------------------- differential against llhttp

let llhttp: LlhttpOracle | string;

before(async () => {
  try {
    llhttp = await LlhttpOracle.start();
  } catch (error) {
    if (!(error instanceof OriginUnavailable)) throw error;
    llhttp = error.message;
  }
});

after(async () => {
  if (typeof llhttp !== 'string') await llhttp.close();
});

/** fc.assert for an async property, waiting for the last run: at its time limit fast-check stops waiting for one, not the run itself. */
async function assertAsync<A extends [unknown, ...unknown[]]>(property: (runs: RunTracker) => fc.IAsyncPropertyWithHooks<A>, parameters: fc.Parameters<unknown>): Promise<void> {
  const runs = new RunTracker();
  try {
    await fc.assert(property(runs), parameters as fc.Parameters<A>);
  } finally {
    await runs.settled();
  }
}

function oracle(t: { skip(message?: string): void }): LlhttpOracle | undefined {
  if (typeof llhttp === 'string') {
    t.skip(llhttp);
    return undefined;
  }
  return llhttp;
}

const SENTINEL = 'GET /__sentinel HTTP/1.1\r\nHost: s\r\n\r\n';

/**
 * RFC-valid forms that llhttp refuses but the decoder accepts: whitespace
 * around `;` and `=` in chunk extensions, quoted-pairs in quoted values.
 * A proxy forwarding them verbatim gets a 400 from a node:http origin, never
 * a different framing (the first property below checks exactly that).
 */
function knownLaxerChunk(encoded: Buffer): boolean {
  return encoded.toString('latin1').split('\r\n').some((line) => /^[0-9A-Fa-f]+[ \t]*;/.test(line) && /[ \t]|\\/.test(line.slice(line.indexOf(';'))) || /^[0-9A-Fa-f]+[ \t]+;/.test(line));
}

test('chunked vs llhttp: when both accept an encoding they agree on the body and on where the message ends', async (t) => {
  const parser = oracle(t);
  if (!parser) return;
  let laxer = 0;
  await assertAsync((runs) =>
    fc.asyncProperty(encodingArb, fc.option(mutationArb, { nil: undefined }), (encoding, mutation) =>
      runs.track(
        (async () => {
          const encoded = mutation ? mutate(encoding.encoded, mutation) : encoding.encoded;
          const ours = decode([Buffer.concat([encoded, Buffer.from(SENTINEL)])]);
          const head = Buffer.from('POST /first HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n');
          const events = await parser.parseRequests(Buffer.concat([head, encoded, Buffer.from(SENTINEL)]));
          const first = events[0];
          const shown = JSON.stringify(encoded.toString('latin1'));
          if (ours.end < 0) return; // rejected (or incomplete) by us: stricter is fine
          if (first?.type !== 'request') {
            // llhttp refuses what we accept: only the documented RFC-valid extension forms.
            assert.ok(knownLaxerChunk(encoded.subarray(0, ours.end)), `llhttp refuses (${first?.code} ${first?.reason}) an encoding we accept: ${shown}`);
            laxer++;
            return;
          }
          assert.ok(Buffer.from(first.body ?? '', 'base64').equals(ours.body), `llhttp decoded another body: ${shown}`);
          // What follows the message for us is the next request: where we find one, llhttp must find the same.
          const next = parseRequestHead(Buffer.concat([encoded.subarray(ours.end), Buffer.from(SENTINEL)]));
          if (next.kind === 'ok') {
            assert.equal(events[1]?.type, 'request', `llhttp did not read the next request where we did: ${shown}`);
            assert.equal(events[1]?.url, next.head.target, `llhttp read another next request: ${shown}`);
          }
        })(),
      ),
    ),
    propertyParameters(150, 0x11477),
  );
  t.diagnostic(`${laxer} encodings accepted here and refused by llhttp (BWS or quoted-pairs in extensions)`);
});

/**
 * Request heads this parser accepts and llhttp refuses, on purpose: RFC 9110
 * allows them, and a proxy forwards them in a form that cannot be read two
 * ways. Returns why, or undefined.
 */
function knownLaxerRequest(text: string, method: string): string | undefined {
  if (!/^(GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PRI)$/.test(method)) return 'extension method (any token is a method; llhttp knows a fixed list)';
  if (method === 'PRI') return 'PRI method (llhttp expects the HTTP/2 preface)';
  const raw = [...text.matchAll(/\r\ncontent-length:([^\r]*)/gi)].map((m) => m[1]!);
  const lengths = raw.map((v) => v.trim());
  if (lengths.length > 1 || lengths.some((v) => v.includes(','))) return 'Content-Length as a list of one repeated value (RFC 9110 section 8.6; forwarded as one number)';
  if (raw.some((v) => v.includes('\t'))) return 'HTAB as OWS around a Content-Length value (llhttp skips only spaces; the value is forwarded trimmed)';
  if (/^\S+ \S+ HTTP\/1\.[2-9]\r\n/.test(text)) return 'HTTP/1.x with x > 1 (RFC 9110 section 2.5: read as 1.1; forwarded as HTTP/1.1)';
  if (/\r\ntransfer-encoding:[^\r]*(^|,)[ \t]*(,|$)/im.test(text) || /\r\ntransfer-encoding:[ \t]*,/i.test(text) || /\r\ntransfer-encoding:[^\r]*,[ \t]*\r/i.test(text)) {
    return 'empty elements in the Transfer-Encoding list (RFC 9110 section 5.6.1; forwarded as "chunked")';
  }
  // Not RFC-valid: authority-form belongs to CONNECT. Both proxies refuse it after parsing (no route, no absolute URL), so nothing is forwarded.
  if (method !== 'CONNECT' && /^\S+ [^/*\s][^\s]*:\d+ HTTP\//.test(text) && !/^\S+ [a-z][a-z0-9+.-]*:\/\//i.test(text)) return 'authority-form target outside CONNECT (TODO: refuse in the parser)';
  return undefined;
}

test('request heads vs llhttp: what this parser accepts, llhttp accepts with the same framing (or the difference is a documented one)', async (t) => {
  const parser = oracle(t);
  if (!parser) return;
  const known = new Map<string, number>();
  let compared = 0;
  await assertAsync((runs) =>
    fc.asyncProperty(requestArb({ target: 'origin', authorityForm: true }), (spec) =>
      runs.track(
        (async () => {
          const bytes = instantiate(renderRequest({ ...spec, after: { value: '', valid: true } }, 0).text, 'abcdef', '127.0.0.1:12345');
          const result = parseRequestHead(bytes);
          if (result.kind !== 'ok') return; // we refuse: stricter is fine
          const head = result.head;
          // Our framing decision, with a canonical body of that framing.
          let body = Buffer.alloc(0);
          let decoded = Buffer.alloc(0);
          if (head.framing === 'length') {
            if (head.contentLength! > 64) return;
            decoded = body = Buffer.alloc(head.contentLength!, 'x');
          } else if (head.framing === 'chunked') {
            decoded = Buffer.from('hello');
            body = Buffer.from('5\r\nhello\r\n0\r\n\r\n');
          }
          const headBytes = bytes.subarray(0, result.consumed);
          // A next request shows where llhttp ended this one (not after a request that closes the connection).
          const next = head.keepAlive ? Buffer.from(SENTINEL) : Buffer.alloc(0);
          const events = await parser.parseRequests(Buffer.concat([headBytes, body, next]));
          const text = headBytes.toString('latin1');
          const first = events[0];
          const shown = JSON.stringify(text);
          if (first?.type === 'tunnel') {
            // llhttp hands everything after a CONNECT head over as tunnel bytes.
            assert.equal(head.method, 'CONNECT');
            const why = head.framing === 'none' ? 'CONNECT without a body' : 'CONNECT with a body (llhttp: tunnel bytes; here: a body)';
            known.set(why, (known.get(why) ?? 0) + 1);
            return;
          }
          if (first?.type === 'expectation') {
            // node:http answers 417 to an Expect it does not know: not a parsing difference.
            known.set('an unknown Expect (node:http answers 417)', (known.get('an unknown Expect (node:http answers 417)') ?? 0) + 1);
            return;
          }
          if (first?.type !== 'request') {
            const why = knownLaxerRequest(text, head.method);
            assert.ok(why, `llhttp refuses (${first?.code} ${first?.reason}) a head we accept: ${shown}`);
            known.set(why, (known.get(why) ?? 0) + 1);
            return;
          }
          compared++;
          assert.equal(first.method, head.method, shown);
          assert.equal(first.url, head.target, shown);
          assert.ok(Buffer.from(first.body ?? '', 'base64').equals(decoded), `llhttp framed another body: ${shown}`);
          if (head.upgrade !== undefined && events.length === 1) {
            // llhttp gives the rest of an upgrade request's connection to the upgrade handler, HTTP or not.
            known.set('an Upgrade request (llhttp stops parsing after it)', (known.get('an Upgrade request (llhttp stops parsing after it)') ?? 0) + 1);
            return;
          }
          if (head.keepAlive) assert.equal(events[1]?.url, '/__sentinel', `llhttp did not find the next request where we did: ${shown}`);
        })(),
      ),
    ),
    propertyParameters(200, 0x4ead),
  );
  t.diagnostic(`${compared} heads compared; accepted here, refused by llhttp: ${[...known.entries()].map(([why, n]) => `${n}x ${why}`).join('; ') || 'none'}`);
});

test('response heads vs llhttp: what this parser accepts, node:http reads with the same body', async (t) => {
  const parser = oracle(t);
  if (!parser) return;
  const known = new Map<string, number>();
  let compared = 0;
  await assertAsync((runs) =>
    fc.asyncProperty(responseArb, fc.constantFrom('GET', 'HEAD'), (spec, method) =>
      runs.track(
        (async () => {
          const bytes = instantiate(renderResponse({ ...spec, after: { value: '', valid: true } }, 0).text, 'abcdef', '127.0.0.1:12345');
          const result = parseResponseHead(bytes, { requestMethod: method });
          if (result.kind !== 'ok' || result.head.status < 200) return; // refused, or an interim response first
          const head = result.head;
          let body = Buffer.alloc(0);
          let decoded = Buffer.alloc(0);
          if (head.framing === 'length') {
            if (head.contentLength! > 64) return;
            decoded = body = Buffer.alloc(head.contentLength!, 'y');
          } else if (head.framing === 'chunked') {
            decoded = Buffer.from('hello');
            body = Buffer.from('5\r\nhello\r\n0\r\n\r\n');
          } else if (head.framing === 'close') {
            decoded = body = Buffer.from('until-close');
          }
          const headBytes = bytes.subarray(0, result.consumed);
          // Bytes after the message: a reader with another framing would take them as body.
          const trailing = head.framing === 'close' || !head.keepAlive ? Buffer.alloc(0) : Buffer.from('HTTP/1.1 299 Sentinel\r\n\r\n');
          const read = await parser.parseResponse(Buffer.concat([headBytes, body, trailing]), method);
          const shown = JSON.stringify(headBytes.toString('latin1'));
          if (!read.ok) {
            const text = headBytes.toString('latin1');
            const lengths = [...text.matchAll(/\r\ncontent-length:[ \t]*([^\r]*)/gi)].map((m) => m[1]!.trim());
            const why =
              lengths.length > 1 || lengths.some((v) => v.includes(','))
                ? 'Content-Length as a list of one repeated value'
                : /\r\ncontent-length:[^\r]*\t/i.test(text)
                  ? 'HTAB as OWS around a Content-Length value'
                  : /^HTTP\/1\.[2-9] /.test(text)
                    ? 'HTTP/1.x with x > 1 (read as 1.1)'
                    : undefined;
            assert.ok(why, `node:http refuses (${read.code}) a response we accept: ${shown}`);
            known.set(why, (known.get(why) ?? 0) + 1);
            return;
          }
          if (/\r\ntransfer-encoding:([^\r]*,[ \t]*(\r|,)|[ \t]*,)/i.test(headBytes.toString('latin1'))) {
            // node:http's client reads "chunked," as not chunked (until close); RFC 9110 section 5.6.1 says empty
            // list elements do not count. The proxies send their own "Transfer-Encoding: chunked".
            known.set('empty elements in the Transfer-Encoding list', (known.get('empty elements in the Transfer-Encoding list') ?? 0) + 1);
            return;
          }
          compared++;
          assert.equal(read.status, head.status, shown);
          assert.ok(read.body.equals(decoded), `node:http framed another body (${JSON.stringify(read.body.toString('latin1'))}): ${shown}`);
        })(),
      ),
    ),
    propertyParameters(200, 0x4e5b),
  );
  t.diagnostic(`${compared} responses compared; accepted here, refused by node:http: ${[...known.entries()].map(([why, n]) => `${n}x ${why}`).join('; ') || 'none'}`);
});
