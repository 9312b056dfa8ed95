import type { TlsClientOptions, TlsSession } from '../types.js';

/**
 * A session resumes only what its first connection verified: a resumed
 * handshake skips the certificate and its name and CA checks, so it is
 * offered only to a connection with the same name, CA list (by identity)
 * and `rejectUnauthorized` (its pin, `verifyPeer`, is checked again against
 * the session's certificate), and the same client certificate (the server
 * takes a resumed client for the one that first showed its certificate).
 */
export function offeredSession(tls: TlsClientOptions & { servername: string }): TlsSession | undefined {
  const session = tls.session;
  if (session === undefined) return undefined;
  const fits = session.servername === tls.servername && session.ca === tls.ca && session.rejectUnauthorized === (tls.rejectUnauthorized ?? true) && session.clientCert === tls.cert;
  return fits ? session : undefined;
}

/** The session a connection made with `tls` may offer later (see offeredSession). */
export function tlsSession(bytes: Uint8Array, certificate: Uint8Array | undefined, tls: TlsClientOptions & { servername: string }): TlsSession {
  return { bytes, certificate, servername: tls.servername, ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized ?? true, clientCert: tls.cert };
}
