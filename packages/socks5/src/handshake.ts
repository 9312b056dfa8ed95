import { AUTH_VERSION, SOCKS_VERSION, readAddress, type SocksAddress } from './protocol.js';

/**
 * Server-side SOCKS5 handshake messages, read incrementally: bytes are
 * appended as they arrive (a client may send one byte at a time, or the
 * greeting, the credentials, the request and its first payload in one chunk)
 * and each `read*` either consumes one whole message or reports that more is
 * needed. Pure: no I/O, so the server decides the answers.
 */
export type HandshakeRead<T> = T | 'incomplete' | HandshakeError;

export interface HandshakeError {
  error: 'version' | 'no-methods' | 'auth-version' | 'address-type';
  /** The offending version byte, for `version` and `auth-version`. */
  version?: number;
}

export interface Greeting {
  methods: Uint8Array;
}
export interface Credentials {
  username: string;
  password: string;
}
export interface Request {
  command: number;
  address: SocksAddress;
}

/**
 * Bytes held while the handshake runs. The largest handshake message is 513
 * bytes (RFC 1929 credentials); the rest of the room is for payload a client
 * pipelines after its request, which is relayed once the target is connected.
 */
export const HANDSHAKE_BUFFER_LIMIT = 64 * 1024;

const utf8 = new TextDecoder();

export class HandshakeReader {
  private buf: Uint8Array = new Uint8Array(0);

  /**
   * Append bytes; false when more than the limit is already held. One chunk
   * always fits, however large the runtime's read was: the owner pauses the
   * socket once the request is in, so what is held stays near the limit.
   */
  push(chunk: Uint8Array): boolean {
    if (this.buf.byteLength > HANDSHAKE_BUFFER_LIMIT) return false;
    if (this.buf.byteLength === 0) this.buf = chunk.slice();
    else {
      const joined = new Uint8Array(this.buf.byteLength + chunk.byteLength);
      joined.set(this.buf);
      joined.set(chunk, this.buf.byteLength);
      this.buf = joined;
    }
    return true;
  }

  get buffered(): number {
    return this.buf.byteLength;
  }

  /** Everything not consumed yet (payload pipelined after the request). */
  takeRest(): Uint8Array {
    const rest = this.buf;
    this.buf = new Uint8Array(0);
    return rest;
  }

  /** VER NMETHODS METHODS. */
  readGreeting(): HandshakeRead<Greeting> {
    const buf = this.buf;
    if (buf.byteLength < 1) return 'incomplete';
    if (buf[0] !== SOCKS_VERSION) return { error: 'version', version: buf[0]! };
    if (buf.byteLength < 2) return 'incomplete';
    const count = buf[1]!;
    if (count === 0) return { error: 'no-methods' };
    if (buf.byteLength < 2 + count) return 'incomplete';
    const methods = buf.slice(2, 2 + count);
    this.consume(2 + count);
    return { methods };
  }

  /** RFC 1929: VER ULEN UNAME PLEN PASSWD. */
  readCredentials(): HandshakeRead<Credentials> {
    const buf = this.buf;
    if (buf.byteLength < 1) return 'incomplete';
    if (buf[0] !== AUTH_VERSION) return { error: 'auth-version', version: buf[0]! };
    if (buf.byteLength < 2) return 'incomplete';
    const userEnd = 2 + buf[1]!;
    if (buf.byteLength < userEnd + 1) return 'incomplete';
    const passEnd = userEnd + 1 + buf[userEnd]!;
    if (buf.byteLength < passEnd) return 'incomplete';
    const username = utf8.decode(buf.subarray(2, userEnd));
    const password = utf8.decode(buf.subarray(userEnd + 1, passEnd));
    this.consume(passEnd);
    return { username, password };
  }

  /** VER CMD RSV ATYP DST.ADDR DST.PORT. */
  readRequest(): HandshakeRead<Request> {
    const buf = this.buf;
    if (buf.byteLength < 1) return 'incomplete';
    if (buf[0] !== SOCKS_VERSION) return { error: 'version', version: buf[0]! };
    const read = readAddress(buf, 3);
    if (read === 'incomplete') return 'incomplete';
    if (read === 'bad-type') return { error: 'address-type' };
    const command = buf[1]!;
    this.consume(read.next);
    return { command, address: read.address };
  }

  private consume(length: number): void {
    this.buf = this.buf.subarray(length);
  }
}
