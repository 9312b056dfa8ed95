/**
 * Pending ACME challenges, where the engine finds them: HTTP-01 key
 * authorizations by token (served at /.well-known/acme-challenge/<token> on
 * plain HTTP listeners) and TLS-ALPN-01 certificates by name (served by the
 * TLS listener to a client offering `acme-tls/1`). With a storage directory,
 * answers are also written there, so a worker other than the one that
 * placed the order (workers share ports 80 and 443) can answer the validation.
 */
import { createHash } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createSelfSignedCertificate, isValidHostname, type TlsKeyPair } from '@wmproxy/core-net';
import { readOptional, writeFileAtomic } from './files.js';
import type { ChallengeSolver, ChallengeType } from './types.js';

export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';
/** Tokens are base64url (RFC 8555 section 8.1): nothing else reaches the file system. */
const TOKEN = /^[A-Za-z0-9_-]{16,128}$/;

export class ChallengeStore implements ChallengeSolver {
  private readonly http = new Map<string, string>();
  private readonly tls = new Map<string, TlsKeyPair>();
  /** Certificates made for other workers' challenges, by name (one each: validations are brief). */
  private readonly fromFiles = new Map<string, { keyAuthorization: string; pair: TlsKeyPair }>();

  /** `directory`: shared with other workers (the storage's `challenges/`). */
  constructor(private readonly directory?: string) {}

  async present(type: ChallengeType, name: string, token: string, keyAuthorization: string): Promise<void> {
    if (type === 'http-01') {
      if (!TOKEN.test(token)) throw new Error(`refusing an HTTP-01 token with unexpected characters: ${JSON.stringify(token)}`);
      this.http.set(token, keyAuthorization);
      if (this.directory) await writeFileAtomic(join(this.directory, token), keyAuthorization);
      return;
    }
    const lower = name.toLowerCase();
    if (!isValidHostname(lower)) throw new Error(`refusing a TLS-ALPN-01 challenge for ${JSON.stringify(name)}`);
    this.tls.set(lower, challengeCertificate(lower, keyAuthorization));
    if (this.directory) await writeFileAtomic(join(this.directory, `tls-alpn-01.${lower}`), keyAuthorization);
  }

  async cleanUp(type: ChallengeType, name: string, token: string): Promise<void> {
    if (type === 'http-01') {
      this.http.delete(token);
      if (this.directory && TOKEN.test(token)) await unlink(join(this.directory, token)).catch(() => undefined);
      return;
    }
    const lower = name.toLowerCase();
    this.tls.delete(lower);
    if (this.directory && isValidHostname(lower)) await unlink(join(this.directory, `tls-alpn-01.${lower}`)).catch(() => undefined);
  }

  /** The TLS-ALPN-01 certificate of this worker's pending challenge for a name. */
  tlsAlpn(name: string): TlsKeyPair | undefined {
    return this.tls.get(name);
  }

  /** Also another worker's (core-net's `acmeTlsAlpn`: only clients offering acme-tls/1 get here). */
  async tlsAlpnAnswer(name: string): Promise<TlsKeyPair | undefined> {
    const local = this.tls.get(name);
    if (local || !this.directory || !isValidHostname(name)) return local;
    const keyAuthorization = await readOptional(join(this.directory, `tls-alpn-01.${name}`));
    if (keyAuthorization === undefined) return undefined;
    // The file is read each time (a retried order has a new key authorization); the certificate made from it is kept.
    const known = this.fromFiles.get(name);
    if (known?.keyAuthorization === keyAuthorization) return known.pair;
    const pair = challengeCertificate(name, keyAuthorization);
    this.fromFiles.set(name, { keyAuthorization, pair });
    return pair;
  }

  /** The key authorization to answer for a request path, if it is a pending HTTP-01 token. */
  async httpAnswer(path: string): Promise<string | undefined> {
    if (!path.startsWith(ACME_CHALLENGE_PREFIX)) return undefined;
    const token = path.slice(ACME_CHALLENGE_PREFIX.length);
    if (!TOKEN.test(token)) return undefined;
    const local = this.http.get(token);
    if (local !== undefined || !this.directory) return local;
    return readOptional(join(this.directory, token));
  }
}

/** RFC 8737: a self-signed certificate for the name with the critical acmeIdentifier extension (SHA-256 of the key authorization). */
function challengeCertificate(name: string, keyAuthorization: string): TlsKeyPair {
  const digest = createHash('sha256').update(keyAuthorization).digest();
  return createSelfSignedCertificate({ altNames: [name], days: 7, acmeIdentifier: digest });
}
