/**
 * The certificate manager: one certificate per set of names, loaded from the
 * storage or ordered from the CA, served through `get(servername)` (core-net
 * asks at each handshake, so a new certificate is used at once, without a
 * restart), renewed in the background before it expires, and retried with
 * exponential backoff when the CA fails, keeping the previous certificate.
 * Several workers or instances sharing the storage order each certificate
 * once: the one holding the lease orders, the others wait and load its result.
 */
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger, type TlsKeyPair } from '@wmproxy/core-net';
import { ChallengeStore } from './challenges.js';
import { readOptional, writeFileAtomic } from './files.js';
import { ACME_DEFAULTS } from './defaults.js';
import { LeaseLock } from './lock.js';
import { rateLimitedUntil, renewalTime, retryDelay, type RenewalPolicy } from './renewal.js';
import { CertificateStorage, certificateId, newPrivateKey, type StoredCertificate } from './storage.js';
import type { CertificateAuthority, CertificateStatus, ChallengeSolver, ChallengeType, ManagedCertificate } from './types.js';

export interface CertificateManagerOptions {
  authority: CertificateAuthority;
  /** Storage directory (created 0700). */
  storage: string;
  /** Challenge types in order of preference (default TLS-ALPN-01, then HTTP-01). */
  challenges?: readonly ChallengeType[];
  renewal?: RenewalPolicy;
  /** An order not complete after this long fails and is retried with backoff (default `ACME_DEFAULTS.orderTimeoutMs`). */
  orderTimeoutMs?: number;
  lockLeaseMs?: number;
  lockPollMs?: number;
  logger?: Logger;
  /** For tests. */
  random?: () => number;
  now?: () => number;
}

/** `locks/<id>.backoff`: written by the worker whose order failed, so that the others sharing the storage wait with it. */
interface Backoff {
  failures: number;
  error: string;
  retryAt: number;
}

/** setTimeout's largest delay; a later time is reached in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Entry {
  id: string;
  names: string[];
  pair: TlsKeyPair | undefined;
  stored: StoredCertificate | undefined;
  status: CertificateStatus;
  failures: number;
  lastError: string | undefined;
  /** When the timer fires next (renewal, retry or a look at another worker's order). */
  nextAt: number | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  running: boolean;
  /** Aborts the order in progress (the manager closing). */
  abort: AbortController | undefined;
  removed: boolean;
  /** Resolved at each new certificate. */
  waiters: Array<() => void>;
}

export class CertificateManager {
  /** Pending challenges: the engine serves them (HTTP-01 on port 80, TLS-ALPN-01 on the TLS listener). */
  readonly challenges: ChallengeStore;
  readonly storage: CertificateStorage;
  private readonly entries = new Map<string, Entry>();
  private readonly exact = new Map<string, Entry>();
  private readonly wildcard = new Map<string, Entry>();
  private readonly logger: Logger;
  private readonly random: () => number;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly options: CertificateManagerOptions) {
    this.storage = new CertificateStorage(options.storage);
    this.challenges = new ChallengeStore(join(options.storage, 'challenges'));
    this.logger = (options.logger ?? silentLogger).child({ component: 'acme' });
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
  }

  /**
   * Manage exactly these sets of names (each one certificate). New sets are
   * loaded from the storage and ordered or renewed in the background; sets no
   * longer listed stop being renewed and served. Resolves once the stored
   * certificates are loaded (orders go on in the background).
   */
  async manage(sets: ReadonlyArray<readonly string[]>): Promise<void> {
    if (this.closed) throw new Error('the certificate manager is closed');
    await this.storage.init();
    const wanted = new Map<string, string[]>();
    for (const set of sets) {
      const names = [...new Set(set.map((name) => name.toLowerCase()))];
      if (names.length > 0) wanted.set(certificateId(names), names);
    }
    for (const [id, entry] of this.entries) {
      if (wanted.has(id)) continue;
      entry.removed = true;
      if (entry.timer) clearTimeout(entry.timer);
      this.entries.delete(id);
    }
    const added: Entry[] = [];
    for (const [id, names] of wanted) {
      if (this.entries.has(id)) continue;
      const entry: Entry = { id, names, pair: undefined, stored: undefined, status: 'obtaining', failures: 0, lastError: undefined, nextAt: undefined, timer: undefined, running: false, abort: undefined, removed: false, waiters: [] };
      this.entries.set(id, entry);
      added.push(entry);
    }
    this.index();
    await Promise.all(
      added.map(async (entry) => {
        const stored = await this.storage.load(entry.names).catch(() => undefined);
        if (stored && stored.notAfter.getTime() > this.now()) this.adopt(entry, stored, 'loaded from storage');
        else this.schedule(entry, 0);
      }),
    );
  }

  /** The certificate to serve for a server name (exact, then `*.parent`), or undefined. */
  get(servername: string): TlsKeyPair | undefined {
    const exact = this.exact.get(servername);
    if (exact) return exact.pair;
    const dot = servername.indexOf('.');
    return dot > 0 ? this.wildcard.get(servername.slice(dot + 1))?.pair : undefined;
  }

  /** Resolves when the certificate of these names is next issued or loaded (at once if it has one and `fresh` is false). */
  issued(names: readonly string[], fresh = false): Promise<void> {
    const entry = this.entries.get(certificateId(names.map((name) => name.toLowerCase())));
    if (!entry) return Promise.reject(new Error(`${names.join(', ')} is not managed`));
    if (entry.pair && !fresh) return Promise.resolve();
    return new Promise((resolve) => entry.waiters.push(resolve));
  }

  /** Start renewal of these names now (as if it were due); for `wmproxy certs --renew` and tests. */
  renewNow(names: readonly string[]): void {
    const entry = this.entries.get(certificateId(names.map((name) => name.toLowerCase())));
    if (entry && !entry.running) this.schedule(entry, 0, true);
  }

  list(): ManagedCertificate[] {
    return [...this.entries.values()].map((entry) => ({
      names: [...entry.names],
      status: entry.status,
      issuer: entry.stored?.issuer,
      notBefore: entry.stored?.notBefore.toISOString(),
      notAfter: entry.stored?.notAfter.toISOString(),
      nextRenewal: entry.nextAt !== undefined ? new Date(entry.nextAt).toISOString() : undefined,
      failures: entry.failures,
      lastError: entry.lastError,
    }));
  }

  close(): void {
    this.closed = true;
    for (const entry of this.entries.values()) {
      entry.removed = true;
      if (entry.timer) clearTimeout(entry.timer);
      entry.abort?.abort();
    }
    this.entries.clear();
    this.index();
  }

  private index(): void {
    this.exact.clear();
    this.wildcard.clear();
    for (const entry of this.entries.values()) {
      for (const name of entry.names) {
        if (name.startsWith('*.')) this.wildcard.set(name.slice(2), entry);
        else this.exact.set(name, entry);
      }
    }
  }

  /** Serve a certificate and plan its renewal. */
  private adopt(entry: Entry, stored: StoredCertificate, how: string): void {
    entry.stored = stored;
    entry.pair = { cert: stored.cert, key: stored.key };
    entry.status = 'valid';
    entry.failures = 0;
    entry.lastError = undefined;
    const at = renewalTime(stored.notBefore.getTime(), stored.notAfter.getTime(), this.options.renewal ?? {}, this.random());
    this.logger.info(`certificate for ${entry.names.join(', ')} ${how}`, { notAfter: stored.notAfter.toISOString(), renewAt: new Date(at).toISOString() });
    this.schedule(entry, at - this.now());
    for (const resolve of entry.waiters.splice(0)) resolve();
  }

  private schedule(entry: Entry, delayMs: number, force = false): void {
    this.scheduleAt(entry, this.now() + delayMs, force);
  }

  private scheduleAt(entry: Entry, at: number, force = false): void {
    if (entry.removed) return;
    if (entry.timer) clearTimeout(entry.timer);
    const delay = Math.max(0, at - this.now());
    entry.nextAt = Math.max(at, this.now());
    entry.timer = setTimeout(() => void this.run(entry, force), Math.min(delay, MAX_TIMER_MS));
    // Renewal timers (days away) must not keep a stopping process alive; imminent work (an order, a retry) may.
    if (delay > 60_000) entry.timer.unref?.();
  }

  /** Renewal is due (or a retry, or a look at another worker's order). */
  private async run(entry: Entry, force: boolean): Promise<void> {
    entry.timer = undefined;
    if (entry.removed || entry.running) return;
    // A timer capped at MAX_TIMER_MS fired early: wait on.
    if (!force && entry.nextAt !== undefined && entry.nextAt - this.now() > 1000) return this.schedule(entry, entry.nextAt - this.now());
    entry.running = true;
    const lock = new LeaseLock(this.storage.path('locks', `${entry.id}.lock`), this.options.lockLeaseMs ?? ACME_DEFAULTS.lockLeaseMs, this.now);
    let holding = false;
    try {
      holding = await lock.tryAcquire();
      if (!holding) {
        // Another worker or instance is ordering this certificate: look at the storage again soon.
        entry.status = 'waiting';
        this.schedule(entry, this.options.lockPollMs ?? ACME_DEFAULTS.lockPollMs, force);
        return;
      }
      // Someone may have renewed it while we waited for the lock.
      const stored = await this.storage.load(entry.names).catch(() => undefined);
      if (stored && (!entry.stored || stored.notAfter > entry.stored.notAfter) && stored.notAfter.getTime() > this.now()) {
        const renewAt = renewalTime(stored.notBefore.getTime(), stored.notAfter.getTime(), this.options.renewal ?? {}, 0.5);
        if (renewAt > this.now()) {
          holding = false;
          await lock.release();
          this.adopt(entry, stored, 'loaded from storage (ordered by another worker)');
          return;
        }
      }
      const backoff = force ? undefined : await this.readBackoff(entry);
      if (backoff && backoff.retryAt - this.now() > 1000) {
        // Another worker or instance failed this order and backs off: wait with it (one failed order per round, not one per worker), showing its error.
        holding = false;
        await lock.release();
        entry.failures = Math.max(entry.failures, backoff.failures);
        entry.lastError = backoff.error;
        entry.status = 'failing';
        this.scheduleAt(entry, backoff.retryAt);
        return;
      }
      entry.status = entry.pair ? 'renewing' : 'obtaining';
      const key = newPrivateKey();
      this.logger.info(`ordering a certificate for ${entry.names.join(', ')}`, { ca: this.options.authority.name });
      const chain = await this.order(entry, key);
      // Stored even when the names were dropped meanwhile (a tunnel client that left): the CA's work is not thrown away, and a return loads it.
      const saved = await this.storage.save(entry.names, chain, key);
      await unlink(this.backoffPath(entry)).catch(() => undefined);
      // Released before anyone waiting on this certificate is told.
      holding = false;
      await lock.release();
      if (entry.removed) return;
      this.adopt(entry, saved, `issued by ${this.options.authority.name}`);
    } catch (error) {
      if (entry.removed) return;
      entry.failures += 1;
      entry.lastError = (error as Error).message ?? String(error);
      entry.status = 'failing';
      const limited = rateLimitedUntil(entry.lastError);
      const failedAt = this.now();
      const delay = Math.max(retryDelay(entry.failures, this.options.renewal ?? {}, this.random()), (limited ?? 0) - failedAt);
      const retryAt = failedAt + delay;
      // Shown with the failure count at once (/certs, the dashboard): the timer is only set after the awaits below.
      entry.nextAt = retryAt;
      const serving = entry.stored ? `still serving the certificate valid until ${entry.stored.notAfter.toISOString()}` : 'no certificate to serve yet';
      this.logger.warn(`certificate for ${entry.names.join(', ')}: order failed (${entry.failures} in a row): ${entry.lastError}; ${serving}; ${limited !== undefined ? `rate-limited by the CA until ${new Date(limited).toISOString()}; ` : ''}next try in ${Math.round(delay / 1000)} s`, {
        ca: this.options.authority.name,
      });
      if (holding) {
        const shared: Backoff = { failures: entry.failures, error: entry.lastError, retryAt };
        await writeFileAtomic(this.backoffPath(entry), JSON.stringify(shared)).catch(() => undefined);
        holding = false;
        await lock.release();
      }
      // Planned last: nothing awaited after it, so the retry never finds this run still going.
      this.scheduleAt(entry, retryAt);
    } finally {
      entry.running = false;
      if (holding) await lock.release();
    }
  }

  private backoffPath(entry: Entry): string {
    return this.storage.path('locks', `${entry.id}.backoff`);
  }

  /** The failure state the last failed order of these names left for everyone sharing the storage. */
  private async readBackoff(entry: Entry): Promise<Backoff | undefined> {
    const text = await readOptional(this.backoffPath(entry)).catch(() => undefined);
    if (text === undefined) return undefined;
    try {
      const value = JSON.parse(text) as Partial<Backoff>;
      if (typeof value.failures === 'number' && typeof value.error === 'string' && typeof value.retryAt === 'number') return value as Backoff;
    } catch {
      /* a torn or foreign file: ignored */
    }
    return undefined;
  }

  /**
   * One order, given up after `orderTimeoutMs`: the authority is told through
   * the signal, challenges it presented are withdrawn, and a late answer is
   * ignored (the next try places a new order).
   */
  private async order(entry: Entry, keyPem: string): Promise<string> {
    const limitMs = this.options.orderTimeoutMs ?? ACME_DEFAULTS.orderTimeoutMs;
    const abort = new AbortController();
    entry.abort = abort;
    const presented = new Map<string, [ChallengeType, string, string]>();
    const store = this.challenges;
    const solver: ChallengeSolver = {
      async present(type, name, token, keyAuthorization) {
        if (abort.signal.aborted) throw new Error('the order was abandoned');
        presented.set(`${type} ${name} ${token}`, [type, name, token]);
        await store.present(type, name, token, keyAuthorization);
      },
      async cleanUp(type, name, token) {
        presented.delete(`${type} ${name} ${token}`);
        await store.cleanUp(type, name, token);
      },
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const placed = this.options.authority.order({ names: entry.names, keyPem, challenges: this.options.challenges ?? ACME_DEFAULTS.challenges, solver, signal: abort.signal });
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`the order did not complete within ${seconds(limitMs)} (the CA did not validate the challenges or finish the order; [acme] order_timeout)`));
      }, limitMs);
      abort.signal.addEventListener('abort', () => reject(new Error('the certificate manager closed during the order')), { once: true });
    });
    try {
      return await Promise.race([placed, expired]);
    } catch (error) {
      // The abandoned order may still settle: nobody waits for it.
      placed.catch(() => undefined);
      abort.abort();
      await Promise.all([...presented.values()].map(([type, name, token]) => store.cleanUp(type, name, token).catch(() => undefined)));
      throw error;
    } finally {
      clearTimeout(timer);
      if (entry.abort === abort) entry.abort = undefined;
    }
  }
}

function seconds(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${Math.round(ms / 100) / 10} s`;
}
