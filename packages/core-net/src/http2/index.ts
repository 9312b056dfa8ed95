export { FrameType, Flag, ErrorCode, SettingId, Http2Error, errorName, CLIENT_PREFACE, DEFAULT_WINDOW_SIZE, DEFAULT_MAX_FRAME_SIZE } from './constants.js';
export { FrameParser, FrameWriter, DEFAULT_FRAME_PARSER_LIMITS, type FrameHandler, type FrameParserLimits } from './frames.js';
export * from './hpack/index.js';
