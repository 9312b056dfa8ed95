/**
 * The static file server's defaults in one place: its options, config's
 * resolver and schema, and the README table (test/defaults.test.ts) read
 * them here.
 */
export const STATIC_DEFAULTS = Object.freeze({
  /** Where a standalone file server listens (`wmproxy file-server`). */
  listen: '127.0.0.1:8080' as string,
  workers: 1,
  index: Object.freeze(['index.html']),
  browse: false,
  spa: false,
  precompressed: false,
  /** Dot-files answer 404 (`.well-known` is always served). */
  dotfiles: 'ignore' as 'ignore' | 'deny' | 'allow',
  followSymlinks: false,
  cors: false,
  robots: false,
  /** Compression when on: bodies between these sizes (bytes). */
  compress: Object.freeze({ minSize: 256, maxSize: 1024 * 1024 }),
  defaultMimeType: 'application/octet-stream',
  /** CORS preflight cache when on (seconds). */
  corsMaxAge: 86_400,
  maxRanges: 50,
  statCacheMs: 1_000,
  memoryCache: Object.freeze({ maxFileSize: 64 * 1024, maxBytes: 32 * 1024 * 1024 }),
  listingLimit: 10_000,
});
