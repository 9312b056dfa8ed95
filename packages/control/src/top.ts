/**
 * `wmproxy top`'s frame: the control API's live data (GET /series, /status,
 * /upstreams) as plain text, one screen: totals (requests by class, retries,
 * hedges, latency, bytes in and out), then per server its rate, errors, p99
 * (of the requests it answered), state, requests in flight and probe. Pure (no I/O): the CLI fetches,
 * calls `renderTop` and paints; tests call it with canned data.
 */
import type { SeriesView } from './timeseries.js';
import type { StatusView, UpstreamView } from './types.js';

export interface TopInput {
  status: StatusView;
  upstreams: UpstreamView[];
  series: SeriesView;
  /** Seconds averaged for rates (default 10). */
  windowSeconds?: number;
  /** ANSI colours for states (default false). */
  colour?: boolean;
  /** Columns available (lines are cut to fit). */
  width?: number;
}

const COLOURS: Record<string, string> = { healthy: '\x1b[32m', unhealthy: '\x1b[31m', ejected: '\x1b[35m', unknown: '\x1b[33m' };

function tail<T>(values: readonly T[], n: number): T[] {
  return values.slice(Math.max(0, values.length - n));
}

function rate(values: readonly number[], n: number): number {
  const last = tail(values, n);
  return last.length === 0 ? 0 : last.reduce((sum, value) => sum + value, 0) / last.length;
}

/** The highest of the last `n` per-second values (a percentile of percentiles would lie less than an average would). */
function peak(values: ReadonlyArray<number | null>, n: number): number | undefined {
  let best: number | undefined;
  for (const value of tail(values, n)) if (value !== null && (best === undefined || value > best)) best = value;
  return best;
}

export function formatRate(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

export function formatMs(value: number | undefined): string {
  if (value === undefined) return '-';
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value < 10 ? value.toFixed(1) : value.toFixed(0)} ms`;
}

export function formatBytes(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(1)} GB`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)} MB`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)} kB`;
  return `${Math.round(value)} B`;
}

function clock(at: number): string {
  return new Date(at).toISOString().slice(11, 19);
}

/** One frame, lines joined by "\n" (no trailing newline, no cursor movement). */
export function renderTop(input: TopInput): string {
  const { status, upstreams, series } = input;
  const n = input.windowSeconds ?? 10;
  const paint = (state: string, text: string) => (input.colour && COLOURS[state] ? `${COLOURS[state]}${text}\x1b[0m` : text);
  const lines: string[] = [];
  lines.push(`wmproxy ${status.version} · ${status.runtime} · pid ${status.pid} · up ${status.uptimeSeconds} s · reloads ${status.reloads.ok} ok / ${status.reloads.failed} rejected · ${clock(series.at)} UTC`);
  const classes = Object.keys(series.requests);
  const total = classes.reduce((sum, code) => sum + rate(series.requests[code]!, n), 0);
  const byClass = classes.map((code) => `${code} ${formatRate(rate(series.requests[code]!, n))}`).join('  ');
  // Older instances' series lack retries, hedges and bytes in.
  const retries = series.retries ? rate(series.retries, n) : 0;
  const hedges = series.hedges ? `${formatRate(rate(series.hedges.won, n))} won / ${formatRate(rate(series.hedges.lost, n))} lost` : '-';
  lines.push(`requests ${formatRate(total)}/s   ${byClass}   limited ${formatRate(rate(series.limited, n))}/s   retries ${formatRate(retries)}/s   hedges ${hedges}/s`);
  lines.push(
    `latency p50 ${formatMs(peak(series.latencyMs.p50, n))}  p95 ${formatMs(peak(series.latencyMs.p95, n))}  p99 ${formatMs(peak(series.latencyMs.p99, n))}   in ${formatBytes(series.bytesIn ? rate(series.bytesIn, n) : 0)}/s   out ${formatBytes(rate(series.bytesOut, n))}/s   connections ${tail(series.connections, 1)[0] ?? 0}   (last ${n} s)`,
  );
  lines.push('');
  const header = ['UPSTREAM', 'SERVER', 'STATE', 'REQ/S', 'ERR/S', 'ERR%', 'P99', 'ACTIVE', 'PROBE', 'REASON'];
  const rows: string[][] = [];
  const states: string[] = [];
  for (const group of upstreams) {
    for (const server of group.servers) {
      const columns = series.servers.find((entry) => entry.upstream === group.name && entry.server === server.address);
      const requests = columns ? rate(columns.requests, n) : 0;
      const errors = columns ? rate(columns.errors, n) : 0;
      rows.push([
        group.name,
        server.address + (server.backup ? ' (backup)' : ''),
        server.state,
        formatRate(requests),
        formatRate(errors),
        requests > 0 ? `${((100 * errors) / requests).toFixed(1)}%` : '-',
        formatMs(columns?.p99Ms ? peak(columns.p99Ms, n) : undefined),
        String(server.activeRequests),
        formatMs(server.latencyMs),
        server.reason ?? '',
      ]);
      states.push(server.state);
    }
  }
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const numeric = new Set([3, 4, 5, 6, 7, 8]);
  const format = (row: string[], state?: string) =>
    row
      .map((value, i) => {
        if (i === row.length - 1) return value;
        const padded = numeric.has(i) ? value.padStart(widths[i]!) : value.padEnd(widths[i]!);
        return i === 2 && state ? paint(state, padded) : padded;
      })
      .join('  ')
      .trimEnd();
  lines.push(format(header));
  rows.forEach((row, i) => lines.push(format(row, states[i])));
  if (rows.length === 0) lines.push('(no upstream)');
  const recent = tail(series.transitions, 5);
  if (recent.length > 0) {
    lines.push('', 'recent health changes:');
    for (const change of recent) {
      const what = change.kind === 'transition' ? `${change.from} → ${change.to}` : change.kind;
      lines.push(`  ${clock(change.at)}  ${change.target}  ${what}${change.reason ? ` (${change.reason})` : ''}`);
    }
  }
  const width = input.width;
  // Cut long lines (colour codes do not take columns, so only uncoloured lines are cut).
  return lines.map((line) => (width && !line.includes('\x1b[') && line.length > width ? line.slice(0, width) : line)).join('\n');
}
