import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../src/index.js';

const proxyOf = (body: string) => parseConfig(`[[proxy]]\n${body}\n`, 'toml', 'proxy.toml').proxies[0]!;

test('a forward proxy reachable from other hosts refuses every "this host" form, link-local and cloud metadata by default', () => {
  const deny = proxyOf('listen = "0.0.0.0:8090"\nusers = { a = "b" }').denyDestinations;
  for (const range of ['0.0.0.0/8', '127.0.0.0/8', '::/128', '::1/128', '169.254.0.0/16', 'fe80::/10']) assert.ok(deny.includes(range), range);
});

test('a forward proxy reachable from other hosts allows CONNECT to 443 and 8443 only by default; [] or a list says otherwise', () => {
  assert.deepEqual(proxyOf('listen = "0.0.0.0:8090"\nusers = { a = "b" }').connectPorts, [443, 8443]);
  assert.deepEqual(proxyOf('listen = ":8090"\nallow = ["10.0.0.0/8"]').connectPorts, [443, 8443]);
  assert.equal(proxyOf('listen = "127.0.0.1:8090"').connectPorts, undefined, 'local clients may CONNECT anywhere');
  assert.deepEqual(proxyOf('listen = "0.0.0.0:8090"\nusers = { a = "b" }\nconnect_ports = []').connectPorts, [], 'an explicit empty list allows any port');
  assert.deepEqual(proxyOf('listen = "0.0.0.0:8090"\nusers = { a = "b" }\nconnect_ports = [22, 443]').connectPorts, [22, 443]);
});
