/**
 * Typed network errors. Each protocol maps `code` to its own answer
 * (HTTP status, SOCKS5 reply code) with `httpStatusFor` / `socksReplyFor`.
 */
export type NetErrorCode =
  | 'ECONNREFUSED' // the peer answered with RST
  | 'ETIMEDOUT' // connect did not complete in time
  | 'ENOTFOUND' // DNS gave no address
  | 'EHOSTUNREACH'
  | 'ENETUNREACH'
  | 'ECONNRESET'
  | 'EIDLE' // no traffic for the idle timeout
  | 'EFORBIDDEN' // refused by policy (ACL)
  | 'EBADREQUEST' // malformed protocol input
  | 'EHEADERSIZE' // headers over the configured limit
  | 'EAUTH' // missing or wrong credentials
  | 'EABORTED' // the owner cancelled
  | 'EPROTO' // the peer broke its protocol
  | 'ELOCAL'; // this host ran out of something (descriptors, ports, buffers): not the peer's fault

export class NetError extends Error {
  readonly code: NetErrorCode;
  /** The address involved, when there is one (`host:port`). */
  readonly address?: string;
  constructor(code: NetErrorCode, message: string, options?: { address?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NetError';
    this.code = code;
    if (options?.address !== undefined) this.address = options.address;
  }
}

const SYSTEM_CODES: ReadonlySet<string> = new Set<NetErrorCode>([
  'ECONNREFUSED',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
]);

/** Errors of this host's own resources: a proxy out of descriptors must not eject healthy servers. */
const LOCAL_CODES: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRNOTAVAIL']);

/** OpenSSL/BoringSSL alerts a server sends about the client's certificate (Node: "tlsv13 alert certificate required", Bun: "TLSV1_ALERT_CERTIFICATE_REQUIRED"). */
const CLIENT_CERT_ALERT = /alert[ _](certificate[ _]required|unknown[ _]ca|bad[ _]certificate)/i;

/** Wrap whatever a runtime threw into a NetError with a stable code. */
export function toNetError(error: unknown, address?: string): NetError {
  if (error instanceof NetError) return error;
  const raw = (error as { code?: unknown } | null)?.code;
  let code: NetErrorCode = 'ECONNRESET';
  if (typeof raw === 'string') {
    if (SYSTEM_CODES.has(raw)) code = raw as NetErrorCode;
    else if (raw === 'EAI_AGAIN' || raw === 'EAI_NONAME' || raw === 'EAI_FAIL' || raw === 'DNSException') code = 'ENOTFOUND';
    else if (raw === 'EPIPE') code = 'ECONNRESET';
    else if (raw === 'ABORT_ERR') code = 'EABORTED';
    else if (LOCAL_CODES.has(raw)) code = 'ELOCAL';
    else if (raw === 'EPROTO' || raw.startsWith('ERR_SSL_')) code = 'EPROTO';
  }
  let message = error instanceof Error ? error.message : String(error);
  // TLS 1.3 refuses a client certificate after the client's handshake is done: the alert arrives as a read error. Say what it means.
  if (code === 'EPROTO' && CLIENT_CERT_ALERT.test(message)) message = `the TLS server refused our client certificate (none, or not signed by a CA it trusts): ${message}`;
  return new NetError(code, address ? `${message} (${address})` : message, { address, cause: error });
}

/** The HTTP status a proxy answers for a failed upstream step. */
export function httpStatusFor(code: NetErrorCode): number {
  switch (code) {
    case 'ETIMEDOUT':
    case 'EIDLE':
      return 504;
    case 'EFORBIDDEN':
      return 403;
    case 'EBADREQUEST':
      return 400;
    case 'EHEADERSIZE':
      return 431;
    case 'EAUTH':
      return 407;
    case 'ELOCAL':
      return 503;
    default:
      return 502;
  }
}

/** RFC 1928 section 6 reply codes. */
export const SocksReply = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

export function socksReplyFor(code: NetErrorCode): number {
  switch (code) {
    case 'ECONNREFUSED':
      return SocksReply.connectionRefused;
    case 'ETIMEDOUT':
      return SocksReply.ttlExpired;
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
      return SocksReply.hostUnreachable;
    case 'ENETUNREACH':
      return SocksReply.networkUnreachable;
    case 'EFORBIDDEN':
      return SocksReply.notAllowed;
    default:
      return SocksReply.generalFailure;
  }
}
