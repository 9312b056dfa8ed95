import { bufferingHandler } from '../conn-base.js';
import type { Conn } from '../types.js';

/**
 * Hand a connection back to core-net's holding state, with `unread` (bytes
 * a handshake parser read past its message: a parent proxy's first tunnel
 * bytes, a sniffed first byte) pushed back in front. Whoever installs the
 * next handler receives `unread` and anything that arrived meanwhile first.
 * Use when the next owner calls `setHandler` itself (`Relay`, `Socks5Server.handle`).
 */
export function parkConn(conn: Conn, unread?: Uint8Array): void {
  conn.userData = undefined;
  conn.setHandler(bufferingHandler, unread);
}
