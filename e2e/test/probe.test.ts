// `wmproxy probe` as a CI gate against flaky backend containers: from the
// host (on Node and on Bun, through the published ports) and from a wmproxy
// container on the Docker network (by container name). Exit codes 0 / 1 / 2,
// the JUnit report (a <failure> naming the bad target and why), --json, and
// --wait both ending well and timing out. The exit codes and the JUnit XML of
// failing runs are printed, so CI logs show what a gate sees.
import { test, describe, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BACKEND_IMAGE, BACKEND_READY, E2E_LABEL, PROXY_IMAGE, SESSION, LocalContainer, Network, Wait, buildImages, cleanUp, curl, dockerSkipReason, repoRoot, run,
  type RunResult, type StartedNetwork, type StartedTestContainer,
} from './support.js';

const skip = dockerSkipReason();
const NAMES = ['b1', 'b2', 'b3'] as const;
type Name = (typeof NAMES)[number];

interface Setup {
  network: StartedNetwork;
  backends: Record<Name, StartedTestContainer>;
  /** Where the JUnit reports go; mode 0777 so that the container's uid 65534 can write. */
  reports: string;
}

/** Network and backends, at module level (hooks have the per-test timeout; an image build may not fit). */
async function setUp(): Promise<Setup> {
  buildImages();
  const reports = mkdtempSync(join(tmpdir(), 'wmproxy-e2e-probe-'));
  chmodSync(reports, 0o777);
  let network: StartedNetwork | undefined;
  try {
    const net = (network = await new Network().start());
    const started = await Promise.all(NAMES.map((name) =>
      new LocalContainer(BACKEND_IMAGE)
        .withNetwork(net)
        .withNetworkAliases(name)
        .withEnvironment({ BACKEND_ID: name })
        .withLoopbackPorts(8080, 9000)
        .withWaitStrategy(Wait.forLogMessage(BACKEND_READY))
        .withStartupTimeout(120_000)
        .start()));
    const backends = Object.fromEntries(NAMES.map((name, index) => [name, started[index]!])) as Record<Name, StartedTestContainer>;
    return { network: net, backends, reports };
  } catch (error) {
    await cleanUp(network);
    rmSync(reports, { recursive: true, force: true });
    throw error;
  }
}

const setup = skip ? undefined : await setUp();

/** The CLI on the host, on each runtime (Node runs the compiled dist/, Bun the sources). */
const HOST_RUNTIMES = [
  { name: 'Node', command: 'node' },
  { name: 'Bun', command: join(repoRoot, 'node_modules', '.bin', 'bun') },
];

function probeOnHost(command: string, args: string[]): Promise<RunResult> {
  return run(command, [join(repoRoot, 'cli', 'bin', 'run.js'), 'probe', ...args]);
}

/** `wmproxy probe` in a throw-away wmproxy container on the backends' network; the report directory is at /reports. */
function probeInContainer(args: string[]): Promise<RunResult> {
  return run('docker', [
    'run', '--rm', '--label', `${E2E_LABEL}=${SESSION}`, '--network', setup!.network.getName(),
    '--no-healthcheck', '-v', `${setup!.reports}:/reports`, PROXY_IMAGE, 'probe', ...args,
  ]);
}

/** Switch a backend's failure mode through its published control port. */
async function setMode(name: Name, mode: string): Promise<void> {
  const result = await curl(['-X', 'POST', `http://127.0.0.1:${setup!.backends[name].getMappedPort(9000)}/mode/${mode}`]);
  assert.equal(result.code, 0, result.stderr);
}

/** How many /health requests a backend has answered (or failed) since it started. */
async function healthChecks(name: Name): Promise<number> {
  const result = await curl([`http://127.0.0.1:${setup!.backends[name].getMappedPort(9000)}/stats`]);
  assert.equal(result.code, 0, result.stderr);
  return (JSON.parse(result.stdout) as { healthChecks: number }).healthChecks;
}

/** A backend's /health as the host reaches it. */
function hostTarget(name: Name): string {
  return `http://127.0.0.1:${setup!.backends[name].getMappedPort(8080)}/health`;
}

// ---------------------------------------------------------------- the report
interface JUnitCase {
  classname: string;
  name: string;
  failure?: { message: string; type: string; details: string };
}

interface JUnit {
  tests: number;
  failures: number;
  cases: JUnitCase[];
}

/** The XML attribute and text escapes of packages/health/src/report.ts (numeric references). */
function decodeXml(text: string): string {
  return text.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)));
}

/** Just enough of a JUnit report to assert on: the suite's counts and each testcase with its failure. */
function parseJUnit(xml: string): JUnit {
  const suite = /<testsuite name="[^"]*" tests="(\d+)" failures="(\d+)"/.exec(xml);
  assert.ok(suite, `no <testsuite> in:\n${xml}`);
  const cases: JUnitCase[] = [];
  const testcase = /<testcase classname="([^"]*)" name="([^"]*)" time="[\d.]+"(?:\/>|>\s*<failure message="([^"]*)" type="([^"]*)">([^<]*)<\/failure>\s*<\/testcase>)/g;
  for (const match of xml.matchAll(testcase)) {
    const entry: JUnitCase = { classname: match[1]!, name: decodeXml(match[2]!) };
    if (match[3] !== undefined) entry.failure = { message: decodeXml(match[3]), type: match[4]!, details: decodeXml(match[5]!) };
    cases.push(entry);
  }
  assert.equal(cases.length, Number(suite[1]), `every testcase parsed:\n${xml}`);
  return { tests: Number(suite[1]), failures: Number(suite[2]), cases };
}

/** The --json report (packages/health/src/run.ts ProbeRunReport, the fields asserted on). */
interface JsonReport {
  healthy: boolean;
  timedOut: boolean;
  results: Array<{ label: string; state: string; healthy: boolean; reason: string; status?: number; history: Array<{ ok: boolean; reason: string }> }>;
}

function readReport(file: string): { xml: string; junit: JUnit } {
  const xml = readFileSync(file, 'utf8');
  return { xml, junit: parseJUnit(xml) };
}

let reportCount = 0;
/** A fresh report file name under the shared directory (host path and the container's /reports path). */
function reportFile(): { host: string; container: string } {
  const name = `report-${++reportCount}.xml`;
  return { host: join(setup!.reports, name), container: `/reports/${name}` };
}

describe('wmproxy probe as a CI gate against backend containers', { skip }, () => {
  afterEach(async () => {
    if (setup) await Promise.all(NAMES.map((name) => setMode(name, 'healthy')));
  });

  after(async () => {
    await cleanUp(setup?.network);
    if (setup) rmSync(setup.reports, { recursive: true, force: true });
  });

  for (const runtime of HOST_RUNTIMES) {
    test(`host, ${runtime.name}: every target healthy → exit 0, a JUnit report with every testcase passing`, async () => {
      const file = reportFile().host;
      const targets = NAMES.map(hostTarget);
      const result = await probeOnHost(runtime.command, [...targets, '--expect-body', '/^ok b\\d\\s*$/', '--json', '--junit', file]);
      console.log(`probe (${runtime.name}, all healthy): exit ${result.code}`);
      assert.equal(result.code, 0, result.stderr + result.stdout);
      const report = JSON.parse(result.stdout) as JsonReport;
      assert.equal(report.healthy, true);
      assert.deepEqual(report.results.map((entry) => [entry.label, entry.state, entry.status]), targets.map((target) => [target, 'healthy', 200]));
      const { junit } = readReport(file);
      assert.equal(junit.tests, 3);
      assert.equal(junit.failures, 0);
      assert.deepEqual(junit.cases.map((entry) => [entry.classname, entry.name, entry.failure]), targets.map((target) => ['wmproxy.probe.http', target, undefined]));
    });

    test(`host, ${runtime.name}: one target answers 503 → exit 1, its testcase fails with the status, the others pass`, async () => {
      await setMode('b2', 'error?status=503');
      const file = reportFile().host;
      const targets = NAMES.map(hostTarget);
      const result = await probeOnHost(runtime.command, [...targets, '--junit', file]);
      const { xml, junit } = readReport(file);
      console.log(`probe (${runtime.name}, b2 answers 503): exit ${result.code}\n${result.stdout}${xml}`);
      assert.equal(result.code, 1, result.stderr + result.stdout);
      assert.match(result.stdout, new RegExp(`^unhealthy +${literal(targets[1]!)} .* status 503 not in 200-399$`, 'm'));
      assert.equal(junit.tests, 3);
      assert.equal(junit.failures, 1);
      const failed = junit.cases.filter((entry) => entry.failure);
      assert.deepEqual(failed.map((entry) => entry.name), [targets[1]]);
      assert.equal(failed[0]!.failure!.message, 'unhealthy: status 503 not in 200-399');
      assert.equal(failed[0]!.failure!.type, 'unhealthy');
      assert.match(failed[0]!.failure!.details, /fail [\d.]+ms status 503/);
    });

    test(`host, ${runtime.name}: bad arguments → exit 2 with a one-line error, no report written`, async () => {
      const cases: Array<[string[], RegExp]> = [
        [[], /at least one TARGET is required/],
        [['ftp://127.0.0.1/'], /invalid target "ftp:\/\/127\.0\.0\.1\/": scheme must be tcp:\/\/, http:\/\/, https:\/\/, grpc:\/\/ or grpcs:\/\//],
        [[hostTarget('b1'), '--timeout', 'soon'], /--timeout: invalid duration "soon"/],
        [[hostTarget('b1'), '--watch', '--wait', '5s'], /--watch and --wait cannot be combined/],
      ];
      for (const [args, message] of cases) {
        const file = reportFile().host;
        const result = await probeOnHost(runtime.command, [...args, '--junit', file]);
        console.log(`probe (${runtime.name}) ${args.join(' ')}: exit ${result.code}`);
        assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}${result.stdout}`);
        assert.match(result.stderr, message);
        assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
        assert.equal(result.stdout, '');
        assert.equal(existsSync(file), false, 'bad arguments write no report');
      }
    });
  }

  test('host, Node: --wait 20s keeps probing a failing backend until it recovers, then exits 0', async () => {
    await setMode('b2', 'error?status=503');
    const before = await healthChecks('b2');
    const targets = NAMES.map(hostTarget);
    const probing = probeOnHost('node', [...targets, '--wait', '20s', '--interval', '200ms', '--json']);
    // Recover only once the probe has seen the failure (b2 counts its /health requests), about a second in.
    const deadline = Date.now() + 15_000;
    while ((await healthChecks('b2')) === before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await setMode('b2', 'healthy');
    const result = await probing;
    console.log(`probe --wait 20s (b2 recovers): exit ${result.code}`);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    const report = JSON.parse(result.stdout) as JsonReport;
    assert.equal(report.healthy, true);
    assert.equal(report.timedOut, false);
    const b2 = report.results[1]!;
    assert.equal(b2.label, targets[1]);
    assert.equal(b2.history[0]!.ok, false, 'the first probes of b2 failed');
    assert.match(b2.history[0]!.reason, /status 503/);
    assert.equal(b2.history.at(-1)!.ok, true, 'and the last one passed');
  });

  test('host, Bun: --wait gives up at the deadline → exit 1 with the timeout message, the stuck target failing in JUnit', async () => {
    await setMode('b3', 'error?status=503');
    const file = reportFile().host;
    const targets = NAMES.map(hostTarget);
    const result = await probeOnHost(HOST_RUNTIMES[1]!.command, [...targets, '--wait', '2s', '--interval', '200ms', '--junit', file]);
    const { xml, junit } = readReport(file);
    console.log(`probe --wait 2s (b3 stays at 503): exit ${result.code}\n${result.stdout}${xml}`);
    assert.equal(result.code, 1, result.stderr + result.stdout);
    assert.match(result.stdout, /^not all healthy after 2s$/m);
    assert.equal(junit.failures, 1);
    const failed = junit.cases.filter((entry) => entry.failure);
    assert.deepEqual(failed.map((entry) => entry.name), [targets[2]]);
    assert.match(failed[0]!.failure!.message, /status 503/);
    // Probed all along the wait (every 200 ms for 2 s), not once.
    assert.ok(failed[0]!.failure!.details.split('\n').length > 2, failed[0]!.failure!.details);
  });

  test('in a container on the network: every backend healthy by name → exit 0, the JUnit report written to the mounted directory', async () => {
    const file = reportFile();
    const targets = ['http://b1:8080/health', 'http://b2:8080/health', 'tcp://b3:7000'];
    const result = await probeInContainer([...targets, '--json', '--junit', file.container]);
    console.log(`probe in a container (all healthy): exit ${result.code}`);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    const report = JSON.parse(result.stdout) as JsonReport;
    assert.equal(report.healthy, true);
    assert.deepEqual(report.results.map((entry) => [entry.label, entry.state]), targets.map((target) => [target, 'healthy']));
    const { junit } = readReport(file.host);
    assert.equal(junit.tests, 3);
    assert.equal(junit.failures, 0);
    assert.deepEqual(junit.cases.map((entry) => [entry.classname, entry.name, entry.failure]), [
      ['wmproxy.probe.http', targets[0], undefined],
      ['wmproxy.probe.http', targets[1], undefined],
      ['wmproxy.probe.tcp', targets[2], undefined],
    ]);
  });

  test('in a container on the network: one backend refuses connections → exit 1, its testcase fails with ECONNREFUSED', async () => {
    await setMode('b2', 'refuse');
    const file = reportFile();
    const targets = ['http://b1:8080/health', 'http://b2:8080/health', 'tcp://b3:7000'];
    const result = await probeInContainer([...targets, '--json', '--junit', file.container]);
    const { xml, junit } = readReport(file.host);
    console.log(`probe in a container (b2 refuses): exit ${result.code}\n${xml}`);
    assert.equal(result.code, 1, result.stderr + result.stdout);
    const report = JSON.parse(result.stdout) as JsonReport;
    assert.equal(report.healthy, false);
    assert.deepEqual(report.results.map((entry) => entry.healthy), [true, false, true]);
    assert.match(report.results[1]!.reason, /ECONNREFUSED/);
    assert.equal(junit.failures, 1);
    const failed = junit.cases.filter((entry) => entry.failure);
    assert.deepEqual(failed.map((entry) => entry.name), [targets[1]]);
    assert.match(failed[0]!.failure!.message, /^unhealthy: .*ECONNREFUSED/);
  });

  test('in a container: bad arguments → exit 2', async () => {
    const result = await probeInContainer(['http://b1:8080/health', '--rise', '0']);
    console.log(`probe in a container --rise 0: exit ${result.code}`);
    assert.equal(result.code, 2, result.stderr + result.stdout);
    assert.match(result.stderr, /--rise must be a whole number of at least 1/);
  });
});

/** `text` as a literal in a regular expression. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
