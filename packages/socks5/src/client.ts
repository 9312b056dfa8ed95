import { DEFAULT_CONNECT_TIMEOUT_MS, NetError, connect, formatHostPort, releaseConn } from '@wmproxy/core-net';
import type { Conn, ConnHandler, NetErrorCode, Resolver, TlsClientOptions } from '@wmproxy/core-net';
import { AUTH_VERSION, Command, Method, SOCKS_VERSION, encodeAddress, readAddress } from './protocol.js';

export interface Socks5Proxy {
  host: string;
  port: number;
  /** RFC 1929 credentials (1-255 bytes each); when set, username/password is offered besides no-auth. */
  username?: string;
  password?: string;
}

export interface Socks5ConnectOptions {
  proxy: Socks5Proxy;
  /** The target, as the proxy should reach it: an IP literal (IPv6 with or without brackets) or a name the proxy resolves. */
  host: string;
  port: number;
  /** For the connection to the proxy and the whole handshake together (default 10 000). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Resolves the proxy's host name (default: the system resolver). */
  resolver?: Resolver;
  /** Reach the proxy over TLS (SOCKS5 inside TLS, as a wmproxy TLS listener serves it), verifying its certificate [plain TCP]. */
  tls?: TlsClientOptions;
}

/** What a failure reply (RFC 1928 section 6) means as a NetError; `socksReplyFor` maps it back. */
const REPLY_ERRORS: Record<number, [NetErrorCode, string]> = {
  0x01: ['EPROTO', 'general SOCKS server failure'],
  0x02: ['EFORBIDDEN', 'connection not allowed by ruleset'],
  0x03: ['ENETUNREACH', 'network unreachable'],
  0x04: ['EHOSTUNREACH', 'host unreachable'],
  0x05: ['ECONNREFUSED', 'connection refused'],
  0x06: ['ETIMEDOUT', 'TTL expired'],
  0x07: ['EPROTO', 'command not supported'],
  0x08: ['EPROTO', 'address type not supported'],
};

/** The NetError for a SOCKS5 failure reply code. */
export function replyError(reply: number, target: string): NetError {
  const [code, text] = REPLY_ERRORS[reply] ?? ['EPROTO', `unknown reply 0x${reply.toString(16)}`];
  return new NetError(code, `SOCKS5 proxy answered ${text} (0x${reply.toString(16).padStart(2, '0')}) for ${target}`, { address: target });
}

/**
 * Open a connection to `host:port` through a SOCKS5 proxy (for parent-proxy
 * chaining). Resolves with the proxy connection once CONNECT has succeeded:
 * install a handler (or hand it to `relay`) and the bytes that came with the
 * reply are delivered first. Failures are NetErrors: the reply code mapped
 * (0x05 ECONNREFUSED, 0x04 EHOSTUNREACH, 0x06 ETIMEDOUT, ...), EAUTH when the
 * proxy refuses the credentials, ETIMEDOUT when it does not answer in time.
 */
export async function socks5Connect(options: Socks5ConnectOptions): Promise<Conn> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const target = options.host.startsWith('[') && options.host.endsWith(']') ? options.host.slice(1, -1) : options.host;
  const label = formatHostPort(target, options.port);
  let request: Uint8Array;
  try {
    const address = encodeAddress(target, options.port);
    request = new Uint8Array(3 + address.byteLength);
    request.set([SOCKS_VERSION, Command.connect, 0]);
    request.set(address, 3);
  } catch (error) {
    throw new NetError('EBADREQUEST', (error as Error).message, { address: label });
  }
  const credentials = encodeCredentials(options.proxy);
  const startedAt = Date.now();
  const conn = await connect({
    host: options.proxy.host,
    port: options.proxy.port,
    timeoutMs,
    signal: options.signal,
    resolver: options.resolver,
    tls: options.tls,
  });
  return new Promise<Conn>((resolve, reject) => {
    const handshake = new ClientHandshake(conn, label, request, credentials, resolve, reject);
    conn.userData = handshake;
    handshake.timer = setTimeout(onClientTimeout, Math.max(1, timeoutMs - (Date.now() - startedAt)), handshake);
    if (options.signal) {
      handshake.signal = options.signal;
      options.signal.addEventListener('abort', handshake, { once: true });
    }
    conn.setHandler(clientHandler);
    conn.write(credentials ? GREETING_WITH_AUTH : GREETING_NO_AUTH);
  });
}

const GREETING_NO_AUTH = Uint8Array.of(SOCKS_VERSION, 1, Method.noAuth);
const GREETING_WITH_AUTH = Uint8Array.of(SOCKS_VERSION, 2, Method.noAuth, Method.userPass);

function encodeCredentials(proxy: Socks5Proxy): Uint8Array | undefined {
  if (proxy.username === undefined && proxy.password === undefined) return undefined;
  const user = Buffer.from(proxy.username ?? '', 'utf8');
  const pass = Buffer.from(proxy.password ?? '', 'utf8');
  if (user.byteLength < 1 || user.byteLength > 255 || pass.byteLength < 1 || pass.byteLength > 255) {
    throw new NetError('EBADREQUEST', 'SOCKS5 username and password must each be 1-255 bytes', {
      address: formatHostPort(proxy.host, proxy.port),
    });
  }
  const out = new Uint8Array(3 + user.byteLength + pass.byteLength);
  out[0] = AUTH_VERSION;
  out[1] = user.byteLength;
  out.set(user, 2);
  out[2 + user.byteLength] = pass.byteLength;
  out.set(pass, 3 + user.byteLength);
  return out;
}

const enum Step {
  Method,
  Auth,
  Reply,
  Done,
}

class ClientHandshake {
  step = Step.Method;
  buf: Uint8Array = new Uint8Array(0);
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;

  constructor(
    readonly conn: Conn,
    readonly target: string,
    readonly request: Uint8Array,
    readonly credentials: Uint8Array | undefined,
    private readonly resolve: (conn: Conn) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  onData(chunk: Uint8Array): void {
    if (this.step === Step.Done) return;
    const joined = new Uint8Array(this.buf.byteLength + chunk.byteLength);
    joined.set(this.buf);
    joined.set(chunk, this.buf.byteLength);
    this.buf = joined;
    for (;;) {
      const before: Step = this.step;
      this.advance();
      const after = this.step as Step;
      if (after === before || after === Step.Done) return;
    }
  }

  private advance(): void {
    const buf = this.buf;
    switch (this.step) {
      case Step.Method: {
        if (buf.byteLength < 2) return;
        if (buf[0] !== SOCKS_VERSION) return this.fail(new NetError('EPROTO', `not a SOCKS5 proxy (version byte ${buf[0]})`, { address: this.target }));
        const method = buf[1]!;
        this.buf = buf.subarray(2);
        if (method === Method.noAuth) {
          this.step = Step.Reply;
          this.conn.write(this.request);
        } else if (method === Method.userPass && this.credentials) {
          this.step = Step.Auth;
          this.conn.write(this.credentials);
        } else {
          const why = method === Method.userPass ? 'requires a username and password' : 'accepts none of the offered authentication methods';
          this.fail(new NetError('EAUTH', `SOCKS5 proxy ${why}`, { address: this.target }));
        }
        return;
      }
      case Step.Auth: {
        if (buf.byteLength < 2) return;
        if (buf[1] !== 0x00) return this.fail(new NetError('EAUTH', 'SOCKS5 proxy rejected the username and password', { address: this.target }));
        this.buf = buf.subarray(2);
        this.step = Step.Reply;
        this.conn.write(this.request);
        return;
      }
      case Step.Reply: {
        if (buf.byteLength < 4) return;
        if (buf[0] !== SOCKS_VERSION) return this.fail(new NetError('EPROTO', `bad SOCKS5 reply (version byte ${buf[0]})`, { address: this.target }));
        if (buf[1] !== 0x00) return this.fail(replyError(buf[1]!, this.target));
        const read = readAddress(buf, 3);
        if (read === 'incomplete') return;
        if (read === 'bad-type') return this.fail(new NetError('EPROTO', 'bad SOCKS5 reply (address type)', { address: this.target }));
        this.succeed(buf.subarray(read.next));
        return;
      }
      default:
        return;
    }
  }

  private succeed(leftover: Uint8Array): void {
    this.step = Step.Done;
    this.cleanUp();
    this.conn.userData = undefined;
    releaseConn(this.conn, leftover);
    this.resolve(this.conn);
  }

  fail(error: NetError): void {
    if (this.step === Step.Done) return;
    this.step = Step.Done;
    this.cleanUp();
    this.conn.destroy(error);
    this.reject(error);
  }

  private cleanUp(): void {
    clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this);
  }

  /** AbortSignal listener (the object itself, so no closure is needed). */
  handleEvent(): void {
    this.fail(new NetError('EABORTED', `SOCKS5 connect to ${this.target} aborted`, { address: this.target }));
  }
}

function onClientTimeout(handshake: ClientHandshake): void {
  handshake.fail(new NetError('ETIMEDOUT', `SOCKS5 proxy did not complete the handshake for ${handshake.target} in time`, { address: handshake.target }));
}

const clientHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as ClientHandshake).onData(chunk);
  },
  end(conn) {
    (conn.userData as ClientHandshake | undefined)?.fail(
      new NetError('ECONNRESET', 'SOCKS5 proxy closed the connection during the handshake', { address: (conn.userData as ClientHandshake).target }),
    );
  },
  close(conn, error) {
    (conn.userData as ClientHandshake | undefined)?.fail(
      new NetError('ECONNRESET', `SOCKS5 proxy closed the connection during the handshake${error ? `: ${error.message}` : ''}`, {
        address: (conn.userData as ClientHandshake).target,
      }),
    );
  },
};
