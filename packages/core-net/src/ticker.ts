/** Something done on every tick, with the tick's clock reading (Date.now()). */
export type TickJob = (now: number) => void;

/**
 * What a one-shot timer calls when it is due: `fire(target, at)`, with the
 * time it was due. Pass a function defined once (a module-level function),
 * and the object it acts on as `target`: scheduling then allocates nothing.
 */
export type TimerFire<T> = (target: T, at: number) => void;

/**
 * One proxy's timer facility: many periodic jobs on one interval timer (the
 * deadline sweep, every pool's idle expiry), and many one-shot timers on one
 * min-heap with one `setTimeout` for the earliest (request and connect hedge
 * delays, with millisecond precision). Both timers run only while there is
 * something to run and are unref'd: a ticker never keeps a process alive. A
 * job or one-shot that throws is reported through `onError` (default:
 * rethrown outside the tick) and does not stop the others.
 */
export class Ticker {
  private readonly jobs = new Set<TickJob>();
  private timer: ReturnType<typeof setInterval> | undefined;

  // One-shot timers: a binary min-heap on `heapAt` in parallel arrays (no object per timer).
  private readonly heapAt: number[] = [];
  private readonly heapFire: Array<TimerFire<never>> = [];
  private readonly heapTarget: unknown[] = [];
  private onceTimer: ReturnType<typeof setTimeout> | undefined;
  private onceTimerAt = Infinity;
  /** Due one-shots, [fire, target, at] flattened, waiting for `runDue`. */
  private due: unknown[] = [];
  private spare: unknown[] = [];
  private dueScheduled = false;

  constructor(
    readonly periodMs: number,
    private readonly onError: (error: unknown) => void = rethrowLater,
  ) {
    if (!(periodMs > 0)) throw new RangeError(`ticker period must be above 0 ms, got ${periodMs}`);
  }

  /** Periodic jobs. */
  get size(): number {
    return this.jobs.size;
  }

  /** One-shot timers pending (cancelled ones not yet due included: they stay in the heap, inert). */
  get pending(): number {
    return this.heapAt.length;
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

  /**
   * Call `fire(target, at)` at `at` (Date.now() ms) or soon after; a time in
   * the past fires on the next turn. Timers due together fire in the order
   * of their due times. They fire in a `setImmediate` after the timer, so
   * that I/O already waiting (an answer that came while the loop was busy)
   * is read first. The same `fire` and `target` may be scheduled several
   * times (each fires); `cancel(fire, target)` drops them.
   */
  once<T>(at: number, fire: TimerFire<T>, target: T): void {
    const heapAt = this.heapAt;
    let i = heapAt.length;
    heapAt.push(at);
    this.heapFire.push(fire as TimerFire<never>);
    this.heapTarget.push(target);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heapAt[parent]! <= at) break;
      this.move(parent, i);
      i = parent;
    }
    heapAt[i] = at;
    this.heapFire[i] = fire as TimerFire<never>;
    this.heapTarget[i] = target;
    if (at < this.onceTimerAt) this.arm(at);
  }

  /**
   * The pending one-shot timers of `fire` on `target` will not fire (no
   * effect on those that already did). A linear search over the pending
   * timers: meant for the rare cancel (a connect that completed before its
   * hedge); a hot path that re-arms should let a stale timer fire and
   * ignore it instead.
   */
  cancel<T>(fire: TimerFire<T>, target: T): void {
    const fires = this.heapFire;
    const targets = this.heapTarget;
    for (let i = 0; i < fires.length; i++) {
      if (fires[i] !== fire || targets[i] !== target) continue;
      // Inert from now on; it leaves the heap when it comes due.
      fires[i] = ignore;
      targets[i] = undefined;
    }
  }

  /** Drop every job and one-shot timer and stop the timers. */
  close(): void {
    this.jobs.clear();
    this.stop();
    if (this.onceTimer !== undefined) clearTimeout(this.onceTimer);
    this.onceTimer = undefined;
    this.onceTimerAt = Infinity;
    this.heapAt.length = this.heapFire.length = this.heapTarget.length = 0;
    this.due.length = 0;
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

  /** @internal the one-shot timer fired (nothing to clear): as `expire`. */
  fired(): void {
    this.onceTimer = undefined;
    this.expire();
  }

  /** @internal the one-shot timer: collect what is due by `now`, fire it after pending I/O. */
  expire(now = Date.now()): void {
    if (this.onceTimer !== undefined) clearTimeout(this.onceTimer);
    this.onceTimer = undefined;
    this.onceTimerAt = Infinity;
    const heapAt = this.heapAt;
    const due = this.due;
    while (heapAt.length > 0 && heapAt[0]! <= now) {
      if (this.heapFire[0] !== ignore) due.push(this.heapFire[0], this.heapTarget[0], heapAt[0]);
      this.pop();
    }
    if (heapAt.length > 0) this.arm(heapAt[0]!);
    if (due.length > 0 && !this.dueScheduled) {
      this.dueScheduled = true;
      setImmediate(runDue, this);
    }
  }

  /** @internal */
  runDue(): void {
    this.dueScheduled = false;
    const list = this.due;
    if (list.length === 0) return;
    // Two lists taking turns: what the fired timers schedule lands in the other one (no array per tick).
    this.due = this.spare;
    for (let i = 0; i < list.length; i += 3) {
      try {
        (list[i] as TimerFire<unknown>)(list[i + 1], list[i + 2] as number);
      } catch (error) {
        this.onError(error);
      }
    }
    list.length = 0;
    this.spare = list;
  }

  private arm(at: number): void {
    if (this.onceTimer !== undefined) clearTimeout(this.onceTimer);
    this.onceTimerAt = at;
    this.onceTimer = setTimeout(expire, Math.max(0, at - Date.now()), this);
    (this.onceTimer as { unref?: () => void }).unref?.();
  }

  private move(from: number, to: number): void {
    this.heapAt[to] = this.heapAt[from]!;
    this.heapFire[to] = this.heapFire[from]!;
    this.heapTarget[to] = this.heapTarget[from];
  }

  private pop(): void {
    const heapAt = this.heapAt;
    const lastAt = heapAt.pop()!;
    const lastFire = this.heapFire.pop()!;
    const lastTarget = this.heapTarget.pop();
    const n = heapAt.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && heapAt[child + 1]! < heapAt[child]!) child++;
      if (heapAt[child]! >= lastAt) break;
      this.move(child, i);
      i = child;
    }
    heapAt[i] = lastAt;
    this.heapFire[i] = lastFire;
    this.heapTarget[i] = lastTarget;
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

function tick(ticker: Ticker): void {
  ticker.run();
}

function expire(ticker: Ticker): void {
  ticker.fired();
}

function runDue(ticker: Ticker): void {
  ticker.runDue();
}

function ignore(): void {}

function rethrowLater(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}
