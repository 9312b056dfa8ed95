import type { Conn } from '@wmproxy/core-net';
import type { ListenerContext } from './context.js';
import { HOLD_LIMIT, type Exchange } from './exchange.js';
import { scheduleHedge } from './hedge.js';
import { Deadline, type Phase } from './phase.js';

/**
 * What an HTTP/1 connection (session.ts) and an HTTP/2 stream (h2.ts) keep
 * alike for the exchange they serve. The helpers below are the behaviour the
 * two share, written once: holding client bytes while they cannot be read,
 * the hedge timer entry, and the exchange's deadlines.
 */
export interface ClientSide {
  readonly ctx: ListenerContext;
  readonly client: Conn;
  /** Pausing and resuming a socket can cost a system call: only when the state changes. */
  clientPaused: boolean;
  phase: Phase;
  exchange: Exchange | undefined;
  deadline: number;
  deadlineKind: Deadline;
  /** Client bytes that arrived while they could not be read. */
  held: Uint8Array[] | undefined;
  heldBytes: number;
  /** Due time of this side's earliest entry in the hedge timer (0: none). */
  hedgeTimerAt: number;
  hedgeDue(at: number): void;
  crashed(error: unknown): void;
}

/** Stop reading from the client (once). */
export function pauseSide(side: ClientSide): void {
  if (side.clientPaused) return;
  side.clientPaused = true;
  side.client.pause();
}

/** Read from the client again; `force`: whatever the side thinks (a tunnel's relay reads from now on). */
export function resumeSide(side: ClientSide, force: boolean): void {
  if (!side.clientPaused && !force) return;
  side.clientPaused = false;
  side.client.resume();
}

/** Body bytes while an exchange is proxying go to its request body while one is owed; false: not taken (hold them). */
export function toRequestBody(side: ClientSide, chunk: Uint8Array): boolean {
  const exchange = side.exchange;
  const reader = exchange?.reqReader;
  if (reader === undefined || reader.done) return false;
  exchange!.forwardRequestBody(chunk);
  return true;
}

/** Keep `chunk` (already the side's own) until it can be read; stop reading above HOLD_LIMIT. */
export function keepHeld(side: ClientSide, chunk: Uint8Array): void {
  (side.held ??= []).push(chunk);
  side.heldBytes += chunk.byteLength;
  if (side.heldBytes >= HOLD_LIMIT) pauseSide(side);
}

/** The held chunks, handed back once (after a phase change). */
export function takeHeld(side: ClientSide): Uint8Array[] | undefined {
  const chunks = side.held;
  side.held = undefined;
  side.heldBytes = 0;
  return chunks;
}

/**
 * The exchange's request hedge is due at `at`. Most requests are answered
 * long before: while the side has an entry in the hedge timer due no later,
 * no new one is added (that entry re-arms for the current deadline when it
 * fires), so a keep-alive connection costs the timer one entry per hedge
 * delay, not one per request.
 */
export function armHedgeTimer(side: ClientSide, at: number): void {
  if (side.hedgeTimerAt !== 0 && side.hedgeTimerAt <= at) return;
  side.hedgeTimerAt = at;
  scheduleHedge(side.ctx.core.ticker, side, at);
}

/** The hedge timer fired: the exchange's hedge due at `at` may be due now. */
export function hedgeTimerFired(side: ClientSide, at: number): void {
  if (at === side.hedgeTimerAt) side.hedgeTimerAt = 0;
  try {
    side.exchange?.hedgeDue(at);
  } catch (error) {
    side.crashed(error);
  }
}

/**
 * The proxy's sweep: the exchange's own deadlines (hedge, whole request),
 * then the side's one deadline. Returns the kind that passed (Deadline.None:
 * nothing to do, or the request timed out and the exchange answered).
 */
export function passedDeadline(side: ClientSide, now: number): Deadline {
  let exchange = side.exchange;
  if (exchange !== undefined) {
    if (exchange.hedgeDeadline !== 0 && now >= exchange.hedgeDeadline) exchange.hedgeDue(now);
    exchange = side.exchange;
    if (exchange !== undefined && exchange.requestDeadline !== 0 && now >= exchange.requestDeadline) {
      exchange.requestTimedOut();
      return Deadline.None;
    }
  }
  if (side.deadline === 0 || now < side.deadline) return Deadline.None;
  const kind = side.deadlineKind;
  side.deadline = 0;
  side.deadlineKind = Deadline.None;
  return kind;
}
