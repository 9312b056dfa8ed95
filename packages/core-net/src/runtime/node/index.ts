import net from 'node:net';
import tls from 'node:tls';
import { ConnBase } from '../../conn-base.js';
import { NetError, toNetError } from '../../errors.js';
import { formatHostPort } from '../../address.js';
import { LogBudget } from '../../logger.js';
import { AddressCounts } from '../../conn-limit.js';
import { listenError } from '../listen-error.js';
import { isComposed } from '../../http1/buffer.js';
import { CLIENT_HELLO_MAX_BYTES, parseClientHello } from '../../tls/client-hello.js';
import { offeredSession, tlsSession } from '../../tls/session.js';
import type { Conn, HandshakeSlotTaker, Listener, ListenOptions, RawConnectOptions, Runtime, TlsClientOptions, TlsKeyPair, TlsServerOptions, TlsSession } from '../../types.js';

const kConn = Symbol('wmproxy.conn');
type TaggedSocket = net.Socket & { [kConn]?: NodeConn };
/** A TLS client socket's options, offered session, and the latest session its server issued (keepSession). */
const kOptions = Symbol('wmproxy.tlsOptions');
const kOffered = Symbol('wmproxy.offeredSession');
const kSession = Symbol('wmproxy.session');
type SessionSocket = tls.TLSSocket & { [kOptions]?: TlsClientOptions & { servername: string }; [kOffered]?: TlsSession; [kSession]?: TlsSession };

/** node:net sockets behind the Conn interface. Listeners are shared functions, not per-socket closures. */
export class NodeConn extends ConnBase {
  readonly socket: net.Socket;
  private lastError: Error | undefined;
  readonly servername?: string;
  /** Set by showPeer: the peer this connection stands for. */
  private shownAddress: string | undefined = undefined;
  private shownPort = 0;

  /** `readsItself`: the socket was made with `onread` (see `plainSocket`) and emits no 'data'. */
  constructor(socket: net.Socket, readsItself = false) {
    super();
    this.socket = socket;
    (socket as TaggedSocket)[kConn] = this;
    const name = (socket as tls.TLSSocket).servername;
    if (typeof name === 'string') this.servername = name;
    if (!readsItself) socket.on('data', onSocketData);
    socket.on('drain', onSocketDrain);
    socket.on('end', onSocketEnd);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
  }

  get remoteAddress(): string {
    return this.shownAddress ?? this.socket.remoteAddress ?? '';
  }
  get remotePort(): number {
    return this.shownAddress === undefined ? (this.socket.remotePort ?? 0) : this.shownPort;
  }
  showPeer(address: string, port: number): void {
    const previous = this.remoteAddress;
    this.shownAddress = address;
    this.shownPort = port;
    this.tracker?.readdress?.(this, previous);
  }
  get alpnProtocol(): string | undefined {
    const chosen = (this.socket as tls.TLSSocket).alpnProtocol;
    return typeof chosen === 'string' && chosen !== '' ? chosen : undefined;
  }
  get tlsResumed(): boolean | undefined {
    return this.socket instanceof tls.TLSSocket ? this.socket.isSessionReused() : undefined;
  }
  get tlsSession(): TlsSession | undefined {
    return (this.socket as SessionSocket)[kSession];
  }
  get localAddress(): string {
    return this.socket.localAddress ?? '';
  }
  get localPort(): number {
    return this.socket.localPort ?? 0;
  }
  get bytesRead(): number {
    return this.socket.bytesRead;
  }
  get bytesWritten(): number {
    return this.socket.bytesWritten;
  }
  write(chunk: Uint8Array): boolean {
    if (this.socket.destroyed || this.socket.writableEnded) return false;
    // node:net may queue the chunk itself: the shared compose buffer is reused at once.
    return this.socket.write(isComposed(chunk) ? Buffer.from(chunk) : chunk);
  }
  writev(chunks: readonly Uint8Array[]): boolean {
    if (this.socket.destroyed || this.socket.writableEnded) return false;
    // Corked writes leave in one writev on uncork (node:net's _writev).
    const socket = this.socket;
    socket.cork();
    let writable = true;
    for (const chunk of chunks) writable = socket.write(isComposed(chunk) ? Buffer.from(chunk) : chunk);
    socket.uncork();
    // The last write's answer counted the bytes before the kernel took them; a
    // writev that completed at once leaves nothing queued: no reason to pause.
    return writable || socket.writableLength < socket.writableHighWaterMark;
  }
  end(): void {
    if (this.peerEnded && this.socket.writableLength === 0) {
      this.socket.end();
      return;
    }
    this.socket.end();
  }
  destroy(error?: Error): void {
    if (error) this.lastError = error;
    this.socket.destroy();
  }
  override reset(error?: Error): void {
    if (error) this.lastError = error;
    if (this.socket.destroyed) return;
    if (this.socket instanceof tls.TLSSocket) {
      // A TLS socket's handle is a TLSWrap (resetAndDestroy throws). The TCP handle under it has reset()
      // (SO_LINGER 0 + close, what resetAndDestroy calls): used where present, so a peer reads ECONNRESET
      // rather than a FIN it cannot tell from an end (the tunnel's data connections pass resets this way).
      const tcp = (this.socket as unknown as { _handle?: { _parent?: { reset?: (done: () => void) => number } } })._handle?._parent;
      const socket = this.socket;
      // The TLS socket's own close never comes once its TCP handle is gone: the reset's callback stands in for it.
      if (typeof tcp?.reset === 'function') tcp.reset(() => socket.emit('close', true));
      socket.destroy();
    } else this.socket.resetAndDestroy();
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
  /** @internal */
  recordError(error: Error): void {
    this.lastError ??= error;
  }
  /** @internal */
  finish(): void {
    this.dispatchClose(this.lastError);
  }
}

function onSocketData(this: TaggedSocket, chunk: Buffer): void {
  this[kConn]?.dispatchData(chunk);
}
function onSocketDrain(this: TaggedSocket): void {
  const conn = this[kConn];
  conn?.handler.drain?.(conn);
}
function onSocketEnd(this: TaggedSocket): void {
  const conn = this[kConn];
  if (!conn) return;
  conn.dispatchEnd();
  // Both directions done: release the socket.
  if (this.writableEnded) this.destroy();
}
function onSocketError(this: TaggedSocket, error: Error): void {
  this[kConn]?.recordError(toNetError(error));
  // An error is fatal. A TLS socket that received an alert (a server refusing our client
  // certificate) reports the error, then 'end', and would otherwise stay open half-closed.
  this.destroy();
}
function onSocketClose(this: TaggedSocket): void {
  this[kConn]?.finish();
}
/** node:tls's 'session': a ticket came. A resumed connection's server sent no certificate: the offered session's stands. */
function onSocketSession(this: SessionSocket, bytes: Buffer): void {
  const certificate = this.isSessionReused() ? this[kOffered]?.certificate : this.getPeerCertificate(false)?.raw;
  this[kSession] = tlsSession(bytes, certificate, this[kOptions]!);
}

function listen(options: ListenOptions): Promise<Listener> {
  return new Promise((resolve, reject) => {
    // The owner's handshake slots, taken here at accept and carried past the TLS handshake: one count from accept to authentication.
    const slots = options.tls ? options.handshakes : undefined;
    const gate = slots === undefined && options.tls && (options.tls.maxHandshakes || options.tls.maxHandshakesPerIp) ? new HandshakeGate(options.tls.maxHandshakes ?? 0, options.tls.maxHandshakesPerIp ?? 0, options.onError) : undefined;
    // Reports timed-out TLS handshakes (one line per interval) where a gate or slots bound them.
    const reporter = gate ?? (slots ? new HandshakeGate(0, 0, options.onError) : undefined);
    const onSocket = (socket: net.Socket): void => {
      const parent = (socket as { _parent?: SlotSocket & GatedSocket })._parent;
      let slotTaken = false;
      if (slots !== undefined && parent?.[kSlot] === slots) {
        parent[kSlot] = undefined;
        slotTaken = true;
      } else if (gate) gate.release(parent);
      // Half-open only once secure (see `front`): a peer's FIN keeps the connection open from here on.
      socket.allowHalfOpen = true;
      socket.setNoDelay(true);
      options.onConnection(new NodeConn(socket), slotTaken);
    };
    const onPlainSocket = (socket: net.Socket): void => {
      socket.setNoDelay(true);
      // The NodeConn exists before the first read: resume() starts reading on a later turn.
      options.onConnection(new NodeConn(socket, readItself(socket)));
    };
    const tlsServer = options.tls
      ? tls.createServer(
          {
            cert: toPem(options.tls.cert),
            key: toPem(options.tls.key),
            ciphers: preferredCiphers(),
            allowHalfOpen: true,
            SNICallback: options.tls.sni || options.tls.select ? sniCallback(options.tls) : undefined,
            ...(options.tls.alpn?.length ? { ALPNProtocols: options.tls.alpn } : {}),
            // Mutual TLS: a client without a certificate from `clientCa` fails the handshake ('tlsClientError').
            ...(options.tls.clientCa ? { ca: toPemList(options.tls.clientCa), requestCert: true, rejectUnauthorized: true } : {}),
            ...(options.tls.handshakeTimeoutMs ? { handshakeTimeout: options.tls.handshakeTimeoutMs } : {}),
          },
          onSocket,
        )
      : undefined;
    if (tlsServer) {
      // The peer is noted on the raw socket at accept: a TLS socket that failed its handshake may have lost its address by the time it is reported.
      tlsServer.on('connection', notePeer);
      tlsServer.on('tlsClientError', (error: Error, socket: net.Socket) => {
        const peer = socket.remoteAddress ? formatHostPort(socket.remoteAddress, socket.remotePort ?? 0) : ((socket as { _parent?: PeerNoted })._parent?.[kPeer] ?? 'unknown');
        // OpenSSL's `reason` ("peer did not return a certificate") without the source file and line of `message`.
        const reason = (error as { reason?: unknown }).reason;
        const text = typeof reason === 'string' ? reason : error.message.trim();
        socket.destroy();
        // The raw socket under a TLS socket emits no 'close' of its own (its handle went to the TLS socket): its slot is given back here.
        // (Bun's node:tls has no `_parent`, null: its raw sockets report their own close.)
        const raw = (socket as { _parent?: (SlotSocket & GatedSocket) | null })._parent;
        if (raw) {
          giveSlotBack.call(raw);
          gate?.release(raw);
        }
        // A silent client's timeout says nothing of its own: a flood of them is one line per interval.
        const code = (error as { code?: unknown }).code;
        if (reporter && (code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || code === 'ECONNRESET')) return reporter.report(code === 'ECONNRESET' ? 'closed by the peer' : 'timed out', peer);
        options.onError?.(new NetError('EPROTO', `TLS handshake with ${peer} failed: ${text}`, { address: peer, cause: error }), peer);
      });
    }
    const acme = options.tls?.acmeTlsAlpn;
    // With limits on handshakes a plain listener takes the socket first, counts it, and hands it to node:tls (or to the ACME router).
    const front =
      tlsServer && (acme || gate || slots)
        ? (socket: net.Socket): void => {
            if (slots !== undefined && !takeSlot(socket, slots)) return;
            if (gate && !gate.admit(socket)) return;
            if (acme) routeByClientHello(socket, tlsServer, acme, options.onError);
            else tlsServer.emit('connection', socket);
          }
        : undefined;
    // Not half-open before the TLS socket is secure: with it a peer that sends FIN during the handshake left a TLS socket waiting out
    // the handshake timeout with its slot (the raw socket under it emits no 'close'); without it that socket closes and reports.
    const server: net.Server = front ? net.createServer({ allowHalfOpen: false }, front) : (tlsServer ?? net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, onPlainSocket));
    const failed = (error: Error): void => reject(listenError(error, formatHostPort(options.host, options.port)));
    server.once('error', failed);
    // reusePort false unless asked: only our own workers share a port (Node honours it from 22.12).
    server.listen({ host: options.host, port: options.port, reusePort: options.reusePort ?? false }, () => {
      server.off('error', failed);
      server.on('error', (error) => options.onError?.(error));
      const address = server.address() as net.AddressInfo;
      resolve({
        host: address.address,
        port: address.port,
        close: () => server.close(),
      });
    });
  });
}

const kGate = Symbol('wmproxy.handshakeGate');
type GatedSocket = net.Socket & { [kGate]?: HandshakeGate };
/** A flood of refused or timed-out handshakes is reported once per this interval, with the count. */
const HANDSHAKE_REPORT_MS = 10_000;

/** Counts the TLS handshakes under way on one listener, in all and by address (see TlsServerOptions.maxHandshakes). */
class HandshakeGate {
  private readonly underWay = new AddressCounts();
  private readonly reports = new LogBudget(1, HANDSHAKE_REPORT_MS);

  constructor(
    private readonly max: number,
    private readonly maxPerIp: number,
    private readonly onError: ListenOptions['onError'],
  ) {}

  /** Count a new socket until its handshake ends (`release`) or it closes; over a limit it is destroyed and false returned. */
  admit(socket: GatedSocket): boolean {
    const ip = socket.remoteAddress ?? '';
    const over = this.underWay.over(ip, this.max, this.maxPerIp);
    if (over !== undefined) {
      socket.destroy();
      this.report(over === 'all' ? `refused, ${this.max} under way` : `refused, ${this.maxPerIp} under way from its address`, formatHostPort(ip, socket.remotePort ?? 0));
      return false;
    }
    this.underWay.add(ip);
    socket[kGate] = this;
    socket.once('close', releaseOnClose);
    return true;
  }

  release(socket: GatedSocket | undefined): void {
    if (socket?.[kGate] !== this) return;
    socket[kGate] = undefined;
    this.underWay.remove(socket.remoteAddress ?? '');
  }

  report(what: string, peer: string): void {
    const dropped = this.reports.take();
    if (dropped === undefined) return;
    this.onError?.(new NetError('EPROTO', `TLS handshakes refused or timed out: ${dropped + 1} since the last report (the latest ${what}, from ${peer})`, { address: peer }), peer);
  }
}

function releaseOnClose(this: GatedSocket): void {
  this[kGate]?.release(this);
}

const kSlot = Symbol('wmproxy.handshakeSlot');
type SlotSocket = net.Socket & { [kSlot]?: HandshakeSlotTaker };

/** A raw socket takes its owner's handshake slot before TLS (closed at once without one); a close before the handover gives it back. */
function takeSlot(socket: SlotSocket, slots: HandshakeSlotTaker): boolean {
  if (!slots.take(socket.remoteAddress ?? '')) {
    socket.destroy();
    return false;
  }
  socket[kSlot] = slots;
  socket.once('close', giveSlotBack);
  return true;
}

function giveSlotBack(this: SlotSocket): void {
  const slots = this[kSlot];
  if (slots === undefined) return;
  this[kSlot] = undefined;
  slots.giveBack(this.remoteAddress ?? '');
}

const kPeer = Symbol('wmproxy.peer');
type PeerNoted = net.Socket & { [kPeer]?: string };
function notePeer(socket: PeerNoted): void {
  socket[kPeer] = formatHostPort(socket.remoteAddress ?? '', socket.remotePort ?? 0);
}

function toPem(value: string | Uint8Array): string | Buffer {
  return typeof value === 'string' ? value : Buffer.from(value);
}

function toPemList(value: string | Uint8Array | Array<string | Uint8Array>): Array<string | Buffer> {
  return (Array.isArray(value) ? value : [value]).map(toPem);
}

type SniDone = (error: Error | null, context?: tls.SecureContext) => void;

function sniCallback(options: TlsServerOptions): (name: string, done: SniDone) => void {
  const contexts = new Map<string, tls.SecureContext>();
  for (const [name, pair] of Object.entries(options.sni ?? {})) contexts.set(name.toLowerCase(), secureContext(pair));
  const select = options.select;
  return (name, done) => {
    const lower = name.toLowerCase();
    const exact = contexts.get(lower);
    if (exact) return done(null, exact);
    const dot = lower.indexOf('.');
    const wildcard = dot > 0 ? contexts.get('*' + lower.slice(dot)) : undefined;
    if (wildcard) return done(null, wildcard);
    const pair = select?.(lower);
    done(null, pair ? cachedContext(pair) : undefined);
  };
}

function secureContext(pair: TlsKeyPair): tls.SecureContext {
  return tls.createSecureContext({ cert: toPem(pair.cert), key: toPem(pair.key), ciphers: preferredCiphers() });
}

/** Contexts of `select`ed pairs, by pair identity: a renewed certificate is a new pair, the old context is collected. */
const selectedContexts = new WeakMap<TlsKeyPair, tls.SecureContext>();
function cachedContext(pair: TlsKeyPair): tls.SecureContext {
  let context = selectedContexts.get(pair);
  if (!context) selectedContexts.set(pair, (context = secureContext(pair)));
  return context;
}

/** A client that sends no complete ClientHello within this long is dropped. */
const CLIENT_HELLO_TIMEOUT_MS = 10_000;
const ACME_TLS_ALPN = 'acme-tls/1';

/**
 * Read the ClientHello, then hand the socket (bytes put back) to the TLS
 * server, or, for an ACME TLS-ALPN-01 validation of a name with a pending
 * challenge, answer with the challenge certificate and `acme-tls/1`.
 */
function routeByClientHello(socket: net.Socket, server: tls.Server, challenge: NonNullable<TlsServerOptions['acmeTlsAlpn']>, onError?: (error: Error) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), CLIENT_HELLO_TIMEOUT_MS);
  const stop = (): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onFail);
    socket.off('end', onFail);
  };
  const onFail = (): void => {
    stop();
    socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    buffered = buffered.byteLength === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const hello = parseClientHello(buffered);
    if (hello === 'incomplete' && buffered.byteLength < CLIENT_HELLO_MAX_BYTES) return;
    stop();
    socket.pause();
    socket.unshift(buffered);
    if (typeof hello !== 'object' || !hello.alpn.includes(ACME_TLS_ALPN)) {
      server.emit('connection', socket);
      return;
    }
    Promise.resolve(challenge(hello.servername)).then(
      (pair) => {
        if (socket.destroyed) return;
        if (!pair) {
          server.emit('connection', socket);
          return;
        }
        const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: secureContext(pair), ALPNProtocols: [ACME_TLS_ALPN] });
        // The validator only reads the certificate; nothing is served.
        secure.on('secure', () => secure.end());
        secure.on('error', (error) => {
          onError?.(error);
          secure.destroy();
        });
      },
      (error: Error) => {
        onError?.(error);
        socket.destroy();
      },
    );
  };
  socket.on('data', onData);
  socket.on('error', onFail);
  socket.on('end', onFail);
}

/**
 * Plain outgoing sockets read with `onread` into one shared buffer: libuv's
 * read goes straight to the connection, without node:stream's push, buffering
 * and 'data' emit (about 3 us less CPU per response on Node 20). Each chunk is
 * copied out before the next read can reuse the buffer (a write that node:net
 * queues keeps its chunk). `pause()`/`resume()` work as before (node:net
 * stops and starts the handle's reads itself).
 */
const sharedReadBuffer = Buffer.allocUnsafe(64 * 1024);
/** Bytes before each copied-out chunk that its handler may write (see Conn.readHeadroom): a 14-byte WebSocket header fits. */
const READ_HEADROOM = 16;

/** The onread callback of one socket (one closure per connection, not per read: onread's callback is not told its socket). */
function readCallback(owner: { socket: TaggedSocket | undefined }): (nread: number, buffer: Uint8Array) => boolean {
  return (nread, buffer) => {
    const conn = owner.socket?.[kConn];
    if (!conn) return true;
    // Buffer.allocUnsafe takes small chunks from node's shared pool. The room before the
    // chunk is part of this allocation: a WebSocket bridge writes its frame header there.
    const copy = Buffer.allocUnsafe(READ_HEADROOM + nread);
    copy.set(buffer.subarray(0, nread), READ_HEADROOM);
    conn.readHeadroom = READ_HEADROOM;
    try {
      conn.dispatchData(copy.subarray(READ_HEADROOM));
    } finally {
      // Only this chunk has it (not ones replayed later by setHandler).
      conn.readHeadroom = 0;
    }
    // Pausing is the connection's own call (pause() stops the handle's reads).
    return true;
  };
}

type AcceptedHandle = { useUserBuffer?: (buffer: Uint8Array) => void };

/** node:net's own keys for a socket's `onread` buffer and callback (found by name once: they are not exported). */
let onreadKeys: { buffer: symbol; callback: symbol } | null | undefined;
function findOnreadKeys(socket: net.Socket): { buffer: symbol; callback: symbol } | null {
  const symbols = Object.getOwnPropertySymbols(socket);
  const buffer = symbols.find((symbol) => symbol.description === 'kBuffer');
  const callback = symbols.find((symbol) => symbol.description === 'kBufferCb');
  return buffer && callback ? { buffer, callback } : null;
}

/**
 * An accepted plain socket (made paused, `pauseOnConnect`) switched to reading with `onread`, as outgoing
 * ones do (see `plainSocket`), before its first read: node:net has no `onread` option for a server's
 * sockets, so the socket gets what its constructor would have set for one (its `kBuffer` and `kBufferCb`
 * fields, and the handle's user buffer). Where those are not there (node:net on Bun, another Node), it
 * reads as before. Then it is resumed.
 */
function readItself(socket: net.Socket): boolean {
  const handle = (socket as net.Socket & { _handle: AcceptedHandle | null })._handle;
  if (onreadKeys === undefined) onreadKeys = findOnreadKeys(socket);
  const keys = onreadKeys;
  const switched = keys !== null && handle !== null && typeof handle.useUserBuffer === 'function';
  if (switched) {
    const fields = socket as unknown as Record<symbol, unknown>;
    fields[keys.buffer] = sharedReadBuffer;
    fields[keys.callback] = readCallback({ socket });
    handle.useUserBuffer!(sharedReadBuffer);
  }
  socket.resume();
  return switched;
}

function plainSocket(options: RawConnectOptions): net.Socket {
  const owner: { socket: TaggedSocket | undefined } = { socket: undefined };
  owner.socket = net.connect({
    host: options.ip,
    port: options.port,
    localAddress: options.localAddress,
    allowHalfOpen: true,
    noDelay: true,
    onread: { buffer: sharedReadBuffer, callback: readCallback(owner) },
  });
  return owner.socket;
}

function connectIp(options: RawConnectOptions): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const address = formatHostPort(options.ip, options.port);
    const offered = options.tls ? offeredSession(options.tls) : undefined;
    const socket: net.Socket = options.tls
      ? tls.connect({
          host: options.ip,
          port: options.port,
          servername: options.tls.servername || undefined,
          rejectUnauthorized: options.tls.rejectUnauthorized ?? true,
          ca: options.tls.ca as tls.ConnectionOptions['ca'],
          ALPNProtocols: options.tls.alpn,
          cert: options.tls.cert === undefined ? undefined : toPem(options.tls.cert),
          key: options.tls.key === undefined ? undefined : toPem(options.tls.key),
          localAddress: options.localAddress,
          allowHalfOpen: true,
          ciphers: preferredCiphers(),
          session: offered ? Buffer.from(offered.bytes) : undefined,
        })
      : plainSocket(options);
    if (options.tls && (options.tls.session || options.tls.keepSession)) {
      (socket as SessionSocket)[kOptions] = options.tls;
      (socket as SessionSocket)[kOffered] = offered;
      socket.on('session', onSocketSession);
    }
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(error);
    };
    const onAbort = (): void => fail(new NetError('EABORTED', `connect to ${address} aborted`, { address }));
    const timer = setTimeout(
      () => fail(new NetError('ETIMEDOUT', `connect to ${address} timed out after ${options.timeoutMs} ms`, { address })),
      options.timeoutMs,
    );
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (error) => fail(options.tls && isCertificateError(error) ? new NetError('EPROTO', `TLS verification of ${address} failed: ${error.message}`, { address, cause: error }) : toNetError(error, address)));
    socket.once(options.tls ? 'secureConnect' : 'connect', () => {
      if (settled) return;
      const verifyPeer = options.tls?.verifyPeer;
      if (verifyPeer) {
        const secure = socket as tls.TLSSocket;
        // A resumed handshake carries no certificate: the one the offered session was established with (checked then) is the server's.
        const raw = secure.getPeerCertificate(false)?.raw ?? (secure.isSessionReused() ? offered?.certificate : undefined);
        const refusal = raw ? verifyPeer(raw) : 'the server sent no certificate';
        if (refusal) return fail(new NetError('EPROTO', `TLS verification of ${address} failed: ${refusal}`, { address }));
      }
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(new NodeConn(socket, !options.tls));
    });
  });
}

/**
 * node:tls's default cipher list with TLS_AES_128_GCM_SHA256 moved first, the order BoringSSL (Bun) has,
 * for our servers and clients. Node's default has AES-256-GCM first, and its servers pick TLS 1.3 suites in
 * their own order: Node-to-Node TLS ran AES-256, 0.08-0.16 CPU s more per GiB relayed over two TLS hops
 * (bench/relay-tls.mjs). A client's order is what a BoringSSL server follows. Clients that prefer
 * ChaCha20 got AES-256 from a Node server before and get AES-128 now. Left to Bun's node:tls (BoringSSL
 * orders TLS 1.3 suites itself) and to a default list without that suite (--tls-cipher-list).
 */
let cipherDefaults: string | undefined;
let cipherOrder: string | undefined;
function preferredCiphers(): string | undefined {
  if (process.versions.bun !== undefined) return undefined;
  const defaults = tls.DEFAULT_CIPHERS;
  if (defaults !== cipherDefaults) {
    cipherDefaults = defaults;
    const names = defaults.split(':');
    const at = names.indexOf(PREFERRED_SUITE);
    cipherOrder = at > 0 ? [PREFERRED_SUITE, ...names.slice(0, at), ...names.slice(at + 1)].join(':') : undefined;
  }
  return cipherOrder;
}
const PREFERRED_SUITE = 'TLS_AES_128_GCM_SHA256';

/** OpenSSL's verification failures (UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED, ERR_TLS_CERT_ALTNAME_INVALID...), as opposed to socket errors. */
function isCertificateError(error: Error): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /CERT|SELF_SIGNED|UNABLE_TO|VERIFY/.test(code));
}

export const nodeRuntime: Runtime = { name: 'node', listen, connectIp };
