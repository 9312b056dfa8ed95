// `wmproxy convert`, `check -c` and `run -c` on files in the original
// wmproxy's format that are wrongly typed or would convert to an open proxy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { wmproxy } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-cli-original-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = join(scratch, name);
  writeFileSync(file, text);
  return file;
}

const WRONG = `[proxy]
bind_addr = "0.0.0.0:8090"
username = 123
password = 456

[[http.upstream]]
name = "app"
server = [{ addr = "127.0.0.1:3000" }]

[[http.server]]
bind_addr = "127.0.0.1:0"

[[http.server.location]]
rule = "/"
up_name = []
`;

test('convert, check -c and run -c report each wrongly typed value of an original file on its own line, with exit 1', async () => {
  const file = write('wrong.toml', WRONG);
  const expected = [
    `${file}: 3 errors`,
    `  ${file}: proxy.username: expected a string, found 123 (number)`,
    `  ${file}: proxy.password: expected a string, found 456 (number)`,
    `  ${file}: http.server[0].location[0].up_name: expected a string, found a list of 0 items`,
  ];
  for (const args of [['convert', file], ['check', '-c', file], ['run', '-c', file]]) {
    const run = await wmproxy(args);
    assert.equal(run.code, 1, `${args[0]}: ${run.stderr}`);
    const errors = run.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('warning: '));
    assert.deepEqual(errors, expected, args[0]);
    // Nothing half-converted is printed, and nothing starts.
    assert.equal(run.stdout, '', args[0]);
  }
  const json = await wmproxy(['check', '-c', file, '--json']);
  assert.equal(json.code, 1);
  const report = JSON.parse(json.stdout) as { valid: boolean; errors: Array<{ path: string }> };
  assert.equal(report.valid, false);
  assert.deepEqual(report.errors.map((error) => error.path), ['proxy.username', 'proxy.password', 'http.server[0].location[0].up_name']);
});

test('an original proxy reachable from other hosts without credentials is refused; convert prints it without insecure_open, to be edited', async () => {
  const file = write('open.toml', '[proxy]\nbind_addr = "0.0.0.0:8090"\nflag = 7\n');
  const check = await wmproxy(['check', '-c', file]);
  assert.equal(check.code, 1);
  assert.match(check.stderr, /open\.toml: proxy\.bind_addr: expected a loopback address, or username and password \(.*insecure_open = true.*\), found "0\.0\.0\.0:8090"/);
  const convert = await wmproxy(['convert', file]);
  assert.equal(convert.code, 1);
  assert.match(convert.stderr, /open\.toml: proxy\.bind_addr: expected a loopback address, or username and password/);
  assert.equal(convert.stdout, '[[proxy]]\nlisten = "0.0.0.0:8090"\nprotocols = [ "http", "https", "socks5" ]\n\n');
  // What the message says to do works: the printed file, with insecure_open set explicitly.
  const edited = write('edited.toml', `[control]\nenabled = false\n\n${convert.stdout.trimEnd()}\ninsecure_open = true\n`);
  const accepted = await wmproxy(['check', '-c', edited]);
  assert.equal(accepted.code, 0, accepted.stderr);
});
