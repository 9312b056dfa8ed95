export { StaticHandler } from './handler.js';
export { STATIC_DEFAULTS } from './defaults.js';
export { evaluate, type EvaluateOptions } from './evaluate.js';
export { normalisePath, encodePath, resolveFile, refusalFor, type PathResult, type ResolvedPath, type ResolveOptions } from './path.js';
export { parseRange, multipartLayout, type RangeResult } from './range.js';
export {
  evaluatePreconditions,
  ifRangeAllows,
  makeEtag,
  httpDate,
  parseHttpDate,
  parseEtagList,
  type PreconditionResult,
} from './conditional.js';
export { rankCodings, parseAcceptEncoding, CODINGS, type Coding } from './encoding.js';
export { MimeTable, type MimeInfo } from './mime.js';
export { Glob } from './glob.js';
export { bodyChunks, bodyStream, toWebResponse, renderHead } from './body.js';
export { AccessLog, formatAccessLine, type AccessLogFormat, type AccessLogEntry } from './access-log.js';
export { zstdAvailable } from './file-store.js';
export {
  resolveOptions,
  StaticOptionsError,
  type StaticOptions,
  type ResolvedOptions,
  type CacheControlRule,
  type HeaderRule,
  type CorsOptions,
  type CompressOptions,
} from './options.js';
export { createStaticServer } from './server.js';
export type { StaticServer, StaticServerOptions } from './runtime/adapter.js';
export type { StaticRequest, StaticResponse, StaticBody, HeaderSource, Representation } from './types.js';
