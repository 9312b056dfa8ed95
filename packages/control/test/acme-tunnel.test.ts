// Which tunnel domains get certificates, and how long they stay managed:
// exact DNS names of http mappings with a connected client, ordered at once,
// kept while a client is away for less than the linger, then dropped.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSelfSignedCertificate, silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { FakeCa } from '@wmproxy/testkit';
import type { MappingSnapshot } from '@wmproxy/tunnel';
import { AcmeService } from '../src/services/acme.js';
import { tunnelCertificateNames } from '../src/services/tunnel.js';
import { until } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-acme-tunnel-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const mapping = (kind: 'http' | 'https', domains: string[], clients: string[]): MappingSnapshot => ({
  mapping: { name: `m-${domains.join('-')}`, kind, domains } as MappingSnapshot['mapping'],
  clients,
  listening: false,
});

test('certificates are wanted for the exact DNS names of http mappings that have a client, and nothing else', () => {
  const names = tunnelCertificateNames([
    mapping('http', ['App.Site.Test', 'www.site.test'], ['c1']),
    mapping('http', ['*.wild.site.test'], ['c1']),
    mapping('http', ['10.0.0.1', 'localhost', 'bad_name.site.test'], ['c1']),
    mapping('http', ['away.site.test'], []),
    mapping('https', ['passthrough.site.test'], ['c1']),
    mapping('http', ['www.site.test'], ['c2']),
  ]);
  assert.deepEqual(names, ['app.site.test', 'www.site.test']);
});

test('a tunnel domain is ordered as it appears, kept through a short absence, and dropped after the linger', async () => {
  const storage = mkdtempSync(join(scratch, 'storage-'));
  const config = parseConfig(
    `[acme]\nstorage = "${storage}"\n[tunnel.server]\nlisten = "127.0.0.1:0"\ntoken = "tunnel-secret"\nallow_domains = ["*.site.test"]\nhttps_listen = "127.0.0.1:0"\nhttps_tls = "auto"\n`,
    'toml',
  );
  const ca = new FakeCa((names, key, notBefore, notAfter) => createSelfSignedCertificate({ altNames: names, key, notBefore, notAfter }).cert);
  const acme = new AcmeService(silentLogger, { authority: async () => ca, tunnelLingerMs: 300 });
  try {
    await acme.apply(config);
    // No validation here: which names are ordered, and when, is what is under test.
    ca.order = async (request) => (ca.orders.push([...request.names]), createSelfSignedCertificate({ altNames: request.names, key: request.keyPem }).cert);
    acme.setTunnelNames(['app.site.test']);
    await until(() => acme.list().some((row) => row.names[0] === 'app.site.test' && row.status === 'valid'), 'app.site.test issued');
    // The client goes and comes back within the linger: nothing changes, nothing is ordered.
    acme.setTunnelNames([]);
    acme.setTunnelNames(['app.site.test']);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.deepEqual(acme.tunnelNames(), ['app.site.test']);
    assert.deepEqual(ca.orders, [['app.site.test']]);
    // Gone for longer than the linger: dropped.
    acme.setTunnelNames([]);
    assert.deepEqual(acme.tunnelNames(), ['app.site.test'], 'kept while lingering');
    await until(() => acme.list().length === 0, 'the domain dropped');
    assert.deepEqual(acme.tunnelNames(), []);
  } finally {
    acme.stop();
  }
});
