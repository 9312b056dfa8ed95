/**
 * One scheduler for every check: a binary min-heap of due times behind a
 * single timer, and a bound on probes in flight (the rest wait in a FIFO).
 * Jobs never overlap with themselves: the owner re-schedules a job only once
 * its run has finished.
 */
export interface Job {
  /** Due time on the monotonic clock (performance.now()). */
  due: number;
  /** Position in the heap, -1 when not scheduled. */
  heapIndex: number;
  /** Waiting in the ready queue for a free slot. */
  queued: boolean;
}

export class Scheduler<J extends Job> {
  private readonly heap: J[] = [];
  private ready: J[] = [];
  private readyHead = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerDue = Infinity;
  private closed = false;
  inFlight = 0;
  /** Jobs started, and how late they started (ms after their due time, including time queued). */
  started = 0;
  latenessTotal = 0;
  latenessMax = 0;

  constructor(
    private readonly start: (job: J) => Promise<void>,
    public concurrency: number,
    /** Jobs due within this many ms of a wake-up start with it (default 5). */
    public slackMs = 5,
  ) {}

  get queued(): number {
    return this.ready.length - this.readyHead;
  }

  get scheduled(): number {
    return this.heap.length;
  }

  /** Run `job` at `due` (monotonic ms). Re-scheduling a scheduled job moves it. */
  schedule(job: J, due: number): void {
    if (this.closed) return;
    job.due = due;
    if (job.heapIndex >= 0) {
      this.siftUp(job.heapIndex);
      this.siftDown(job.heapIndex);
    } else if (!job.queued) {
      job.heapIndex = this.heap.length;
      this.heap.push(job);
      this.siftUp(job.heapIndex);
    }
    this.arm();
  }

  /** Forget a job (it may still be running; its owner ignores the result). */
  cancel(job: J): void {
    if (job.heapIndex >= 0) {
      const index = job.heapIndex;
      const last = this.heap.pop()!;
      job.heapIndex = -1;
      if (last !== job) {
        this.heap[index] = last;
        last.heapIndex = index;
        this.siftUp(index);
        this.siftDown(last.heapIndex);
      }
    }
    if (job.queued) {
      job.queued = false;
      const at = this.ready.indexOf(job, this.readyHead);
      if (at >= 0) this.ready.splice(at, 1);
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const job of this.heap) job.heapIndex = -1;
    this.heap.length = 0;
    for (let i = this.readyHead; i < this.ready.length; i++) this.ready[i]!.queued = false;
    this.ready = [];
    this.readyHead = 0;
  }

  private arm(): void {
    const head = this.heap[0];
    if (!head) return;
    if (this.timer && head.due >= this.timerDue - this.slackMs) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDue = head.due;
    this.timer = setTimeout(this.onTimer, Math.max(0, head.due - performance.now()));
  }

  private readonly onTimer = (): void => this.fire();

  private fire(): void {
    this.timer = undefined;
    this.timerDue = Infinity;
    // Everything due within the slack runs now: one wake-up starts a batch
    // (at 10 000 probes/s, ~200 wake-ups a second instead of thousands).
    const horizon = performance.now() + this.slackMs;
    while (this.heap.length > 0 && this.heap[0]!.due <= horizon) {
      const job = this.popHead();
      job.queued = true;
      this.ready.push(job);
    }
    this.drainReady();
    this.arm();
  }

  private drainReady(): void {
    while (this.inFlight < this.concurrency && this.readyHead < this.ready.length) {
      const job = this.ready[this.readyHead++]!;
      job.queued = false;
      this.run(job);
    }
    if (this.readyHead === this.ready.length) {
      this.ready.length = 0;
      this.readyHead = 0;
    } else if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
  }

  private run(job: J): void {
    this.inFlight++;
    this.started++;
    const late = performance.now() - job.due;
    if (late > 0) {
      this.latenessTotal += late;
      if (late > this.latenessMax) this.latenessMax = late;
    }
    this.start(job).then(
      () => this.finished(),
      () => this.finished(),
    );
  }

  private finished(): void {
    this.inFlight--;
    if (!this.closed) this.drainReady();
  }

  private popHead(): J {
    const head = this.heap[0]!;
    const last = this.heap.pop()!;
    head.heapIndex = -1;
    if (last !== head) {
      this.heap[0] = last;
      last.heapIndex = 0;
      this.siftDown(0);
    }
    return head;
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    const job = heap[index]!;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (parent.due <= job.due) break;
      heap[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    heap[index] = job;
    job.heapIndex = index;
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    const length = heap.length;
    const job = heap[index]!;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= length) break;
      if (child + 1 < length && heap[child + 1]!.due < heap[child]!.due) child++;
      const smaller = heap[child]!;
      if (smaller.due >= job.due) break;
      heap[index] = smaller;
      smaller.heapIndex = index;
      index = child;
    }
    heap[index] = job;
    job.heapIndex = index;
  }
}

