/**
 * Stall detection for one target: races it lost against the other targets
 * of its group. A race is a hedged request (no first byte within the hedge
 * delay while another target answered first) or a hedged connect (no
 * connection within the connect-hedge delay while another target's
 * connected). A target that loses `STALL_AFTER` races in a row, with no
 * answer of its own in between, is ejected by the checker for
 * `STALL_EJECT_MS` (doubling on each repeat, up to `STALL_EJECT_MAX_MS`)
 * through the same mechanism, limits and events as outlier detection; when
 * the ejection ends it is on probation, where a single lost race ejects it
 * again and an answer restores it.
 *
 * Losses count only as separate observations: a request or connect already
 * under way when a loss was counted adds none (a burst that one slow moment
 * delays is one loss, not one per request).
 */

/** Lost races in a row that eject a target. */
export const STALL_AFTER = 3;
/** First stall ejection (ms); doubles on each repeat. */
export const STALL_EJECT_MS = 1_000;
/** Longest stall ejection (ms). */
export const STALL_EJECT_MAX_MS = 30_000;

/** What a lost race did: nothing (already out, or not a separate observation), one more loss, or an ejection. */
export type LossVerdict = 'ignored' | 'counted' | 'skipped';

export class Stall {
  /** Start time (performance.now()) of the newest request or connect this target answered. */
  newestSentAt = 0;
  /** Lost races since the target last answered. */
  losses = 0;
  /** When the last loss was counted (performance.now()); work started before it adds none. */
  private lossAt = 0;
  /** Stall ejections in a row (the next lasts STALL_EJECT_MS × 2^ejections). */
  private ejections = 0;
  /** Back from a stall ejection, not yet answered: one lost race ejects it again. */
  probation = false;

  /** An answer to work started at `sentAt`: a sign of life. */
  answered(sentAt: number): void {
    if (sentAt > this.newestSentAt) this.newestSentAt = sentAt;
    if (this.losses === 0 && !this.probation) return;
    this.losses = 0;
    this.probation = false;
    this.ejections = 0;
  }

  /**
   * A race lost by work started at `sentAt` (0 if unknown), now
   * (performance.now()). 'skipped' means: eject now (the caller applies the
   * ejection limits and calls `ejected`).
   */
  lost(sentAt: number, now: number): LossVerdict {
    if (sentAt !== 0 && sentAt <= this.lossAt) return 'ignored';
    this.lossAt = now;
    this.losses++;
    return this.probation || this.losses >= STALL_AFTER ? 'skipped' : 'counted';
  }

  /** The checker ejected the target; returns for how long (at least `minMs`). */
  ejected(minMs: number): number {
    const durationMs = Math.min(STALL_EJECT_MAX_MS, Math.max(STALL_EJECT_MS * 2 ** this.ejections, minMs));
    this.ejections = Math.min(this.ejections + 1, 16);
    this.losses = 0;
    this.probation = false;
    return durationMs;
  }

  /** The stall ejection ended: on probation until it answers. */
  returned(): void {
    this.probation = true;
  }
}
