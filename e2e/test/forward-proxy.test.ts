// wmproxy's forward proxy in a container, reached from the host through its
// published (loopback) port, relaying to a backend container by its name on
// a user-defined Docker network: HTTP, HTTPS via CONNECT, SOCKS5 with and
// without auth, parent-proxy chaining between containers, graceful stop.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BACKEND_IMAGE, PROXY_IMAGE, LocalContainer, Network, Wait, buildImages, cleanUp, curl, dockerSkipReason, selfSignedCert,
  type StartedNetwork, type StartedTestContainer,
} from './support.js';

const skip = dockerSkipReason();
const USER = 'alice';
const PASS = 's3cret';

interface Echo {
  url: string;
  method: string;
  headers: Record<string, string>;
  tls: boolean;
}

interface Setup {
  network: StartedNetwork;
  backend: StartedTestContainer;
  open: StartedTestContainer;
  authed: StartedTestContainer;
  httpChain: StartedTestContainer;
  socksChain: StartedTestContainer;
  certDir: string;
  caFile: string;
}

/**
 * Images, network and containers, made at module level: hooks run under the
 * test runner's per-test timeout, which a cold image build on a loaded
 * machine can exceed. Whatever started is removed if a later step fails.
 */
async function setUp(): Promise<Setup> {
  buildImages();
  const certDir = mkdtempSync(join(tmpdir(), 'wmproxy-e2e-'));
  let network: StartedNetwork | undefined;
  try {
    const { cert, key } = selfSignedCert('backend');
    const caFile = join(certDir, 'backend.pem');
    writeFileSync(caFile, cert);
    const net = (network = await new Network().start());
    const proxy = (alias: string, ...args: string[]) =>
      new LocalContainer(PROXY_IMAGE)
        .withNetwork(net)
        .withNetworkAliases(alias)
        .withCommand(['proxy', '--bind', '0.0.0.0:8090', ...args])
        .withLoopbackPorts(8090)
        .withWaitStrategy(Wait.forLogMessage(/listening/))
        .withStartupTimeout(120_000)
        .start();
    const backend = await new LocalContainer(BACKEND_IMAGE)
      .withNetwork(net)
      .withNetworkAliases('backend')
      .withEnvironment({ TLS_CERT: cert, TLS_KEY: key, SERVER_NAME: 'backend' })
      .withWaitStrategy(Wait.forAll([Wait.forLogMessage('echo: http on 8080'), Wait.forLogMessage('echo: https on 8443')]))
      .withStartupTimeout(120_000)
      .start();
    const [open, authed] = await Promise.all([proxy('open-proxy', '--insecure-open'), proxy('auth-proxy', '--user', USER, '--pass', PASS)]);
    const [httpChain, socksChain] = await Promise.all([
      proxy('http-chain', '--insecure-open', '--upstream', `http://${USER}:${PASS}@auth-proxy:8090`),
      proxy('socks-chain', '--insecure-open', '--upstream', `socks5://${USER}:${PASS}@auth-proxy:8090`),
    ]);
    return { network: net, backend, open, authed, httpChain, socksChain, certDir, caFile };
  } catch (error) {
    await cleanUp(network);
    rmSync(certDir, { recursive: true, force: true });
    throw error;
  }
}

const setup = skip ? undefined : await setUp();

describe('wmproxy proxy in a container', { skip }, () => {
  const { network, open, authed, httpChain, caFile } = setup ?? ({} as Partial<Setup>);
  let socksChain = setup?.socksChain;
  const port = (container: StartedTestContainer | undefined) => `127.0.0.1:${container!.getMappedPort(8090)}`;

  after(async () => {
    await cleanUp(network);
    if (setup) rmSync(setup.certDir, { recursive: true, force: true });
  });

  test('HTTP: an absolute-form request reaches the backend by its container name, with Via and without hop-by-hop headers', async () => {
    const result = await curl(['-x', `http://${port(open)}`, '-H', 'Connection: keep-alive, X-Hop', '-H', 'X-Hop: secret', 'http://backend:8080/echo?x=1']);
    assert.equal(result.code, 0, result.stderr);
    const echo = JSON.parse(result.stdout) as Echo;
    assert.equal(echo.url, '/echo?x=1');
    assert.equal(echo.headers.host, 'backend:8080');
    assert.ok(echo.headers.via, 'Via added');
    assert.equal(echo.headers['x-hop'], undefined, 'headers named in Connection are removed');
    assert.equal(echo.headers['proxy-connection'], undefined);
  });

  test('HTTPS: a CONNECT tunnel carries TLS end to end (the backend certificate verifies for its name)', async () => {
    const result = await curl(['-x', `http://${port(open)}`, '--cacert', caFile!, 'https://backend:8443/secure']);
    assert.equal(result.code, 0, result.stderr);
    const echo = JSON.parse(result.stdout) as Echo;
    assert.equal(echo.url, '/secure');
    assert.equal(echo.tls, true);
    assert.equal(echo.headers.via, undefined, 'a tunnel does not touch the bytes');
  });

  test('SOCKS5: the proxy resolves the container name (socks5-hostname) and streams a large body intact', async () => {
    const size = 8 * 1024 * 1024;
    const result = await curl(['--socks5-hostname', port(open), '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `http://backend:8080/bytes/${size}`]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `200 ${size}`);
  });

  test('HTTP auth: no credentials get 407 with Proxy-Authenticate; the right ones get through', async () => {
    const refused = await curl(['-x', `http://${port(authed)}`, '-D', '-', '-o', '/dev/null', 'http://backend:8080/']);
    assert.equal(refused.code, 0, refused.stderr);
    assert.match(refused.stdout, /^HTTP\/1\.1 407/);
    assert.match(refused.stdout, /proxy-authenticate: basic/i);
    const allowed = await curl(['-x', `http://${port(authed)}`, '--proxy-user', `${USER}:${PASS}`, 'http://backend:8080/authed']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal((JSON.parse(allowed.stdout) as Echo).url, '/authed');
    assert.equal((JSON.parse(allowed.stdout) as Echo).headers['proxy-authorization'], undefined, 'credentials are not forwarded');
  });

  test('SOCKS5 auth: username/password works, a wrong password is refused before any connection', async () => {
    const allowed = await curl(['--socks5-hostname', port(authed), '--proxy-user', `${USER}:${PASS}`, 'http://backend:8080/socks-authed']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal((JSON.parse(allowed.stdout) as Echo).url, '/socks-authed');
    const refused = await curl(['--socks5-hostname', port(authed), '--proxy-user', `${USER}:wrong`, 'http://backend:8080/']);
    assert.equal(refused.code, 97, `curl: ${refused.stderr}`); // CURLE_PROXY: the SOCKS5 handshake failed
    assert.equal(refused.stdout, '');
  });

  test('an unreachable target gets 502 over HTTP and a SOCKS5 failure reply', async () => {
    const http = await curl(['-x', `http://${port(open)}`, '-o', '/dev/null', '-w', '%{http_code}', 'http://backend:9/']);
    assert.equal(http.stdout, '502');
    const socks = await curl(['--socks5-hostname', port(open), 'http://backend:9/']);
    assert.equal(socks.code, 97, socks.stderr);
    assert.match(socks.stderr, /\(5\)/, 'SOCKS5 reply 0x05: connection refused');
  });

  test('chaining: requests go on through an authenticated parent proxy, over HTTP and over SOCKS5', async () => {
    // The backend sees the parent's address, not the chained proxy's: the parent really is in the path.
    const parentIp = authed!.getIpAddress(network!.getName());
    const ownIps = [httpChain!.getIpAddress(network!.getName()), socksChain!.getIpAddress(network!.getName())];
    assert.ok(!ownIps.includes(parentIp));
    const peer = (echo: Echo & { remoteAddress?: string }) => String(echo.remoteAddress).replace(/^::ffff:/, '');
    for (const chain of [httpChain, socksChain]) {
      const viaHttp = await curl(['-x', `http://${port(chain)}`, 'http://backend:8080/chained']);
      assert.equal(viaHttp.code, 0, viaHttp.stderr);
      const plain = JSON.parse(viaHttp.stdout) as Echo;
      assert.equal(plain.url, '/chained');
      assert.equal(peer(plain), parentIp);
      const viaSocks = await curl(['--socks5-hostname', port(chain), '--cacert', caFile!, 'https://backend:8443/chained-tls']);
      assert.equal(viaSocks.code, 0, viaSocks.stderr);
      const secure = JSON.parse(viaSocks.stdout) as Echo;
      assert.equal(secure.tls, true);
      assert.equal(peer(secure), parentIp);
    }
  });

  test('SIGTERM: the proxy drains and exits 0', async () => {
    const id = socksChain!.getId();
    const stopped = await socksChain!.stop({ remove: false, timeout: 20_000 });
    socksChain = undefined;
    try {
      const inspect = spawnSync('docker', ['inspect', '-f', '{{.State.ExitCode}}', id], { encoding: 'utf8' });
      assert.equal(inspect.stdout.trim(), '0', inspect.stderr);
    } finally {
      spawnSync('docker', ['rm', '-f', id]);
      void stopped;
    }
  });
});
