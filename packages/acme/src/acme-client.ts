/**
 * The `acme-client` package (RFC 8555: account, JWS, orders, CSR) behind the
 * CertificateAuthority interface. It is an optional dependency, loaded when
 * automatic HTTPS is configured: `acmeClientAvailable()` tells whether it is
 * installed, and `AcmeClientAuthority.create` fails with a clear message
 * when it is not.
 */
import { Agent, get as httpsGet } from 'node:https';
import type { CertificateAuthority, ChallengeType, OrderRequest } from './types.js';

/** The parts of acme-client 5.x used here. */
interface AcmeChallenge {
  type: string;
  token: string;
}
interface AcmeAuthorization {
  identifier: { type: string; value: string };
}
interface AcmeClientModule {
  Client: new (options: { directoryUrl: string; accountKey: string | Buffer; accountUrl?: string; backoffAttempts?: number; backoffMin?: number; backoffMax?: number }) => {
    /** acme-client's RFC 8555 request layer (newAccount without the update acme-client's createAccount adds for an existing account). */
    api: {
      createAccount(data: { termsOfServiceAgreed: boolean; contact?: string[] }): Promise<unknown>;
      apiRequest(...args: unknown[]): Promise<{ data: unknown; headers: Record<string, string> }>;
    };
    getAccountUrl(): string;
    auto(options: {
      csr: string | Buffer;
      email?: string;
      termsOfServiceAgreed: boolean;
      challengePriority: string[];
      skipChallengeVerification: boolean;
      challengeCreateFn(authz: AcmeAuthorization, challenge: AcmeChallenge, keyAuthorization: string): Promise<void>;
      challengeRemoveFn(authz: AcmeAuthorization, challenge: AcmeChallenge, keyAuthorization: string): Promise<void>;
    }): Promise<string>;
  };
  crypto: { createCsr(data: { commonName: string; altNames: string[] }, keyPem: string | Buffer): Promise<[Buffer, Buffer]> };
  axios: { defaults: { httpsAgent?: unknown; acmeSettings?: { retryMaxAttempts: number; retryDefaultDelay: number } } };
  setLogger?(fn: (message: string) => void): void;
}

export const ACME_CLIENT_PACKAGE = 'acme-client';

let loading: Promise<AcmeClientModule | undefined> | undefined;
async function load(): Promise<AcmeClientModule | undefined> {
  // A variable specifier: the package is optional, and TypeScript must not require it.
  const specifier: string = ACME_CLIENT_PACKAGE;
  loading ??= import(specifier).then(
    (module: { default?: AcmeClientModule } & AcmeClientModule) => module.default ?? module,
    () => undefined,
  );
  return loading;
}

export async function acmeClientAvailable(): Promise<boolean> {
  return (await load()) !== undefined;
}

export interface AcmeClientAuthorityOptions {
  /** ACME directory URL. */
  directory: string;
  /** Account contact (expiry notices from the CA). */
  email?: string;
  /** PEM CA certificates the directory's HTTPS certificate chains to (private CAs, Pebble). */
  caRoot?: string;
  /** PEM account key (the storage keeps one per CA). */
  accountKey: string;
  /**
   * acme-client's own retries of one HTTP request (network errors, 429,
   * 5xx), and the seconds between them times the attempt. Few and short:
   * the manager retries whole orders with its own backoff (acme-client's
   * default of 5 attempts waits 75 s before reporting a CA that is down).
   */
  httpRetries?: { attempts: number; delaySeconds: number };
}

export class AcmeClientAuthority implements CertificateAuthority {
  readonly name: string;

  private constructor(
    private readonly acme: AcmeClientModule,
    private readonly options: AcmeClientAuthorityOptions,
  ) {
    this.name = options.directory;
  }

  static async create(options: AcmeClientAuthorityOptions): Promise<AcmeClientAuthority> {
    const acme = await load();
    if (!acme) throw new Error(`automatic HTTPS needs the npm package "${ACME_CLIENT_PACKAGE}" (5.x): npm install ${ACME_CLIENT_PACKAGE}`);
    // acme-client talks through its own axios instance: a private CA's root goes there.
    if (options.caRoot) acme.axios.defaults.httpsAgent = new Agent({ ca: options.caRoot, keepAlive: false });
    const retries = options.httpRetries ?? { attempts: 2, delaySeconds: 2 };
    if (acme.axios.defaults.acmeSettings) Object.assign(acme.axios.defaults.acmeSettings, { retryMaxAttempts: retries.attempts, retryDefaultDelay: retries.delaySeconds });
    return new AcmeClientAuthority(acme, options);
  }

  async order(request: OrderRequest): Promise<string> {
    try {
      return await this.place(request);
    } catch (error) {
      throw await this.explain(error);
    }
  }

  private accountUrl: string | undefined;

  /**
   * A client of its own per order (so that an abandoned order can be
   * stopped), knowing the account URL: newAccount finds the existing account
   * of the key (or registers it) once, so acme-client's auto() skips its own
   * registration (which, for an existing account without an e-mail, sends
   * an empty update that Pebble refuses). Status polls every 1 s growing to
   * 10 s (acme-client's 5 s to 30 s would wait out most of an order timeout
   * in one sleep).
   */
  private async client(): Promise<InstanceType<AcmeClientModule['Client']>> {
    const backoff = { backoffAttempts: 60, backoffMin: 1000, backoffMax: 10_000 };
    if (this.accountUrl) return new this.acme.Client({ directoryUrl: this.options.directory, accountKey: this.options.accountKey, accountUrl: this.accountUrl, ...backoff });
    const client = new this.acme.Client({ directoryUrl: this.options.directory, accountKey: this.options.accountKey, ...backoff });
    await client.api.createAccount({ termsOfServiceAgreed: true, ...(this.options.email ? { contact: [`mailto:${this.options.email}`] } : {}) });
    this.accountUrl = client.getAccountUrl();
    return client;
  }

  private async explain(error: unknown): Promise<Error> {
    // The next order looks the account up again: a CA that lost it (a restarted test CA, a deactivation) gets it registered anew.
    this.accountUrl = undefined;
    if (!(error instanceof TypeError)) return error instanceof Error ? error : new Error(String(error));
    const unreachable = await probe(this.options.directory, this.options.caRoot);
    return new Error(unreachable ? `the ACME directory ${this.options.directory} cannot be reached: ${unreachable}` : `ACME request failed without an answer: ${error.message}`, { cause: error });
  }

  private async place(request: OrderRequest): Promise<string> {
    const [, csr] = await this.acme.crypto.createCsr({ commonName: request.names[0]!, altNames: request.names }, request.keyPem);
    const kind = (challenge: AcmeChallenge): ChallengeType => challenge.type as ChallengeType;
    const client = await this.client();
    // Abandoned (the manager's order timeout): acme-client cannot be cancelled, but every later request of this
    // client answers "invalid", which ends its status polling at the next poll instead of after all its retries.
    request.signal?.addEventListener(
      'abort',
      () => {
        client.api.apiRequest = async () => ({ data: { status: 'invalid', detail: 'the order was abandoned by wmproxy' }, headers: {} });
      },
      { once: true },
    );
    return client.auto({
      csr,
      ...(this.options.email ? { email: this.options.email } : {}),
      termsOfServiceAgreed: true,
      challengePriority: [...request.challenges],
      // The engine answers the challenges itself; a self-check would need the public DNS.
      skipChallengeVerification: true,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => request.solver.present(kind(challenge), authz.identifier.value, challenge.token, keyAuthorization),
      challengeRemoveFn: async (authz, challenge) => request.solver.cleanUp(kind(challenge), authz.identifier.value, challenge.token),
    });
  }
}

/**
 * acme-client reports a request that got no answer at all (refused, reset,
 * timed out) as a TypeError from its retry interceptor: ask the directory
 * once more to say what really happened.
 */
function probe(url: string, ca: string | undefined): Promise<string | undefined> {
  return new Promise((resolve) => {
    const request = httpsGet(url, { ...(ca ? { ca } : {}), agent: false, timeout: 10_000 }, (response) => {
      response.resume();
      resolve(undefined);
    });
    request.on('timeout', () => request.destroy(new Error('no answer within 10 s')));
    request.on('error', (error) => resolve(error.message));
  });
}
