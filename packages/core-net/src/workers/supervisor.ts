/**
 * N worker processes sharing listening ports, like nginx's worker_processes:
 * used by `wmproxy run --workers` (control) and `wmproxy file-server
 * --workers` (static). Where SO_REUSEPORT balances (Bun on Linux, Node from
 * 22.12) each worker binds the ports itself and the kernel spreads
 * connections; elsewhere the workers are a `node:cluster` sharing one
 * listening socket per port (SCHED_NONE: each worker accepts for itself).
 * A worker that dies after serving is replaced, with a growing delay while it
 * keeps dying.
 *
 * The protocol around what a worker does is the caller's; the pool only needs
 * three messages from a worker (`hello` once its IPC listener is up, then
 * `ready` or `failed { message }`) and sends it `stop` to drain and exit.
 */
import cluster from 'node:cluster';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../logger.js';
import { hasCluster, supportsReusePort } from '../runtime/facts.js';

/** How workers share a port on this process's runtime. */
export const workerSharing: 'reuseport' | 'cluster' = supportsReusePort || !hasCluster ? 'reuseport' : 'cluster';

/** How long a worker may take to start (bind, load certificates). */
export const WORKER_START_TIMEOUT_MS = 30_000;
const RESTART_DELAY_MIN_MS = 100;
const RESTART_DELAY_MAX_MS = 10_000;
/** A worker that lived this long resets the restart back-off. */
const STABLE_AFTER_MS = 10_000;

export interface PoolMessage {
  t: string;
}

export interface WorkerPoolView {
  index: number;
  pid: number | undefined;
  state: 'starting' | 'running' | 'restarting' | 'stopping';
  startedAt: string;
  restarts: number;
}

export interface WorkerPoolOptions<Down extends PoolMessage, Up extends PoolMessage> {
  /** The worker module (a file path) each process runs. */
  entry: string;
  count: number;
  logger: Logger;
  /** Worker `index`'s role and configuration, sent when it says hello (again after each restart). */
  startMessage(index: number): Down;
  /** Worker `index` serves now (its `ready` message). */
  onReady?(index: number, message: Up): void;
  /** Any other message from worker `index`. */
  onMessage?(index: number, message: Up): void;
  /** Worker `index` exited (before a restart is scheduled). */
  onExit?(index: number): void;
  /** Worker `index` died while serving and starts again in `delayMs`. */
  onRestart?(index: number, exit: number | string | null, delayMs: number): void;
}

interface Channel {
  readonly pid: number | undefined;
  send(message: PoolMessage): void;
  kill(signal: NodeJS.Signals): void;
  on(event: 'message', listener: (message: PoolMessage) => void): void;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
}

interface Slot {
  index: number;
  channel: Channel | undefined;
  state: WorkerPoolView['state'];
  startedAt: number;
  restarts: number;
  crashesInARow: number;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  exited: Promise<void>;
}

/** The runtime flags a worker inherits: not those of a test runner that started the primary. */
function workerExecArgv(): string[] {
  return process.execArgv.filter((flag) => !flag.startsWith('--test'));
}

/** A failed send means the worker is going away; its exit is handled where it is observed. */
function ignoreSendError(): void {}

export class WorkerPool<Down extends PoolMessage, Up extends PoolMessage> {
  private readonly slots: Slot[] = [];
  private stopping = false;

  constructor(private readonly options: WorkerPoolOptions<Down, Up>) {}

  /** Start every worker, one after the other; rejects (after stopping those started) when one cannot serve. */
  async start(): Promise<void> {
    try {
      for (let index = 0; index < this.options.count; index++) {
        const slot: Slot = { index, channel: undefined, state: 'starting', startedAt: Date.now(), restarts: 0, crashesInARow: 0, restartTimer: undefined, exited: Promise.resolve() };
        this.slots.push(slot);
        await this.launch(slot);
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  private fork(): Channel {
    if (workerSharing === 'cluster') {
      // Cluster settings are process-wide: set them at every fork, so that a static and a wmproxy pool in one process each restart their own entry.
      cluster.schedulingPolicy = cluster.SCHED_NONE;
      cluster.setupPrimary({ exec: this.options.entry, execArgv: workerExecArgv(), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] } as Parameters<typeof cluster.setupPrimary>[0]);
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
    const child: ChildProcess = spawn(process.execPath, [...workerExecArgv(), this.options.entry], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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
    let exitedResolve!: () => void;
    slot.exited = new Promise<void>((resolve) => (exitedResolve = resolve));
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let served = false;
      const timer = setTimeout(() => fail(new Error(`worker ${slot.index} did not start within ${WORKER_START_TIMEOUT_MS} ms`)), WORKER_START_TIMEOUT_MS);
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        channel.kill('SIGKILL');
        reject(error);
      };
      channel.on('message', (raw) => {
        const message = raw as Up;
        if (message.t === 'hello') {
          // A stop asked for while this worker was loading may have been sent before it listened.
          channel.send(this.stopping ? { t: 'stop' } : this.options.startMessage(slot.index));
        } else if (message.t === 'ready') {
          slot.state = 'running';
          served = true;
          this.options.onReady?.(slot.index, message);
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            this.options.logger.info('worker started', { worker: slot.index, pid: channel.pid });
            resolve();
          }
        } else if (message.t === 'failed') fail(new Error(String((message as { message?: unknown }).message)));
        else this.options.onMessage?.(slot.index, message);
      });
      channel.once('exit', (code, signal) => {
        exitedResolve();
        if (slot.channel === channel) slot.channel = undefined;
        this.options.onExit?.(slot.index);
        fail(new Error(`worker ${slot.index} exited (${signal ?? code}) before serving`));
        if (served && !this.stopping && slot.state !== 'stopping') this.restartLater(slot, code, signal);
      });
    });
  }

  private restartLater(slot: Slot, code: number | null, signal: NodeJS.Signals | null): void {
    const lived = Date.now() - slot.startedAt;
    slot.crashesInARow = lived >= STABLE_AFTER_MS ? 1 : slot.crashesInARow + 1;
    const delay = Math.min(RESTART_DELAY_MAX_MS, RESTART_DELAY_MIN_MS * 2 ** (slot.crashesInARow - 1));
    slot.state = 'restarting';
    this.options.logger.error('worker exited; restarting it', { worker: slot.index, code, signal, restartInMs: delay });
    this.options.onRestart?.(slot.index, signal ?? code, delay);
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

  /** Send to worker `index` if it is serving; false when it is not. */
  send(index: number, message: Down): boolean {
    const slot = this.slots[index];
    if (!slot?.channel || slot.state !== 'running') return false;
    slot.channel.send(message);
    return true;
  }

  /** Send to every worker that has a process, serving or not yet. */
  sendAll(message: Down, runningOnly = false): void {
    for (const slot of this.slots) if (!runningOnly || slot.state === 'running') slot.channel?.send(message);
  }

  isRunning(index: number): boolean {
    return this.slots[index]?.state === 'running';
  }

  workers(): WorkerPoolView[] {
    return this.slots.map((slot) => ({
      index: slot.index,
      pid: slot.channel?.pid,
      state: slot.state,
      startedAt: new Date(slot.startedAt).toISOString(),
      restarts: slot.restarts,
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
