import fc from 'fast-check';

/**
 * A grammar of HTTP/1.1 requests and responses for the differential fuzzers,
 * built around the framing edge cases request smuggling lives on (HTTP
 * Garden's catalogue): Content-Length and Transfer-Encoding variants and
 * combinations, chunk-size and chunk-extension forms, line endings, trailers,
 * Connection naming framing fields, Host duplicates, absolute-form targets,
 * pipelining, NULs and high bytes, odd methods and versions.
 *
 * Messages render to latin1 templates with fixed-length placeholders, so that
 * a rendered case can be stored as a seed and replayed later against other
 * ports with every length still right:
 * - `@CASE@` (6 chars): a per-case token; request `i` targets `/fz/@CASE@-i`,
 *   a request hidden in a body targets `/fz/@CASE@-sJ`;
 * - `@AUTHORITY_15_@` (15 chars): the origin's `127.0.0.1:NNNNN` (absolute-form targets).
 *
 * Every rendered request says whether it is `valid` (RFC 9112 conformant and
 * accepted by every origin used: a proxy must forward it faithfully) or only
 * `ambiguous` (the proxy may refuse it; whatever it does, it must not desync).
 */

export const CASE = '@CASE@';
export const AUTHORITY = '@AUTHORITY_15_@';

/** A rendered message: latin1 text with placeholders, and notes on what was chosen. */
export interface Rendered {
  text: string;
  valid: boolean;
  notes: string[];
}

/** Fill the placeholders (same lengths, so Content-Length values stay right). */
export function instantiate(template: string, caseToken: string, authority: string): Buffer {
  if (caseToken.length !== CASE.length) throw new Error(`case token must be ${CASE.length} characters`);
  if (authority.length !== AUTHORITY.length) throw new Error(`authority ${authority} is not ${AUTHORITY.length} characters (a 5-digit port on 127.0.0.1 is expected)`);
  return Buffer.from(template.split(CASE).join(caseToken).split(AUTHORITY).join(authority), 'latin1');
}

/** Put the placeholders back into concrete bytes (to store a failing case as a seed). */
export function templateOf(bytes: Buffer, caseToken: string, authority: string): string {
  return bytes.toString('latin1').split(caseToken).join(CASE).split(authority).join(AUTHORITY);
}

/** The fuzz id in a request-target (`/fz/<case>-<n>` or `/fz/<case>-s<n>`, percent-encoding decoded), if any. */
export function fuzzId(target: string): string | undefined {
  let decoded = target;
  try {
    decoded = decodeURIComponent(target);
  } catch {
    // keep it as it is
  }
  return /fz\/([A-Za-z0-9@]{6}-s?\d+)/.exec(decoded)?.[1];
}

// ---------------------------------------------------------------- pieces

interface Choice<T> {
  value: T;
  valid: boolean;
}

function choice<T>(value: T, valid: boolean): Choice<T> {
  return { value, valid };
}

/** Options with weights; the first shrinks best, so it is the plainest. */
function weighted<T>(...options: Array<[number, fc.Arbitrary<T>]>): fc.Arbitrary<T> {
  return fc.oneof(...options.map(([weight, arbitrary]) => ({ weight, arbitrary })));
}

function pick<T>(...values: T[]): fc.Arbitrary<T> {
  return fc.constantFrom(...values);
}

/** A position in [0, 1), uniform: fast-check's own doubles crowd towards 0, and mutations there all hit byte 0. */
const position: fc.Arbitrary<number> = fc.noBias(fc.nat({ max: 999_999 })).map((n) => n / 1_000_000);

const smuggledRequest = (j: number): string => `GET /fz/${CASE}-s${j} HTTP/1.1\r\nHost: fuzz.test\r\n\r\n`;

/** Body bytes: plain, binary, or carrying a request of their own (which must stay body). */
const bodyArb: fc.Arbitrary<string> = weighted<string>(
  [3, pick('', 'hello', 'x'.repeat(17))],
  [2, fc.nat({ max: 1 }).map((j) => smuggledRequest(j))],
  [1, fc.nat({ max: 1 }).map((j) => `0\r\n\r\n${smuggledRequest(j)}`)],
  [
    2,
    fc
      .array(pick('a', 'Z', '0', '5', '\r', '\n', '\r\n', '\x00', '\xff', ';', ' ', 'GET ', 'HTTP/1.1'), { maxLength: 12 })
      .map((parts) => parts.join('')),
  ],
);

/** What follows a request's framed body: usually nothing, sometimes a request the framing must keep apart. */
const afterArb: fc.Arbitrary<Choice<string>> = weighted<Choice<string>>(
  [6, fc.constant(choice('', true))],
  [2, fc.nat({ max: 1 }).map((j) => choice(smuggledRequest(j + 2), true))],
  [1, fc.constant(choice('\r\n', false))],
  [1, pick(choice('garbage\r\n\r\n', false), choice('\x00\x01\x02', false), choice('0\r\n\r\n', false))],
);

type TargetKind = 'origin' | 'query' | 'absolute' | 'absolute-upper' | 'https' | 'dots' | 'fragment' | 'userinfo' | 'asterisk' | 'authority' | 'encoded' | 'double-slash';

function renderTarget(kind: TargetKind, id: string): string {
  const path = `/fz/${id}`;
  switch (kind) {
    case 'origin':
      return path;
    case 'query':
      return `${path}?a=1&b=%20`;
    case 'absolute':
      return `http://${AUTHORITY}${path}`;
    case 'absolute-upper':
      return `HTTP://${AUTHORITY}${path}`;
    case 'https':
      return `https://${AUTHORITY}${path}`;
    case 'dots':
      return `/x/..${path}`;
    case 'fragment':
      return `${path}#frag`;
    case 'userinfo':
      return `http://user@${AUTHORITY}${path}`;
    case 'asterisk':
      return '*';
    case 'authority':
      return AUTHORITY;
    case 'encoded':
      return `/%66z/${id}`;
    case 'double-slash':
      return `/${path}`;
  }
}

const VALID_TARGETS = new Set<TargetKind>(['origin', 'query', 'absolute', 'absolute-upper']);

/** How the proxy under test is addressed: origin-form (reverse) or absolute-form (forward). */
export interface GrammarProfile {
  /** The plain target form for this proxy. */
  target: 'origin' | 'absolute';
  /** Authority-form (CONNECT host:port) is allowed (not for the forward proxy: it opens a real tunnel). */
  authorityForm: boolean;
}

function targetArb(profile: GrammarProfile): fc.Arbitrary<TargetKind> {
  const odd: TargetKind[] = ['https', 'dots', 'fragment', 'userinfo', 'asterisk', 'encoded', 'double-slash'];
  if (profile.authorityForm) odd.push('authority');
  return weighted<TargetKind>(
    [10, fc.constant(profile.target)],
    [2, pick<TargetKind>(profile.target === 'origin' ? 'absolute' : 'absolute-upper', 'query')],
    [1, pick(...odd)],
  );
}

const methodArb: fc.Arbitrary<Choice<string>> = weighted<Choice<string>>(
  [8, pick(choice('GET', true), choice('POST', true), choice('PUT', true))],
  [2, pick(choice('DELETE', true), choice('PATCH', true), choice('OPTIONS', true), choice('HEAD', true))],
  [1, pick(choice('CONNECT', false), choice('TRACE', false), choice('get', false), choice('FOO', false), choice('PRI', false), choice('GET\x00', false))],
);

const versionArb: fc.Arbitrary<Choice<string>> = weighted<Choice<string>>(
  [12, fc.constant(choice('HTTP/1.1', true))],
  [2, fc.constant(choice('HTTP/1.0', true))],
  [1, pick(choice('HTTP/1.2', false), choice('HTTP/2.0', false), choice('http/1.1', false), choice('HTTP/1.1 ', false), choice('HTTP/01.1', false), choice('HTTP/1.10', false))],
);

type HostKind = Choice<string[]>;

const hostArb: fc.Arbitrary<HostKind> = weighted<HostKind>(
  [14, fc.constant(choice(['Host: fuzz.test'], true))],
  [2, pick(choice([`Host: ${AUTHORITY}`], true), choice([], true))],
  [1, pick(choice(['Host: fuzz.test', 'Host: fuzz.test'], false), choice(['Host: fuzz.test', 'Host: evil.test'], false))],
  [
    2,
    pick(
      choice(['Host: a b'], false),
      choice(['Host: a/b'], false),
      choice(['Host: '], false),
      choice(['Host: a@b'], false),
      choice(['Host: [::1'], false),
      choice(['Host: fuzz.test:99999'], false),
      choice(['Host: fuzz.test:'], false),
      choice(['Host: fuzz.test, evil.test'], false),
      choice(['Host: \xe9vil.test'], false),
      choice(['Host: fuzz.test\x00evil'], false),
      choice(['Host : fuzz.test'], false),
      choice(['host: fuzz.test'], true),
    ),
  ],
);

// ---------------------------------------------------------------- framing

type Framing =
  | { kind: 'none' }
  | { kind: 'cl'; value: (n: number) => Choice<string>; dup?: (n: number) => string }
  | { kind: 'te'; lines: Choice<string[]>; chunking: Chunking }
  | { kind: 'cl+te'; cl: string; lines: string[]; chunking: Chunking; clFirst: boolean }
  | { kind: 'raw'; lines: string[]; chunked: boolean; chunking: Chunking };

const clValueArb: fc.Arbitrary<(n: number) => Choice<string>> = weighted<(n: number) => Choice<string>>(
  [10, fc.constant((n: number) => choice(String(n), true))],
  [
    2,
    pick(
      (n: number) => choice(`0${n}`, true),
      (n: number) => choice(` ${n}`, true),
      (n: number) => choice(`${n} `, true),
      (n: number) => choice(`${n}\t`, true),
    ),
  ],
  [
    3,
    pick(
      (n: number) => choice(`${n}, ${n}`, false),
      (n: number) => choice(`${n},${n}`, false),
      (n: number) => choice(`${n}, ${n + 1}`, false),
      (n: number) => choice(`+${n}`, false),
      (n: number) => choice(`-${n}`, false),
      (n: number) => choice(`00000000000000000000${n}`, false),
      (n: number) => choice(`0x${n.toString(16)}`, false),
      (n: number) => choice(`${n}.0`, false),
      (n: number) => choice(`${n}e0`, false),
      () => choice('', false),
      (n: number) => choice(`${n} ${n}`, false),
      () => choice('99999999999999999999', false),
      () => choice('18446744073709551616', false),
      (n: number) => choice(`${n}\x00`, false),
      (n: number) => choice(`${n},`, false),
      (n: number) => choice(`,${n}`, false),
      (n: number) => choice(`0_${n}`, false),
      (n: number) => choice(`\x0b${n}`, false),
    ),
  ],
);

const clDupArb: fc.Arbitrary<((n: number) => string) | undefined> = weighted<((n: number) => string) | undefined>(
  [14, fc.constant(undefined)],
  [1, pick((n: number) => `Content-Length: ${n}`, (n: number) => `Content-Length: ${n + 1}`, () => 'Content-Length: 0', (n: number) => `content-length: ${n}`)],
);

const teLinesArb: fc.Arbitrary<Choice<string[]>> = weighted<Choice<string[]>>(
  [10, fc.constant(choice(['Transfer-Encoding: chunked'], true))],
  [2, pick(choice(['Transfer-Encoding: Chunked'], true), choice(['transfer-encoding: CHUNKED'], true), choice(['Transfer-Encoding:  chunked '], true), choice(['Transfer-Encoding:\tchunked'], true))],
  [
    3,
    pick(
      choice(['Transfer-Encoding: chunked, chunked'], false),
      choice(['Transfer-Encoding: gzip, chunked'], false),
      choice(['Transfer-Encoding: identity'], false),
      choice(['Transfer-Encoding: chunked, identity'], false),
      choice(['Transfer-Encoding: identity, chunked'], false),
      choice(['Transfer-Encoding: x-chunked'], false),
      choice(['Transfer-Encoding: "chunked"'], false),
      choice(['Transfer-Encoding: chunk'], false),
      choice(['Transfer-Encoding: chunked\x00'], false),
      choice(['Transfer-Encoding: \x0bchunked'], false),
      choice(['Transfer-Encoding: '], false),
      choice(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], false),
      choice(['Transfer-Encoding: gzip', 'Transfer-Encoding: chunked'], false),
      choice(['Transfer-Encoding: chunked', 'Transfer-Encoding: identity'], false),
      choice(['Transfer-Encoding:', ' chunked'], false),
      choice(['Transfer-Encoding : chunked'], false),
      choice(['Transfer-Encoding\t: chunked'], false),
      choice(['Transfer_Encoding: chunked'], false),
      choice(['Transfer-Encoding: chunked;q=1'], false),
      choice(['Transfer-Encoding: ,chunked'], false),
      choice(['Transfer-Encoding: chunked,'], false),
    ),
  ],
);

/** How a body is cut into chunks and how each line is spelled. */
interface Chunking {
  /** Cut points as fractions of the body length. */
  cuts: number[];
  size: Choice<'lower' | 'upper' | 'zeros' | 'many-zeros' | 'overflow' | 'plus' | 'hex-prefix' | 'space-before' | 'space-after'>;
  ext: Choice<string>;
  /** Where the extension goes: the first chunk, or the last chunk. */
  extOnLast: boolean;
  last: Choice<string>;
  trailers: Choice<string[]>;
  /** A line-ending defect: after which line, and what. */
  defect: Choice<{ at: number; kind: 'lf' | 'cr' | 'missing' | 'extra-crlf' | 'short' | 'long' } | undefined>;
}

const chunkingArb: fc.Arbitrary<Chunking> = fc.record({
  cuts: fc.array(position, { maxLength: 3 }),
  size: weighted<Chunking['size']>(
    [12, fc.constant<Chunking['size']>(choice('lower', true))],
    [2, pick<Chunking['size']>(choice('upper', true), choice('zeros', true))],
    [
      3,
      pick<Chunking['size']>(
        choice('many-zeros', false),
        choice('overflow', false),
        choice('plus', false),
        choice('hex-prefix', false),
        choice('space-before', false),
        choice('space-after', false),
      ),
    ],
  ),
  ext: weighted<Choice<string>>(
    [12, fc.constant(choice('', true))],
    [2, pick(choice(';a', true), choice(';a=b', true), choice(';name=value;x', true), choice(';a="b c"', true))],
    [
      3,
      pick(
        choice(' ;a=b', false),
        choice(';a = b', false),
        choice('; a=b', false),
        choice(';a="b\\"c"', false),
        choice(';a="b', false),
        choice(';a=b c', false),
        choice(';', false),
        choice(';=b', false),
        choice(';a=\x00', false),
        choice(';a=\xff', false),
        choice(';a="\r"', false),
        choice(`;${'e'.repeat(5000)}`, false),
      ),
    ],
  ),
  extOnLast: fc.boolean(),
  last: weighted<Choice<string>>(
    [14, fc.constant(choice('0', true))],
    [2, pick(choice('000', true), choice('0;a=b', true))],
    [1, pick(choice('0 ', false), choice('00000000000000000', false), choice('0x0', false))],
  ),
  trailers: weighted<Choice<string[]>>(
    [14, fc.constant(choice([], true))],
    [2, fc.constant(choice(['X-Trailer: v'], true))],
    [
      3,
      pick(
        choice(['Content-Length: 5'], false),
        choice(['Transfer-Encoding: chunked'], false),
        choice(['Host: evil.test'], false),
        choice(['X-Bad Trailer: v'], false),
        choice([' folded'], false),
        choice(['X-T: a\x00b'], false),
        choice([`GET /fz/${CASE}-s7 HTTP/1.1`], false),
      ),
    ],
  ),
  defect: weighted<Chunking['defect']>(
    [16, fc.constant(choice(undefined, true))],
    [
      3,
      fc
        .record({ at: fc.nat({ max: 6 }), kind: pick('lf' as const, 'cr' as const, 'missing' as const, 'extra-crlf' as const, 'short' as const, 'long' as const) })
        .map((defect) => choice(defect, false)),
    ],
  ),
});

function chunkSize(n: number, style: Chunking['size']['value']): string {
  const hex = n.toString(16);
  switch (style) {
    case 'lower':
      return hex;
    case 'upper':
      return hex.toUpperCase();
    case 'zeros':
      return `00${hex}`;
    case 'many-zeros':
      return `${'0'.repeat(18)}${hex}`;
    case 'overflow':
      return `1${'0'.repeat(16 - hex.length)}${hex}`;
    case 'plus':
      return `+${hex}`;
    case 'hex-prefix':
      return `0x${hex}`;
    case 'space-before':
      return ` ${hex}`;
    case 'space-after':
      return `${hex} `;
  }
}

/** The chunked encoding of `body` as lines; returns text and validity. */
export function encodeChunked(body: string, chunking: Chunking): Choice<string> {
  const n = body.length;
  const points = [...new Set(chunking.cuts.map((cut) => Math.floor(cut * n)).filter((p) => p > 0 && p < n))].sort((a, b) => a - b);
  const pieces: string[] = [];
  let start = 0;
  for (const point of [...points, n]) {
    if (point > start) pieces.push(body.slice(start, point));
    start = point;
  }
  const extUsed = chunking.ext.value !== '';
  const valid = (pieces.length === 0 || chunking.size.valid) && chunking.last.valid && chunking.trailers.valid && chunking.defect.valid && (!extUsed || chunking.ext.valid);
  const extOnLast = chunking.extOnLast || pieces.length === 0;
  // Lines: "size[ext]", data, ..., "0[ext]", trailers..., "".
  const lines: Array<{ text: string; data: boolean }> = [];
  pieces.forEach((piece, index) => {
    const ext = index === 0 && !extOnLast ? chunking.ext.value : '';
    lines.push({ text: chunkSize(piece.length, chunking.size.value) + ext, data: false });
    lines.push({ text: piece, data: true });
  });
  const lastExt = extOnLast ? chunking.ext.value : '';
  lines.push({ text: chunking.last.value + lastExt, data: false });
  for (const trailer of chunking.trailers.value) lines.push({ text: trailer, data: false });
  lines.push({ text: '', data: false });
  const defect = chunking.defect.value;
  let out = '';
  lines.forEach((line, index) => {
    let text = line.text;
    let ending = '\r\n';
    if (defect && defect.at % lines.length === index) {
      switch (defect.kind) {
        case 'lf':
          ending = '\n';
          break;
        case 'cr':
          ending = '\r';
          break;
        case 'missing':
          ending = '';
          break;
        case 'extra-crlf':
          ending = '\r\n\r\n';
          break;
        case 'short':
          if (line.data && text.length > 0) text = text.slice(0, -1);
          else ending = '\r\r\n';
          break;
        case 'long':
          if (line.data) text += 'X';
          else ending = ' \r\n';
          break;
      }
    }
    out += text + ending;
  });
  return choice(out, valid);
}

const framingArb: fc.Arbitrary<Framing> = weighted<Framing>(
  [4, fc.constant({ kind: 'none' as const })],
  [6, fc.record({ kind: fc.constant('cl' as const), value: clValueArb, dup: clDupArb })],
  [6, fc.record({ kind: fc.constant('te' as const), lines: teLinesArb, chunking: chunkingArb })],
  [
    1,
    fc.record({
      kind: fc.constant('cl+te' as const),
      cl: pick('Content-Length: 4', 'Content-Length: 0', 'Content-Length: 100', 'Content-Length: 5'),
      lines: teLinesArb.map((lines) => lines.value),
      chunking: chunkingArb,
      clFirst: fc.boolean(),
    }),
  ],
  [
    1,
    fc.record({
      kind: fc.constant('raw' as const),
      lines: pick(
        ['Content-Length : 5'],
        ['Content_Length: 5'],
        ['Content-Length\t: 5'],
        [' Content-Length: 5'],
        ['Content-Length:', ' 5'],
        ['Content-Length: 5\r\n'],
        ['Transfer-Encoding: chunked\rX: y'],
        ['X: y\nTransfer-Encoding: chunked'],
        ['Content-Length: 5\nX: y'],
      ),
      chunked: fc.boolean(),
      chunking: chunkingArb,
    }),
  ],
);

// ---------------------------------------------------------------- other fields

const connectionArb: fc.Arbitrary<Choice<string | undefined>> = weighted<Choice<string | undefined>>(
  [12, fc.constant(choice(undefined, true))],
  [3, pick(choice('keep-alive', true), choice('close', true), choice('x-fuzz', true), choice('Keep-Alive', true))],
  [
    2,
    pick(
      choice('content-length', false),
      choice('transfer-encoding', false),
      choice('host', false),
      choice('close, content-length', false),
      choice('keep-alive, transfer-encoding', false),
      choice('Content-Length', false),
      choice('upgrade', false),
      choice('te', false),
      choice('expect', false),
      choice('x-fuzz, host, content-length, transfer-encoding', false),
    ),
  ],
);

const extraArb: fc.Arbitrary<Choice<string>> = weighted<Choice<string>>(
  [10, pick(choice('X-Fuzz: 1', true), choice('Content-Type: text/plain', true), choice('X-High: caf\xe9 \xff', true), choice('X-Empty:', true), choice('TE: trailers', true))],
  [1, pick(choice(`X-Long: ${'a'.repeat(2000)}`, true), choice('Keep-Alive: timeout=5', true), choice('Trailer: X-Trailer', true))],
  [
    2,
    pick(
      choice('X-Nul: a\x00b', false),
      choice('X\x80Name: v', false),
      choice('X-Sp : v', false),
      choice('X-Tab\t: v', false),
      choice(' X-Fold: v', false),
      choice(': novalue', false),
      choice('X-CR: a\rb', false),
      choice('X-LF: a\nb', false),
      choice('X-Del: a\x7fb', false),
      choice('X-Ctl: a\x01b', false),
      choice('Proxy-Connection: keep-alive', true),
      choice('Upgrade: websocket', false),
      choice('Expect: 100-continue', true),
      choice('Expect: 100-Continue', true),
      choice('Expect: 200-ok', false),
      choice('X-Forwarded-For: 10.0.0.1', true),
    ),
  ],
);

export interface RequestSpec {
  method: Choice<string>;
  target: TargetKind;
  version: Choice<string>;
  host: HostKind;
  hostFirst: boolean;
  framing: Framing;
  body: string;
  after: Choice<string>;
  connection: Choice<string | undefined>;
  extras: Array<Choice<string>>;
}

export function requestArb(profile: GrammarProfile): fc.Arbitrary<RequestSpec> {
  return fc.record({
    method: methodArb,
    target: targetArb(profile),
    version: versionArb,
    host: hostArb,
    hostFirst: fc.boolean(),
    framing: framingArb,
    body: bodyArb,
    after: afterArb,
    connection: connectionArb,
    extras: fc.array(extraArb, { maxLength: 3 }),
  });
}

/** Render request `index` of a case. */
export function renderRequest(spec: RequestSpec, index: number): Rendered {
  const notes: string[] = [];
  let valid = spec.method.valid && spec.version.valid && spec.host.valid && spec.connection.valid && spec.after.valid && VALID_TARGETS.has(spec.target);
  const target = renderTarget(spec.target, `${CASE}-${index}`);
  if (spec.target === 'asterisk' || spec.target === 'authority') notes.push(`target ${spec.target}`);
  const fields: string[] = [];
  const framingFields: string[] = [];
  let body = '';
  const framing = spec.framing;
  const n = spec.body.length;
  switch (framing.kind) {
    case 'none':
      // No framing, no body (bytes after the head are covered by `after`).
      break;
    case 'cl': {
      const value = framing.value(n);
      framingFields.push(`Content-Length: ${value.value}`);
      if (framing.dup) framingFields.push(framing.dup(n));
      if (!value.valid || framing.dup) valid = false;
      body = spec.body;
      break;
    }
    case 'te': {
      framingFields.push(...framing.lines.value);
      const encoded = encodeChunked(spec.body, framing.chunking);
      if (!framing.lines.valid || !encoded.valid) valid = false;
      body = encoded.value;
      break;
    }
    case 'cl+te': {
      const encoded = encodeChunked(spec.body, framing.chunking);
      if (framing.clFirst) framingFields.push(framing.cl, ...framing.lines);
      else framingFields.push(...framing.lines, framing.cl);
      valid = false;
      body = encoded.value;
      break;
    }
    case 'raw':
      framingFields.push(...framing.lines);
      valid = false;
      body = framing.chunked ? encodeChunked(spec.body, framing.chunking).value : spec.body;
      break;
  }
  const method = spec.method.value;
  if (method === 'HEAD' && body !== '') valid = false;
  if (spec.version.value === 'HTTP/1.0' && (framing.kind === 'te' || framing.kind === 'cl+te')) valid = false;
  if (spec.version.value === 'HTTP/1.0' && spec.host.value.length === 0) notes.push('HTTP/1.0 without Host');
  if (spec.hostFirst) fields.push(...spec.host.value, ...framingFields);
  else fields.push(...framingFields, ...spec.host.value);
  if (spec.connection.value !== undefined) fields.push(`Connection: ${spec.connection.value}`);
  const names = new Set<string>();
  for (const extra of spec.extras) {
    fields.push(extra.value);
    if (!extra.valid) valid = false;
    if (extra.value.startsWith('Upgrade:') || extra.value.startsWith('Expect: 200')) valid = false;
    // A field twice is valid for list fields, but nginx refuses some twice (Expect): not for the valid class.
    const name = extra.value.slice(0, extra.value.indexOf(':')).toLowerCase();
    if (names.has(name)) valid = false;
    names.add(name);
  }
  // HTTP/1.0 needs keep-alive to carry a second request; HTTP/1.1 with close ends the connection.
  let text = `${method} ${target} ${spec.version.value}\r\n`;
  for (const field of fields) text += `${field}\r\n`;
  text += `\r\n${body}${spec.after.value}`;
  if (!valid) notes.push('ambiguous');
  return { text, valid, notes };
}

/** A byte-level mutation applied to a rendered case (makes it ambiguous). */
export interface Mutation {
  at: number;
  op: 'insert' | 'replace' | 'delete';
  byte: number;
}

const mutationArb: fc.Arbitrary<Mutation | undefined> = weighted<Mutation | undefined>(
  [10, fc.constant(undefined)],
  [
    1,
    fc.record({
      at: position,
      op: pick('insert' as const, 'replace' as const, 'delete' as const),
      byte: pick(0x00, 0x0d, 0x0a, 0x20, 0x09, 0x80, 0xff, 0x3a, 0x3b, 0x2c, 0x30, 0x7f, 0x0b),
    }),
  ],
);

export function mutate(text: string, mutation: Mutation | undefined): string {
  if (!mutation || text.length === 0) return text;
  let at = Math.floor(mutation.at * text.length);
  // Never inside a placeholder or a fuzz id: the case token, the authority and `fz/<case>-` stay intact.
  for (const placeholder of [`fz/${CASE}-`, CASE, AUTHORITY]) {
    for (let start = text.indexOf(placeholder); start >= 0; start = text.indexOf(placeholder, start + 1)) {
      if (at > start && at < start + placeholder.length) at = start + placeholder.length;
      if (at === start && mutation.op !== 'insert') at = start + placeholder.length;
    }
  }
  if (at >= text.length && mutation.op !== 'insert') return text;
  const byte = String.fromCharCode(mutation.byte);
  switch (mutation.op) {
    case 'insert':
      return text.slice(0, at) + byte + text.slice(at);
    case 'replace':
      return text.slice(0, at) + byte + text.slice(at + 1);
    case 'delete':
      return text.slice(0, at) + text.slice(at + 1);
  }
}

/** One client connection: up to three requests, how they are sent, and an optional byte mutation. */
export interface RequestCaseSpec {
  requests: RequestSpec[];
  /** `pipelined`: everything at once (in `splits` pieces); `sequential`: each request after the previous answer. */
  delivery: 'pipelined' | 'sequential';
  splits: number[];
  mutation: Mutation | undefined;
}

export function requestCaseArb(profile: GrammarProfile): fc.Arbitrary<RequestCaseSpec> {
  const any = requestArb(profile);
  // Half the requests are valid ones: the proxy must carry them faithfully (and they reach the origin).
  const request = weighted<RequestSpec>([1, any.filter((spec) => renderRequest(spec, 0).valid)], [1, any]);
  return fc.record({
    requests: fc.array(request, { minLength: 1, maxLength: 3 }),
    delivery: pick('pipelined' as const, 'sequential' as const),
    splits: fc.array(position, { maxLength: 3 }),
    mutation: mutationArb,
  });
}

/** A concrete request case: the bytes (template), how to send them, and which requests are valid. */
export interface RequestCase {
  /** latin1 template (placeholders: `@CASE@`, `@AUTHORITY_15_@`). */
  template: string;
  delivery: 'pipelined' | 'sequential';
  /** Split points (byte offsets into the instantiated bytes) for pipelined delivery. */
  splits: number[];
  /** Per request index (as rendered): valid or ambiguous. */
  valid: boolean[];
  /** Where each rendered request starts in the bytes: validity holds only for a request parsed from exactly there. */
  starts?: number[];
  notes: string[];
}

export function renderRequestCase(spec: RequestCaseSpec): RequestCase {
  const rendered = spec.requests.map((request, index) => renderRequest(request, index));
  const joined = rendered.map((r) => r.text).join('');
  const template = mutate(joined, spec.mutation);
  const valid = rendered.map((r) => r.valid && spec.mutation === undefined);
  const splits = [...new Set(spec.splits.map((s) => Math.floor(s * template.length)).filter((s) => s > 0 && s < template.length))].sort((a, b) => a - b);
  const notes = rendered.flatMap((r, i) => r.notes.map((note) => `#${i}: ${note}`));
  if (spec.mutation) notes.push(`mutation ${JSON.stringify(spec.mutation)}`);
  const starts: number[] = [];
  let offset = 0;
  for (const r of rendered) {
    starts.push(offset);
    offset += r.text.length;
  }
  return { template, delivery: spec.delivery, splits, valid, starts, notes };
}

// ---------------------------------------------------------------- responses (hostile origins)

/** A marker the hostile origin hides in response bodies: a client must never see it as a response of its own. */
export const SMUGGLED_RESPONSE = 'HTTP/1.1 200 OK\r\nX-Resp: smuggled\r\nContent-Length: 0\r\n\r\n';

export interface ResponseSpec {
  version: Choice<string>;
  status: Choice<number>;
  interim: string[];
  framing: Framing;
  body: string;
  after: Choice<string>;
  connection: Choice<string | undefined>;
  extras: Array<Choice<string>>;
}

const responseBodyArb: fc.Arbitrary<string> = weighted<string>(
  [4, pick('', 'hello', 'y'.repeat(33))],
  [2, fc.constant(SMUGGLED_RESPONSE)],
  [1, fc.constant(`0\r\n\r\n${SMUGGLED_RESPONSE}`)],
  [2, fc.array(pick('b', '0', '\r\n', '\x00', '\xff', 'HTTP/1.1 ', '5\r\n'), { maxLength: 8 }).map((parts) => parts.join(''))],
);

export const responseArb: fc.Arbitrary<ResponseSpec> = fc.record({
  version: weighted<Choice<string>>(
    [10, fc.constant(choice('HTTP/1.1', true))],
    [2, fc.constant(choice('HTTP/1.0', true))],
    [1, pick(choice('HTTP/1.2', false), choice('HTTP/2.0', false), choice('http/1.1', false))],
  ),
  status: weighted<Choice<number>>(
    [10, fc.constant(choice(200, true))],
    [3, pick(choice(204, true), choice(304, true), choice(404, true), choice(500, true), choice(206, true))],
    [1, pick(choice(101, false), choice(100, false), choice(199, false), choice(999, false))],
  ),
  interim: weighted<string[]>(
    [8, fc.constant([])],
    [2, pick(['HTTP/1.1 100 Continue\r\n\r\n'], ['HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n'], ['HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n'])],
  ),
  framing: framingArb,
  body: responseBodyArb,
  after: weighted<Choice<string>>(
    [6, fc.constant(choice('', true))],
    [3, pick(choice(SMUGGLED_RESPONSE, false), choice('garbage', false), choice('\r\n', false))],
  ),
  connection: connectionArb,
  extras: fc.array(
    weighted<Choice<string>>(
      [6, pick(choice('X-Fuzz: 1', true), choice('Content-Type: text/plain', true), choice('Set-Cookie: a=1', true))],
      [2, pick(choice('X-Nul: a\x00b', false), choice(' X-Fold: v', false), choice('X-Sp : v', false), choice('Upgrade: websocket', false), choice('Keep-Alive: timeout=1', true))],
    ),
    { maxLength: 2 },
  ),
});

/** Render a hostile response for request `@CASE@-index` (an `X-Resp` field names it). */
export function renderResponse(spec: ResponseSpec, index: number): Rendered {
  const notes: string[] = [];
  let valid = spec.version.valid && spec.status.valid && spec.after.valid && spec.connection.valid;
  const fields: string[] = [`X-Resp: ${CASE}-${index}`];
  let body = '';
  const framing = spec.framing;
  switch (framing.kind) {
    case 'none':
      body = spec.body;
      notes.push('close-delimited');
      break;
    case 'cl': {
      const value = framing.value(spec.body.length);
      fields.push(`Content-Length: ${value.value}`);
      if (framing.dup) fields.push(framing.dup(spec.body.length));
      if (!value.valid || framing.dup) valid = false;
      body = spec.body;
      break;
    }
    case 'te': {
      fields.push(...framing.lines.value);
      const encoded = encodeChunked(spec.body, framing.chunking);
      if (!framing.lines.valid || !encoded.valid) valid = false;
      body = encoded.value;
      break;
    }
    case 'cl+te': {
      const encoded = encodeChunked(spec.body, framing.chunking);
      if (framing.clFirst) fields.push(framing.cl, ...framing.lines);
      else fields.push(...framing.lines, framing.cl);
      valid = false;
      body = encoded.value;
      break;
    }
    case 'raw':
      fields.push(...framing.lines);
      valid = false;
      body = framing.chunked ? encodeChunked(spec.body, framing.chunking).value : spec.body;
      break;
  }
  if (spec.connection.value !== undefined) fields.push(`Connection: ${spec.connection.value}`);
  for (const extra of spec.extras) {
    fields.push(extra.value);
    if (!extra.valid) valid = false;
  }
  let text = spec.interim.join('');
  text += `${spec.version.value} ${spec.status.value} Fuzz\r\n`;
  for (const field of fields) text += `${field}\r\n`;
  text += `\r\n${body}${spec.after.value}`;
  return { text, valid, notes };
}

/** One step of a response case: a request (on the same client connection or a new one) and the hostile answer to it. */
export interface ResponseStepSpec {
  newConnection: boolean;
  /** CONNECT (origin-form to a reverse proxy): a 2xx answer turns the origin's connection into a tunnel. */
  method: 'GET' | 'HEAD' | 'POST' | 'PATCH' | 'CONNECT';
  /** POST and PATCH carry a small body (Content-Length: 3), or none. */
  body: boolean;
  /** The origin reads the request and closes the connection without a byte (a keep-alive race, or a crash). */
  silent: boolean;
  response: ResponseSpec;
}

export const responseCaseArb: fc.Arbitrary<ResponseStepSpec[]> = fc.array(
  fc.record({
    newConnection: fc.boolean(),
    method: weighted<ResponseStepSpec['method']>(
      [6, fc.constant('GET' as const)],
      [2, fc.constant('HEAD' as const)],
      [2, pick('POST' as const, 'PATCH' as const)],
      [1, fc.constant('CONNECT' as const)],
    ),
    body: fc.boolean(),
    silent: weighted<boolean>([9, fc.constant(false)], [1, fc.constant(true)]),
    response: responseArb,
  }),
  { minLength: 2, maxLength: 4 },
);

/** One step of a concrete response case. */
export interface ResponseStep {
  newConnection: boolean;
  method: string;
  /** POST/PATCH only: send a 3-byte body (default true). */
  body?: boolean;
  /** The origin's answer (template); empty: it closes the connection without one. */
  response: string;
  valid: boolean;
}

/** A concrete response case: per step, the client's request and the hostile response template. */
export interface ResponseCase {
  steps: ResponseStep[];
  notes: string[];
}

export function renderResponseCase(steps: ResponseStepSpec[]): ResponseCase {
  return {
    steps: steps.map((step, index) => {
      const rendered = renderResponse(step.response, index);
      return {
        newConnection: index === 0 || step.newConnection,
        method: step.method,
        body: step.body,
        response: step.silent ? '' : rendered.text,
        valid: rendered.valid && !step.silent,
      };
    }),
    notes: [],
  };
}
