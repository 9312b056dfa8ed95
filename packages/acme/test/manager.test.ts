// The certificate manager against an in-process CA: issuance through both
// challenges, storage (0600, atomic, reloaded), renewal, a CA that goes down
// (old certificate kept, retries, recovery), reload adding and removing
// names, and two workers sharing storage ordering each certificate once.
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { Logger } from '@wmproxy/core-net';
import { CertificateManager, ChallengeStore, LeaseLock, rateLimitedUntil, renewalTime, retryDelay, acmeChallengeHandler, httpsRedirectHandler, type CertificateManagerOptions } from '../src/index.js';
import { FakeCa, until } from './fake-ca.js';

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanup.splice(0)) fn();
});
function storageDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-acme-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
function manager(ca: FakeCa, storage: string, extra: Partial<CertificateManagerOptions> = {}): { manager: CertificateManager; log: string[] } {
  const log: string[] = [];
  // Fast retries: a test waits seconds, not the minute of the default backoff, should an order fail.
  const made = new CertificateManager({ authority: ca, storage, logger: new Logger({ level: 'debug', sink: { write: (line) => log.push(line) } }), lockPollMs: 20, renewal: { retryMinMs: 100, retryMaxMs: 400 }, ...extra });
  if (!ca.answers) ca.store = made.challenges;
  cleanup.push(() => made.close());
  return { manager: made, log };
}
const names = (pair: { cert: string | Uint8Array } | undefined): string | undefined => (pair ? new X509Certificate(pair.cert as string).subjectAltName : undefined);
const serial = (pair: { cert: string | Uint8Array } | undefined): string | undefined => (pair ? new X509Certificate(pair.cert as string).serialNumber : undefined);

describe('certificate manager', () => {
  for (const challenge of ['http-01', 'tls-alpn-01'] as const) {
    test(`obtains a certificate at start through ${challenge} and serves it by SNI`, async () => {
      const ca = new FakeCa();
      const dir = storageDir();
      const { manager: m, log } = manager(ca, dir, { challenges: [challenge] });
      await m.manage([['Site.Test', 'www.site.test']]);
      assert.equal(m.get('site.test'), undefined, 'nothing to serve before the order completes');
      await m.issued(['site.test', 'www.site.test']);
      assert.deepEqual(ca.validated.slice(-2), [`${challenge} site.test`, `${challenge} www.site.test`], log.join(''));
      assert.equal(names(m.get('site.test')), 'DNS:site.test, DNS:www.site.test');
      assert.equal(m.get('www.site.test'), m.get('site.test'));
      assert.equal(m.get('other.test'), undefined);
      const [row] = m.list();
      assert.equal(row!.status, 'valid');
      assert.equal(row!.failures, 0);
      assert.ok(Date.parse(row!.nextRenewal!) < Date.parse(row!.notAfter!));
      // Keys and certificates are private, and no temporary file is left behind.
      const files = join(dir, 'certificates', readdirSync(join(dir, 'certificates'))[0]!);
      assert.deepEqual(readdirSync(files).sort(), ['cert.pem', 'key.pem']);
      for (const file of ['cert.pem', 'key.pem']) assert.equal(statSync(join(files, file)).mode & 0o777, 0o600);
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      // No challenge is left pending.
      assert.equal(m.challenges.tlsAlpn('site.test'), undefined);
      assert.equal(existsSync(join(dir, 'challenges')) ? readdirSync(join(dir, 'challenges')).length : 0, 0);
    });
  }

  test('a restart loads the stored certificate instead of ordering again', async () => {
    const ca = new FakeCa();
    const dir = storageDir();
    const first = manager(ca, dir).manager;
    await first.manage([['a.test']]);
    await first.issued(['a.test']);
    first.close();
    const second = manager(ca, dir).manager;
    await second.manage([['a.test']]);
    assert.equal(serial(second.get('a.test')), serial(first.get('a.test') ?? second.get('a.test')));
    assert.equal(ca.orders.length, 1);
  });

  test('renews a short-lived certificate in the background and swaps it in', async () => {
    const ca = new FakeCa();
    ca.lifetimeMs = 3000;
    const { manager: m, log } = manager(ca, storageDir(), { renewal: { renewFraction: 0.7, jitter: 0 } });
    await m.manage([['renew.test']]);
    await m.issued(['renew.test']);
    const before = m.get('renew.test');
    await m.issued(['renew.test'], true);
    assert.ok(ca.orders.length >= 2);
    assert.notEqual(serial(m.get('renew.test')), serial(before));
    assert.ok(log.some((line) => line.includes('certificate for renew.test issued by fake-ca')));
  });

  test('when the CA is down the previous certificate stays served, failures are logged with backoff, and it recovers', async () => {
    const ca = new FakeCa();
    const { manager: m, log } = manager(ca, storageDir(), { renewal: { retryMinMs: 30, retryMaxMs: 120 } });
    await m.manage([['down.test']]);
    await m.issued(['down.test']);
    const old = m.get('down.test');
    ca.down = true;
    const fresh = m.issued(['down.test'], true);
    m.renewNow(['down.test']);
    await until(() => m.list()[0]!.failures >= 3, 'three failed renewals');
    assert.equal(m.get('down.test'), old, 'the old certificate is still served');
    const row = m.list()[0]!;
    assert.equal(row.status, 'failing');
    assert.match(row.lastError!, /ECONNREFUSED/);
    const warnings = log.filter((line) => line.includes('order failed'));
    assert.ok(warnings.length >= 3);
    assert.match(warnings[0]!, /still serving the certificate valid until/);
    ca.down = false;
    await fresh;
    assert.notEqual(serial(m.get('down.test')), serial(old));
    assert.equal(m.list()[0]!.failures, 0);
    assert.equal(m.list()[0]!.status, 'valid');
  });

  test('an order the CA never validates fails at order_timeout with a clear error, its challenges withdrawn, and is retried with backoff', async () => {
    const ca = new FakeCa();
    ca.stuck = true;
    const dir = storageDir();
    const { manager: m, log } = manager(ca, dir, { challenges: ['http-01'], orderTimeoutMs: 100, renewal: { retryMinMs: 40, retryMaxMs: 160 } });
    await m.manage([['stuck.test']]);
    await until(() => m.list()[0]!.failures >= 3, 'three timed-out orders');
    const row = m.list()[0]!;
    assert.equal(row.status, 'failing');
    assert.match(row.lastError!, /the order did not complete within 0\.1 s .*order_timeout/);
    assert.equal(m.get('stuck.test'), undefined);
    const failed = log.filter((line) => line.includes('order failed'));
    assert.ok(failed.length >= 3);
    assert.match(failed[0]!, /\(1 in a row\).*no certificate to serve yet; next try in/);
    assert.match(failed[1]!, /\(2 in a row\)/);
    // Each try is a new order; the retry is planned (backoff), not immediate.
    assert.ok(ca.orders.length >= 3);
    assert.ok(Date.parse(row.nextRenewal!) > Date.now() - 1000);
    // Every abandoned order's HTTP-01 answer was withdrawn, from memory and from the shared storage.
    const pending = existsSync(join(dir, 'challenges')) ? readdirSync(join(dir, 'challenges')) : [];
    await until(() => (existsSync(join(dir, 'challenges')) ? readdirSync(join(dir, 'challenges')).length : 0) <= 1, 'challenges withdrawn');
    assert.ok(pending.length <= 1, `at most the running order's answer is pending: ${pending.join(', ')}`);
    // The CA recovers: the next retry succeeds.
    ca.stuck = false;
    await m.issued(['stuck.test']);
    assert.equal(m.list()[0]!.status, 'valid');
    assert.equal(m.list()[0]!.failures, 0);
  });

  test('a CA refusing for its rate limits is not asked again before the time it names, and the log says so', async () => {
    const ca = new FakeCa();
    const until2 = new Date(Date.now() + 3 * 3600_000);
    until2.setUTCMilliseconds(0);
    const stamp = until2.toISOString().replace('T', ' ').replace('.000Z', ' UTC');
    const limited = { name: 'limited-ca', order: async () => { ca.orders.push(['limited.test']); throw new Error(`urn:ietf:params:acme:error:rateLimited: too many certificates (5) already issued for this exact set of domains in the last 168h0m0s, retry after ${stamp}: see https://letsencrypt.org/docs/rate-limits/`); } };
    const { manager: m, log } = manager(ca, storageDir(), { authority: limited });
    await m.manage([['limited.test']]);
    await until(() => m.list()[0]!.failures === 1, 'the refused order');
    assert.equal(m.list()[0]!.nextRenewal, until2.toISOString());
    assert.match(log.find((line) => line.includes('order failed'))!, new RegExp(`rate-limited by the CA until ${until2.toISOString().replace(/\./g, '\\.')}`));
    assert.equal(ca.orders.length, 1);
  });

  test('a reload adds names (ordered) and removes others (no longer served) without touching the rest', async () => {
    const ca = new FakeCa();
    const { manager: m } = manager(ca, storageDir());
    await m.manage([['one.test']]);
    await m.issued(['one.test']);
    const one = m.get('one.test');
    const before = ca.orders.length;
    await m.manage([['one.test'], ['two.test']]);
    await m.issued(['two.test']);
    assert.equal(m.get('one.test'), one);
    // After the reload only two.test is ordered (more than once only if a try failed under load and was retried).
    assert.deepEqual([...new Set(ca.orders.slice(before).map((order) => order.join()))], ['two.test']);
    await m.manage([['two.test']]);
    assert.equal(m.get('one.test'), undefined);
    assert.deepEqual(m.list().map((row) => row.names), [['two.test']]);
  });

  test('two workers sharing the storage order each certificate once and serve the same one', async () => {
    const ca = new FakeCa();
    ca.delayMs = 200;
    const dir = storageDir();
    const a = manager(ca, dir).manager;
    const b = manager(ca, dir).manager;
    await Promise.all([a.manage([['shared.test'], ['other.test']]), b.manage([['shared.test'], ['other.test']])]);
    await Promise.all([a.issued(['shared.test']), b.issued(['shared.test']), a.issued(['other.test']), b.issued(['other.test'])]);
    assert.equal(ca.orders.filter((order) => order[0] === 'shared.test').length, 1);
    assert.equal(ca.orders.filter((order) => order[0] === 'other.test').length, 1);
    assert.equal(serial(a.get('shared.test')), serial(b.get('shared.test')));
    assert.equal(readdirSync(join(dir, 'locks')).filter((file) => file.endsWith('.lock')).length, 0, 'locks are released');
  });

  test('workers sharing the storage back off together after a failed order: one failed order per round, the same error and retry time everywhere', async () => {
    const ca = new FakeCa();
    ca.down = true;
    ca.delayMs = 100;
    const dir = storageDir();
    const slow = { renewal: { retryMinMs: 60_000, retryMaxMs: 120_000 } };
    const a = manager(ca, dir, slow).manager;
    const b = manager(ca, dir, slow).manager;
    await Promise.all([a.manage([['down.test']]), b.manage([['down.test']])]);
    await until(() => a.list()[0]!.status === 'failing' && b.list()[0]!.status === 'failing', 'both failing');
    assert.equal(ca.orders.length, 1, 'the second worker waited with the first instead of ordering');
    const [rowA, rowB] = [a.list()[0]!, b.list()[0]!];
    assert.equal(rowB.lastError, rowA.lastError);
    assert.match(rowB.lastError!, /ECONNREFUSED/);
    assert.equal(rowB.failures, 1);
    assert.equal(rowB.nextRenewal, rowA.nextRenewal);
    // A success clears the shared state: a manager started now orders at once.
    ca.down = false;
    a.renewNow(['down.test']);
    await a.issued(['down.test']);
    assert.deepEqual(readdirSync(join(dir, 'locks')).filter((file) => file.endsWith('.backoff')), []);
  });
});

describe('lease lock', () => {
  test('is exclusive while the lease lives, and taken over once it ran out', async () => {
    const dir = storageDir();
    const path = join(dir, 'locks', 'x.lock');
    const holder = new LeaseLock(path, 60_000);
    const other = new LeaseLock(path, 60_000);
    assert.equal(await holder.tryAcquire(), true);
    assert.equal(await other.tryAcquire(), false);
    assert.equal(await other.busy(), true);
    await holder.release();
    assert.equal(await other.tryAcquire(), true);
    await other.release();
    // A dead holder's lease (expired) does not block.
    mkdirSync(join(dir, 'locks'), { recursive: true });
    writeFileSync(path, JSON.stringify({ owner: 'dead:1', expires: Date.now() - 1 }));
    assert.equal(await holder.tryAcquire(), true);
    await holder.release();
  });
});

test('of many workers racing for a free lock, exactly one gets it (the file never exists without its lease)', async () => {
  const dir = storageDir();
  for (let round = 0; round < 30; round++) {
    const path = join(dir, 'locks', `race-${round}.lock`);
    const locks = Array.from({ length: 8 }, () => new LeaseLock(path, 60_000));
    const won = await Promise.all(locks.map((lock) => lock.tryAcquire()));
    assert.equal(won.filter(Boolean).length, 1, `round ${round}`);
    await Promise.all(locks.map((lock) => lock.release()));
  }
});

describe('renewal policy', () => {
  test('the time a rate-limited CA names is read from its problem detail, and nothing is read from other errors', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T23:59:59Z'), noInvalidDate: true }), fc.string(), (date, noise) => {
        const at = new Date(Math.floor(date.getTime() / 1000) * 1000);
        const stamp = at.toISOString().replace('T', ' ').replace('.000Z', ' UTC');
        assert.equal(rateLimitedUntil(`urn:ietf:params:acme:error:rateLimited: too many failed authorizations recently, retry after ${stamp}: ${noise}`), at.getTime());
        assert.equal(rateLimitedUntil(`connect ECONNREFUSED, retry after ${stamp}`), undefined);
      }),
    );
    assert.equal(rateLimitedUntil('urn:ietf:params:acme:error:rateLimited: too many new orders'), undefined);
  });

  test('renews with a third of the lifetime left by default, earlier by at most the jitter', () => {
    const day = 24 * 3600_000;
    assert.equal(renewalTime(0, 90 * day, {}, 0), 60 * day);
    assert.equal(renewalTime(0, 90 * day, { renewBeforeMs: 10 * day }, 0), 80 * day);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e12 }), fc.integer({ min: 1, max: 1e11 }), fc.double({ min: 0, max: 0.999, noNaN: true }), (start, lifetime, random) => {
        const at = renewalTime(start, start + lifetime, {}, random);
        assert.ok(at <= start + lifetime - lifetime / 3 + 1e-3);
        assert.ok(at >= start + lifetime - (lifetime / 3) * 1.1 - 1e-3);
        assert.ok(at >= start);
      }),
    );
  });

  test('retries back off exponentially up to the ceiling', () => {
    const policy = { retryMinMs: 1000, retryMaxMs: 60_000 };
    assert.deepEqual([1, 2, 3, 4, 10].map((n) => retryDelay(n, policy, 0)), [1000, 2000, 4000, 8000, 60_000]);
    fc.assert(fc.property(fc.integer({ min: 1, max: 200 }), fc.double({ min: 0, max: 0.999, noNaN: true }), (n, random) => {
      const delay = retryDelay(n, policy, random);
      assert.ok(delay >= 500 && delay <= 60_000);
    }));
  });
});

describe('HTTP answers', () => {
  test('HTTP-01 tokens are answered by any worker sharing the storage; unknown and malformed ones are 404', async () => {
    const dir = storageDir();
    const placing = new ChallengeStore(dir);
    const answering = acmeChallengeHandler(new ChallengeStore(dir));
    const token = 'AbCdEfGhIjKlMnOpQrStUv_-0123';
    await placing.present('http-01', 'a.test', token, `${token}.thumb`);
    const request = (path: string) => ({ method: 'GET', target: path, path, header: () => 'a.test' });
    const ok = await answering.handle(request(`/.well-known/acme-challenge/${token}`));
    assert.equal(ok.status, 200);
    assert.equal(ok.body, `${token}.thumb`);
    for (const path of ['/.well-known/acme-challenge/unknown-token-0123456', '/.well-known/acme-challenge/../../etc/passwd', '/.well-known/acme-challenge/']) {
      assert.equal((await answering.handle(request(path))).status, 404);
    }
    await assert.rejects(placing.present('http-01', 'a.test', '../escape', 'x'), /unexpected characters/);
    await placing.cleanUp('http-01', 'a.test', token);
    assert.equal((await answering.handle(request(`/.well-known/acme-challenge/${token}`))).status, 404);
  });

  test('the redirect keeps host and target, drops the port, and refuses a bad Host', async () => {
    const handler = httpsRedirectHandler(443);
    const answer = await handler.handle({ method: 'POST', target: '/a?b=c', path: '/a', header: () => 'Site.test:80' });
    assert.equal(answer.status, 308);
    assert.deepEqual(answer.headers.find(([name]) => name === 'Location'), ['Location', 'https://site.test/a?b=c']);
    const other = await httpsRedirectHandler(8443).handle({ method: 'GET', target: '/', path: '/', header: () => 'site.test' });
    assert.deepEqual(other.headers.find(([name]) => name === 'Location'), ['Location', 'https://site.test:8443/']);
    for (const host of [undefined, '', 'evil.test/x', 'a b']) {
      assert.equal((await handler.handle({ method: 'GET', target: '/', path: '/', header: () => host })).status, 400);
    }
  });
});
