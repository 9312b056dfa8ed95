/**
 * Vocabulary shared by the upstream group, its policies and the location
 * handlers, in a file that imports nothing, so that none of them has to
 * import another's module for a type (no import cycles).
 */
import type { Conn, RequestHead } from '@wmproxy/core-net';

/** What a load-balancing policy reads and writes of a server (UpstreamServer has these). */
export interface BalancedServer {
  readonly address: string;
  /** Requests in flight. */
  readonly active: number;
}

/** What a policy may use of its upstream group (Upstream has these). */
export interface BalancedGroup<S extends BalancedServer> {
  /** For `hash`: `uri`, `path`, `ip`, `header:NAME` or `cookie:NAME`. */
  readonly hashKey: string;
  /** The server's weight now (slow start included). */
  effectiveWeight(server: S): number;
}

/** What a location handler answers. */
export interface LocationResponse {
  status: number;
  /** Response fields in order (a Content-Length here is used as `length`). */
  headers: Array<[string, string]>;
  body?: Uint8Array | string | AsyncIterable<Uint8Array>;
  /** Body length (the full length for HEAD); chunked encoding is used when unknown. */
  length?: number;
}

/**
 * A location handler other than proxying (static files): gets the request
 * and returns the response, whose body is streamed with backpressure.
 */
export interface LocationHandler {
  handle(request: {
    method: string;
    /** The request-target as received (path and query). */
    target: string;
    /** Same as `target`. */
    uri: string;
    /** The path without the query. */
    path: string;
    header(lower: string): string | undefined;
  }): Promise<LocationResponse>;
}

/**
 * A location that takes the client connection over once the request head
 * is read (a WebSocket-to-TCP bridge, `websocket_to_tcp`): the engine hands
 * it the connection, the head and the bytes read past the head, and lets go
 * of the connection. The taker answers (101 or a refusal) and owns the
 * connection from then on: its timeouts, its close.
 */
export interface ConnTakeover {
  takeover(client: Conn, head: RequestHead, unread: Uint8Array): void;
}
