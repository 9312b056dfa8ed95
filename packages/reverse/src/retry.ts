import type { RetryOptions } from './engine/options.js';

/** Why an attempt failed. */
/** `unavailable`: the server said it did not take the request (gRPC UNAVAILABLE trailers-only, a refused HTTP/2 stream). */
export type FailureKind = 'connect' | 'timeout' | 'reset' | 'status' | 'bad' | 'unavailable';

export interface RetryState {
  kind: FailureKind;
  /** Attempts made so far, the failed one included. */
  attempts: number;
  /** Milliseconds since the first attempt started. */
  elapsedMs: number;
  method: string;
  /** The request has a body. */
  hasBody: boolean;
  /** Some of the body already went to the failed server. */
  bodySent: boolean;
  /** Every body byte sent so far is kept in the replay buffer (see `bodyBuffer`), so it can be sent again. */
  bodyReplayable?: boolean;
  /** Part of the response already went to the client. */
  responseStarted: boolean;
}

/** Request bodies up to this size are kept for a replay by default (Envoy's per_request_buffer_limit is 1 MiB, HAProxy's bufsize 16 KiB). */
export const DEFAULT_BODY_BUFFER = 64 * 1024;

/** Retry options with the replay buffer (`retries.bodyBuffer` of the ReverseProxy). */
export interface ReplayOptions {
  /**
   * Keep a copy of an idempotent request's body while it is at most this
   * many bytes, so that the request can be replayed to the next server
   * (default 64 KiB; 0: never). A larger body is streamed without a copy,
   * and the request is not retried once its body went out.
   */
  bodyBuffer?: number;
}

/** The replay buffer size of these options. */
export function bodyBufferLimit(options: RetryOptions & ReplayOptions): number {
  return options.tries > 1 ? (options.bodyBuffer ?? DEFAULT_BODY_BUFFER) : 0;
}

/**
 * May the request go to the next server? (nginx's proxy_next_upstream rules.)
 * Never once the client saw part of a response, past `tries` attempts or
 * `totalMs`. A failed connect sent nothing, so any request may move on unless
 * its body was already being sent (and not kept), and so may one the server
 * refused unprocessed (`unavailable`); after the request went out
 * (timeout, reset, a retryable status, a bad response), only an idempotent
 * request is replayed, and only if it has no body or its body is kept in the
 * replay buffer.
 */
export function retryAllowed(state: RetryState, options: RetryOptions): boolean {
  if (state.responseStarted || state.attempts >= options.tries) return false;
  if (options.totalMs > 0 && state.elapsedMs >= options.totalMs) return false;
  if (state.kind === 'connect' || state.kind === 'unavailable') return !state.bodySent || state.bodyReplayable === true;
  if ((state.kind === 'timeout' || state.kind === 'reset') && !options.onTimeout) return false;
  return options.methods.includes(state.method) && (!state.hasBody || state.bodyReplayable === true);
}

/** What the retry budget reads and counts of an upstream group. */
export interface BudgetedUpstream {
  readonly servers: readonly { readonly active: number }[];
  /** Requests of this group holding a retry slot. */
  retriesInFlight: number;
}

export type RetryBudgetOptions = Pick<RetryOptions, 'budgetPercent' | 'budgetMinConcurrency'>;

/**
 * The retry budget (Envoy's retry_budget): retries in flight to `upstream`
 * stay within `budgetPercent` of its requests in flight, or
 * `budgetMinConcurrency`, whichever is more.
 */
export function retryBudgetLimit(upstream: BudgetedUpstream, options: RetryBudgetOptions): number {
  let inFlight = 0;
  for (const server of upstream.servers) inFlight += server.active;
  return Math.max(options.budgetMinConcurrency, Math.floor((inFlight * options.budgetPercent) / 100));
}

/**
 * One request's hold on a retry budget: a request takes one slot for all its
 * retries and gives it back once, when no more retries can come (its
 * response began, it was answered, or the client left). One per client
 * session, reused from request to request.
 */
export class RetrySlot {
  private upstream: BudgetedUpstream | undefined = undefined;

  /** The upstream whose budget this slot is held in. */
  get held(): BudgetedUpstream | undefined {
    return this.upstream;
  }

  /** May the request retry on `upstream`? Takes a slot unless it already holds one there. */
  take(upstream: BudgetedUpstream, options: RetryBudgetOptions): boolean {
    if (this.upstream === upstream) return true;
    if (upstream.retriesInFlight >= retryBudgetLimit(upstream, options)) return false;
    // A slot held elsewhere (never in practice: a request stays in one group) is given back first.
    this.release();
    upstream.retriesInFlight++;
    this.upstream = upstream;
    return true;
  }

  /** No more retries for this request (idempotent). */
  release(): void {
    if (this.upstream === undefined) return;
    this.upstream.retriesInFlight--;
    this.upstream = undefined;
  }
}
