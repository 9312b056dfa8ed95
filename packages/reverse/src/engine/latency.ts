/**
 * A running quantile of recent latencies: a log-scale histogram whose counts
 * halve every `DECAY_EVERY` samples, so it follows recent traffic in O(1)
 * memory and without allocation. Used for the request-hedge delay (first
 * byte) and the connect-hedge delay (connect time) of each upstream group.
 */

/** Log-scale histogram buckets: bucket i holds latencies up to BASE^i ms. */
const BUCKET_BASE = 1.2;
const BUCKETS = 64; // 1.2^63 ms ≈ 97 minutes
const LOG_BASE = Math.log(BUCKET_BASE);
/** Counts are halved every this many samples. */
const DECAY_EVERY = 1024;
/** The quantile is recomputed every this many samples. */
const RECOMPUTE_EVERY = 32;

export class LatencyEstimate {
  private readonly counts = new Float64Array(BUCKETS);
  private total = 0;
  private sinceDecay = 0;
  private sinceRecompute = 0;
  /** Recompute every RECOMPUTE_EVERY samples, or sooner when fewer are enough to start. */
  private readonly recomputeEvery: number;
  /** The cached quantile in ms (NaN until `minSamples` samples). */
  quantileMs = Number.NaN;
  /** The longest sample seen so far (for the provisional value before `minSamples`). */
  private longestMs = 0;

  /**
   * `warmupFactor` > 0: until `minSamples` samples were seen, `clamp` gives
   * the longest sample so far times this factor (within floor and ceiling)
   * rather than the ceiling, so that the first moments of a process (or of a
   * rarely connecting pool) do not cost the whole ceiling; 0: the ceiling.
   */
  constructor(
    private readonly quantile: number,
    private readonly minSamples: number,
    private readonly warmupFactor = 0,
  ) {
    this.recomputeEvery = Math.max(1, Math.min(RECOMPUTE_EVERY, minSamples));
  }

  add(ms: number): void {
    const index = ms <= 1 ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(ms) / LOG_BASE));
    this.counts[index]! += 1;
    this.total += 1;
    if (ms > this.longestMs) this.longestMs = ms;
    if (++this.sinceDecay >= DECAY_EVERY) {
      this.sinceDecay = 0;
      for (let i = 0; i < BUCKETS; i++) this.counts[i]! *= 0.5;
      this.total *= 0.5;
    }
    if (++this.sinceRecompute >= this.recomputeEvery) {
      this.sinceRecompute = 0;
      this.recompute();
    }
  }

  /**
   * The quantile, at least `floorMs`, at most `ceilingMs`; until enough
   * samples were seen, the ceiling (or the provisional value, see
   * `warmupFactor`).
   */
  clamp(floorMs: number, ceilingMs: number): number {
    let estimate = this.quantileMs;
    if (!(estimate > 0)) {
      if (this.warmupFactor === 0 || this.longestMs === 0) return ceilingMs;
      estimate = this.longestMs * this.warmupFactor;
    }
    return Math.min(ceilingMs, Math.max(floorMs, Math.ceil(estimate)));
  }

  private recompute(): void {
    if (this.total < this.minSamples) return;
    const want = this.total * this.quantile;
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= want) {
        this.quantileMs = Math.pow(BUCKET_BASE, i);
        return;
      }
    }
  }
}
