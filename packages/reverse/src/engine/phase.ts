/** Where a client connection is (session.ts), shared with its exchange (exchange.ts). */
export enum Phase {
  /** Reading a request head (or waiting for one between requests). */
  Head,
  /** Connecting upstream; the client is paused, its bytes held. */
  Connecting,
  /** An upstream exchange: request body up, response down. */
  Proxy,
  /** The proxy answers itself (fixed response, error, location handler). */
  Local,
  /** A 101 turned the connection into a relay. */
  Tunnel,
  Closed,
}

/** What the session's one deadline is for. */
export enum Deadline {
  None,
  KeepAlive,
  Header,
  Body,
  FirstByte,
  Idle,
}
