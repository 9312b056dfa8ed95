import { NetError, tcpTransport, tlsTransport, toNetError, type Conn, type Ticker, type TransportMap } from '@wmproxy/core-net';
import type { Upstream, UpstreamServer } from '../upstream.js';
import { connected, connectHedgeDelay, connectStuck, connectsStuck, lostConnect } from './hedge.js';

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
  /** The proxy's timer facility, which times the hedge delay. */
  ticker: Ticker;
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
 * dropped), which health's stall detector counts towards ejecting it. A
 * primary whose last connect was still pending after the delay is hedged at
 * once (hedge.ts `connectsStuck`), and it lost if it is still connecting
 * when it has had the delay.
 * Rejects with the first error when every attempt failed.
 */
export function connectHedged(request: HedgeRequest): Promise<HedgeOutcome> {
  const delay = request.upstream === undefined ? request.hedgeDelayMs : connectHedgeDelay(request.upstream, request.hedgeDelayMs);
  // The primary's last connect was still pending after the delay: hedge at once (hedge.ts, connectsStuck).
  const atOnce = delay > 0 && request.upstream !== undefined && connectsStuck(request.primary);
  return new Promise((resolve, reject) => {
    let firstError: NetError | undefined;
    const attempts: Attempt[] = [];
    let done = false;
    /** The hedge timer is pending on the ticker. */
    let timer = false;
    const onAbort = (): void => {
      for (const attempt of attempts) attempt.controller.abort();
    };
    request.signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (): void => {
      done = true;
      if (timer) request.ticker.cancel(fireConnectHedge, hedge);
      timer = false;
      request.signal?.removeEventListener('abort', onAbort);
    };

    const start = (server: UpstreamServer): void => {
      const attempt: Attempt = { server, controller: new AbortController(), settled: false, startedAt: performance.now() };
      attempts.push(attempt);
      request.connector(server, request.timeoutMs, attempt.controller.signal).then(
        (conn) => {
          attempt.settled = true;
          const upstream = request.upstream;
          // Connected, even if late: a sample, and a sign of life for stall detection.
          if (upstream !== undefined) connected(upstream, server, attempt.startedAt, performance.now());
          if (done) {
            request.adopt(server, conn);
            return;
          }
          finish();
          resolve({ conn, server, hedged: attempts.length > 1 });
          const primary = attempts[0]!;
          if (attempt === primary || primary.settled || upstream === undefined) {
            abortOthers(attempts, attempt);
            return;
          }
          const now = performance.now();
          const hedgeMs = now - attempt.startedAt;
          // Hedged at once, the two started together: the primary is judged once it has had the delay.
          const race = atOnce ? 'late' : raceOutcome(now - primary.startedAt, hedgeMs, delay);
          if (race === 'lost') lostConnect(upstream, primary.server, primary.startedAt);
          if (race !== 'late') {
            abortOthers(attempts, attempt);
            return;
          }
          // Give the primary as long again as the hedge took: one that was only slow (a burst of connects, a
          // busy loop) connects meanwhile, goes to its pool and counts as alive; a blackholed one lost.
          request.ticker.once(Date.now() + Math.ceil(Math.max(hedgeMs, delay)), fireConnectHedge, () => {
            if (!primary.settled) {
              connectStuck(primary.server);
              // Hedged at once, each such connect is a probe of its own: counted even when others overlapped it
              // (the stall detector otherwise counts one loss per slow moment), so the server is out after
              // STALL_AFTER of them, however many requests are in flight.
              lostConnect(upstream, primary.server, atOnce ? 0 : primary.startedAt);
            }
            abortOthers(attempts, attempt);
          });
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
      timer = false;
      if (done) return;
      // Still connecting after the delay: the next connects to this server need not wait for it.
      if (!atOnce && request.upstream !== undefined) connectStuck(request.primary);
      const second = request.pickSecond();
      if (second) start(second);
    };

    start(request.primary);
    if (delay > 0 && !done) {
      if (atOnce) hedge();
      else {
        timer = true;
        request.ticker.once(Date.now() + delay, fireConnectHedge, hedge);
      }
    }
  });
}

function abortOthers(attempts: Attempt[], winner: Attempt): void {
  for (const other of attempts) if (other !== winner && !other.settled) other.controller.abort();
}

/**
 * A primary still connecting after `waitedMs` when a hedge that started
 * `delayMs` or later after it connected in `hedgeMs`:
 * - `lost`: the hedge connected sooner than the primary had waited when the
 *   hedge started (a fair race);
 * - `late`: not that, but the primary has now waited twice the delay (a high
 *   percentile of recent connects). On a busy event loop both completions
 *   are seen late, which stretches the hedge's time as much as the head start
 *   it must beat, so a blackholed server would never lose a fair race: it
 *   lost if it is still connecting after as long again as the hedge took;
 * - `even`: neither (the whole pool is slow): nobody is blamed.
 */
export function raceOutcome(waitedMs: number, hedgeMs: number, delayMs: number): 'lost' | 'late' | 'even' {
  if (hedgeMs < waitedMs - hedgeMs) return 'lost';
  return waitedMs >= 2 * delayMs ? 'late' : 'even';
}

function fireConnectHedge(hedge: () => void): void {
  hedge();
}
