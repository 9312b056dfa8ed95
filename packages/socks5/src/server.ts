import { NetError, Relay, SocksReply, formatHostPort, normaliseIp, socksReplyFor, toNetError } from '@wmproxy/core-net';
import type { Conn, ConnHandler, LogFields, RelayStats } from '@wmproxy/core-net';
import { vetDestination, withConnectTimeout } from './destination.js';
import { HANDSHAKE_BUFFER_LIMIT, HandshakeReader, type HandshakeError } from './handshake.js';
import { resolveOptions, type ServerConfig, type Socks5ServerOptions } from './options.js';
import { AUTH_VERSION, Command, Method, SOCKS_VERSION, encodeReply, type SocksAddress } from './protocol.js';
import { UdpAssociation } from './udp-relay.js';

/** How long a refused client may take to read its answer before the socket is closed. */
const LINGER_MS = 2_000;
/** Early payload held while connecting before the client is paused (the hard limit is twice this). */
const PAUSE_AT = HANDSHAKE_BUFFER_LIMIT / 2;

const enum Phase {
  Greeting,
  Credentials,
  Request,
  Connecting,
  Relaying,
  Associated,
  Closing,
  Closed,
}

const METHOD_NO_AUTH = Uint8Array.of(SOCKS_VERSION, Method.noAuth);
const METHOD_USER_PASS = Uint8Array.of(SOCKS_VERSION, Method.userPass);
const METHOD_NONE_ACCEPTABLE = Uint8Array.of(SOCKS_VERSION, Method.noAcceptable);
const AUTH_OK = Uint8Array.of(AUTH_VERSION, 0x00);
const AUTH_FAILED = Uint8Array.of(AUTH_VERSION, 0x01);
/** SOCKS4 "request rejected or failed", for SOCKS4 clients that knock on a SOCKS5 port. */
const SOCKS4_REJECTED = Uint8Array.of(0x00, 0x5b, 0, 0, 0, 0, 0, 0);

/**
 * A SOCKS5 server (RFC 1928, RFC 1929) for connections someone else
 * accepted: `handle(conn)` takes a fresh core-net Conn whose first bytes are
 * a SOCKS5 greeting (a mixed port dispatches on the first byte 0x05).
 */
export class Socks5Server {
  /** @internal */
  readonly config: ServerConfig;

  constructor(options: Socks5ServerOptions = {}) {
    this.config = resolveOptions(options);
  }

  /**
   * Take over an accepted connection. Bytes that arrived before (still
   * buffered by the Conn) are replayed; `head` is for bytes a dispatcher
   * already consumed while peeking (the first byte 0x05), delivered first.
   * Never throws; every outcome is answered and logged.
   */
  handle(conn: Conn, head?: Uint8Array): void {
    const session = new Session(this.config, conn);
    conn.userData = session;
    conn.setHandler(handshakeHandler, head);
  }
}

/** Per-connection state from the greeting until the relay (or association) takes over. */
class Session {
  readonly config: ServerConfig;
  readonly conn: Conn;
  readonly reader = new HandshakeReader();
  readonly fields: LogFields;
  phase = Phase.Greeting;
  timer: ReturnType<typeof setTimeout> | undefined;
  clientEnded = false;
  user: string | undefined;

  constructor(config: ServerConfig, conn: Conn) {
    this.config = config;
    this.conn = conn;
    this.fields = { conn: conn.id, client: formatHostPort(conn.remoteAddress, conn.remotePort) };
    this.timer = setTimeout(onHandshakeTimeout, config.handshakeTimeoutMs, this);
  }

  onData(chunk: Uint8Array): void {
    if (this.phase >= Phase.Closing) return;
    if (!this.reader.push(chunk)) {
      this.config.logger.warn('socks5 handshake over the buffer limit', { ...this.fields, phase: phaseName(this.phase) });
      this.abort();
      return;
    }
    if (this.phase === Phase.Connecting) {
      // Payload pipelined after the request: hold it until the target is connected,
      // reading on (so a client that resets is noticed) until half the limit is held.
      if (this.reader.buffered >= PAUSE_AT) this.conn.pause();
      return;
    }
    try {
      this.advance();
    } catch (error) {
      this.config.logger.error('socks5 handshake failed', { ...this.fields, error: (error as Error).message });
      this.abort();
    }
  }

  onEnd(): void {
    if (this.phase === Phase.Connecting) {
      this.clientEnded = true;
      return;
    }
    if (this.phase < Phase.Connecting) {
      this.config.logger.info('socks5 client closed during the handshake', { ...this.fields, phase: phaseName(this.phase) });
      this.abort();
    }
  }

  onClose(error: Error | undefined): void {
    const previous = this.phase;
    this.phase = Phase.Closed;
    clearTimeout(this.timer);
    if (previous < Phase.Closing) {
      this.config.logger.info(`socks5 client closed ${previous === Phase.Connecting ? 'while connecting' : 'during the handshake'}`, {
        ...this.fields,
        phase: phaseName(previous),
        error: error?.message,
      });
    }
  }

  /** Consume every complete message in the buffer. */
  private advance(): void {
    for (;;) {
      switch (this.phase) {
        case Phase.Greeting: {
          const greeting = this.reader.readGreeting();
          if (greeting === 'incomplete') return;
          if ('error' in greeting) return this.badInput(greeting);
          this.chooseMethod(greeting.methods);
          break;
        }
        case Phase.Credentials: {
          const credentials = this.reader.readCredentials();
          if (credentials === 'incomplete') return;
          if ('error' in credentials) return this.badInput(credentials);
          if (!this.config.users!.verify(credentials.username, credentials.password)) {
            this.config.logger.warn('socks5 authentication failed', { ...this.fields, user: credentials.username });
            return this.refuse(AUTH_FAILED);
          }
          this.user = credentials.username;
          this.conn.write(AUTH_OK);
          this.phase = Phase.Request;
          break;
        }
        case Phase.Request: {
          const request = this.reader.readRequest();
          if (request === 'incomplete') return;
          if ('error' in request) return this.badInput(request);
          this.dispatch(request.command, request.address);
          return;
        }
        default:
          return;
      }
    }
  }

  private chooseMethod(methods: Uint8Array): void {
    const wanted = this.config.users ? Method.userPass : Method.noAuth;
    if (!methods.includes(wanted)) {
      this.config.logger.warn('socks5 no acceptable authentication method', {
        ...this.fields,
        offered: [...methods].map((method) => method.toString(16)).join(','),
        required: this.config.users ? 'username/password' : 'none',
      });
      this.refuse(METHOD_NONE_ACCEPTABLE);
      return;
    }
    this.conn.write(wanted === Method.userPass ? METHOD_USER_PASS : METHOD_NO_AUTH);
    this.phase = wanted === Method.userPass ? Phase.Credentials : Phase.Request;
  }

  private badInput(error: HandshakeError): void {
    const fields = { ...this.fields, phase: phaseName(this.phase), version: error.version };
    switch (error.error) {
      case 'version':
        this.config.logger.warn(`socks5 bad ${this.phase === Phase.Greeting ? 'greeting' : 'request'}: wrong version`, fields);
        if (this.phase === Phase.Greeting) return this.refuse(error.version === 0x04 ? SOCKS4_REJECTED : undefined);
        return this.refuse(encodeReply(SocksReply.generalFailure));
      case 'no-methods':
        this.config.logger.warn('socks5 bad greeting: no methods', fields);
        return this.refuse(METHOD_NONE_ACCEPTABLE);
      case 'auth-version':
        this.config.logger.warn('socks5 bad credentials message: wrong version', fields);
        return this.refuse(AUTH_FAILED);
      case 'address-type':
        this.config.logger.warn('socks5 bad request: address type not supported', fields);
        return this.refuse(encodeReply(SocksReply.addressTypeNotSupported));
    }
  }

  private dispatch(command: number, target: SocksAddress): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.phase = Phase.Connecting;
    if (this.reader.buffered >= PAUSE_AT) this.conn.pause();
    const label = formatHostPort(target.host, target.port);
    if (command === Command.connect) {
      this.connect(target, label).catch((error: unknown) => this.failed(error, 'connect', label));
      return;
    }
    if (command === Command.udpAssociate && this.config.udp) {
      this.associate(target).catch((error: unknown) => this.failed(error, 'udp associate', label));
      return;
    }
    this.config.logger.warn('socks5 command not supported', { ...this.fields, command, target: label });
    this.refuse(encodeReply(SocksReply.commandNotSupported));
  }

  private async connect(target: SocksAddress, label: string): Promise<void> {
    const { connectTimeoutMs, connector, policy } = this.config;
    const startedAt = Date.now();
    const opening = vetDestination(policy, target.host, target.port, false).then((addresses) =>
      connector(target.host, target.port, Math.max(1, connectTimeoutMs - (Date.now() - startedAt)), addresses),
    );
    const upstream = await withConnectTimeout(opening, connectTimeoutMs, label);
    if (this.phase !== Phase.Connecting) {
      upstream.destroy();
      return;
    }
    this.phase = Phase.Relaying;
    const { conn, config } = this;
    conn.write(encodeReply(SocksReply.succeeded, upstream.localAddress, upstream.localPort));
    config.logger.info('socks5 connect', {
      ...this.fields,
      user: this.user,
      target: label,
      bound: formatHostPort(upstream.localAddress, upstream.localPort),
    });
    const early = this.reader.takeRest();
    if (early.byteLength > 0) upstream.write(early);
    if (this.clientEnded) upstream.end();
    const fields = { ...this.fields, target: label };
    new Relay(conn, upstream, {
      idleTimeoutMs: config.idleTimeoutMs,
      onClose: (stats: RelayStats) => {
        config.logger.info('socks5 closed', {
          ...fields,
          bytesUp: stats.bytesUp + early.byteLength,
          bytesDown: stats.bytesDown,
          durationMs: stats.durationMs,
          reason: stats.reason,
          error: stats.error?.message,
        });
      },
    });
    conn.resume();
  }

  private async associate(announced: SocksAddress): Promise<void> {
    const { conn, config } = this;
    const local = normaliseIp(conn.localAddress || '127.0.0.1');
    const bindIp = config.udpBind ?? local;
    const association = await UdpAssociation.open({
      control: conn,
      bindIp,
      clientIp: conn.remoteAddress,
      announced,
      policy: config.policy,
      idleTimeoutMs: config.idleTimeoutMs,
      logger: config.logger,
      logFields: this.fields,
    });
    if (this.phase !== Phase.Connecting) {
      association.close('client closed');
      return;
    }
    this.phase = Phase.Associated;
    const boundIp = normaliseIp(association.clientSocket.address);
    // A wildcard bind is reached at the address the client already uses.
    const replyIp = boundIp === '0.0.0.0' || boundIp === '::' ? local : boundIp;
    conn.write(encodeReply(SocksReply.succeeded, replyIp, association.clientSocket.port));
    config.logger.info('socks5 udp associate', {
      ...this.fields,
      user: this.user,
      relay: formatHostPort(replyIp, association.clientSocket.port),
      announced: formatHostPort(announced.host, announced.port),
    });
    if (this.clientEnded) {
      association.close('client closed');
      conn.end();
      return;
    }
    conn.userData = association;
    conn.setHandler(controlHandler);
    conn.resume();
  }

  private failed(error: unknown, what: string, label: string): void {
    if (this.phase !== Phase.Connecting) return;
    const netError = toNetError(error, label);
    const reply = socksReplyFor(netError.code);
    this.config.logger.warn(`socks5 ${what} failed`, {
      ...this.fields,
      user: this.user,
      target: label,
      code: netError.code,
      reply,
      error: netError.message,
    });
    this.refuse(encodeReply(reply));
  }

  /** Answer (when there is an answer), half-close, and close for good shortly after. */
  refuse(answer?: Uint8Array): void {
    if (this.phase >= Phase.Closing) return;
    this.phase = Phase.Closing;
    clearTimeout(this.timer);
    if (answer) this.conn.write(answer);
    this.conn.end();
    this.conn.resume();
    this.timer = setTimeout(destroyConn, LINGER_MS, this);
  }

  abort(): void {
    if (this.phase === Phase.Closed) return;
    this.phase = Phase.Closing;
    clearTimeout(this.timer);
    this.conn.destroy();
  }
}

function phaseName(phase: Phase): string {
  return ['greeting', 'credentials', 'request', 'connecting', 'relaying', 'associated', 'closing', 'closed'][phase]!;
}

function onHandshakeTimeout(session: Session): void {
  if (session.phase >= Phase.Connecting) return;
  session.config.logger.warn('socks5 handshake timed out', {
    ...session.fields,
    phase: phaseName(session.phase),
    timeoutMs: session.config.handshakeTimeoutMs,
  });
  session.conn.destroy(new NetError('EIDLE', `SOCKS5 handshake not completed in ${session.config.handshakeTimeoutMs} ms`));
}

function destroyConn(session: Session): void {
  session.conn.destroy();
}

const handshakeHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as Session).onData(chunk);
  },
  end(conn) {
    (conn.userData as Session).onEnd();
  },
  close(conn, error) {
    (conn.userData as Session).onClose(error);
  },
};

/** The TCP connection of a UDP association: nothing to read; its end ends the association. */
const controlHandler: ConnHandler = {
  data() {
    // RFC 1928 defines no traffic here; ignore it.
  },
  end(conn) {
    conn.end();
  },
  close(conn, error) {
    (conn.userData as UdpAssociation).close(error ? `control connection: ${error.message}` : 'control connection closed');
  },
};
