import { createWriteStream, type WriteStream } from 'node:fs';

/** One finished request, as the access log sees it. */
export interface AccessRecord {
  clientIp: string;
  /** Epoch ms when the request head was complete. */
  startedAt: number;
  method: string;
  target: string;
  version: string;
  host: string;
  status: number;
  /** Response bytes sent to the client (head and body). */
  bytesSent: number;
  referer: string | undefined;
  userAgent: string | undefined;
  upstreamAddr: string | undefined;
  /** Time from the first upstream attempt to the end of the response (ms), when proxied. */
  upstreamTimeMs: number | undefined;
  totalTimeMs: number;
  /** Request bytes received from the client (head and body), when known. */
  bytesReceived?: number;
  /** The upstream group that served it, when proxied. */
  upstream?: string;
  /** Attempts after the first (retries), when any. */
  retries?: number;
  /** A request hedge was sent: did it serve the response (`won`) or not (`lost`)? */
  hedge?: 'won' | 'lost';
  /** W3C trace id: the proxy's trace while tracing is on, else the client's valid `traceparent`'s. */
  traceId?: string | undefined;
  /** Why the proxy answered itself (502/503/504/400...), for the log. */
  reason?: string;
}

export type AccessLogFormat = 'combined' | 'json';

export interface AccessLogSink {
  write(line: string): unknown;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
let cachedSecond = -1;
let cachedLocal = '';

/** nginx's `$time_local` (`26/Nov/2026:00:45:13 +0000`), in UTC, cached per second. */
export function timeLocal(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second === cachedSecond) return cachedLocal;
  const d = new Date(ms);
  const pad = (n: number): string => (n < 10 ? `0${n}` : String(n));
  cachedLocal = `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
  cachedSecond = second;
  return cachedLocal;
}

function quoted(value: string | undefined): string {
  if (value === undefined || value === '') return '"-"';
  return `"${value.replace(/["\\]/g, '\\$&').replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`;
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? '-' : (ms / 1000).toFixed(3);
}

/**
 * nginx "combined" (`$remote_addr - - [$time_local] "$request" $status
 * $body_bytes_sent "$http_referer" "$http_user_agent"`) followed by
 * `$upstream_addr $upstream_response_time $request_time`, as the common
 * `upstream_time` extension does, and the W3C trace id (`-` when none); or
 * one JSON object per line (`trace_id`).
 */
export function formatAccess(record: AccessRecord, format: AccessLogFormat): string {
  if (format === 'json') {
    return JSON.stringify({
      time: new Date(record.startedAt).toISOString(),
      client_ip: record.clientIp,
      method: record.method,
      uri: record.target,
      protocol: `HTTP/${record.version}`,
      host: record.host,
      status: record.status,
      bytes_sent: record.bytesSent,
      bytes_received: record.bytesReceived ?? null,
      referer: record.referer ?? null,
      user_agent: record.userAgent ?? null,
      upstream_addr: record.upstreamAddr ?? null,
      upstream_time_ms: record.upstreamTimeMs ?? null,
      total_time_ms: record.totalTimeMs,
      trace_id: record.traceId ?? null,
      ...(record.reason ? { reason: record.reason } : {}),
    });
  }
  const request = `${record.method} ${record.target} HTTP/${record.version}`;
  return `${record.clientIp} - - [${timeLocal(record.startedAt)}] ${quoted(request)} ${record.status} ${record.bytesSent} ${quoted(record.referer)} ${quoted(record.userAgent)} ${record.upstreamAddr ?? '-'} ${seconds(record.upstreamTimeMs)} ${seconds(record.totalTimeMs)} ${record.traceId ?? '-'}`;
}

export class AccessLog {
  readonly format: AccessLogFormat;
  private readonly sink: AccessLogSink;
  private readonly stream: WriteStream | undefined;

  /** `target`: a file path, `-` for standard output, or a sink object. */
  constructor(target: string | AccessLogSink, format: AccessLogFormat = 'combined') {
    this.format = format;
    if (typeof target === 'string') {
      if (target === '-') this.sink = process.stdout;
      else {
        this.stream = createWriteStream(target, { flags: 'a' });
        this.sink = this.stream;
      }
    } else this.sink = target;
  }

  log(record: AccessRecord): void {
    this.sink.write(formatAccess(record, this.format) + '\n');
  }

  close(): Promise<void> {
    const stream = this.stream;
    if (!stream) return Promise.resolve();
    return new Promise((resolve) => stream.end(resolve));
  }
}
