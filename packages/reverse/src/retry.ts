import { IDEMPOTENT, type RetryOptions } from './engine/options.js';

/** Why an attempt failed. */
export type FailureKind = 'connect' | 'timeout' | 'reset' | 'status' | 'bad';

export interface RetryState {
  kind: FailureKind;
  /** Attempts made so far, the failed one included. */
  attempts: number;
  /** Milliseconds since the first attempt started. */
  elapsedMs: number;
  method: string;
  /** The request has a body (streamed, so it cannot be replayed once sent). */
  hasBody: boolean;
  /** Some of the body already went to the failed server. */
  bodySent: boolean;
  /** Part of the response already went to the client. */
  responseStarted: boolean;
}

/**
 * May the request go to the next server? (nginx's proxy_next_upstream rules.)
 * Never once the client saw part of a response, past `tries` attempts or
 * `totalMs`. A failed connect sent nothing, so any request may move on unless
 * its body was already being sent; after the request went out (timeout,
 * reset, a retryable status, a bad response), only an idempotent request
 * without a body is replayed.
 */
export function retryAllowed(state: RetryState, options: RetryOptions): boolean {
  if (state.responseStarted || state.attempts >= options.tries) return false;
  if (options.totalMs > 0 && state.elapsedMs >= options.totalMs) return false;
  if (state.kind === 'connect') return !state.bodySent;
  if ((state.kind === 'timeout' || state.kind === 'reset') && !options.onTimeout) return false;
  return IDEMPOTENT.has(state.method) && !state.hasBody;
}
