import type { ProbeRunReport } from './run.js';
import type { HealthState } from './types.js';

export interface TableRow {
  state: HealthState | string;
  label: string;
  latencyMs?: number;
  reason: string;
}

/** Aligned text columns: STATE  TARGET  LATENCY  REASON. */
export function formatTable(rows: TableRow[], header = true): string[] {
  const width = Math.max(6, ...rows.map((row) => row.label.length));
  const line = (state: string, label: string, latency: string, reason: string): string =>
    `${state.padEnd(9)} ${label.padEnd(width)} ${latency.padStart(9)}  ${reason}`.trimEnd();
  const out = header ? [line('STATE', 'TARGET', 'LATENCY', 'REASON')] : [];
  for (const row of rows) out.push(line(row.state, row.label, row.latencyMs === undefined ? '-' : `${row.latencyMs.toFixed(1)}ms`, row.reason));
  return out;
}

function xml(text: string): string {
  return text.replace(/[<>&"']/g, (char) => `&#${char.charCodeAt(0)};`).replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, '');
}

/** A JUnit XML report (one testcase per target; unhealthy ones carry a failure) that CI systems display. */
export function toJUnit(report: ProbeRunReport, suiteName = 'wmproxy probe'): string {
  const failures = report.results.filter((result) => !result.healthy).length;
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${xml(suiteName)}" tests="${report.results.length}" failures="${failures}" time="${(report.durationMs / 1000).toFixed(3)}">`,
    `  <testsuite name="${xml(suiteName)}" tests="${report.results.length}" failures="${failures}" errors="0" skipped="0" time="${(report.durationMs / 1000).toFixed(3)}" timestamp="${new Date().toISOString()}">`,
  ];
  for (const result of report.results) {
    const time = ((result.latencyMs ?? 0) / 1000).toFixed(3);
    const open = `    <testcase classname="wmproxy.probe.${result.check.split(' ')[0]}" name="${xml(result.label)}" time="${time}"`;
    if (result.healthy) {
      lines.push(`${open}/>`);
      continue;
    }
    const message = `${result.state}: ${result.reason}`;
    const details = result.history.map((probe) => `${new Date(probe.at).toISOString()} ${probe.ok ? 'ok' : 'fail'} ${probe.latencyMs}ms ${probe.reason}`).join('\n');
    lines.push(`${open}>`, `      <failure message="${xml(message)}" type="${xml(result.state)}">${xml(details)}</failure>`, '    </testcase>');
  }
  lines.push('  </testsuite>', '</testsuites>', '');
  return lines.join('\n');
}
