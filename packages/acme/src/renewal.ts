/** When to renew and when to retry: pure functions, so the policy is tested without clocks. */
import { ACME_DEFAULTS } from './defaults.js';

export interface RenewalPolicy {
  /** Renew this long before expiry; undefined: `renewFraction` of the lifetime. */
  renewBeforeMs?: number;
  renewFraction?: number;
  /** Fraction of the renewal window by which renewal may start earlier, at random. */
  jitter?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** The time renewal of a certificate valid from `notBefore` to `notAfter` starts. `random` in [0, 1). */
export function renewalTime(notBefore: number, notAfter: number, policy: RenewalPolicy, random: number): number {
  const lifetime = Math.max(0, notAfter - notBefore);
  const window = Math.min(lifetime, policy.renewBeforeMs ?? lifetime * (policy.renewFraction ?? ACME_DEFAULTS.renewFraction));
  const jitter = window * (policy.jitter ?? ACME_DEFAULTS.renewJitter) * random;
  return notAfter - window - jitter;
}

/** Wait before retry number `failures` (1 = the first retry): doubling from retryMinMs up to retryMaxMs, with up to 20% taken off at random. */
export function retryDelay(failures: number, policy: RenewalPolicy, random: number): number {
  const min = policy.retryMinMs ?? ACME_DEFAULTS.retryMinMs;
  const max = policy.retryMaxMs ?? ACME_DEFAULTS.retryMaxMs;
  const full = Math.min(max, min * 2 ** Math.min(30, Math.max(0, failures - 1)));
  return Math.max(min / 2, full * (1 - 0.2 * random));
}

/**
 * When a CA that refused an order for its rate limits says to come back
 * (Let's Encrypt's problem detail ends "retry after 2026-01-02 03:04:05 UTC");
 * undefined for other errors or without a time. Retrying earlier only fails again.
 */
export function rateLimitedUntil(message: string): number | undefined {
  if (!/rateLimited|too many/i.test(message)) return undefined;
  const match = /retry after (\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.\d+)? ?(?:UTC|Z)/i.exec(message);
  if (!match) return undefined;
  const at = Date.parse(`${match[1]}T${match[2]}Z`);
  return Number.isNaN(at) ? undefined : at;
}
