/**
 * OTLP/HTTP trace export with JSON encoding
 * (https://opentelemetry.io/docs/specs/otlp/#otlphttp), written here rather
 * than through the OpenTelemetry SDK, which is not a dependency of wmproxy.
 * ReverseProxy imports this module only when an endpoint is configured.
 *
 * Spans wait in a bounded queue (`queueSize`; more are dropped and counted),
 * go out in batches of at most `batchSize` when a batch is full or every
 * `intervalMs`, one request at a time, each limited to `timeoutMs`. A failed
 * request's spans are counted as failed and not retried: the proxy never
 * holds more than the queue, whatever the collector does.
 */
import type { Logger } from '@wmproxy/core-net';
import type { OtlpOptions, SpanData, SpanSink, SpanSinkStats } from './trace.js';

/** A JSON string literal; ids, names and attribute keys are mostly plain ASCII, so most skip JSON.stringify. */
function str(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 32 || c === 34 || c === 92 || c > 126) return JSON.stringify(text);
  }
  return `"${text}"`;
}

/** An OTLP AnyValue. */
function anyValue(value: string | number | boolean): string {
  if (typeof value === 'string') return `{"stringValue":${str(value)}}`;
  if (typeof value === 'boolean') return `{"boolValue":${value}}`;
  return Number.isInteger(value) ? `{"intValue":"${value}"}` : `{"doubleValue":${Number.isFinite(value) ? value : 0}}`;
}

/** Epoch ms (fractional) as OTLP's fixed64 nanoseconds, a decimal string in JSON. */
function unixNano(ms: number): string {
  const whole = Math.floor(ms);
  const micros = Math.round((ms - whole) * 1000);
  return `${whole}${micros < 10 ? '00' : micros < 100 ? '0' : ''}${micros}000`;
}

function spanJson(span: SpanData): string {
  let out = `{"traceId":"${span.traceId}","spanId":"${span.spanId}",`;
  if (span.parentSpanId) out += `"parentSpanId":"${span.parentSpanId}",`;
  out += `"name":${str(span.name)},"kind":${span.kind},"startTimeUnixNano":"${unixNano(span.startMs)}","endTimeUnixNano":"${unixNano(span.endMs)}","attributes":[`;
  let first = true;
  for (const key in span.attributes) {
    out += `${first ? '' : ','}{"key":${str(key)},"value":${anyValue(span.attributes[key]!)}}`;
    first = false;
  }
  out += '],"status":';
  out += span.error ? (span.message ? `{"code":2,"message":${str(span.message)}}` : '{"code":2}') : '{"code":1}';
  return `${out}}`;
}

/**
 * The ExportTraceServiceRequest body of `spans`, written as text directly
 * (no object per span and attribute before JSON.stringify: on Node that was
 * most of an exported request's cost).
 */
export function otlpBody(serviceName: string, spans: readonly SpanData[]): string {
  let out = `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":${str(serviceName)}}}]},"scopeSpans":[{"scope":{"name":"@wmproxy/reverse"},"spans":[`;
  for (let i = 0; i < spans.length; i++) out += (i === 0 ? '' : ',') + spanJson(spans[i]!);
  return `${out}]}]}]}`;
}

export class OtlpExporter implements SpanSink {
  private readonly options: OtlpOptions;
  private readonly serviceName: string;
  private readonly logger: Logger | undefined;
  private queue: SpanData[] = [];
  private sending: Promise<void> | undefined = undefined;
  private readonly timer: ReturnType<typeof setInterval>;
  private closed = false;
  private exported = 0;
  private dropped = 0;
  private failed = 0;
  /** The last failure was logged: one line per outage, not one per batch. */
  private failing = false;

  constructor(options: OtlpOptions, serviceName: string, logger?: Logger) {
    const url = new URL(options.endpoint);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`OTLP endpoint must be an http(s) URL, got ${options.endpoint}`);
    for (const key of ['queueSize', 'batchSize', 'intervalMs', 'timeoutMs'] as const) {
      if (!(Number.isInteger(options[key]) && options[key] > 0)) throw new RangeError(`OTLP ${key} must be a positive integer, got ${options[key]}`);
    }
    this.options = options;
    this.serviceName = serviceName;
    this.logger = logger;
    this.timer = setInterval(() => this.flush(), options.intervalMs);
    this.timer.unref?.();
  }

  add(span: SpanData): void {
    if (this.closed || this.queue.length >= this.options.queueSize) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.options.batchSize && !this.sending) this.flush();
  }

  stats(): SpanSinkStats {
    return { exported: this.exported, dropped: this.dropped, failed: this.failed };
  }

  /** Send queued spans, a batch at a time, until the queue is empty (one request in flight). */
  flush(): Promise<void> {
    if (this.sending) return this.sending;
    if (this.queue.length === 0) return Promise.resolve();
    const run = (async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.length <= this.options.batchSize ? this.queue : this.queue.slice(0, this.options.batchSize);
        this.queue = batch === this.queue ? [] : this.queue.slice(batch.length);
        await this.send(batch);
      }
    })().finally(() => (this.sending = undefined));
    this.sending = run;
    return run;
  }

  private async send(batch: SpanData[]): Promise<void> {
    try {
      const response = await fetch(this.options.endpoint, {
        method: 'POST',
        headers: { ...this.options.headers, 'content-type': 'application/json' },
        body: otlpBody(this.serviceName, batch),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      // The body is read (and dropped) so that the connection can be reused.
      await response.arrayBuffer().catch(() => undefined);
      if (!response.ok) throw new Error(`status ${response.status}`);
      this.exported += batch.length;
      if (this.failing) this.logger?.info('OTLP export recovered', { endpoint: this.options.endpoint });
      this.failing = false;
    } catch (error) {
      this.failed += batch.length;
      if (!this.failing) this.logger?.warn('OTLP export failed; spans are dropped until it recovers', { endpoint: this.options.endpoint, error: (error as Error).message });
      this.failing = true;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.flush();
  }
}
