import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Logger, parseAddress, type Server, type TlsServerOptions } from '@wmproxy/core-net';
import { socks5Connect } from '@wmproxy/socks5';
import { testPki, type TestPki } from '@wmproxy/testkit';
import { createForwardProxyServer, parentTransport, parseParentProxy, ParentProxyError, type ForwardProxyServerOptions } from '../src/index.js';
import { curl, startBackend, type Backend } from './helpers.js';

interface RunningProxy {
  port: number;
  logs: string[];
  server: Server;
}

async function forward(options: ForwardProxyServerOptions = {}, tls?: TlsServerOptions): Promise<RunningProxy> {
  const logs: string[] = [];
  const logger = new Logger({ level: 'debug', sink: { write: (line: string) => logs.push(line) } });
  const server = await createForwardProxyServer({ bind: [parseAddress('127.0.0.1:0')], logger, tls, ...options }).start();
  return { port: server.listeners[0]!.port, logs, server };
}

async function waitForLog(proxy: RunningProxy, pattern: RegExp): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const line = proxy.logs.find((text) => pattern.test(text));
    if (line) return line;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`no log line matching ${pattern}:\n${proxy.logs.join('')}`);
}

describe('encrypted hops: TLS on forward-proxy listeners and TLS parents', () => {
  let pki: TestPki;
  let backend: Backend;
  let tlsBackend: Backend;
  const open: RunningProxy[] = [];
  const start = async (options: ForwardProxyServerOptions = {}, tls?: TlsServerOptions): Promise<RunningProxy> => {
    const proxy = await forward(options, tls);
    open.push(proxy);
    return proxy;
  };

  before(async () => {
    pki = testPki();
    backend = await startBackend();
    tlsBackend = await startBackend(pki.server);
  });
  after(async () => {
    for (const proxy of open) await proxy.server.shutdown({ deadlineMs: 0 });
    await backend.close();
    await tlsBackend.close();
    pki.cleanup();
  });

  test('curl --proxy https:// with --proxy-cacert: plain HTTP and CONNECT targets through the TLS listener', async () => {
    const proxy = await start({}, { cert: pki.server.cert, key: pki.server.key });
    const proxyUrl = `https://127.0.0.1:${proxy.port}`;
    const plain = await curl(['--proxy', proxyUrl, '--proxy-cacert', pki.ca.certPath, `http://127.0.0.1:${backend.port}/hello`]);
    assert.equal(plain.status, 200, plain.stderr);
    assert.equal(plain.body, `hello from ${backend.port}`);
    const tunnelled = await curl(['--proxy', proxyUrl, '--proxy-cacert', pki.ca.certPath, '--cacert', pki.ca.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
    assert.equal(tunnelled.status, 200, tunnelled.stderr);
    assert.equal(tunnelled.body, `hello from ${tlsBackend.port}`);
    // Without the CA, curl refuses the proxy's certificate: the listener really is TLS with that certificate.
    const untrusted = await curl(['--proxy', proxyUrl, `http://127.0.0.1:${backend.port}/hello`]);
    assert.notEqual(untrusted.code, 0);
    // A plain-text client on the TLS port is refused and logged, not served.
    const plainText = await curl(['--proxy', `http://127.0.0.1:${proxy.port}`, `http://127.0.0.1:${backend.port}/hello`]);
    assert.notEqual(plainText.status, 200);
    await waitForLog(proxy, /tls handshake refused/);
  });

  test('SOCKS5 inside TLS on the same mixed port', async () => {
    const proxy = await start({}, { cert: pki.server.cert, key: pki.server.key });
    const conn = await socks5Connect({ proxy: { host: '127.0.0.1', port: proxy.port }, host: '127.0.0.1', port: backend.port, tls: { ca: pki.ca.cert } });
    const reply = await new Promise<string>((resolve) => {
      let text = '';
      conn.setHandler({ data: (_c, chunk) => (text += Buffer.from(chunk).toString()), end: (c) => c.end(), close: () => resolve(text) });
      conn.write(Buffer.from('GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    });
    assert.match(reply, new RegExp(`^HTTP/1\\.1 200[^]*hello from ${backend.port}$`));
    await waitForLog(proxy, /socks5 connect/);
  });

  test('mutual TLS listener: curl with a client certificate is served, without one or with a foreign one it is refused and logged', async () => {
    const proxy = await start({}, { cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca.cert });
    const proxyUrl = `https://127.0.0.1:${proxy.port}`;
    const target = `http://127.0.0.1:${backend.port}/hello`;
    const served = await curl(['--proxy', proxyUrl, '--proxy-cacert', pki.ca.certPath, '--proxy-cert', pki.client.certPath, '--proxy-key', pki.client.keyPath, target]);
    assert.equal(served.status, 200, served.stderr);
    const before = backend.requests.length;
    const bare = await curl(['--proxy', proxyUrl, '--proxy-cacert', pki.ca.certPath, target]);
    assert.notEqual(bare.status, 200);
    assert.notEqual(bare.code, 0, 'curl reports a failure');
    const foreign = await curl(['--proxy', proxyUrl, '--proxy-cacert', pki.ca.certPath, '--proxy-cert', pki.rogueClient.certPath, '--proxy-key', pki.rogueClient.keyPath, target]);
    assert.notEqual(foreign.status, 200);
    assert.equal(backend.requests.length, before, 'no refused client reached the origin');
    const line = await waitForLog(proxy, /tls handshake refused/);
    assert.match(line, /client=127\.0\.0\.1:\d+/);
  });

  describe('a chain: client wmproxy → mutual TLS → server wmproxy → origin', () => {
    let parent: RunningProxy;
    before(async () => {
      parent = await start({}, { cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca.cert });
    });

    for (const scheme of ['https', 'socks5+tls'] as const) {
      test(`${scheme}:// parent with a client certificate: plain requests and CONNECT both cross the TLS hop`, async () => {
        const child = await start({ upstream: `${scheme}://127.0.0.1:${parent.port}`, upstreamTls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } });
        const childUrl = `http://127.0.0.1:${child.port}`;
        const plain = await curl(['-x', childUrl, `http://127.0.0.1:${backend.port}/echo`]);
        assert.equal(plain.status, 200, plain.stderr);
        const seen = JSON.parse(plain.body) as { headers: Record<string, string> };
        // Both proxies handled the request: the parent saw it (https: as a proxied request adding its Via; socks5: as a tunnel).
        assert.equal(seen.headers.via, scheme === 'https' ? '1.1 wmproxy, 1.1 wmproxy' : '1.1 wmproxy');
        const tunnelled = await curl(['-x', childUrl, '--cacert', pki.ca.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
        assert.equal(tunnelled.status, 200, tunnelled.stderr);
        assert.equal(tunnelled.body, `hello from ${tlsBackend.port}`);
        await waitForLog(parent, scheme === 'https' ? new RegExp(`tunnel open.*127\\.0\\.0\\.1:${tlsBackend.port}`) : new RegExp(`socks5 connect.*127\\.0\\.0\\.1:${tlsBackend.port}`));
      });
    }

    test('a TLS parent as a core-net Transport: a stream to the target through the mutual-TLS hop', async () => {
      const transport = parentTransport(parseParentProxy(`https://127.0.0.1:${parent.port}`, { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }));
      assert.equal(transport.kind, 'http+tls-parent');
      const conn = await transport.connect({ host: '127.0.0.1', port: backend.port }, 5_000);
      const reply = await new Promise<string>((resolve) => {
        let text = '';
        conn.setHandler({ data: (_c, chunk) => (text += Buffer.from(chunk).toString()), end: (c) => c.end(), close: () => resolve(text) });
        conn.write(Buffer.from('GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      });
      assert.match(reply, new RegExp(`hello from ${backend.port}$`));
      await waitForLog(parent, new RegExp(`tunnel open.*127\\.0\\.0\\.1:${backend.port}`));
    });

    test('a client without a certificate is refused by the parent: the user gets a 502 naming the parent, the parent logs the refusal', async () => {
      const child = await start({ upstream: `https://127.0.0.1:${parent.port}`, upstreamTls: { ca: pki.ca.cert } });
      const before = backend.requests.length;
      const result = await curl(['-x', `http://127.0.0.1:${child.port}`, `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(result.status, 502, result.stderr);
      const tunnel = await curl(['-x', `http://127.0.0.1:${child.port}`, '-p', '--cacert', pki.ca.certPath, `https://127.0.0.1:${tlsBackend.port}/hello`]);
      assert.match(tunnel.stderr, /502/);
      assert.equal(backend.requests.length, before);
      await waitForLog(parent, /tls handshake refused/);
      await waitForLog(child, /status=502 .*the TLS server refused our client certificate/);
    });

    test('a parent whose certificate is not signed by --upstream-ca is refused: 502 and a log line, nothing sent', async () => {
      const child = await start({ upstream: `https://127.0.0.1:${parent.port}`, upstreamTls: { ca: pki.rogueCa.cert, cert: pki.client.cert, key: pki.client.key } });
      const before = backend.requests.length;
      const result = await curl(['-x', `http://127.0.0.1:${child.port}`, `http://127.0.0.1:${backend.port}/hello`]);
      assert.equal(result.status, 502, result.stderr);
      assert.match(result.body, /EPROTO/);
      assert.equal(backend.requests.length, before);
      const line = await waitForLog(child, /TLS verification of 127\.0\.0\.1:\d+ failed/);
      assert.match(line, new RegExp(`parent proxy 127\\.0\\.0\\.1:${parent.port}`));
    });
  });
});

describe('parent proxy URLs with TLS', () => {
  test('https:// and socks5+tls:// parents are TLS parents with the given trust, verifying by default', () => {
    const https = parseParentProxy('https://u:p@proxy.example', { ca: 'CA', cert: 'C', key: 'K' });
    assert.deepEqual({ kind: https.kind, host: https.host, port: https.port, tls: https.tls }, {
      kind: 'http',
      host: 'proxy.example',
      port: 443,
      tls: { rejectUnauthorized: true, ca: 'CA', cert: 'C', key: 'K' },
    });
    assert.ok(https.authorization?.startsWith('Basic '));
    const socks = parseParentProxy('socks5+tls://127.0.0.1:1443');
    assert.deepEqual([socks.kind, socks.port, socks.tls], ['socks5', 1443, { rejectUnauthorized: true }]);
    assert.equal(parseParentProxy('http://127.0.0.1:8080').tls, undefined);
  });

  test('TLS options with a plain-text parent, or half a client certificate, are refused', () => {
    assert.throws(() => parseParentProxy('http://127.0.0.1:8080', { ca: 'CA' }), /need an https:\/\/ or socks5\+tls:\/\/ upstream/);
    assert.throws(() => parseParentProxy('socks5://127.0.0.1:1080', { cert: 'C', key: 'K' }), ParentProxyError);
    assert.throws(() => parseParentProxy('https://127.0.0.1:8443', { cert: 'C' }), /both its certificate and its key/);
    assert.throws(() => parseParentProxy('ftp://127.0.0.1:21'), /scheme must be http, https, socks5 or socks5\+tls/);
  });
});
