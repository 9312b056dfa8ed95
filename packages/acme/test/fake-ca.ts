/** A certificate authority in-process: validates challenges through the manager's ChallengeStore as a CA would, and certifies the requested key. */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { createSelfSignedCertificate } from '@wmproxy/core-net';
import { ACME_CHALLENGE_PREFIX, type CertificateAuthority, type ChallengeStore, type OrderRequest } from '../src/index.js';

export class FakeCa implements CertificateAuthority {
  readonly name = 'fake-ca';
  /** Names of every order placed (failed ones too). */
  readonly orders: string[][] = [];
  readonly validated: string[] = [];
  down = false;
  lifetimeMs = 90 * 24 * 3600_000;
  /** Hold each order this long (so that two workers overlap). */
  delayMs = 0;
  /** The store the fake reads challenges from (the manager's). */
  store: ChallengeStore | undefined;

  async order(request: OrderRequest): Promise<string> {
    this.orders.push([...request.names]);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:14000 (the CA is down)');
    const type = request.challenges[0]!;
    for (const name of request.names) {
      const token = randomBytes(24).toString('base64url');
      const keyAuthorization = `${token}.thumbprint`;
      await request.solver.present(type, name, token, keyAuthorization);
      try {
        if (type === 'http-01') {
          const answer = await this.store?.httpAnswer(ACME_CHALLENGE_PREFIX + token);
          if (answer !== keyAuthorization) throw new Error(`HTTP-01 for ${name}: got ${answer}`);
        } else {
          const pair = await this.store?.tlsAlpnAnswer(name);
          const digest = createHash('sha256').update(keyAuthorization).digest();
          if (!pair || !Buffer.from(new X509Certificate(pair.cert as string).raw).includes(digest)) throw new Error(`TLS-ALPN-01 for ${name}: no matching certificate`);
        }
        this.validated.push(`${type} ${name}`);
      } finally {
        await request.solver.cleanUp(type, name, token);
      }
    }
    const now = Date.now();
    return createSelfSignedCertificate({ altNames: request.names, key: request.keyPem, notBefore: new Date(now), notAfter: new Date(now + this.lifetimeMs) }).cert;
  }
}

export function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (check()) return resolve();
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(poll, 10);
    };
    poll();
  });
}
