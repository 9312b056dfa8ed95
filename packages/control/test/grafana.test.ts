/**
 * The Grafana dashboard in examples/grafana is built only on what /metrics
 * exports: every metric an expression names (panels and annotations) is a
 * family of a running instance's exposition, with the suffix its type allows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { Instance } from '../src/index.js';
import { everyFamilyConfig, parseExposition } from './exposition.js';

function repoFile(relative: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, relative))) {
    const up = dirname(dir);
    assert.notEqual(up, dir, `${relative} not found above the test`);
    dir = up;
  }
  return join(dir, relative);
}

/** Every `expr` in the dashboard, wherever it sits (panels, rows, annotations). */
function expressions(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) expressions(item, out);
  else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'expr' && typeof value === 'string') out.push(value);
      else expressions(value, out);
    }
  }
  return out;
}

/** Metric names in a PromQL expression: identifiers of our namespace outside label matchers and strings. */
export function metricNames(expr: string): string[] {
  const bare = expr.replace(/\{[^}]*\}/g, '{}').replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...bare.matchAll(/\b(wmproxy_[a-zA-Z0-9_]+)\b/g)].map((match) => match[1]!);
}

test('metricNames finds the metrics of an expression, not its labels or strings', () => {
  assert.deepEqual(metricNames('sum by (le) (rate(wmproxy_a_bucket{x="wmproxy_b"}[5m])) / wmproxy_c'), ['wmproxy_a_bucket', 'wmproxy_c']);
});

test('every PromQL expression of examples/grafana/wmproxy.json references a metric that /metrics exports', async () => {
  const dashboard = JSON.parse(readFileSync(repoFile('examples/grafana/wmproxy.json'), 'utf8')) as { panels: Array<{ targets?: unknown[] }> };
  const exprs = expressions(dashboard);
  assert.ok(exprs.length >= 14, 'the dashboard has its panels');
  const instance = await Instance.start(parseConfig(everyFamilyConfig('127.0.0.1:1'), 'toml'), { logger: silentLogger });
  try {
    const families = parseExposition(await (await fetch(`http://${instance.controlAddress}/metrics`)).text());
    const used = new Set<string>();
    for (const expr of exprs) {
      const names = metricNames(expr);
      assert.ok(names.length > 0, `${expr}: names a wmproxy metric`);
      for (const name of names) {
        const suffix = /_(bucket|sum|count)$/.exec(name);
        const family = families.get(name) ?? (suffix ? families.get(name.slice(0, -suffix[0].length)) : undefined);
        assert.ok(family, `${name} (in ${expr}) is exported by /metrics`);
        if (!families.has(name)) assert.equal(family.type, 'histogram', `${name}: only histograms have _bucket/_sum/_count`);
        if (family.type === 'histogram') assert.ok(suffix, `${name}: a histogram is queried through _bucket, _sum or _count`);
        if (family.type === 'counter') assert.match(expr, new RegExp(`(rate|increase|changes|irate)\\(${family.name}\\b`), `${name}: a counter is read as a rate`);
        used.add(family.name);
      }
    }
    assert.ok(used.has('wmproxy_http_requests_total') && used.has('wmproxy_upstream_healthy') && used.has('wmproxy_http_limited_requests_total'));
  } finally {
    await instance.stop();
  }
});
