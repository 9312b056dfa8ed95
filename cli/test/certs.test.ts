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
