import { createHash } from 'node:crypto';
import { fuzzId } from './grammar.js';
import type { Model, ModelRequest } from './model.js';
import type { OriginEvent, OriginRecord } from './origins.js';
import { fieldValues, refResponses, type RefResponse } from './reference.js';

/**
 * What went wrong, by kind (a proxy may declare a kind as a known issue: it is
 * then reported, not failed; see `ProxyUnderTest.knownIssues`).
 */
export type FailureKind =
  | 'smuggling'
  | 'after-close'
  | 'order'
  | 'method'
  | 'body'
  | 'unparseable'
  | 'origin-refused-valid'
  | 'head-response-body'
  | 'extra-response'
  | 'desync'
  | 'switched'
  | 'stall'
  | 'response-smuggled'
  | 'response-desync'
  | 'tunnel-reuse'
  | 'response-body'
  | 'stray-bytes'
  | 'retried-non-idempotent'
  | 'duplicate';

export interface Failure {
  kind: FailureKind;
  message: string;
}

/** The outcome of one case: failures break the property; findings are discrepancies worth a look. */
export interface Verdict {
  failures: Failure[];
  findings: string[];
  /** Requests the origin completed, responses the client read, and how the case ended. */
  stats: { forwarded: number; responses: number; proxyAnswers: number; originRefusals: number; stalled: boolean };
}

function describeRequest(m: ModelRequest | undefined): string {
  return m ? `#${m.index} ${m.method} ${m.target} (${m.framing}, ${m.body.length} body bytes${m.complete ? '' : ', incomplete'})` : '(none)';
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Who produced a response the client read. */
export function responseSource(response: RefResponse): 'echo' | 'origin-refusal' | 'proxy' {
  const origin = fieldValues(response.fields, 'x-fuzz-origin')[0];
  if (origin !== undefined) return origin.endsWith('-reject') ? 'origin-refusal' : 'echo';
  if (fieldValues(response.fields, 'x-fuzz-nginx').length > 0) return 'origin-refusal';
  return 'proxy';
}

export interface RequestCaseObservation {
  /** The proxy's parse of the client's bytes (stopping where it closes the connection). */
  model: Model;
  /** The same parse, carried on past a request that closes the connection. */
  modelPastClose: Model;
  /** Validity of request `i` as rendered (ids `<case>-i`); hidden requests (`-sJ`) count as ambiguous. */
  valid: boolean[];
  /** Where each rendered request starts (a request parsed from elsewhere, after a framing mix-up, is not the valid one). */
  starts?: number[];
  received: Buffer;
  closed: boolean;
  stalled: boolean;
  origin: OriginRecord;
}

function validOf(m: ModelRequest | undefined, valid: boolean[], starts: number[] | undefined): boolean {
  const id = m?.id;
  const match = id === undefined ? undefined : /-(\d+)$/.exec(id);
  if (!m || !match) return false;
  const i = Number(match[1]);
  if (valid[i] !== true) return false;
  // Parsed from where it was written; without offsets (old seeds), only behind valid requests.
  return starts ? m.start === starts[i] : valid.slice(0, i).every(Boolean);
}

/**
 * The request-side property. Failures: the origin parsed a request the proxy
 * did not see as one (smuggling), or with another method or body; served one
 * after the connection should have closed; the client read more responses
 * than it sent requests, a response answering another request, or bytes it
 * cannot parse; the origin refused a valid request as the proxy forwarded it;
 * the exchange stalled (proxy and origin disagree on where a request ends).
 * Findings: the origin refused an ambiguous request the proxy forwarded, or
 * completed a request the proxy cut short.
 */
export function judgeRequestCase(observation: RequestCaseObservation): Verdict {
  const { model, modelPastClose, valid, origin } = observation;
  const failures: Failure[] = [];
  const findings: string[] = [];
  const fail = (kind: FailureKind, message: string): void => {
    failures.push({ kind, message });
  };
  const originRequests = origin.events.filter((event): event is OriginEvent & { url: string } => event.type === 'request' && event.url !== undefined);
  const refusals = origin.events.filter((event) => event.type !== 'request' && event.type !== 'aborted');
  // 1. Every request the origin completed is one the proxy parsed, in order, with the same method and body.
  let lastIndex = -1;
  // Order holds per upstream connection: across connections the origin's threads may log in any order.
  const lastOnConnection = new Map<string, number>();
  const used = new Set<number>();
  for (const event of originRequests) {
    const id = fuzzId(event.url);
    const body = Buffer.from(event.body ?? '', 'base64');
    if (id === undefined) {
      // A target without an id (a mutation hit it) matches the next such request the proxy parsed, same method and body.
      const plain = model.requests.find((m) => m.id === undefined && !used.has(m.index) && m.index > lastIndex);
      if (plain && plain.method === event.method && (plain.body.equals(body) || (!plain.complete && plain.body.subarray(0, body.length).equals(body)))) {
        used.add(plain.index);
        lastIndex = plain.index;
        continue;
      }
      fail('smuggling', `the origin parsed a request with no fuzz id the proxy did not parse: ${event.method} ${JSON.stringify(event.url)} (${body.length} body bytes)`);
      continue;
    }
    const match = model.requests.find((m) => m.id === id && !used.has(m.index));
    if (!match && model.requests.some((m) => m.id === id)) {
      fail('duplicate', `the origin received request ${id} (${event.method}) more than once`);
      continue;
    }
    if (!match) {
      const late = modelPastClose.requests.find((m) => m.id === id);
      fail(
        late ? 'after-close' : 'smuggling',
        late
          ? `the origin was sent request ${id} (${event.method} ${event.url}), which follows a request that closes the connection (${model.end})`
          : `the origin parsed request ${id} (${event.method} ${event.url}), which the proxy never parsed as a request; proxy saw ${model.requests.map((m) => m.id ?? m.target).join(', ') || 'none'}`,
      );
      continue;
    }
    used.add(match.index);
    const connection = String(event.conn);
    if (match.index < (lastOnConnection.get(connection) ?? -1)) fail('order', `the origin saw request ${id} out of order on one connection`);
    lastOnConnection.set(connection, match.index);
    lastIndex = Math.max(lastIndex, match.index);
    if (event.method !== match.method) fail('method', `request ${id}: the origin saw method ${event.method}, the proxy parsed ${match.method}`);
    if (!body.equals(match.body)) {
      const prefix = !match.complete && match.body.subarray(0, body.length).equals(body);
      if (prefix) findings.push(`request ${id}: the origin completed a request the proxy cut short (${body.length} of ${match.body.length}+ body bytes)`);
      else fail('body', `request ${id}: body mismatch: the origin read ${JSON.stringify(body.toString('latin1'))}, the proxy parsed ${JSON.stringify(match.body.toString('latin1'))}`);
    } else if (!match.complete) {
      findings.push(`request ${id}: the origin completed a request whose body the proxy did not finish (${match.bodyError ?? 'incomplete'})`);
    }
  }
  // 2. What the client read: one response per request, in order, each answering its own request.
  const methods = model.requests.map((m) => m.method);
  methods.push('GET');
  const parsed = refResponses(observation.received, methods, observation.closed);
  let proxyAnswers = 0;
  if (parsed.error !== undefined) {
    // A response to HEAD followed by bytes that read as its body: the answer to HEAD carried content.
    const j = parsed.responses.length;
    const asGet = methods.map((method, i) => (i === j - 1 && method === 'HEAD' ? 'GET' : method));
    const again = j > 0 && methods[j - 1] === 'HEAD' ? refResponses(observation.received, asGet, observation.closed) : undefined;
    if (again && (again.error === undefined || again.responses.length > j)) {
      fail('head-response-body', `response #${j - 1} answers HEAD ${model.requests[j - 1]?.target} and carries a body: ${JSON.stringify(parsed.rest.subarray(0, 100).toString('latin1'))}`);
    } else {
      fail('unparseable', `the client cannot parse response #${j}: ${parsed.error}: ${JSON.stringify(parsed.rest.subarray(0, 300).toString('latin1'))}`);
    }
  }
  // One answer per request, plus one for a bad head, or for the unfinished head the client half-closed on (a 400).
  const lastComplete = model.requests.length === 0 || model.requests[model.requests.length - 1]!.complete;
  const maxResponses = model.requests.length + (model.end === 'head-error' || (model.end === 'incomplete' && lastComplete) ? 1 : 0);
  if (parsed.responses.length > maxResponses) {
    fail('extra-response', `the client read ${parsed.responses.length} responses to ${maxResponses} requests`);
  }
  parsed.responses.forEach((response, i) => {
    const m = model.requests[i];
    const source = responseSource(response);
    if (source === 'proxy') proxyAnswers++;
    if (source === 'echo') {
      const target = decodeURIComponent(fieldValues(response.fields, 'x-fuzz-target')[0] ?? '');
      const id = fuzzId(target);
      if (!m || id !== m.id) {
        fail('desync', `response #${i} answers ${id ?? target} but request #${i} is ${describeRequest(m)}`);
        return;
      }
      const sha = fieldValues(response.fields, 'x-fuzz-body-sha256')[0];
      if (sha !== undefined && m.complete && sha !== sha256(m.body)) fail('body', `response #${i}: the origin read another body than the proxy parsed for ${m.id}`);
    } else if (source === 'origin-refusal' && m && m.complete && validOf(m, valid, observation.starts)) {
      // The proxy took a valid request and forwarded something the origin cannot read.
      fail('origin-refused-valid', `the origin refused valid request ${describeRequest(m)} as the proxy forwarded it (status ${response.status})`);
    }
    if (source === 'proxy' && m?.id !== undefined && originRequests.some((event) => fuzzId(event.url) === m.id)) {
      findings.push(`the origin answered ${describeRequest(m)}, but the client got an answer from the proxy (${response.status})`);
    }
    if (response.status === 101) fail('switched', `response #${i} switched protocols; no origin here ever does`);
  });
  for (const refusal of refusals) findings.push(`the origin refused what the proxy forwarded: ${refusal.type} ${refusal.code ?? ''} ${refusal.reason ?? ''}`.trim());
  if (observation.stalled) {
    fail(
      'stall',
      `the exchange stopped after ${parsed.responses.length} of ${model.requests.filter((m) => m.complete).length} expected responses with the connection open: the proxy and the origin disagree on where a request ends, or the proxy hangs`,
    );
  }
  return {
    failures,
    findings,
    stats: { forwarded: originRequests.length, responses: parsed.responses.length, proxyAnswers, originRefusals: refusals.length, stalled: observation.stalled },
  };
}
