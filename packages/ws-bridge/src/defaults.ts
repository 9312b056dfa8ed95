/** Every default of the WebSocket bridges, in one place (README and CLI help quote these). */
export const WS_BRIDGE_DEFAULTS = {
  /** ws2tcp listens here unless told otherwise (loopback: safe by default). */
  listen: '127.0.0.1:8080',
  /** Requests for other paths get 404. A trailing `/` matches everything below it. */
  path: '/',
  /** Subprotocols ws2tcp accepts, in this order of preference when a client offers several. */
  subprotocols: ['binary', 'base64'] as readonly string[],
  /** Text messages without the base64 subprotocol: refused with 1003, as websockify does. */
  text: 'refuse' as const,
  /** Ping a silent peer after this long; 30 s keeps NAT and load-balancer mappings alive. */
  pingIntervalMs: 30_000,
  /** An unanswered ping after this long: the peer is gone. */
  pongTimeoutMs: 30_000,
  /** Close handshake and TCP linger deadline. */
  closeTimeoutMs: 5_000,
  /** Largest message accepted (1009 above). Messages are streamed, never held whole, except base64 groups. */
  maxMessageSize: 16 * 1024 * 1024,
  /** Reading the upgrade request, and a tcp2ws client waiting for the 101. */
  handshakeTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  /** Largest upgrade request or response head. */
  maxHeadSize: 16 * 1024,
} as const;
