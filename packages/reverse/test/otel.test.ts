import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { SpanKind } from '../src/index.js';
import { CLIENT_PARENT, CLIENT_TRACE, CLIENT_TRACEPARENT, RecordingLog, TRACEPARENT_SHAPE as SHAPE, spanAttribute as attribute, startCollector, startProxy, request, tracingBackend, until, type Collector } from './helpers.js';

/** The scope of the first body: the SDK names its own version and counts dropped attributes; wmproxy's exporter does neither. */
function sentBySdk(collector: Collector): boolean {
  const body = collector.bodies[0] as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<Record<string, unknown>> }> }> };
  return 'droppedAttributesCount' in body.resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
}

test('exporter "otel" with an endpoint: the SDK exports one server span per request and one client span per attempt (the hedge case is in tracing.test.ts), with the ids of the access log and of the forwarded traceparent', async () => {
  const collector = await startCollector();
  const seenBad: Array<{ traceparent?: string }> = [];
  const seenGood: Array<{ traceparent?: string }> = [];
  const bad = await tracingBackend('bad', seenBad, 503);
  const good = await tracingBackend('good', seenGood);
  const log = new RecordingLog();
  const { proxy, base } = await startProxy({
    tracing: { enabled: true, exporter: 'otel', serviceName: 'edge', otlp: { endpoint: collector.endpoint, intervalMs: 50 } },
    accessLog: log,
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: bad.address }, { address: good.address }] }],
  });
  try {
    const reply = await request(`${base}/retry`, { headers: { traceparent: CLIENT_TRACEPARENT } });
    assert.equal(reply.body, 'good');
    await request(`${base}/started`); // no traceparent: the SDK starts the trace (also retried)
    await until(() => collector.spans.length === 6, 'six spans exported by the SDK (two requests, each retried once)');
    assert.ok(sentBySdk(collector), 'the body is the SDK exporter\'s');
    assert.ok(collector.contentTypes.every((type) => type === 'application/json'), `OTLP/HTTP JSON, got ${collector.contentTypes.join()}`);
    const resource = (collector.bodies[0] as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue: string } }> } }> }).resourceSpans[0]!.resource;
    assert.equal(resource.attributes.find((entry) => entry.key === 'service.name')?.value.stringValue, 'edge');

    const retried = collector.spans.filter((span) => span.traceId === CLIENT_TRACE);
    assert.equal(retried.length, 3, 'the server span, the attempt and the retry share the client\'s trace id');
    const server = retried.find((span) => span.kind === SpanKind.Server)!;
    assert.equal(server.parentSpanId, CLIENT_PARENT, 'the remote parent set with trace.setSpanContext');
    assert.equal(server.name, 'GET');
    assert.equal(String(attribute(server, 'http.response.status_code')), '200');
    assert.equal(String(attribute(server, 'wmproxy.retries')), '1');
    const first = retried.find((span) => span.name === 'attempt')!;
    const retry = retried.find((span) => span.name === 'retry')!;
    for (const span of [first, retry]) {
      assert.equal(span.kind, SpanKind.Client);
      assert.equal(span.parentSpanId, server.spanId);
    }
    assert.equal(first.status.code, 2, 'the 503 attempt is an error');
    assert.equal(attribute(first, 'server.address'), bad.address);
    assert.equal(retry.status.code, 1);
    assert.equal(SHAPE.exec(seenBad[0]!.traceparent!)![2], first.spanId, 'the first upstream saw the exported attempt span as parent');
    assert.equal(SHAPE.exec(seenGood[0]!.traceparent!)![2], retry.spanId, 'the second upstream saw the exported retry span');
    for (const span of [server, first, retry]) {
      const start = BigInt(span.startTimeUnixNano as string);
      const end = BigInt(span.endTimeUnixNano as string);
      assert.ok(end >= start, 'ends after it starts');
      assert.ok(Math.abs(Number(start / 1_000_000n) - Date.now()) < 600_000, `epoch times (not performance.now()), got ${start}`);
    }
    assert.ok(BigInt(first.startTimeUnixNano as string) >= BigInt(server.startTimeUnixNano as string));

    const started = collector.spans.find((span) => span.traceId !== CLIENT_TRACE && span.kind === SpanKind.Server)!;
    assert.equal(started.parentSpanId ?? '', '', 'a trace the proxy starts has a root span');
    assert.equal(SHAPE.exec(seenGood[1]!.traceparent!)![1], started.traceId);
    assert.deepEqual(log.records.map((record) => record.traceId), [CLIENT_TRACE, started.traceId], 'the access log names the exported trace ids');
    await until(() => proxy.traceStats()?.exported === 6, 'the SDK exporter counted what the collector took');
    assert.deepEqual(proxy.traceStats(), { exported: 6, dropped: 0, failed: 0 });
  } finally {
    await proxy.close();
    await bad.close();
    await good.close();
    await collector.close();
  }
});

test('a reload switches exporters: wmproxy\'s, then the SDK\'s, then wmproxy\'s again, each to its collector', async () => {
  const own = await startCollector();
  const sdk = await startCollector();
  const seen: Array<{ traceparent?: string }> = [];
  const backend = await tracingBackend('b', seen);
  const upstreams = [{ name: 'app', servers: [{ address: backend.address }] }];
  const { proxy, base, port } = await startProxy({ upstreams, tracing: { enabled: true, otlp: { endpoint: own.endpoint, intervalMs: 50 } } });
  const servers = [{ listen: `127.0.0.1:${port}`, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }];
  try {
    await request(`${base}/one`);
    await until(() => own.spans.length === 2, 'wmproxy exporter: two spans');
    assert.equal(sentBySdk(own), false);
    await proxy.reload({ upstreams, servers, tracing: { enabled: true, exporter: 'otel', otlp: { endpoint: sdk.endpoint, intervalMs: 50 } } });
    await request(`${base}/two`);
    await until(() => sdk.spans.length === 2, 'SDK exporter: two spans');
    assert.ok(sentBySdk(sdk));
    assert.equal(sdk.spans.find((span) => span.kind === SpanKind.Client)!.spanId, SHAPE.exec(seen[1]!.traceparent!)![2]);
    await proxy.reload({ upstreams, servers, tracing: { enabled: true, otlp: { endpoint: own.endpoint, intervalMs: 50 } } });
    await request(`${base}/three`);
    await until(() => own.spans.length === 4, 'wmproxy exporter again: two more spans');
    assert.equal(sdk.spans.length, 2, 'the SDK provider was shut down');
    assert.equal(own.spans.find((span) => span.kind === SpanKind.Client && span.traceId === SHAPE.exec(seen[2]!.traceparent!)![1])!.spanId, SHAPE.exec(seen[2]!.traceparent!)![2]);
  } finally {
    await proxy.close();
    await backend.close();
    await own.close();
    await sdk.close();
  }
});

test('exporter "otel" without an endpoint: an embedding application\'s global TracerProvider receives the spans in process; with none registered, the proxy still propagates with ids of its own', async () => {
  const seen: Array<{ traceparent?: string }> = [];
  const backend = await tracingBackend('b', seen);
  const log = new RecordingLog();
  trace.disable(); // another test file in this process (Bun) may have left one
  const { proxy, base } = await startProxy({ tracing: { enabled: true, exporter: 'otel' }, accessLog: log, upstreams: [{ name: 'app', servers: [{ address: backend.address }] }] });
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] });
  try {
    await request(`${base}/none`, { headers: { traceparent: CLIENT_TRACEPARENT } });
    const unregistered = SHAPE.exec(seen[0]!.traceparent!)!;
    assert.equal(unregistered[1], CLIENT_TRACE);
    assert.notEqual(unregistered[2], CLIENT_PARENT, 'a hop of its own even without a provider');
    assert.deepEqual(proxy.traceStats(), { exported: 0, dropped: 0, failed: 0 });

    assert.ok(trace.setGlobalTracerProvider(provider), 'registered');
    await request(`${base}/app`, { headers: { traceparent: CLIENT_TRACEPARENT } });
    await until(() => memory.getFinishedSpans().length === 2, 'two spans in the application\'s exporter');
    const spans = memory.getFinishedSpans();
    const server = spans.find((span) => span.kind === 1)!; // api SpanKind.SERVER
    const client = spans.find((span) => span.kind === 2)!; // api SpanKind.CLIENT
    assert.equal(server.spanContext().traceId, CLIENT_TRACE);
    assert.equal(server.parentSpanContext?.spanId, CLIENT_PARENT);
    assert.equal(client.parentSpanContext?.spanId, server.spanContext().spanId);
    assert.equal(client.name, 'attempt');
    assert.equal(client.attributes['server.address'], backend.address);
    assert.equal(server.attributes['http.response.status_code'], 200);
    const forwarded = SHAPE.exec(seen[1]!.traceparent!)!;
    assert.equal(forwarded[2], client.spanContext().spanId, 'the upstream saw the application\'s span as parent');
    assert.equal(log.records[1]!.traceId, CLIENT_TRACE);
    assert.equal(proxy.traceStats()!.exported, 2, 'spans handed to the global provider');
  } finally {
    await proxy.close();
    trace.disable();
    await provider.shutdown();
    await backend.close();
  }
});

test('with tracing off, or on with wmproxy\'s exporter, nothing of OpenTelemetry is loaded; exporter "otel" loads it (a fresh process)', async () => {
  // Module URLs that work from the sources (Bun) and from dist/ (Node).
  const helpers = new URL('./helpers.js', import.meta.url).href;
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-otel-'));
  const script = join(dir, 'probe.mjs');
  writeFileSync(
    script,
    `
const { startCollector, startProxy, request, tracingBackend } = await import(${JSON.stringify(helpers)});
const loaded = () => globalThis[Symbol.for('@wmproxy/reverse:otel-loaded')] === true;
const collector = await startCollector();
const backend = await tracingBackend('b', []);
const upstreams = [{ name: 'app', servers: [{ address: backend.address }] }];
const result = {};
for (const [label, tracing] of [['off', undefined], ['on', { enabled: true }], ['wmproxy', { enabled: true, otlp: { endpoint: collector.endpoint, intervalMs: 20 } }], ['otel', { enabled: true, exporter: 'otel', otlp: { endpoint: collector.endpoint, intervalMs: 20 } }]]) {
  const { proxy, base } = await startProxy({ upstreams, tracing });
  await request(base + '/x');
  await proxy.close();
  result[label] = loaded();
}
result.spans = collector.spans.length;
await backend.close();
await collector.close();
console.log(JSON.stringify(result));
`,
  );
  try {
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, err);
    const result = JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
    assert.deepEqual(result, { off: false, on: false, wmproxy: false, otel: true, spans: 4 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
