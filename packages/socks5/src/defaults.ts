/**
 * The SOCKS5 server's defaults in one place: its options, config's resolver
 * and schema, and the README table (test/defaults.test.ts) read them here.
 */
import { CORE_NET_DEFAULTS } from '@wmproxy/core-net';

export const SOCKS5_DEFAULTS = Object.freeze({
  connectTimeoutMs: CORE_NET_DEFAULTS.connectTimeoutMs,
  /** The greeting, authentication and request must arrive within this long. */
  handshakeTimeoutMs: 10_000,
  /** TCP relays and UDP associations without traffic for this long are closed (0: never). */
  idleTimeoutMs: CORE_NET_DEFAULTS.relayIdleTimeoutMs,
  /** Serve UDP ASSOCIATE. */
  udp: true,
});
