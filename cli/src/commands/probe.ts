import { writeFile } from 'node:fs/promises';
import { Args, Flags } from '@oclif/core';
import {
  formatTable,
  HealthChecker,
  parseDuration,
  parseTargetUrl,
  runProbes,
  toJUnit,
  type ActiveOptions,
  type HttpCheck,
  type ProbeRunReport,
  type ProbeTarget,
  type TransitionEvent,
} from '@wmproxy/health';
import { UsageError, WmproxyCommand } from '../base.js';


export default class Probe extends WmproxyCommand {
  static override summary = 'Probe TCP, HTTP(S) and gRPC targets once, until healthy (--wait), or continuously (--watch).';
  static override description = [
    'TARGET is tcp://host:port, http://host[:port]/path, https://host[:port]/path, grpc://host:port[/service] or grpcs://host[:port][/service].',
    'A gRPC target calls grpc.health.v1.Health/Check (h2c; grpcs: TLS with ALPN h2): SERVING is healthy.',
    'Exit status: 0 when every target is healthy, 1 when any is not, 2 for bad arguments.',
    'Without --rise/--fall one probe decides each target; with them, that many consecutive results are needed.',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> probe tcp://127.0.0.1:5432 http://127.0.0.1:8080/healthz',
    '<%= config.bin %> probe https://example.test/ready --expect-status 200 --expect-body /ok/ --wait 30s',
    '<%= config.bin %> probe http://127.0.0.1:8080/ --watch --interval 500ms',
    '<%= config.bin %> probe grpc://127.0.0.1:50051/my.pkg.Users grpcs://api.example.test --insecure',
  ];
  static override strict = false;
  static override args = {
    target: Args.string({ description: 'tcp://host:port, http://…, https://…, grpc://host:port[/service] or grpcs://… (repeatable)', required: false }),
  };
  static override flags = {
    interval: Flags.string({ description: 'time between probes (default 1s, or the --timeout if longer)' }),
    timeout: Flags.string({ description: 'a probe fails after this long (at most the interval)', default: '1s' }),
    rise: Flags.string({ description: 'consecutive successes to be healthy (default 1)' }),
    fall: Flags.string({ description: 'consecutive failures to be unhealthy (default 1)' }),
    'expect-status': Flags.string({ description: 'accepted HTTP statuses, e.g. 200-299,301 (default 200-399)' }),
    'expect-body': Flags.string({ description: 'the body must contain TEXT or match /REGEX/' }),
    header: Flags.string({ description: 'extra request header K:V (repeatable)', multiple: true }),
    method: Flags.string({ description: 'HTTP method (default GET)' }),
    insecure: Flags.boolean({ description: 'do not verify TLS certificates (https://, grpcs://)', default: false }),
    wait: Flags.string({ description: 'keep probing until all are healthy or DURATION passes' }),
    watch: Flags.boolean({ description: 'keep probing and show every change until interrupted', default: false }),
    json: Flags.boolean({ description: 'machine-readable output', default: false }),
    junit: Flags.string({ description: 'write a JUnit XML report to FILE' }),
    config: Flags.string({ char: 'c', description: 'probe the upstreams of a configuration file' }),
  };

  async run(): Promise<void> {
    let setup: Setup;
    try {
      setup = await this.setup();
    } catch (error) {
      return this.usageError(error instanceof Error ? error.message : String(error));
    }
    if (setup.watch) return this.watch(setup);
    const report = await runProbes({
      targets: setup.targets,
      active: setup.active,
      mode: setup.waitMs === undefined ? 'once' : 'wait',
      deadlineMs: setup.waitMs,
    });
    if (setup.json) this.log(JSON.stringify(report, null, 2));
    else {
      const rows = report.results.map((result) => ({ state: result.state, label: result.label, latencyMs: result.latencyMs, reason: result.reason }));
      for (const line of formatTable(rows)) this.log(line);
      if (report.timedOut) this.log(`not all healthy after ${setup.waitText}`);
    }
    if (setup.junit) await writeFile(setup.junit, toJUnit(report));
    this.exit(report.healthy ? 0 : 1);
  }

  private async setup(): Promise<Setup> {
    const { flags, argv } = await this.parse(Probe);
    const raw = argv as string[];
    if (flags.config !== undefined && raw.length > 0) throw new UsageError('give TARGETs or -c CONFIG, not both');
    if (flags.config === undefined && raw.length === 0) throw new UsageError('at least one TARGET is required (tcp://host:port, http://…, https://…, grpc://…), or -c CONFIG');
    if (flags.watch && flags.wait !== undefined) throw new UsageError('--watch and --wait cannot be combined');
    const timeoutMs = duration('--timeout', flags.timeout);
    const active: Partial<ActiveOptions> = {
      // The checker caps the timeout at the interval: without an explicit
      // --interval, a longer --timeout must not be cut to the 1 s default.
      intervalMs: flags.interval === undefined ? Math.max(1000, timeoutMs) : duration('--interval', flags.interval),
      timeoutMs,
      rise: count('--rise', flags.rise) ?? 1,
      fall: count('--fall', flags.fall) ?? 1,
      decideOnFirst: flags.rise === undefined && flags.fall === undefined,
      history: 20,
    };
    if (active.intervalMs === 0) throw new UsageError('--interval must be more than 0');
    if (active.timeoutMs === 0) throw new UsageError('--timeout must be more than 0');
    const headers: Array<[string, string]> = (flags.header ?? []).map((header) => {
      const colon = header.indexOf(':');
      if (colon <= 0) throw new UsageError(`--header "${header}" must be NAME:VALUE`);
      return [header.slice(0, colon).trim(), header.slice(colon + 1).trim()];
    });
    const targets: ProbeTarget[] = flags.config !== undefined ? await configuredTargets(flags.config) : raw.map((label) => {
      const spec = parseTargetUrl(label);
      const given = spec.check;
      if (given && given.type !== 'tcp' && given.type !== 'http' && given.type !== 'https') {
        // gRPC: the HTTP flags do not apply; --insecure does.
        if (flags.insecure) spec.check = { ...given, tlsVerify: false };
      } else if (given && given.type !== 'tcp') {
        const check: HttpCheck = { ...given };
        if (flags.method !== undefined) check.method = flags.method;
        if (flags['expect-status'] !== undefined) check.expectStatus = flags['expect-status'];
        if (flags['expect-body'] !== undefined) check.expectBody = flags['expect-body'];
        if (headers.length > 0) check.headers = headers;
        if (flags.insecure) check.tlsVerify = false;
        spec.check = check;
      }
      return { label, spec };
    });
    // Validate every target and option now (bad input exits 2, not 1).
    const probe = new HealthChecker({ active });
    try {
      for (const target of targets) probe.add(target.spec);
    } finally {
      await probe.close();
    }
    const setup: Setup = { targets, active, watch: flags.watch, json: flags.json };
    if (flags.wait !== undefined) {
      setup.waitMs = duration('--wait', flags.wait);
      setup.waitText = flags.wait;
    }
    if (flags.junit !== undefined) {
      if (flags.junit === '') throw new UsageError('--junit needs a FILE');
      setup.junit = flags.junit;
    }
    return setup;
  }

  /** Until interrupted: a live table on a TTY, otherwise one line (or JSON object) per transition. */
  private async watch(setup: Setup): Promise<void> {
    const checker = new HealthChecker({ active: setup.active, passive: { enabled: false }, panicThreshold: 0 });
    const labels = new Map<string, string>();
    for (const target of setup.targets) {
      const key = checker.add(target.spec);
      if (!labels.has(key)) labels.set(key, target.label);
    }
    const tty = process.stdout.isTTY === true && !setup.json;
    let drawn = 0;
    const redraw = (): void => {
      const snapshot = checker.snapshot();
      const rows = [...labels].map(([key, label]) => {
        const check = snapshot.targets.flatMap((target) => target.checks).find((entry) => entry.key === key);
        const last = check?.history.at(-1);
        return { state: check?.state ?? 'unknown', label, latencyMs: last?.latencyMs, reason: last?.reason ?? 'waiting for the first probe' };
      });
      const lines = formatTable(rows);
      lines.push(`${new Date().toISOString()}  (Ctrl-C to stop)`);
      if (drawn > 0) process.stdout.write(`\x1b[${drawn}A`);
      process.stdout.write(lines.map((line) => `\x1b[2K${line}\n`).join(''));
      drawn = lines.length;
    };
    const onTransition = (event: TransitionEvent): void => {
      const label = labels.get(event.key) ?? event.target;
      if (setup.json) this.log(JSON.stringify({ ...event, label }));
      else this.log(`${new Date(event.at).toISOString()} ${label} ${event.from} -> ${event.to} (${event.reason}, ${event.latencyMs}ms)`);
    };
    let timer: ReturnType<typeof setInterval> | undefined;
    if (tty) {
      redraw();
      checker.events.on('probe', () => undefined); // keep probe results flowing into history
      timer = setInterval(redraw, Math.min(1000, Math.max(100, setup.active.intervalMs ?? 1000)));
    } else checker.events.on('transition', onTransition);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    if (timer) clearInterval(timer);
    if (tty) redraw();
    const healthy = checker.snapshot().targets.every((target) => target.state === 'healthy');
    await checker.close();
    this.exit(healthy ? 0 : 1);
  }
}

interface Setup {
  targets: ProbeTarget[];
  active: Partial<ActiveOptions>;
  watch: boolean;
  json: boolean;
  waitMs?: number;
  waitText?: string;
  junit?: string;
}

function duration(flag: string, value: string): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
}

function count(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`${flag} must be a whole number of at least 1 (got "${value}")`);
  return Number(value);
}

/**
 * Every upstream server of a configuration file, with the check configured
 * for it (the default TCP check unless the file says otherwise); servers
 * whose checks are switched off are left out. A file that does not validate
 * is a bad argument.
 */
async function configuredTargets(file: string): Promise<ProbeTarget[]> {
  const { ConfigError, formatIssue, loadConfig, upstreamTargets } = await import('@wmproxy/config');
  let config;
  try {
    config = await loadConfig(file);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more: wmproxy check -c ${file})` : '';
    throw new UsageError(`${formatIssue(error.issues[0]!)}${more}`);
  }
  const targets = upstreamTargets(config)
    .filter((spec) => spec.check !== null)
    .map((spec) => ({ label: `${spec.pool ?? 'default'} ${spec.address}`, spec }));
  if (targets.length === 0) throw new UsageError(`${file}: no upstream server with an active check`);
  return targets;
}
