import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packageReadme, readmeTable, tableCell } from '@wmproxy/testkit';
import { parseConfig } from '@wmproxy/config';
import { CONTROL_DEFAULTS } from '../src/index.js';

test('the README\'s [control] options table states CONTROL_DEFAULTS', () => {
  const rows = readmeTable(packageReadme(import.meta.url), 'Options (`[control]`');
  const cell = (name: string): string => tableCell(rows, name, 2);
  assert.equal(cell('enabled'), `\`${CONTROL_DEFAULTS.enabled}\``);
  assert.equal(cell('listen'), `\`${CONTROL_DEFAULTS.listen}\``);
  assert.equal(cell('allowed_hosts'), `\`${JSON.stringify(CONTROL_DEFAULTS.allowedHosts)}\``);
});

test('a configuration without [control] serves the control API where CONTROL_DEFAULTS says', () => {
  const config = parseConfig('[[proxy]]\nlisten = "127.0.0.1:0"\n', 'toml');
  assert.deepEqual(config.control, { enabled: CONTROL_DEFAULTS.enabled, listen: CONTROL_DEFAULTS.listen, token: undefined, allowedHosts: [...CONTROL_DEFAULTS.allowedHosts] });
  assert.equal(config.workers, CONTROL_DEFAULTS.workers);
});
