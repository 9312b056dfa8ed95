import { evaluatePreconditions, ifRangeAllows } from './conditional.js';
import { multipartLayout, parseRange } from './range.js';
import { getHeader, type HeaderSource, type Representation, type StaticResponse } from './types.js';

export interface EvaluateOptions {
  /** More ranges than this in one request → the Range header is ignored (200). */
  maxRanges: number;
  /** Headers every response for this file carries (Cache-Control, Vary, extra headers...). */
  headers: Record<string, string>;
  /** The status of a full response (200, or 404 for a custom error page). */
  status?: number;
}

/**
 * The heart of the file server, with no I/O: given the request method and
 * header lookup and one representation, decide the status, headers and which
 * bytes to send — preconditions (RFC 9110 section 13.2.2 order), If-Range,
 * single and multiple ranges.
 */
export function evaluate(
  method: string,
  request: HeaderSource,
  rep: Representation,
  options: EvaluateOptions,
): StaticResponse {
  const head = method === 'HEAD';
  const headers: Record<string, string> = { ...options.headers };
  headers['etag'] = rep.etag;
  headers['last-modified'] = rep.lastModified;
  if (rep.encoding) headers['content-encoding'] = rep.encoding;

  if (options.status === undefined || options.status === 200) {
    const precondition = evaluatePreconditions(request, rep.etag, rep.mtimeSeconds);
    if (precondition === 'failed') {
      return { status: 412, headers: { ...options.headers, 'content-length': '0' }, body: { kind: 'empty' } };
    }
    if (precondition === 'not-modified') {
      // 304 carries the validators and caching headers, never a body or length.
      return { status: 304, headers, body: { kind: 'empty' } };
    }
    headers['accept-ranges'] = 'bytes';
  }
  headers['content-type'] = rep.contentType;

  const rangeHeader = method === 'GET' && (options.status ?? 200) === 200 ? getHeader(request, 'range') : undefined;
  if (rangeHeader !== undefined && ifRangeAllows(getHeader(request, 'if-range'), rep.etag, rep.mtimeSeconds)) {
    const result = parseRange(rangeHeader, rep.size, options.maxRanges);
    if (result.kind === 'unsatisfiable') {
      const body = `416 Range Not Satisfiable\n`;
      return {
        status: 416,
        headers: {
          ...options.headers,
          'content-range': `bytes */${rep.size}`,
          'content-type': 'text/plain; charset=utf-8',
          'content-length': String(body.length),
        },
        body: head ? { kind: 'empty' } : { kind: 'bytes', data: new TextEncoder().encode(body) },
      };
    }
    if (result.kind === 'ranges') {
      const ranges = result.ranges;
      if (ranges.length === 1) {
        const [start, end] = ranges[0]!;
        headers['content-range'] = `bytes ${start}-${end - 1}/${rep.size}`;
        headers['content-length'] = String(end - start);
        return { status: 206, headers, body: sliceBody(rep, start, end) };
      }
      const layout = multipartLayout(ranges, rep.size, rep.contentType);
      headers['content-type'] = `multipart/byteranges; boundary=${layout.boundary}`;
      headers['content-length'] = String(layout.length);
      return {
        status: 206,
        headers,
        body: {
          kind: 'multipart',
          source: rep.data ? { data: rep.data } : { path: rep.path },
          parts: layout.parts,
          tail: layout.tail,
        },
      };
    }
  }
  headers['content-length'] = String(rep.size);
  return { status: options.status ?? 200, headers, body: head ? { kind: 'empty' } : sliceBody(rep, 0, rep.size) };
}

function sliceBody(rep: Representation, start: number, end: number): StaticResponse['body'] {
  if (rep.data) return { kind: 'bytes', data: start === 0 && end === rep.data.length ? rep.data : rep.data.subarray(start, end) };
  return { kind: 'file', path: rep.path, start, end };
}
