/** Something done on every tick, with the tick's clock reading (Date.now()). */
export type TickJob = (now: number) => void;

/**
 * One interval timer that runs many periodic jobs, so that a proxy has one
 * timer for its deadline sweep and its pools' idle expiry instead of one per
 * pool. The timer runs only while there are jobs and is unref'd: it never
 * keeps a process alive. A job that throws is reported through `onError`
 * (default: rethrown outside the tick) and does not stop the others.
 */
export class Ticker {
  private readonly jobs = new Set<TickJob>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly periodMs: number,
    private readonly onError: (error: unknown) => void = rethrowLater,
  ) {
    if (!(periodMs > 0)) throw new RangeError(`ticker period must be above 0 ms, got ${periodMs}`);
  }

  get size(): number {
    return this.jobs.size;
  }

  add(job: TickJob): void {
    this.jobs.add(job);
    if (!this.timer) {
      this.timer = setInterval(tick, this.periodMs, this);
      (this.timer as { unref?: () => void }).unref?.();
    }
  }

  delete(job: TickJob): void {
    this.jobs.delete(job);
    if (this.jobs.size === 0) this.stop();
  }

  /** Drop every job and stop the timer. */
  close(): void {
    this.jobs.clear();
    this.stop();
  }

  /** @internal run every job once (the timer calls this; tests may too). */
  run(now = Date.now()): void {
    for (const job of this.jobs) {
      try {
        job(now);
      } catch (error) {
        this.onError(error);
      }
    }
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

function tick(ticker: Ticker): void {
  ticker.run();
}

function rethrowLater(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}
