/**
 * Listening sockets handed from one service object to its replacement, so
 * that a reload never closes a port that stays in the configuration.
 *
 * `@wmproxy/reverse` opens its listeners itself (through core-net's `Server`,
 * which asks the active runtime to `listen`). The instance installs this
 * runtime wrapper: every TCP listening socket is remembered by address.
 * During a handoff window, a listener closed by the old service is kept
 * open (connections that arrive meanwhile wait), and a new service listening
 * on the same address takes the socket over instead of binding again.
 * Sockets nobody took over are closed when the window ends. Outside a
 * window it behaves exactly like the runtime it wraps.
 */
import { formatHostPort, runtime as activeRuntime, runtimeReady, setRuntime, type Conn, type Listener, type ListenOptions, type RawConnectOptions, type Runtime } from '@wmproxy/core-net';

interface Shared {
  key: string;
  real: Listener;
  tls: string;
  owner: Virtual | undefined;
  /** Connections accepted while no service owned the socket (during a handoff). */
  waiting: Conn[];
}

class Virtual implements Listener {
  constructor(
    private readonly runtime: HandoffRuntime,
    readonly shared: Shared,
    readonly onConnection: (conn: Conn) => void,
    readonly onError: ((error: Error) => void) | undefined,
  ) {}

  get host(): string {
    return this.shared.real.host;
  }

  get port(): number {
    return this.shared.real.port;
  }

  close(): void {
    this.runtime.release(this);
  }
}

export class HandoffRuntime implements Runtime {
  private readonly shared = new Map<string, Shared>();
  private windows = 0;

  constructor(private readonly base: Runtime) {}

  get name(): 'bun' | 'node' {
    return this.base.name;
  }

  connectIp(options: RawConnectOptions): Promise<Conn> {
    return this.base.connectIp(options);
  }

  async listen(options: ListenOptions): Promise<Listener> {
    const tls = options.tls ? JSON.stringify(options.tls) : '';
    const key = formatHostPort(options.host, options.port);
    const existing = options.port === 0 ? undefined : this.shared.get(key);
    if (existing) {
      if (this.windows === 0 && existing.owner) throw Object.assign(new Error(`listen EADDRINUSE: address already in use ${key}`), { code: 'EADDRINUSE' });
      if (existing.tls === tls) return this.adopt(existing, options);
      // Different certificates: this socket cannot serve the new listener.
      this.closeReal(existing);
    }
    const shared: Shared = { key: '', real: undefined as unknown as Listener, tls, owner: undefined, waiting: [] };
    shared.real = await this.base.listen({
      ...options,
      onConnection: (conn) => this.dispatch(shared, conn),
      onError: (error) => shared.owner?.onError?.(error),
    });
    shared.key = formatHostPort(options.host, shared.real.port);
    this.shared.set(shared.key, shared);
    return this.adopt(shared, options);
  }

  private adopt(shared: Shared, options: ListenOptions): Listener {
    const listener = new Virtual(this, shared, options.onConnection, options.onError);
    shared.owner = listener;
    const waiting = shared.waiting.splice(0);
    for (const conn of waiting) if (!conn.closed) listener.onConnection(conn);
    return listener;
  }

  private dispatch(shared: Shared, conn: Conn): void {
    if (shared.owner) shared.owner.onConnection(conn);
    else if (this.windows > 0) shared.waiting.push(conn);
    else conn.destroy();
  }

  /** @internal A service closed its listener. */
  release(listener: Virtual): void {
    const shared = listener.shared;
    if (shared.owner !== listener) return; // already taken over by a newer service
    shared.owner = undefined;
    if (this.windows === 0) this.closeReal(shared);
  }

  private closeReal(shared: Shared): void {
    shared.owner = undefined;
    shared.real.close();
    for (const conn of shared.waiting.splice(0)) conn.destroy();
    if (this.shared.get(shared.key) === shared) this.shared.delete(shared.key);
  }

  /** Run `work` (close the old service, start the new one) with sockets kept open across it. */
  async handoff<T>(work: () => Promise<T>): Promise<T> {
    this.windows++;
    try {
      return await work();
    } finally {
      this.windows--;
      if (this.windows === 0) for (const shared of [...this.shared.values()]) if (!shared.owner) this.closeReal(shared);
    }
  }
}

let installed: HandoffRuntime | undefined;

/** Install the wrapper over the active runtime (once per process) and return it. */
export async function handoffRuntime(): Promise<HandoffRuntime> {
  await runtimeReady();
  const current = activeRuntime();
  if (installed && current === installed) return installed;
  installed = new HandoffRuntime(current);
  setRuntime(installed);
  return installed;
}
