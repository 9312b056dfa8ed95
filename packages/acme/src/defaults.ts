/** Every default of @wmproxy/acme, in one place (config and the README take them from here). */
export const ACME_DIRECTORIES = {
  production: 'https://acme-v02.api.letsencrypt.org/directory',
  staging: 'https://acme-staging-v02.api.letsencrypt.org/directory',
} as const;

export const ACME_DEFAULTS = {
  directory: ACME_DIRECTORIES.production,
  challenges: ['tls-alpn-01', 'http-01'] as const,
  /** Relative to the configuration file. */
  storage: 'acme',
  /** Renew when this fraction of the lifetime is left (Let's Encrypt's 90 days: 30 days before expiry). */
  renewFraction: 1 / 3,
  /** Renewal starts up to this fraction of the renewal window earlier, at random, so instances spread out. */
  renewJitter: 0.1,
  /** First retry after a failed order, doubling up to `retryMaxMs`. */
  retryMinMs: 60_000,
  retryMaxMs: 6 * 60 * 60_000,
  /**
   * An order (account, challenges, validation, finalization, download) that
   * has not completed after this long fails (a CA that never validates, a
   * stuck poll) and is retried with the backoff above.
   */
  orderTimeoutMs: 5 * 60_000,
  /** A tunnel domain whose clients all left keeps its certificate managed this long (a reconnecting client changes nothing). */
  tunnelLingerMs: 10 * 60_000,
  /** Most tunnel domains with certificates at once (wildcard allow lists would allow any number). */
  tunnelNamesMax: 500,
  /** A lock not refreshed for this long is taken over (its holder died). */
  lockLeaseMs: 2 * 60_000,
  /** How often a worker waiting for another's order checks the storage again. */
  lockPollMs: 2_000,
  /** HTTP→HTTPS redirect listener when `tls = "auto"`, on this port (where CAs send HTTP-01 requests). */
  redirect: true,
  httpPort: 80,
} as const;
