import { connect, type Conn, type ConnHandler, type Transport } from '@wmproxy/core-net';
import { statusMatches } from '../status.js';
import type { ResolvedHttpCheck } from '../target.js';
import type { ProbeResult } from '../types.js';
import { appendBounded, connectFailureReason, Exchange, failure, success, timeoutReason } from './result.js';

/** Response headers larger than this fail the probe. */
export const MAX_HEAD_BYTES = 16 * 1024;
const USER_AGENT = 'wmproxy-health/0.1';
const CRLFCRLF = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/;

const requests = new WeakMap<ResolvedHttpCheck, Uint8Array>();

/** The request bytes, built once per check: `Connection: close`, one request per connection. */
export function buildRequest(check: ResolvedHttpCheck): Uint8Array {
  let bytes = requests.get(check);
  if (bytes) return bytes;
  const given = new Set(check.headers.map(([name]) => name.toLowerCase()));
  let head = `${check.method} ${check.path} HTTP/1.1\r\n`;
  if (!given.has('host')) head += `Host: ${check.host}\r\n`;
  if (!given.has('user-agent')) head += `User-Agent: ${USER_AGENT}\r\n`;
  if (!given.has('accept')) head += 'Accept: */*\r\n';
  for (const [name, value] of check.headers) {
    if (name.toLowerCase() === 'connection') continue;
    head += `${name}: ${value}\r\n`;
  }
  if ((check.method === 'POST' || check.method === 'PUT' || check.method === 'PATCH') && !given.has('content-length')) {
    head += 'Content-Length: 0\r\n';
  }
  head += 'Connection: close\r\n\r\n';
  bytes = new TextEncoder().encode(head);
  requests.set(check, bytes);
  return bytes;
}

/**
 * HTTP(S) probe: a minimal HTTP/1.1 client on one fresh connection (no pool,
 * so the timing is the server's). Reads at most 16 KiB of headers and, when
 * the body must match, at most `maxBodyBytes` of the decoded body.
 */
export async function probeHttp(host: string, port: number, check: ResolvedHttpCheck, timeoutMs: number, transport?: Transport): Promise<ProbeResult> {
  const at = Date.now();
  const started = performance.now();
  let conn: Conn;
  try {
    // A transport decides itself how the stream is secured (its kind is `tls`, or a tunnel's own encryption).
    if (transport) conn = await transport.connect({ host, port, servername: check.servername, tlsVerify: check.tlsVerify }, timeoutMs);
    else conn = await connect({
      host,
      port,
      timeoutMs,
      ...(check.type === 'https'
        ? { tls: { servername: check.servername, rejectUnauthorized: check.tlsVerify, ...(check.ca ? { ca: check.ca } : {}) } }
        : {}),
    });
  } catch (error) {
    return failure(at, started, connectFailureReason(error, timeoutMs));
  }
  const exchange = new HttpExchange(at, started, timeoutMs, check);
  conn.userData = exchange;
  exchange.armTimeout(onHttpTimeout);
  conn.setHandler(httpHandler);
  if (!exchange.settled) conn.write(buildRequest(check));
  const result = await exchange.done;
  conn.destroy();
  return result;
}

const enum Framing {
  None,
  Length,
  Chunked,
  UntilClose,
}

class HttpExchange extends Exchange {
  private head: Uint8Array = new Uint8Array(0);
  private headLength = 0;
  private inBody = false;
  status = 0;
  private framing = Framing.None;
  private remaining = 0;
  /** Chunked decoding: raw bytes not yet parsed, and the data left in the current chunk. */
  private raw: Uint8Array = new Uint8Array(0);
  private rawLength = 0;
  private chunkLeft = 0;
  private body: Uint8Array = new Uint8Array(0);
  private bodyLength = 0;

  constructor(
    at: number,
    started: number,
    timeoutMs: number,
    readonly check: ResolvedHttpCheck,
  ) {
    super(at, started, timeoutMs);
  }

  onData(chunk: Uint8Array): void {
    if (this.settled) return;
    if (this.inBody) return this.onBody(chunk);
    const before = this.headLength;
    ({ buffer: this.head, length: this.headLength } = appendBounded(this.head, this.headLength, chunk, MAX_HEAD_BYTES));
    const view = Buffer.from(this.head.buffer, this.head.byteOffset, this.headLength);
    const end = view.indexOf(CRLFCRLF, Math.max(0, before - 3));
    if (end < 0) {
      if (this.headLength >= MAX_HEAD_BYTES) this.fail(`response headers over ${MAX_HEAD_BYTES} bytes`);
      return;
    }
    const rest = chunk.subarray(end + 4 - before);
    this.onHead(view.toString('latin1', 0, end), rest);
  }

  private onHead(text: string, rest: Uint8Array): void {
    const lines = text.split('\r\n');
    const match = STATUS_LINE.exec(lines[0]!);
    if (!match) return this.fail(`malformed status line ${JSON.stringify(lines[0]!.slice(0, 60))}`);
    const status = Number(match[1]);
    if (status >= 100 && status < 200 && status !== 101) {
      // Interim response (100 Continue, 103 Early Hints): the real one follows.
      this.head = new Uint8Array(0);
      this.headLength = 0;
      if (rest.byteLength > 0) this.onData(rest.slice());
      return;
    }
    this.status = status;
    if (!statusMatches(this.check.status, status)) return this.fail(`status ${status} not in ${this.check.statusLabel}`);
    if (!this.check.body) return this.pass(`status ${status}`);
    let length = -1;
    let chunked = false;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      if (name === 'content-length') length = Number(line.slice(colon + 1).trim());
      else if (name === 'transfer-encoding') chunked = /(?:^|,)\s*chunked\s*$/i.test(line.slice(colon + 1));
    }
    if (this.check.method === 'HEAD' || status === 204 || status === 304) this.framing = Framing.None;
    else if (chunked) this.framing = Framing.Chunked;
    else if (length >= 0 && Number.isSafeInteger(length)) this.framing = Framing.Length;
    else this.framing = Framing.UntilClose;
    this.remaining = length;
    this.inBody = true;
    if (this.framing === Framing.None || (this.framing === Framing.Length && length === 0)) return this.bodyComplete();
    if (rest.byteLength > 0) this.onBody(rest);
  }

  private onBody(chunk: Uint8Array): void {
    switch (this.framing) {
      case Framing.Length: {
        const take = chunk.subarray(0, Math.min(chunk.byteLength, this.remaining));
        this.remaining -= take.byteLength;
        this.keep(take);
        if (!this.settled && this.remaining <= 0) this.bodyComplete();
        return;
      }
      case Framing.UntilClose:
        this.keep(chunk);
        return;
      case Framing.Chunked:
        ({ buffer: this.raw, length: this.rawLength } = appendBounded(this.raw, this.rawLength, chunk, this.rawLength + chunk.byteLength));
        this.dechunk();
        return;
      default:
        return;
    }
  }

  private dechunk(): void {
    let offset = 0;
    const raw = Buffer.from(this.raw.buffer, this.raw.byteOffset, this.rawLength);
    while (!this.settled) {
      if (this.chunkLeft > 0) {
        const take = Math.min(this.chunkLeft, this.rawLength - offset);
        if (take === 0) break;
        this.keep(raw.subarray(offset, offset + take));
        offset += take;
        this.chunkLeft -= take;
        if (this.chunkLeft === 0) this.chunkLeft = -2; // the CRLF after the data
        continue;
      }
      if (this.chunkLeft === -2) {
        if (this.rawLength - offset < 2) break;
        offset += 2;
        this.chunkLeft = 0;
        continue;
      }
      const eol = raw.indexOf('\r\n', offset, 'latin1');
      if (eol < 0) {
        if (this.rawLength - offset > 1024) this.fail('malformed chunked body');
        break;
      }
      const size = parseInt(raw.toString('latin1', offset, eol).split(';')[0]!.trim(), 16);
      if (!Number.isFinite(size) || size < 0) return this.fail('malformed chunked body');
      offset = eol + 2;
      if (size === 0) return this.bodyComplete();
      this.chunkLeft = size;
    }
    // Keep only what is not parsed yet (a partial size line or CRLF).
    const left = raw.subarray(offset);
    this.raw = Uint8Array.from(left);
    this.rawLength = left.byteLength;
  }

  /** Keep body bytes up to the limit; at the limit, judge what we have. */
  private keep(bytes: Uint8Array): void {
    if (this.settled || bytes.byteLength === 0) return;
    const limit = this.check.maxBodyBytes;
    ({ buffer: this.body, length: this.bodyLength } = appendBounded(this.body, this.bodyLength, bytes, limit));
    if (this.matches()) this.pass(`status ${this.status}, body matched`);
    else if (this.bodyLength >= limit) this.bodyComplete();
  }

  private matches(): boolean {
    const want = this.check.body!;
    const text = Buffer.from(this.body.buffer, this.body.byteOffset, this.bodyLength).toString('utf8');
    return 'text' in want ? text.includes(want.text) : want.regex.test(text);
  }

  private bodyComplete(): void {
    if (this.settled) return;
    if (this.matches()) return this.pass(`status ${this.status}, body matched`);
    const want = this.check.body!;
    const limited = this.bodyLength >= this.check.maxBodyBytes ? ` in the first ${this.check.maxBodyBytes} bytes` : '';
    this.fail('text' in want ? `body did not contain ${JSON.stringify(want.text)}${limited}` : `body did not match ${want.regex}${limited}`);
  }

  onClosed(error?: Error): void {
    if (this.settled) return;
    if (this.inBody) {
      if (this.framing === Framing.UntilClose && !error) return this.bodyComplete();
      if (this.bodyLength > 0 && this.matches()) return this.pass(`status ${this.status}, body matched`);
      return this.fail(`connection closed while reading the body${error ? ` (${connectFailureReason(error, this.timeoutMs)})` : ''}`);
    }
    this.fail(error ? `${connectFailureReason(error, this.timeoutMs)} before the response` : 'connection closed before the response');
  }

  onTimeout(): void {
    this.fail(timeoutReason(this.timeoutMs, this.inBody ? 'reading the body' : this.headLength > 0 ? 'reading the headers' : 'no response'));
  }

  private pass(reason: string): void {
    this.finish(success(this.at, this.started, reason, this.status || undefined));
  }
  private fail(reason: string): void {
    this.finish(failure(this.at, this.started, reason, this.status || undefined));
  }
}

const httpHandler: ConnHandler = {
  data(conn, chunk) {
    (conn.userData as HttpExchange).onData(chunk);
  },
  end(conn) {
    (conn.userData as HttpExchange).onClosed();
  },
  close(conn, error) {
    (conn.userData as HttpExchange).onClosed(error);
  },
};

function onHttpTimeout(exchange: HttpExchange): void {
  exchange.onTimeout();
}
