import { connect, type Conn, type ConnHandler, type Transport } from '@wmproxy/core-net';
import type { ResolvedTcpCheck } from '../target.js';
import type { ProbeResult } from '../types.js';
import { appendBounded, connectFailureReason, Exchange, failure, success, timeoutReason } from './result.js';

/** A greeting longer than this is not searched further. */
const MAX_REPLY_BYTES = 16 * 1024;

/**
 * TCP probe: the connect must succeed within the timeout. With `send`, those
 * bytes are written; with `expect`, the reply must contain those bytes before
 * the timeout (reading at most 16 KiB).
 */
export async function probeTcp(host: string, port: number, check: ResolvedTcpCheck, timeoutMs: number, transport?: Transport): Promise<ProbeResult> {
  const at = Date.now();
  const started = performance.now();
  let conn: Conn;
  try {
    conn = await (transport ? transport.connect({ host, port }, timeoutMs) : connect({ host, port, timeoutMs }));
  } catch (error) {
    return failure(at, started, connectFailureReason(error, timeoutMs));
  }
  if (!check.send && !check.expect) {
    conn.destroy();
    return success(at, started, 'connected');
  }
  const exchange = new TcpExchange(at, started, timeoutMs, check, conn);
  conn.userData = exchange;
  conn.setHandler(tcpHandler);
  if (check.send) conn.write(check.send);
  if (!check.expect) exchange.finish(success(at, started, 'connected, sent'));
  else if (!exchange.settled) exchange.armTimeout(onTcpTimeout);
  const result = await exchange.done;
  conn.destroy();
  return result;
}

class TcpExchange extends Exchange {
  buffer: Uint8Array = new Uint8Array(0);
  length = 0;
  constructor(
    at: number,
    started: number,
    timeoutMs: number,
    readonly check: ResolvedTcpCheck,
    readonly conn: Conn,
  ) {
    super(at, started, timeoutMs);
  }

  onData(chunk: Uint8Array): void {
    ({ buffer: this.buffer, length: this.length } = appendBounded(this.buffer, this.length, chunk, MAX_REPLY_BYTES));
    if (indexOf(this.buffer.subarray(0, this.length), this.check.expect!) >= 0) {
      this.finish(success(this.at, this.started, `connected, got ${this.check.expectLabel}`));
    } else if (this.length >= MAX_REPLY_BYTES) {
      this.finish(failure(this.at, this.started, `expected ${this.check.expectLabel} not found in the first ${MAX_REPLY_BYTES} bytes`));
    }
  }

  onClosed(error?: Error): void {
    const how = error ? `connection failed (${connectFailureReason(error, this.timeoutMs)})` : 'connection closed';
    this.finish(failure(this.at, this.started, `${how} before ${this.check.expectLabel} arrived`));
  }
}

const tcpHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as TcpExchange).onData(chunk);
  },
  end(conn) {
    (conn.userData as TcpExchange).onClosed();
  },
  close(conn, error) {
    (conn.userData as TcpExchange).onClosed(error);
  },
};

function onTcpTimeout(exchange: TcpExchange): void {
  exchange.finish(failure(exchange.at, exchange.started, timeoutReason(exchange.timeoutMs, `waiting for ${exchange.check.expectLabel}`)));
}

/** First index of `needle` in `haystack`, or -1. */
export function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).indexOf(
    Buffer.from(needle.buffer, needle.byteOffset, needle.byteLength),
  );
}
