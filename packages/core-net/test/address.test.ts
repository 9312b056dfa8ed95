import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddress, parseAddressList, formatAddress, AddressError, isLoopback } from '../src/index.js';

test('parses ip:port, [v6]:port, host:port and :port', () => {
  assert.deepEqual(parseAddress('127.0.0.1:8090'), { host: '127.0.0.1', port: 8090, family: 4, wildcard: false });
  assert.deepEqual(parseAddress('[::1]:443'), { host: '::1', port: 443, family: 6, wildcard: false });
  assert.deepEqual(parseAddress('example.com:80'), { host: 'example.com', port: 80, family: 0, wildcard: false });
  assert.deepEqual(parseAddress(':8090'), { host: '', port: 8090, family: 0, wildcard: true });
  assert.deepEqual(parseAddress('8090'), { host: '', port: 8090, family: 0, wildcard: true });
});

test('parses lists separated by commas or spaces', () => {
  const list = parseAddressList('127.0.0.1:1, [::1]:2 :3');
  assert.deepEqual(list.map(formatAddress), ['127.0.0.1:1', '[::1]:2', ':3']);
});

test('rejects bad addresses with a reason', () => {
  for (const [input, reason] of [
    ['127.0.0.1', 'expected host:port'],
    ['127.0.0.1:70000', 'over 65535'],
    ['::1:80', 'need brackets'],
    ['[::1:80', 'missing "]"'],
    ['[zz]:80', 'not an IPv6'],
    ['bad_host!:80', 'not an IP address or host name'],
    ['host:', 'not a number'],
    ['', 'empty'],
  ] as const) {
    assert.throws(() => parseAddress(input), (error: unknown) => error instanceof AddressError && error.message.includes(reason), input);
  }
});

test('knows loopback addresses', () => {
  assert.equal(isLoopback('127.0.0.5'), true);
  assert.equal(isLoopback('::1'), true);
  assert.equal(isLoopback('::ffff:127.0.0.1'), true);
  assert.equal(isLoopback('10.0.0.1'), false);
});
