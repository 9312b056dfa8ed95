/**
 * The primary's side of `workers = N`: N worker processes share every
 * listener, like nginx's worker_processes. On Bun each worker binds the ports
 * itself with SO_REUSEPORT (the kernel spreads connections); on Node (no
 * reusePort before 22.12) the workers are a `node:cluster` sharing one
 * listening socket per port (SCHED_NONE: each worker accepts for itself).
 * A worker that dies is replaced, with a growing delay while it keeps dying.
 */
import cluster from 'node:cluster';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { hasCluster, type Logger } from '@wmproxy/core-net';
import type { WmproxyConfig } from '@wmproxy/config';
import type { InstanceEvent, ReloadResult, ServiceStatus } from '../instance.js';
import { emptyCounters, mergeCounters, retiredPart, type HealthEntry, type PrimaryMessage, type WorkerCounters, type WorkerMessage } from './protocol.js';

/** How long a worker may take to start (bind, load certificates) or to answer a reload. */
const START_TIMEOUT_MS = 30_000;
/** How long a collection of counters waits for slow workers before using their last report. */
const COLLECT_TIMEOUT_MS = 500;
const RESTART_DELAY_MIN_MS = 100;
const RESTART_DELAY_MAX_MS = 10_000;
/** A worker that lived this long resets the restart back-off. */
const STABLE_AFTER_MS = 10_000;

export interface WorkerView {
  index: number;
  pid: number | undefined;
  state: 'starting' | 'running' | 'restarting' | 'stopping';
  startedAt: string;
  restarts: number;
  openConnections: number;
}

interface Channel {
  readonly pid: number | undefined;
  send(message: PrimaryMessage): void;
  kill(signal: NodeJS.Signals): void;
  on(event: 'message', listener: (message: WorkerMessage) => void): void;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
}

interface Slot {
  index: number;
  channel: Channel | undefined;
  state: WorkerView['state'];
  startedAt: number;
  restarts: number;
  crashesInARow: number;
  counters: WorkerCounters;
  services: ServiceStatus[];
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  exited: Promise<void>;
}

/** The runtime flags a worker inherits: not those of a test runner that started the primary. */
function workerExecArgv(): string[] {
  return process.execArgv.filter((flag) => !flag.startsWith('--test'));
}

/** A failed send means the worker is going away; its exit is handled where it is observed. */
function ignoreSendError(): void {}

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

export class WorkerSupervisor {
  private readonly slots: Slot[] = [];
  private config!: WmproxyConfig;
  private stopping = false;
  private nextId = 1;
  private readonly pending = new Map<number, { slot: Slot; resolve: (message: WorkerMessage) => void }>();
  /** Cumulative counters of workers that exited. */
  private retired: WorkerCounters;
  private readonly useCluster: boolean;

  constructor(private readonly options: SupervisorOptions) {
    this.retired = emptyCounters(options.buckets);
    this.useCluster = hasCluster;
  }

  /** Start every worker; rejects (after stopping those started) when one cannot serve the configuration. */
  async start(config: WmproxyConfig): Promise<void> {
    this.config = config;
    if (this.useCluster) {
      cluster.setupPrimary({ exec: workerEntry(), execArgv: workerExecArgv(), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] } as Parameters<typeof cluster.setupPrimary>[0]);
      cluster.schedulingPolicy = cluster.SCHED_NONE;
    }
    try {
      for (let index = 0; index < this.options.count; index++) {
        const slot: Slot = {
          index,
          channel: undefined,
          state: 'starting',
          startedAt: Date.now(),
          restarts: 0,
          crashesInARow: 0,
          counters: emptyCounters(this.options.buckets),
          services: [],
          restartTimer: undefined,
          exited: Promise.resolve(),
        };
        this.slots.push(slot);
        await this.launch(slot);
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  private fork(): Channel {
    if (this.useCluster) {
      const worker = cluster.fork();
      // A send racing the worker's death fails with EPIPE: the exit handler deals with the death.
      worker.on('error', (error) => this.options.logger.debug('worker channel error', { error: error.message }));
      return {
        pid: worker.process.pid,
        send: (message) => {
          if (worker.isConnected()) worker.send(message, undefined, ignoreSendError);
        },
        kill: (signal) => worker.process.kill(signal),
        on: (event, listener) => void worker.on(event, listener),
        once: (event, listener) => void worker.once(event, listener),
      };
    }
    const child: ChildProcess = spawn(process.execPath, [...workerExecArgv(), workerEntry()], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('error', (error) => this.options.logger.error('worker process error', { error: error.message }));
    return {
      pid: child.pid,
      send: (message) => {
        if (child.connected) child.send(message, undefined, undefined, ignoreSendError);
      },
      kill: (signal) => void child.kill(signal),
      on: (event, listener) => void child.on(event, listener),
      once: (event, listener) => void child.once(event, listener),
    };
  }

  /** Start one worker in a slot and wait until it serves. */
  private launch(slot: Slot): Promise<void> {
    const channel = this.fork();
    slot.channel = channel;
    slot.state = 'starting';
    slot.startedAt = Date.now();
    slot.counters = emptyCounters(this.options.buckets);
    let exitedResolve!: () => void;
    slot.exited = new Promise<void>((resolve) => (exitedResolve = resolve));
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let served = false;
      const timer = setTimeout(() => fail(new Error(`worker ${slot.index} did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        channel.kill('SIGKILL');
        reject(error);
      };
      channel.on('message', (message) => {
        if (message.t === 'hello') {
          // A stop asked for while this worker was loading may have been sent before it listened.
          if (this.stopping) channel.send({ t: 'stop' });
          else channel.send({ t: 'start', index: slot.index, config: this.config, health: this.options.healthStates(), quiet: this.options.quiet });
        }
        else if (message.t === 'ready') {
          slot.services = message.services;
          slot.state = 'running';
          served = true;
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            this.options.logger.info('worker started', { worker: slot.index, pid: channel.pid });
            resolve();
          }
        } else if (message.t === 'failed') fail(new Error(message.message));
        else this.onMessage(slot, message);
      });
      channel.once('exit', (code, signal) => {
        exitedResolve();
        if (slot.channel === channel) slot.channel = undefined;
        this.retire(slot);
        fail(new Error(`worker ${slot.index} exited (${signal ?? code}) before serving`));
        for (const [id, waiter] of this.pending) if (waiter.slot === slot) this.pending.delete(id);
        if (served && !this.stopping && slot.state !== 'stopping') this.restartLater(slot, code, signal);
      });
    });
  }

  private retire(slot: Slot): void {
    this.retired = mergeCounters([this.retired, retiredPart(slot.counters)], this.options.buckets);
    slot.counters = emptyCounters(this.options.buckets);
  }

  private restartLater(slot: Slot, code: number | null, signal: NodeJS.Signals | null): void {
    const lived = Date.now() - slot.startedAt;
    slot.crashesInARow = lived >= STABLE_AFTER_MS ? 1 : slot.crashesInARow + 1;
    const delay = Math.min(RESTART_DELAY_MAX_MS, RESTART_DELAY_MIN_MS * 2 ** (slot.crashesInARow - 1));
    slot.state = 'restarting';
    this.options.logger.error('worker exited; restarting it', { worker: slot.index, code, signal, restartInMs: delay });
    this.options.onEvent({ type: 'worker', at: Date.now(), worker: slot.index, exit: signal ?? code, restartInMs: delay });
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.stopping) return;
      slot.restarts++;
      this.launch(slot).catch((error: Error) => {
        this.options.logger.error('worker restart failed', { worker: slot.index, error: error.message });
        if (!this.stopping) this.restartLater(slot, null, null);
      });
    }, delay);
  }

  private onMessage(slot: Slot, message: WorkerMessage): void {
    switch (message.t) {
      case 'counters':
        slot.counters = message.counters;
        break;
      case 'event':
        this.options.onEvent({ ...message.event, worker: slot.index });
        return;
      case 'reloaded':
        slot.services = message.services;
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

  private ask(slot: Slot, make: (id: number) => PrimaryMessage, timeoutMs: number): Promise<WorkerMessage | undefined> {
    const channel = slot.channel;
    if (!channel || slot.state !== 'running') return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.pending.set(id, {
        slot,
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
      });
      channel.send(make(id));
    });
  }

  /** Send health changes to every worker. */
  broadcastHealth(entries: HealthEntry[]): void {
    for (const slot of this.slots) if (slot.state === 'running') slot.channel?.send({ t: 'health', entries });
  }

  reopenLogs(): void {
    for (const slot of this.slots) slot.channel?.send({ t: 'reopen-logs' });
  }

  /** Apply a configuration in every worker; one result per running worker. Workers started later get it too. */
  async reload(config: WmproxyConfig): Promise<ReloadResult[]> {
    this.config = config;
    const answers = await Promise.all(this.slots.map((slot) => this.ask(slot, (id) => ({ t: 'reload', id, config }), START_TIMEOUT_MS)));
    return answers.flatMap((answer, index) => {
      if (answer?.t === 'reloaded') return [answer.result];
      const slot = this.slots[index]!;
      return slot.state === 'running' ? [{ ok: false, message: `worker ${index} did not answer the reload`, changes: [], warnings: [] }] : [];
    });
  }

  /** Fresh counters from every worker (the last report of a slow one), plus those of workers that exited. */
  async collect(): Promise<WorkerCounters> {
    await Promise.all(this.slots.map((slot) => this.ask(slot, (id) => ({ t: 'collect', id }), COLLECT_TIMEOUT_MS)));
    return mergeCounters([this.retired, ...this.slots.map((slot) => slot.counters)], this.options.buckets);
  }

  /** The services as the first running worker reports them (every worker serves the same). */
  services(): ServiceStatus[] {
    return this.slots.find((slot) => slot.state === 'running')?.services ?? this.slots[0]?.services ?? [];
  }

  workers(): WorkerView[] {
    return this.slots.map((slot) => ({
      index: slot.index,
      pid: slot.channel?.pid,
      state: slot.state,
      startedAt: new Date(slot.startedAt).toISOString(),
      restarts: slot.restarts,
      openConnections: slot.counters.sessions + slot.counters.forward.reduce((sum, entry) => sum + entry.open, 0),
    }));
  }

  /** Graceful: every worker drains (its own shutdown deadline) and exits; SIGKILL after `deadlineMs` more. */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
      if (!slot.channel) continue;
      slot.state = 'stopping';
      slot.channel.send({ t: 'stop' });
    }
    const kill = setTimeout(() => {
      for (const slot of this.slots) slot.channel?.kill('SIGKILL');
    }, deadlineMs + 5_000);
    await Promise.all(this.slots.map((slot) => slot.exited));
    clearTimeout(kill);
  }
}
