/**
 * The public side: accepts tunnel clients (TLS by default), authenticates
 * them, binds the public ports they register, and carries each visitor over a
 * stream of the client's session. Public listeners outlive a client's absence
 * (visitors get a prompt close, or wait up to `visitorWaitMs` for it to
 * return). `openStream` gives other engines (the reverse proxy's http/https
 * mappings) a stream to a mapping.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  NetError,
  Server,
  bindUdp,
  certificateFingerprint,
  createSelfSignedCertificate,
  formatHostPort,
  parseAddress,
  Relay,
  releaseConn,
  LogBudget,
  AddressCounts,
  HandshakeSlots,
  SourcePenalties,
  silentLogger,
  type Conn,
  type ConnLimitOptions,
  type ConnTracker,
  type Logger,
  type Transport,
  type TransportTarget,
  type UdpEndpoint,
  type TlsServerOptions,
  type SourcePenaltyOptions,
} from '@wmproxy/core-net';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, MAC, isWrongToken, NONCE, challengePayload, domainAllowed, portAllowed, serverHandshake, type ClientCredential, type PortRange } from './auth.js';
import { Flag, FrameType, MAGIC, PROTOCOL_VERSION, decodeJson, decodeReason, encodeJson, u32 } from './frame.js';
import { readPublicMapping, redactMapping, sameShape, type PublicMapping } from './mapping.js';
import { DEFAULT_MAX_STREAMS, DEFAULT_OPEN_TIMEOUT_MS, Mux, type TunnelStream } from './mux.js';
import { DATA_CONNECTION_FLAG, DataLink, MAX_DATA_POOL, dataMac, endThenDestroy, macEqual, peekFirstBytes, type DataFrame } from './data.js';

export const DEFAULT_TUNNEL_LISTEN = '127.0.0.1:7000';
export const DEFAULT_HEARTBEAT_MS = 10_000;
export const DEFAULT_UDP_IDLE_MS = 60_000;
export const DEFAULT_DRAIN_MS = 10_000;
export const DEFAULT_RELAY_IDLE_MS = 5 * 60_000;
export const DEFAULT_DATA_POOL = 4;
export const DEFAULT_DATA_MAX_BUSY = 16;
/** Connections on the tunnel port not yet authenticated, all together and from one address (sshd's MaxStartups, per source too). */
export const DEFAULT_MAX_HANDSHAKES = 1024;
export const DEFAULT_MAX_HANDSHAKES_PER_IP = 64;
/** The interval of the failed-handshake log budget. */
const REFUSAL_LOG_MS = 10_000;
/** Failed handshakes (wrong token, not our protocol) log up to this many lines per REFUSAL_LOG_MS, then the count of those not logged. */
const FAILED_HANDSHAKE_LINES = 20;
export const DEFAULT_DATA_PROMOTE_BYTES = 4 * 1024 * 1024;
/** A stream is bulk when it moves `dataPromoteBytes` within this long (a keep-alive connection of small requests crosses any byte count in time). */
const PROMOTE_WINDOW_MS = 1000;
const CERT_FILE = 'tunnel-cert.pem';
const KEY_FILE = 'tunnel-key.pem';
const MAX_MAPPINGS_PER_CLIENT = 256;
const MAX_UDP_FLOWS_PER_MAPPING = 4096;
/**
 * UDP flows one session carries at once: half of the streams a client accepts, so that a visitor spraying
 * source ports (each a flow, no handshake to pass) leaves the client's tcp and http visitors the other half.
 */
const MAX_UDP_FLOWS_PER_SESSION = DEFAULT_MAX_STREAMS / 2;

export interface TunnelServerTls {
  cert: string | Uint8Array;
  key: string | Uint8Array;
  /** Require client certificates signed by this CA (mutual TLS, the original's `two_way_tls`). */
  clientCa?: string | Uint8Array;
}

export interface TunnelServerOptions {
  /** Where tunnel clients connect (default 127.0.0.1:7000). */
  listen?: string;
  /** One shared token (a credential named "default" allowed everything the server allows). */
  token?: string;
  /** Per-client tokens, each with its own allowed ports and domains. */
  clients?: ClientCredential[];
  /** Public ports any client may ask for, unless its credential says otherwise (default: any). */
  allowPorts?: PortRange[];
  /** Domains any client may serve over http/https, unless its credential says otherwise (default: any). */
  allowDomains?: string[];
  /** Where public tcp/udp/proxy ports bind (default: the host of `listen`). */
  publicHost?: string;
  /** TLS certificate; `false` for plain TCP (tests, or TLS terminated in front). Absent: a self-signed certificate kept in `stateDir`. */
  tls?: TunnelServerTls | false;
  /** Directory for the self-signed certificate (created 0700; key 0600). */
  stateDir?: string;
  /** Name bound into the handshake (default the host name). */
  serverId?: string;
  /** PING interval both ways; a peer silent for two intervals is dropped (default 10 s). */
  heartbeatMs?: number;
  /** How long a visitor waits for a client to (re)appear (default 0: closed at once). */
  visitorWaitMs?: number;
  /** How long opening a stream to a client may take (default 10 s). */
  openTimeoutMs?: number;
  udpIdleMs?: number;
  /** Idle timeout of a relayed visitor connection (default 5 min). */
  relayIdleMs?: number;
  /** Connection limits of every public tcp/proxy mapping port (in all and per visitor IP), as on the other listeners. */
  visitorLimits?: ConnLimitOptions;
  /** Most streams one client session may carry at once (default 4096). */
  maxStreamsPerClient?: number;
  handshakeTimeoutMs?: number;
  /**
   * Idle data connections each client keeps open (announced at its handshake;
   * max 256, 0: every visitor rides the session's multiplexed connection). A
   * bulk visitor moves to one (see dataPromoteBytes; raw bytes, TCP's flow
   * control). Default DEFAULT_DATA_POOL, announced to clients that promote
   * only; a configured pool to every client.
   */
  dataPool?: number;
  /**
   * Most visitors one client carries on data connections at once; beyond,
   * they ride the mux even while idle data connections wait (default
   * DEFAULT_DATA_MAX_BUSY). A TLS connection per visitor costs memory a mux
   * stream does not: this bounds it when visitors pile up idle.
   */
  dataMaxBusy?: number;
  /**
   * Connections on the tunnel port that have not authenticated yet, every
   * address together (default DEFAULT_MAX_HANDSHAKES; 0: no limit) and from
   * one address (DEFAULT_MAX_HANDSHAKES_PER_IP). Beyond, a new connection is
   * closed at once: a flood that never authenticates holds at most these many
   * descriptors. Sessions and data connections stop counting once
   * authenticated. A connection holds its slot from accept, its TLS handshake
   * included (on Node node:tls serves the port: core-net takes the slot
   * before TLS and carries it on), so the limits bound every unauthenticated
   * connection once. `handshakeTimeoutMs` applies to the TLS handshake on
   * Node, then again to the tunnel handshake.
   */
  maxHandshakes?: number;
  maxHandshakesPerIp?: number;
  /**
   * With a pool, every visitor opens on the mux (its small requests batched,
   * no handshake in its first byte's way); one that moves this many bytes
   * (both ways together) within a second moves to an idle data connection,
   * in order both ways (data.ts, promotion). 0: a visitor takes an idle data connection at
   * open instead, as clients that do not announce promotion always do.
   * Default DEFAULT_DATA_PROMOTE_BYTES.
   */
  dataPromoteBytes?: number;
  /**
   * Per-source penalties for failed authentication (a wrong token on a
   * session, a wrong MAC on a data connection): see core-net penalty.ts.
   * Default on (2 failures allowed, then 30 s doubling to 10 min, no source
   * exempt); `{ enabled: false }` turns it off.
   */
  authPenalty?: SourcePenaltyOptions;
  logger?: Logger;
}

/** A visitor as the local service should see it. */
export interface Visitor {
  address: string;
  port: number;
  /** The public address the visitor reached. */
  localAddress?: string;
  localPort?: number;
}

export interface ClientSnapshot {
  id: string;
  name: string;
  address: string;
  port: number;
  since: string;
  rttMs: number | undefined;
  /** Earlier sessions of the same credential since the server started. */
  reconnects: number;
  mappings: PublicMapping[];
  rejected: Array<{ name: string; reason: string }>;
  openStreams: number;
  bytesIn: number;
  bytesOut: number;
  /** Bytes written by streams to this client and not yet sent (flow control or a saturated connection). */
  queuedBytes: number;
  /** Bytes from this client not yet read by visitors (paused streams). */
  bufferedBytes: number;
  /** Idle data connections the server holds for this client now, and visitors handed data connections since it connected. */
  idleDataConnections: number;
  dataStreams: number;
}

/** One credential's traffic since the server started (closed sessions included): what /metrics counts. */
export interface ClientTotals {
  /** The credential's name (from the server's configuration). */
  name: string;
  /** Sessions connected now. */
  connected: number;
  /** Sessions since the start, minus one (0 until a reconnect). */
  reconnects: number;
  openStreams: number;
  /** Streams opened to its clients. */
  streams: number;
  /** Bytes on its tunnel connections, both directions (framing and TLS included). */
  bytesIn: number;
  bytesOut: number;
  /** Lowest heartbeat RTT among its connected sessions. */
  rttMs: number | undefined;
}

export interface TunnelGuardStats {
  /** Connections not authenticated yet. */
  pendingHandshakes: number;
  /** Connections closed at accept over maxHandshakes / maxHandshakesPerIp, since start. */
  handshakesRefused: number;
  /** Sources (IPv4 addresses, IPv6 /64s) in an authentication penalty now. */
  penalizedSources: number;
  /** Connections closed at accept because their source was penalized, since start. */
  penaltyRefused: number;
  /** Penalties given since start. */
  penalties: number;
}

export interface MappingSnapshot {
  mapping: PublicMapping;
  clients: string[];
  listening: boolean;
}

interface UdpFlow {
  key: string;
  address: string;
  port: number;
  stream: TunnelStream;
  route: Route;
  lastActive: number;
}

interface Route {
  mapping: PublicMapping;
  /** The credential of the client that made it. */
  owner: string;
  sessions: ClientSession[];
  next: number;
  listener: Server | undefined;
  udp: UdpEndpoint | undefined;
  flows: Map<string, UdpFlow>;
  /** The flows by visitor address (and in all). */
  flowsFrom: AddressCounts;
  waiters: Set<() => void>;
}

class ClientSession {
  readonly since = new Date();
  /** Idle data connections, the most recent last (taken from the end: the likeliest to be alive). */
  idle: DataLink[] = [];
  /** Data connections carrying a visitor. */
  readonly busy = new Set<Conn>();
  /** Data connections handed to visitors since the session started. */
  dataOpened = 0;
  /** Traffic of this session's closed data connections. */
  dataBytesIn = 0;
  dataBytesOut = 0;
  mappings = new Map<string, PublicMapping>();
  rejected: Array<{ name: string; reason: string }> = [];
  flows = new Map<number, UdpFlow>();
  /** MAPPINGS messages are applied one after another. */
  chain: Promise<void> = Promise.resolve();
  /** Bulk streams move to data connections (the client announced MOVE; 0: visitors take one at open). */
  promoteBytes = 0;
  constructor(
    readonly id: string,
    readonly dataPool: number,
    readonly mux: Mux,
    readonly credential: ClientCredential,
    readonly name: string,
    readonly reconnects: number,
  ) {}
}

export interface TunnelServerEvents {
  'client-joined': [ClientSnapshot];
  'client-left': [ClientSnapshot, Error | undefined];
  'mappings-changed': [MappingSnapshot[]];
}

export class TunnelServer extends EventEmitter<TunnelServerEvents> {
  private options: TunnelServerOptions;
  private readonly logger: Logger;
  private control: Server | undefined;
  private readonly sessions = new Set<ClientSession>();
  private readonly routes = new Map<string, Route>();
  /** Counts changes of routes and their clients: a registration that changed none announces nothing. */
  private routesVersion = 0;
  /** Routes by the place they serve (placeKeys): one holder each, but for a client's own renames. */
  private readonly places = new Map<string, Route[]>();
  private readonly seen = new Map<string, number>();
  /** Traffic of closed sessions, by credential name. */
  private readonly closedTraffic = new Map<string, { bytesIn: number; bytesOut: number; streams: number }>();
  private sweep: ReturnType<typeof setInterval> | undefined;
  private poolTimer: ReturnType<typeof setInterval> | undefined;
  private readonly sessionsById = new Map<string, ClientSession>();
  private stopping = false;
  /** Sources that failed to authenticate, refused at accept while penalized. */
  readonly penalties: SourcePenalties;
  /** Connections not yet authenticated: one slot each from accept (before TLS) until authenticated. */
  private readonly slots: HandshakeSlots;
  private readonly failedHandshakes = new LogBudget(FAILED_HANDSHAKE_LINES, REFUSAL_LOG_MS);
  /** `SHA256:<base64>` of the certificate clients see (undefined without TLS). */
  fingerprint: string | undefined;
  /** Where the self-signed certificate lives, when one is used. */
  certificatePath: string | undefined;

  constructor(options: TunnelServerOptions) {
    super();
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.penalties = new SourcePenalties(this.logger, 'tunnel', options.authPenalty);
    this.slots = new HandshakeSlots(this.logger, 'tunnel', {
      max: options.maxHandshakes ?? DEFAULT_MAX_HANDSHAKES,
      maxPerIp: options.maxHandshakesPerIp ?? DEFAULT_MAX_HANDSHAKES_PER_IP,
      penalties: this.penalties,
    });
    if (this.credentials().length === 0) throw new RangeError('tunnel server: set a token or at least one client credential');
  }

  private credentials(): ClientCredential[] {
    const list = [...(this.options.clients ?? [])];
    if (this.options.token) list.push({ name: 'default', token: this.options.token });
    return list.map((credential, i) => ({ ...credential, name: credential.name ?? `client ${i + 1}` }));
  }

  /** The bound control address (`host:port`). */
  get address(): string {
    return this.control?.boundAddresses[0] ?? '';
  }
  get port(): number {
    return Number(this.address.split(':').pop());
  }

  async start(): Promise<this> {
    const listen = parseAddress(this.options.listen ?? DEFAULT_TUNNEL_LISTEN);
    let tls: TlsServerOptions | undefined;
    if (this.options.tls !== false) {
      const pair = this.options.tls ?? (await this.stateCertificate());
      // Where node:tls serves the port, its handshake has this timeout (the slots bound it, see maxHandshakes).
      tls = { cert: pair.cert, key: pair.key, handshakeTimeoutMs: this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS };
      if (this.options.tls && this.options.tls.clientCa) tls.clientCa = this.options.tls.clientCa;
      this.fingerprint = certificateFingerprint(typeof pair.cert === 'string' ? pair.cert : Buffer.from(pair.cert).toString());
    }
    this.control = new Server({ addresses: [listen], tls, logger: this.logger, handshakes: this.slots, onConnection: (conn) => this.accept(conn) });
    await this.control.start();
    const sweepEvery = Math.max(100, Math.floor((this.options.udpIdleMs ?? DEFAULT_UDP_IDLE_MS) / 2));
    this.sweep = setInterval(() => this.sweepFlows(), sweepEvery);
    this.sweep.unref?.();
    this.poolTimer = setInterval(() => this.pingPools(), this.options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
    this.poolTimer.unref?.();
    this.logger.info('tunnel server listening', { address: this.address, tls: tls !== undefined, fingerprint: this.fingerprint });
    return this;
  }

  /** Load the state directory's certificate, or make one (atomic writes, key 0600). */
  private async stateCertificate(): Promise<{ cert: string; key: string }> {
    const dir = this.options.stateDir;
    if (!dir) throw new RangeError('tunnel server: give tls (cert and key), or a stateDir to keep a self-signed certificate in, or tls: false');
    const certPath = join(dir, CERT_FILE);
    const keyPath = join(dir, KEY_FILE);
    this.certificatePath = certPath;
    try {
      return { cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8') };
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw error;
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const host = this.options.serverId ?? hostname();
    const made = createSelfSignedCertificate({ commonName: host, altNames: [host, 'localhost', '127.0.0.1', '::1'] });
    await atomicWrite(keyPath, made.key, 0o600);
    await atomicWrite(certPath, made.cert, 0o644);
    this.logger.info('tunnel server made a self-signed certificate', { path: certPath, fingerprint: made.fingerprint });
    return made;
  }

  // ---- client sessions ----------------------------------------------------

  private accept(conn: Conn): void {
    if (this.stopping) {
      conn.destroy();
      return;
    }
    peekFirstBytes(conn, this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS, this.boundRoute);
  }

  /** Connections on the tunnel port not authenticated yet. */
  get pendingHandshakes(): number {
    return this.slots.pending;
  }

  /** The tunnel port's guards: handshakes under way and refused over the limits since start; authentication penalties (core-net penalty.ts). */
  guardStats(): TunnelGuardStats {
    return {
      pendingHandshakes: this.slots.pending,
      handshakesRefused: this.slots.refused,
      penalizedSources: this.penalties.penalized(),
      penaltyRefused: this.penalties.refused,
      penalties: this.penalties.penalties,
    };
  }

  /** The handshake of `conn` ended (authenticated): it no longer counts. */
  private handshakeDone(conn: Conn): void {
    this.slots.done(conn);
  }

  /** A data connection's HELLO carries DATA_CONNECTION_FLAG; anything else starts a session as before. */
  private route(conn: Conn, bytes: Uint8Array, remainingMs: number): void {
    if (bytes[0] === FrameType.HELLO && (bytes[1]! & DATA_CONNECTION_FLAG) !== 0) {
      const link = new DataLink(conn, bytes);
      this.acceptData(link, remainingMs).catch((error: Error) => {
        link.close(error);
        this.logger.debug('tunnel data connection refused', { peer: formatHostPort(conn.remoteAddress, conn.remotePort), reason: error.message });
      });
      return;
    }
    this.acceptSession(conn, bytes, remainingMs);
  }

  private readonly boundRoute = (conn: Conn, bytes: Uint8Array, remainingMs: number): void => this.route(conn, bytes, remainingMs);

  /** `timeoutMs`: what is left of the handshake timeout after the first bytes came. */
  private acceptSession(conn: Conn, first: Uint8Array, timeoutMs: number): void {
    const mux = new Mux(conn, { side: 'server', logger: this.logger, maxStreams: this.options.maxStreamsPerClient });
    const heartbeatMs = this.options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    const peer = formatHostPort(conn.remoteAddress, conn.remotePort);
    const pool = Math.max(0, Math.min(MAX_DATA_POOL, Math.floor(this.options.dataPool ?? DEFAULT_DATA_POOL)));
    // The default pool only for clients that promote: one that takes a data connection per visitor at open pays
    // for it in small requests and first bytes (README, Data connections); a configured pool for every client.
    const poolFor = (canMove: boolean): number => (canMove || this.options.dataPool !== undefined ? pool : 0);
    const sessionId = randomBytes(8).toString('hex');
    const handshake = serverHandshake(mux, {
      credentials: this.credentials(),
      serverId: this.options.serverId ?? hostname(),
      // dataPool only when on: an older client ignores it either way.
      settings: (canMove) => (poolFor(canMove) > 0 ? { heartbeatMs, sessionId, dataPool: poolFor(canMove) } : { heartbeatMs, sessionId }),
      timeoutMs,
    });
    // The handshake listens now (its reader is set up before its first await): the peeked bytes go in first.
    mux.onData(first);
    handshake.then(
      ({ credential, announcedName, canMove }) => {
        if (mux.closed) return;
        const name = credential.name!;
        const reconnects = this.seen.get(name) ?? 0;
        this.seen.set(name, reconnects + 1);
        this.handshakeDone(conn);
        const dataPool = poolFor(canMove);
        const session = new ClientSession(sessionId, dataPool, mux, credential, name, reconnects);
        this.sessions.add(session);
        this.sessionsById.set(sessionId, session);
        const promoteBytes = Math.max(0, this.options.dataPromoteBytes ?? DEFAULT_DATA_PROMOTE_BYTES);
        if (dataPool > 0 && canMove && promoteBytes > 0) {
          session.promoteBytes = promoteBytes;
          mux.promoteBytes = promoteBytes;
        }
        mux.setEvents({
          control: (_m, type, _flags, payload) => this.onControl(session, type, payload),
          open: (_m, stream) => stream.reject('the tunnel server accepts no streams from clients'),
          datagram: (_m, id, payload) => this.onClientDatagram(session, id, payload),
          close: (_m, error) => this.onSessionClosed(session, error),
          bulk: (_m, stream) => this.promote(session, stream),
        });
        mux.startHeartbeat(heartbeatMs);
        this.logger.info('tunnel client joined', { client: name, announced: announcedName || undefined, peer, reconnects });
        this.emit('client-joined', this.snapshot(session));
      },
      (error: Error) => {
        if (isWrongToken(error)) this.penalties.failed(conn.remoteAddress);
        // Anyone can fail a handshake at will: a flood of them is a few lines and a count.
        const dropped = this.failedHandshakes.take();
        if (dropped !== undefined) this.logger.warn('tunnel client refused', { peer, reason: error.message, notLogged: dropped || undefined });
      },
    );
  }

  /**
   * A data connection's handshake (data.ts): only for a live session, by a
   * client proving that session's token over a fresh nonce; kept idle in the
   * session's pool, up to the pool size it was told.
   */
  private async acceptData(link: DataLink, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const hello = await link.next(timeoutMs, 'HELLO');
    const p = hello.payload;
    if (p.byteLength < MAGIC.length + 1 + NONCE || MAGIC.some((byte, i) => p[i] !== byte) || p[MAGIC.length] !== PROTOCOL_VERSION) return link.fail('not a wmproxy tunnel data connection of this protocol version');
    const clientNonce = p.subarray(MAGIC.length + 1, MAGIC.length + 1 + NONCE);
    const sessionId = Buffer.from(p.subarray(MAGIC.length + 1 + NONCE)).toString('latin1');
    const session = this.sessionsById.get(sessionId);
    if (!session || session.mux.closed || session.dataPool === 0) return link.fail('no such tunnel session');
    const serverId = this.options.serverId ?? hostname();
    const serverNonce = randomBytes(NONCE);
    link.send(FrameType.CHALLENGE, challengePayload(serverNonce, serverId));
    const auth = await link.next(Math.max(1, deadline - Date.now()), 'AUTH');
    const expected = dataMac(session.credential.token, 'client', sessionId, clientNonce, serverNonce, serverId);
    if (auth.type !== FrameType.AUTH || !macEqual(expected, auth.payload.subarray(0, MAC))) {
      this.penalties.failed(link.conn.remoteAddress);
      return link.fail('authentication failed: wrong token for this session');
    }
    if (session.mux.closed || this.stopping) return link.fail('the tunnel session is gone');
    if (session.idle.length >= session.dataPool) return link.fail('the data connection pool of this session is full');
    link.send(FrameType.AUTH_OK, dataMac(session.credential.token, 'server', sessionId, serverNonce, clientNonce, serverId));
    link.userSession = session;
    this.handshakeDone(link.conn);
    session.idle.push(link);
    link.listen(onIdleFrame, this.boundIdleClosed);
  }

  private readonly boundIdleClosed = (link: DataLink): void => {
    const session = link.userSession as ClientSession;
    const at = session.idle.indexOf(link);
    if (at >= 0) session.idle.splice(at, 1);
  };

  /** Each heartbeat: PING every idle data connection; drop those silent for two intervals (NAT, dead peer). */
  private pingPools(): void {
    const heartbeatMs = this.options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    const now = Date.now();
    for (const session of this.sessions) {
      for (const link of [...session.idle]) {
        if (now - link.lastSeen > 2 * heartbeatMs) link.close(new NetError('ETIMEDOUT', 'idle tunnel data connection stopped answering'));
        else link.send(FrameType.PING, PING_PAYLOAD);
      }
    }
  }

  /** The most recent idle data connection of the session that is still open. */
  private takeData(session: ClientSession): DataLink | undefined {
    for (;;) {
      const link = session.idle.pop();
      if (link === undefined || !link.closed) return link;
    }
  }

  /**
   * OPEN over an idle data connection; resolves with the connection once the
   * client accepted (raw bytes from then on). Rejects with ECONNREFUSED (the
   * client's refusal: final), ETIMEDOUT, EABORTED, or ECONNRESET when the
   * connection died first (the caller falls back to the mux).
   */
  private openData(session: ClientSession, link: DataLink, visitor: Visitor, payload: Uint8Array, timeoutMs: number, signal: AbortSignal | undefined): Promise<Conn> {
    return new Promise<Conn>((resolve, reject) => {
      const settle = (error: Error | undefined): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (error) {
          link.onClose = undefined;
          link.close(error);
          reject(error);
          return;
        }
        const conn = link.conn;
        releaseConn(conn, link.detach());
        this.carryVisitor(session, conn, visitor.address, visitor.port);
        resolve(conn);
      };
      const onAbort = (): void => settle(new NetError('EABORTED', 'opening a tunnel data connection was aborted'));
      const timer = setTimeout(() => settle(new NetError('ETIMEDOUT', `the tunnel client did not answer an open within ${timeoutMs} ms`)), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      link.onClose = () => settle(new NetError('ECONNRESET', 'the tunnel data connection closed'));
      link.onFrame = (_link, frame: DataFrame) => {
        if (frame.type === FrameType.OPEN_OK) settle(undefined);
        else if (frame.type === FrameType.OPEN_FAIL) settle(new NetError('ECONNREFUSED', decodeReason(frame.payload)));
        else if (frame.type !== FrameType.PONG) settle(new NetError('ECONNRESET', `unexpected ${frame.type} frame on a tunnel data connection`));
      };
      if (signal?.aborted) onAbort();
      else link.send(FrameType.OPEN, payload);
    });
  }

  /**
   * A stream that proved bulk (promoteBytes within PROMOTE_WINDOW_MS) moves
   * to an idle data connection: MOVE names it there, and once the client answered (it sent its MOVED marker on the
   * mux), `stream.move` sends ours and carries on over the connection. No
   * idle connection, or dataMaxBusy reached: it stays on the mux and asks
   * again after as many bytes more. The connection failing before the
   * answer resets the visitor (the client may have moved already).
   */
  private promote(session: ClientSession, stream: TunnelStream): void {
    const now = Date.now();
    const bulk = now - stream.promoteSince <= PROMOTE_WINDOW_MS;
    const link = !bulk || stream.closed || session.busy.size >= (this.options.dataMaxBusy ?? DEFAULT_DATA_MAX_BUSY) ? undefined : this.takeData(session);
    if (!link) {
      stream.promoteAt = stream.bytesRead + stream.bytesWritten + session.promoteBytes;
      stream.promoteSince = now;
      return;
    }
    stream.moving = true;
    const timeoutMs = this.options.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
    const fail = (error: Error): void => {
      clearTimeout(timer);
      link.onFrame = undefined;
      link.onClose = undefined;
      link.close(error);
      stream.destroy(error);
    };
    const timer = setTimeout(() => fail(new NetError('ETIMEDOUT', `the tunnel client did not answer a MOVE within ${timeoutMs} ms`)), timeoutMs);
    timer.unref?.();
    link.onClose = () => fail(new NetError('ECONNRESET', 'the tunnel data connection closed during a MOVE'));
    link.onFrame = (_link, frame: DataFrame) => {
      if (frame.type === FrameType.PONG) return;
      if (frame.type === FrameType.OPEN_FAIL) {
        // The client no longer has the stream (it closed there): nothing moved, the mux finishes it.
        clearTimeout(timer);
        link.onClose = undefined;
        link.close();
        stream.moving = false;
        return;
      }
      if (frame.type !== FrameType.OPEN_OK) return fail(new NetError('EPROTO', `unexpected ${frame.type} frame answering a MOVE`));
      clearTimeout(timer);
      const conn = link.conn;
      const unread = link.detach();
      if (stream.closed) {
        // It ended (or was reset) while the client answered: the connection carries nothing; a clean end lets the client's side finish.
        releaseConn(conn);
        if (stream.closeError) conn.destroy(stream.closeError);
        else endThenDestroy(conn);
        return;
      }
      this.carryVisitor(session, conn, stream.remoteAddress, stream.remotePort);
      stream.move(conn, unread);
    };
    link.send(FrameType.MOVE, u32(stream.sid));
  }

  /**
   * A data connection starts carrying a visitor: busy, and showing the
   * visitor as its peer (as a mux stream does), so what holds it (a relay,
   * tls-front, the reverse proxy) logs and counts the visitor, not the
   * tunnel client. Its tracker shows the client again for the listener.
   */
  private carryVisitor(session: ClientSession, conn: Conn, address: string, port: number): void {
    session.busy.add(conn);
    session.dataOpened++;
    conn.tracker = new BusyTracker(conn.tracker, this, session, conn.remoteAddress, conn.remotePort);
    conn.showPeer?.(address, port);
  }

  /** @internal A busy data connection closed: its traffic joins the session's (or the credential's, once the session is gone). */
  dataClosed(session: ClientSession, conn: Conn): void {
    session.busy.delete(conn);
    session.dataBytesIn += conn.bytesRead;
    session.dataBytesOut += conn.bytesWritten;
    if (this.sessions.has(session)) return;
    const traffic = this.closedTraffic.get(session.name);
    if (!traffic) return;
    traffic.bytesIn += conn.bytesRead;
    traffic.bytesOut += conn.bytesWritten;
  }

  private onControl(session: ClientSession, type: FrameType, payload: Uint8Array): void {
    if (type !== FrameType.MAPPINGS) {
      if (type === FrameType.ERROR) return;
      session.mux.protocolError(`unexpected ${type} frame after the handshake`);
      return;
    }
    let wanted: unknown;
    try {
      wanted = decodeJson(payload, 'MAPPINGS').mappings;
    } catch (error) {
      session.mux.protocolError((error as Error).message);
      return;
    }
    if (!Array.isArray(wanted) || wanted.length > MAX_MAPPINGS_PER_CLIENT) {
      session.mux.protocolError(`MAPPINGS: expected a list of at most ${MAX_MAPPINGS_PER_CLIENT} mappings`);
      return;
    }
    session.chain = session.chain.then(() => this.register(session, wanted as unknown[]));
  }

  /** Apply a client's full set of mappings (a reload replaces the previous set). */
  private async register(session: ClientSession, wanted: unknown[]): Promise<void> {
    const results: Array<{ name: string; ok: boolean; reason?: string }> = [];
    const keep = new Map<string, PublicMapping>();
    const rejected: Array<{ name: string; reason: string }> = [];
    const names = new Set(wanted.map((raw) => (raw as { name?: unknown } | null)?.name));
    const version = this.routesVersion;
    for (const raw of wanted) {
      let mapping: PublicMapping;
      try {
        mapping = readPublicMapping(raw);
      } catch (error) {
        const name = String((raw as { name?: unknown })?.name ?? '?').slice(0, 64);
        results.push({ name, ok: false, reason: (error as Error).message });
        continue;
      }
      const reason = keep.has(mapping.name) ? `duplicate mapping name "${mapping.name}"` : this.refusal(session, mapping) ?? (await this.attach(session, mapping, names));
      if (reason) {
        results.push({ name: mapping.name, ok: false, reason });
        rejected.push({ name: mapping.name, reason });
        this.logger.warn('tunnel mapping refused', { client: session.name, mapping: mapping.name, reason });
      } else {
        keep.set(mapping.name, mapping);
        results.push({ name: mapping.name, ok: true });
      }
    }
    // Mappings the client dropped: detach (and close a route nobody serves any more).
    for (const name of session.mappings.keys()) if (!keep.has(name)) this.detach(session, name, true);
    session.mappings = keep;
    session.rejected = rejected;
    if (session.mux.closed) {
      for (const name of keep.keys()) this.detach(session, name, false);
      return;
    }
    session.mux.sendControl(FrameType.MAPPINGS, 0, encodeJson({ results }));
    // The same set again changes no route: no event, so no rebuild of the web fronts' engines per message.
    if (this.routesVersion !== version) this.emit('mappings-changed', this.mappings());
  }

  /** Why this client may not have this mapping (undefined: allowed). */
  private refusal(session: ClientSession, mapping: PublicMapping): string | undefined {
    const credential = session.credential;
    if (mapping.remotePort !== undefined) {
      const ranges = credential.allowPorts ?? this.options.allowPorts;
      if (!portAllowed(mapping.remotePort, ranges)) {
        return `public port ${mapping.remotePort} is not allowed for client "${session.name}" (allowed: ${ranges!.map((r) => (r.from === r.to ? r.from : `${r.from}-${r.to}`)).join(', ') || 'none'})`;
      }
    }
    for (const domain of mapping.domains ?? []) {
      const patterns = credential.allowDomains ?? this.options.allowDomains;
      if (!domainAllowed(domain, patterns)) return `domain ${domain} is not allowed for client "${session.name}" (allowed: ${patterns!.join(', ') || 'none'})`;
    }
    return undefined;
  }

  /** Add the session to the mapping's route, binding its public port first if needed. */
  private async attach(session: ClientSession, mapping: PublicMapping, names: ReadonlySet<unknown>): Promise<string | undefined> {
    const existing = this.routes.get(mapping.name);
    if (existing) {
      const others = existing.sessions.filter((s) => s !== session);
      if (others.length > 0 && !sameShape(existing.mapping, mapping)) return `mapping "${mapping.name}" is already served by another client with a different definition`;
      if (!sameShape(existing.mapping, mapping)) {
        // Same name, new shape, no other client: rebuild the route.
        this.closeRoute(existing);
      } else {
        if (!existing.sessions.includes(session)) {
          existing.sessions.push(session);
          this.routesVersion++;
        }
        this.wake(existing);
        return undefined;
      }
    }
    if (mapping.remotePort !== undefined) {
      const udp = mapping.kind === 'udp';
      for (const route of this.routes.values()) {
        if (route.mapping.name !== mapping.name && route.mapping.remotePort === mapping.remotePort && (route.mapping.kind === 'udp') === udp) {
          return `public ${udp ? 'udp' : 'tcp'} port ${mapping.remotePort} is already used by mapping "${route.mapping.name}"`;
        }
      }
    }
    // A domain (and path) is held by one mapping, as a public port is: a second name would take its visitors whenever
    // the engine's order of equal locations changes. Not against the client's own mappings it is dropping (a rename),
    // nor one its credential left while away (a rename across a restart).
    for (const key of placeKeys(mapping)) {
      for (const route of this.places.get(key) ?? []) {
        const other = route.mapping;
        if (other.name === mapping.name) continue;
        const live = route.sessions.filter((s) => !s.mux.closed);
        if (live.length === 0 ? route.owner === session.name : live.every((s) => s === session) && !names.has(other.name)) continue;
        return `domain ${key.slice(key.indexOf(' ') + 1)} is already served by mapping "${other.name}"`;
      }
    }
    const route: Route = { mapping, owner: session.name, sessions: [session], next: 0, listener: undefined, udp: undefined, flows: new Map(), flowsFrom: new AddressCounts(), waiters: new Set() };
    try {
      await this.bind(route);
    } catch (error) {
      return `cannot listen on public port ${mapping.remotePort}: ${(error as Error).message}`;
    }
    if (session.mux.closed) route.sessions = [];
    this.routes.set(mapping.name, route);
    this.routesVersion++;
    for (const key of placeKeys(mapping)) {
      const holders = this.places.get(key);
      if (holders) holders.push(route);
      else this.places.set(key, [route]);
    }
    return undefined;
  }

  private async bind(route: Route): Promise<void> {
    const { mapping } = route;
    if (mapping.remotePort === undefined) return;
    const host = this.options.publicHost ?? parseAddress(this.options.listen ?? DEFAULT_TUNNEL_LISTEN).host ?? '127.0.0.1';
    if (mapping.kind === 'udp') {
      route.udp = await bindUdp(host || '::', mapping.remotePort, {
        message: (_endpoint, data, address, port) => this.onVisitorDatagram(route, data, address, port),
        error: (_endpoint, error) => this.logger.warn('tunnel udp error', { mapping: mapping.name, error: error.message }),
      });
      return;
    }
    const address = parseAddress(formatHostPort(host, mapping.remotePort));
    route.listener = new Server({ addresses: [address], logger: this.logger, limits: this.options.visitorLimits ?? {}, onConnection: (conn) => void this.onVisitor(route, conn) });
    await route.listener.start();
    this.logger.info('tunnel public port open', { mapping: mapping.name, kind: mapping.kind, address: route.listener.boundAddresses[0] });
  }

  private detach(session: ClientSession, name: string, explicit: boolean): void {
    const route = this.routes.get(name);
    if (!route) return;
    if (route.sessions.includes(session)) this.routesVersion++;
    route.sessions = route.sessions.filter((s) => s !== session);
    for (const flow of [...route.flows.values()]) if (flow.stream.mux === session.mux) flow.stream.destroy();
    // A client that is away keeps its public port; one that dropped the mapping releases it.
    if (explicit && route.sessions.length === 0) this.closeRoute(route);
  }

  private closeRoute(route: Route): void {
    if (this.routes.get(route.mapping.name) === route) this.routes.delete(route.mapping.name);
    this.routesVersion++;
    for (const key of placeKeys(route.mapping)) {
      const holders = this.places.get(key)?.filter((holder) => holder !== route) ?? [];
      if (holders.length > 0) this.places.set(key, holders);
      else this.places.delete(key);
    }
    void route.listener?.shutdown({ deadlineMs: 0 });
    route.udp?.close();
    for (const flow of route.flows.values()) flow.stream.destroy();
    route.flows.clear();
    this.wake(route);
  }

  private wake(route: Route): void {
    for (const waiter of [...route.waiters]) waiter();
  }

  private onSessionClosed(session: ClientSession, error: Error | undefined): void {
    if (!this.sessions.delete(session)) return;
    this.sessionsById.delete(session.id);
    // Idle data connections go with their session; busy ones carry their visitor to its end.
    for (const link of session.idle) link.close();
    session.idle = [];
    const traffic = this.closedTraffic.get(session.name) ?? { bytesIn: 0, bytesOut: 0, streams: 0 };
    traffic.bytesIn += session.mux.conn.bytesRead + session.dataBytesIn;
    traffic.bytesOut += session.mux.conn.bytesWritten + session.dataBytesOut;
    traffic.streams += session.mux.stats().opened + session.dataOpened;
    this.closedTraffic.set(session.name, traffic);
    for (const name of session.mappings.keys()) this.detach(session, name, false);
    this.logger.info('tunnel client left', { client: session.name, reason: error?.message });
    this.emit('client-left', this.snapshot(session), error);
    this.emit('mappings-changed', this.mappings());
  }

  // ---- visitors -------------------------------------------------------------

  /** Next live client of the route, round-robin (undefined when none). */
  private pick(route: Route, exclude?: ReadonlySet<ClientSession>): ClientSession | undefined {
    const count = route.sessions.length;
    for (let i = 0; i < count; i++) {
      const session = route.sessions[(route.next + i) % count]!;
      if (session.mux.closed || session.mux.peerGoingAway || exclude?.has(session)) continue;
      route.next = (route.next + i + 1) % count;
      return session;
    }
    return undefined;
  }

  /** Wait up to `visitorWaitMs` for a client serving the route. */
  private waitForClient(route: Route, signal?: AbortSignal): Promise<boolean> {
    const waitMs = this.options.visitorWaitMs ?? 0;
    if (waitMs <= 0 || this.stopping) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        route.waiters.delete(wake);
        signal?.removeEventListener('abort', onAbort);
        resolve(ok);
      };
      const wake = (): void => done(true);
      const onAbort = (): void => done(false);
      const timer = setTimeout(() => done(false), waitMs);
      route.waiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * A stream to the client side of `mappingName` for one visitor, chosen
   * round-robin among the clients serving it (`options.client` picks one by
   * session id). Waits up to `visitorWaitMs` when no client is connected.
   * Rejects with NetError: ECONNREFUSED (no client, or the client's local
   * service refused; the reason says which), ETIMEDOUT, EABORTED.
   */
  async openStream(mappingName: string, visitor: Visitor, options: { timeoutMs?: number; signal?: AbortSignal; client?: string; wait?: boolean } = {}): Promise<Conn> {
    const route = this.routes.get(mappingName);
    if (!route) throw new NetError('ECONNREFUSED', `no tunnel mapping "${mappingName}"`);
    const tried = new Set<ClientSession>();
    for (;;) {
      let session = options.client ? route.sessions.find((s) => s.id === options.client && !tried.has(s)) : this.pick(route, tried);
      if (!session && tried.size === 0 && !options.client && options.wait !== false && (await this.waitForClient(route, options.signal))) session = this.pick(route, tried);
      if (!session) {
        throw new NetError('ECONNREFUSED', tried.size > 0 ? `every client of tunnel mapping "${mappingName}" failed` : `no tunnel client serving "${mappingName}" is connected`);
      }
      tried.add(session);
      const payload = encodeJson({ m: mappingName, a: visitor.address, p: visitor.port, la: visitor.localAddress, lp: visitor.localPort });
      const timeoutMs = options.timeoutMs ?? this.options.openTimeoutMs;
      // With promotion, every visitor opens on the mux (see promote).
      const link = session.promoteBytes === 0 && session.busy.size < (this.options.dataMaxBusy ?? DEFAULT_DATA_MAX_BUSY) ? this.takeData(session) : undefined;
      if (link) {
        try {
          return await this.openData(session, link, visitor, payload, timeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS, options.signal);
        } catch (error) {
          // A data connection that died under us is no verdict: the mux carries the visitor.
          if (!(error instanceof NetError && error.code === 'ECONNRESET')) throw error;
        }
      }
      try {
        const stream = await session.mux.open(payload, { timeoutMs, signal: options.signal });
        stream.remoteAddress = visitor.address;
        stream.remotePort = visitor.port;
        return stream;
      } catch (error) {
        // The session died under us: another client may serve the visitor. A refusal by the client is final.
        if (session.mux.closed && error instanceof NetError && error.code === 'ECONNRESET') continue;
        throw error;
      }
    }
  }

  private async onVisitor(route: Route, conn: Conn): Promise<void> {
    const visitor: Visitor = { address: conn.remoteAddress, port: conn.remotePort, localAddress: conn.localAddress, localPort: conn.localPort };
    // Visitor bytes wait here (the socket paused after the first chunk) until the stream is open.
    const abort = new AbortController();
    const early: Uint8Array[] = [];
    conn.setHandler({
      data(c, chunk) {
        early.push(chunk);
        c.pause();
      },
      close: () => abort.abort(),
    });
    let stream: Conn;
    try {
      stream = await this.openStream(route.mapping.name, visitor, { signal: abort.signal });
    } catch (error) {
      this.logger.info('tunnel visitor refused', { mapping: route.mapping.name, visitor: formatHostPort(visitor.address, visitor.port), reason: (error as Error).message });
      conn.destroy();
      return;
    }
    if (conn.closed) {
      stream.destroy();
      return;
    }
    // The relay gets the early bytes first, then the peer's FIN if it came meanwhile.
    releaseConn(conn, early.length === 1 ? early[0] : early.length > 1 ? Buffer.concat(early) : undefined);
    conn.resume();
    // A Relay, not relay(): nothing awaits it, and its promise and resolver stayed with each stream.
    // resetOnError: a visitor's reset reaches the local service as one over a data connection (a mux stream sends RST either way).
    new Relay(conn, stream, { idleTimeoutMs: this.options.relayIdleMs ?? DEFAULT_RELAY_IDLE_MS, resetOnError: true });
  }

  private onVisitorDatagram(route: Route, data: Uint8Array, address: string, port: number): void {
    const key = `${address}|${port}`;
    const flow = route.flows.get(key);
    if (flow) {
      flow.lastActive = Date.now();
      flow.stream.mux.sendDatagram(flow.stream.sid, data);
      return;
    }
    // visitorLimits bound a visitor address's flows as they bound its connections on tcp ports.
    const limits = this.options.visitorLimits;
    if (route.flowsFrom.over(address, Math.min(MAX_UDP_FLOWS_PER_MAPPING, limits?.maxConnections || MAX_UDP_FLOWS_PER_MAPPING), limits?.maxConnectionsPerIp ?? 0) !== undefined) return;
    const session = this.pick(route);
    if (!session || session.flows.size >= MAX_UDP_FLOWS_PER_SESSION) return;
    const payload = encodeJson({ m: route.mapping.name, a: address, p: port });
    void session.mux.open(payload, { flags: Flag.DATAGRAM_FLOW }).then(
      (stream) => {
        const created: UdpFlow = { key, address, port, stream, route, lastActive: Date.now() };
        route.flows.set(key, created);
        route.flowsFrom.add(address);
        session.flows.set(stream.sid, created);
        stream.setHandler({
          data() {},
          close: () => {
            if (route.flows.get(key) === created) {
              route.flows.delete(key);
              route.flowsFrom.remove(address);
            }
            session.flows.delete(stream.sid);
          },
        });
        session.mux.sendDatagram(stream.sid, data);
      },
      () => undefined,
    );
  }

  private onClientDatagram(session: ClientSession, id: number, payload: Uint8Array): void {
    const flow = session.flows.get(id);
    if (!flow || !flow.route.udp) return;
    flow.lastActive = Date.now();
    flow.route.udp.send(payload, flow.port, flow.address);
  }

  private sweepFlows(): void {
    const idle = this.options.udpIdleMs ?? DEFAULT_UDP_IDLE_MS;
    const now = Date.now();
    for (const route of this.routes.values()) for (const flow of [...route.flows.values()]) if (now - flow.lastActive >= idle) flow.stream.destroy();
  }

  /**
   * A core-net Transport over this server: `connect({ key: mapping })` (or
   * the host as the mapping name) opens a stream to a client serving it, for
   * the reverse proxy's `transports` (`tunnel://web`). With no client
   * connected it rejects at once (ECONNREFUSED), so health and retries move on.
   */
  transport(): Transport {
    return {
      kind: 'tunnel',
      connect: (target: TransportTarget, timeoutMs: number, signal?: AbortSignal) =>
        this.openStream(target.key ?? target.host, { address: '', port: 0 }, { timeoutMs, signal, wait: false }),
    };
  }

  // ---- views and operations ----------------------------------------------

  private snapshot(session: ClientSession): ClientSnapshot {
    const conn = session.mux.conn;
    const stats = session.mux.stats();
    return {
      id: session.id,
      name: session.name,
      address: conn.remoteAddress,
      port: conn.remotePort,
      since: session.since.toISOString(),
      rttMs: session.mux.rttMs,
      reconnects: session.reconnects,
      mappings: [...session.mappings.values()].map(redactMapping),
      rejected: session.rejected,
      openStreams: session.mux.streams.size - session.mux.carried + session.busy.size,
      bytesIn: conn.bytesRead + dataBytes(session, 'in'),
      bytesOut: conn.bytesWritten + dataBytes(session, 'out'),
      queuedBytes: stats.queuedBytes,
      bufferedBytes: stats.bufferedBytes,
      idleDataConnections: session.idle.length,
      dataStreams: session.dataOpened,
    };
  }

  /** Per credential seen since the start: sessions, streams and bytes (monotonic across reconnects, for counters). */
  totals(): ClientTotals[] {
    const rows = new Map<string, ClientTotals>();
    for (const [name, sessions] of this.seen) {
      const closed = this.closedTraffic.get(name);
      rows.set(name, { name, connected: 0, reconnects: sessions - 1, openStreams: 0, streams: closed?.streams ?? 0, bytesIn: closed?.bytesIn ?? 0, bytesOut: closed?.bytesOut ?? 0, rttMs: undefined });
    }
    for (const session of this.sessions) {
      const row = rows.get(session.name)!;
      const stats = session.mux.stats();
      row.connected++;
      row.openStreams += stats.streams - session.mux.carried + session.busy.size;
      row.streams += stats.opened + session.dataOpened;
      row.bytesIn += session.mux.conn.bytesRead + dataBytes(session, 'in');
      row.bytesOut += session.mux.conn.bytesWritten + dataBytes(session, 'out');
      if (stats.rttMs !== undefined && (row.rttMs === undefined || stats.rttMs < row.rttMs)) row.rttMs = stats.rttMs;
    }
    return [...rows.values()];
  }

  /** Connected clients. */
  clients(): ClientSnapshot[] {
    return [...this.sessions].map((session) => this.snapshot(session));
  }

  /**
   * Every mapping with the clients serving it now (empty while they are away).
   * Basic auth passwords read `***` unless `secrets` (the web front needs them).
   */
  mappings(options: { secrets?: boolean } = {}): MappingSnapshot[] {
    return [...this.routes.values()].map((route) => ({
      mapping: options.secrets ? route.mapping : redactMapping(route.mapping),
      clients: route.sessions.filter((s) => !s.mux.closed).map((s) => s.id),
      listening: route.listener !== undefined || route.udp !== undefined,
    }));
  }

  /**
   * The http/https mapping for a request: exact domain first, then the
   * longest wildcard, then the longest path prefix (undefined: none).
   */
  matchHttp(kind: 'http' | 'https', host: string, path = '/'): PublicMapping | undefined {
    const name = host.toLowerCase().replace(/:\d+$/, '');
    let best: PublicMapping | undefined;
    let bestScore = -1;
    for (const route of this.routes.values()) {
      const mapping = route.mapping;
      if (mapping.kind !== kind) continue;
      const prefix = mapping.path ?? '/';
      if (!path.startsWith(prefix)) continue;
      for (const domain of mapping.domains ?? []) {
        let score = domainScore(domain, name);
        if (score < 0) continue;
        score += prefix.length;
        if (score > bestScore) {
          bestScore = score;
          best = mapping;
        }
      }
    }
    return best;
  }

  /**
   * How closely a mapping of `kind` serves `host`, paths aside (-1: none):
   * the TLS port passes a name through only when no http mapping serves it
   * more closely (an exact http name beats an https wildcard, as on the HTTP port).
   */
  hostScore(kind: 'http' | 'https', host: string): number {
    const name = host.toLowerCase();
    let best = -1;
    for (const route of this.routes.values()) {
      if (route.mapping.kind !== kind) continue;
      for (const domain of route.mapping.domains ?? []) best = Math.max(best, domainScore(domain, name));
    }
    return best;
  }

  /**
   * Replace credentials and allow lists without dropping anything that is
   * still allowed: clients whose credential is gone are disconnected, and
   * mappings no longer allowed are detached (their clients are told on their
   * next registration).
   */
  reload(options: Pick<TunnelServerOptions, 'token' | 'clients' | 'allowPorts' | 'allowDomains' | 'visitorWaitMs' | 'visitorLimits' | 'authPenalty'>): void {
    this.options = { ...this.options, ...options };
    if (options.authPenalty !== undefined) this.penalties.configure(options.authPenalty);
    for (const route of this.routes.values()) route.listener?.setLimits(this.options.visitorLimits ?? {});
    const tokens = new Set(this.credentials().map((c) => c.token));
    for (const session of [...this.sessions]) {
      if (!tokens.has(session.credential.token)) {
        this.logger.info('tunnel client credential removed: disconnecting', { client: session.name });
        session.mux.fail('your credential was removed from the server');
        // Its visitors on data connections go too, as its mux streams do: a revoked client carries nothing more.
        for (const conn of [...session.busy]) conn.destroy(new NetError('ECONNRESET', 'the tunnel client credential was removed'));
        continue;
      }
      const fresh = this.credentials().find((c) => c.token === session.credential.token)!;
      Object.assign(session.credential, { allowPorts: fresh.allowPorts, allowDomains: fresh.allowDomains });
      for (const mapping of [...session.mappings.values()]) {
        const reason = this.refusal(session, mapping);
        if (!reason) continue;
        this.logger.warn('tunnel mapping no longer allowed', { client: session.name, mapping: mapping.name, reason });
        session.mappings.delete(mapping.name);
        session.rejected.push({ name: mapping.name, reason });
        this.detach(session, mapping.name, true);
      }
    }
    this.emit('mappings-changed', this.mappings());
  }

  /** Graceful stop: no new clients or visitors, GOAWAY to clients, streams finish up to `deadlineMs`. */
  async stop(options: { deadlineMs?: number } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const deadlineMs = options.deadlineMs ?? DEFAULT_DRAIN_MS;
    clearInterval(this.sweep);
    clearInterval(this.poolTimer);
    const closing: Array<Promise<unknown>> = [];
    if (this.control) closing.push(this.control.shutdown({ deadlineMs }));
    for (const route of this.routes.values()) {
      if (route.listener) closing.push(route.listener.shutdown({ deadlineMs }));
      route.udp?.close();
      for (const flow of [...route.flows.values()]) flow.stream.destroy();
      this.wake(route);
    }
    for (const session of this.sessions) {
      session.mux.goAway('server shutting down');
      for (const link of session.idle) link.close();
      session.idle = [];
    }
    const busy = new Set<ClientSession>(this.sessions);
    const until = Date.now() + deadlineMs;
    while (Date.now() < until && [...busy].some((s) => s.mux.streams.size > 0 || s.busy.size > 0)) await new Promise((r) => setTimeout(r, 20));
    for (const session of busy) for (const conn of [...session.busy]) conn.destroy(new NetError('ECONNRESET', 'tunnel server stopped'));
    for (const session of [...this.sessions]) session.mux.destroy(new NetError('ECONNRESET', 'tunnel server stopped'));
    await Promise.all(closing);
    this.routes.clear();
    this.places.clear();
  }
}

async function atomicWrite(path: string, text: string, mode: number): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temp, text, { mode, flag: 'wx' });
  await chmod(temp, mode);
  await rename(temp, path);
}

const PING_PAYLOAD = new Uint8Array(8);

/** An idle data connection only answers pings; anything else breaks the protocol. */
function onIdleFrame(link: DataLink, frame: DataFrame): void {
  if (frame.type !== FrameType.PONG) link.close(new NetError('EPROTO', `unexpected ${frame.type} frame on an idle tunnel data connection`));
}

/** Traffic of a session's data connections, closed and busy. */
/** The places an http mapping (domain and path) or an https mapping (domain) holds: `kind domain[ (path /p)]`. */
function placeKeys(mapping: PublicMapping): string[] {
  if (mapping.kind === 'https') return (mapping.domains ?? []).map((domain) => `https ${domain}`);
  if (mapping.kind !== 'http') return [];
  return (mapping.domains ?? []).map((domain) => `http ${domain} (path ${mapping.path ?? '/'})`);
}

/** An exact name beats any wildcard, a longer wildcard a shorter one (-1: no match). */
function domainScore(domain: string, name: string): number {
  if (domain === name) return 1_000_000;
  if (domain.startsWith('*.') && name.endsWith(domain.slice(1)) && name.length > domain.length - 1) return domain.length * 1000;
  return -1;
}

function dataBytes(session: ClientSession, way: 'in' | 'out'): number {
  let total = way === 'in' ? session.dataBytesIn : session.dataBytesOut;
  for (const conn of session.busy) total += way === 'in' ? conn.bytesRead : conn.bytesWritten;
  return total;
}

/**
 * Chained in front of the listener's tracker: a busy data connection's close
 * reaches its session's counters. The connection shows its visitor; the
 * listener counted it by the tunnel client's address and releases it by the
 * address it shows: the client's again, before. No `readdress`: while it
 * shows a visitor, the tunnel port's limits keep counting it as the client's.
 */
class BusyTracker implements ConnTracker {
  constructor(
    private readonly next: ConnTracker | undefined,
    private readonly server: TunnelServer,
    private readonly session: ClientSession,
    private readonly address: string,
    private readonly port: number,
  ) {}
  untrack(conn: Conn): void {
    conn.showPeer?.(this.address, this.port);
    this.next?.untrack(conn);
    this.server.dataClosed(this.session, conn);
  }
}
