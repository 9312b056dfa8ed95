/**
 * Spans through the OpenTelemetry API (`[reverse.tracing] exporter = "otel"`).
 * ReverseProxy imports this module only then, so that with tracing off, or
 * with wmproxy's own exporter (otlp.ts), nothing of OpenTelemetry is loaded.
 *
 * Each request's span and each attempt's span is started through an API
 * Tracer (the client's `traceparent` as the remote parent, set with
 * `trace.setSpanContext`; an attempt under the request's span), and the
 * proxy puts that span's ids on the wire: what the upstream sees as its
 * parent is what gets exported. Which Tracer:
 * - with an OTLP endpoint, one of a TracerProvider wmproxy builds from the
 *   SDK (imported here, on demand): parent-based sampling with
 *   `sample_ratio` for the traces the proxy starts, a BatchSpanProcessor
 *   with the queue, batch, interval and timeout settings, and the SDK's
 *   OTLP/HTTP exporter (JSON). It is not registered globally;
 * - without one, the process's global TracerProvider: an embedding
 *   application that registered its own receives the spans (its sampler
 *   decides). Until one is registered, the API answers no ids; the proxy
 *   then uses its own and records nothing.
 */
import { ROOT_CONTEXT, SpanKind as OtelKind, SpanStatusCode, trace, type Span as OtelSpan, type Tracer as OtelTracer } from '@opentelemetry/api';
import type { Logger } from '@wmproxy/core-net';
import { SpanKind, type LiveSpan, type OtlpOptions, type ParsedTraceparent, type SpanData, type SpanSink, type SpanSinkStats } from './trace.js';

/** Set when this module is evaluated: tests prove that tracing off (or exporter `wmproxy`) never loads it. */
export const OTEL_LOADED = Symbol.for('@wmproxy/reverse:otel-loaded');
(globalThis as Record<symbol, unknown>)[OTEL_LOADED] = true;

const SCOPE = '@wmproxy/reverse';

/** The subset of an SDK exporter's result this module reads (ExportResultCode.SUCCESS is 0). */
interface ExportResult {
  code: number;
  error?: Error;
}

interface Exporter {
  export(spans: unknown[], done: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
  forceFlush?(): Promise<void>;
}

export interface OtelSinkOptions {
  serviceName: string;
  sampleRatio: number;
  /** Undefined: the global TracerProvider. */
  otlp?: OtlpOptions;
}

export class OtelSink implements SpanSink {
  private readonly tracer: OtelTracer;
  private readonly shutdown: (() => Promise<void>) | undefined;
  private closed = false;
  /** With the SDK exporter: spans the collector took; with the global provider: spans ended through the API. */
  exported = 0;
  dropped = 0;
  failed = 0;

  private constructor(tracer: OtelTracer, shutdown?: () => Promise<void>) {
    this.tracer = tracer;
    this.shutdown = shutdown;
  }

  /** A sink on the global TracerProvider, or (with `otlp`) on an SDK provider of its own. */
  static async create(options: OtelSinkOptions, logger?: Logger): Promise<OtelSink> {
    if (options.otlp === undefined) return new OtelSink(trace.getTracer(SCOPE));
    const otlp = options.otlp;
    const [{ TracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler }, { OTLPTraceExporter }, { resourceFromAttributes }] = await Promise.all([
      import('@opentelemetry/sdk-trace'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
    ]);
    const inner = new OTLPTraceExporter({ url: otlp.endpoint, headers: { ...otlp.headers }, timeoutMillis: otlp.timeoutMs }) as unknown as Exporter;
    let sink: OtelSink | undefined = undefined;
    let failing = false;
    // Counts what the collector took or refused, and logs one line per outage (the SDK reports only to `diag`).
    const counting: Exporter = {
      export(spans, done) {
        inner.export(spans, (result) => {
          if (result.code === 0) {
            sink!.exported += spans.length;
            if (failing) logger?.info('OTLP export recovered', { endpoint: otlp.endpoint });
            failing = false;
          } else {
            sink!.failed += spans.length;
            if (!failing) logger?.warn('OTLP export failed; spans are dropped until it recovers', { endpoint: otlp.endpoint, error: result.error?.message ?? 'export failed' });
            failing = true;
          }
          done(result);
        });
      },
      shutdown: () => inner.shutdown(),
      forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
    };
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': options.serviceName }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio) }),
      spanProcessors: [
        new BatchSpanProcessor({
          exporter: counting as never,
          maxQueueSize: otlp.queueSize,
          maxExportBatchSize: Math.min(otlp.batchSize, otlp.queueSize),
          scheduledDelayMillis: otlp.intervalMs,
          exportTimeoutMillis: otlp.timeoutMs,
        }),
      ],
    });
    sink = new OtelSink(provider.getTracer(SCOPE), () => provider.shutdown());
    return sink;
  }

  start(name: string, kind: SpanKind, startMs: number, parent: LiveSpan | undefined, remote: ParsedTraceparent | undefined): LiveSpan | undefined {
    let context = ROOT_CONTEXT;
    if (parent !== undefined) context = trace.setSpan(context, parent as OtelSpan);
    else if (remote !== undefined) context = trace.setSpanContext(context, { traceId: remote.traceId, spanId: remote.parentId, traceFlags: parseInt(remote.flags, 16) & 1, isRemote: true });
    const span = this.tracer.startSpan(name, { kind: kind === SpanKind.Server ? OtelKind.SERVER : OtelKind.CLIENT, startTime: startMs }, context);
    const ids = span.spanContext();
    // The no-op tracer (no provider registered) answers an invalid context, or its parent's: no id of its own.
    if (!trace.isSpanContextValid(ids) || ids.spanId === (parent !== undefined ? parent.spanContext().spanId : remote?.parentId)) return undefined;
    return span;
  }

  add(data: SpanData): void {
    const span = data.live as OtelSpan | undefined;
    if (span === undefined || this.closed) {
      this.dropped++;
      return;
    }
    span.setAttributes(data.attributes);
    span.setStatus(data.error ? (data.message !== undefined ? { code: SpanStatusCode.ERROR, message: data.message } : { code: SpanStatusCode.ERROR }) : { code: SpanStatusCode.OK });
    span.end(data.endMs);
    if (this.shutdown === undefined) this.exported++;
  }

  stats(): SpanSinkStats {
    return { exported: this.exported, dropped: this.dropped, failed: this.failed };
  }

  /** Export what the SDK provider holds and stop it; the global provider is the application's to shut down. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.shutdown?.();
  }
}
