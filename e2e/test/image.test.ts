// The wmproxy image itself: it runs the CLI, as an unprivileged user, and its
// HEALTHCHECK (`wmproxy probe` of the control API's /healthz) reports healthy,
// unhealthy while the process is frozen, healthy again once it runs, and
// unhealthy (503) while a stop drains connections.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import {
  E2E_LABEL, PROXY_IMAGE, SESSION, LocalContainer, Wait, buildImages, cleanUp, curl, dockerSkipReason, run,
  type StartedTestContainer,
} from './support.js';

const skip = dockerSkipReason();

/** `docker image inspect`'s Config.Healthcheck (durations in nanoseconds). */
interface ImageHealthcheck {
  Test: string[];
  Timeout: number;
  StartPeriod: number;
}

interface ImageConfig {
  User: string;
  Entrypoint: string[];
  Healthcheck?: ImageHealthcheck;
}

/** `docker inspect`'s State.Health. */
interface Health {
  Status: string;
  FailingStreak: number;
  Log: Array<{ ExitCode: number; Output: string }>;
}

/** Health options for the test container: the image's own command, checked every second. */
const INTERVAL_MS = 1000;
const RETRIES = 2;

interface Setup {
  config: ImageConfig;
  healthTest: ['CMD', ...string[]];
  /** Docker's own limit on one check, in ms (the image's). */
  healthTimeoutMs: number;
  container: StartedTestContainer;
}

const docker = (args: string[]) => run('docker', args, { timeoutMs: 60_000 });

/** The image's configuration, and a container of it started with its default command. */
async function setUp(): Promise<Setup> {
  buildImages();
  const inspect = spawnSync('docker', ['image', 'inspect', PROXY_IMAGE, '--format', '{{json .Config}}'], { encoding: 'utf8', timeout: 60_000 });
  if (inspect.status !== 0) throw new Error(`docker image inspect ${PROXY_IMAGE}: ${inspect.stderr}`);
  const config = JSON.parse(inspect.stdout) as ImageConfig;
  const [kind, ...command] = config.Healthcheck?.Test ?? [];
  if (kind !== 'CMD') throw new Error(`${PROXY_IMAGE} has no exec-form HEALTHCHECK: ${JSON.stringify(config.Healthcheck)}`);
  const healthTest: ['CMD', ...string[]] = ['CMD', ...command];
  const healthTimeoutMs = config.Healthcheck!.Timeout / 1e6;
  try {
    // The image checks every 10 s; only the interval and retries are shortened, the command is the image's.
    const container = await new LocalContainer(PROXY_IMAGE)
      .withHealthCheck({ test: healthTest, interval: INTERVAL_MS, timeout: healthTimeoutMs, retries: RETRIES, startPeriod: config.Healthcheck!.StartPeriod / 1e6 })
      .withLoopbackPorts(8090)
      .withWaitStrategy(Wait.forLogMessage(/wmproxy .* running/))
      .withStartupTimeout(120_000)
      .start();
    return { config, healthTest, healthTimeoutMs, container };
  } catch (error) {
    await cleanUp(undefined);
    throw error;
  }
}

const setup = skip ? undefined : await setUp();

async function health(id: string): Promise<Health> {
  const result = await docker(['inspect', id, '--format', '{{json .State.Health}}']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as Health;
}

/**
 * Poll until Docker reports `status`. The bound is what Docker needs at
 * worst (every retry taking its full timeout plus the interval), doubled.
 */
async function waitForHealth(id: string, status: string, healthTimeoutMs: number): Promise<Health> {
  const deadline = Date.now() + 2 * (RETRIES + 1) * (INTERVAL_MS + healthTimeoutMs);
  for (;;) {
    const current = await health(id);
    if (current.Status === status) return current;
    if (Date.now() > deadline) assert.fail(`still ${current.Status}, not ${status}: ${JSON.stringify(current)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** A CONNECT tunnel through the forward proxy, held open (the proxy cannot tell it is idle). */
function openTunnel(port: number, target: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    socket.once('error', reject);
    socket.once('data', (chunk) => {
      const head = chunk.toString('latin1');
      if (head.startsWith('HTTP/1.1 200 ')) resolve(socket);
      else {
        socket.destroy();
        reject(new Error(`CONNECT ${target} refused: ${head}`));
      }
    });
  });
}

/** A SOCKS5 CONNECT (no auth) to an IPv4 target through the proxy on `port`. */
function openSocksTunnel(port: number, ip: string, targetPort: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(Buffer.from([5, 1, 0])));
    socket.once('error', reject);
    let stage = 0;
    let received = Buffer.alloc(0);
    socket.on('data', function onData(chunk: Buffer) {
      received = Buffer.concat([received, chunk]);
      if (stage === 0 && received.length >= 2) {
        if (received[1] !== 0) return fail(`method ${received[1]}`);
        received = received.subarray(2);
        stage = 1;
        const request = Buffer.from([5, 1, 0, 1, ...ip.split('.').map(Number), targetPort >> 8, targetPort & 255]);
        socket.write(request);
      }
      if (stage === 1 && received.length >= 10) {
        socket.off('data', onData);
        if (received[1] !== 0) return fail(`reply ${received[1]}`);
        resolve(socket);
      }
    });
    function fail(why: string): void {
      socket.destroy();
      reject(new Error(`SOCKS5 CONNECT ${ip}:${targetPort} refused: ${why}`));
    }
  });
}

describe('the wmproxy image', { skip }, () => {
  const { config, healthTest, healthTimeoutMs, container } = setup ?? ({} as Partial<Setup>);
  /** The runtime the image's entrypoint runs (bun, or node in a Node image), for scripts run with `docker exec`. */
  const runtime = config?.Entrypoint[0] ?? 'bun';

  after(async () => {
    await cleanUp(undefined);
  });

  test('runs the CLI: version names the runtime of the entrypoint', () => {
    const run = spawnSync('docker', ['run', '--rm', '--label', `${E2E_LABEL}=${SESSION}`, '--no-healthcheck', PROXY_IMAGE, 'version', '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(run.status, 0, run.stderr);
    const info = JSON.parse(run.stdout) as { version: string; runtime: string };
    assert.equal(info.version, '0.1.0');
    assert.equal(info.runtime, runtime);
  });

  test('runs as uid/gid 65534: the image says so and PID 1 (wmproxy) has those ids', async () => {
    assert.equal(config!.User, '65534:65534');
    const script = 'process.stdout.write(require("fs").readFileSync("/proc/1/status", "utf8"))';
    const result = await container!.exec([runtime, '-e', script]);
    assert.equal(result.exitCode, 0, result.output);
    // Real, effective, saved and filesystem ids.
    assert.match(result.stdout, /^Uid:\t65534\t65534\t65534\t65534$/m);
    assert.match(result.stdout, /^Gid:\t65534\t65534\t65534\t65534$/m);
  });

  test('its HEALTHCHECK runs the entrypoint CLI: `probe` of the control API /healthz, giving up before Docker does', () => {
    const command = healthTest!.slice(1);
    assert.deepEqual(command.slice(0, config!.Entrypoint.length), config!.Entrypoint, 'the same CLI as the entrypoint');
    const [subcommand, target, ...options] = command.slice(config!.Entrypoint.length);
    assert.equal(subcommand, 'probe');
    assert.equal(target, 'http://127.0.0.1:8837/healthz', 'the control API of docker/wmproxy.toml');
    // The probe's own timeout must end first, so its reason (not Docker's kill) is what the log shows.
    assert.ok(options.includes('--timeout'), `probe options: ${options.join(' ')}`);
    const timeout = options[options.indexOf('--timeout') + 1]!;
    assert.ok(probeTimeoutMs(timeout) < healthTimeoutMs!, `probe --timeout ${timeout} < Docker's ${healthTimeoutMs} ms`);
  });

  test('started with the default command, the container becomes healthy', async () => {
    const state = await waitForHealth(container!.getId(), 'healthy', healthTimeoutMs!);
    const last = state.Log.at(-1)!;
    assert.equal(last.ExitCode, 0, last.Output);
    assert.match(last.Output, /^healthy +http:\/\/127\.0\.0\.1:8837\/healthz .* status 200$/m);
  });

  test('frozen wmproxy (SIGSTOP to PID 1): the probe times out and the container becomes unhealthy', async () => {
    const id = container!.getId();
    await waitForHealth(id, 'healthy', healthTimeoutMs!);
    const stop = await docker(['kill', '--signal', 'STOP', id]);
    assert.equal(stop.code, 0, stop.stderr);
    const state = await waitForHealth(id, 'unhealthy', healthTimeoutMs!);
    assert.ok(state.FailingStreak >= RETRIES, JSON.stringify(state));
    const last = state.Log.at(-1)!;
    console.log(`HEALTHCHECK while frozen: exit ${last.ExitCode}\n${last.Output}`);
    assert.equal(last.ExitCode, 1, 'the probe ends by itself with exit 1');
    const timeout = healthTest![healthTest!.indexOf('--timeout') + 1]!;
    assert.match(last.Output, new RegExp(`^unhealthy +http://127\\.0\\.0\\.1:8837/healthz .* timeout after ${probeTimeoutMs(timeout)} ms \\(no response\\)$`, 'm'));
  });

  test('resumed (SIGCONT), the container is healthy again', async () => {
    const id = container!.getId();
    const resume = await docker(['kill', '--signal', 'CONT', id]);
    assert.equal(resume.code, 0, resume.stderr);
    const state = await waitForHealth(id, 'healthy', healthTimeoutMs!);
    assert.equal(state.FailingStreak, 0);
    assert.match(state.Log.at(-1)!.Output, /status 200$/m);
  });

  test('proxy clients cannot reach the control API on the container loopback (403), over HTTP or CONNECT', async () => {
    const port = container!.getMappedPort(8090);
    const viaHttp = await curl(['-x', `http://127.0.0.1:${port}`, '-X', 'POST', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:8837/stop']);
    assert.equal(viaHttp.stdout, '403', viaHttp.stderr);
    await assert.rejects(openTunnel(port, '127.0.0.1:8837'), /CONNECT 127\.0\.0\.1:8837 refused: HTTP\/1\.1 403/);
    assert.equal((await health(container!.getId())).Status, 'healthy', 'still running');
  });

  test('while a stop drains an open tunnel, the HEALTHCHECK command gets 503; then wmproxy exits 0', async () => {
    const id = container!.getId();
    const port = container!.getMappedPort(8090);
    // An open SOCKS5 tunnel (to the proxy's own port on the container's network address: HTTP CONNECT
    // of an exposed proxy reaches only 443 and 8443) keeps the stop draining.
    const tunnel = await openSocksTunnel(port, container!.getIpAddress('bridge'), 8090);
    try {
      // The control API answers on the container's loopback only: ask from inside.
      const script = 'const r = await fetch("http://127.0.0.1:8837/stop", { method: "POST", headers: { "X-Wmproxy-Request": "1" } }); process.stdout.write(await r.text())';
      const stop = await container!.exec([runtime, '-e', script]);
      assert.equal(stop.exitCode, 0, stop.output);
      assert.equal((JSON.parse(stop.stdout) as { stopping: boolean }).stopping, true);
      const probe = await container!.exec(healthTest!.slice(1));
      console.log(`HEALTHCHECK command while draining: exit ${probe.exitCode}\n${probe.output}`);
      assert.equal(probe.exitCode, 1, probe.output);
      assert.match(probe.stdout, /^unhealthy +http:\/\/127\.0\.0\.1:8837\/healthz .* status 503 not in 200-399$/m);
    } finally {
      tunnel.destroy();
    }
    // The last connection gone, the drain ends and the process exits cleanly.
    const wait = await docker(['wait', id]);
    assert.equal(wait.code, 0, wait.stderr);
    assert.equal(wait.stdout.trim(), '0');
  });
});

/** A probe --timeout as written in the HEALTHCHECK (e.g. 3s, 500ms), in ms. */
function probeTimeoutMs(text: string): number {
  const match = /^(\d+)(ms|s)$/.exec(text);
  if (!match) throw new Error(`unexpected --timeout "${text}" in the HEALTHCHECK`);
  return Number(match[1]) * (match[2] === 's' ? 1000 : 1);
}
