import { lowerName } from '../http1/chars.js';
import { removeHopByHop } from '../http1/headers.js';
import type { HeaderList } from '../http1/head.js';
import type { Http2Headers } from './hpack/decoder.js';
import type { Http2RequestHead } from './validate.js';

/*
 * Field translation between HTTP/2 and HTTP/1.1 for a proxy (RFC 9113 §8.2.2,
 * §8.2.3, §8.3.1). HTTP/2 lists are flat [name, value, ...] with lower-case
 * names; HTTP/1.1 lists are core-net's http1 [name, value] tuples.
 */

const TE_TRAILERS = /(^|,)\s*trailers\s*(;|,|$)/i;

/**
 * An HTTP/2 request's fields for an HTTP/1.1 hop: Host from `:authority`
 * (which wins over a Host field), cookie crumbs joined with "; ", TE dropped
 * (hop-by-hop in HTTP/1.1). The request line comes from `head.method` and `head.path`.
 */
export function http2RequestToHttp1Fields(head: Http2RequestHead): HeaderList {
  const out: HeaderList = [];
  if (head.authority) out.push(['host', head.authority]);
  let cookie: string | undefined;
  const fields = head.headers;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (name === 'host' || name === 'te') continue;
    if (name === 'cookie') {
      cookie = cookie === undefined ? value : `${cookie}; ${value}`;
      continue;
    }
    out.push([name, value]);
  }
  if (cookie !== undefined) out.push(['cookie', cookie]);
  return out;
}

/**
 * HTTP/1.1 fields (a response, or a request's regular fields) for an HTTP/2
 * hop: names lower-cased; hop-by-hop fields, those named in Connection and
 * `alsoRemove` dropped; Host dropped (it travels as `:authority`). TE survives
 * only as `trailers` (what gRPC needs), which HTTP/2 allows (§8.2.2).
 */
export function http1FieldsToHttp2(fields: HeaderList, alsoRemove?: ReadonlySet<string>): Http2Headers {
  let teTrailers = false;
  for (const [name, value] of fields) {
    if (name.length === 2 && lowerName(name) === 'te' && TE_TRAILERS.test(value)) teTrailers = true;
  }
  const out: Http2Headers = [];
  for (const [name, value] of removeHopByHop(fields, alsoRemove)) {
    const lower = lowerName(name);
    if (lower === 'host') continue;
    out.push(lower, value);
  }
  if (teTrailers) out.push('te', 'trailers');
  return out;
}

/** The Host field of an HTTP/1.1 list (the `:authority` of its HTTP/2 form), or ''. */
export function hostOf(fields: HeaderList): string {
  for (const [name, value] of fields) if (name.length === 4 && lowerName(name) === 'host') return value;
  return '';
}
