/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) for the reverse
 * proxy: each proxied request is a server span (the proxy's hop) and each
 * upstream attempt (the first, a retry, a request hedge) a client span under
 * it, whose id is the parent id of the `traceparent` sent upstream. A request
 * without a valid `traceparent` starts a trace. `tracestate` is forwarded
 * untouched (section 3.3: a vendor that does not add an entry passes it on).
 *
 * Nothing here runs when tracing is off: the exchange only asks
 * `core.tracer`, which is then undefined. Ended spans go to a `SpanSink`:
 * wmproxy's own OTLP exporter (otlp.ts) or the OpenTelemetry API (otel.ts,
 * which starts each span through a tracer and takes its ids from it), each
 * imported only when configured; without one, the proxy still propagates and
 * logs trace ids.
 */

/** Tracing settings (config `[reverse.tracing]`); defaults in TRACING_DEFAULTS. */
export interface TracingOptions {
  /** Take part in trace context: a span id per hop, start traces, trace ids in the access log. */
  enabled: boolean;
  /** Share (0..1) of the traces the proxy starts that are sampled (flag 01); an incoming trace keeps its flag. */
  sampleRatio: number;
  /** `service.name` of exported spans (with exporter `otel`: of the SDK provider wmproxy builds). */
  serviceName: string;
  /**
   * Who builds and sends spans: `wmproxy` (otlp.ts, export only with `otlp`),
   * or `otel`, the OpenTelemetry API (otel.ts): with `otlp`, an SDK
   * TracerProvider of wmproxy's own with the SDK's OTLP/HTTP exporter; without,
   * the process's global TracerProvider (an embedding application's).
   */
  exporter: TracingExporter;
  /** OTLP/HTTP export of sampled spans; undefined: none. */
  otlp?: OtlpOptions;
}

export type TracingExporter = 'wmproxy' | 'otel';
export const TRACING_EXPORTERS: readonly TracingExporter[] = ['wmproxy', 'otel'];

export interface OtlpOptions {
  /** Collector URL of OTLP/HTTP traces with JSON encoding, e.g. `http://127.0.0.1:4318/v1/traces`. */
  endpoint: string;
  /** Extra request headers (an API key). */
  headers: Record<string, string>;
  /** Spans waiting to be sent; more are dropped (and counted). */
  queueSize: number;
  /** Most spans per request to the collector. */
  batchSize: number;
  /** Send what is queued at least this often. */
  intervalMs: number;
  /** One export request's time limit. */
  timeoutMs: number;
}

export const TRACING_DEFAULTS = Object.freeze({
  enabled: false,
  sampleRatio: 1,
  serviceName: 'wmproxy',
  exporter: 'wmproxy' as TracingExporter,
  otlp: Object.freeze({ queueSize: 2048, batchSize: 512, intervalMs: 5000, timeoutMs: 10_000 }),
});

/** OTLP span kinds (opentelemetry-proto trace.proto). */
export const enum SpanKind {
  Server = 2,
  Client = 3,
}

/** A finished span as handed to a sink. Times are epoch milliseconds (fractional). */
export interface SpanData {
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  kind: SpanKind;
  startMs: number;
  endMs: number;
  attributes: Record<string, string | number | boolean>;
  /** True when the span is an error (OTLP status code 2). */
  error: boolean;
  message?: string;
  /** The sink's own span, when the sink started it (`SpanSink.start`). */
  live?: LiveSpan;
}

/** A span a sink started (an OpenTelemetry API Span has this shape). */
export interface LiveSpan {
  spanContext(): { traceId: string; spanId: string; traceFlags: number };
  isRecording(): boolean;
}

/** Where ended, recording spans go (otlp.ts's exporter, otel.ts's). */
export interface SpanSink {
  add(span: SpanData): void;
  /**
   * Present on sinks that make span ids themselves (OpenTelemetry): start a
   * span under `parent` (one of this sink's) or else the client's `remote`
   * parent. The proxy puts its ids on the wire and ends it through `add`.
   * Undefined: the sink has no id to give (no provider registered); the
   * proxy then uses ids of its own and records nothing.
   */
  start?(name: string, kind: SpanKind, startMs: number, parent: LiveSpan | undefined, remote: ParsedTraceparent | undefined): LiveSpan | undefined;
  /** Counters for /metrics. */
  stats(): SpanSinkStats;
  /** Send what is queued and stop. */
  close(): Promise<void>;
}

export interface SpanSinkStats {
  exported: number;
  dropped: number;
  failed: number;
}

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));
/** Random bytes drawn in blocks: one getRandomValues call per 512 span ids, not per id. */
const pool = new Uint8Array(4096);
let poolAt = pool.length;

function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    globalThis.crypto.getRandomValues(pool);
    poolAt = 0;
  }
  let zero = true;
  let out = '';
  for (let i = 0; i < bytes; i++) {
    const byte = pool[poolAt++]!;
    if (byte !== 0) zero = false;
    out += HEX[byte];
  }
  // All-zero ids are invalid (sections 3.2.2.3 and 3.2.2.4).
  return zero ? out.slice(0, -2) + '01' : out;
}

/** A new trace id (16 random bytes, lowercase hex). */
export function newTraceId(): string {
  return randomHex(16);
}

/** A new span (parent) id (8 random bytes, lowercase hex). */
export function newSpanId(): string {
  return randomHex(8);
}

export interface ParsedTraceparent {
  traceId: string;
  parentId: string;
  /** trace-flags, two hex digits. */
  flags: string;
}

function isLowerHex(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

function allZero(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (text.charCodeAt(i) !== 48) return false;
  return true;
}

/**
 * A `traceparent` value, or undefined when it is not one (section 3.2):
 * version 00 is exactly 55 characters; a higher version may carry more after
 * a dash and is read as 00 (section 4.3); version ff, upper-case hex and
 * all-zero ids are invalid. An invalid value makes the proxy start a trace.
 */
export function parseTraceparent(value: string | undefined): ParsedTraceparent | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (text.length < 55 || text.charCodeAt(2) !== 45 || text.charCodeAt(35) !== 45 || text.charCodeAt(52) !== 45) return undefined;
  if (!isLowerHex(text, 0, 2) || text.startsWith('ff')) return undefined;
  if (text.startsWith('00') ? text.length !== 55 : text.length > 55 && text.charCodeAt(55) !== 45) return undefined;
  if (!isLowerHex(text, 3, 35) || !isLowerHex(text, 36, 52) || !isLowerHex(text, 53, 55)) return undefined;
  if (allZero(text, 3, 35) || allZero(text, 36, 52)) return undefined;
  return { traceId: text.slice(3, 35), parentId: text.slice(36, 52), flags: text.slice(53, 55) };
}

/** The trace id of a `traceparent` value, when it is a valid one (for the access log with tracing off). */
export function traceIdOf(value: string | undefined): string | undefined {
  return parseTraceparent(value)?.traceId;
}

/** One span in progress: the request's (server) span or an attempt's (client) span. */
export class Span {
  readonly trace: RequestTrace;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly kind: SpanKind;
  name: string;
  readonly startMs: number;
  /** The sink's span (OpenTelemetry), whose ids this one carries. */
  readonly live: LiveSpan | undefined;
  /** Set by the exchange as it learns them. */
  attributes: Record<string, string | number | boolean> | undefined = undefined;
  error = false;
  message: string | undefined = undefined;
  private ended = false;

  constructor(trace: RequestTrace, parentSpanId: string, kind: SpanKind, name: string, startMs: number, live?: LiveSpan) {
    this.trace = trace;
    this.live = live;
    this.spanId = live !== undefined ? live.spanContext().spanId : newSpanId();
    this.parentSpanId = parentSpanId;
    this.kind = kind;
    this.name = name;
    this.startMs = startMs;
  }

  /** The `traceparent` for the next hop: this span is its parent. */
  get traceparent(): string {
    return `00-${this.trace.traceId}-${this.spanId}-${this.trace.flags}`;
  }

  /** Will this span be exported? Otherwise attributes are not even kept. */
  get recording(): boolean {
    return this.trace.recording;
  }

  set(key: string, value: string | number | boolean): void {
    if (this.trace.recording) (this.attributes ??= {})[key] = value;
  }

  fail(message: string): void {
    this.error = true;
    this.message = message;
  }

  /** End the span (once); a sampled span goes to the sink. */
  end(now = nowMs()): void {
    if (this.ended) return;
    this.ended = true;
    const sink = this.trace.tracer.sink;
    if (sink === undefined || !this.trace.recording) return;
    const span: SpanData = {
      traceId: this.trace.traceId,
      spanId: this.spanId,
      parentSpanId: this.parentSpanId,
      name: this.name,
      kind: this.kind,
      startMs: this.startMs,
      endMs: now,
      attributes: this.attributes ?? {},
      error: this.error,
    };
    if (this.message !== undefined) span.message = this.message;
    if (this.live !== undefined) span.live = this.live;
    sink.add(span);
  }
}

/** Epoch milliseconds with sub-millisecond precision (span times). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The trace of one request: its id, flags and the proxy's (server) span. */
export class RequestTrace {
  readonly tracer: Tracer;
  readonly traceId: string;
  readonly flags: string;
  readonly sampled: boolean;
  /** Sampled and exported: only then do spans keep attributes and times. */
  readonly recording: boolean;
  /** The proxy's span for this request (its parent is the client's span, if any). */
  readonly span: Span;

  constructor(tracer: Tracer, incoming: ParsedTraceparent | undefined, name: string) {
    this.tracer = tracer;
    const sink = tracer.sink;
    const startMs = nowMs();
    // A sink that makes ids (OpenTelemetry) starts the span; its sampler decides.
    const live = sink?.start !== undefined ? sink.start(name, SpanKind.Server, startMs, undefined, incoming) : undefined;
    if (live !== undefined) {
      const context = live.spanContext();
      this.traceId = context.traceId;
      this.flags = (context.traceFlags & 1) === 1 ? '01' : '00';
    } else if (incoming) {
      this.traceId = incoming.traceId;
      this.flags = incoming.flags;
    } else {
      this.traceId = newTraceId();
      this.flags = tracer.sampleRatio >= 1 || Math.random() < tracer.sampleRatio ? '01' : '00';
    }
    this.sampled = (parseInt(this.flags, 16) & 1) === 1;
    this.recording = live !== undefined ? live.isRecording() : this.sampled && sink !== undefined && sink.start === undefined;
    this.span = new Span(this, incoming?.parentId ?? '', SpanKind.Server, name, startMs, live);
  }

  /** A client span for one upstream attempt (`name`: `attempt`, `retry`, `hedge`). */
  attempt(name: string): Span {
    const startMs = nowMs();
    const parent = this.span.live;
    const live = parent !== undefined ? this.tracer.sink!.start!(name, SpanKind.Client, startMs, parent, undefined) : undefined;
    return new Span(this, this.span.spanId, SpanKind.Client, name, startMs, live);
  }
}

/** Starts the trace of each request (ReverseProxy holds one while tracing is on). */
export class Tracer {
  readonly sampleRatio: number;
  sink: SpanSink | undefined;

  constructor(options: Pick<TracingOptions, 'sampleRatio'>, sink?: SpanSink) {
    const ratio = options.sampleRatio;
    if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`tracing sampleRatio must be from 0 to 1, got ${ratio}`);
    this.sampleRatio = ratio;
    this.sink = sink;
  }

  /** The trace of a request whose `traceparent` field is `incoming` (undefined or invalid: a new trace). */
  start(incoming: string | undefined, name: string): RequestTrace {
    return new RequestTrace(this, parseTraceparent(incoming), name);
  }
}
