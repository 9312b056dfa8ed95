/**
 * An ACME certificate authority in-process, for tests of automatic HTTPS
 * (structurally a `@wmproxy/acme` CertificateAuthority). It validates each
 * name as a CA would, through the challenge answers the engine serves
 * (`answers`: HTTP-01 by path, TLS-ALPN-01 by name), and certifies the
 * requested key with `certify` (the caller's certificate maker).
 */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';

type ChallengeType = 'http-01' | 'tls-alpn-01';
interface Solver {
  present(type: ChallengeType, name: string, token: string, keyAuthorization: string): Promise<void> | void;
  cleanUp(type: ChallengeType, name: string, token: string): Promise<void> | void;
}
export interface FakeCaAnswers {
  http01(name: string, path: string): Promise<string | undefined>;
  tlsAlpn01(name: string): Promise<{ cert: string | Uint8Array } | undefined>;
}
export type Certify = (names: string[], keyPem: string, notBefore: Date, notAfter: Date) => string;

export class FakeCa {
  readonly name = 'fake-ca';
  /** Names of every order placed (failed ones too). */
  readonly orders: string[][] = [];
  readonly validated: string[] = [];
  down = false;
  lifetimeMs = 90 * 24 * 3600_000;
  /** Present the challenges and never validate them (a stuck CA): the order settles only when its signal aborts. */
  stuck = false;
  /** Hold each order this long (so that two workers overlap). */
  delayMs = 0;
  answers: FakeCaAnswers | undefined;

  constructor(private readonly certify: Certify) {}

  async order(request: { names: string[]; keyPem: string; challenges: readonly ChallengeType[]; solver: Solver; signal?: AbortSignal }): Promise<string> {
    this.orders.push([...request.names]);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:14000 (the CA is down)');
    const type = request.challenges[0]!;
    for (const name of request.names) {
      const token = randomBytes(24).toString('base64url');
      const keyAuthorization = `${token}.thumbprint`;
      await request.solver.present(type, name, token, keyAuthorization);
      if (this.stuck) {
        await new Promise((_, reject) => request.signal?.addEventListener('abort', () => reject(new Error('order abandoned by the client')), { once: true }));
      }
      try {
        if (type === 'http-01') {
          const answer = await this.answers?.http01(name, `/.well-known/acme-challenge/${token}`);
          if (answer !== keyAuthorization) throw new Error(`HTTP-01 for ${name}: got ${answer}`);
        } else {
          const pair = await this.answers?.tlsAlpn01(name);
          const digest = createHash('sha256').update(keyAuthorization).digest();
          if (!pair || !Buffer.from(new X509Certificate(pair.cert).raw).includes(digest)) throw new Error(`TLS-ALPN-01 for ${name}: no matching certificate`);
        }
        this.validated.push(`${type} ${name}`);
      } finally {
        await request.solver.cleanUp(type, name, token);
      }
    }
    const now = Date.now();
    return this.certify(request.names, request.keyPem, new Date(now), new Date(now + this.lifetimeMs));
  }
}
