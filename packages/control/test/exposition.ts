/** A strict parser of the Prometheus text exposition, for the tests of /metrics and of the Grafana dashboard. */
import assert from 'node:assert/strict';

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

/** Parse the text exposition (0.0.4) strictly enough to catch a malformed line. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const help = new Map<string, string>();
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
  const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/g;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let match: RegExpExecArray | null;
    if ((match = /^# HELP (\S+) (.+)$/.exec(line))) help.set(match[1]!, match[2]!);
    else if ((match = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      assert.ok(help.has(match[1]!), `HELP before TYPE of ${match[1]}`);
      assert.ok(!families.has(match[1]!), `${match[1]} declared once`);
      families.set(match[1]!, { name: match[1]!, type: match[2]!, help: help.get(match[1]!)!, samples: [] });
    } else {
      match = sample.exec(line);
      assert.ok(match, `a sample line: ${line}`);
      const name = match[1]!;
      const family = families.get(name) ?? families.get(name.replace(/_(bucket|sum|count)$/, ''));
      assert.ok(family, `${name} has a TYPE before its samples`);
      const labels: Record<string, string> = {};
      for (const [, key, value] of (match[2] ?? '').matchAll(pair)) labels[key!] = value!;
      const value = Number(match[3]);
      assert.ok(!Number.isNaN(value), `${line}: a number`);
      family.samples.push({ name, labels, value });
    }
  }
  return families;
}

/**
 * A configuration under which /metrics exports every family: tracing with an
 * OTLP endpoint (nothing listens there: spans fail to export), a forward proxy,
 * an upstream of `server` with active checks, and a reverse proxy whose
 * `/limited` location allows one request a minute (refusals answer 429).
 */
export function everyFamilyConfig(server: string): string {
  return `
[control]
listen = "127.0.0.1:0"
[reverse.tracing]
enabled = true
otlp_endpoint = "http://127.0.0.1:9/v1/traces"
otlp_timeout = "1s"
[[proxy]]
name = "fwd"
listen = "127.0.0.1:0"
[[upstream]]
name = "app"
servers = ["${server}"]
health_check = { interval = "200ms", timeout = "150ms" }
[[server]]
listen = "127.0.0.1:0"
[[server.location]]
path = "/limited"
upstream = "app"
rate_limit = { rate = "1r/m", status = 429 }
[[server.location]]
upstream = "app"
`;
}
