import { simpleResponse, type Conn } from '@wmproxy/core-net';
import { resolveConfig, type HttpProxyOptions, type ProxyConfig } from './options.js';
import { clientHandler, refuse, Session, SessionClock } from './session.js';

/**
 * The HTTP forward proxy for connections someone else accepted:
 * `handle(conn)` serves absolute-form requests (with keep-alive; each request
 * may go to a different host) and CONNECT tunnels on one client connection.
 *
 * ```ts
 * const proxy = new HttpProxyServer({ users: { alice: 'secret' } });
 * const server = await new Server({ addresses: [parseAddress('127.0.0.1:8080')], onConnection: (conn) => proxy.handle(conn) }).start();
 * ```
 */
export class HttpProxyServer {
  /** @internal */
  readonly config: ProxyConfig;
  /** The one timer of this proxy's sessions (a core-net Ticker). */
  private readonly clock = new SessionClock();

  constructor(options: HttpProxyOptions = {}) {
    this.config = resolveConfig(options);
  }

  /**
   * Take over an accepted connection. `unread` holds bytes already read from
   * it (a mixed port's sniffed first chunk). Never throws: every outcome is
   * answered on the connection and logged.
   */
  handle(conn: Conn, unread?: Uint8Array): void {
    const policy = this.config.clientPolicy;
    if (policy && !policy.permits(conn.remoteAddress)) {
      this.config.logger.info('client refused by policy', { conn: conn.id, client: conn.remoteAddress, status: 403 });
      refuse(conn, simpleResponse(403, { body: 'Your address is not allowed to use this proxy.\n' }));
      return;
    }
    conn.userData = new Session(this.config, conn, this.clock);
    conn.setHandler(clientHandler, unread);
  }
}
