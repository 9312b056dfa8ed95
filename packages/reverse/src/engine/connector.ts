import { NetError, tcpTransport, tlsTransport, toNetError, type Conn, type TransportMap } from '@wmproxy/core-net';
import type { Upstream, UpstreamServer } from '../upstream.js';
import { connected, connectHedgeDelay, lostConnect } from './hedge.js';

/**
 * Opens a new connection to an upstream server: through the core-net
 * `Transport` its scheme names (`tcp`, `tls`, a tunnel...). Tests and
 * embedders may inject their own (for example one that delays).
 */
export type Connector = (server: UpstreamServer, timeoutMs: number, signal: AbortSignal) => Promise<Conn>;

/** Each server through the transport of its kind in `transports`. */
export function transportConnector(transports: TransportMap): Connector {
  return (server, timeoutMs, signal) => {
    const transport = transports[server.transport];
    if (transport === undefined) {
      return Promise.reject(new NetError('ECONNREFUSED', `no transport "${server.transport}" for ${server.address}`, { address: server.address }));
    }
    return transport.connect(server, timeoutMs, signal);
  };
}

/** TCP and TLS with the system resolver. */
export const defaultConnector: Connector = transportConnector({ tcp: tcpTransport, tls: tlsTransport });

export interface HedgeOutcome {
  conn: Conn;
  server: UpstreamServer;
  hedged: boolean;
}

export interface HedgeRequest {
  primary: UpstreamServer;
  /**
   * The group the servers belong to: with it, the hedge delay adapts to its
   * connect times (hedge.ts) and a primary that loses the race is reported
   * to health's stall detector.
   */
  upstream?: Upstream;
  connector: Connector;
  timeoutMs: number;
  /** The longest wait before hedging (the delay itself when `upstream` is not given); 0 disables hedging. */
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
  /** performance.now() at the start of the connect. */
  startedAt: number;
}

/**
 * Connect hedging: connect to `primary`; if that has not completed after
 * the hedge delay (learnt from the group's connect times, at most
 * `hedgeDelayMs`), start a second connect to another server and take
 * whichever completes first. The loser is aborted (or, when it connects
 * anyway, handed to `adopt`); a primary beaten by a hedge that took less
 * time than the primary had waited lost a race (a blackholed server: SYNs
 * dropped), which health's stall detector counts towards ejecting it.
 * Rejects with the first error when every attempt failed.
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
      const attempt: Attempt = { server, controller: new AbortController(), settled: false, startedAt: performance.now() };
      attempts.push(attempt);
      request.connector(server, request.timeoutMs, attempt.controller.signal).then(
        (conn) => {
          attempt.settled = true;
          if (done) {
            request.adopt(server, conn);
            return;
          }
          finish();
          const upstream = request.upstream;
          if (upstream !== undefined) {
            const now = performance.now();
            connected(upstream, server, attempt.startedAt, now);
            // The hedge won fairly: it connected sooner than the primary had waited when it was hedged.
            const primary = attempts[0]!;
            if (attempt !== primary && !primary.settled && now - attempt.startedAt < attempt.startedAt - primary.startedAt) {
              lostConnect(upstream, primary.server, primary.startedAt);
            }
          }
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
    const delay = request.upstream === undefined ? request.hedgeDelayMs : connectHedgeDelay(request.upstream, request.hedgeDelayMs);
    if (delay > 0 && !done) timer = setTimeout(hedge, delay);
  });
}
