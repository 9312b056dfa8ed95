import { FIELD_POLICY, FieldKinds, forwardFields, lowerName, requestFraming, type HeaderList, type PolicySink, type RequestHead } from '@wmproxy/core-net';
import { applyRules, FORWARDING_HEADERS, type RuleVariables } from '../headers.js';
import type { CompiledLocation } from '../router.js';
import type { Span } from '../trace.js';
import type { ListenerContext } from './context.js';

/**
 * The head of a request sent upstream: the forwarding policy of the reverse
 * proxy over core-net's HTTP/1 forwarding (http1/forward.ts, which drops the
 * hop-by-hop fields and writes the framing). Policy here: Host (the
 * location's `upstream_host`, or the absolute-form authority), the
 * X-Forwarded-* / X-Real-IP / Forwarded fields (a trusted peer's extended,
 * anyone else's replaced), the location's header rules, and while tracing is
 * on, the attempt's own traceparent.
 */

const FORWARDING = FIELD_POLICY;
const HOST = FIELD_POLICY + 1;
/** traceparent: replaced by the attempt's own while tracing is on. */
const TRACE = FIELD_POLICY + 2;
/** grpc-timeout: what is left of the call's deadline when it leaves (gRPC over HTTP/2: a proxy reduces it). */
const GRPC_TIMEOUT = FIELD_POLICY + 3;

const kinds = new FieldKinds({
  ...Object.fromEntries([...FORWARDING_HEADERS].map((name) => [name, FORWARDING])),
  host: HOST,
  traceparent: TRACE,
  'grpc-timeout': GRPC_TIMEOUT,
});

/** What the policy fields of one request head need; one instance reused, as heads are built synchronously. */
class RequestPolicy implements PolicySink {
  trusted = false;
  /** The forwarding fields a trusted peer sent, lower-case name to value (joined). */
  incoming: Map<string, string> | undefined = undefined;
  /** The Host sent upstream instead of the client's (undefined: the client's stays). */
  host: string | undefined = undefined;
  hasHost = false;
  tracing = false;
  /** The remaining deadline to send instead of the client's `grpc-timeout` (undefined: the client's stays). */
  grpcTimeout: string | undefined = undefined;

  policyField(field: [string, string], kind: number, out: HeaderList): void {
    if (kind === FORWARDING) {
      if (!this.trusted) return;
      const lower = lowerName(field[0]);
      const incoming = (this.incoming ??= new Map());
      const previous = incoming.get(lower);
      incoming.set(lower, previous ? `${previous}, ${field[1]}` : field[1]);
    } else if (kind === HOST) {
      this.hasHost = true;
      out.push(this.host === undefined ? field : ['Host', this.host]);
    } else if (kind === GRPC_TIMEOUT) {
      out.push(this.grpcTimeout === undefined ? field : [field[0], this.grpcTimeout]);
    } else if (!this.tracing) out.push(field);
  }
}

const policy = new RequestPolicy();

/** Where the values of header-rule variables come from (the exchange). */
export interface VariableSource {
  variables(): RuleVariables;
}

/**
 * The request head for one attempt. `authority`: the absolute-form target's
 * (it replaces the client's Host); `fallbackHost`: the Host when the client
 * sent none and nothing else names one (the server's address); with `span`
 * (tracing), the traceparent names that span as the parent; `grpcTimeout`
 * replaces the client's `grpc-timeout` (the time left). A view of
 * core-net's shared compose buffer, to be written at once (no
 * re-validation: every field came from the strict parser, checked
 * configuration, or variables of those).
 */
export function upstreamRequestHead(
  ctx: ListenerContext,
  location: CompiledLocation,
  req: RequestHead,
  target: string,
  clientIp: string,
  authority: string | undefined,
  fallbackHost: string,
  span: Span | undefined,
  variables: VariableSource,
  grpcTimeout?: string,
): Uint8Array {
  const forwarding = ctx.forwarding;
  const trusted = forwarding.isTrusted(clientIp);
  policy.trusted = trusted;
  policy.incoming = undefined;
  policy.host = location.spec.upstreamHost ?? authority;
  policy.hasHost = false;
  policy.tracing = span !== undefined;
  policy.grpcTimeout = grpcTimeout;
  const fields: HeaderList = [];
  forwardFields(req, kinds, fields, policy);
  if (!policy.hasHost) fields.push(['Host', policy.host ?? fallbackHost]);
  requestFraming(req, fields);
  const host = authority ?? req.host ?? '';
  if (trusted) forwarding.append(fields, clientIp, ctx.scheme, host, policy.incoming);
  else {
    // They only change with the client address and Host: the listener keeps the last ones.
    const forwarded = forwarding.fieldsFor(clientIp, ctx.scheme, host);
    for (let i = 0; i < forwarded.length; i++) fields.push(forwarded[i]!);
  }
  policy.incoming = undefined;
  if (location.requestRules.length > 0) {
    applyRules(fields, location.requestRules, variables.variables());
    // Tracing on: the attempt's traceparent wins over one a rule set (`default traceparent {new_traceparent}`).
    if (span !== undefined) dropFields(fields, 'traceparent');
  }
  const line = ctx.wire.requestLine(req.method, target);
  // Tracing: the attempt's traceparent goes last, so that the memo still covers the fields that repeat.
  if (span !== undefined) return ctx.wire.requestMemo.composeWithField(line, fields, 'traceparent', span.traceparent);
  return ctx.wire.requestMemo.compose(line, fields);
}

/** Remove every field named `lower` (any case) from `fields`, in place. */
function dropFields(fields: HeaderList, lower: string): void {
  let kept = 0;
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    if (field[0].length === lower.length && lowerName(field[0]) === lower) continue;
    fields[kept++] = field;
  }
  fields.length = kept;
}
