import { NetError } from '@wmproxy/core-net';
import type { ProbeResult } from '../types.js';

export function success(at: number, started: number, reason: string, status?: number): ProbeResult {
  const result: ProbeResult = { ok: true, at, latencyMs: elapsed(started), reason };
  if (status !== undefined) result.status = status;
  return result;
}

export function failure(at: number, started: number, reason: string, status?: number): ProbeResult {
  const result: ProbeResult = { ok: false, at, latencyMs: elapsed(started), reason };
  if (status !== undefined) result.status = status;
  return result;
}

/** Milliseconds since `started` (performance.now()), to 0.1 ms. */
export function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

export function timeoutReason(timeoutMs: number, phase?: string): string {
  return phase ? `timeout after ${timeoutMs} ms (${phase})` : `timeout after ${timeoutMs} ms`;
}

/** A connect error as a reason: the code (`ECONNREFUSED`), or the timeout in words. */
export function connectFailureReason(error: unknown, timeoutMs: number): string {
  if (error instanceof NetError) {
    if (error.code === 'ETIMEDOUT') return timeoutReason(timeoutMs);
    if (error.code === 'EPROTO') return error.message.replace(/ \([^)]*\)$/, '');
    if (error.code === 'ENOTFOUND') return `ENOTFOUND (${error.address ?? 'no address'})`;
    if (error.code === 'ECONNRESET' && /certificate|self.signed|TLS|SSL|handshake/i.test(error.message)) {
      return `TLS: ${error.message.replace(/ \([^)]*\)$/, '')}`;
    }
    return error.code;
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return error instanceof Error ? error.message : String(error);
}

/**
 * Waits for the end of a probe exchange. One instance per probe, shared
 * handler objects drive it (no per-chunk closures); `finish` settles once.
 */
export abstract class Exchange {
  private resolveResult!: (result: ProbeResult) => void;
  readonly done: Promise<ProbeResult>;
  private timer: ReturnType<typeof setTimeout> | undefined;
  settled = false;

  constructor(
    readonly at: number,
    readonly started: number,
    readonly timeoutMs: number,
  ) {
    this.done = new Promise((resolve) => (this.resolveResult = resolve));
  }

  /** Arm the overall deadline for what is left of the timeout. */
  armTimeout(onTimeout: (exchange: this) => void): void {
    const remaining = Math.max(0, this.timeoutMs - (performance.now() - this.started));
    this.timer = setTimeout(onTimeout, remaining, this);
  }

  finish(result: ProbeResult): void {
    if (this.settled) return;
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    this.resolveResult(result);
  }
}

/** Bytes read so far, bounded: a probe never buffers more than `limit`. */
export function appendBounded(buffer: Uint8Array, length: number, chunk: Uint8Array, limit: number): { buffer: Uint8Array; length: number } {
  const room = limit - length;
  const take = Math.min(room, chunk.byteLength);
  if (take <= 0) return { buffer, length };
  if (length + take > buffer.byteLength) {
    const grown = new Uint8Array(Math.min(limit, Math.max(buffer.byteLength * 2, length + take, 1024)));
    grown.set(buffer.subarray(0, length));
    buffer = grown;
  }
  buffer.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), length);
  return { buffer, length: length + take };
}
