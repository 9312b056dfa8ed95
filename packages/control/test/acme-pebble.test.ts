// Automatic HTTPS against Pebble (Let's Encrypt's ACME test server, started
// here with pebble-challtestsrv as its DNS): issuance through HTTP-01 and
// TLS-ALPN-01 with curl trusting Pebble's root, a reload adding a name,
// renewal of short-lived certificates while curl keeps connecting, Pebble
// stopped during renewal, and two managers sharing storage ordering once.
// Issuance needs the npm package acme-client; without it those tests are
// skipped (and say so), and only Pebble itself is checked.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger, Server, createSelfSignedCertificate, parseAddress, silentLogger } from '@wmproxy/core-net';
import { loadConfig } from '@wmproxy/config';
import { AcmeClientAuthority, CertificateManager, CertificateStorage, acmeClientAvailable, type CertificateAuthority } from '@wmproxy/acme';
import { CHROMIUM, PEBBLE_MISSING, chromiumDumpDom, startPebble } from '@wmproxy/testkit';
import { curl, serialOf, until } from './helpers.js';
import { Instance } from '../src/index.js';

/** Pebble's orders take seconds: wait up to a minute. */
const eventually = (check: () => unknown, what: string): Promise<unknown> => until(check, what, 60_000);

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-pebble-e2e-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const NO_CLIENT = (await acmeClientAvailable()) ? undefined : 'the npm package acme-client (5.4.0) is not installed: issuance against Pebble is skipped';
const SKIP_ISSUANCE = PEBBLE_MISSING ?? NO_CLIENT;
if (SKIP_ISSUANCE) process.stderr.write(`# acme-pebble: ${SKIP_ISSUANCE}\n`);




test('Pebble starts, and its ACME directory answers over HTTPS trusting ca_root', { skip: PEBBLE_MISSING }, async () => {
  const pebble = await startPebble();
  try {
    const directory = await new Promise<Record<string, unknown>>((resolve, reject) => {
      https.get(pebble.directory, { ca: pebble.caRoot, agent: false }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve(JSON.parse(body) as Record<string, unknown>));
      }).on('error', reject);
    });
    assert.equal(typeof directory.newOrder, 'string');
    assert.match(await pebble.issuerRoot(), /BEGIN CERTIFICATE/);
  } finally {
    await pebble.close();
  }
});

for (const challenge of ['http-01', 'tls-alpn-01'] as const) {
  test(`Pebble issues through ${challenge}; curl trusting Pebble's root gets the page; a reload adds a name`, { skip: SKIP_ISSUANCE }, async () => {
    const pebble = await startPebble();
    const storage = mkdtempSync(join(scratch, 'storage-'));
    const file = join(scratch, `${challenge}.toml`);
    const write = (names: string[]): void =>
      writeFileSync(
        file,
        `[control]\nenabled = false\n[acme]\ndirectory = "${pebble.directory}"\nca_root = "${pebble.caRootFile}"\nemail = "ops@site.test"\nchallenges = ["${challenge}"]\nhttp_port = ${pebble.httpPort}\nstorage = "${storage}"\n` +
          names
            .map((name) => `[[server]]\nname = "${name}"\nlisten = "127.0.0.1:${pebble.tlsPort}"\nserver_name = ["${name}"]\ntls = "auto"\n[[server.location]]\npath = "/"\nrespond = { status = 200, body = "hello from ${name}" }\n`)
            .join(''),
      );
    write(['site.test']);
    const instance = await Instance.start(await loadConfig(file), { logger: silentLogger, load: () => loadConfig(file) });
    try {
      await instance.acme.issued(['site.test']);
      const root = join(scratch, `${challenge}-root.pem`);
      writeFileSync(root, await pebble.issuerRoot());
      const page = await curl(['--cacert', root, '--resolve', `site.test:${pebble.tlsPort}:127.0.0.1`, `https://site.test:${pebble.tlsPort}/`]);
      assert.equal(page.code, 0, page.stderr);
      assert.equal(page.stdout, 'hello from site.test');
      write(['site.test', 'new.site.test']);
      assert.equal((await instance.reload()).ok, true);
      await instance.acme.issued(['new.site.test']);
      const added = await curl(['--cacert', root, '--resolve', `new.site.test:${pebble.tlsPort}:127.0.0.1`, `https://new.site.test:${pebble.tlsPort}/`]);
      assert.equal(added.stdout, 'hello from new.site.test', added.stderr);
      if (challenge === 'http-01') {
        const redirect = await curl(['-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '-H', 'Host: site.test', `http://127.0.0.1:${pebble.httpPort}/x`]);
        assert.equal(redirect.stdout, `308 https://site.test:${pebble.tlsPort}/x`);
      }
    } finally {
      await instance.stop();
      await pebble.close();
    }
  });
}

/** A manager on Pebble with a TLS listener on Pebble's TLS-ALPN-01 port, retrying fast. */
async function managedListener(pebble: Awaited<ReturnType<typeof startPebble>>, storage: string, log: string[]) {
  const store = new CertificateStorage(storage);
  await store.init();
  const real = await AcmeClientAuthority.create({ directory: pebble.directory, caRoot: pebble.caRoot, accountKey: await store.accountKey(pebble.directory), httpRetries: { attempts: 0, delaySeconds: 0 } });
  const manager = new CertificateManager({
    authority: real,
    storage,
    challenges: ['tls-alpn-01'],
    renewal: { retryMinMs: 300, retryMaxMs: 1500 },
    logger: new Logger({ level: 'info', sink: { write: (line) => log.push(line) } }),
  });
  const fallback = createSelfSignedCertificate({ altNames: ['pending.invalid'] });
  const server = await new Server({
    addresses: [parseAddress(`127.0.0.1:${pebble.tlsPort}`)],
    tls: { ...fallback, select: (name) => manager.get(name), acmeTlsAlpn: (name) => manager.challenges.tlsAlpnAnswer(name) },
    onConnection(conn) {
      conn.setHandler({ data: (c) => { c.write(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok')); c.end(); }, end: (c) => c.end(), close() {} });
    },
  }).start();
  return { manager, server };
}

test('short-lived certificates renew while curl keeps connecting with no failed handshake', { skip: SKIP_ISSUANCE }, async () => {
  const pebble = await startPebble({ validitySeconds: 20 });
  const log: string[] = [];
  const { manager, server } = await managedListener(pebble, mkdtempSync(join(scratch, 'renew-')), log);
  try {
    await manager.manage([['renew.site.test']]);
    await manager.issued(['renew.site.test']);
    const root = join(scratch, 'renew-root.pem');
    writeFileSync(root, await pebble.issuerRoot());
    const rootPem = await pebble.issuerRoot();
    const first = await serialOf(pebble.tlsPort, 'renew.site.test', rootPem);
    let requests = 0;
    let failures = 0;
    let renewed = false;
    const started = Date.now();
    while (!renewed && Date.now() - started < 40_000) {
      const result = await curl(['--cacert', root, '--resolve', `renew.site.test:${pebble.tlsPort}:127.0.0.1`, `https://renew.site.test:${pebble.tlsPort}/`]);
      requests++;
      if (result.code !== 0) failures++;
      renewed = (await serialOf(pebble.tlsPort, 'renew.site.test', rootPem)) !== first;
    }
    assert.equal(renewed, true, 'renewed within the lifetime');
    assert.ok(requests > 5);
    assert.equal(failures, 0);
  } finally {
    manager.close();
    await server.shutdown({ deadlineMs: 200 });
    await pebble.close();
  }
});

test('Pebble stopped during renewal: the old certificate is served, retries are logged, renewal succeeds when it returns', { skip: SKIP_ISSUANCE }, async () => {
  const pebble = await startPebble();
  const log: string[] = [];
  const { manager, server } = await managedListener(pebble, mkdtempSync(join(scratch, 'down-')), log);
  try {
    await manager.manage([['down.site.test']]);
    await manager.issued(['down.site.test']);
    const rootBefore = await pebble.issuerRoot();
    const before = await serialOf(pebble.tlsPort, 'down.site.test', rootBefore);
    await pebble.stop();
    const fresh = manager.issued(['down.site.test'], true);
    manager.renewNow(['down.site.test']);
    await eventually(() => manager.list()[0]!.failures >= 2, 'two failed renewals').catch((error) => { throw new Error(`${error.message}; log:\n${log.join('')}; rows ${JSON.stringify(manager.list())}`); });
    assert.equal(await serialOf(pebble.tlsPort, 'down.site.test', rootBefore), before, 'the old certificate is still served');
    const failures = log.filter((line) => line.includes('order failed'));
    assert.ok(failures.length >= 2);
    assert.match(failures[0]!, /cannot be reached: connect ECONNREFUSED/);
    await pebble.restart();
    await fresh;
    assert.equal(manager.list()[0]!.status, 'valid');
    assert.notEqual(await serialOf(pebble.tlsPort, 'down.site.test', await pebble.issuerRoot()), before);
  } finally {
    manager.close();
    await server.shutdown({ deadlineMs: 200 });
    await pebble.close();
  }
});

test('Pebble that never validates (its DNS does not answer): orders fail at the order timeout with a clear error and are retried with backoff; order_timeout from the config', { skip: SKIP_ISSUANCE }, async () => {
  const pebble = await startPebble({ silentDns: true });
  const storage = mkdtempSync(join(scratch, 'stuck-'));
  const store = new CertificateStorage(storage);
  await store.init();
  const log: string[] = [];
  const authority = await AcmeClientAuthority.create({ directory: pebble.directory, caRoot: pebble.caRoot, accountKey: await store.accountKey(pebble.directory), httpRetries: { attempts: 0, delaySeconds: 0 } });
  const manager = new CertificateManager({
    authority,
    storage,
    challenges: ['http-01'],
    orderTimeoutMs: 1500,
    renewal: { retryMinMs: 300, retryMaxMs: 1200 },
    logger: new Logger({ level: 'info', sink: { write: (line) => log.push(line) } }),
  });
  const file = join(scratch, 'stuck.toml');
  writeFileSync(
    file,
    `[control]\nenabled = false\n[acme]\ndirectory = "${pebble.directory}"\nca_root = "${pebble.caRootFile}"\nchallenges = ["tls-alpn-01"]\norder_timeout = "2s"\nredirect = false\nstorage = "${mkdtempSync(join(scratch, 'stuck-instance-'))}"\n` +
      `[[server]]\nlisten = "127.0.0.1:${pebble.tlsPort}"\nserver_name = ["config.stuck.test"]\ntls = "auto"\n[[server.location]]\npath = "/"\nrespond = { status = 200 }\n`,
  );
  const instance = await Instance.start(await loadConfig(file), { logger: silentLogger });
  try {
    await manager.manage([['stuck.site.test']]);
    await eventually(() => manager.list()[0]!.failures >= 2, 'two timed-out orders').catch((error) => { throw new Error(`${error.message}; rows ${JSON.stringify(manager.list())}; log:\n${log.join('')}`); });
    const row = manager.list()[0]!;
    assert.equal(row.status, 'failing');
    assert.match(row.lastError!, /^the order did not complete within 1\.5 s \(the CA did not validate the challenges or finish the order; \[acme\] order_timeout\)$/);
    assert.equal(manager.get('stuck.site.test'), undefined);
    const failed = log.filter((line) => line.includes('order failed'));
    assert.match(failed[0]!, /\(1 in a row\): the order did not complete within 1\.5 s.*no certificate to serve yet; next try in/);
    assert.match(failed[1]!, /\(2 in a row\)/);
    // The key of the configuration reaches the instance's manager.
    await eventually(() => instance.acme.list()[0]?.status === 'failing', 'the configured instance\'s order to time out');
    assert.match(instance.acme.list()[0]!.lastError!, /did not complete within 2 s/);
  } finally {
    manager.close();
    await instance.stop();
    await pebble.close();
  }
});

test('two managers sharing storage place one order per name with Pebble', { skip: SKIP_ISSUANCE }, async () => {
  const pebble = await startPebble();
  const storage = mkdtempSync(join(scratch, 'shared-'));
  const store = new CertificateStorage(storage);
  await store.init();
  const real = await AcmeClientAuthority.create({ directory: pebble.directory, caRoot: pebble.caRoot, accountKey: await store.accountKey(pebble.directory) });
  const ordered: string[] = [];
  const counting: CertificateAuthority = { name: real.name, order: (request) => (ordered.push(request.names.join(',')), real.order(request)) };
  const [first, second] = [0, 1].map(() => new CertificateManager({ authority: counting, storage, challenges: ['tls-alpn-01'], lockPollMs: 50 }));
  // One listener on Pebble's TLS-ALPN-01 port answers for both: the second's challenges reach it through the shared storage.
  const fallback = createSelfSignedCertificate({ altNames: ['pending.invalid'] });
  const server = await new Server({
    addresses: [parseAddress(`127.0.0.1:${pebble.tlsPort}`)],
    tls: { ...fallback, select: (name) => first!.get(name), acmeTlsAlpn: (name) => first!.challenges.tlsAlpnAnswer(name) },
    onConnection: (conn) => conn.destroy(),
  }).start();
  try {
    await Promise.all([first!.manage([['one.site.test'], ['two.site.test']]), second!.manage([['one.site.test'], ['two.site.test']])]);
    await Promise.all(['one.site.test', 'two.site.test'].flatMap((name) => [first!.issued([name]), second!.issued([name])]));
    assert.deepEqual(ordered.sort(), ['one.site.test', 'two.site.test']);
    assert.equal(first!.get('one.site.test')!.cert, second!.get('one.site.test')!.cert);
  } finally {
    first!.close();
    second!.close();
    await server.shutdown({ deadlineMs: 200 });
    await pebble.close();
  }
});

const CERTUTIL_MISSING = spawnSync('certutil', ['-H'], { stdio: 'ignore' }).error !== undefined ? 'certutil is not installed (apt-get install libnss3-tools)' : undefined;

test('headless Chromium trusting Pebble\'s root (in its NSS store) loads a page from a tls = "auto" server', { skip: SKIP_ISSUANCE ?? (CHROMIUM ? CERTUTIL_MISSING : 'chromium is not installed') }, async () => {
  const pebble = await startPebble();
  const storage = mkdtempSync(join(scratch, 'chromium-storage-'));
  const file = join(scratch, 'chromium.toml');
  writeFileSync(
    file,
    `[control]\nenabled = false\n[acme]\ndirectory = "${pebble.directory}"\nca_root = "${pebble.caRootFile}"\nchallenges = ["tls-alpn-01"]\nredirect = false\nstorage = "${storage}"\n` +
      `[[server]]\nlisten = "127.0.0.1:${pebble.tlsPort}"\nserver_name = ["browser.site.test"]\ntls = "auto"\n[[server.location]]\npath = "/"\nrespond = { status = 200, body = "<h1 id=ok>served over automatic HTTPS</h1>", headers = { "Content-Type" = "text/html" } }\n`,
  );
  const instance = await Instance.start(await loadConfig(file), { logger: silentLogger });
  try {
    await instance.acme.issued(['browser.site.test']);
    // A HOME whose NSS database trusts Pebble's root, as an administrator would add a private CA.
    const home = mkdtempSync(join(scratch, 'home-'));
    const nssdb = join(home, '.pki', 'nssdb');
    mkdirSync(nssdb, { recursive: true });
    const root = join(home, 'pebble-root.pem');
    writeFileSync(root, await pebble.issuerRoot());
    execFileSync('certutil', ['-N', '-d', `sql:${nssdb}`, '--empty-password']);
    execFileSync('certutil', ['-A', '-d', `sql:${nssdb}`, '-t', 'C,,', '-n', 'pebble-root', '-i', root]);
    const dom = await chromiumDumpDom(`https://browser.site.test:${pebble.tlsPort}/`, {
      profileDir: mkdtempSync(join(scratch, 'profile-')),
      home,
      extra: ['--host-resolver-rules=MAP browser.site.test 127.0.0.1'],
    });
    assert.match(dom, /<h1 id="ok">served over automatic HTTPS<\/h1>/);
  } finally {
    await instance.stop();
    await pebble.close();
  }
});
