/**
 * The tunnel's wire format: length-prefixed frames on one byte stream.
 *
 *   0      1      2              6              10
 *   +------+------+--------------+--------------+--------------
 *   | type | flags| stream id u32| length u32   | payload ...
 *   +------+------+--------------+--------------+--------------
 *
 * Big-endian. Stream 0 is the session itself (handshake, PING, MAPPINGS,
 * GOAWAY). Every type has a payload bound, checked before a byte of payload is
 * buffered, so a peer cannot make the decoder hold more than `maxFrameSize`.
 */

import { NetError } from '@wmproxy/core-net';

export const HEADER_SIZE = 10;
/** Protocol version, carried in HELLO and CHALLENGE. */
export const PROTOCOL_VERSION = 1;
/** First bytes of HELLO's payload: a peer that is not a tunnel fails on its first frame. */
export const MAGIC = new Uint8Array([0x57, 0x4d, 0x54, 0x55]); // "WMTU"
/** Largest DATA payload the writer sends (the decoder accepts up to `maxFrameSize`). */
export const MAX_DATA_PAYLOAD = 256 * 1024;
/** A UDP datagram travels whole: up to 65,535 bytes plus nothing else. */
export const MAX_DATAGRAM = 65_535;
/** Default bound on one frame's payload (control frames carry JSON). */
export const DEFAULT_MAX_FRAME_SIZE = 256 * 1024;

export const FrameType = {
  HELLO: 1,
  CHALLENGE: 2,
  AUTH: 3,
  AUTH_OK: 4,
  ERROR: 5,
  OPEN: 6,
  OPEN_OK: 7,
  OPEN_FAIL: 8,
  DATA: 9,
  WINDOW_UPDATE: 10,
  FIN: 11,
  RST: 12,
  PING: 13,
  PONG: 14,
  MAPPINGS: 15,
  GOAWAY: 16,
  DATAGRAM: 17,
  /** Data connection, server → client: carry mux stream `u32 id` from now on (promotion, see data.ts). */
  MOVE: 18,
  /** Mux stream: the sender's bytes of this stream continue on the data connection the stream moved to. */
  MOVED: 19,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const TYPE_NAMES: string[] = [];
for (const [name, value] of Object.entries(FrameType)) TYPE_NAMES[value] = name;
export function frameTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `type ${type}`;
}

/** Payload bounds per type: [min, max]; max -1 means the decoder's `maxFrameSize`. */
const BOUNDS: Array<[number, number] | undefined> = [];
BOUNDS[FrameType.HELLO] = [MAGIC.length + 1, 4096];
BOUNDS[FrameType.CHALLENGE] = [1, 4096];
BOUNDS[FrameType.AUTH] = [32, 4096];
BOUNDS[FrameType.AUTH_OK] = [0, 4096];
BOUNDS[FrameType.ERROR] = [0, 4096];
BOUNDS[FrameType.OPEN] = [0, 4096];
BOUNDS[FrameType.OPEN_OK] = [0, 0];
BOUNDS[FrameType.OPEN_FAIL] = [0, 4096];
BOUNDS[FrameType.DATA] = [0, -1];
BOUNDS[FrameType.WINDOW_UPDATE] = [4, 4];
BOUNDS[FrameType.FIN] = [0, 0];
BOUNDS[FrameType.RST] = [0, 4096];
BOUNDS[FrameType.PING] = [8, 8];
BOUNDS[FrameType.PONG] = [8, 8];
BOUNDS[FrameType.MAPPINGS] = [0, -1];
BOUNDS[FrameType.GOAWAY] = [0, 4096];
BOUNDS[FrameType.DATAGRAM] = [0, MAX_DATAGRAM];
BOUNDS[FrameType.MOVE] = [4, 4];
BOUNDS[FrameType.MOVED] = [0, 0];

/** Frame flags. */
export const Flag = {
  /** OPEN of a UDP flow: no OPEN_OK is awaited, datagrams follow. */
  DATAGRAM_FLOW: 1,
} as const;

/** The peer broke the protocol: the session answers GOAWAY with the reason and closes. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

export interface FrameSink {
  /** `payload` may be a view into the received chunk: keep it only by copying. */
  frame(type: FrameType, flags: number, streamId: number, payload: Uint8Array): void;
}

/** Write a header at `offset` of `target`. */
export function writeHeader(target: Uint8Array, offset: number, type: FrameType, flags: number, streamId: number, length: number): void {
  target[offset] = type;
  target[offset + 1] = flags;
  target[offset + 2] = streamId >>> 24;
  target[offset + 3] = (streamId >>> 16) & 0xff;
  target[offset + 4] = (streamId >>> 8) & 0xff;
  target[offset + 5] = streamId & 0xff;
  target[offset + 6] = length >>> 24;
  target[offset + 7] = (length >>> 16) & 0xff;
  target[offset + 8] = (length >>> 8) & 0xff;
  target[offset + 9] = length & 0xff;
}

/** One frame in one buffer (header and payload), ready for `Conn.write`. */
export function encodeFrame(type: FrameType, flags: number, streamId: number, payload?: Uint8Array): Uint8Array {
  const length = payload?.byteLength ?? 0;
  const out = new Uint8Array(HEADER_SIZE + length);
  writeHeader(out, 0, type, flags, streamId, length);
  if (payload && length > 0) out.set(payload, HEADER_SIZE);
  return out;
}

export function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

export function readU32(payload: Uint8Array, offset = 0): number {
  return ((payload[offset]! << 24) | (payload[offset + 1]! << 16) | (payload[offset + 2]! << 8) | payload[offset + 3]!) >>> 0;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Parse a control payload; anything but a JSON object is a protocol error. */
export function decodeJson(payload: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch {
    throw new ProtocolError(`${what}: payload is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolError(`${what}: payload is not a JSON object`);
  return value as Record<string, unknown>;
}

export function encodeText(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Text of an ERROR/GOAWAY/RST/OPEN_FAIL reason; invalid UTF-8 or control characters are replaced, length capped. */
export function decodeReason(payload: Uint8Array): string {
  let text: string;
  try {
    text = decoder.decode(payload);
  } catch {
    text = '(undecodable reason)';
  }
  // eslint-disable-next-line no-control-regex
  return text.slice(0, 512).replace(/[\u0000-\u001f\u007f]/g, ' ');
}

/**
 * Incremental decoder: feed it chunks of any size; it calls `sink.frame` for
 * each complete frame, with a zero-copy view when the frame lies inside one
 * chunk. DATA is the exception: a DATA frame split over chunks is handed out
 * as several DATA pieces (views, as they arrive), never assembled: the
 * receiver treats DATA as a byte stream anyway. Throws `ProtocolError` (and only that) on a bad header; after one,
 * the decoder is dead (the session closes).
 */
export class FrameDecoder {
  private readonly maxFrameSize: number;
  /** Bytes of a partial frame. */
  private pending: Uint8Array[] = [];
  private pendingSize = 0;
  /** Header of the frame being assembled (once known). */
  private type = 0;
  private flags = 0;
  private streamId = 0;
  private length = -1;
  /** Payload bytes of a DATA frame still to come: DATA is handed out piece by piece as it arrives, never assembled. */
  private dataLeft = 0;
  private failed = false;

  constructor(maxFrameSize = DEFAULT_MAX_FRAME_SIZE) {
    this.maxFrameSize = maxFrameSize;
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.pendingSize;
  }

  push(chunk: Uint8Array, sink: FrameSink): void {
    if (this.failed) throw new ProtocolError('decoder already failed');
    let offset = 0;
    if (this.dataLeft > 0) {
      offset = this.streamData(chunk, 0, sink);
      if (offset < 0) return;
    } else if (this.pendingSize > 0) {
      offset = this.fillPending(chunk, sink);
      if (offset < 0) return;
    }
    // Fast path: whole frames inside this chunk, handed out as views.
    while (chunk.byteLength - offset >= HEADER_SIZE) {
      const length = this.readHeader(chunk, offset);
      const end = offset + HEADER_SIZE + length;
      if (end > chunk.byteLength) {
        if (this.type !== FrameType.DATA) break;
        // A DATA frame running past this chunk: what is here goes out now, the rest as it comes.
        this.length = -1;
        this.dataLeft = length;
        this.streamData(chunk, offset + HEADER_SIZE, sink);
        return;
      }
      const payload = chunk.subarray(offset + HEADER_SIZE, end);
      offset = end;
      this.length = -1;
      sink.frame(this.type as FrameType, this.flags, this.streamId, payload);
      if (this.failed) return;
    }
    if (offset < chunk.byteLength) {
      // Keep the tail, copied: the caller may reuse the chunk (`new Uint8Array`:
      // the runtimes hand out Buffers, whose slice() is a view).
      const rest = new Uint8Array(chunk.subarray(offset));
      this.pending.push(rest);
      this.pendingSize += rest.byteLength;
    }
  }

  /** Hand out up to `dataLeft` bytes of `chunk` from `offset` as a DATA piece. Returns where the unread bytes start, or -1 if the chunk was used up. */
  private streamData(chunk: Uint8Array, offset: number, sink: FrameSink): number {
    const take = Math.min(this.dataLeft, chunk.byteLength - offset);
    this.dataLeft -= take;
    if (take > 0) sink.frame(FrameType.DATA, this.flags, this.streamId, chunk.subarray(offset, offset + take));
    if (this.failed || this.dataLeft > 0 || offset + take === chunk.byteLength) return -1;
    return offset + take;
  }

  /** Complete a frame begun in earlier chunks. Returns where this chunk's unread bytes start, or -1 if all was consumed into pending. */
  private fillPending(chunk: Uint8Array, sink: FrameSink): number {
    let offset = 0;
    if (this.length < 0) {
      const need = HEADER_SIZE - this.pendingSize;
      if (chunk.byteLength < need) {
        this.pending.push(new Uint8Array(chunk));
        this.pendingSize += chunk.byteLength;
        return -1;
      }
      this.pending.push(new Uint8Array(chunk.subarray(0, need)));
      this.pendingSize += need;
      offset = need;
      this.readHeader(this.concat(HEADER_SIZE), 0);
      if (this.type === FrameType.DATA && this.length > 0) {
        this.pending = [];
        this.pendingSize = 0;
        this.dataLeft = this.length;
        this.length = -1;
        return this.streamData(chunk, offset, sink);
      }
    }
    const total = HEADER_SIZE + this.length;
    const need = total - this.pendingSize;
    const available = chunk.byteLength - offset;
    if (available < need) {
      if (available > 0) {
        this.pending.push(new Uint8Array(chunk.subarray(offset)));
        this.pendingSize += available;
      }
      return -1;
    }
    // Not zero-filled: every byte is copied in below.
    const whole = Buffer.allocUnsafeSlow(total);
    let at = 0;
    for (const part of this.pending) {
      whole.set(part, at);
      at += part.byteLength;
    }
    whole.set(chunk.subarray(offset, offset + need), at);
    this.pending = [];
    this.pendingSize = 0;
    this.length = -1;
    sink.frame(this.type as FrameType, this.flags, this.streamId, whole.subarray(HEADER_SIZE));
    if (this.failed) return -1;
    return offset + need;
  }

  private concat(size: number): Uint8Array {
    if (this.pending.length === 1 && this.pending[0]!.byteLength >= size) return this.pending[0]!;
    const out = new Uint8Array(this.pendingSize);
    let at = 0;
    for (const part of this.pending) {
      out.set(part, at);
      at += part.byteLength;
    }
    this.pending = [out];
    return out;
  }

  private readHeader(buf: Uint8Array, offset: number): number {
    const type = buf[offset]!;
    const bounds = BOUNDS[type];
    if (!bounds) return this.fail(`unknown frame type ${type}`);
    const length = readU32(buf, offset + 6);
    const max = bounds[1] < 0 ? this.maxFrameSize : Math.min(bounds[1], this.maxFrameSize);
    if (length > max) return this.fail(`${frameTypeName(type)} frame of ${length} bytes exceeds the limit of ${max}`);
    if (length < bounds[0]) return this.fail(`${frameTypeName(type)} frame of ${length} bytes is shorter than ${bounds[0]}`);
    this.type = type;
    this.flags = buf[offset + 1]!;
    this.streamId = readU32(buf, offset + 2);
    this.length = length;
    return length;
  }

  private fail(message: string): never {
    this.failed = true;
    this.pending = [];
    this.pendingSize = 0;
    throw new ProtocolError(message);
  }

  /** Mark dead (the session hit a protocol error in a frame handler). */
  kill(): void {
    this.failed = true;
    this.pending = [];
    this.pendingSize = 0;
  }
}

/**
 * Handshake frames in arrival order, taken with `await next()`. A peer may
 * pipeline (send AUTH before it saw the challenge, as a replay does): up to 4
 * frames are queued, never lost; more is the owner's `overflow`.
 */
export class FrameQueue<F> {
  private readonly queue: F[] = [];
  private waiter: { resolve(frame: F): void; reject(error: Error): void } | undefined;
  failure: Error | undefined;

  constructor(
    /** Names the connection in the timeout's message. */
    private readonly label: string,
    /** Called with the timeout's error, before `next()` rejects with it (the owner closes). */
    private readonly timedOut: (error: Error) => void,
    private readonly overflow: () => void,
  ) {}

  push(frame: F): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter.resolve(frame);
    else if (this.queue.length < 4) this.queue.push(frame);
    else this.overflow();
  }

  /** A queued frame (one that arrived before anyone awaited it), if any. */
  take(): F | undefined {
    return this.queue.shift();
  }

  /** No more frames: `next()` rejects with `error` from now on. */
  fail(error: Error): void {
    this.failure ??= error;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(this.failure);
  }

  next(timeoutMs: number, what: string): Promise<F> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        const error = new NetError('ETIMEDOUT', `${this.label}: no ${what} within ${timeoutMs} ms`);
        this.timedOut(error);
        reject(error);
      }, timeoutMs);
      this.waiter = {
        resolve: (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }
}
