export { FrameType, Flag, ErrorCode, SettingId, Http2Error, errorName, CLIENT_PREFACE, DEFAULT_WINDOW_SIZE, DEFAULT_MAX_FRAME_SIZE } from './constants.js';
export { FrameParser, FrameWriter, DEFAULT_FRAME_PARSER_LIMITS, type FrameHandler, type FrameParserLimits } from './frames.js';
export * from './hpack/index.js';
export { Http2Session, Http2Stream, Http2StreamError, DEFAULT_HTTP2_OPTIONS, type Http2Options, type Http2SessionHandler, type Http2StreamHandler } from './session.js';
export { validateRequest, validateResponse, validateTrailers, validValue, type Http2RequestHead, type Http2ResponseHead, type FieldFacts } from './validate.js';
export { http2RequestToHttp1Fields, http1FieldsToHttp2, hostOf } from './translate.js';
export { Http2StreamConn } from './stream-conn.js';
export {
  Http2ClientPool,
  Http2Call,
  Http2CallError,
  DEFAULT_HTTP2_POOL_OPTIONS,
  type Http2PoolOptions,
  type Http2PoolRequest,
  type Http2CallOptions,
  type Http2CallHandler,
  type Http2FetchResponse,
} from './client-pool.js';
