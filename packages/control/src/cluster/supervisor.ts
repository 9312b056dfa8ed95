/**
 * The primary's side of `workers = N`: core-net's `WorkerPool` runs the
 * processes (port sharing, restarts with back-off, stop); this adds what a
 * wmproxy worker is told and tells: the configuration, health states,
 * reloads and the counters merged for metrics.
 */
import { fileURLToPath } from 'node:url';
import { WorkerPool, WORKER_START_TIMEOUT_MS, type Logger } from '@wmproxy/core-net';
import type { WmproxyConfig } from '@wmproxy/config';
import type { InstanceEvent, ReloadResult, ServiceStatus, WorkerView } from '../types.js';
import { emptyCounters, mergeCounters, retiredPart, type HealthEntry, type PrimaryMessage, type WorkerCounters, type WorkerMessage } from './protocol.js';

/** How long a collection of counters waits for slow workers before using their last report. */
const COLLECT_TIMEOUT_MS = 500;

function workerEntry(): string {
  return fileURLToPath(import.meta.url).replace(/supervisor\.(ts|js)$/, 'worker-main.$1');
}

export interface SupervisorOptions {
  count: number;
  logger: Logger;
  buckets: number;
  /** Current health states, sent to a (re)started worker before it serves. */
  healthStates: () => HealthEntry[];
  /** Workers log nothing (the instance was given its own logger, which cannot cross processes). */
  quiet: boolean;
  /** Worker events (passive ejections, crashes) for the instance's event stream. */
  onEvent: (event: InstanceEvent) => void;
}

/** What the primary keeps of each worker besides its process. */
interface WorkerState {
  counters: WorkerCounters;
  services: ServiceStatus[];
}

export class WorkerSupervisor {
  private readonly pool: WorkerPool<PrimaryMessage, WorkerMessage>;
  private readonly state: WorkerState[];
  private config!: WmproxyConfig;
  private nextId = 1;
  private readonly pending = new Map<number, { index: number; resolve: (message: WorkerMessage) => void }>();
  /** Cumulative counters of workers that exited. */
  private retired: WorkerCounters;

  constructor(private readonly options: SupervisorOptions) {
    this.retired = emptyCounters(options.buckets);
    this.state = Array.from({ length: options.count }, () => ({ counters: emptyCounters(options.buckets), services: [] }));
    this.pool = new WorkerPool<PrimaryMessage, WorkerMessage>({
      entry: workerEntry(),
      count: options.count,
      logger: options.logger,
      startMessage: (index) => {
        this.state[index]!.counters = emptyCounters(options.buckets);
        return { t: 'start', index, config: this.config, health: options.healthStates(), quiet: options.quiet };
      },
      onReady: (index, message) => {
        if (message.t === 'ready') this.state[index]!.services = message.services;
      },
      onMessage: (index, message) => this.onMessage(index, message),
      onExit: (index) => {
        const state = this.state[index]!;
        this.retired = mergeCounters([this.retired, retiredPart(state.counters)], options.buckets);
        state.counters = emptyCounters(options.buckets);
        for (const [id, waiter] of this.pending) if (waiter.index === index) this.pending.delete(id);
      },
      onRestart: (index, exit, delayMs) => options.onEvent({ type: 'worker', at: Date.now(), worker: index, exit, restartInMs: delayMs }),
    });
  }

  /** Start every worker; rejects (after stopping those started) when one cannot serve the configuration. */
  start(config: WmproxyConfig): Promise<void> {
    this.config = config;
    return this.pool.start();
  }

  private onMessage(index: number, message: WorkerMessage): void {
    const state = this.state[index]!;
    switch (message.t) {
      case 'counters':
        state.counters = message.counters;
        break;
      case 'event':
        this.options.onEvent({ ...message.event, worker: index });
        return;
      case 'reloaded':
        state.services = message.services;
        break;
      default:
        return;
    }
    const id = 'id' in message ? message.id : undefined;
    if (id === undefined) return;
    const waiter = this.pending.get(id);
    if (waiter) {
      this.pending.delete(id);
      waiter.resolve(message);
    }
  }

  private ask(index: number, make: (id: number) => PrimaryMessage, timeoutMs: number): Promise<WorkerMessage | undefined> {
    if (!this.pool.isRunning(index)) return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.pending.set(id, {
        index,
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
      });
      this.pool.send(index, make(id));
    });
  }

  private indexes(): number[] {
    return this.state.map((_, index) => index);
  }

  /** Send health changes to every worker. */
  broadcastHealth(entries: HealthEntry[]): void {
    this.pool.sendAll({ t: 'health', entries }, true);
  }

  reopenLogs(): void {
    this.pool.sendAll({ t: 'reopen-logs' });
  }

  /** Apply a configuration in every worker; one result per running worker. Workers started later get it too. */
  async reload(config: WmproxyConfig): Promise<ReloadResult[]> {
    this.config = config;
    const answers = await Promise.all(this.indexes().map((index) => this.ask(index, (id) => ({ t: 'reload', id, config }), WORKER_START_TIMEOUT_MS)));
    return answers.flatMap((answer, index) => {
      if (answer?.t === 'reloaded') return [answer.result];
      return this.pool.isRunning(index) ? [{ ok: false, message: `worker ${index} did not answer the reload`, changes: [], warnings: [] }] : [];
    });
  }

  /** Fresh counters from every worker (the last report of a slow one), plus those of workers that exited. */
  async collect(): Promise<WorkerCounters> {
    await Promise.all(this.indexes().map((index) => this.ask(index, (id) => ({ t: 'collect', id }), COLLECT_TIMEOUT_MS)));
    return mergeCounters([this.retired, ...this.state.map((state) => state.counters)], this.options.buckets);
  }

  /** The services as the first running worker reports them (every worker serves the same). */
  services(): ServiceStatus[] {
    const running = this.indexes().find((index) => this.pool.isRunning(index));
    return this.state[running ?? 0]?.services ?? [];
  }

  workers(): WorkerView[] {
    return this.pool.workers().map((view) => {
      const counters = this.state[view.index]!.counters;
      return { ...view, openConnections: counters.sessions + counters.forward.reduce((sum, entry) => sum + entry.open, 0) };
    });
  }

  /** Graceful: every worker drains (its own shutdown deadline) and exits; SIGKILL after `deadlineMs` more. */
  stop(deadlineMs = 10_000): Promise<void> {
    return this.pool.stop(deadlineMs);
  }
}
