import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { FUZZ_DIR } from './child.js';
import { RawClient } from './client.js';
import {
  AUTHORITY,
  CASE,
  instantiate,
  renderRequestCase,
  renderResponseCase,
  requestCaseArb,
  responseCaseArb,
  type GrammarProfile,
  type RequestCase,
  type ResponseCase,
} from './grammar.js';
import { HostileOrigin } from './hostile.js';
import { modelRequests, type Http1Parser, type Model } from './model.js';
import { judgeRequestCase, type Failure, type FailureKind, type Verdict } from './oracle.js';
import type { Origin, OriginRecord } from './origins.js';
import { fieldValues, refResponses } from './reference.js';

/** A proxy the fuzzers drive: started fresh for every case, in front of `upstream`. */
export interface ProxyUnderTest {
  /** `reverse` or `forward` (seeds name the proxies they apply to). */
  name: string;
  profile: GrammarProfile;
  /** The proxy's own request parser, to know what it believes the client sent. */
  parser: Http1Parser;
  limits: { requireHost?: boolean };
  start(upstream: string): Promise<RunningProxy>;
  /**
   * Failure kinds this proxy is known to have, with why (an issue being
   * fixed): the generated-case properties report them instead of failing.
   * Their exact reproductions stay in the seed corpus as todo tests.
   */
  knownIssues?: Partial<Record<FailureKind, string>>;
}

export interface RunningProxy {
  port: number;
  close(): Promise<void>;
}

/** Bounds of one case (no assertion depends on them: they only end waits). */
export interface CaseLimits {
  /** Longest wait for the responses a case expects before calling it a stall. */
  stallMs: number;
  /** Wait after sending each request in sequential delivery. */
  stepMs: number;
}

export const DEFAULT_LIMITS: CaseLimits = { stallMs: 1_500, stepMs: 1_000 };

/** RFC 9110 section 9.2.2. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

let tokenCounter = 0;
const tokenBase = Math.floor(Math.random() * 36 ** 3);

/** A fresh 6-character case token (`@CASE@`). */
export function caseToken(): string {
  tokenCounter = (tokenCounter + 1) % 36 ** 3;
  return ((tokenBase + tokenCounter) % 36 ** 3).toString(36).padStart(3, '0') + (tokenCounter % 36 ** 3).toString(36).padStart(3, '0');
}

function printable(bytes: Buffer, max = 1500): string {
  const text = JSON.stringify(bytes.subarray(0, max).toString('latin1'));
  return bytes.length > max ? `${text}... (${bytes.length} bytes)` : text;
}

function describeModel(model: Model): string {
  const requests = model.requests.map((m) => `${m.method} ${m.target} [${m.framing}${m.complete ? '' : ' incomplete'}${m.keepAlive ? '' : ' close'}] body=${JSON.stringify(m.body.toString('latin1'))}`);
  return `${requests.join('; ') || 'no request'}; then ${model.end}${model.errorReason ? ` (${model.errorStatus} ${model.errorReason})` : ''}`;
}

function describeOrigin(record: OriginRecord): string {
  const events = record.events.map((event) =>
    event.type === 'request'
      ? `request ${event.method} ${event.url} body=${JSON.stringify(Buffer.from(event.body ?? '', 'base64').toString('latin1'))}`
      : `${event.type} ${event.code ?? ''} ${event.reason ?? ''} ${event.url ?? ''}`.trim(),
  );
  const wire = record.wire.map((connection, i) => `  upstream connection ${i}: ${printable(connection.up)}`);
  return `${events.join('\n  ') || 'nothing'}\n${wire.join('\n')}`;
}

export interface RequestCaseResult {
  verdict: Verdict;
  report: string;
}

/** Send one request case through a fresh proxy to `origin` and judge it. */
export async function runRequestCase(proxy: ProxyUnderTest, origin: Origin, fcase: RequestCase, limits: CaseLimits = DEFAULT_LIMITS): Promise<RequestCaseResult> {
  const token = caseToken();
  const bytes = instantiate(fcase.template, token, origin.address);
  const model = modelRequests(bytes, proxy.parser, proxy.limits);
  const modelPastClose = modelRequests(bytes, proxy.parser, proxy.limits, true);
  const methods = [...model.requests.map((m) => m.method), 'GET'];
  const expected = model.requests.filter((m) => m.complete).length + (model.end === 'head-error' || model.end === 'body-error' ? 1 : 0);
  const running = await proxy.start(origin.address);
  let client: RawClient | undefined;
  let stalled = false;
  try {
    client = await RawClient.connect(running.port);
    const c = client;
    const count = (): number => {
      const parsed = refResponses(c.received, methods, false);
      return parsed.error !== undefined ? Number.POSITIVE_INFINITY : parsed.responses.length;
    };
    if (fcase.delivery === 'sequential' && model.requests.length > 1) {
      let sent = 0;
      for (const [i, m] of model.requests.entries()) {
        if (!m.complete) break;
        await c.write(bytes.subarray(sent, m.end));
        sent = m.end;
        if (i < model.requests.length - 1) await c.until(() => count() >= i + 1, limits.stepMs);
        if (c.closed) break;
      }
      if (sent < bytes.length) await c.write(bytes.subarray(sent));
    } else {
      let sent = 0;
      for (const split of [...fcase.splits, bytes.length]) {
        await c.write(bytes.subarray(sent, split));
        sent = split;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    const complete = await c.until(() => count() >= expected, limits.stallMs);
    stalled = !complete && !c.closed;
    await c.finish(1_000);
  } finally {
    client?.destroy();
    await running.close();
  }
  const record = await origin.collect();
  const verdict = judgeRequestCase({ model, modelPastClose, valid: fcase.valid, starts: fcase.starts, received: client.received, closed: client.closed, stalled, origin: record });
  const report = [
    `${proxy.name} proxy -> ${origin.name} origin, case ${token}`,
    `case (a seed): ${JSON.stringify(fcase)}`,
    `client sent: ${printable(bytes)}`,
    `proxy parsed: ${describeModel(model)}`,
    `origin: ${describeOrigin(record)}`,
    `client read: ${printable(client.received)}${client.closed ? ' (closed)' : ''}`,
    ...verdict.failures.map((failure) => `FAIL (${failure.kind}): ${failure.message}`),
    ...verdict.findings.map((finding) => `finding: ${finding}`),
  ].join('\n');
  return { verdict, report };
}

export interface ResponseCaseResult {
  failures: Failure[];
  findings: string[];
  report: string;
  stats: { responses: number; proxyAnswers: number; stalls: number };
}

/**
 * One response case: each step sends a request through a fresh proxy (kept
 * for the whole case, so its upstream pool carries over) to the hostile
 * origin, which answers with the step's scripted bytes. A client must only
 * ever read the answer to its own request (X-Resp names it), never the
 * hidden `X-Resp: smuggled` one, never bytes after a response, and, when the
 * origin's bytes frame unambiguously, exactly their body.
 */
export async function runResponseCase(proxy: ProxyUnderTest, origin: HostileOrigin, rcase: ResponseCase, limits: CaseLimits = DEFAULT_LIMITS): Promise<ResponseCaseResult> {
  const token = caseToken();
  const responses = rcase.steps.map((step) => instantiate(step.response, token, origin.address));
  rcase.steps.forEach((_, k) => origin.set(`${token}-${k}`, responses[k]!));
  const failures: Failure[] = [];
  const findings: string[] = [];
  const log: string[] = [];
  const fail = (kind: FailureKind, message: string): void => {
    failures.push({ kind, message });
  };
  const stats = { responses: 0, proxyAnswers: 0, stalls: 0 };
  const running = await proxy.start(origin.address);
  let client: RawClient | undefined;
  let offset = 0;
  let tunnelled = false;
  try {
    for (const [k, step] of rcase.steps.entries()) {
      if (step.newConnection || !client || client.closed || tunnelled) {
        tunnelled = false;
        client?.destroy();
        client = await RawClient.connect(running.port);
        offset = 0;
      }
      const c = client;
      const path = `/fz/${token}-${k}`;
      const target = proxy.profile.target === 'origin' ? path : `http://${origin.address}${path}`;
      const body = (step.method === 'POST' || step.method === 'PATCH') && step.body !== false ? 'Content-Length: 3\r\n\r\nabc' : '\r\n';
      await c.write(Buffer.from(`${step.method} ${target} HTTP/1.1\r\nHost: fuzz.test\r\n${body}`, 'latin1'));
      const read = (): ReturnType<typeof refResponses> => refResponses(c.received.subarray(offset), [step.method], c.closed);
      await c.until(() => {
        const parsed = read();
        return parsed.error !== undefined || parsed.responses.length > 0;
      }, limits.stallMs);
      const parsed = read();
      const expect = refResponses(responses[k]!, [step.method], true);
      const hostile = expect.responses[0];
      log.push(`step ${k} (${step.method}${step.newConnection ? ', new connection' : ''}): origin answers ${printable(responses[k]!, 400)}; client read ${printable(c.received.subarray(offset), 600)}${c.closed ? ' (closed)' : ''}`);
      if (parsed.error !== undefined) {
        fail('unparseable', `step ${k}: the client cannot parse the proxy's response: ${parsed.error}`);
        break;
      }
      const response = parsed.responses[0];
      if (!response) {
        if (!c.closed) {
          stats.stalls++;
          findings.push(`step ${k}: no complete response within ${limits.stallMs} ms (the proxy waits for more of the origin's body than a strict client would)`);
          c.destroy();
        }
        continue;
      }
      // The strict reading of the origin's bytes decides which response is this request's answer:
      // usually the first head (X-Resp: this id); after a 1xx, whatever final response follows it.
      const mine = `${token}-${k}`;
      const allowed = finalMark(responses[k]!) ?? mine;
      const mark = fieldValues(response.fields, 'x-resp')[0];
      if (mark !== undefined && mark !== allowed) {
        fail(
          mark === 'smuggled' ? 'response-smuggled' : mark === 'tunnel' ? 'tunnel-reuse' : 'response-desync',
          mark === 'smuggled'
            ? `step ${k}: the client read the response hidden in the origin's body as the answer to ${mine}`
            : mark === 'tunnel'
              ? `step ${k}: the request ${mine} went into a tunnel an earlier CONNECT opened on a reused upstream connection`
              : `step ${k}: the client read the response for ${mark} as the answer to ${mine}`,
        );
      }
      if (response.status === 101) fail('switched', `step ${k}: an unrequested 101 reached the client`);
      if (mark === allowed && hostile && expect.error === undefined && step.valid && hostile.framing !== 'close') {
        const wanted = step.method === 'HEAD' ? Buffer.alloc(0) : hostile.body;
        if (!response.body.equals(wanted)) fail('response-body', `step ${k}: the body differs from the origin's: got ${printable(response.body, 200)}, origin framed ${printable(wanted, 200)}`);
      }
      // A 2xx to CONNECT made this client connection a tunnel: the next step starts a new one.
      if (step.method === 'CONNECT' && response.status >= 200 && response.status < 300) tunnelled = true;
      // Bytes after the response: stray ones that came with it show here, later ones at the next step.
      const consumed = c.received.length - offset - parsed.rest.length;
      const extra = c.received.subarray(offset + consumed);
      if (extra.length > 0 && response.status !== 101 && !tunnelled) fail('stray-bytes', `step ${k}: the client read bytes after the response: ${printable(extra, 300)}`);
      stats.responses++;
      if (mark === undefined) stats.proxyAnswers++;
      offset = c.received.length;
    }
    // RFC 9110 section 9.2.2: a proxy MUST NOT retry a non-idempotent request on its own.
    const times = new Map<string, number>();
    for (const seen of origin.seen) if (seen.id !== undefined) times.set(seen.id, (times.get(seen.id) ?? 0) + 1);
    rcase.steps.forEach((step, k) => {
      const count = times.get(`${token}-${k}`) ?? 0;
      if (count > 1 && !IDEMPOTENT.has(step.method)) fail('retried-non-idempotent', `step ${k}: the origin received ${step.method} ${token}-${k} ${count} times`);
    });
  } finally {
    client?.destroy();
    await running.close();
    await origin.reset();
  }
  const report = [
    `${proxy.name} proxy -> hostile origin, case ${token}`,
    `case (a seed): ${JSON.stringify(rcase)}`,
    ...log,
    ...failures.map((failure) => `FAIL (${failure.kind}): ${failure.message}`),
    ...findings.map((finding) => `finding: ${finding}`),
  ].join('\n');
  return { failures, findings, report, stats };
}

/** The X-Resp of the first final (non-1xx, or 101) head in an origin's bytes: interim responses have no body, so heads follow heads. */
function finalMark(bytes: Buffer): string | undefined {
  const text = bytes.toString('latin1');
  let pos = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', pos);
    if (end < 0) return undefined;
    const head = text.slice(pos, end + 2);
    const status = Number(/^HTTP\/\S+ (\d{3})/.exec(head)?.[1] ?? '0');
    if (status >= 100 && status < 200 && status !== 101) {
      pos = end + 4;
      continue;
    }
    return /\r\nX-Resp:[ \t]*([^\r\n]*)/i.exec(head)?.[1];
  }
}

// ---------------------------------------------------------------- property runs

/** How long and how hard to fuzz: a fixed seed and run count in the test suite, a time budget and random seed nightly. */
export interface FuzzBudget {
  numRuns: number;
  seed: number;
  /** Stop after this long (fast-check's interruptAfterTimeLimit); the runs done so far count. */
  timeLimitMs?: number;
}

/**
 * The budget for a test: the fixed `numRuns`/`seed` given, unless `npm run
 * fuzz` set WMPROXY_FUZZ_SEED / WMPROXY_FUZZ_TIME_MS (then many runs within
 * the time, from that seed).
 */
export function budget(numRuns: number, seed: number): FuzzBudget {
  const time = Number(process.env.WMPROXY_FUZZ_TIME_MS ?? '');
  const envSeed = process.env.WMPROXY_FUZZ_SEED;
  if (Number.isFinite(time) && time > 0) {
    return { numRuns: 1_000_000, seed: envSeed !== undefined && envSeed !== '' ? Number(envSeed) : seed, timeLimitMs: time };
  }
  return { numRuns, seed: envSeed !== undefined && envSeed !== '' ? Number(envSeed) : seed };
}

export interface FuzzSummary {
  runs: number;
  findings: Map<string, number>;
  stats: { forwarded: number; responses: number; proxyAnswers: number; originRefusals: number; stalls: number };
}

/** Split failures into those that break the property and those the proxy declares as known issues. */
export function unexpectedFailures(proxy: ProxyUnderTest, failures: Failure[], findings: Map<string, number>): Failure[] {
  return failures.filter((failure) => {
    const known = proxy.knownIssues?.[failure.kind];
    if (known === undefined) return true;
    countFinding(findings, `known issue (${failure.kind}: ${known})`);
    return false;
  });
}

/** Where `npm run fuzz` asks failing cases to be written (one JSON seed per line). */
function recordFound(kind: 'request' | 'response', proxy: string, origin: string, fcase: unknown, failures: Failure[]): void {
  const file = process.env.WMPROXY_FUZZ_FOUND;
  if (!file) return;
  appendFileSync(file, JSON.stringify({ kind, proxy, origin, failures, case: fcase }) + '\n');
}

/** WMPROXY_FUZZ_SHOW=<regexp>: print the full report of every case with a finding that matches (to look into discrepancies). */
function showIfAsked(findings: string[], report: string): void {
  const pattern = process.env.WMPROXY_FUZZ_SHOW;
  if (!pattern) return;
  const re = new RegExp(pattern);
  if (findings.some((finding) => re.test(finding))) process.stderr.write(`\n---- ${report}\n`);
}

function countFinding(findings: Map<string, number>, finding: string): void {
  // Group by kind: strip the per-case ids.
  const key = finding.replace(/[0-9a-z]{6}-s?\d+/g, '<id>').replace(/#\d+/g, '#n').slice(0, 160);
  findings.set(key, (findings.get(key) ?? 0) + 1);
}

/** fast-check parameters for a property of the suite: `budget(numRuns, seed)` as `fc.assert` takes it (failures are shrunk). */
export function propertyParameters<T = unknown>(numRuns: number, seed: number): fc.Parameters<T> {
  return { ...fcParameters(budget(numRuns, seed)), endOnFailure: false } as fc.Parameters<T>;
}

function fcParameters(b: FuzzBudget): fc.Parameters<unknown> {
  const parameters: fc.Parameters<unknown> = { numRuns: b.numRuns, seed: b.seed, endOnFailure: b.timeLimitMs === undefined, verbose: 0 };
  if (b.timeLimitMs !== undefined) {
    parameters.interruptAfterTimeLimit = b.timeLimitMs;
    parameters.markInterruptAsFailure = false;
  }
  return parameters;
}

/**
 * Keeps the run in flight. At its time limit fast-check stops waiting for an
 * async run but does not stop it: without waiting for it here, a case would
 * go on (and reset shared origins) while the next test runs.
 */
export class RunTracker {
  private current: Promise<unknown> = Promise.resolve();

  track<T>(run: Promise<T>): Promise<T> {
    this.current = run.catch(() => undefined);
    return run;
  }

  /** Resolves once the last tracked run has ended. */
  settled(): Promise<unknown> {
    return this.current;
  }
}

/**
 * Run a property; on failure record the last (smallest) failing case once, for
 * `npm run fuzz`, and throw fast-check's report (seed and path included).
 */
async function checkProperty<T>(
  property: fc.IAsyncPropertyWithHooks<[T]>,
  b: FuzzBudget,
  runs: RunTracker,
  lastFailure: () => { kind: 'request' | 'response'; proxy: string; origin: string; fcase: unknown; failures: Failure[] } | undefined,
): Promise<void> {
  let details: fc.RunDetails<[T]>;
  try {
    details = await fc.check(property, fcParameters(b) as fc.Parameters<[T]>);
  } finally {
    await runs.settled();
  }
  if (!details.failed) return;
  const last = lastFailure();
  if (last) recordFound(last.kind, last.proxy, last.origin, last.fcase, last.failures);
  const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance ?? '');
  throw new Error(`${fc.defaultReportMessage(details) ?? 'property failed'}\n\nThe last failing case:\n${cause}`);
}

/** The request-side property over generated cases: throws with a full report (and the seed) on the first failure. */
export async function fuzzRequests(proxy: ProxyUnderTest, origin: Origin, b: FuzzBudget, limits: CaseLimits = DEFAULT_LIMITS): Promise<FuzzSummary> {
  const summary: FuzzSummary = { runs: 0, findings: new Map(), stats: { forwarded: 0, responses: 0, proxyAnswers: 0, originRefusals: 0, stalls: 0 } };
  let last: { kind: 'request'; proxy: string; origin: string; fcase: RequestCase; failures: Failure[] } | undefined;
  const runs = new RunTracker();
  const property = fc.asyncProperty(requestCaseArb(proxy.profile), (spec) => runs.track(requestRun(spec)));
  const requestRun = async (spec: Parameters<typeof renderRequestCase>[0]): Promise<void> => {
    const fcase = renderRequestCase(spec);
    const { verdict, report } = await runRequestCase(proxy, origin, fcase, limits);
    summary.runs++;
    summary.stats.forwarded += verdict.stats.forwarded;
    summary.stats.responses += verdict.stats.responses;
    summary.stats.proxyAnswers += verdict.stats.proxyAnswers;
    summary.stats.originRefusals += verdict.stats.originRefusals;
    if (verdict.stats.stalled) summary.stats.stalls++;
    for (const finding of verdict.findings) countFinding(summary.findings, finding);
    showIfAsked(verdict.findings, report);
    const unexpected = unexpectedFailures(proxy, verdict.failures, summary.findings);
    if (unexpected.length > 0) {
      last = { kind: 'request', proxy: proxy.name, origin: origin.name, fcase, failures: unexpected };
      throw new Error(report);
    }
  };
  await checkProperty(property, b, runs, () => last);
  return summary;
}

/** The response-side property over generated hostile answers. */
export async function fuzzResponses(proxy: ProxyUnderTest, origin: HostileOrigin, b: FuzzBudget, limits: CaseLimits = DEFAULT_LIMITS): Promise<FuzzSummary> {
  const summary: FuzzSummary = { runs: 0, findings: new Map(), stats: { forwarded: 0, responses: 0, proxyAnswers: 0, originRefusals: 0, stalls: 0 } };
  let last: { kind: 'response'; proxy: string; origin: string; fcase: ResponseCase; failures: Failure[] } | undefined;
  const runs = new RunTracker();
  const property = fc.asyncProperty(responseCaseArb, (steps) => runs.track(responseRun(steps)));
  const responseRun = async (steps: Parameters<typeof renderResponseCase>[0]): Promise<void> => {
    const rcase = renderResponseCase(steps);
    const result = await runResponseCase(proxy, origin, rcase, limits);
    summary.runs++;
    summary.stats.responses += result.stats.responses;
    summary.stats.proxyAnswers += result.stats.proxyAnswers;
    summary.stats.stalls += result.stats.stalls;
    for (const finding of result.findings) countFinding(summary.findings, finding);
    showIfAsked(result.findings, result.report);
    const unexpected = unexpectedFailures(proxy, result.failures, summary.findings);
    if (unexpected.length > 0) {
      last = { kind: 'response', proxy: proxy.name, origin: 'hostile', fcase: rcase, failures: unexpected };
      throw new Error(result.report);
    }
  };
  await checkProperty(property, b, runs, () => last);
  return summary;
}

/** A one-line summary for a test's diagnostics. */
export function summaryLine(summary: FuzzSummary): string {
  const s = summary.stats;
  const findings = [...summary.findings.entries()].map(([key, count]) => `${count}x ${key}`).join('; ');
  return `${summary.runs} cases: ${s.forwarded} requests reached the origin, ${s.responses} responses read (${s.proxyAnswers} from the proxy), ${s.originRefusals} origin refusals, ${s.stalls} stalls${findings ? `; findings: ${findings}` : ''}`;
}

// ---------------------------------------------------------------- regression seeds

export interface RequestSeed {
  name: string;
  /** Proxies (`reverse`, `forward`) it applies to; all when absent. */
  proxies?: string[];
  /** Origins it applies to; all when absent. */
  origins?: string[];
  /** Per proxy name: why it still fails (the test is marked todo). */
  todo?: Record<string, string>;
  case: RequestCase;
}

export interface ResponseSeed {
  name: string;
  proxies?: string[];
  todo?: Record<string, string>;
  case: ResponseCase;
}

/** The seed corpus: every `request*.json` / `response*.json` under packages/testkit/fuzz/seeds. */
export function loadSeeds(kind: 'request'): RequestSeed[];
export function loadSeeds(kind: 'response'): ResponseSeed[];
export function loadSeeds(kind: 'request' | 'response'): Array<RequestSeed | ResponseSeed> {
  const dir = join(FUZZ_DIR, 'seeds');
  if (!existsSync(dir)) return [];
  const seeds: Array<RequestSeed | ResponseSeed> = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.startsWith(kind) || !file.endsWith('.json')) continue;
    seeds.push(...(JSON.parse(readFileSync(join(dir, file), 'utf8')) as Array<RequestSeed | ResponseSeed>));
  }
  return seeds;
}

/** Placeholders, for tests that write seeds by hand. */
export const PLACEHOLDERS = { CASE, AUTHORITY } as const;
