// Map specs and PROXY protocol headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MappingError, parseMapSpec, proxyProtocolHeader, publicView, readPublicMapping, parsePortRanges, portAllowed, domainAllowed } from '../src/index.js';

test('the spec forms of the README parse to the mappings they describe', () => {
  assert.deepEqual(parseMapSpec('web=http:127.0.0.1:8080@app.example.test'), { name: 'web', kind: 'http', localHost: '127.0.0.1', localPort: 8080, domains: ['app.example.test'] });
  assert.deepEqual(parseMapSpec('api=https:[::1]:8443@*.t.example.com/api'), { name: 'api', kind: 'https', localHost: '::1', localPort: 8443, domains: ['*.t.example.com'], path: '/api' });
  assert.deepEqual(parseMapSpec('db=tcp:127.0.0.1:5432:15432'), { name: 'db', kind: 'tcp', localHost: '127.0.0.1', localPort: 5432, remotePort: 15432 });
  assert.deepEqual(parseMapSpec('dns=udp:127.0.0.1:53:15353'), { name: 'dns', kind: 'udp', localHost: '127.0.0.1', localPort: 53, remotePort: 15353 });
  assert.deepEqual(parseMapSpec('out=proxy::18090'), { name: 'out', kind: 'proxy', remotePort: 18090 });
  assert.equal(parseMapSpec('db=tcp:localhost:5432:15432,proxy-protocol=v2').proxyProtocol, 2);
  // The server never learns local addresses.
  assert.deepEqual(publicView(parseMapSpec('db=tcp:10.0.0.5:5432:15432')), { name: 'db', kind: 'tcp', remotePort: 15432 });
});

test('bad specs fail with a MappingError that says what is wrong', () => {
  for (const [spec, message] of [
    ['db', /expected name=kind/],
    ['db=ftp:1.2.3.4:21:2121', /unknown kind "ftp"/],
    ['db=tcp:127.0.0.1:5432', /tcp:LOCAL_HOST:LOCAL_PORT:PUBLIC_PORT/],
    ['db=tcp:127.0.0.1:5432:70000', /outside 1-65535/],
    ['web=http:127.0.0.1:8080', /need a domain/],
    ['web=http:127.0.0.1:8080@bad_domain!', /invalid domain/],
    ['out=proxy:18090', /proxy::PUBLIC_PORT/],
    ['dns=udp:127.0.0.1:53:15353,proxy-protocol=v1', /PROXY protocol applies to tcp/],
    ['x y=tcp:1.2.3.4:1:2', /name "x y"/],
    ['db=tcp:127.0.0.1:5432:15432,fast=yes', /unknown option/],
  ] as const) {
    assert.throws(() => parseMapSpec(spec), (error: Error) => error instanceof MappingError && message.test(error.message), spec);
  }
});

test('arbitrary specs and announced mappings either parse or fail with MappingError, never anything else', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), (spec) => {
      try {
        parseMapSpec(spec);
      } catch (error) {
        assert.ok(error instanceof MappingError, String(error));
      }
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(
      fc.oneof(
        fc.anything(),
        fc.record({ name: fc.anything(), kind: fc.constantFrom('tcp', 'udp', 'http', 'proxy', 'x'), remotePort: fc.anything(), domains: fc.anything(), path: fc.anything() }),
        fc.record(
          {
            name: fc.constant('web'),
            kind: fc.constantFrom('http', 'tcp'),
            domains: fc.constant(['a.test']),
            basicAuth: fc.oneof(fc.anything(), fc.record({ users: fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.anything())), realm: fc.anything() })),
            requestHeaders: fc.oneof(fc.anything(), fc.array(fc.record({ op: fc.constantFrom('set', 'add', 'remove', 'x'), name: fc.string(), value: fc.oneof(fc.string(), fc.anything()) }))),
          },
          { requiredKeys: ['name', 'kind', 'domains'] },
        ),
      ),
      (value) => {
      try {
        readPublicMapping(value);
      } catch (error) {
        assert.ok(error instanceof MappingError, String(error));
      }
      },
    ),
    { numRuns: 1000 },
  );
});

test('announced basic auth and header rules are checked on the server: http only, bounded, rules the engine compiles', () => {
  const web = { name: 'web', kind: 'http', domains: ['app.test'] };
  const good = readPublicMapping({ ...web, basicAuth: { users: { alice: 'pw' }, realm: 'r' }, requestHeaders: [{ op: 'set', name: 'X-A', value: '{client_ip}' }], responseHeaders: [{ op: 'remove', name: 'Server' }] });
  assert.deepEqual({ ...good.basicAuth, users: { ...good.basicAuth!.users } }, { users: { alice: 'pw' }, realm: 'r' });
  assert.deepEqual(good.requestHeaders, [{ op: 'set', name: 'X-A', value: '{client_ip}' }]);
  for (const [value, message] of [
    [{ ...web, kind: 'tcp', remotePort: 1, domains: undefined, basicAuth: { users: { a: 'b' } } }, /apply to http mappings/],
    [{ ...web, basicAuth: { users: {} } }, /1-64 users/],
    [{ ...web, basicAuth: { users: { 'a:b': 'c' } } }, /without ":"/],
    [{ ...web, basicAuth: { users: { a: 1 } } }, /passwords are text/],
    [{ ...web, basicAuth: { users: { a: 'b' }, realm: 'r\r\nSet-Cookie: x=1' } }, /without control characters/],
    [{ ...web, requestHeaders: [{ op: 'set', name: 'X-A', value: 'a\r\nInjected: 1' }] }, /CR, LF or NUL/],
    [{ ...web, requestHeaders: [{ op: 'set', name: 'Bad Name', value: 'x' }] }, /invalid header name/],
    [{ ...web, responseHeaders: [{ op: 'set', name: 'X-A', value: '{secret_env}' }] }, /unknown variable/],
    [{ ...web, responseHeaders: [{ op: 'drop', name: 'X-A' }] }, /unknown header rule op/],
    [{ ...web, requestHeaders: Array.from({ length: 65 }, () => ({ op: 'remove', name: 'X' })) }, /at most 64/],
  ] as const) {
    assert.throws(() => readPublicMapping(value), (error: Error) => error instanceof MappingError && message.test(error.message), JSON.stringify(value).slice(0, 80));
  }
  assert.deepEqual({ ...parseMapSpec('web=http:127.0.0.1:80@a.test,auth=alice:pa:ss,auth=bob:x').basicAuth!.users }, { alice: 'pa:ss', bob: 'x' });
  assert.throws(() => parseMapSpec('db=tcp:127.0.0.1:1:2,auth=a:b'), /apply to http mappings/);
});

test('valid tcp specs round-trip through their parts', () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/), fc.ipV4(), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }), (name, host, local, remote) => {
      assert.deepEqual(parseMapSpec(`${name}=tcp:${host}:${local}:${remote}`), { name, kind: 'tcp', localHost: host, localPort: local, remotePort: remote });
    }),
  );
});

test('PROXY protocol v1 and v2 headers', () => {
  assert.equal(Buffer.from(proxyProtocolHeader(1, { address: '::ffff:192.0.2.1', port: 4000 }, { address: '127.0.0.1', port: 80 })).toString(), 'PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\n');
  assert.equal(Buffer.from(proxyProtocolHeader(1, { address: '2001:db8::1', port: 4000 }, { address: '::1', port: 80 })).toString(), 'PROXY TCP6 2001:db8::1 ::1 4000 80\r\n');
  assert.equal(Buffer.from(proxyProtocolHeader(1, { address: '', port: 0 }, { address: '', port: 0 })).toString(), 'PROXY UNKNOWN\r\n');
  const v2 = Buffer.from(proxyProtocolHeader(2, { address: '2001:db8::1', port: 4000 }, { address: '192.0.2.9', port: 443 }));
  assert.equal(v2[13], 0x21);
  assert.equal(v2.readUInt16BE(14), 36);
  assert.equal(v2.subarray(16, 32).toString('hex'), '20010db8000000000000000000000001');
  assert.equal(v2.subarray(32, 48).toString('hex'), '00000000000000000000ffffc0000209');
  assert.equal(v2.readUInt16BE(48), 4000);
  assert.equal(v2.readUInt16BE(50), 443);
});

test('port ranges and domain patterns', () => {
  const ranges = parsePortRanges('15000-15999, 18090');
  assert.ok(portAllowed(15500, ranges) && portAllowed(18090, ranges) && !portAllowed(18091, ranges));
  assert.ok(portAllowed(1, undefined));
  assert.throws(() => parsePortRanges('9-1'), RangeError);
  assert.throws(() => parsePortRanges('abc'), RangeError);
  assert.ok(domainAllowed('a.example.com', ['*.example.com']));
  assert.ok(!domainAllowed('example.com', ['*.example.com']));
  assert.ok(!domainAllowed('evil-example.com', ['*.example.com']));
  assert.ok(domainAllowed('APP.test', ['app.test']));
});
