/**
 * The `acme-client` package (RFC 8555: account, JWS, orders, CSR) behind the
 * CertificateAuthority interface. It is an optional dependency, loaded when
 * automatic HTTPS is configured: `acmeClientAvailable()` tells whether it is
 * installed, and `AcmeClientAuthority.create` fails with a clear message
 * when it is not.
 */
import { Agent } from 'node:https';
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
  Client: new (options: { directoryUrl: string; accountKey: string | Buffer }) => {
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
  axios: { defaults: { httpsAgent?: unknown } };
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
}

export class AcmeClientAuthority implements CertificateAuthority {
  readonly name: string;

  private constructor(
    private readonly acme: AcmeClientModule,
    private readonly client: InstanceType<AcmeClientModule['Client']>,
    private readonly options: AcmeClientAuthorityOptions,
  ) {
    this.name = options.directory;
  }

  static async create(options: AcmeClientAuthorityOptions): Promise<AcmeClientAuthority> {
    const acme = await load();
    if (!acme) throw new Error(`automatic HTTPS needs the npm package "${ACME_CLIENT_PACKAGE}" (5.x): npm install ${ACME_CLIENT_PACKAGE}`);
    // acme-client talks through its own axios instance: a private CA's root goes there.
    if (options.caRoot) acme.axios.defaults.httpsAgent = new Agent({ ca: options.caRoot, keepAlive: false });
    return new AcmeClientAuthority(acme, new acme.Client({ directoryUrl: options.directory, accountKey: options.accountKey }), options);
  }

  async order(request: OrderRequest): Promise<string> {
    const [, csr] = await this.acme.crypto.createCsr({ commonName: request.names[0]!, altNames: request.names }, request.keyPem);
    const kind = (challenge: AcmeChallenge): ChallengeType => challenge.type as ChallengeType;
    return this.client.auto({
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
