// The wire side of forwarding a message (http1/forward.ts): what of a
// client's (or a server's) head reaches the next hop. Each case parses real
// bytes with the strict parser, forwards them, and parses what would go out
// again: the next hop must read the same framing, never a hop-by-hop field,
// one Content-Length at most, and never Content-Length with chunked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  FIELD_POLICY,
  FRAMING_DECHUNK,
  FRAMING_KEEP_ALIVE,
  FieldKinds,
  HOP_BY_HOP,
  WIRE_KINDS,
  forwardFields,
  parseRequestHead,
  parseResponseHead,
  requestFraming,
  responseFraming,
  serializeRequestHead,
  type HeaderList,
  type PolicySink,
  type RequestHead,
} from '../src/index.js';

function parse(text: string): RequestHead {
  const result = parseRequestHead(Buffer.from(text, 'latin1'));
  assert.equal(result.kind, 'ok', result.kind === 'error' ? result.reason : 'incomplete');
  return (result as { head: RequestHead }).head;
}

/** What the next hop receives for `head`: Host first (the proxy's), end-to-end fields, framing. */
function forwarded(head: RequestHead, kinds = WIRE_KINDS, sink?: PolicySink): HeaderList {
  const out: HeaderList = [];
  forwardFields(head, kinds, out, sink);
  requestFraming(head, out);
  return out;
}

/** As a forward proxy does it: the client's Host replaced by its own, first. */
const OWN_HOST = new FieldKinds({ host: FIELD_POLICY });

/** The forwarded head as the next hop parses it. */
function reparsed(head: RequestHead): RequestHead {
  return parse(Buffer.from(serializeRequestHead(head.method, head.target, [['Host', 'up'], ...forwarded(head, OWN_HOST)])).toString('latin1'));
}

function names(fields: HeaderList): string[] {
  return fields.map(([name]) => name.toLowerCase());
}

test('hop-by-hop fields and the fields Connection names stay behind; end-to-end ones keep their order', () => {
  const head = parse(
    'GET / HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n' +
      'Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\nX-Secret: s\r\nX-Two: 2\r\n\r\n',
  );
  assert.deepEqual(forwarded(head), [['Host', 'a'], ['X-One', '1'], ['X-Two', '2']]);
});

test('Connection cannot name Content-Length, Transfer-Encoding or Host away', () => {
  const head = parse('POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, host, transfer-encoding\r\nContent-Length: 3\r\n\r\n');
  assert.deepEqual(forwarded(head), [['Host', 'a'], ['Content-Length', '3']]);
});

test('Content-Length goes out once, as the plain number the parser validated', () => {
  for (const spelling of ['Content-Length: 5, 5', 'Content-Length: 05', 'Content-Length: 5\r\nContent-Length: 5', 'content-length:  5 ,5']) {
    const head = parse(`POST / HTTP/1.1\r\nHost: a\r\n${spelling}\r\n\r\n`);
    const out = forwarded(head);
    assert.deepEqual(out.filter(([name]) => name.toLowerCase() === 'content-length'), [['Content-Length', '5']], spelling);
    assert.equal(reparsed(head).contentLength, 5);
  }
});

test('hostile framing never reaches the next hop: the parser refuses it first', () => {
  const hostile = [
    'Content-Length: 5\r\nContent-Length: 6', // conflicting lengths
    'Content-Length: 5, 6',
    'Content-Length: 5\r\nTransfer-Encoding: chunked', // CL + TE (request smuggling)
    'Transfer-Encoding: chunked\r\nContent-Length: 5',
    'Transfer-Encoding: gzip, chunked', // a coding the proxy cannot re-frame
    'Transfer-Encoding: chunked, chunked',
    'Transfer-Encoding: identity',
    'X-A: 1\r\n  folded', // obs-fold
    'X-A: a\rb', // bare CR in a value
    'X-A: a\nX-B: b', // bare LF
    'X-A: a\0b', // NUL
    'X-A : 1', // whitespace before the colon
    'Content-Length: -1',
    'Content-Length: 0x10',
  ];
  for (const fields of hostile) {
    const result = parseRequestHead(Buffer.from(`POST / HTTP/1.1\r\nHost: a\r\n${fields}\r\n\r\n`, 'latin1'));
    assert.equal(result.kind, 'error', JSON.stringify(fields));
  }
  // HTTP/1.0 has no chunked coding: refused rather than read as a body to the close.
  assert.equal(parseRequestHead(Buffer.from('POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n')).kind, 'error');
});

test('a chunked request goes on chunked, with no Content-Length; TE is regenerated, not copied', () => {
  const head = parse('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\nX-A: 1\r\n\r\n');
  assert.deepEqual(forwarded(head), [['Host', 'a'], ['X-A', '1'], ['Transfer-Encoding', 'chunked']]);
  const next = reparsed(head);
  assert.equal(next.framing, 'chunked');
  assert.equal(next.contentLength, undefined);
});

test('an HTTP/1.0 request goes on as HTTP/1.1 with its length; its Connection stays behind', () => {
  const head = parse('POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n');
  assert.deepEqual(forwarded(head), [['Content-Length', '2']]);
  const next = reparsed(head);
  assert.equal(next.version, '1.1');
  assert.equal(next.contentLength, 2);
  assert.equal(next.keepAlive, true);
});

test('an upgrade request keeps Upgrade, with Connection: Upgrade regenerated', () => {
  const head = parse('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n');
  assert.deepEqual(forwarded(head), [['Host', 'a'], ['Sec-WebSocket-Key', 'k'], ['Connection', 'Upgrade'], ['Upgrade', 'websocket']]);
  assert.equal(reparsed(head).upgrade, 'websocket');
  // Upgrade without Connection naming it is not an upgrade: dropped as hop-by-hop.
  assert.deepEqual(names(forwarded(parse('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n'))), ['host']);
});

test('fields of a policy kind go to the sink, whatever their case; without a sink they are dropped', () => {
  const kinds = new FieldKinds({ host: FIELD_POLICY, 'X-Forwarded-For': FIELD_POLICY + 1 });
  const head = parse('GET / HTTP/1.1\r\nHOST: a\r\nx-forwarded-for: 1.2.3.4\r\nX-A: 1\r\n\r\n');
  const seen: Array<[string, number]> = [];
  const sink: PolicySink = { policyField: (field, kind, out) => (seen.push([field[0], kind]), out.push(['X-Seen', field[1]])) };
  assert.deepEqual(forwarded(head, kinds, sink), [['X-Seen', 'a'], ['X-Seen', '1.2.3.4'], ['X-A', '1']]);
  assert.deepEqual(seen, [['HOST', FIELD_POLICY], ['x-forwarded-for', FIELD_POLICY + 1]]);
  assert.deepEqual(forwarded(head, kinds), [['X-A', '1']]);
});

test('wire fields cannot be given a policy kind', () => {
  assert.throws(() => new FieldKinds({ 'Content-Length': FIELD_POLICY }), /wire field/);
  assert.throws(() => new FieldKinds({ connection: FIELD_POLICY }), /wire field/);
  assert.throws(() => new FieldKinds({ host: 1 }), /FIELD_POLICY/);
});

test('the kind cache stays right past its bound (names come from peers)', () => {
  const kinds = new FieldKinds({ host: FIELD_POLICY });
  for (let i = 0; i < 5000; i++) kinds.of(`X-Name-${i}`);
  assert.equal(kinds.of('Host'), FIELD_POLICY);
  assert.equal(kinds.of('Keep-Alive'), 1);
  assert.equal(kinds.of('X-Name-7'), 0);
});

test('response framing: HTTP/1.0 clients get a chunked body decoded and delimited by the close', () => {
  const cases: Array<[number | undefined, boolean, '1.0' | '1.1', boolean, HeaderList, number]> = [
    [5, false, '1.1', true, [['Content-Length', '5']], FRAMING_KEEP_ALIVE],
    [5, false, '1.0', true, [['Content-Length', '5'], ['Connection', 'keep-alive']], FRAMING_KEEP_ALIVE],
    [undefined, true, '1.1', true, [['Transfer-Encoding', 'chunked']], FRAMING_KEEP_ALIVE],
    [undefined, true, '1.0', true, [['Connection', 'close']], FRAMING_DECHUNK],
    [undefined, false, '1.1', false, [['Connection', 'close']], 0],
    [0, false, '1.1', false, [['Content-Length', '0'], ['Connection', 'close']], 0],
  ];
  for (const [length, chunked, version, keepAlive, fields, flags] of cases) {
    const out: HeaderList = [];
    assert.equal(responseFraming(length, chunked, version, keepAlive, out), flags, JSON.stringify([length, chunked, version, keepAlive]));
    assert.deepEqual(out, fields);
  }
});

test('a response forwarded to a client: hop-by-hop out, one normalised length back in', () => {
  const parsed = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 7, 7\r\nKeep-Alive: timeout=1\r\nX-A: a\r\n\r\n'));
  assert.equal(parsed.kind, 'ok');
  const head = (parsed as { head: Parameters<typeof forwardFields>[0] & { contentLength: number | undefined; chunked: boolean } }).head;
  const out: HeaderList = [];
  forwardFields(head, WIRE_KINDS, out);
  responseFraming(head.contentLength, head.chunked, '1.1', true, out);
  assert.deepEqual(out, [['X-A', 'a'], ['Content-Length', '7']]);
});

// ---------------------------------------------------------------- properties

const safeValueArb = fc.stringMatching(/^[!-~]([ -~]{0,8}[!-~])?$/);
/** Fields as a hostile client mixes them: framing, Connection tokens, hop-by-hop ones, plain ones, and bytes that must never pass. */
const fieldArb: fc.Arbitrary<[string, string]> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('Content-Length', 'content-length'), fc.constantFrom('5', '5, 5', '05', '0', '5,5', '6')) },
  { weight: 2, arbitrary: fc.tuple(fc.constant('Transfer-Encoding'), fc.constantFrom('chunked', 'CHUNKED', 'gzip, chunked', 'identity')) },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('Connection', 'connection'), fc.constantFrom('close', 'keep-alive', 'upgrade', 'Upgrade, X-Named', 'x-a', 'content-length', 'host, te')) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('Upgrade', 'Keep-Alive', 'TE', 'Trailer', 'Proxy-Connection', 'Proxy-Authorization'), fc.constantFrom('websocket', 'timeout=5', 'trailers', 'Basic eDp5')) },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('X-A', 'x-b', 'Accept', 'Cookie', 'X-Named'), safeValueArb) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('X-A', 'Content-Length'), fc.constantFrom('a\rb', 'a\nb', 'a\r\n b', 'a\0b', '5\r\nX-Injected: 1', '5\r\n\tfolded')) },
);
const requestArb = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT'),
  version: fc.constantFrom('1.0', '1.1', '1.1'),
  fields: fc.array(fc.tuple(fieldArb, fc.constantFrom(':', ': ', ':\t')), { maxLength: 6 }),
});

test('property: whatever the parser accepts, the next hop frames the same way and sees no hop-by-hop field', () => {
  // The property says nothing of heads the parser refuses: count what it was checked on.
  const seen = { accepted: 0, chunked: 0, upgrades: 0 };
  fc.assert(
    fc.property(requestArb, ({ method, version, fields }) => {
      const text = `${method} / HTTP/${version}\r\nHost: a\r\n${fields.map(([[n, v], sep]) => `${n}${sep}${v}`).join('\r\n')}${fields.length ? '\r\n' : ''}\r\n`;
      const result = parseRequestHead(Buffer.from(text, 'latin1'));
      if (result.kind !== 'ok') return;
      const head = result.head;
      seen.accepted++;
      if (head.chunked) seen.chunked++;
      if (head.upgrade !== undefined) seen.upgrades++;
      const out = forwarded(head, OWN_HOST);
      // Nothing the parser let through can split the forwarded head.
      const bytes = serializeRequestHead(head.method, head.target, [['Host', 'up'], ...out]);
      const next = parseRequestHead(bytes);
      assert.equal(next.kind, 'ok');
      const again = (next as { head: RequestHead }).head;
      assert.equal(again.framing, head.framing);
      assert.equal(again.contentLength, head.contentLength);
      assert.equal(again.chunked, head.chunked);
      assert.equal(again.upgrade, head.upgrade);
      const lowered = names(out);
      assert.ok(lowered.filter((n) => n === 'content-length').length <= 1);
      assert.ok(!(lowered.includes('content-length') && lowered.includes('transfer-encoding')));
      for (const [name, value] of out) {
        const lower = name.toLowerCase();
        if (lower === 'transfer-encoding') assert.equal(value, 'chunked');
        else if (lower === 'connection') assert.equal(value, 'Upgrade');
        else if (lower === 'upgrade') assert.ok(head.upgrade !== undefined);
        else assert.ok(!HOP_BY_HOP.has(lower), `hop-by-hop ${name} forwarded`);
        if (head.connection.includes(lower) && lower !== 'upgrade' && lower !== 'connection') assert.fail(`${name} was named by Connection`);
      }
      // Every other field goes on unchanged, in order.
      const expected = head.headers.filter(([name]) => {
        const lower = name.toLowerCase();
        return !HOP_BY_HOP.has(lower) && lower !== 'content-length' && lower !== 'host' && !head.connection.includes(lower);
      });
      assert.deepEqual(out.slice(0, expected.length), expected);
    }),
    { seed: 14, numRuns: 1000 },
  );
  assert.ok(seen.accepted >= 300 && seen.chunked >= 20 && seen.upgrades >= 5, `checked on too few heads: ${JSON.stringify(seen)}`);
});

const responseFieldArb: fc.Arbitrary<[string, string]> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('Content-Length', 'content-length'), fc.constantFrom('5', '5, 5', '05', '0')) },
  { weight: 2, arbitrary: fc.tuple(fc.constant('Transfer-Encoding'), fc.constantFrom('chunked', 'Chunked')) },
  { weight: 2, arbitrary: fc.tuple(fc.constant('Connection'), fc.constantFrom('close', 'keep-alive', 'X-Hop', 'content-length')) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('Keep-Alive', 'Trailer', 'Proxy-Authenticate', 'X-Hop'), fc.constantFrom('timeout=5', 'X-T', 'Basic')) },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('Server', 'Set-Cookie', 'X-A', 'Content-Type'), safeValueArb) },
);

test('property: a forwarded response frames its body for the client as the upstream did, or de-chunked and closed for HTTP/1.0', () => {
  fc.assert(
    fc.property(
      fc.record({ version: fc.constantFrom('1.0', '1.1'), fields: fc.array(responseFieldArb, { maxLength: 6 }), client: fc.constantFrom<'1.0' | '1.1'>('1.0', '1.1'), keepAlive: fc.boolean() }),
      ({ version, fields, client, keepAlive }) => {
        const parsed = parseResponseHead(Buffer.from(`HTTP/${version} 200 OK\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`, 'latin1'), { requestMethod: 'GET' });
        if (parsed.kind !== 'ok') return;
        const head = parsed.head;
        const out: HeaderList = [];
        forwardFields(head, WIRE_KINDS, out);
        const flags = responseFraming(head.contentLength, head.chunked, client, keepAlive && head.framing !== 'close', out);
        const seen = parseResponseHead(Buffer.from(`HTTP/1.1 200 OK\r\n${out.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`, 'latin1'), { requestMethod: 'GET' });
        assert.equal(seen.kind, 'ok');
        const again = (seen as { head: typeof head }).head;
        if (flags & FRAMING_DECHUNK) {
          assert.equal(client, '1.0');
          assert.equal(again.framing, 'close', 'de-chunked: delimited by the close');
        } else assert.equal(again.framing, head.framing);
        assert.equal(again.contentLength, head.contentLength);
        assert.equal((flags & FRAMING_KEEP_ALIVE) !== 0, again.connection.includes('close') === false);
        const lowered = names(out);
        for (const hop of ['keep-alive', 'trailer', 'proxy-authenticate']) assert.ok(!lowered.includes(hop));
        if (head.connection.includes('x-hop')) assert.ok(!lowered.includes('x-hop'), 'named by Connection');
        assert.ok(lowered.filter((n) => n === 'content-length').length <= 1);
        assert.ok(lowered.filter((n) => n === 'connection').length <= 1);
      },
    ),
    { seed: 14, numRuns: 1000 },
  );
});
