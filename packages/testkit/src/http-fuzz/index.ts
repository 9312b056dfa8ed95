/**
 * Differential fuzzing of the HTTP/1.1 path (see docs/fuzzing.md): a request
 * and response grammar, real origins behind recording taps, a hostile origin,
 * reference parsers and the oracles that judge each case.
 */
export * from './grammar.js';
export * from './reference.js';
export * from './model.js';
export * from './oracle.js';
export * from './runner.js';
export { Tap, type TapConnection } from './tap.js';
export { RawClient } from './client.js';
export { HostileOrigin, type HostileSeen } from './hostile.js';
export { JsonChild, FUZZ_DIR, NODE_BINARY, PYTHON_BINARY } from './child.js';
export { startOrigin, startNodeOrigin, startPythonOrigin, startNginxOrigin, OriginUnavailable, NGINX_BINARY, type Origin, type OriginEvent, type OriginRecord } from './origins.js';
export { LlhttpOracle, type LlhttpResponse } from './llhttp.js';
export { defineFuzzSuite, type FuzzSuite } from './suite.js';
