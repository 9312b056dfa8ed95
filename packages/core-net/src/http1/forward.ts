import { lowerName } from './chars.js';
import type { HeaderList, RequestHead, ResponseHead } from './head.js';
import { HOP_BY_HOP } from './headers.js';

/**
 * The wire side of forwarding an HTTP/1 message to the next hop, shared by
 * the reverse proxy and the forward proxy (RFC 9110 section 7.6.1, RFC 9112
 * section 6):
 *
 * - `forwardFields` copies the end-to-end fields of a parsed head: the
 *   hop-by-hop ones (and those its Connection names) stay behind, and so do
 *   the framing fields, which `requestFraming` / `responseFraming` then write
 *   from what the parser validated (one Content-Length as a plain number, or
 *   `Transfer-Encoding: chunked`), so the next hop cannot frame the message
 *   differently from this one. The parser has already refused what could be
 *   read two ways: conflicting Content-Lengths, Content-Length with
 *   Transfer-Encoding, obsolete line folding, bare CR or LF, NUL.
 * - Fields a proxy rewrites by policy (Host, Forwarded, trace context) are
 *   named when its `FieldKinds` is built; `forwardFields` hands those to the
 *   caller's `PolicySink` instead of copying them.
 */

/** An end-to-end field copied as received. */
export const FIELD_PLAIN = 0;
/** A hop-by-hop field (RFC 9110 section 7.6.1 plus the legacy proxy ones): never forwarded. */
export const FIELD_HOP_BY_HOP = 1;
/** Content-Length: written again from the validated number by the framing helpers. */
export const FIELD_FRAMING = 2;
/** The first kind number a caller may give its own (policy) fields. */
export const FIELD_POLICY = 3;

/** Names come from peers: the cache is bounded, and longer names are not kept (as lowerName does). */
const KINDS_MAX = 4096;
const NAME_MAX = 64;

/**
 * A field's kind by its name as received: one map lookup per field rather
 * than lower-casing and several set lookups. Policy kinds (numbers from
 * `FIELD_POLICY` up) are given by lower-case name.
 */
export class FieldKinds {
  private readonly cache = new Map<string, number>();
  private readonly policy: ReadonlyMap<string, number>;

  constructor(policy: Readonly<Record<string, number>> = {}) {
    const map = new Map<string, number>();
    for (const [name, kind] of Object.entries(policy)) {
      const lower = name.toLowerCase();
      if (kind < FIELD_POLICY) throw new Error(`policy field kind for ${name} must be at least FIELD_POLICY`);
      if (HOP_BY_HOP.has(lower) || lower === 'content-length') throw new Error(`${name} is a wire field, not a policy one`);
      map.set(lower, kind);
    }
    this.policy = map;
  }

  of(name: string): number {
    let kind = this.cache.get(name);
    if (kind === undefined) {
      const lower = lowerName(name);
      kind = HOP_BY_HOP.has(lower) ? FIELD_HOP_BY_HOP : lower === 'content-length' ? FIELD_FRAMING : (this.policy.get(lower) ?? FIELD_PLAIN);
      if (name.length <= NAME_MAX) {
        if (this.cache.size >= KINDS_MAX) this.cache.clear();
        this.cache.set(name, kind);
      }
    }
    return kind;
  }
}

/** Kinds with no policy fields: every end-to-end field is copied. */
export const WIRE_KINDS = new FieldKinds();

/** Receives the fields a caller classed as its own (kind ≥ FIELD_POLICY) from `forwardFields`. */
export interface PolicySink {
  policyField(field: [name: string, value: string], kind: number, out: HeaderList): void;
}

/** Does Connection name a field other than the fixed hop-by-hop ones (dropped anyway)? Only then is each field looked up in it. */
function namesOthers(connection: readonly string[]): boolean {
  for (let i = 0; i < connection.length; i++) if (!HOP_BY_HOP.has(connection[i]!)) return true;
  return false;
}

/**
 * Append the end-to-end fields of `head` to `out`, in order, as received:
 * without hop-by-hop fields, fields its Connection names (the parser never
 * lets it name Content-Length, Transfer-Encoding or Host), and Content-Length
 * (see the framing helpers). Fields of a policy kind go to `sink` (dropped
 * without one).
 */
export function forwardFields(head: RequestHead | ResponseHead, kinds: FieldKinds, out: HeaderList, sink?: PolicySink): void {
  const connection = head.connection;
  const others = connection.length > 0 && namesOthers(connection);
  const headers = head.headers;
  for (let i = 0; i < headers.length; i++) {
    const field = headers[i]!;
    const kind = kinds.of(field[0]);
    if (kind === FIELD_HOP_BY_HOP || kind === FIELD_FRAMING || (others && connection.includes(lowerName(field[0])))) continue;
    if (kind === FIELD_PLAIN) out.push(field);
    else sink?.policyField(field, kind, out);
  }
}

const CHUNKED: [string, string] = ['Transfer-Encoding', 'chunked'];
const CONNECTION_UPGRADE: [string, string] = ['Connection', 'Upgrade'];
const CONNECTION_CLOSE: [string, string] = ['Connection', 'close'];
const CONNECTION_KEEP_ALIVE: [string, string] = ['Connection', 'keep-alive'];

/**
 * The framing fields of a request forwarded as HTTP/1.1: the validated
 * Content-Length as one plain number (`5, 5` and `05` go out as `5`), or
 * `Transfer-Encoding: chunked` (the body is relayed chunk-framed as it came);
 * for an upgrade, `Connection: Upgrade` and the client's `Upgrade`. An
 * HTTP/1.0 request needs nothing more: it cannot be chunked (the parser
 * refuses Transfer-Encoding there), and the upstream connection's own
 * persistence is the proxy's business, not the client's.
 */
export function requestFraming(head: RequestHead, out: HeaderList): void {
  if (head.chunked) out.push(CHUNKED);
  else if (head.contentLength !== undefined) out.push(['Content-Length', String(head.contentLength)]);
  if (head.upgrade !== undefined) {
    out.push(CONNECTION_UPGRADE);
    out.push(['Upgrade', head.upgrade]);
  }
}

/** `responseFraming` result bit: decode the chunked body for the client (the body then ends when the connection closes). */
export const FRAMING_DECHUNK = 1;
/** `responseFraming` result bit: the client connection stays open after this response. */
export const FRAMING_KEEP_ALIVE = 2;

/**
 * The framing fields of a response to an HTTP/1 client of `clientVersion`
 * whose body has `contentLength` bytes or is `chunked` (neither: delimited by
 * the connection's close, or bodiless). An HTTP/1.0 client cannot read
 * chunked: the body is decoded for it and delimited by closing. `keepAlive`
 * is whether the caller would keep the client connection; the result says
 * what was decided (`FRAMING_*` bits), and `Connection: close` or (for an
 * HTTP/1.0 client kept open) `Connection: keep-alive` is written to match.
 */
export function responseFraming(contentLength: number | undefined, chunked: boolean, clientVersion: '1.0' | '1.1', keepAlive: boolean, out: HeaderList): number {
  let flags = 0;
  if (contentLength !== undefined) out.push(['Content-Length', String(contentLength)]);
  else if (chunked) {
    if (clientVersion === '1.0') {
      flags |= FRAMING_DECHUNK;
      keepAlive = false;
    } else out.push(CHUNKED);
  }
  if (!keepAlive) out.push(CONNECTION_CLOSE);
  else {
    flags |= FRAMING_KEEP_ALIVE;
    if (clientVersion === '1.0') out.push(CONNECTION_KEEP_ALIVE);
  }
  return flags;
}
