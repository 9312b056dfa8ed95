/** The testkit's in-process CA, answering through a manager's ChallengeStore directly. */
import { createSelfSignedCertificate } from '@wmproxy/core-net';
import { FakeCa as BaseCa } from '@wmproxy/testkit';
import type { ChallengeStore } from '../src/index.js';

export class FakeCa extends BaseCa {
  constructor() {
    super((names, key, notBefore, notAfter) => createSelfSignedCertificate({ altNames: names, key, notBefore, notAfter }).cert);
  }
  set store(store: ChallengeStore | undefined) {
    this.answers = store && { http01: (_name, path) => store.httpAnswer(path), tlsAlpn01: (name) => store.tlsAlpnAnswer(name) };
  }
  get store(): ChallengeStore | undefined {
    return undefined;
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
