/// <reference types="bun-types" />
import { ConnBase } from '../../conn-base.js';
import { NetError, toNetError } from '../../errors.js';
import { formatHostPort } from '../../address.js';
import { nodeRuntime } from '../node/index.js';
import { listenError } from '../listen-error.js';
import { isComposed } from '../../http1/buffer.js';
import { offeredSession, tlsSession } from '../../tls/session.js';
import type { Conn, Listener, ListenOptions, RawConnectOptions, Runtime, TlsClientOptions, TlsSession } from '../../types.js';

type BunSocket = import('bun').Socket<BunConn | undefined>;

/** Bytes queued in user space before `write` reports backpressure. */
const HIGH_WATER_MARK = 64 * 1024;

/**
 * Bun's native sockets behind the Conn interface. Bun does not buffer what a
 * write could not send, so the remainder is queued here (bounded by the
 * caller honouring `write`'s return value) and flushed on `drain`.
 */
export class BunConn extends ConnBase {
  socket: BunSocket;
  /** What a write could not send yet (allocated on the first short write: an idle connection has none). */
  private queue: Uint8Array[] | undefined = undefined;
  private queued = 0;
  private endRequested = false;
  private shutDown = false;
  private lastError: Error | undefined;
  private written = 0;
  private read = 0;
  remoteAddress: string;
  remotePort: number;
  private readonly tls: boolean;
  /** Settles when a TLS handshake finishes (client side waits on it before handing the Conn out). */
  handshake: { resolve(error: Error | null): void } | undefined;
  /** TLS clients that keep the session the server issues (`tlsSession`): their options, and the session offered (its certificate stands on resumption). */
  sessionOptions: (TlsClientOptions & { servername: string }) | undefined = undefined;
  /** Closed by its owner (destroy/reset): a TLS handshake this cut short is no peer's failure to log. */
  destroyedHere = false;
  offeredSession: TlsSession | undefined = undefined;

  constructor(socket: BunSocket, tls: boolean) {
    super();
    this.socket = socket;
    this.tls = tls;
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = (socket as { remotePort?: number }).remotePort ?? 0;
  }

  showPeer(address: string, port: number): void {
    const previous = this.remoteAddress;
    this.remoteAddress = address;
    this.remotePort = port;
    this.tracker?.readdress?.(this, previous);
  }

  get servername(): string | undefined {
    if (!this.tls) return undefined;
    return (this.socket as { getServername?: () => string }).getServername?.() || undefined;
  }

  get alpnProtocol(): string | undefined {
    if (!this.tls) return undefined;
    const chosen = (this.socket as { alpnProtocol?: string | false | null }).alpnProtocol;
    return typeof chosen === 'string' && chosen !== '' ? chosen : undefined;
  }

  get tlsResumed(): boolean | undefined {
    return this.tls ? (this.socket as unknown as TlsSessionSocket).isSessionReused() : undefined;
  }

  /** Read from the socket when asked: Bun tells of no ticket as it comes (node:tls's 'session'). */
  get tlsSession(): TlsSession | undefined {
    if (this.sessionOptions === undefined || this.closed) return undefined;
    const socket = this.socket as unknown as TlsSessionSocket;
    // No ticket yet: nothing the server could resume.
    if (socket.getTLSTicket() === undefined) return undefined;
    const bytes = socket.getSession();
    if (bytes === undefined) return undefined;
    const certificate = socket.isSessionReused() ? this.offeredSession?.certificate : socket.getPeerCertificate()?.raw;
    return tlsSession(bytes, certificate, this.sessionOptions);
  }

  get localAddress(): string {
    return (this.socket as { localAddress?: string }).localAddress ?? '';
  }
  get localPort(): number {
    return this.socket.localPort;
  }
  get bytesRead(): number {
    return this.read;
  }
  get bytesWritten(): number {
    return this.written;
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed || this.endRequested) return false;
    if (this.queued > 0) {
      this.queue!.push(isComposed(chunk) ? new Uint8Array(chunk) : chunk);
      this.queued += chunk.byteLength;
      return this.queued < HIGH_WATER_MARK;
    }
    const sent = this.socket.write(chunk);
    if (sent < 0) return false;
    this.written += sent;
    if (sent < chunk.byteLength) {
      // Kept as a view, as Node's sockets keep what they queue: a caller does not
      // touch a chunk it wrote. The exception is core-net's composeHead buffer,
      // reused by its next head: that one is copied. (Copying every remainder
      // cost a copy of most of each large write, e.g. the tunnel's batches.)
      const rest = isComposed(chunk) ? new Uint8Array(chunk.subarray(sent)) : chunk.subarray(sent);
      (this.queue ??= []).push(rest);
      this.queued += rest.byteLength;
      return this.queued < HIGH_WATER_MARK;
    }
    return true;
  }

  end(): void {
    if (this.closed || this.endRequested) return;
    this.endRequested = true;
    if (this.queued === 0) this.sendFin();
  }

  destroy(error?: Error): void {
    if (this.closed) return;
    this.destroyedHere = true;
    if (error) this.lastError = error;
    this.queue = undefined;
    this.queued = 0;
    // terminate() is SO_LINGER 0 + close(2): on Bun every destroy is a reset (RST) already.
    this.socket.terminate();
  }
  override reset(error?: Error): void {
    this.destroy(error);
  }

  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }
  setNoDelay(noDelay = true): void {
    this.socket.setNoDelay(noDelay);
  }

  private sendFin(): void {
    if (this.shutDown) return;
    this.shutDown = true;
    // Both directions finished: close the socket; otherwise half-close.
    if (this.peerEnded) this.socket.end();
    else this.socket.shutdown();
  }

  /** @internal */
  onData(chunk: Uint8Array): void {
    this.read += chunk.byteLength;
    this.dispatchData(chunk);
  }
  /** @internal */
  onDrain(): void {
    const queue = this.queue;
    while (queue !== undefined && queue.length > 0) {
      const head = queue[0]!;
      const sent = this.socket.write(head);
      if (sent < 0) return;
      this.written += sent;
      if (sent < head.byteLength) {
        queue[0] = head.subarray(sent);
        this.queued -= sent;
        return;
      }
      queue.shift();
      this.queued -= head.byteLength;
    }
    if (queue !== undefined && queue.length === 0) this.queue = undefined;
    if (this.endRequested) {
      this.sendFin();
      return;
    }
    this.handler.drain?.(this);
  }
  /** @internal */
  onEnd(): void {
    this.dispatchEnd();
    if (this.shutDown) this.socket.end();
  }
  /** @internal */
  onError(error: Error): void {
    this.lastError ??= toNetError(error);
  }
  /** @internal */
  onClose(error?: Error): void {
    if (error) this.lastError ??= toNetError(error);
    this.dispatchClose(this.lastError);
  }
}

/** The TLS session methods of a Bun socket (typed loosely by bun-types). */
interface TlsSessionSocket {
  isSessionReused(): boolean;
  getTLSTicket(): Uint8Array | undefined;
  getSession(): Uint8Array | undefined;
  setSession(session: Uint8Array): void;
  getPeerCertificate(): { raw?: Uint8Array } | undefined;
}

/** Bun takes ALPN lists only in wire format: each name prefixed by its length. */
function alpnWire(names: string[]): Uint8Array {
  const parts = names.map((name) => Buffer.from(name, 'latin1'));
  const wire = new Uint8Array(parts.reduce((sum, part) => sum + 1 + part.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    wire[at++] = part.byteLength;
    wire.set(part, at);
    at += part.byteLength;
  }
  return wire;
}

// One handler object per listener or connect call, shared by its sockets.
/** `verifiesPeer`: a mutual-TLS listener, for which a handshake that completed with an authorization error is a refusal too. */
function socketHandlers(onOpen: (socket: BunSocket) => void, onHandshakeError?: (error: Error, peer?: string) => void, verifiesPeer = false) {
  return {
    open: onOpen,
    data(socket: BunSocket, chunk: Uint8Array) {
      socket.data?.onData(chunk);
    },
    drain(socket: BunSocket) {
      socket.data?.onDrain();
    },
    end(socket: BunSocket) {
      socket.data?.onEnd();
    },
    error(socket: BunSocket, error: Error) {
      socket.data?.onError(error);
    },
    close(socket: BunSocket, error?: Error) {
      socket.data?.onClose(error);
    },
    handshake(socket: BunSocket, success: boolean, authorizationError: Error | null) {
      const waiter = socket.data?.handshake;
      if (waiter) {
        socket.data!.handshake = undefined;
        waiter.resolve(success ? authorizationError : (authorizationError ?? new Error('TLS handshake failed')));
      } else if ((!success || (verifiesPeer && authorizationError)) && !socket.data?.destroyedHere) {
        const peer = formatHostPort(socket.remoteAddress, (socket as { remotePort?: number }).remotePort ?? 0);
        // Bun reports a client certificate from an unknown CA as a finished handshake with an error: close it here.
        socket.terminate();
        if (!onHandshakeError) return;
        const reason = authorizationError?.message ?? 'TLS handshake failed';
        onHandshakeError(new NetError('EPROTO', `TLS handshake with ${peer} failed: ${reason}`, { address: peer, cause: authorizationError ?? undefined }), peer);
      }
    },
  };
}

async function listen(options: ListenOptions): Promise<Listener> {
  // Bun.listen takes one certificate; a listener choosing certificates by SNI
  // runs on node:tls (which Bun also implements) rather than failing; so does
  // one choosing them at handshake time or answering ACME TLS-ALPN-01.
  if (options.tls?.sni || options.tls?.select || options.tls?.acmeTlsAlpn) return nodeRuntime.listen(options);
  const handlers = socketHandlers((socket) => {
    const conn = new BunConn(socket, options.tls !== undefined);
    socket.data = conn;
    socket.setNoDelay(true);
    options.onConnection(conn);
  }, options.onError, options.tls?.clientCa !== undefined);
  let server: import('bun').TCPSocketListener<BunConn | undefined>;
  try {
    server = Bun.listen<BunConn | undefined>({
      hostname: options.host,
      port: options.port,
      allowHalfOpen: true,
      // Only our own workers share a port (they ask for it); anyone else's taken port is an error.
      reusePort: options.reusePort ?? false,
      ...(options.tls
        ? {
            tls: {
              cert: options.tls.cert,
              key: options.tls.key,
              ...(options.tls.alpn?.length ? { ALPNProtocols: alpnWire(options.tls.alpn) } : {}),
              // Mutual TLS: a client without a certificate from `clientCa` fails the handshake (Bun closes it).
              ...(options.tls.clientCa ? { ca: options.tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
            },
          }
        : {}),
      socket: handlers,
    } as unknown as import('bun').TCPSocketListenOptions<BunConn | undefined>);
  } catch (error) {
    throw listenError(error, formatHostPort(options.host, options.port));
  }
  return {
    host: server.hostname,
    port: server.port,
    close: () => server.stop(false),
  };
}

/** A connect under way: the socket's `data` until it opens (then its BunConn); events before that are ignored. */
class PendingConnect {
  abandoned = false;
  handshakeDone: Promise<Error | null> | undefined = undefined;
  readonly handshake = undefined;
  constructor(
    readonly tls: boolean,
    /** Offered for resumption. */
    readonly session: TlsSession | undefined,
    /** Set when the connection keeps its session (keepSession or session). */
    readonly sessionOptions: (TlsClientOptions & { servername: string }) | undefined,
  ) {}
  onData(): void {}
  onDrain(): void {}
  onEnd(): void {}
  onError(): void {}
  onClose(): void {}
}

/**
 * Shared by every outgoing socket, as a listener's are by its sockets: Bun
 * keeps a socket's handler object (and what its functions close over) for
 * the socket's life, so handlers made per connect kept seven functions, their
 * scopes, the connect's promises and its cleared timer per connection (about
 * 0.9 KiB of each idle tunnel stream on the client side).
 */
const connectHandlers = socketHandlers((socket) => {
  const pending = socket.data as unknown as PendingConnect;
  socket.data = undefined;
  if (pending.abandoned) {
    socket.terminate();
    return;
  }
  // Offered here or never: Bun takes a session only before the handshake starts (in `open`, with a `handshake` handler).
  if (pending.session) (socket as unknown as TlsSessionSocket).setSession(pending.session.bytes);
  const conn = new BunConn(socket, pending.tls);
  conn.sessionOptions = pending.sessionOptions;
  conn.offeredSession = pending.session;
  if (pending.tls) pending.handshakeDone = new Promise((resolve) => (conn.handshake = { resolve }));
  socket.data = conn;
  socket.setNoDelay(true);
});

async function connectIp(options: RawConnectOptions): Promise<Conn> {
  const address = formatHostPort(options.ip, options.port);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const offered = options.tls ? offeredSession(options.tls) : undefined;
  const state = new PendingConnect(options.tls !== undefined, offered, options.tls && (options.tls.keepSession || options.tls.session) ? options.tls : undefined);
  const pending = Bun.connect<BunConn | undefined>({
    data: state as unknown as BunConn,
    hostname: options.ip,
    port: options.port,
    allowHalfOpen: true,
    ...(options.tls
      ? {
          tls: {
            serverName: options.tls.servername || undefined,
            rejectUnauthorized: options.tls.rejectUnauthorized ?? true,
            ca: options.tls.ca,
            ...(options.tls.cert !== undefined ? { cert: options.tls.cert, key: options.tls.key } : {}),
            ALPNProtocols: options.tls.alpn?.length ? alpnWire(options.tls.alpn) : undefined,
          },
        }
      : {}),
    socket: connectHandlers,
  } as unknown as import('bun').TCPSocketConnectOptions<BunConn | undefined>);
  const giveUp = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new NetError('ETIMEDOUT', `connect to ${address} timed out after ${options.timeoutMs} ms`, { address })),
      options.timeoutMs,
    );
    if (options.signal) {
      onAbort = () => reject(new NetError('EABORTED', `connect to ${address} aborted`, { address }));
      options.signal.addEventListener('abort', onAbort, { once: true });
    }
  });
  try {
    const socket = await Promise.race([pending, giveUp]);
    const conn = socket.data;
    if (!conn) throw new NetError('ECONNRESET', `connection to ${address} closed during set-up`, { address });
    if (state.handshakeDone) {
      const error = await Promise.race([state.handshakeDone, giveUp]);
      if (error && (options.tls?.rejectUnauthorized ?? true)) {
        conn.destroy();
        if ((error as { code?: string }).code === 'ECONNRESET') throw new NetError('ECONNRESET', `${address} closed the connection during the TLS handshake`, { address, cause: error });
        throw new NetError('EPROTO', `TLS verification of ${address} failed: ${error.message}`, { address, cause: error });
      }
      const verifyPeer = options.tls?.verifyPeer;
      if (verifyPeer) {
        const socket = conn.socket as unknown as TlsSessionSocket;
        // A resumed handshake may carry no certificate: the one the offered session was established with (checked then) is the server's.
        const raw = socket.getPeerCertificate()?.raw ?? (socket.isSessionReused() ? offered?.certificate : undefined);
        // Bun reports a handshake the server cut short (closed) as finished, with no certificate; a finished one
        // always has one (TLS 1.3 authenticates the server by it), unless resumed.
        if (!raw && !socket.isSessionReused()) {
          conn.destroy();
          throw new NetError('ECONNRESET', `${address} closed the connection during the TLS handshake`, { address });
        }
        const refusal = raw ? verifyPeer(raw) : 'the server sent no certificate';
        if (refusal) {
          conn.destroy();
          throw new NetError('EPROTO', `TLS verification of ${address} failed: ${refusal}`, { address });
        }
      }
    }
    return conn;
  } catch (error) {
    state.abandoned = true;
    // A connect that completes after we gave up is closed at once.
    pending.then((socket) => socket.terminate(), () => undefined);
    throw toNetError(error, address);
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener('abort', onAbort);
  }
}

export const bunRuntime: Runtime = { name: 'bun', listen, connectIp };
