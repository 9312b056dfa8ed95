import {
  DEFAULT_MAX_FRAME_SIZE,
  ErrorCode,
  Flag,
  FRAME_HEADER_SIZE,
  FrameType,
  Http2Error,
} from './constants.js';

/** What a frame parser reports. Views passed in are valid only during the call unless said otherwise. */
export interface FrameHandler {
  /** `data` is a view into the received chunk (the receiver may keep it); `flowLength` counts padding too. */
  onData(streamId: number, data: Uint8Array, endStream: boolean, flowLength: number): void;
  /** A whole header block (HEADERS plus its CONTINUATIONs), ready for HPACK. */
  onHeaders(streamId: number, block: Uint8Array, endStream: boolean): void;
  onPriority(streamId: number, dependsOn: number): void;
  onRstStream(streamId: number, code: number): void;
  /** `payload` is 6-byte (id, value) pairs; empty on ACK. */
  onSettings(ack: boolean, payload: Uint8Array): void;
  onPushPromise(streamId: number, promisedId: number, block: Uint8Array): void;
  onPing(ack: boolean, payload: Uint8Array): void;
  onGoaway(lastStreamId: number, code: number, debug: Uint8Array): void;
  onWindowUpdate(streamId: number, increment: number): void;
  /** A stream-level error found by the parser (the connection goes on). */
  onStreamError(error: Http2Error): void;
}

export interface FrameParserLimits {
  /** Our SETTINGS_MAX_FRAME_SIZE: a longer frame is a FRAME_SIZE_ERROR. */
  maxFrameSize: number;
  /** Cap on one header block across HEADERS + CONTINUATION (CONTINUATION flood defence). */
  maxHeaderBlockSize: number;
  /** Cap on CONTINUATION frames in one header block (floods of tiny ones). */
  maxContinuationFrames: number;
}

export const DEFAULT_FRAME_PARSER_LIMITS: FrameParserLimits = {
  maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
  maxHeaderBlockSize: 128 * 1024,
  maxContinuationFrames: 64,
};

function connError(code: number, message: string): Http2Error {
  return new Http2Error(code, message, 0);
}

/**
 * Incremental HTTP/2 frame parser (RFC 9113 §4, §6). Feed it chunks split
 * anywhere; it validates each frame's shape (lengths, stream id 0 rules,
 * padding), joins CONTINUATION sequences and calls the handler. A connection
 * error is thrown as an `Http2Error` with `streamId` 0; after it the parser
 * is dead and ignores input. Frames are parsed in place from the chunk; only
 * a frame split across chunks is copied.
 */
export class FrameParser {
  private pending: Uint8Array | undefined;
  private dead = false;
  /** The peer's first frame must be SETTINGS (RFC 9113 §3.4). */
  private first = true;
  // An open header block awaiting CONTINUATION.
  private blockStream = 0;
  private blockParts: Uint8Array[] = [];
  private blockSize = 0;
  private blockFrames = 0;
  private blockEndStream = false;
  private blockPromised = -1;
  readonly limits: FrameParserLimits;

  constructor(
    private readonly handler: FrameHandler,
    limits: Partial<FrameParserLimits> = {},
  ) {
    this.limits = { ...DEFAULT_FRAME_PARSER_LIMITS, ...limits };
  }

  /** True while a header block waits for CONTINUATION frames. */
  get inHeaderBlock(): boolean {
    return this.blockStream !== 0;
  }

  push(chunk: Uint8Array): void {
    if (this.dead) return;
    let buf = chunk;
    if (this.pending) {
      buf = new Uint8Array(this.pending.byteLength + chunk.byteLength);
      buf.set(this.pending);
      buf.set(chunk, this.pending.byteLength);
      this.pending = undefined;
    }
    let off = 0;
    const end = buf.byteLength;
    try {
      while (end - off >= FRAME_HEADER_SIZE) {
        const length = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
        if (length > this.limits.maxFrameSize) {
          throw connError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds SETTINGS_MAX_FRAME_SIZE ${this.limits.maxFrameSize}`);
        }
        if (end - off < FRAME_HEADER_SIZE + length) break;
        const type = buf[off + 3]!;
        const flags = buf[off + 4]!;
        const streamId = ((buf[off + 5]! & 0x7f) << 24) | (buf[off + 6]! << 16) | (buf[off + 7]! << 8) | buf[off + 8]!;
        const start = off + FRAME_HEADER_SIZE;
        off = start + length;
        this.frame(type, flags, streamId, buf.subarray(start, off));
        if (this.dead) return;
      }
    } catch (error) {
      this.dead = true;
      throw error;
    }
    if (off < end) this.pending = buf.slice(off);
  }

  /** Stop parsing (after a connection error the caller handled). */
  stop(): void {
    this.dead = true;
    this.pending = undefined;
    this.blockParts = [];
  }

  private frame(type: number, flags: number, streamId: number, payload: Uint8Array): void {
    if (this.first) {
      if (type !== FrameType.SETTINGS || (flags & Flag.ACK) !== 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'the first frame is not SETTINGS');
      this.first = false;
    }
    if (this.blockStream !== 0) {
      if (type !== FrameType.CONTINUATION || streamId !== this.blockStream) {
        throw connError(ErrorCode.PROTOCOL_ERROR, `expected CONTINUATION on stream ${this.blockStream}, got frame type ${type} on stream ${streamId}`);
      }
      this.continuation(flags, payload);
      return;
    }
    switch (type) {
      case FrameType.DATA:
        return this.data(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.headers(flags, streamId, payload);
      case FrameType.PRIORITY:
        if (streamId === 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (payload.byteLength !== 5) {
          this.handler.onStreamError(new Http2Error(ErrorCode.FRAME_SIZE_ERROR, 'PRIORITY length is not 5', streamId));
          return;
        }
        return this.handler.onPriority(streamId, readUint31(payload, 0));
      case FrameType.RST_STREAM:
        if (streamId === 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (payload.byteLength !== 4) throw connError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM length is not 4');
        return this.handler.onRstStream(streamId, readUint32(payload, 0));
      case FrameType.SETTINGS:
        if (streamId !== 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
        if (flags & Flag.ACK) {
          if (payload.byteLength !== 0) throw connError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
          return this.handler.onSettings(true, payload);
        }
        if (payload.byteLength % 6 !== 0) throw connError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS length is not a multiple of 6');
        return this.handler.onSettings(false, payload);
      case FrameType.PUSH_PROMISE:
        return this.pushPromise(flags, streamId, payload);
      case FrameType.PING:
        if (streamId !== 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
        if (payload.byteLength !== 8) throw connError(ErrorCode.FRAME_SIZE_ERROR, 'PING length is not 8');
        return this.handler.onPing((flags & Flag.ACK) !== 0, payload);
      case FrameType.GOAWAY:
        if (streamId !== 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
        if (payload.byteLength < 8) throw connError(ErrorCode.FRAME_SIZE_ERROR, 'GOAWAY shorter than 8 bytes');
        return this.handler.onGoaway(readUint31(payload, 0), readUint32(payload, 4), payload.subarray(8));
      case FrameType.WINDOW_UPDATE: {
        if (payload.byteLength !== 4) throw connError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE length is not 4');
        const increment = readUint31(payload, 0);
        if (increment === 0) {
          if (streamId === 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
          this.handler.onStreamError(new Http2Error(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0', streamId));
          return;
        }
        return this.handler.onWindowUpdate(streamId, increment);
      }
      case FrameType.CONTINUATION:
        throw connError(ErrorCode.PROTOCOL_ERROR, 'CONTINUATION without a header block');
      default:
        // Unknown frame types are ignored (RFC 9113 §4.1).
        return;
    }
  }

  private data(flags: number, streamId: number, payload: Uint8Array): void {
    if (streamId === 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    let body = payload;
    if (flags & Flag.PADDED) body = unpad(payload, 0);
    this.handler.onData(streamId, body, (flags & Flag.END_STREAM) !== 0, payload.byteLength);
  }

  private headers(flags: number, streamId: number, payload: Uint8Array): void {
    if (streamId === 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let fragment = payload;
    if (flags & Flag.PADDED) fragment = unpad(payload, 0);
    if (flags & Flag.PRIORITY) {
      if (fragment.byteLength < 5) throw connError(ErrorCode.FRAME_SIZE_ERROR, 'HEADERS too short for its priority fields');
      fragment = fragment.subarray(5);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) {
      this.checkBlockSize(fragment.byteLength);
      this.handler.onHeaders(streamId, fragment, endStream);
      return;
    }
    this.openBlock(streamId, fragment, endStream, -1);
  }

  private pushPromise(flags: number, streamId: number, payload: Uint8Array): void {
    if (streamId === 0) throw connError(ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE on stream 0');
    let fragment = payload;
    if (flags & Flag.PADDED) fragment = unpad(payload, 0);
    if (fragment.byteLength < 4) throw connError(ErrorCode.FRAME_SIZE_ERROR, 'PUSH_PROMISE too short');
    const promised = readUint31(fragment, 0);
    fragment = fragment.subarray(4);
    if (flags & Flag.END_HEADERS) {
      this.checkBlockSize(fragment.byteLength);
      this.handler.onPushPromise(streamId, promised, fragment);
      return;
    }
    this.openBlock(streamId, fragment, false, promised);
  }

  private openBlock(streamId: number, fragment: Uint8Array, endStream: boolean, promised: number): void {
    this.checkBlockSize(fragment.byteLength);
    this.blockStream = streamId;
    // The chunk may be reused by nobody, but a later chunk is a new array: keep a copy-free view.
    this.blockParts = [fragment];
    this.blockSize = fragment.byteLength;
    this.blockFrames = 0;
    this.blockEndStream = endStream;
    this.blockPromised = promised;
  }

  private continuation(flags: number, payload: Uint8Array): void {
    this.blockFrames++;
    this.blockSize += payload.byteLength;
    if (this.blockFrames > this.limits.maxContinuationFrames) {
      throw connError(ErrorCode.ENHANCE_YOUR_CALM, `more than ${this.limits.maxContinuationFrames} CONTINUATION frames in one header block`);
    }
    this.checkBlockSize(this.blockSize);
    if (payload.byteLength > 0) this.blockParts.push(payload);
    if (!(flags & Flag.END_HEADERS)) return;
    const streamId = this.blockStream;
    const block = concat(this.blockParts, this.blockSize);
    this.blockStream = 0;
    this.blockParts = [];
    if (this.blockPromised >= 0) this.handler.onPushPromise(streamId, this.blockPromised, block);
    else this.handler.onHeaders(streamId, block, this.blockEndStream);
  }

  private checkBlockSize(size: number): void {
    if (size > this.limits.maxHeaderBlockSize) {
      throw connError(ErrorCode.ENHANCE_YOUR_CALM, `header block over ${this.limits.maxHeaderBlockSize} bytes`);
    }
  }
}

function unpad(payload: Uint8Array, at: number): Uint8Array {
  if (payload.byteLength < 1) throw connError(ErrorCode.FRAME_SIZE_ERROR, 'padded frame without a pad length');
  const padLength = payload[at]!;
  if (padLength >= payload.byteLength) throw connError(ErrorCode.PROTOCOL_ERROR, 'padding longer than the frame');
  return payload.subarray(1, payload.byteLength - padLength);
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

export function readUint31(buf: Uint8Array, at: number): number {
  return ((buf[at]! & 0x7f) << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!;
}

export function readUint32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

/**
 * Frames appended to one growable buffer, so that everything a connection
 * produces in one turn goes out in one socket write. `take()` hands the bytes
 * over (a copy of the used part) and starts again.
 */
export class FrameWriter {
  private buf: Uint8Array;
  length = 0;

  constructor(initialSize = 16 * 1024) {
    this.buf = new Uint8Array(initialSize);
  }

  take(): Uint8Array {
    const out = this.buf.slice(0, this.length);
    this.length = 0;
    return out;
  }

  private reserve(size: number): Uint8Array {
    const need = this.length + size;
    if (need > this.buf.byteLength) {
      let capacity = this.buf.byteLength * 2;
      while (capacity < need) capacity *= 2;
      const grown = new Uint8Array(capacity);
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
    }
    return this.buf;
  }

  /** Write a frame header; the caller writes `length` payload bytes after it. Returns the payload offset. */
  header(length: number, type: number, flags: number, streamId: number): number {
    const b = this.reserve(FRAME_HEADER_SIZE + length);
    let at = this.length;
    b[at++] = length >>> 16;
    b[at++] = (length >>> 8) & 0xff;
    b[at++] = length & 0xff;
    b[at++] = type;
    b[at++] = flags;
    b[at++] = (streamId >>> 24) & 0x7f;
    b[at++] = (streamId >>> 16) & 0xff;
    b[at++] = (streamId >>> 8) & 0xff;
    b[at++] = streamId & 0xff;
    this.length = at + length;
    return at;
  }

  /** Raw bytes (the client preface). */
  raw(bytes: Uint8Array): void {
    const b = this.reserve(bytes.byteLength);
    b.set(bytes, this.length);
    this.length += bytes.byteLength;
  }

  /** The buffer the last `header()` reserved payload space in. */
  get bytes(): Uint8Array {
    return this.buf;
  }

  data(streamId: number, chunk: Uint8Array, endStream: boolean): void {
    const at = this.header(chunk.byteLength, FrameType.DATA, endStream ? Flag.END_STREAM : 0, streamId);
    this.buf.set(chunk, at);
  }

  /** DATA carrying `bytes[start, end)`: no view is made of a short range (a typed-array view costs more than a few byte copies). */
  dataRange(streamId: number, bytes: Uint8Array, start: number, end: number): void {
    const at = this.header(end - start, FrameType.DATA, 0, streamId);
    if (end - start > 64) {
      this.buf.set(bytes.subarray(start, end), at);
      return;
    }
    const buf = this.buf;
    for (let i = start, j = at; i < end; i++, j++) buf[j] = bytes[i]!;
  }

  /** A header block as HEADERS (+ CONTINUATION frames of at most `maxFrameSize`). */
  headers(streamId: number, block: Uint8Array, endStream: boolean, maxFrameSize: number): void {
    this.headerBlock(FrameType.HEADERS, streamId, block, endStream ? Flag.END_STREAM : 0, maxFrameSize);
  }

  private headerBlock(type: number, streamId: number, block: Uint8Array, flags: number, maxFrameSize: number): void {
    if (block.byteLength <= maxFrameSize) {
      const at = this.header(block.byteLength, type, flags | Flag.END_HEADERS, streamId);
      this.buf.set(block, at);
      return;
    }
    let off = 0;
    let frameType = type;
    while (off < block.byteLength) {
      const size = Math.min(maxFrameSize, block.byteLength - off);
      const last = off + size === block.byteLength;
      const at = this.header(size, frameType, (frameType === type ? flags : 0) | (last ? Flag.END_HEADERS : 0), streamId);
      this.buf.set(block.subarray(off, off + size), at);
      off += size;
      frameType = FrameType.CONTINUATION;
    }
  }

  /** SETTINGS from (id, value) pairs. */
  settings(pairs: ReadonlyArray<readonly [number, number]>): void {
    let at = this.header(pairs.length * 6, FrameType.SETTINGS, 0, 0);
    for (const [id, value] of pairs) {
      this.buf[at++] = id >>> 8;
      this.buf[at++] = id & 0xff;
      writeUint32(this.buf, at, value);
      at += 4;
    }
  }

  settingsAck(): void {
    this.header(0, FrameType.SETTINGS, Flag.ACK, 0);
  }

  ping(ack: boolean, payload: Uint8Array): void {
    const at = this.header(8, FrameType.PING, ack ? Flag.ACK : 0, 0);
    this.buf.set(payload.subarray(0, 8), at);
  }

  goaway(lastStreamId: number, code: number, debug?: Uint8Array): void {
    const at = this.header(8 + (debug?.byteLength ?? 0), FrameType.GOAWAY, 0, 0);
    writeUint32(this.buf, at, lastStreamId & 0x7fffffff);
    writeUint32(this.buf, at + 4, code);
    if (debug) this.buf.set(debug, at + 8);
  }

  windowUpdate(streamId: number, increment: number): void {
    writeUint32(this.buf, this.header(4, FrameType.WINDOW_UPDATE, 0, streamId), increment & 0x7fffffff);
  }

  rstStream(streamId: number, code: number): void {
    writeUint32(this.buf, this.header(4, FrameType.RST_STREAM, 0, streamId), code);
  }
}

function writeUint32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = (value >>> 16) & 0xff;
  buf[at + 2] = (value >>> 8) & 0xff;
  buf[at + 3] = value & 0xff;
}
