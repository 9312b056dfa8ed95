// `wmproxy certs` against a running `wmproxy run` whose server has
// tls = "auto", with Pebble as the CA: the certificate is listed with its
// names, status, issuer and dates (text and --json).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PEBBLE_MISSING, startPebble } from '@wmproxy/testkit';
import { Running, wmproxy } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-cli-certs-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

test('wmproxy certs lists the certificates of a running instance (names, status, issuer, expiry, next renewal)', { skip: PEBBLE_MISSING }, async () => {
  const pebble = await startPebble();
  const file = join(scratch, 'auto.toml');
  writeFileSync(
    file,
    `[control]\nlisten = "127.0.0.1:0"\n[acme]\ndirectory = "${pebble.directory}"\nca_root = "${pebble.caRootFile}"\nchallenges = ["tls-alpn-01"]\nredirect = false\nstorage = "${join(scratch, 'acme')}"\n` +
      `[[server]]\nname = "site"\nlisten = "127.0.0.1:${pebble.tlsPort}"\nserver_name = ["cli.site.test", "www.cli.site.test"]\ntls = "auto"\n[[server.location]]\npath = "/"\nrespond = { status = 200 }\n`,
  );
  const running = new Running(['run', '-c', file]);
  try {
    const control = (await running.waitFor(/control control listening on (\S+)/))[1]!;
    let rows: Array<{ names: string[]; status: string; issuer: string; notAfter: string; nextRenewal: string }> = [];
    for (let attempt = 0; attempt < 200 && rows[0]?.status !== 'valid'; attempt++) {
      const json = await wmproxy(['certs', '--control', control, '--json']);
      assert.equal(json.code, 0, json.stderr);
      rows = (JSON.parse(json.stdout) as { certificates: typeof rows }).certificates;
      if (rows[0]?.status !== 'valid') await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(rows.map((row) => [row.names, row.status]), [[['cli.site.test', 'www.cli.site.test'], 'valid']]);
    assert.match(rows[0]!.issuer, /Pebble/);
    const text = await wmproxy(['certs', '--control', control]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^cli\.site\.test, www\.cli\.site\.test\n {2}status valid\n {2}issuer CN=Pebble/m);
    assert.match(text.stdout, /next renewal \d{4}-/);
  } finally {
    running.kill();
    await pebble.close();
  }
});

test('with workers, the primary\'s wmproxy certs and /metrics show each certificate\'s renewal time, and the error of one that fails; the two workers place one order per name', { skip: PEBBLE_MISSING }, async () => {
  const pebble = await startPebble();
  // The CA's DNS sends validation of this name where nothing listens: its orders fail.
  await pebble.resolve('broken.site.test', '127.0.0.2');
  const file = join(scratch, 'workers.toml');
  writeFileSync(
    file,
    `workers = 2\n[control]\nlisten = "127.0.0.1:0"\n[acme]\ndirectory = "${pebble.directory}"\nca_root = "${pebble.caRootFile}"\nchallenges = ["tls-alpn-01"]\nredirect = false\nstorage = "${join(scratch, 'acme-workers')}"\n` +
      ['good', 'broken'].map((name) => `[[server]]\nname = "${name}"\nlisten = "127.0.0.1:${pebble.tlsPort}"\nserver_name = ["${name}.site.test"]\ntls = "auto"\n[[server.location]]\npath = "/"\nrespond = { status = 200 }\n`).join(''),
  );
  const running = new Running(['run', '-c', file]);
  type Row = { names: string[]; status: string; nextRenewal?: string; failures: number; lastError?: string };
  try {
    const control = (await running.waitFor(/control control listening on (\S+)/))[1]!;
    let rows: Row[] = [];
    const settled = (): boolean => rows.find((row) => row.names[0] === 'good.site.test')?.status === 'valid' && (rows.find((row) => row.names[0] === 'broken.site.test')?.failures ?? 0) >= 1;
    for (let attempt = 0; attempt < 300 && !settled(); attempt++) {
      const json = await wmproxy(['certs', '--control', control, '--json']);
      assert.equal(json.code, 0, json.stderr);
      rows = (JSON.parse(json.stdout) as { certificates: Row[] }).certificates;
      if (!settled()) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(settled(), JSON.stringify(rows));
    const good = rows.find((row) => row.names[0] === 'good.site.test')!;
    const broken = rows.find((row) => row.names[0] === 'broken.site.test')!;
    assert.ok(Date.parse(good.nextRenewal!) > Date.now(), 'the renewal time the managing worker planned');
    assert.equal(broken.status, 'failing');
    assert.match(broken.lastError!, /\S/);
    assert.ok(Date.parse(broken.nextRenewal!) > Date.now() - 1000, 'the retry time');
    const text = await wmproxy(['certs', '--control', control]);
    assert.match(text.stdout, /^good\.site\.test\n {2}status valid\n[^]*?next renewal \d{4}-/m);
    assert.match(text.stdout, /^broken\.site\.test\n {2}status failing \(\d+ failed orders? in a row\)\n[^]*?next renewal \d{4}-[^]*?last error \S/m);
    const metrics = await fetch(`http://${control}/metrics`).then((response) => response.text());
    assert.match(metrics, /^wmproxy_certificate_expiry_timestamp_seconds\{name="good\.site\.test"\} \d+/m);
    assert.match(metrics, /^wmproxy_certificate_order_failures\{name="broken\.site\.test",status="failing"\} [1-9]/m);
    assert.match(metrics, /^wmproxy_certificate_order_failures\{name="good\.site\.test",status="valid"\} 0/m);
    // Both workers manage good.site.test from one storage: its lease lock lets one of them order it, once.
    const orders = (running.stdout + running.stderr).match(/ordering a certificate for good\.site\.test\b/g) ?? [];
    assert.equal(orders.length, 1, 'one order for the name both workers serve');
  } finally {
    running.kill();
    await pebble.close();
  }
});

test('wmproxy certs says so when nothing is managed, and exits 1 when the API is unreachable', async () => {
  const file = join(scratch, 'none.toml');
  writeFileSync(file, `[control]\nlisten = "127.0.0.1:0"\n[[proxy]]\nlisten = "127.0.0.1:0"\n`);
  const running = new Running(['run', '-c', file]);
  try {
    const control = (await running.waitFor(/control control listening on (\S+)/))[1]!;
    const none = await wmproxy(['certs', '--control', control]);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /no managed certificates/);
  } finally {
    running.kill();
  }
  const gone = await wmproxy(['certs', '--control', '127.0.0.1:1']);
  assert.equal(gone.code, 1);
});
