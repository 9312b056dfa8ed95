/**
 * The private side: dials out to the tunnel server (one connection, so it
 * passes NAT), authenticates, registers its mappings, and serves each stream
 * the server opens by connecting to the local service (or running the
 * forward proxy on it). Reconnects with jittered exponential backoff and
 * registers its mappings again; `reload` swaps mappings on a live session.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import {
  AccessPolicy,
  DEFAULT_DENY_DESTINATIONS,
  DEFAULT_PENALTY_MAX_MS,
  NetError,
  bindUdp,
  certificateFingerprint,
  connect,
  formatHostPort,
  normaliseFingerprint,
  Relay,
  releaseConn,
  silentLogger,
  type Conn,
  type ConnTracker,
  type Logger,
  type TlsClientOptions,
  type TlsSession,
  type UdpEndpoint,
} from '@wmproxy/core-net';
import { ForwardProxy, type ForwardProxyOptions } from '@wmproxy/http-proxy';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, NONCE, clientHandshake, helloPayload } from './auth.js';
import { DATA_CONNECTION_FLAG, DataLink, dataMac, macEqual, type DataFrame } from './data.js';
import { Flag, FrameType, PROTOCOL_VERSION, decodeJson, decodeReason, encodeJson, readU32 } from './frame.js';
import { proxyProtocolHeader, publicView, validateMapping, type Mapping } from './mapping.js';
import { Mux, type TunnelStream } from './mux.js';
import { DEFAULT_RELAY_IDLE_MS, DEFAULT_UDP_IDLE_MS } from './server.js';

export const DEFAULT_BACKOFF_INITIAL_MS = 1000;
export const DEFAULT_BACKOFF_MAX_MS = 20_000;
/** A session that lasted this long resets the backoff. */
export const DEFAULT_STABLE_MS = 10_000;
export const DEFAULT_LOCAL_CONNECT_TIMEOUT_MS = 5000;
const REGISTER_TIMEOUT_MS = 10_000;
/** Data connections dialled at once: a pool of 256 is filled in waves, under the server's handshake limit per address (DEFAULT_MAX_HANDSHAKES_PER_IP). */
const MAX_DATA_DIALS = 16;
const PENALTY_HINT = `the server closes connections from an address for a while after failed logins from it (its auth penalty, up to ${DEFAULT_PENALTY_MAX_MS / 60_000} min by default) or at its handshake limit: see its log; a client with the right token gets in when the penalty ends`;

export interface TunnelClientTls {
  /** Trust this CA (PEM) for the server's certificate. */
  ca?: string | Uint8Array;
  /** Pin the server's certificate by SHA-256 fingerprint (`SHA256:<base64>` or hex), as ssh does. */
  fingerprint?: string;
  /** Name to verify in the certificate (default the server host). */
  servername?: string;
  /** Client certificate and key for servers that require mutual TLS. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
}

export interface TunnelClientOptions {
  /** `host:port` of the tunnel server. */
  server: string;
  token: string;
  /** Name shown in the server's logs and client list. */
  name?: string;
  /** TLS settings (default: verify against the system CAs); `false` for plain TCP. */
  tls?: TunnelClientTls | false;
  mappings: Mapping[];
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  stableMs?: number;
  connectTimeoutMs?: number;
  /** Connect timeout towards local services. */
  localConnectTimeoutMs?: number;
  udpIdleMs?: number;
  relayIdleMs?: number;
  /**
   * Options of the forward proxy that serves `proxy` mappings. A `proxy` mapping exposes it on the server's public
   * port, so it needs `users` or a `clientPolicy` allow list (of visitor addresses), or `openProxy`.
   * `destinationDeny` defaults to core-net's DEFAULT_DENY_DESTINATIONS (this host and its link); a list given replaces it.
   */
  proxy?: ForwardProxyOptions;
  /** Serve `proxy` mappings without `proxy.users` or an allow list: an open proxy into this network for anyone who reaches the public port. */
  openProxy?: boolean;
  /** Announce that bulk streams may move to data connections (default true; false: as clients before promotion, for tests and interop). */
  promotion?: boolean;
  logger?: Logger;
}

export interface RegistrationResult {
  name: string;
  ok: boolean;
  reason?: string;
}

export interface TunnelClientStatus {
  connected: boolean;
  server: string;
  since: string | undefined;
  rttMs: number | undefined;
  reconnects: number;
  openStreams: number;
  /** Data connections dialled in all, and how many of them resumed a TLS session (no certificate, no signature: a cheaper handshake). */
  dataConnections: number;
  dataResumed: number;
  lastError: string | undefined;
  results: RegistrationResult[];
}

export interface TunnelClientEvents {
  connected: [{ serverId: string }];
  registered: [RegistrationResult[]];
  disconnected: [Error | undefined];
  /** A connection attempt failed (network, TLS or auth); `delayMs` until the next. */
  retry: [Error, number];
}

interface LocalFlow {
  endpoint: UdpEndpoint;
  mapping: Mapping;
  lastActive: number;
  stream: TunnelStream;
}

export class TunnelClient extends EventEmitter<TunnelClientEvents> {
  private readonly options: TunnelClientOptions;
  private readonly logger: Logger;
  private mappings: Map<string, Mapping>;
  private mux: Mux | undefined;
  private stopped = true;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private wakeRetry: (() => void) | undefined;
  private sessionSince: number | undefined;
  private sessions = 0;
  private lastError: string | undefined;
  /** When the server last refused this client's login (see PENALTY_HINT). */
  private authRefusedAt: number | undefined = undefined;
  /** The last dial was closed by the server before the tunnel handshake (see PENALTY_HINT). */
  private cutAtDial = false;
  private results: RegistrationResult[] = [];
  /** The MAPPINGS awaiting the server's answer (settled, its timer cleared, when the session closes). */
  private pendingRegistration: PendingRegistration | undefined;
  private proxy: ForwardProxy | undefined;
  private readonly flows = new Map<number, LocalFlow>();
  /** Data connections: the pool size the server asked for, idle ones, dials under way, ones carrying a visitor. */
  private dataPool = 0;
  private dataSessionId = '';
  private readonly idleData = new Set<DataLink>();
  private dialing = 0;
  /** The latest TLS session the server issued a ticket for, offered by each data connection (TlsClientOptions.session). */
  private tlsSession: TlsSession | undefined;
  private dataDialled = 0;
  private dataResumed = 0;
  private readonly busyData = new BusyData();
  private dataRetry: ReturnType<typeof setTimeout> | undefined;
  private dataTimer: ReturnType<typeof setInterval> | undefined;
  private sweep: ReturnType<typeof setInterval> | undefined;
  private loop: Promise<void> | undefined;
  private abort = new AbortController();
  private readonly host: string;
  private readonly port: number;

  constructor(options: TunnelClientOptions) {
    super();
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.mappings = this.checked(options.mappings);
    // Made now when configured, so that a bad option (an allow list entry that is no CIDR) fails here, not at the first visitor.
    if (options.proxy !== undefined) this.proxy = this.forwardProxy();
    const colon = options.server.lastIndexOf(':');
    if (colon <= 0) throw new RangeError(`tunnel client: server "${options.server}" is not host:port`);
    this.host = options.server.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    this.port = Number(options.server.slice(colon + 1));
    if (!Number.isInteger(this.port) || this.port < 1 || this.port > 65535) throw new RangeError(`tunnel client: server "${options.server}" has no valid port`);
    if (options.tls && options.tls.fingerprint) options.tls.fingerprint = normaliseFingerprint(options.tls.fingerprint);
  }

  private forwardProxy(): ForwardProxy {
    return new ForwardProxy({ logger: this.logger, destinationDeny: DEFAULT_DENY_DESTINATIONS, ...this.options.proxy });
  }

  /** The mappings by name, refused when one would be an open proxy (see `proxy`). */
  private checked(mappings: Mapping[]): Map<string, Mapping> {
    const byName = TunnelClient.index(mappings);
    if (!this.options.openProxy && !proxyGuarded(this.options.proxy)) {
      for (const mapping of byName.values()) {
        if (mapping.kind === 'proxy') throw new RangeError(`tunnel client: proxy mapping "${mapping.name}" would be an open proxy into this network for anyone who reaches the server's public port: give the proxy users or an allow list of visitor addresses, or openProxy`);
      }
    }
    return byName;
  }

  private static index(mappings: Mapping[]): Map<string, Mapping> {
    const out = new Map<string, Mapping>();
    for (const mapping of mappings) {
      validateMapping(mapping);
      if (out.has(mapping.name)) throw new RangeError(`tunnel client: two mappings are named "${mapping.name}"`);
      out.set(mapping.name, mapping);
    }
    return out;
  }

  /** Start connecting (and keep reconnecting until `stop`). */
  start(): this {
    if (!this.stopped) return this;
    this.stopped = false;
    this.abort = new AbortController();
    const every = Math.max(100, Math.floor((this.options.udpIdleMs ?? DEFAULT_UDP_IDLE_MS) / 2));
    this.sweep = setInterval(() => this.sweepFlows(), every);
    this.sweep.unref?.();
    this.loop = this.run();
    return this;
  }

  /** Resolves once a session is registered (the first `registered` event). */
  ready(): Promise<RegistrationResult[]> {
    if (this.mux && !this.mux.closed && this.results.length > 0) return Promise.resolve(this.results);
    return new Promise((resolve) => this.once('registered', resolve));
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let error: Error | undefined;
      try {
        await this.session();
      } catch (caught) {
        error = caught as Error;
      }
      if (this.stopped) break;
      const lived = this.sessionSince === undefined ? 0 : Date.now() - this.sessionSince;
      if (lived >= (this.options.stableMs ?? DEFAULT_STABLE_MS)) this.attempt = 0;
      this.sessionSince = undefined;
      const delay = this.backoff();
      if (error) {
        this.lastError = error.message;
        const auth = error instanceof NetError && error.code === 'EAUTH';
        if (auth) this.authRefusedAt = Date.now();
        // A server penalizes an address after failed logins by closing its connections before TLS: say so, or a
        // client fixed meanwhile reads only resets.
        const penalty = !auth && (this.cutAtDial || (this.authRefusedAt !== undefined && Date.now() - this.authRefusedAt < DEFAULT_PENALTY_MAX_MS)) ? PENALTY_HINT : undefined;
        this.logger[auth ? 'error' : 'warn']('tunnel connection failed', { server: this.options.server, error: error.message, retryInMs: delay, ...(penalty ? { hint: penalty } : {}) });
        this.emit('retry', error, delay);
      }
      await new Promise<void>((resolve) => {
        this.wakeRetry = resolve;
        this.retryTimer = setTimeout(resolve, delay);
      });
      this.wakeRetry = undefined;
    }
  }

  /** Full jitter between half and all of min(max, initial * 2^attempt). */
  private backoff(): number {
    const initial = this.options.backoffInitialMs ?? DEFAULT_BACKOFF_INITIAL_MS;
    const max = this.options.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
    const base = Math.min(max, initial * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  /** `session`: offered for resumption (data connections); every connection keeps the one its server issues. */
  private tlsOptions(session?: TlsSession): TlsClientOptions | undefined {
    const tls = this.options.tls;
    if (tls === false) return undefined;
    const out: TlsClientOptions = { keepSession: true, session };
    if (tls?.servername) out.servername = tls.servername;
    if (tls?.cert !== undefined) {
      out.cert = tls.cert;
      out.key = tls.key;
    }
    if (tls?.fingerprint) {
      const pinned = tls.fingerprint;
      out.rejectUnauthorized = false;
      out.verifyPeer = (der) => {
        const seen = certificateFingerprint(der);
        return seen === pinned ? undefined : `the server certificate's fingerprint ${seen} is not the pinned ${pinned}`;
      };
    } else if (tls?.ca !== undefined) out.ca = tls.ca;
    return out;
  }

  /** One session: connect, authenticate, register, serve until it closes. */
  private async session(): Promise<void> {
    this.cutAtDial = false;
    const conn = await connect({ host: this.host, port: this.port, tls: this.tlsOptions(), timeoutMs: this.options.connectTimeoutMs, signal: this.abort.signal }).catch((error: unknown) => {
      this.cutAtDial = error instanceof NetError && error.code === 'ECONNRESET';
      throw error;
    });
    if (this.stopped) {
      conn.destroy();
      return;
    }
    const mux = new Mux(conn, { side: 'client', logger: this.logger });
    this.mux = mux;
    const settings = await clientHandshake(mux, { token: this.options.token, name: this.options.name, canMove: this.options.promotion });
    // A new session's ticket replaces the last: after a server restart the old one resumes nothing.
    this.tlsSession = conn.tlsSession ?? this.tlsSession;
    const closed = new Promise<Error | undefined>((resolve) => {
      mux.setEvents({
        control: (_m, type, _flags, payload) => this.onControl(type, payload),
        open: (_m, stream, flags, payload) => this.onOpen(stream, flags, payload),
        datagram: (_m, id, payload) => this.onDatagram(id, payload),
        goaway: (_m, reason) => this.logger.info('tunnel server is going away', { reason }),
        close: (_m, error) => resolve(error),
      });
    });
    mux.startHeartbeat(settings.heartbeatMs);
    this.dataPool = settings.dataPool ?? 0;
    this.dataSessionId = settings.sessionId;
    if (this.dataPool > 0) {
      this.dataTimer = setInterval(() => this.checkIdleData(settings.heartbeatMs), settings.heartbeatMs);
      this.dataTimer.unref?.();
    }
    this.sessionSince = Date.now();
    this.sessions++;
    this.lastError = undefined;
    this.authRefusedAt = undefined;
    this.logger.info('tunnel connected', { server: this.options.server, serverId: settings.serverId, heartbeatMs: settings.heartbeatMs });
    this.emit('connected', { serverId: settings.serverId });
    void this.register().catch(() => undefined);
    this.refill();
    const error = await closed;
    if (this.mux === mux) this.mux = undefined;
    // Unanswered mappings die with the session: their timer held the event loop up to 10 s after a stop.
    this.settleRegistration(new NetError('ECONNRESET', 'the tunnel session closed before the server answered the mappings'));
    this.closeIdleData();
    this.logger.info('tunnel disconnected', { server: this.options.server, reason: error?.message });
    this.emit('disconnected', error);
    if (error && !this.stopped) throw error;
  }

  private onControl(type: FrameType, payload: Uint8Array): void {
    if (type === FrameType.ERROR) {
      this.logger.error('tunnel server error', { reason: decodeReason(payload) });
      return;
    }
    if (type !== FrameType.MAPPINGS) return;
    let results: RegistrationResult[] = [];
    try {
      const raw = decodeJson(payload, 'MAPPINGS').results;
      if (Array.isArray(raw)) {
        results = raw.slice(0, 1024).map((r: { name?: unknown; ok?: unknown; reason?: unknown }) => ({
          name: String(r?.name ?? ''),
          ok: r?.ok === true,
          ...(r?.ok === true ? {} : { reason: String(r?.reason ?? 'refused') }),
        }));
      }
    } catch {
      this.mux?.protocolError('MAPPINGS answer is not JSON');
      return;
    }
    this.results = results;
    for (const result of results) {
      if (result.ok) this.logger.info('tunnel mapping registered', { mapping: result.name });
      else this.logger.error('tunnel mapping refused by the server', { mapping: result.name, reason: result.reason });
    }
    this.settleRegistration(results);
    this.emit('registered', results);
  }

  /** Send the current mappings; resolves with the server's verdict per mapping. */
  private register(): Promise<RegistrationResult[]> {
    const mux = this.mux;
    if (!mux || mux.closed) return Promise.reject(new NetError('ECONNRESET', 'not connected to the tunnel server'));
    // A registration still waiting is answered by no MAPPINGS of its own now: it fails at once rather than at its timeout.
    this.settleRegistration(new NetError('ECONNRESET', 'the mappings were sent again before the server answered'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.settleRegistration(new NetError('ETIMEDOUT', 'the tunnel server did not answer the mappings')), REGISTER_TIMEOUT_MS);
      this.pendingRegistration = { resolve, reject, timer };
      mux.sendControl(FrameType.MAPPINGS, 0, encodeJson({ mappings: [...this.mappings.values()].map(publicView) }));
    });
  }

  private settleRegistration(outcome: RegistrationResult[] | Error): void {
    const pending = this.pendingRegistration;
    if (!pending) return;
    this.pendingRegistration = undefined;
    clearTimeout(pending.timer);
    if (outcome instanceof Error) pending.reject(outcome);
    else pending.resolve(outcome);
  }

  /**
   * Replace the mappings. Streams already open continue (also those of
   * removed mappings, until they end). Resolves with the server's verdict
   * when connected, or an empty list (the next session registers them).
   */
  async reload(mappings: Mapping[]): Promise<RegistrationResult[]> {
    this.mappings = this.checked(mappings);
    if (!this.mux || this.mux.closed || !this.mux.established) return [];
    return this.register();
  }

  // ---- streams from the server --------------------------------------------

  private onOpen(stream: TunnelStream, flags: number, payload: Uint8Array): void {
    const request = this.openRequest(stream, payload);
    if (!request) return;
    stream.remoteAddress = request.visitor.address;
    stream.remotePort = request.visitor.port;
    if (flags & Flag.DATAGRAM_FLOW) {
      void this.openFlow(stream, request.mapping);
      return;
    }
    this.serve(stream, request);
  }

  /** The OPEN's mapping and visitor; undefined (and the open refused) when it names none of ours. */
  private openRequest(opening: Opening, payload: Uint8Array): OpenRequest | undefined {
    let request: Record<string, unknown>;
    try {
      request = decodeJson(payload, 'OPEN');
    } catch {
      opening.reject('bad OPEN request');
      return undefined;
    }
    // A string, checked: String() of an object such as {"toString":1} throws inside the connection's handler.
    if (typeof request.m !== 'string') {
      opening.reject('bad OPEN request');
      return undefined;
    }
    const mapping = this.mappings.get(request.m);
    if (!mapping) {
      opening.reject(`no mapping "${request.m.slice(0, 64)}" on this client`);
      return undefined;
    }
    const visitor = { address: typeof request.a === 'string' ? request.a : '', port: typeof request.p === 'number' ? request.p : 0 };
    const destination = { address: typeof request.la === 'string' ? request.la : '0.0.0.0', port: typeof request.lp === 'number' ? request.lp : 0 };
    return { mapping, visitor, destination };
  }

  /** Connect the visitor (a mux stream or a data connection) to the mapping's local service or the forward proxy. */
  private serve(opening: Opening, request: OpenRequest): void {
    const { mapping, visitor, destination } = request;
    if (mapping.kind === 'udp') {
      opening.reject(`mapping "${mapping.name}" is udp: its flows use datagrams`);
      return;
    }
    if (mapping.kind === 'proxy') {
      // A public port reaches it: without options of its own, visitors are kept off this host and its link (local services, a control API, cloud metadata).
      this.proxy ??= this.forwardProxy();
      this.proxy.handle(opening.accept());
      return;
    }
    const target = formatHostPort(mapping.localHost!, mapping.localPort!);
    connect({ host: mapping.localHost!, port: mapping.localPort!, timeoutMs: this.options.localConnectTimeoutMs ?? DEFAULT_LOCAL_CONNECT_TIMEOUT_MS }).then(
      (local) => {
        if (opening.closed) {
          local.destroy();
          return;
        }
        const conn = opening.accept();
        if (mapping.proxyProtocol) local.write(proxyProtocolHeader(mapping.proxyProtocol, visitor, destination));
        // A Relay, not relay(): nothing awaits it, and its promise and resolver stayed with each stream.
        // resetOnError: a local service's reset reaches the visitor as one over a data connection (a mux stream sends RST either way).
        new Relay(conn, local, { idleTimeoutMs: this.options.relayIdleMs ?? DEFAULT_RELAY_IDLE_MS, resetOnError: true });
      },
      (error: Error) => {
        this.logger.warn('tunnel local service unreachable', { mapping: mapping.name, target, error: error.message });
        opening.reject(`local service ${target} of mapping "${mapping.name}": ${error.message}`);
      },
    );
  }

  // ---- data connections (data.ts) ----------------------------------------------

  /** Dial idle data connections until the pool the server asked for is full (none while a retry waits). */
  private refill(): void {
    const mux = this.mux;
    while (mux && !mux.closed && !mux.peerGoingAway && !this.stopped && this.dataRetry === undefined && this.dialing < MAX_DATA_DIALS && this.idleData.size + this.dialing < this.dataPool) {
      this.dialing++;
      this.dialData(mux).then(
        () => {
          this.dialing--;
          this.refill();
        },
        (error: Error) => {
          this.dialing--;
          if (this.mux !== mux || mux.closed || this.stopped) return;
          this.logger.warn('tunnel data connection failed', { server: this.options.server, error: error.message });
          this.retryData();
        },
      );
    }
  }

  /** One retry timer for the pool: a server refusing (full pool, restart) or closing each new idle connection is not dialled in a loop. */
  private retryData(): void {
    this.dataRetry ??= setTimeout(this.boundRetryData, this.options.backoffInitialMs ?? DEFAULT_BACKOFF_INITIAL_MS);
  }

  private readonly boundRetryData = (): void => {
    this.dataRetry = undefined;
    this.refill();
  };

  private async dialData(mux: Mux): Promise<void> {
    const conn = await connect({ host: this.host, port: this.port, tls: this.tlsOptions(this.tlsSession), timeoutMs: this.options.connectTimeoutMs, signal: this.abort.signal });
    const link = new DataLink(conn);
    if (this.mux !== mux || mux.closed) return link.close();
    const timeoutMs = DEFAULT_HANDSHAKE_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const clientNonce = randomBytes(NONCE);
    link.send(FrameType.HELLO, helloPayload(clientNonce, Buffer.from(this.dataSessionId, 'latin1')), DATA_CONNECTION_FLAG);
    try {
      const challenge = await link.next(timeoutMs, 'CHALLENGE');
      if (challenge.type === FrameType.ERROR) throw new NetError('EAUTH', `tunnel server refused a data connection: ${decodeReason(challenge.payload)}`);
      if (challenge.type !== FrameType.CHALLENGE || challenge.payload.byteLength < 1 + NONCE || challenge.payload[0] !== PROTOCOL_VERSION) throw new NetError('EPROTO', 'tunnel data connection: expected CHALLENGE');
      const serverNonce = challenge.payload.subarray(1, 1 + NONCE);
      const serverId = Buffer.from(challenge.payload.subarray(1 + NONCE)).toString();
      link.send(FrameType.AUTH, dataMac(this.options.token, 'client', this.dataSessionId, clientNonce, serverNonce, serverId));
      const ok = await link.next(Math.max(1, deadline - Date.now()), 'AUTH_OK');
      if (ok.type === FrameType.ERROR) throw new NetError('EAUTH', `tunnel server refused a data connection: ${decodeReason(ok.payload)}`);
      if (ok.type !== FrameType.AUTH_OK || !macEqual(dataMac(this.options.token, 'server', this.dataSessionId, serverNonce, clientNonce, serverId), ok.payload)) {
        throw new NetError('EAUTH', 'the tunnel server could not prove it knows the token on a data connection');
      }
    } catch (error) {
      link.close(error as Error);
      throw error;
    }
    this.dataDialled++;
    if (conn.tlsResumed) this.dataResumed++;
    // Its ticket came with CHALLENGE at the latest (after the handshake, with the server's first write).
    this.tlsSession = conn.tlsSession ?? this.tlsSession;
    if (this.mux !== mux || mux.closed) return link.close();
    this.idleData.add(link);
    link.listen(this.boundDataFrame, this.boundDataClosed);
  }

  private readonly boundDataFrame = (link: DataLink, frame: DataFrame): void => {
    if (frame.type === FrameType.PING) {
      // A server that pings without reading the answers would grow our write backlog without end.
      if (!link.send(FrameType.PONG, frame.payload)) link.close(new NetError('ECONNRESET', 'the tunnel server does not read its idle data connection'));
      return;
    }
    this.idleData.delete(link);
    if (frame.type === FrameType.MOVE) {
      this.refill();
      this.moveStream(link, frame.payload);
      return;
    }
    if (frame.type !== FrameType.OPEN) {
      link.close(new NetError('EPROTO', `unexpected ${frame.type} frame on an idle tunnel data connection`));
      return;
    }
    this.refill();
    // No frame follows an OPEN until our answer: the link stops parsing, its answer decides what the bytes are.
    link.onFrame = undefined;
    link.onClose = undefined;
    const opening = new DataOpening(link, this.busyData);
    const request = this.openRequest(opening, frame.payload);
    if (!request) return;
    // Its peer is the tunnel server: it shows the visitor instead, as a mux stream does (the forward proxy's log and address ACL read it).
    link.conn.showPeer?.(request.visitor.address, request.visitor.port);
    this.serve(opening, request);
  };

  /**
   * MOVE: the server moves one of this session's streams to this data
   * connection. Answered with OPEN_OK before a byte of the stream goes on it;
   * `move` sends our MOVED marker on the mux. OPEN_FAIL when the stream is
   * gone here (its end or reset is on its way to the server on the mux).
   */
  private moveStream(link: DataLink, payload: Uint8Array): void {
    const stream = payload.byteLength === 4 ? this.mux?.streams.get(readU32(payload)) : undefined;
    if (stream === undefined || stream.closed || stream.carrier !== undefined) {
      link.fail('no such stream', FrameType.OPEN_FAIL);
      return;
    }
    link.send(FrameType.OPEN_OK);
    const conn = link.conn;
    const unread = link.detach();
    conn.tracker = this.busyData;
    this.busyData.conns.add(conn);
    stream.move(conn, unread);
  }

  private readonly boundDataClosed = (link: DataLink): void => {
    this.idleData.delete(link);
    // Replaced after the retry delay, not at once: a server or middlebox closing each one after its handshake made a dial loop (thousands a second).
    const mux = this.mux;
    if (mux && !mux.closed && !this.stopped) this.retryData();
  };

  /** Each heartbeat: an idle data connection the server stopped pinging (three intervals) is replaced. */
  private checkIdleData(heartbeatMs: number): void {
    const now = Date.now();
    for (const link of [...this.idleData]) if (now - link.lastSeen > 3 * heartbeatMs) link.close(new NetError('ETIMEDOUT', 'idle tunnel data connection: no ping from the server'));
  }

  private closeIdleData(): void {
    clearTimeout(this.dataRetry);
    this.dataRetry = undefined;
    clearInterval(this.dataTimer);
    this.dataTimer = undefined;
    for (const link of [...this.idleData]) link.close();
    this.idleData.clear();
  }

  private async openFlow(stream: TunnelStream, mapping: Mapping): Promise<void> {
    if (mapping.kind !== 'udp') {
      stream.reject(`mapping "${mapping.name}" is not udp`);
      return;
    }
    const host = mapping.localHost!;
    let endpoint: UdpEndpoint;
    try {
      endpoint = await bindUdp(isIP(host) === 6 ? '::' : '0.0.0.0', 0, {
        message: (_endpoint, data) => {
          const flow = this.flows.get(stream.sid);
          if (!flow) return;
          flow.lastActive = Date.now();
          stream.mux.sendDatagram(stream.sid, data);
        },
      });
    } catch (error) {
      this.logger.warn('tunnel udp flow failed', { mapping: mapping.name, error: (error as Error).message });
      stream.destroy();
      return;
    }
    if (stream.closed) {
      endpoint.close();
      return;
    }
    const flow: LocalFlow = { endpoint, mapping, lastActive: Date.now(), stream };
    this.flows.set(stream.sid, flow);
    for (const early of flowBacklog.get(stream) ?? []) endpoint.send(early, mapping.localPort!, host);
    flowBacklog.delete(stream);
    stream.setHandler({
      data() {},
      close: () => {
        if (this.flows.get(stream.sid) === flow) this.flows.delete(stream.sid);
        endpoint.close();
      },
    });
  }

  private onDatagram(id: number, payload: Uint8Array): void {
    const flow = this.flows.get(id);
    if (flow) {
      flow.lastActive = Date.now();
      flow.endpoint.send(payload, flow.mapping.localPort!, flow.mapping.localHost!);
      return;
    }
    // The flow's socket is still being bound: keep the first datagrams (a few).
    const stream = this.mux?.streams.get(id);
    if (!stream) return;
    const backlog = flowBacklog.get(stream) ?? [];
    // Copied (a view would pin the whole read; a Buffer's slice() is one).
    if (backlog.length < 16) backlog.push(new Uint8Array(payload));
    flowBacklog.set(stream, backlog);
  }

  private sweepFlows(): void {
    const idle = this.options.udpIdleMs ?? DEFAULT_UDP_IDLE_MS;
    const now = Date.now();
    for (const flow of [...this.flows.values()]) if (now - flow.lastActive >= idle) flow.stream.destroy();
  }

  // ---- status and stop -------------------------------------------------------

  status(): TunnelClientStatus {
    const mux = this.mux;
    return {
      connected: mux !== undefined && !mux.closed && mux.established,
      server: this.options.server,
      since: this.sessionSince === undefined ? undefined : new Date(this.sessionSince).toISOString(),
      rttMs: mux?.rttMs,
      reconnects: Math.max(0, this.sessions - 1),
      openStreams: (mux === undefined ? 0 : mux.streams.size - mux.carried) + this.busyData.conns.size,
      dataConnections: this.dataDialled,
      dataResumed: this.dataResumed,
      lastError: this.lastError,
      results: this.results,
    };
  }

  /** The live session's multiplexer (for stats and tests). */
  get sessionMux(): Mux | undefined {
    return this.mux;
  }

  /** Stop reconnecting; GOAWAY the session and let its streams finish up to `deadlineMs`. */
  async stop(options: { deadlineMs?: number } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    clearTimeout(this.retryTimer);
    this.wakeRetry?.();
    clearInterval(this.sweep);
    // UDP flows have no end of their own: they do not hold the drain.
    for (const flow of [...this.flows.values()]) flow.stream.destroy();
    this.closeIdleData();
    const mux = this.mux;
    const until = Date.now() + (options.deadlineMs ?? 10_000);
    if (mux && !mux.closed) {
      mux.goAway('client stopping');
      while (!mux.closed && mux.streams.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      mux.destroy();
    }
    // Visitors on data connections finish within the same deadline.
    while (this.busyData.conns.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    for (const conn of [...this.busyData.conns]) conn.destroy();
    for (const flow of this.flows.values()) flow.endpoint.close();
    this.flows.clear();
    await this.loop;
  }
}

interface PendingRegistration {
  resolve(results: RegistrationResult[]): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** Datagrams that arrived before their flow's local socket was bound. */
/** Users, or an allow list of client addresses (an AccessPolicy built from one counts too). */
function proxyGuarded(proxy: ForwardProxyOptions | undefined): boolean {
  if (proxy === undefined) return false;
  if (proxy.users !== undefined && Object.keys(proxy.users).length > 0) return true;
  const policy = proxy.clientPolicy;
  if (policy === undefined) return false;
  return policy instanceof AccessPolicy ? policy.allow.size > 0 : (policy.allow?.length ?? 0) > 0;
}

const flowBacklog = new WeakMap<Conn, Uint8Array[]>();

interface OpenRequest {
  mapping: Mapping;
  visitor: { address: string; port: number };
  destination: { address: string; port: number };
}

/** What serving a visitor needs of its carrier: a mux stream, or a data connection. */
interface Opening {
  readonly closed: boolean;
  /** Tell the server yes; returns the Conn that carries the visitor's bytes. */
  accept(): Conn;
  reject(reason: string): void;
}

/** Data connections carrying a visitor (their close removes them). */
class BusyData implements ConnTracker {
  readonly conns = new Set<Conn>();
  untrack(conn: Conn): void {
    this.conns.delete(conn);
  }
}

/** A data connection that got an OPEN: its answer frame, then the raw bytes. */
class DataOpening implements Opening {
  constructor(
    private readonly link: DataLink,
    private readonly busy: BusyData,
  ) {}
  get closed(): boolean {
    return this.link.closed;
  }
  accept(): Conn {
    const link = this.link;
    link.send(FrameType.OPEN_OK);
    const conn = link.conn;
    releaseConn(conn, link.detach());
    // Outgoing connections have no tracker of their own: this one counts the busy ones.
    conn.tracker = this.busy;
    this.busy.conns.add(conn);
    return conn;
  }
  reject(reason: string): void {
    this.link.fail(reason, FrameType.OPEN_FAIL);
  }
}
