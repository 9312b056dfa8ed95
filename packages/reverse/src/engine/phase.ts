import type { Conn, HeaderList } from '@wmproxy/core-net';
import type { ListenerContext } from './context.js';

// The vocabulary between a client connection (session.ts) and the exchange
// serving its current request (exchange.ts), so that neither imports the other
// for a type.

/** Where a client connection is. */
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

/**
 * How an HTTP/2 stream takes a response head (h2.ts): as HEADERS, after
 * which the exchange writes the body unframed to `client` (DATA).
 */
export interface Http2Responder {
  /**
   * `fields` as the HTTP/1 path built them; connection-specific ones are dropped, names lower-cased.
   * `endStream`: no body follows, one HEADERS frame with END_STREAM is the whole answer (sent when the exchange is done).
   */
  respond(status: number, fields: HeaderList, endStream: boolean): void;
  /** The stream ends with these trailers (HEADERS with END_STREAM) instead of an empty DATA frame. */
  trailers(fields: ReadonlyArray<readonly [string, string]>): void;
  /** An upstream's interim response (100, 103) as an informational HEADERS; dropped once the final head is sent. */
  interim(status: number, fields: HeaderList): void;
  /** Body bytes `bytes[start, end)` as DATA (valid during the call only); false above the high-water mark. */
  writeBody(bytes: Uint8Array, start: number, end: number): boolean;
}

/** What an exchange sees of its client connection (a ClientSession, or one HTTP/2 stream). */
export interface ClientConnection {
  readonly client: Conn;
  /** Set on an HTTP/2 stream: response heads go there, bodies are not HTTP/1-framed. */
  readonly http2: Http2Responder | undefined;
  readonly ctx: ListenerContext;
  phase: Phase;
  readonly clientEnded: boolean;
  /** Client bytes held while they could not be read. */
  readonly heldBytes: number;
  readonly isClosed: boolean;
  setDeadline(kind: Deadline, ms: number, now?: number): void;
  pauseClient(): void;
  resumeClient(force?: boolean): void;
  hold(chunk: Uint8Array): void;
  replayHeld(): void;
  /** The exchange ended: the connection reads the next request (when `keepAlive`; once drained unless `flushed`) or closes. */
  exchangeDone(exchange: object, keepAlive: boolean, flushed: boolean, now?: number): void;
  /** The exchange became a tunnel to `up`: the connection lets go. */
  becomeTunnel(up: Conn): void;
  /** A location takes the connection over: the connection lets go and returns the bytes it held past the head. */
  handOver(): Uint8Array;
  armHedgeTimer(at: number): void;
  crashed(error: unknown): void;
}
