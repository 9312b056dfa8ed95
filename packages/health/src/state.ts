import type { HealthState } from './types.js';

/**
 * HAProxy's rise/fall machine for one check. Results are counted as
 * consecutive runs: `rise` successes in a row make a target healthy, `fall`
 * failures in a row make it unhealthy. From `unknown`, either the first
 * result decides (`decideOnFirst`) or the same thresholds apply.
 */
export class RiseFall {
  state: HealthState;
  /** Consecutive successes / failures so far (one of them is always 0). */
  successes = 0;
  failures = 0;
  rise: number;
  fall: number;
  decideOnFirst: boolean;

  constructor(initial: HealthState, rise: number, fall: number, decideOnFirst: boolean) {
    this.state = initial;
    this.rise = rise;
    this.fall = fall;
    this.decideOnFirst = decideOnFirst;
  }

  /** Count one result; returns the previous state when it changed, else undefined. */
  record(ok: boolean): HealthState | undefined {
    if (ok) {
      this.successes++;
      this.failures = 0;
    } else {
      this.failures++;
      this.successes = 0;
    }
    const previous = this.state;
    let next = previous;
    if (previous === 'unknown' && this.decideOnFirst) next = ok ? 'healthy' : 'unhealthy';
    else if (ok && previous !== 'healthy' && this.successes >= this.rise) next = 'healthy';
    else if (!ok && previous !== 'unhealthy' && this.failures >= this.fall) next = 'unhealthy';
    if (next === previous) return undefined;
    this.state = next;
    return previous;
  }

  /** A transition is under way (or the state is still unknown): probe at the fast interval. */
  get changing(): boolean {
    if (this.state === 'unknown') return true;
    return this.state === 'healthy' ? this.failures > 0 : this.successes > 0;
  }
}
