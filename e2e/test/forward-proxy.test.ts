// wmproxy's forward proxy in containers on a user-defined Docker network,
// driven by curl in a container on the same network (so every name resolves
// through Docker's DNS and no open proxy is published on the host): HTTP,
// HTTPS via CONNECT, SOCKS5 with and without auth, parent-proxy chaining
// between containers, the image's default configuration, graceful stop.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BACKEND_IMAGE, BACKEND_READY, PROXY_IMAGE, LocalContainer, Network, Wait, buildImages, cleanUp, curl, curlIn, dockerSkipReason, selfSignedCert,
  type RunResult, type StartedNetwork, type StartedTestContainer,
} from './support.js';

const skip = dockerSkipReason();
const USER = 'alice';
const PASS = 's3cret';

/** The flaky backend's echo (docker/backend/flaky-backend.mjs). */
interface Echo {
  id: string;
  url: string;
  method: string;
  headers: Record<string, string>;
  remoteAddress: string;
  tls: boolean;
}

interface Setup {
  network: StartedNetwork;
  open: StartedTestContainer;
  authed: StartedTestContainer;
  httpChain: StartedTestContainer;
  socksChain: StartedTestContainer;
  /** The image's own configuration (no command): the only container the host reaches. */
  defaultProxy: StartedTestContainer;
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
    // No published port: only curl on the network talks to these (--insecure-open must not reach the host's clients).
    const proxy = (alias: string, ...args: string[]) =>
      new LocalContainer(PROXY_IMAGE)
        .withNetwork(net)
        .withNetworkAliases(alias)
        .withCommand(['proxy', '--bind', '0.0.0.0:8090', ...args])
        .withWaitStrategy(Wait.forLogMessage(/listening/))
        .withStartupTimeout(120_000)
        .start();
    // Everything at once: a proxy resolves its parent and the backend per request, not at start.
    const [, open, authed, httpChain, socksChain, defaultProxy] = await Promise.all([
      new LocalContainer(BACKEND_IMAGE)
        .withNetwork(net)
        .withNetworkAliases('backend')
        .withEnvironment({ TLS_CERT: cert, TLS_KEY: key, BACKEND_ID: 'backend' })
        .withWaitStrategy(Wait.forLogMessage(BACKEND_READY))
        .withStartupTimeout(120_000)
        .start(),
      proxy('open-proxy', '--insecure-open'),
      proxy('auth-proxy', '--user', USER, '--pass', PASS),
      proxy('http-chain', '--insecure-open', '--upstream', `http://${USER}:${PASS}@auth-proxy:8090`),
      proxy('socks-chain', '--insecure-open', '--upstream', `socks5://${USER}:${PASS}@auth-proxy:8090`),
      new LocalContainer(PROXY_IMAGE)
        .withNetwork(net)
        .withNetworkAliases('default-proxy')
        .withLoopbackPorts(8090)
        .withWaitStrategy(Wait.forLogMessage(/wmproxy started/))
        .withStartupTimeout(120_000)
        .start(),
    ]);
    return { network: net, open, authed, httpChain, socksChain, defaultProxy, certDir, caFile };
  } catch (error) {
    await cleanUp(network);
    rmSync(certDir, { recursive: true, force: true });
    throw error;
  }
}

const setup = skip ? undefined : await setUp();

/** The JSON echo of a successful curl (the exit code checked first, with curl's complaint as the message). */
function echoOf(result: RunResult): Echo {
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as Echo;
}

/** The address the backend saw, without the IPv4-mapped prefix. */
const peer = (echo: Echo) => echo.remoteAddress.replace(/^::ffff:/, '');

describe('wmproxy proxy in a container', { skip }, () => {
  const { network, open, authed, httpChain, defaultProxy, caFile } = setup ?? ({} as Partial<Setup>);
  let socksChain = setup?.socksChain;
  /** curl in a container on the suite's network. */
  const inNet = (args: string[], files: string[] = []) => curlIn(network!.getName(), args, files);
  const ipOf = (container: StartedTestContainer | undefined) => container!.getIpAddress(network!.getName());

  after(async () => {
    await cleanUp(network);
    if (setup) rmSync(setup.certDir, { recursive: true, force: true });
  });

  test('HTTP: an absolute-form request reaches the backend by its container name, with Via and without hop-by-hop headers', async () => {
    const echo = echoOf(await inNet(['-x', 'http://open-proxy:8090', '-H', 'Connection: keep-alive, X-Hop', '-H', 'X-Hop: secret', 'http://backend:8080/echo?x=1']));
    assert.equal(echo.id, 'backend');
    assert.equal(echo.url, '/echo?x=1');
    assert.equal(echo.headers.host, 'backend:8080');
    assert.ok(echo.headers.via, 'Via added');
    assert.equal(echo.headers['x-hop'], undefined, 'headers named in Connection are removed');
    assert.equal(echo.headers['proxy-connection'], undefined);
    assert.equal(peer(echo), ipOf(open));
  });

  test('HTTPS: a CONNECT tunnel carries TLS end to end (the backend certificate verifies for its name)', async () => {
    const echo = echoOf(await inNet(['-x', 'http://open-proxy:8090', '--cacert', caFile!, 'https://backend:8443/secure'], [caFile!]));
    assert.equal(echo.url, '/secure');
    assert.equal(echo.tls, true);
    assert.equal(echo.headers.via, undefined, 'a tunnel does not touch the bytes');
    assert.equal(peer(echo), ipOf(open));
  });

  test('SOCKS5: the proxy resolves the container name (socks5-hostname) and streams a large body intact', async () => {
    const size = 8 * 1024 * 1024;
    const result = await inNet(['--socks5-hostname', 'open-proxy:8090', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `http://backend:8080/bytes/${size}`]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `200 ${size}`);
  });

  test('HTTP auth: no credentials get 407 with Proxy-Authenticate; the right ones get through', async () => {
    const [refused, allowed] = await Promise.all([
      inNet(['-x', 'http://auth-proxy:8090', '-D', '-', '-o', '/dev/null', 'http://backend:8080/']),
      inNet(['-x', 'http://auth-proxy:8090', '--proxy-user', `${USER}:${PASS}`, 'http://backend:8080/authed']),
    ]);
    assert.equal(refused.code, 0, refused.stderr);
    assert.match(refused.stdout, /^HTTP\/1\.1 407/);
    assert.match(refused.stdout, /proxy-authenticate: basic/i);
    const echo = echoOf(allowed);
    assert.equal(echo.url, '/authed');
    assert.equal(echo.headers['proxy-authorization'], undefined, 'credentials are not forwarded');
  });

  test('SOCKS5 auth: username/password works, a wrong password is refused before any connection', async () => {
    const [allowed, refused] = await Promise.all([
      inNet(['--socks5-hostname', 'auth-proxy:8090', '--proxy-user', `${USER}:${PASS}`, 'http://backend:8080/socks-authed']),
      inNet(['--socks5-hostname', 'auth-proxy:8090', '--proxy-user', `${USER}:wrong`, 'http://backend:8080/']),
    ]);
    const echo = echoOf(allowed);
    assert.equal(echo.url, '/socks-authed');
    assert.equal(peer(echo), ipOf(authed));
    assert.equal(refused.code, 97, `curl: ${refused.stderr}`); // CURLE_PROXY: the SOCKS5 handshake failed
    assert.equal(refused.stdout, '');
  });

  test('an unreachable target gets 502 over HTTP and a SOCKS5 failure reply', async () => {
    const [http, socks] = await Promise.all([
      inNet(['-x', 'http://open-proxy:8090', '-o', '/dev/null', '-w', '%{http_code}', 'http://backend:9/']),
      inNet(['--socks5-hostname', 'open-proxy:8090', 'http://backend:9/']),
    ]);
    assert.equal(http.code, 0, http.stderr);
    assert.equal(http.stdout, '502');
    assert.equal(socks.code, 97, socks.stderr);
    assert.match(socks.stderr, /\(5\)/, 'SOCKS5 reply 0x05: connection refused');
  });

  test('chaining: requests go on through an authenticated parent proxy, over HTTP and over SOCKS5', async () => {
    // The backend sees the parent's address, not the chained proxy's: the parent really is in the path.
    const parentIp = ipOf(authed);
    assert.ok(![ipOf(httpChain), ipOf(socksChain)].includes(parentIp));
    const results = await Promise.all(
      ['http-chain', 'socks-chain'].flatMap((chain) => [
        inNet(['-x', `http://${chain}:8090`, 'http://backend:8080/chained']),
        inNet(['--socks5-hostname', `${chain}:8090`, '--cacert', caFile!, 'https://backend:8443/chained-tls'], [caFile!]),
      ]),
    );
    const [httpPlain, httpTls, socksPlain, socksTls] = results.map(echoOf);
    for (const plain of [httpPlain!, socksPlain!]) {
      assert.equal(plain.url, '/chained');
      assert.equal(peer(plain), parentIp);
    }
    for (const secure of [httpTls!, socksTls!]) {
      assert.equal(secure.url, '/chained-tls');
      assert.equal(secure.tls, true);
      assert.equal(peer(secure), parentIp);
    }
  });

  test("the image's default configuration: a client on the Docker network (a private address) gets through over HTTP and SOCKS5", async () => {
    const [http, socks] = await Promise.all([
      inNet(['-x', 'http://default-proxy:8090', 'http://backend:8080/default-http']),
      inNet(['--socks5-hostname', 'default-proxy:8090', 'http://backend:8080/default-socks']),
    ]);
    const viaHttp = echoOf(http);
    assert.equal(viaHttp.url, '/default-http');
    assert.ok(viaHttp.headers.via, 'Via added');
    const viaSocks = echoOf(socks);
    assert.equal(viaSocks.url, '/default-socks');
    assert.equal(peer(viaSocks), ipOf(defaultProxy), 'the connection came from the proxy');
  });

  test('from the host: only the default-configuration proxy is published, on 127.0.0.1 only, and it admits the host', async () => {
    // Open proxies must not be reachable from outside the machine: they publish nothing at all.
    for (const container of [open, authed, httpChain, socksChain]) {
      const ports = spawnSync('docker', ['port', container!.getId()], { encoding: 'utf8' });
      assert.equal(ports.status, 0, ports.stderr);
      assert.equal(ports.stdout.trim(), '', `${container!.getName()} publishes nothing`);
    }
    const published = spawnSync('docker', ['port', defaultProxy!.getId(), '8090'], { encoding: 'utf8' });
    assert.equal(published.status, 0, published.stderr);
    assert.deepEqual(published.stdout.trim().split('\n'), [`127.0.0.1:${defaultProxy!.getMappedPort(8090)}`]);
    // Docker forwards the published port from the network's gateway address, a private one the allow-list admits.
    const echo = echoOf(await curl(['-x', `http://127.0.0.1:${defaultProxy!.getMappedPort(8090)}`, 'http://backend:8080/from-host']));
    assert.equal(echo.url, '/from-host');
    assert.equal(peer(echo), ipOf(defaultProxy));
  });

  test('SIGTERM: the proxy drains and exits 0', async () => {
    const id = socksChain!.getId();
    await socksChain!.stop({ remove: false, timeout: 20_000 });
    socksChain = undefined;
    try {
      const inspect = spawnSync('docker', ['inspect', '-f', '{{.State.ExitCode}}', id], { encoding: 'utf8' });
      assert.equal(inspect.stdout.trim(), '0', inspect.stderr);
    } finally {
      spawnSync('docker', ['rm', '-f', id]);
    }
  });
});
