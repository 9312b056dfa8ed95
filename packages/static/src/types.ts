/** Runtime-neutral request and response descriptions shared by the handler and every adapter. */

/** Header lookup: a WHATWG `Headers`, or Node's lowercase-keyed header object. */
export type HeaderSource = { get(name: string): string | null } | Record<string, string | string[] | undefined>;

export interface StaticRequest {
  method: string;
  /** The request target's path and query as received (`/a%20b/?x=1`), not decoded. */
  target: string;
  headers: HeaderSource;
}

/** What to send as the body. File ranges are `[start, end)` byte offsets. */
export type StaticBody =
  | { kind: 'empty' }
  | { kind: 'bytes'; data: Uint8Array }
  | { kind: 'file'; path: string; start: number; end: number }
  | {
      kind: 'multipart';
      /** Either a file on disk or bytes in memory. */
      source: { path: string } | { data: Uint8Array };
      parts: Array<{ head: Uint8Array; start: number; end: number }>;
      tail: Uint8Array;
    };

export interface StaticResponse {
  status: number;
  /** Lowercase header names; `content-length` is always set for the full body, HEAD included. */
  headers: Record<string, string>;
  /** Empty for HEAD, 304, and bodiless statuses. */
  body: StaticBody;
}

/** One concrete representation of a file (identity or one content coding). */
export interface Representation {
  /** File to read, when the bytes are not in `data`. */
  path: string;
  size: number;
  etag: string;
  /** Seconds since the epoch (HTTP dates have second precision). */
  mtimeSeconds: number;
  lastModified: string;
  contentType: string;
  /** `br`, `zstd`, `gzip`; undefined for identity. */
  encoding?: string;
  /** The whole representation in memory (small-file cache or on-the-fly compression). */
  data?: Uint8Array;
}

export function getHeader(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  const value = (headers as Record<string, string | string[] | undefined>)[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
