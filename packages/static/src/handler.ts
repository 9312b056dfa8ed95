import { posix } from 'node:path';
import { makeEtag } from './conditional.js';
import { rankCodings, SIBLING_SUFFIX, type Coding } from './encoding.js';
import { evaluate } from './evaluate.js';
import { FileStore, zstdAvailable, type FileMeta } from './file-store.js';
import { firstMatch } from './glob.js';
import { readListing, renderHtml, renderJson, sortListing, type SortKey } from './listing.js';
import { MimeTable } from './mime.js';
import { resolveOptions, type ResolvedOptions, type StaticOptions } from './options.js';
import { encodePath, refusalFor, resolveFile } from './path.js';
import { getHeader, type HeaderSource, type Representation, type StaticRequest, type StaticResponse } from './types.js';

const encoder = new TextEncoder();
const ROBOTS_BODY = encoder.encode('User-agent: *\nDisallow: /\n');
const STATUS_TEXT: Record<number, string> = {
  301: 'Moved Permanently',
  421: 'Misdirected Request',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  410: 'Gone',
  500: 'Internal Server Error',
};
const EXPOSED = 'Content-Length, Content-Range, Content-Encoding, ETag, Last-Modified, Accept-Ranges';
const SORT_KEYS = new Set(['name', 'size', 'mtime']);
/** Request headers that make a response depend on more than method + target. */
const VARYING = ['range', 'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since'];
const MAX_MEMO_ENTRIES = 4096;

interface MemoEntry {
  method: string;
  expires: number;
  response: StaticResponse;
}

/** A file found on disk for a request. */
interface Found {
  /** Path relative to the root, `/`-separated, no leading slash. */
  relative: string;
  path: string;
  meta: FileMeta;
}

/**
 * The file server as a request → response function, independent of any HTTP
 * server: `handle({method, target, headers})` resolves the path safely, looks
 * at the disk, and returns a `StaticResponse` (status, headers, and a body
 * description: bytes, a file range, or multipart ranges) that an adapter
 * sends — with `Bun.file().slice()`, `fs.createReadStream`, a web `Response`
 * (`toWebResponse`) or raw bytes on a core-net `Conn` (`renderHead` + `bodyChunks`).
 */
export class StaticHandler {
  readonly options: ResolvedOptions;
  private readonly store: FileStore;
  private readonly mime: MimeTable;
  /** Recent plain 200 responses by target, trusted as long as file metadata is (statCacheMs). */
  private readonly memo = new Map<string, MemoEntry>();
  /** Extra request headers that disable the memo (Accept-Encoding, Origin) for this configuration. */
  private readonly varying: string[];

  constructor(options: StaticOptions) {
    this.options = resolveOptions(options, zstdAvailable);
    this.store = new FileStore(this.options.root, this.options.statCacheMs, this.options.followSymlinks, this.options.memoryCache);
    this.mime = new MimeTable(this.options.mimeTypes, {
      type: this.options.defaultMimeType,
      contentType: this.options.defaultMimeType,
      compressible: false,
    });
    this.varying = [...VARYING];
    if (this.options.precompressed.length > 0 || this.options.compress) this.varying.push('accept-encoding');
    if (this.options.cors && (this.options.cors.origins !== '*' || this.options.cors.credentials)) this.varying.push('origin');
    // Listings (HTML or JSON) and the SPA fallback depend on Accept.
    if (this.options.browse || this.options.spa !== undefined) this.varying.push('accept');
  }

  /**
   * The fast path: the response to a plain GET/HEAD (no preconditions, range
   * or negotiated headers) of a target answered with 200 in the last
   * `statCacheMs`, without any I/O — or undefined, then call `handle`.
   * Responses are shared: treat them as read-only.
   */
  cached(request: StaticRequest): StaticResponse | undefined {
    if (this.memo.size === 0) return undefined;
    const entry = this.memo.get(request.target);
    if (entry === undefined || entry.method !== request.method || !this.memoizable(request.headers)) return undefined;
    if (Date.now() >= entry.expires) {
      this.memo.delete(request.target);
      return undefined;
    }
    return entry.response;
  }

  private memoizable(headers: HeaderSource): boolean {
    for (const name of this.varying) if (getHeader(headers, name) !== undefined) return false;
    return true;
  }

  private remember(request: StaticRequest, response: StaticResponse): StaticResponse {
    if (
      response.status === 200 &&
      (response.body.kind === 'bytes' || response.body.kind === 'file' || request.method === 'HEAD') &&
      this.options.statCacheMs > 0 &&
      this.memoizable(request.headers)
    ) {
      if (this.memo.size >= MAX_MEMO_ENTRIES) this.memo.delete(this.memo.keys().next().value!);
      this.memo.set(request.target, { method: request.method, expires: Date.now() + this.options.statCacheMs, response });
    }
    return response;
  }

  /** Answer one request: status, headers and a body description, never throwing for bad input. */
  async handle(request: StaticRequest): Promise<StaticResponse> {
    return this.cached(request) ?? this.remember(request, await this.respond(request));
  }

  private async respond(request: StaticRequest): Promise<StaticResponse> {
    const { method, headers } = request;
    if (method !== 'GET' && method !== 'HEAD') {
      if (method === 'OPTIONS' && this.options.cors && getHeader(headers, 'access-control-request-method') !== undefined) {
        return this.preflight(headers);
      }
      return this.text(405, method, headers, '', { allow: this.options.cors ? 'GET, HEAD, OPTIONS' : 'GET, HEAD' });
    }
    let target = request.target;
    if (target.charCodeAt(0) !== 47) {
      // absolute-form (`http://host/path`): keep the path.
      const scheme = target.indexOf('://');
      if (scheme < 0) return this.text(400, method, headers, ''); // `*` or garbage
      const slash = target.indexOf('/', scheme + 3);
      target = slash < 0 ? '/' : target.slice(slash);
    }
    const question = target.indexOf('?');
    const rawPath = question < 0 ? target : target.slice(0, question);
    const query = question < 0 ? '' : target.slice(question);
    const resolved = resolveFile(this.options.root, rawPath, this.options);
    if (!resolved.ok) return this.text(resolved.status, method, headers, '');
    const { segments, trailingSlash, relative, path } = resolved;

    if (this.options.tryFiles) return this.tryFiles(method, headers, segments, trailingSlash, query);

    const meta = await this.store.stat(path);
    if (meta?.outside) return this.text(403, method, headers, relative);
    if (meta?.kind === 'file' && !trailingSlash) return this.serve(method, headers, { relative, path, meta });
    if (meta?.kind === 'dir') {
      if (!trailingSlash) return this.redirect(method, headers, encodePath(segments, true) + query);
      const index = await this.findIndex(relative);
      if (index) return this.serve(method, headers, index);
      if (this.options.browse) return this.listing(method, headers, relative, path, segments, query);
    }
    return this.fallback(method, headers, segments, relative);
  }

  /** 403/404 for dot-files and hidden globs, 0 when the path may be served. */
  private refusal(segments: readonly string[]): number {
    return refusalFor(segments, this.options);
  }

  private fsPath(relative: string): string {
    return relative === '' ? this.options.root : this.options.root + '/' + relative;
  }

  private async findIndex(relative: string): Promise<Found | undefined> {
    for (const name of this.options.index) {
      const candidate = relative === '' ? name : relative + '/' + name;
      const found = await this.findFile(candidate);
      if (found) return found;
    }
    return undefined;
  }

  private async findFile(relative: string): Promise<Found | undefined> {
    const path = this.fsPath(relative);
    const meta = await this.store.stat(path);
    return meta && meta.kind === 'file' && !meta.outside ? { relative, path, meta } : undefined;
  }

  /** Not found on disk: robots.txt switch, SPA fallback, custom 404 page. */
  private async fallback(method: string, headers: HeaderSource, segments: readonly string[], relative: string): Promise<StaticResponse> {
    if (this.options.robots && relative === 'robots.txt') {
      return this.bytes(200, method, headers, ROBOTS_BODY, 'text/plain; charset=utf-8', relative);
    }
    if (this.options.spa !== undefined && wantsDocument(segments, headers)) {
      const found = await this.findFile(this.options.spa);
      if (found) return this.serve(method, headers, found);
    }
    return this.notFound(method, headers, relative);
  }

  private async notFound(method: string, headers: HeaderSource, relative: string, status = 404): Promise<StaticResponse> {
    if (this.options.notFoundPage && status === 404) {
      const page = await this.findFile(this.options.notFoundPage);
      if (page) return this.serve(method, headers, page, 404);
    }
    return this.text(status, method, headers, relative);
  }

  private async tryFiles(
    method: string,
    headers: HeaderSource,
    segments: readonly string[],
    trailingSlash: boolean,
    query: string,
  ): Promise<StaticResponse> {
    const candidates = this.options.tryFiles!;
    const uri = encodeTemplatePath(segments, trailingSlash);
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[i]!;
      const last = i === candidates.length - 1;
      if (candidate.startsWith('=')) {
        const status = Number(candidate.slice(1));
        return this.notFound(method, headers, segments.join('/'), Number.isInteger(status) && status >= 400 && status <= 599 ? status : 404);
      }
      const expanded = candidate.replaceAll('{path}', uri).replaceAll('$uri', uri);
      const split = splitDecoded(expanded);
      if (!split || this.refusal(split.segments)) continue;
      const relative = split.segments.join('/');
      if (split.directory) {
        const meta = await this.store.stat(this.fsPath(relative));
        if (meta?.kind !== 'dir' || meta.outside) continue;
        const index = await this.findIndex(relative);
        if (index) return this.serve(method, headers, index);
        if (this.options.browse) return this.listing(method, headers, relative, this.fsPath(relative), split.segments, query);
        continue;
      }
      const found = await this.findFile(relative);
      if (found) return this.serve(method, headers, found);
      if (last) break;
    }
    return this.notFound(method, headers, segments.join('/'));
  }

  /** Choose the representation (precompressed sibling, on-the-fly coding, identity), then evaluate. */
  private async serve(method: string, headers: HeaderSource, found: Found, status = 200): Promise<StaticResponse> {
    const { meta, path, relative } = found;
    const mime = this.mime.lookup(posix.basename(relative));
    const base = this.commonHeaders(headers, relative);
    const rule = firstMatch(this.options.cacheControl, relative);
    if (rule && status === 200) base['cache-control'] = rule.value;
    const compress = this.options.compress;
    const compressible = compress !== undefined && mime.compressible && meta.size >= compress.minSize && meta.size <= compress.maxSize;
    if (this.options.precompressed.length > 0 || compressible) appendVary(base, 'Accept-Encoding');

    const identityEtag = makeEtag(meta.ino, meta.size, meta.mtimeMs);
    let rep: Representation | undefined;
    const accept = getHeader(headers, 'accept-encoding');
    if (this.options.precompressed.length > 0 && accept) {
      for (const coding of rankCodings(accept, this.options.precompressed)) {
        const siblingPath = path + SIBLING_SUFFIX[coding];
        const sibling = await this.store.stat(siblingPath);
        if (sibling?.kind === 'file' && !sibling.outside) {
          rep = {
            path: siblingPath,
            size: sibling.size,
            etag: makeEtag(sibling.ino, sibling.size, sibling.mtimeMs, coding),
            mtimeSeconds: sibling.mtimeSeconds,
            lastModified: sibling.lastModified,
            contentType: mime.contentType,
            encoding: coding,
          };
          break;
        }
      }
    }
    if (!rep && compressible && accept) {
      const coding: Coding | undefined = rankCodings(accept, compress!.encodings)[0];
      const data = coding && (await this.store.compressed(path, identityEtag, coding));
      if (coding && data) {
        rep = {
          path,
          size: data.length,
          etag: identityEtag.slice(0, -1) + '-' + coding + '-auto"',
          mtimeSeconds: meta.mtimeSeconds,
          lastModified: meta.lastModified,
          contentType: mime.contentType,
          encoding: coding,
          data,
        };
      }
    }
    rep ??= {
      path,
      size: meta.size,
      etag: identityEtag,
      mtimeSeconds: meta.mtimeSeconds,
      lastModified: meta.lastModified,
      contentType: mime.contentType,
    };
    const response = evaluate(method, headers, rep, { maxRanges: this.options.maxRanges, headers: base, status });
    const body = response.body;
    if ((body.kind === 'file' || (body.kind === 'multipart' && 'path' in body.source)) && this.store.cacheable(rep.size)) {
      const data = await this.store.contents(rep.path, rep.etag);
      if (data && data.length === rep.size) {
        if (body.kind === 'file') response.body = { kind: 'bytes', data: body.start === 0 && body.end === data.length ? data : data.subarray(body.start, body.end) };
        else body.source = { data };
      }
    }
    return response;
  }

  private async listing(
    method: string,
    headers: HeaderSource,
    relative: string,
    path: string,
    segments: readonly string[],
    query: string,
  ): Promise<StaticResponse> {
    const params = new URLSearchParams(query);
    const sortParam = params.get('sort') ?? 'name';
    const key = (SORT_KEYS.has(sortParam) ? sortParam : 'name') as SortKey;
    const desc = params.get('order') === 'desc';
    const prefix = relative === '' ? '' : relative + '/';
    const visible = (name: string) =>
      (this.options.dotfiles === 'allow' || name.charCodeAt(0) !== 46) && this.refusal([...segments, name]) === 0;
    let entries;
    try {
      entries = sortListing(await readListing(path, this.options.listingLimit, visible), key, desc);
    } catch {
      return this.notFound(method, headers, prefix);
    }
    const base = encodePath(segments, true);
    const accept = getHeader(headers, 'accept') ?? '';
    const json = accept.includes('application/json') && !accept.includes('text/html');
    const body = json ? renderJson(entries, base) : renderHtml(entries, base, '/' + prefix, key, desc);
    const response = this.bytes(200, method, headers, encoder.encode(body), json ? 'application/json; charset=utf-8' : 'text/html; charset=utf-8', relative);
    appendVary(response.headers, 'Accept');
    response.headers['cache-control'] = 'no-cache';
    return response;
  }

  private redirect(method: string, headers: HeaderSource, location: string): StaticResponse {
    const response = this.text(301, method, headers, '');
    response.headers['location'] = location;
    return response;
  }

  private preflight(headers: HeaderSource): StaticResponse {
    const out = this.commonHeaders(headers, '');
    if (out['access-control-allow-origin']) {
      out['access-control-allow-methods'] = 'GET, HEAD, OPTIONS';
      const requested = getHeader(headers, 'access-control-request-headers');
      if (requested) out['access-control-allow-headers'] = requested;
      out['access-control-max-age'] = String(this.options.cors!.maxAge);
    }
    delete out['access-control-expose-headers'];
    appendVary(out, 'Access-Control-Request-Headers');
    out['content-length'] = '0';
    return { status: 204, headers: out, body: { kind: 'empty' } };
  }

  /** Extra headers and CORS headers every response carries. */
  private commonHeaders(request: HeaderSource, relative: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const rule of this.options.headers) if (!rule.glob || rule.glob.matches(relative)) out[rule.name] = rule.value;
    const cors = this.options.cors;
    if (cors) {
      const origin = getHeader(request, 'origin');
      if (cors.origins === '*' && !cors.credentials) out['access-control-allow-origin'] = '*';
      else {
        if (origin && (cors.origins === '*' || cors.origins.has(origin))) {
          out['access-control-allow-origin'] = origin;
          if (cors.credentials) out['access-control-allow-credentials'] = 'true';
        }
        appendVary(out, 'Origin');
      }
      if (out['access-control-allow-origin']) out['access-control-expose-headers'] = EXPOSED;
    }
    return out;
  }

  private text(status: number, method: string, request: HeaderSource, relative: string, extra?: Record<string, string>): StaticResponse {
    const body = encoder.encode(`${status} ${STATUS_TEXT[status] ?? 'Error'}\n`);
    const response = this.bytes(status, method, request, body, 'text/plain; charset=utf-8', relative);
    if (extra) Object.assign(response.headers, extra);
    return response;
  }

  private bytes(status: number, method: string, request: HeaderSource, data: Uint8Array, type: string, relative: string): StaticResponse {
    const headers = this.commonHeaders(request, relative);
    headers['content-type'] = type;
    headers['content-length'] = String(data.length);
    return { status, headers, body: method === 'HEAD' ? { kind: 'empty' } : { kind: 'bytes', data } };
  }
}

function appendVary(headers: Record<string, string>, name: string): void {
  const existing = headers['vary'];
  headers['vary'] = existing ? existing + ', ' + name : name;
}

/** SPA fallback only for what looks like a page: an Accept naming HTML, or no file extension. */
function wantsDocument(segments: readonly string[], headers: HeaderSource): boolean {
  const last = segments[segments.length - 1] ?? '';
  if (!last.includes('.')) return true;
  return (getHeader(headers, 'accept') ?? '').includes('text/html');
}

/** The `{path}` of a try_files template: the decoded, normalised request path. */
function encodeTemplatePath(segments: readonly string[], trailingSlash: boolean): string {
  const path = '/' + segments.join('/');
  return trailingSlash && segments.length > 0 ? path + '/' : path;
}

/** Split an already-decoded candidate path, resolving `.`/`..`; undefined when it leaves the root. */
function splitDecoded(path: string): { segments: string[]; directory: boolean } | undefined {
  const segments: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (segments.length === 0) return undefined;
      segments.pop();
    } else segments.push(part);
  }
  return { segments, directory: path.endsWith('/') };
}
