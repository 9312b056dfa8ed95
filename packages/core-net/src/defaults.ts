/**
 * core-net's defaults in one place, for config's resolver and schema and the
 * README (test/defaults.test.ts checks it). Each is also exported under its
 * own name beside the code that applies it.
 */
import { DEFAULT_CONNECT_TIMEOUT_MS } from './connect.js';
import { DEFAULT_PROCESS_MAX_CONNECTIONS } from './conn-limit.js';
import { DEFAULT_CONNECT_PORTS } from './destination-policy.js';
import { DEFAULT_MAX_HEAD_SIZE, DEFAULT_MAX_HEADERS } from './http1/head.js';
import { DEFAULT_IDLE_TIMEOUT_MS } from './relay.js';

export const CORE_NET_DEFAULTS = Object.freeze({
  /** Outgoing connect timeout (`connect`). */
  connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
  /** A relay (tunnel) without traffic either way for this long is closed (0: never). */
  relayIdleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS,
  /** Client connections one process holds over all its listeners. */
  processMaxConnections: DEFAULT_PROCESS_MAX_CONNECTIONS,
  /** Largest HTTP/1 request head (bytes). */
  maxHeadSize: DEFAULT_MAX_HEAD_SIZE,
  /** Most header fields in an HTTP/1 head. */
  maxHeaders: DEFAULT_MAX_HEADERS,
  /** Ports CONNECT may reach when a forward proxy is exposed beyond loopback. */
  connectPorts: DEFAULT_CONNECT_PORTS,
});
