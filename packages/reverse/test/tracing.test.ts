import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AccessLog, parseHeaderRule, parseTraceparent, SpanKind, TRACING_EXPORTERS, type SpanData } from '../src/index.js';
import { OtlpExporter, otlpBody } from '../src/otlp.js';
import { CLIENT_PARENT, CLIENT_TRACE, CLIENT_TRACEPARENT, RecordingLog, TRACEPARENT_SHAPE as SHAPE, spanAttribute as attribute, startCollector, startProxy, request, tracingBackend, until } from './helpers.js';

test('with tracing on, each hop gets its own span: the upstream sees the client\'s trace id under a new parent id, tracestate untouched, and the access log has the trace id', async () => {
  const seen: Array<{ traceparent?: string; tracestate?: string }> = [];
  const backend = await tracingBackend('b', seen);
  const lines: string[] = [];
  const { proxy, base } = await startProxy({
    tracing: { enabled: true },
    accessLog: new AccessLog({ write: (line: string) => lines.push(line) }, 'combined'),
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
  });
  try {
    await request(`${base}/a`, { headers: { traceparent: CLIENT_TRACEPARENT, tracestate: 'vendor=abc,other=1' } });
    const forwarded = SHAPE.exec(seen[0]!.traceparent ?? '');
    assert.ok(forwarded, `a valid traceparent upstream, got ${seen[0]!.traceparent}`);
    assert.equal(forwarded[1], CLIENT_TRACE, 'same trace');
    assert.notEqual(forwarded[2], CLIENT_PARENT, 'the proxy is a hop: a parent id of its own');
    assert.equal(forwarded[3], '01', 'the sampled flag is kept');
    assert.equal(seen[0]!.tracestate, 'vendor=abc,other=1');
    // No traceparent (or an invalid one): the proxy starts a trace; each request its own.
    await request(`${base}/b`);
    await request(`${base}/c`, { headers: { traceparent: `00-${'0'.repeat(32)}-${CLIENT_PARENT}-01` } });
    const started = SHAPE.exec(seen[1]!.traceparent ?? '');
    const restarted = SHAPE.exec(seen[2]!.traceparent ?? '');
    assert.ok(started && restarted);
    assert.notEqual(started[1], restarted[1]);
    assert.notEqual(restarted[1], '0'.repeat(32));
    await until(() => lines.length === 3, 'three log lines');
    assert.ok(lines[0]!.trimEnd().endsWith(` ${CLIENT_TRACE}`), lines[0]);
    assert.ok(lines[1]!.trimEnd().endsWith(` ${started[1]}`), lines[1]);
    assert.equal(proxy.traceStats(), undefined, 'no exporter without an endpoint');
    // Repeated requests (the composed head is remembered; only the traceparent changes): each its own span, nothing else lost.
    for (let i = 0; i < 6; i++) await request(`${base}/same`, { headers: { 'x-keep': 'yes', tracestate: 'k=v' } });
    const repeated = seen.slice(3);
    assert.equal(repeated.length, 6);
    const parents = repeated.map((entry) => SHAPE.exec(entry.traceparent ?? '')?.[2]);
    assert.ok(parents.every((parent) => parent !== undefined), 'each a valid traceparent');
    assert.equal(new Set(parents).size, 6, 'a new span id each time');
    assert.ok(repeated.every((entry) => entry.tracestate === 'k=v'));
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('with tracing on, the attempt\'s traceparent replaces one a header rule would add, so the upstream sees the proxy\'s span as parent', async () => {
  const collector = await startCollector();
  const seen: Array<{ traceparent?: string; tracestate?: string }> = [];
  const backend = await tracingBackend('b', seen);
  const { proxy, base } = await startProxy({
    tracing: { enabled: true, otlp: { endpoint: collector.endpoint, intervalMs: 50 } },
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
    servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'app', requestHeaders: [parseHeaderRule('default traceparent {new_traceparent}').rule, parseHeaderRule('set X-Kept yes').rule] }] }] }],
  });
  try {
    await request(`${base}/ruled`);
    await until(() => collector.spans.length === 2, 'two spans exported');
    const attempt = collector.spans.find((span) => span.kind === SpanKind.Client)!;
    const forwarded = SHAPE.exec(seen[0]!.traceparent ?? '');
    assert.ok(forwarded, `one valid traceparent, got ${seen[0]!.traceparent}`);
    assert.equal(forwarded[1], attempt.traceId);
    assert.equal(forwarded[2], attempt.spanId);
  } finally {
    await proxy.close();
    await backend.close();
    await collector.close();
  }
});

test('with tracing off, traceparent passes through unchanged and the JSON log still names the client\'s trace id', async () => {
  const seen: Array<{ traceparent?: string; tracestate?: string }> = [];
  const backend = await tracingBackend('b', seen);
  const lines: string[] = [];
  const { proxy, base } = await startProxy({
    accessLog: new AccessLog({ write: (line: string) => lines.push(line) }, 'json'),
    upstreams: [{ name: 'app', servers: [{ address: backend.address }] }],
  });
  try {
    assert.equal(proxy.tracer, undefined);
    await request(`${base}/a`, { headers: { traceparent: CLIENT_TRACEPARENT } });
    await request(`${base}/b`, { headers: { traceparent: 'not a traceparent' } });
    assert.equal(seen[0]!.traceparent, CLIENT_TRACEPARENT);
    await until(() => lines.length === 2, 'two log lines');
    assert.equal((JSON.parse(lines[0]!) as { trace_id: string }).trace_id, CLIENT_TRACE);
    assert.equal((JSON.parse(lines[1]!) as { trace_id: string | null }).trace_id, null, 'an invalid traceparent is not logged');
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('OTLP export: one server span per request and one client span per attempt; a retry is its own span, and each upstream saw its attempt\'s span as parent', async () => {
  const collector = await startCollector();
  const seenBad: Array<{ traceparent?: string }> = [];
  const seenGood: Array<{ traceparent?: string }> = [];
  const bad = await tracingBackend('bad', seenBad, 503);
  const good = await tracingBackend('good', seenGood);
  const log = new RecordingLog();
  const records = log.records;
  const { proxy, base } = await startProxy({
    tracing: { enabled: true, otlp: { endpoint: collector.endpoint, intervalMs: 50 } },
    accessLog: log,
    upstreams: [{ name: 'app', policy: 'first', servers: [{ address: bad.address }, { address: good.address }] }],
  });
  try {
    const reply = await request(`${base}/retry`, { headers: { traceparent: CLIENT_TRACEPARENT } });
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'good');
    await until(() => collector.spans.length === 3, 'three spans exported');
    const server = collector.spans.find((span) => span.kind === SpanKind.Server)!;
    const clients = collector.spans.filter((span) => span.kind === SpanKind.Client);
    assert.equal(server.traceId, CLIENT_TRACE);
    assert.equal(server.parentSpanId, CLIENT_PARENT, 'the proxy\'s span is a child of the client\'s');
    assert.equal(attribute(server, 'http.response.status_code'), '200');
    assert.equal(attribute(server, 'wmproxy.retries'), '1');
    assert.deepEqual(clients.map((span) => span.name).sort(), ['attempt', 'retry']);
    for (const span of clients) {
      assert.equal(span.traceId, CLIENT_TRACE);
      assert.equal(span.parentSpanId, server.spanId);
    }
    const first = clients.find((span) => span.name === 'attempt')!;
    const retry = clients.find((span) => span.name === 'retry')!;
    assert.equal(first.status.code, 2, 'the 503 attempt is an error');
    assert.equal(attribute(first, 'server.address'), bad.address);
    assert.equal(attribute(first, 'http.response.status_code'), '503');
    assert.equal(retry.status.code, 1);
    assert.equal(attribute(retry, 'server.address'), good.address);
    assert.equal(SHAPE.exec(seenBad[0]!.traceparent!)![2], first.spanId);
    assert.equal(SHAPE.exec(seenGood[0]!.traceparent!)![2], retry.spanId);
    assert.equal(records[0]!.retries, 1);
    assert.equal(records[0]!.traceId, CLIENT_TRACE);
    assert.ok(records[0]!.bytesReceived! > 20, 'the request head counts as bytes in');
    await until(() => proxy.traceStats()?.exported === 3, 'the exporter counted the accepted batch');
    assert.deepEqual(proxy.traceStats(), { exported: 3, dropped: 0, failed: 0 });
    assert.ok(collector.contentTypes.every((type) => type === 'application/json'), collector.contentTypes.join());
    const resource = (collector.bodies[0] as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue: string } }> } }> }).resourceSpans[0]!.resource;
    assert.deepEqual(resource.attributes[0], { key: 'service.name', value: { stringValue: 'wmproxy' } });
  } finally {
    await proxy.close();
    await bad.close();
    await good.close();
    await collector.close();
  }
});

for (const exporter of TRACING_EXPORTERS) {
  test(`a request hedge is its own span, parent of what the hedged upstream saw, and the access record says whether it won (exporter ${exporter})`, async () => {
    const collector = await startCollector();
    const seenSlow: Array<{ traceparent?: string }> = [];
    const seenFast: Array<{ traceparent?: string }> = [];
    const slow = await tracingBackend('slow', seenSlow, 200, 1500);
    const fast = await tracingBackend('fast', seenFast);
    const log = new RecordingLog();
    const records = log.records;
    const { proxy, base } = await startProxy({
      requestHedgeMs: 50,
      requestHedgeBudget: 1,
      tracing: { enabled: true, exporter, otlp: { endpoint: collector.endpoint, intervalMs: 50 } },
      accessLog: log,
      upstreams: [{ name: 'app', policy: 'first', servers: [{ address: slow.address }, { address: fast.address }] }],
    });
    try {
      const reply = await request(`${base}/hedged`);
      assert.equal(reply.body, 'fast');
      await until(() => collector.spans.length === 3, 'three spans exported');
      const server = collector.spans.find((span) => span.kind === SpanKind.Server)!;
      const hedge = collector.spans.find((span) => span.name === 'hedge')!;
      const first = collector.spans.find((span) => span.name === 'attempt')!;
      assert.ok(hedge && first);
      assert.equal(hedge.parentSpanId, server.spanId);
      assert.equal(first.parentSpanId, server.spanId);
      assert.equal(attribute(hedge, 'server.address'), fast.address);
      assert.equal(attribute(first, 'wmproxy.outcome'), 'lost_to_hedge');
      assert.equal(attribute(server, 'wmproxy.hedge'), 'won');
      assert.equal(SHAPE.exec(seenFast[0]!.traceparent!)![2], hedge.spanId);
      assert.equal(SHAPE.exec(seenSlow[0]!.traceparent!)![2], first.spanId);
      assert.equal(records[0]!.hedge, 'won');
    } finally {
      await proxy.close();
      await slow.close();
      await fast.close();
      await collector.close();
    }
  });
}

function span(i: number): SpanData {
  return { traceId: 'a'.repeat(32), spanId: i.toString(16).padStart(16, '0'), parentSpanId: '', name: 'x', kind: SpanKind.Server, startMs: 1_700_000_000_000.5, endMs: 1_700_000_000_001.25, attributes: { n: i, ok: true, s: 'v', f: 0.5 }, error: false };
}

test('the OTLP exporter batches, bounds its queue (dropping and counting the excess), and counts spans a failing collector did not take', async () => {
  const collector = await startCollector();
  try {
    const exporter = new OtlpExporter({ endpoint: collector.endpoint, headers: { 'x-api-key': 'k' }, queueSize: 5, batchSize: 2, intervalMs: 60_000, timeoutMs: 5_000 }, 'svc');
    for (let i = 1; i <= 4; i++) exporter.add(span(i)); // a full batch starts a send at 2
    for (let i = 5; i <= 9; i++) exporter.add(span(i));
    await exporter.flush();
    const { exported, dropped } = exporter.stats();
    assert.equal(exported + dropped, 9);
    assert.ok(dropped >= 1, 'beyond the queue spans are dropped');
    assert.equal(collector.spans.length, exported);
    assert.ok(collector.requests >= Math.ceil(exported / 2));
    collector.status = 500;
    exporter.add(span(10));
    await exporter.flush();
    assert.equal(exporter.stats().failed, 1);
    await exporter.close();
    exporter.add(span(11));
    assert.equal(exporter.stats().dropped, dropped + 1, 'nothing is queued after close');
  } finally {
    await collector.close();
  }
});

test('an unreachable collector does not hold spans: each batch fails once within its timeout and is counted', async () => {
  const collector = await startCollector();
  await collector.close();
  const exporter = new OtlpExporter({ endpoint: collector.endpoint, headers: {}, queueSize: 10, batchSize: 10, intervalMs: 60_000, timeoutMs: 1_000 }, 'svc');
  for (let i = 1; i <= 3; i++) exporter.add(span(i));
  await exporter.close();
  assert.deepEqual(exporter.stats(), { exported: 0, dropped: 0, failed: 3 });
});

test('otlpBody encodes ids as hex, times as nanosecond strings, attribute types and the error status', () => {
  const body = JSON.parse(otlpBody('svc', [{ ...span(1), parentSpanId: 'b'.repeat(16), error: true, message: 'boom' }])) as {
    resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<Record<string, unknown>> }> }>;
  };
  const encoded = body.resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
  assert.equal(encoded.startTimeUnixNano, '1700000000000500000');
  assert.equal(encoded.endTimeUnixNano, '1700000000001250000');
  assert.equal(encoded.parentSpanId, 'b'.repeat(16));
  assert.deepEqual(encoded.status, { code: 2, message: 'boom' });
  assert.deepEqual(encoded.attributes, [
    { key: 'n', value: { intValue: '1' } },
    { key: 'ok', value: { boolValue: true } },
    { key: 's', value: { stringValue: 'v' } },
    { key: 'f', value: { doubleValue: 0.5 } },
  ]);
});

test('parseTraceparent: valid values round-trip; bad versions, case, lengths and all-zero ids are refused; it never throws', () => {
  const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
  fc.assert(
    fc.property(hex(32), hex(16), hex(2), (traceId, parentId, flags) => {
      const parsed = parseTraceparent(`00-${traceId}-${parentId}-${flags}`);
      if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) assert.equal(parsed, undefined);
      else assert.deepEqual(parsed, { traceId, parentId, flags });
    }),
  );
  fc.assert(fc.property(fc.string({ maxLength: 80 }), (text) => void parseTraceparent(text)));
  assert.equal(parseTraceparent(`00-${CLIENT_TRACE.toUpperCase()}-${CLIENT_PARENT}-01`), undefined);
  assert.equal(parseTraceparent(`ff-${CLIENT_TRACE}-${CLIENT_PARENT}-01`), undefined);
  assert.equal(parseTraceparent(`${CLIENT_TRACEPARENT}-extra`), undefined, 'version 00 has nothing after the flags');
  assert.deepEqual(parseTraceparent(`01-${CLIENT_TRACE}-${CLIENT_PARENT}-01-future`), { traceId: CLIENT_TRACE, parentId: CLIENT_PARENT, flags: '01' }, 'a later version is read as 00');
  assert.equal(parseTraceparent(`01-${CLIENT_TRACE}-${CLIENT_PARENT}-01x`), undefined);
});

test('reload turns tracing on and off in place: the next request on the same proxy follows the new setting', async () => {
  const seen: Array<{ traceparent?: string; tracestate?: string }> = [];
  const backend = await tracingBackend('b', seen);
  const upstreams = [{ name: 'app', servers: [{ address: backend.address }] }];
  const { proxy, base, port } = await startProxy({ upstreams });
  const servers = [{ listen: `127.0.0.1:${port}`, vhosts: [{ locations: [{ path: '/', upstream: 'app' }] }] }];
  try {
    await request(`${base}/off`, { headers: { traceparent: CLIENT_TRACEPARENT } });
    await proxy.reload({ upstreams, servers, tracing: { enabled: true } });
    await request(`${base}/on`, { headers: { traceparent: CLIENT_TRACEPARENT } });
    await proxy.reload({ upstreams, servers });
    await request(`${base}/off-again`, { headers: { traceparent: CLIENT_TRACEPARENT } });
    assert.equal(seen[0]!.traceparent, CLIENT_TRACEPARENT);
    const on = SHAPE.exec(seen[1]!.traceparent ?? '');
    assert.ok(on && on[1] === CLIENT_TRACE && on[2] !== CLIENT_PARENT, `a hop of its own once on, got ${seen[1]!.traceparent}`);
    assert.equal(seen[2]!.traceparent, CLIENT_TRACEPARENT);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

test('otlpBody is valid JSON whatever the attribute keys, values and messages hold (quotes, controls, non-ASCII)', () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean())), fc.string(), fc.string(), (attributes, name, message) => {
      type Encoded = { name: string; attributes: Array<{ key: string; value: Record<string, unknown> }>; status: { message?: string } };
      type Body = { resourceSpans: Array<{ resource: { attributes: Array<{ value: { stringValue: string } }> }; scopeSpans: Array<{ spans: Encoded[] }> }> };
      const body = JSON.parse(otlpBody(name, [{ ...span(1), name, attributes, error: true, message }])) as Body;
      const encoded = body.resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
      assert.equal(body.resourceSpans[0]!.resource.attributes[0]!.value.stringValue, name);
      assert.equal(encoded.name, name);
      if (message) assert.equal(encoded.status.message, message);
      assert.deepEqual(encoded.attributes.map((entry) => entry.key), Object.keys(attributes));
      for (const entry of encoded.attributes) {
        const original = attributes[entry.key]!;
        const value = Object.values(entry.value)[0];
        if (typeof original === 'number' && Number.isInteger(original)) assert.equal(value, String(original));
        else if (typeof original === 'number') assert.equal(value, Object.is(original, -0) ? 0 : original);
        else assert.equal(value, original);
      }
    }),
  );
});
