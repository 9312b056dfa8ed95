/**
 * The runtime-neutral socket interface. Protocol code (http-proxy, socks5,
 * reverse, health) talks only to these types; `runtime/bun` and `runtime/node`
 * implement them, and one is chosen once at start-up.
 */

/** Events of one connection. Handlers are objects (not closures) so that a
 * protocol can install one shared handler for every connection it owns. */
export interface ConnHandler<C extends Conn = Conn> {
  /** Bytes arrived. The chunk is the handler's to keep: no runtime reuses it for later reads. */
  data(conn: C, chunk: Uint8Array): void;
  /** The write queue fell below the high-water mark after `write` returned false. */
  drain?(conn: C): void;
  /** The peer half-closed (sent FIN). Writing is still possible. */
  end?(conn: C): void;
  /** The connection is gone. Called exactly once; `error` is set when it died of one. */
  close(conn: C, error?: Error): void;
}

export interface Conn {
  /** Process-unique id, for logs. */
  readonly id: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /**
   * From now on report `address`:`port` as the peer: a connection that
   * carries someone else's bytes (a tunnel's data connection, a visitor)
   * shows that one to logs and address ACLs, as a tunnel stream does.
   * On an accepted connection its listener's limits count it under the new
   * address from then on (a local front handing over a visitor); the tunnel
   * server's tracker of busy data connections shows the client's own again
   * when the visitor leaves.
   */
  showPeer?(address: string, port: number): void;
  readonly localAddress: string;
  readonly localPort: number;
  /** Bytes received and sent so far. */
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** True once `close` has been delivered (or is about to be). */
  readonly closed: boolean;
  /** TLS server name the client asked for (SNI), on TLS listeners. */
  readonly servername?: string;
  /** The protocol TLS ALPN chose (`'h2'`), once the handshake is done; undefined when none was. */
  readonly alpnProtocol?: string | undefined;
  /** TLS: the handshake resumed an earlier session (no certificate sent, no signature made). */
  readonly tlsResumed?: boolean;
  /**
   * TLS clients dialled with `keepSession` or `session`: the latest session
   * the server issued a ticket for, to offer on the next connection to it
   * (`TlsClientOptions.session`); undefined while none came (a TLS 1.3
   * ticket comes after the handshake, a Bun server's with its first write).
   */
  readonly tlsSession?: TlsSession | undefined;
  /**
   * Queue bytes for sending. Returns false when the queued amount is above the
   * high-water mark: the producer should pause until `drain`. Bytes are never
   * dropped; the queue is bounded by the caller honouring the return value.
   */
  write(chunk: Uint8Array): boolean;
  /**
   * `write` for several chunks at once, sent together where the runtime can
   * gather them (Node: one writev syscall, so a frame header and its payload
   * leave in one TCP segment, not two). Same return value and ownership as
   * `write`. Optional: callers fall back to one `write` per chunk.
   */
  writev?(chunks: readonly Uint8Array[]): boolean;
  /** Flush then send FIN (half-close). Reading continues until the peer ends. */
  end(): void;
  /** Close now, dropping anything queued. Safe to call repeatedly. */
  destroy(error?: Error): void;
  /**
   * Abort the connection: drop anything queued and send a TCP RST (SO_LINGER 0)
   * instead of a FIN, so that the peer reads ECONNRESET, not a clean end.
   * Conns that are not TCP sockets (TLS on Node, tunnel and HTTP/2 streams)
   * close as `destroy` does. Safe to call repeatedly.
   */
  reset(error?: Error): void;
  /** Stop / restart delivering `data` (backpressure towards this peer). */
  pause(): void;
  resume(): void;
  setNoDelay(noDelay?: boolean): void;
  /**
   * Replace the handler. Data that arrived while no handler (or the default
   * buffering one) was installed is replayed to the new handler first, and
   * `unread` bytes (for example, what a protocol parser read past its message)
   * are delivered before anything else.
   */
  setHandler(handler: ConnHandler, unread?: Uint8Array): void;
  /**
   * While a `data` call is under way: how many bytes just before its chunk,
   * in the chunk's buffer, are the handler's too (0 outside `data` calls and
   * for chunks without any). A frame header written there leaves with the
   * chunk in one write, with no copy. Optional: absent means none.
   */
  readonly readHeadroom?: number;
  /** Arbitrary per-connection state for the owner. */
  userData: unknown;
  /** Told when the connection closes, before the handler (used by Server for graceful shutdown). */
  tracker: ConnTracker | undefined;
}

export interface ConnTracker {
  untrack(conn: Conn): void;
  /** The connection shows another peer now (showPeer; `previous` is the address it showed before). */
  readdress?(conn: Conn, previous: string): void;
}

export interface TlsServerOptions {
  cert: string | Uint8Array;
  key: string | Uint8Array;
  /** Extra certificates chosen by SNI server name (exact or `*.example.com`). */
  sni?: Record<string, { cert: string | Uint8Array; key: string | Uint8Array }>;
  /**
   * Certificates that change while the listener runs (ACME): asked at each
   * handshake for the SNI name (after `sni`, before the default `cert`).
   * Return the same object while the certificate is the same: its TLS
   * context is cached by identity.
   */
  select?(servername: string): TlsKeyPair | undefined;
  /**
   * TLS-ALPN-01 challenges (RFC 8737): a client offering only the ALPN
   * protocol `acme-tls/1` for a name this returns a certificate for gets that
   * certificate and protocol; every other client the usual certificate.
   * May answer asynchronously (a challenge placed by another worker).
   */
  acmeTlsAlpn?(servername: string): TlsKeyPair | undefined | Promise<TlsKeyPair | undefined>;
  /** ALPN protocols offered, in the server's order of preference (`['h2', 'http/1.1']`). None by default. */
  alpn?: string[];
  /**
   * Mutual TLS: CA certificates (PEM) that client certificates must chain to.
   * When set, a client without a valid certificate fails the handshake and
   * never reaches `onConnection` with data (the listener's `onError` is told).
   */
  clientCa?: string | Uint8Array | Array<string | Uint8Array>;
  /**
   * Bounds on clients still in their TLS handshake, where node:tls serves the
   * port (Node; Bun with `sni`, `select` or `acmeTlsAlpn`): node:tls hands a
   * connection to `onConnection` only once its handshake is done, so neither
   * the owner nor the listener's limits count it before. A handshake longer
   * than `handshakeTimeoutMs` is dropped (default node:tls's 120 s); beyond
   * `maxHandshakes` under way at once, or `maxHandshakesPerIp` from one
   * address, a new connection is closed at once (0 or absent: no limit).
   * Refusals and timeouts reach `onError` at most once per 10 s, with their
   * count. Bun's own listener hands connections over before the handshake:
   * the owner's limits and timeouts cover it there. With `ListenOptions.handshakes`
   * the slots bound both phases as one and these two are not used.
   */
  handshakeTimeoutMs?: number;
  maxHandshakes?: number;
  maxHandshakesPerIp?: number;
}

/**
 * A TLS session to resume, from `Conn.tlsSession`. Made only by core-net,
 * from a connection that passed its checks: it keeps the server certificate
 * of the handshake that established it, since a resumed handshake sends
 * none and `verifyPeer` checks that one instead.
 */
export interface TlsSession {
  /** The runtime's serialised session (with its ticket). */
  readonly bytes: Uint8Array;
  /** The server's leaf certificate (DER) of the full handshake the session came from. */
  readonly certificate: Uint8Array | undefined;
  /** What that connection verified (name, CA list, rejectUnauthorized): a session is offered only to a connection that verifies the same. */
  readonly servername: string;
  readonly ca: TlsClientOptions['ca'];
  readonly rejectUnauthorized: boolean;
  /** The client certificate it showed (mutual TLS): a resumed client is that one to the server. */
  readonly clientCert: TlsClientOptions['cert'];
}

export interface TlsKeyPair {
  cert: string | Uint8Array;
  key: string | Uint8Array;
}

export interface TlsClientOptions {
  /** SNI and the name verified in the certificate. Defaults to the host. */
  servername?: string;
  /** Verify the peer certificate (default true). */
  rejectUnauthorized?: boolean;
  /** Extra CA certificates (PEM). */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  alpn?: string[];
  /** Client certificate and key (PEM) for servers that ask for one (mutual TLS). */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /**
   * Check the server's leaf certificate (DER) after the handshake; a returned
   * reason fails the connect with EPROTO. With `rejectUnauthorized: false`
   * this is certificate pinning (by fingerprint, as ssh does).
   */
  verifyPeer?(certificateDer: Uint8Array): string | undefined;
  /**
   * Offer this session (an earlier connection's `tlsSession`, to the same
   * server) for resumption, if that connection verified the same way (same
   * `servername`, `ca` object, `rejectUnauthorized` and client `cert`; else
   * a full handshake): a server that accepts skips its certificate and
   * signature, and `verifyPeer` is given the certificate the session was
   * established with. A server that cannot decrypt the ticket (another
   * server, a restart: new ticket keys) does a full handshake, checked as
   * usual. Node and Bun servers issue tickets (a Bun server sends its
   * ticket with its first write), keyed per listener and process.
   */
  session?: TlsSession;
  /** Keep the session the server issues (`Conn.tlsSession`); implied by `session`. Costs about 1 KiB per connection. */
  keepSession?: boolean;
}

/** What a runtime needs of a listener's handshake slots (conn-limit.ts HandshakeSlots). */
export interface HandshakeSlotTaker {
  /** Take a slot for a new connection from `address`; false: close it at once. */
  take(address: string): boolean;
  /** Give back a slot whose connection closed before it was handed over. */
  giveBack(address: string): void;
}

export interface ListenOptions {
  host: string;
  port: number;
  tls?: TlsServerOptions;
  /** Let several processes bind the same address (SO_REUSEPORT). */
  reusePort?: boolean;
  /**
   * Where node:tls serves a TLS port, a connection takes its slot at accept,
   * before its TLS handshake, and is handed over with `slotTaken` true
   * (holding it); elsewhere connections arrive before any handshake and the
   * Server takes their slot (ServerOptions.handshakes).
   */
  handshakes?: HandshakeSlotTaker;
  onConnection(conn: Conn, slotTaken?: boolean): void;
  /**
   * Called when accepting failed or a TLS handshake failed (then `error` is a
   * NetError EPROTO and `peer` the client's `ip:port`); the server keeps running.
   */
  onError?(error: Error, peer?: string): void;
}

export interface Listener {
  readonly host: string;
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Stop accepting. Live connections are not touched. */
  close(): void;
}

export interface ConnectOptions {
  host: string;
  port: number;
  /** Give up after this many milliseconds for all addresses together (default 10 000). */
  timeoutMs?: number;
  tls?: boolean | TlsClientOptions;
  /** Local address to bind before connecting. */
  localAddress?: string;
  signal?: AbortSignal;
}

/** One socket attempt to an already-resolved IP. Used by `connect`. */
export interface RawConnectOptions {
  ip: string;
  port: number;
  timeoutMs: number;
  tls?: TlsClientOptions & { servername: string };
  localAddress?: string;
  signal?: AbortSignal;
}

export interface Runtime {
  readonly name: 'bun' | 'node';
  listen(options: ListenOptions): Promise<Listener>;
  connectIp(options: RawConnectOptions): Promise<Conn>;
}
