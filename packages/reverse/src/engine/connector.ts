import { connect, NetError, toNetError, type Conn } from '@wmproxy/core-net';
import type { UpstreamServer } from '../upstream.js';

/**
 * Opens a new connection to an upstream server. The default uses core-net's
 * `connect` (DNS re-resolved on each call, every address tried); tests and
 * embedders may inject their own (for example one that delays).
 */
export type Connector = (server: UpstreamServer, timeoutMs: number, signal: AbortSignal) => Promise<Conn>;

export const defaultConnector: Connector = (server, timeoutMs, signal) =>
  connect({
    host: server.host,
    port: server.port,
    timeoutMs,
    signal,
    tls: server.tls ? { servername: server.servername, rejectUnauthorized: server.tlsVerify } : undefined,
  });

export interface HedgeOutcome {
  conn: Conn;
  server: UpstreamServer;
  hedged: boolean;
}

export interface HedgeRequest {
  primary: UpstreamServer;
  connector: Connector;
  timeoutMs: number;
  /** 0 disables hedging. */
  hedgeDelayMs: number;
  /** Chooses the second server when the hedge fires (undefined: none available). */
  pickSecond(): UpstreamServer | undefined;
  /** Where a losing connection that did connect goes (normally its keep-alive pool). */
  adopt(server: UpstreamServer, conn: Conn): void;
  /** Told about every failed connect (for passive health), aborted ones excepted. */
  onFailure?(server: UpstreamServer, error: NetError): void;
  signal?: AbortSignal;
}

interface Attempt {
  server: UpstreamServer;
  controller: AbortController;
  settled: boolean;
}

/**
 * Connect hedging: connect to `primary`; if that has not completed after
 * `hedgeDelayMs`, start a second connect to another server and take
 * whichever completes first. The loser is aborted (or, when it connects
 * anyway, handed to `adopt`). Rejects with the first error when every
 * attempt failed.
 */
export function connectHedged(request: HedgeRequest): Promise<HedgeOutcome> {
  return new Promise((resolve, reject) => {
    let firstError: NetError | undefined;
    const attempts: Attempt[] = [];
    let done = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = (): void => {
      for (const attempt of attempts) attempt.controller.abort();
    };
    request.signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (): void => {
      done = true;
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', onAbort);
    };

    const start = (server: UpstreamServer): void => {
      const attempt: Attempt = { server, controller: new AbortController(), settled: false };
      attempts.push(attempt);
      request.connector(server, request.timeoutMs, attempt.controller.signal).then(
        (conn) => {
          attempt.settled = true;
          if (done) {
            request.adopt(server, conn);
            return;
          }
          finish();
          for (const other of attempts) if (other !== attempt && !other.settled) other.controller.abort();
          resolve({ conn, server, hedged: attempts.length > 1 });
        },
        (error: unknown) => {
          attempt.settled = true;
          const netError = toNetError(error, server.address);
          if (done) return;
          firstError ??= netError;
          if (netError.code !== 'EABORTED') request.onFailure?.(server, netError);
          if (attempts.every((a) => a.settled)) {
            finish();
            reject(firstError);
          }
        },
      );
    };

    const hedge = (): void => {
      timer = undefined;
      if (done) return;
      const second = request.pickSecond();
      if (second) start(second);
    };

    start(request.primary);
    if (request.hedgeDelayMs > 0 && !done) timer = setTimeout(hedge, request.hedgeDelayMs);
  });
}
