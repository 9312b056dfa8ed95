/**
 * @wmproxy/config: the one configuration file of every wmproxy service.
 * TypeBox schema (also published as JSON Schema), TOML/YAML/JSON loading by
 * extension, every error at once with file, key path, expected and found,
 * defaults and inheritance, conversion from the original wmproxy format.
 */
export { ConfigSchema, type ConfigFile, type ForwardProxyFile, type UpstreamFile, type HttpServerFile, type LocationFile, type StreamFile, type WsProxyFile, type WebSocketToTcpFile, type TunnelFile, type HealthCheckFile, type StaticFile } from './schema.js';
export type {
  WmproxyConfig,
  LogConfig,
  ControlConfig,
  ForwardProxyConfig,
  UpstreamConfig,
  UpstreamServerConfig,
  UpstreamHealthConfig,
  HttpServerConfig,
  LocationConfig,
  HeaderRuleConfig,
  StaticConfig,
  ReverseConfig,
  StreamConfig,
  Ws2TcpConfig,
  WsProxyConfig,
  AcmeConfig,
  TunnelConfig,
  TunnelServerConfig,
  TunnelClientConfig,
  TunnelMappingConfig,
  TunnelPortRange,
  Protocol,
} from './types.js';
export { ConfigError, IssueList, formatIssue, formatIssues, describeValue, type ConfigIssue } from './errors.js';
export { loadConfig, loadConfigSync, parseConfig, parseText, buildConfig, stringifyConfig, formatOf, type ConfigFormat, type LoadOptions } from './load.js';
export { convertOriginal, isOriginalFormat, type ConversionOptions, type ConversionResult } from './original.js';
export { DEFAULT_CONFIG, defaultConfig } from './defaults.js';
export { CONTROL_DEFAULTS } from './control-defaults.js';
export { DEFAULT_CONTROL_LISTEN, DEFAULT_PROXY_LISTEN, parseHeaderRule } from './resolve.js';
export { redactConfig, REDACTED } from './redact.js';
export { interpolateEnv, type Environment } from './env.js';
export { jsonSchema, jsonSchemaText } from './json-schema.js';
export { upstreamTargets } from './targets.js';
export { parseSize, parseDuration, formatDuration, SizeError, DurationError, MAX_DURATION_MS } from './units.js';
