// Shared helpers for the container tests: is Docker there, build the images
// once, run curl, make a throw-away certificate, start containers whose ports
// are published on 127.0.0.1 only.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The reaper (ryuk) image cannot be pulled offline; every test removes its own containers.
process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
// Inside a container (/.dockerenv) testcontainers would otherwise pull alpine to
// find the gateway; the published ports are on this host's loopback anyway.
process.env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';

const { GenericContainer, Network, Wait } = await import('testcontainers');
export { Network, Wait };
import type { StartedTestContainer } from 'testcontainers';
export type { StartedTestContainer, StartedNetwork } from 'testcontainers';

/** Label put on everything the tests create, so a CI script can sweep leftovers. */
export const E2E_LABEL = 'wmproxy.e2e';
/** This process's value of that label: `sweepSession` removes exactly what this run created. */
export const SESSION = randomBytes(6).toString('hex');
export const PROXY_IMAGE = process.env.WMPROXY_E2E_IMAGE ?? 'wmproxy:local';
/** The flaky backend (docker/backend/flaky-backend.mjs): HTTP 8080, HTTPS 8443, TCP 7000, control 9000. */
export const BACKEND_IMAGE = 'wmproxy-backend:local';
/** The host's curl in an image (ENTRYPOINT curl), to drive proxies from inside a Docker network. */
export const CURL_IMAGE = 'wmproxy-curl:local';
/** The flaky backend's last start-up line: every port listens. */
export const BACKEND_READY = /flaky-backend .*: http 8080.*control 9000/;

/** The repository root (this file runs from e2e/test or e2e/dist/test). */
export const repoRoot = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'docker', 'build-image.sh'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the repository root (docker/build-image.sh)');
    dir = parent;
  }
  return dir;
})();

/** Why the container tests cannot run here, or undefined when Docker answers. */
export function dockerUnavailable(): string | undefined {
  const probe = spawnSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8', timeout: 20_000 });
  if (probe.error) return `docker CLI not usable: ${probe.error.message}`;
  if (probe.status !== 0) return `Docker daemon not reachable: ${(probe.stderr || '').trim().split('\n').pop()}`;
  return undefined;
}

/**
 * Skip reason for a suite: set when Docker is missing, except in CI
 * (CI=true), where a missing Docker is a failure rather than a skip.
 */
export function dockerSkipReason(): string | false {
  const reason = dockerUnavailable();
  if (!reason) return false;
  if (process.env.CI) throw new Error(`CI=true but the container tests cannot run: ${reason}`);
  const skip = `${reason} (the e2e tests need Docker)`;
  console.warn(`e2e: skipping container tests: ${skip}`); // Bun's reporter does not print skip reasons
  return skip;
}

let imagesBuilt = false;
/** Build wmproxy:local, wmproxy-backend:local and wmproxy-curl:local from the current tree (once per process). */
export function buildImages(): void {
  if (imagesBuilt || process.env.WMPROXY_E2E_IMAGE) return;
  const result = spawnSync('bash', [join(repoRoot, 'docker', 'build-image.sh'), '--no-build'], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (result.status !== 0) {
    throw new Error(`docker/build-image.sh failed (${result.status ?? result.signal}):\n${result.stderr}${result.stdout}`);
  }
  imagesBuilt = true;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a command to its end (never throws on failure: the exit code is part of the result; -1 when killed or not started). */
export function run(command: string, args: string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: repoRoot, encoding: 'utf8', timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

/** curl on the host (30 s at most). */
export function curl(args: string[]): Promise<RunResult> {
  return run('curl', ['-sS', '--max-time', '30', ...args]);
}

/**
 * Run curl in a throw-away container on `network` (so names resolve through
 * Docker's DNS and traffic stays between containers). `files` are mounted
 * read-only at the same path inside (e.g. a CA file for --cacert).
 */
export function curlIn(network: string, args: string[], files: string[] = []): Promise<RunResult> {
  const mounts = files.flatMap((file) => ['-v', `${file}:${file}:ro`]);
  return run('docker', ['run', '--rm', '--label', `${E2E_LABEL}=${SESSION}`, '--network', network, ...mounts, CURL_IMAGE, '-sS', '--max-time', '30', ...args]);
}

/** A self-signed certificate (and its key) for `name`, made with openssl. */
export function selfSignedCert(name: string): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-e2e-cert-'));
  try {
    const result = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
        '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`,
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      { encoding: 'utf8' },
    );
    if (result.status !== 0) throw new Error(`openssl failed: ${result.stderr}`);
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A loopback port that was free a moment ago (the kernel's choice). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

let sweepOnExit = false;
const PORT_CLASH = /address already in use|port is already allocated/;

/**
 * A container whose published ports listen on the host's 127.0.0.1 only (an
 * open proxy must not be reachable from outside the machine), labelled with
 * this run's session for clean-up. Docker picks host ports without asking the
 * kernel, so they can clash with other processes' sockets: the host port is
 * chosen by the kernel instead, and a start that still clashes is retried.
 */
export class LocalContainer extends GenericContainer {
  private readonly loopbackPorts: number[] = [];

  constructor(image: string) {
    super(image);
    this.withLabels({ [E2E_LABEL]: SESSION });
  }

  withLoopbackPorts(...ports: number[]): this {
    this.withExposedPorts(...ports);
    this.loopbackPorts.push(...ports);
    return this;
  }

  override async start(): Promise<StartedTestContainer> {
    // Safety net: whatever way the process ends, this run's containers go with it.
    if (!sweepOnExit) {
      sweepOnExit = true;
      process.once('exit', sweepSession);
    }
    for (let attempt = 1; ; attempt++) {
      for (const port of this.loopbackPorts) {
        this.hostConfig.PortBindings![`${port}/tcp`] = [{ HostIp: '127.0.0.1', HostPort: String(await freePort()) }];
      }
      try {
        return await super.start();
      } catch (error) {
        if (attempt >= 5 || !PORT_CLASH.test(String(error))) throw error;
      }
    }
  }
}

/** Remove every container this run labelled (including ones that failed to start). */
export function sweepSession(): void {
  const list = spawnSync('docker', ['ps', '-aq', '--filter', `label=${E2E_LABEL}=${SESSION}`], { encoding: 'utf8' });
  const ids = list.stdout.split('\n').filter(Boolean);
  if (ids.length > 0) spawnSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' });
}

/** End of a suite: remove every container of this run, then the network (which must be empty). */
export async function cleanUp(network: { stop(): Promise<unknown> } | undefined): Promise<void> {
  sweepSession();
  try {
    await network?.stop();
  } catch {
    // Never created, or already gone.
  }
}
