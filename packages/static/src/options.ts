import { resolve } from 'node:path';
import { STATIC_DEFAULTS as D } from './defaults.js';
import { Glob } from './glob.js';
import type { Coding } from './encoding.js';

export interface CacheControlRule {
  /** Glob on the path relative to the root (`assets/**`, `*.[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f].js`). */
  pattern: string;
  /** Cache-Control value, e.g. `public, max-age=31536000, immutable`. */
  value: string;
}

export interface HeaderRule {
  /** Glob the path must match; every response when absent. */
  pattern?: string;
  name: string;
  value: string;
}

export interface CorsOptions {
  /** Allowed origins: `*` (default) or a list echoed back with `Vary: Origin`. */
  origins?: '*' | string[];
  /** Access-Control-Max-Age for preflights, seconds (default 86400). */
  maxAge?: number;
  /** Access-Control-Allow-Credentials (needs an explicit origin list). */
  credentials?: boolean;
}

export interface CompressOptions {
  /** Codings produced on the fly, best first (default br, zstd when the runtime has it, gzip). */
  encodings?: Coding[];
  /** Only files at most this large are compressed (default 1 MiB). */
  maxSize?: number;
  /** Files smaller than this are sent as they are (default 256 bytes). */
  minSize?: number;
}

export interface StaticOptions {
  /** Directory to serve. Required. */
  root: string;
  /** Index file names tried for a directory, in order (default `['index.html']`). */
  index?: string[];
  /** Directory listing when a directory has no index file (default false). */
  browse?: boolean;
  /** Single-page-app fallback: `true` serves `/index.html` for unknown paths, a string names the file. */
  spa?: boolean | string;
  /**
   * Candidates tried in order instead of the plain path, with `{path}` (or nginx's
   * `$uri`) replaced by the request path; a trailing `/` means "as a directory".
   * The last entry may be `=404` (any status) or a file served as the fallback.
   */
  tryFiles?: string[];
  /** File (relative to the root) served with status 404 when nothing matches. */
  notFoundPage?: string;
  /** Dot-files: `ignore` → 404 (default), `deny` → 403, `allow`. `.well-known` is always allowed. */
  dotfiles?: 'ignore' | 'deny' | 'allow';
  /** Globs of paths never served nor listed (404). */
  hide?: string[];
  /** Serve symlinks whose target is outside the root (default false: 403). */
  followSymlinks?: boolean;
  /** Cache-Control by glob, first match wins. */
  cacheControl?: CacheControlRule[];
  /** Serve `.br`/`.zst`/`.gz` siblings when the client accepts them: `true` for all three (default false). */
  precompressed?: boolean | Coding[];
  /** On-the-fly compression of compressible types (default false). */
  compress?: boolean | CompressOptions;
  /** Extension (or exact file name) → Content-Type, used verbatim. */
  mimeTypes?: Record<string, string>;
  /** Content-Type when the extension is unknown (default `application/octet-stream`). */
  defaultMimeType?: string;
  /** Extra response headers. */
  headers?: HeaderRule[];
  /** CORS headers and preflight answers (default off). */
  cors?: boolean | CorsOptions;
  /** Answer `/robots.txt` with `User-agent: *\nDisallow: /` when no such file exists (default false). */
  robots?: boolean;
  /** Cap on ranges per request; more → Range ignored (default 50). */
  maxRanges?: number;
  /** How long a file's metadata (stat, realpath) is trusted, ms (default 1000; 0 = stat every request). */
  statCacheMs?: number;
  /** Keep files up to `maxFileSize` bytes in memory, `maxBytes` in total (default 64 KiB / 32 MiB; false = off). */
  memoryCache?: false | { maxFileSize?: number; maxBytes?: number };
  /** Most entries a listing shows (default 10000). */
  listingLimit?: number;
}

export interface ResolvedOptions {
  root: string;
  index: string[];
  browse: boolean;
  spa: string | undefined;
  tryFiles: string[] | undefined;
  notFoundPage: string | undefined;
  dotfiles: 'ignore' | 'deny' | 'allow';
  hide: Glob[];
  followSymlinks: boolean;
  cacheControl: Array<{ glob: Glob; value: string }>;
  precompressed: Coding[];
  compress: { encodings: Coding[]; maxSize: number; minSize: number } | undefined;
  mimeTypes: Record<string, string>;
  defaultMimeType: string;
  headers: Array<{ glob: Glob | undefined; name: string; value: string }>;
  cors: { origins: '*' | Set<string>; maxAge: number; credentials: boolean } | undefined;
  robots: boolean;
  maxRanges: number;
  statCacheMs: number;
  memoryCache: { maxFileSize: number; maxBytes: number } | undefined;
  listingLimit: number;
}

export class StaticOptionsError extends Error {
  override name = 'StaticOptionsError';
}

const ALL_CODINGS: Coding[] = ['br', 'zstd', 'gzip'];

export function resolveOptions(options: StaticOptions, zstdAvailable: boolean): ResolvedOptions {
  if (!options.root) throw new StaticOptionsError('root is required');
  const compress = options.compress === true ? {} : options.compress || undefined;
  const memory = options.memoryCache === false ? undefined : options.memoryCache ?? {};
  const cors = options.cors === true ? {} : options.cors || undefined;
  const precompressed = options.precompressed === true ? ALL_CODINGS : options.precompressed || [];
  for (const coding of precompressed) if (!ALL_CODINGS.includes(coding)) throw new StaticOptionsError(`unknown coding "${coding}"`);
  const index = options.index ?? [...D.index];
  for (const name of index) if (name.includes('/') || name.startsWith('.')) throw new StaticOptionsError(`bad index name "${name}"`);
  if (options.tryFiles && options.tryFiles.length === 0) throw new StaticOptionsError('tryFiles needs at least one entry');
  for (const rule of options.headers ?? []) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(rule.name) || /[\r\n\0]/.test(rule.value)) {
      throw new StaticOptionsError(`bad header "${rule.name}"`);
    }
  }
  return {
    root: resolve(options.root),
    index,
    browse: options.browse ?? D.browse,
    spa: options.spa === true ? 'index.html' : typeof options.spa === 'string' ? options.spa.replace(/^\/+/, '') : undefined,
    tryFiles: options.tryFiles,
    notFoundPage: options.notFoundPage?.replace(/^\/+/, ''),
    dotfiles: options.dotfiles ?? D.dotfiles,
    hide: (options.hide ?? []).map((pattern) => new Glob(pattern)),
    followSymlinks: options.followSymlinks ?? D.followSymlinks,
    cacheControl: (options.cacheControl ?? []).map((rule) => ({ glob: new Glob(rule.pattern), value: rule.value })),
    precompressed,
    compress: compress && {
      encodings: (compress.encodings ?? ALL_CODINGS).filter((coding) => coding !== 'zstd' || zstdAvailable),
      maxSize: compress.maxSize ?? D.compress.maxSize,
      minSize: compress.minSize ?? D.compress.minSize,
    },
    mimeTypes: options.mimeTypes ?? {},
    defaultMimeType: options.defaultMimeType ?? D.defaultMimeType,
    headers: (options.headers ?? []).map((rule) => ({
      glob: rule.pattern ? new Glob(rule.pattern) : undefined,
      name: rule.name.toLowerCase(),
      value: rule.value,
    })),
    cors: cors && {
      origins: cors.origins === undefined || cors.origins === '*' ? '*' : new Set(cors.origins),
      maxAge: cors.maxAge ?? D.corsMaxAge,
      credentials: cors.credentials ?? false,
    },
    robots: options.robots ?? D.robots,
    maxRanges: options.maxRanges ?? D.maxRanges,
    statCacheMs: options.statCacheMs ?? D.statCacheMs,
    memoryCache: memory && { maxFileSize: memory.maxFileSize ?? D.memoryCache.maxFileSize, maxBytes: memory.maxBytes ?? D.memoryCache.maxBytes },
    listingLimit: options.listingLimit ?? D.listingLimit,
  };
}
