/** The ACME challenge types wmproxy answers itself (DNS-01 needs a DNS provider: not here). */
export type ChallengeType = 'http-01' | 'tls-alpn-01';
export const CHALLENGE_TYPES: readonly ChallengeType[] = ['tls-alpn-01', 'http-01'];

/** Where a CA's challenge lands: the engine's port-80 listener (HTTP-01) or TLS listener (TLS-ALPN-01). */
export interface ChallengeSolver {
  present(type: ChallengeType, name: string, token: string, keyAuthorization: string): Promise<void> | void;
  cleanUp(type: ChallengeType, name: string, token: string): Promise<void> | void;
}

export interface OrderRequest {
  /** DNS names, the first is the subject. */
  names: string[];
  /** PEM private key of the certificate (the CA signs a CSR made from it). */
  keyPem: string;
  /** Challenge types in order of preference. */
  challenges: readonly ChallengeType[];
  solver: ChallengeSolver;
  /** Aborted when the manager gives up on the order (its timeout, or the manager closing). */
  signal?: AbortSignal;
}

/**
 * A certificate authority reached over ACME. `AcmeClientAuthority` wraps the
 * `acme-client` package; tests use a fake. One call is one order: account,
 * authorizations, challenges, finalization, download.
 */
export interface CertificateAuthority {
  /** Name for logs and `wmproxy certs` (the directory URL). */
  readonly name: string;
  /** Resolves to the PEM chain, leaf first; rejects with the CA's or the network's error. */
  order(request: OrderRequest): Promise<string>;
}

export type CertificateStatus = 'obtaining' | 'valid' | 'renewing' | 'failing' | 'waiting';

/** One managed certificate, as `wmproxy certs`, /metrics and the dashboard show it. */
export interface ManagedCertificate {
  names: string[];
  status: CertificateStatus;
  issuer: string | undefined;
  notBefore: string | undefined;
  notAfter: string | undefined;
  /** When renewal starts (ISO); after a failure, the next retry. */
  nextRenewal: string | undefined;
  /** Failed orders in a row (reset by a success). */
  failures: number;
  lastError: string | undefined;
}
