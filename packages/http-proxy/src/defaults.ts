/**
 * The forward proxy's defaults in one place: its options, config's resolver
 * and schema, and the README tables (test/defaults.test.ts) read them here.
 * SOCKS5 on the same port takes @wmproxy/socks5's SOCKS5_DEFAULTS.
 */
import { CORE_NET_DEFAULTS } from '@wmproxy/core-net';

export const HTTP_PROXY_DEFAULTS = Object.freeze({
  /** Where a forward proxy listens unless told otherwise. */
  bind: '127.0.0.1:8090' as string,
  /** What one port serves, told apart by the first byte. */
  protocols: Object.freeze(['http', 'https', 'socks5'] as const),
  /** Realm sent in `Proxy-Authenticate`. */
  realm: 'wmproxy' as string,
  /** `Via` added to proxied messages. */
  via: '1.1 wmproxy' as string,
  connectTimeoutMs: CORE_NET_DEFAULTS.connectTimeoutMs,
  /** A client must send its request head within this long (408). */
  headerTimeoutMs: 30_000,
  /** An idle keep-alive client connection is closed after this long. */
  keepAliveTimeoutMs: 60_000,
  /** A tunnel without traffic for this long is closed (0: never). */
  idleTimeoutMs: CORE_NET_DEFAULTS.relayIdleTimeoutMs,
  maxHeadSize: CORE_NET_DEFAULTS.maxHeadSize,
  maxHeaders: CORE_NET_DEFAULTS.maxHeaders,
});
