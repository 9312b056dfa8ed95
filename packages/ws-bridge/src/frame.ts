import { randomFillSync } from 'node:crypto';
import { hostRuntime } from '@wmproxy/core-net';
import { Utf8Validator, isValidUtf8 } from './utf8.js';

/**
 * RFC 6455 framing: an incremental parser with hard limits and an encoder.
 *
 * The parser never buffers a data frame: payload bytes are unmasked in place
 * (the chunk belongs to the handler, see core-net's ConnHandler), moved down
 * over the frame headers before them in the same chunk, and handed on as
 * views, so a bridge streams a 1 GiB message in constant memory. Only
 * control frames (at most 125 bytes) and a split frame header (at most 14
 * bytes) are ever held. No extension is negotiated, so any RSV bit is an error.
 */

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;
export type DataOpcode = typeof OP_TEXT | typeof OP_BINARY;
export type ControlOpcode = typeof OP_CLOSE | typeof OP_PING | typeof OP_PONG;

/** Close codes (RFC 6455 section 7.4.1). */
export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_UNSUPPORTED_DATA = 1003;
/** Never sent: "no status code was present". */
export const CLOSE_NO_STATUS = 1005;
/** Never sent: the connection dropped without a close frame. */
export const CLOSE_ABNORMAL = 1006;
export const CLOSE_INVALID_DATA = 1007;
export const CLOSE_POLICY = 1008;
export const CLOSE_TOO_BIG = 1009;
export const CLOSE_INTERNAL_ERROR = 1011;

/**
 * Where parsed frames go. Views passed to `messageData` and `control` are the sink's to keep.
 * The data pieces of one `push` are views of its chunk that follow one another with no gap
 * (payload is moved down over the headers between frames), so a sink may join adjacent ones.
 */
export interface FrameSink {
  /** The first frame of a data message arrived (its payload follows through `messageData`). */
  messageStart(opcode: DataOpcode): void;
  /** Unmasked payload bytes of the current message, in order, possibly in many pieces. */
  messageData(bytes: Uint8Array): void;
  /** The final frame of the message ended. */
  messageEnd(): void;
  /** A complete control frame (close payloads are not checked here: see `parseClosePayload`). */
  control(opcode: ControlOpcode, payload: Uint8Array): void;
}

export interface FrameParserOptions {
  /** `server`: frames must be masked (from a client); `client`: frames must not be. */
  role: 'server' | 'client';
  /** Largest message (all its fragments together) in bytes; over it the result is 1009. */
  maxMessageSize: number;
  /** Check text messages are UTF-8 (1007 otherwise). Default true. */
  validateUtf8?: boolean;
}

const enum State {
  Header,
  Payload,
  Failed,
}

const EMPTY = new Uint8Array(0);

/**
 * `push(chunk)` returns 0 while all is well, or the close code to fail the
 * connection with (`reason` says why, for the close frame and the log line).
 * After a non-zero result the parser stays failed.
 */
export class FrameParser {
  /** Why the last push failed. */
  reason = '';
  private readonly sink: FrameSink;
  private readonly expectMasked: boolean;
  private readonly maxMessageSize: number;
  private readonly validateUtf8: boolean;
  private state = State.Header;
  private readonly header = new Uint8Array(14);
  private headerHave = 0;
  // The frame being read.
  private opcode = 0;
  private fin = false;
  private masked = false;
  private remaining = 0;
  private readonly maskKey = new Uint8Array(4);
  private maskOffset = 0;
  // Control frame payload (<= 125 bytes) being gathered.
  private control: Uint8Array = EMPTY;
  private controlHave = 0;
  // The data message in progress (0: none).
  private messageOpcode = 0;
  private messageSize = 0;
  private readonly utf8 = new Utf8Validator();
  private halted = false;

  constructor(sink: FrameSink, options: FrameParserOptions) {
    this.sink = sink;
    this.expectMasked = options.role === 'server';
    this.maxMessageSize = options.maxMessageSize;
    this.validateUtf8 = options.validateUtf8 ?? true;
  }

  /** Stop delivering (the owner failed or closed the connection from a sink callback). */
  halt(): void {
    this.halted = true;
  }

  get failed(): boolean {
    return this.state === State.Failed;
  }

  push(chunk: Uint8Array): number {
    let offset = 0;
    const length = chunk.length;
    // Where this chunk's next data payload piece goes: right after the previous one (-1: none yet).
    // Moving payload down over the frame headers (and control frames) between pieces makes one
    // read's payload one contiguous view, so a bridge writes it in one syscall, not one per frame.
    let cursor = -1;
    while (offset < length && !this.halted) {
      if (this.state === State.Header) {
        const result = this.readHeader(chunk, offset);
        if (result < 0) return this.failCode;
        offset = result;
        continue;
      }
      if (this.state === State.Failed) return this.failCode;
      // Payload.
      const take = Math.min(this.remaining, length - offset);
      this.remaining -= take;
      if (this.opcode >= OP_CLOSE) {
        const piece = chunk.subarray(offset, offset + take);
        if (this.masked) this.maskOffset = unmask(piece, this.maskKey, this.maskOffset);
        this.control.set(piece, this.controlHave);
        this.controlHave += take;
      } else if (take > 0) {
        // Only bytes after every piece already handed out are overwritten: those stay intact.
        const at = cursor < 0 ? offset : cursor;
        if (at !== offset) chunk.copyWithin(at, offset, offset + take);
        cursor = at + take;
        const piece = chunk.subarray(at, cursor);
        if (this.masked) this.maskOffset = unmask(piece, this.maskKey, this.maskOffset);
        if (this.messageOpcode === OP_TEXT && this.validateUtf8 && !this.utf8.push(piece)) return this.fail(1007, 'invalid UTF-8 in a text message');
        this.sink.messageData(piece);
      }
      offset += take;
      if (this.remaining === 0) {
        const code = this.frameDone();
        if (code !== 0) return code;
      }
    }
    return this.state === State.Failed ? this.failCode : 0;
  }

  private failCode = 0;
  private fail(code: number, reason: string): number {
    this.state = State.Failed;
    this.failCode = code;
    this.reason = reason;
    return code;
  }

  /** Gather and check a frame header; returns the new offset, or -1 on failure. */
  private readHeader(chunk: Uint8Array, offset: number): number {
    const header = this.header;
    let have = this.headerHave;
    // Copy only as much as the header needs (its length is known after byte 2).
    while (have < 2 && offset < chunk.length) header[have++] = chunk[offset++]!;
    if (have < 2) {
      this.headerHave = have;
      return offset;
    }
    const b0 = header[0]!;
    const b1 = header[1]!;
    const len7 = b1 & 0x7f;
    const masked = (b1 & 0x80) !== 0;
    const needed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    while (have < needed && offset < chunk.length) header[have++] = chunk[offset++]!;
    this.headerHave = have;
    if (have < needed) {
      // Checks that need only the first two bytes fail early, before the rest arrives.
      return this.checkFirstBytes(b0, b1) ? offset : -1;
    }
    this.headerHave = 0;
    if (!this.checkFirstBytes(b0, b1)) return -1;
    let payloadLength = len7;
    let at = 2;
    if (len7 === 126) {
      payloadLength = (header[2]! << 8) | header[3]!;
      at = 4;
    } else if (len7 === 127) {
      const high = ((header[2]! << 24) | (header[3]! << 16) | (header[4]! << 8) | header[5]!) >>> 0;
      const low = ((header[6]! << 24) | (header[7]! << 16) | (header[8]! << 8) | header[9]!) >>> 0;
      if (high & 0x80000000) return this.fail(1002, 'payload length with the most significant bit set'), -1;
      // Above 2^53 is beyond any limit anyway.
      payloadLength = high >= 0x200000 ? Number.MAX_SAFE_INTEGER : high * 0x1_0000_0000 + low;
      at = 10;
    }
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    if (opcode >= OP_CLOSE) {
      if (payloadLength > 125) return this.fail(1002, 'control frame payload over 125 bytes'), -1;
    } else {
      const size = (opcode === OP_CONTINUATION ? this.messageSize : 0) + payloadLength;
      if (size > this.maxMessageSize) return this.fail(1009, `message over ${this.maxMessageSize} bytes`), -1;
    }
    if (masked) {
      this.maskKey[0] = header[at]!;
      this.maskKey[1] = header[at + 1]!;
      this.maskKey[2] = header[at + 2]!;
      this.maskKey[3] = header[at + 3]!;
    }
    this.masked = masked;
    this.maskOffset = 0;
    this.opcode = opcode;
    this.fin = fin;
    this.remaining = payloadLength;
    if (opcode >= OP_CLOSE) {
      this.control = payloadLength === 0 ? EMPTY : new Uint8Array(payloadLength);
      this.controlHave = 0;
    } else if (opcode === OP_CONTINUATION) {
      this.messageSize += payloadLength;
    } else {
      this.messageOpcode = opcode;
      this.messageSize = payloadLength;
      this.utf8.reset();
      this.sink.messageStart(opcode as DataOpcode);
    }
    this.state = State.Payload;
    if (payloadLength === 0) {
      const code = this.frameDone();
      if (code !== 0) return -1;
    }
    return offset;
  }

  /** Checks on the first two header bytes alone; false after recording the failure. */
  private checkFirstBytes(b0: number, b1: number): boolean {
    if ((b0 & 0x70) !== 0) return this.fail(1002, 'reserved bits set without a negotiated extension'), false;
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    const masked = (b1 & 0x80) !== 0;
    if (masked !== this.expectMasked) {
      return this.fail(1002, this.expectMasked ? 'unmasked frame from a client' : 'masked frame from a server'), false;
    }
    if (opcode >= OP_CLOSE) {
      if (opcode > OP_PONG) return this.fail(1002, `reserved opcode ${opcode}`), false;
      if (!fin) return this.fail(1002, 'fragmented control frame'), false;
      if ((b1 & 0x7f) > 125) return this.fail(1002, 'control frame payload over 125 bytes'), false;
      return true;
    }
    if (opcode > OP_BINARY) return this.fail(1002, `reserved opcode ${opcode}`), false;
    if (opcode === OP_CONTINUATION) {
      if (this.messageOpcode === 0) return this.fail(1002, 'continuation frame without a message'), false;
    } else if (this.messageOpcode !== 0) return this.fail(1002, 'new message before the previous one ended'), false;
    return true;
  }

  /** The current frame's payload is complete. */
  private frameDone(): number {
    this.state = State.Header;
    const opcode = this.opcode;
    if (opcode >= OP_CLOSE) {
      const payload = this.control;
      this.control = EMPTY;
      this.sink.control(opcode as ControlOpcode, payload);
      return 0;
    }
    if (!this.fin) return 0;
    if (this.messageOpcode === OP_TEXT && this.validateUtf8 && !this.utf8.complete) return this.fail(1007, 'text message ends inside a UTF-8 sequence');
    this.messageOpcode = 0;
    this.messageSize = 0;
    this.sink.messageEnd();
    return 0;
  }
}

/**
 * XOR `bytes` in place with the 4-byte key starting at key position
 * `offset`; returns the key position after the last byte.
 */
export function unmask(bytes: Uint8Array, key: Uint8Array, offset: number): number {
  if (bytes.length >= WASM_MIN && useWasm) return unmaskWasm(bytes, key, offset);
  return unmaskJs(bytes, key, offset);
}

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** Word-at-a-time over the 4-byte-aligned middle of the view. */
export function unmaskJs(bytes: Uint8Array, key: Uint8Array, offset: number): number {
  const length = bytes.length;
  let i = 0;
  if (length < 64) {
    // Small payloads: the word path's two typed-array views cost more than they save.
    for (; i < length; i++) bytes[i] = bytes[i]! ^ key[(offset + i) & 3]!;
    return (offset + length) & 3;
  }
  // Head: until the view is 4-byte aligned in its buffer.
  const misalign = (4 - ((bytes.byteOffset) & 3)) & 3;
  const head = Math.min(misalign, length);
  for (; i < head; i++) bytes[i] = bytes[i]! ^ key[(offset + i) & 3]!;
  const words = (length - i) >>> 2;
  if (words > 0) {
    const k = (offset + i) & 3;
    // The key as it lines up with the aligned words, in the platform's byte order (as the view reads them).
    const b0 = key[k]!, b1 = key[(k + 1) & 3]!, b2 = key[(k + 2) & 3]!, b3 = key[(k + 3) & 3]!;
    const keyWord = LITTLE_ENDIAN ? b0 | (b1 << 8) | (b2 << 16) | (b3 << 24) : (b0 << 24) | (b1 << 16) | (b2 << 8) | b3;
    const view = new Uint32Array(bytes.buffer, bytes.byteOffset + i, words);
    // Four words a turn: about 1.5x the one-word loop on JavaScriptCore (fewer loop checks).
    const quads = words & ~3;
    let w = 0;
    for (; w < quads; w += 4) {
      view[w] = view[w]! ^ keyWord;
      view[w + 1] = view[w + 1]! ^ keyWord;
      view[w + 2] = view[w + 2]! ^ keyWord;
      view[w + 3] = view[w + 3]! ^ keyWord;
    }
    for (; w < words; w++) view[w] = view[w]! ^ keyWord;
    i += words << 2;
  }
  for (; i < length; i++) bytes[i] = bytes[i]! ^ key[(offset + i) & 3]!;
  return (offset + length) & 3;
}

/**
 * 16 bytes at a time in WebAssembly SIMD: the view is copied into the
 * module's memory (64 KiB blocks), XORed there and copied back. On V8 (Node)
 * that is about 5x the JS word loop for a 64 KiB payload; on JavaScriptCore
 * (Bun) the JS loop is faster (the copies cost more there), so Bun keeps it.
 * `into` (same length as `bytes`): write the result there instead, leaving
 * `bytes` as it was (masking a copy costs no extra pass).
 */
export function unmaskWasm(bytes: Uint8Array, key: Uint8Array, offset: number, into: Uint8Array = bytes): number {
  if (wasmXor === undefined) {
    if (into !== bytes) into.set(bytes);
    return unmaskJs(into, key, offset);
  }
  const length = bytes.length;
  const k = offset & 3;
  // Little-endian, as WebAssembly memory is.
  const word = key[k]! | (key[(k + 1) & 3]! << 8) | (key[(k + 2) & 3]! << 16) | (key[(k + 3) & 3]! << 24);
  const memory = wasmMemory!;
  for (let i = 0; i < length; i += WASM_BLOCK) {
    const n = Math.min(WASM_BLOCK, length - i);
    memory.set(bytes.subarray(i, i + n), 0);
    // Whole 16-byte lanes: the bytes past `n` are scratch, never copied back. A block is a
    // multiple of 4 bytes, so the key phase is the same at every block's start.
    wasmXor(0, (n + 15) & ~15, word);
    into.set(n === WASM_BLOCK ? memory : memory.subarray(0, n), i);
  }
  return (offset + length) & 3;
}

const WASM_BLOCK = 64 * 1024;
/** Below this the copies in and out cost more than the JS loop saves. */
const WASM_MIN = 512;

/**
 * (func (export "xor") (param $at i32) (param $len i32) (param $key i32)): XOR `len` bytes
 * (a multiple of 16) at `at` with the key word splatted to 128 bits; one 64 KiB page.
 * Hand-assembled: 75 bytes, no toolchain.
 */
const XOR_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type: (i32 i32 i32) -> ()
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x05, 0x03, 0x01, 0x00, 0x01, // memory: 1 page
  0x07, 0x0d, 0x02, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, 0x03, 0x78, 0x6f, 0x72, 0x00, 0x00, // exports mem, xor
  0x0a, 0x37, 0x01, 0x35, // code: one body of 53 bytes
  0x01, 0x01, 0x7b, // one v128 local ($k)
  0x20, 0x02, 0xfd, 0x11, 0x21, 0x03, // $k = i32x4.splat($key)
  0x02, 0x40, 0x03, 0x40, // block loop
  0x20, 0x01, 0x45, 0x0d, 0x01, // br_if out: $len == 0
  0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x00, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x00, // v128.store($at, v128.load($at) ^ $k)
  0x20, 0x00, 0x41, 0x10, 0x6a, 0x21, 0x00, // $at += 16
  0x20, 0x01, 0x41, 0x10, 0x6b, 0x21, 0x01, // $len -= 16
  0x0c, 0x00, 0x0b, 0x0b, 0x0b, // br loop; end end end
]);

let wasmXor: ((at: number, length: number, key: number) => void) | undefined;
let wasmMemory: Uint8Array | undefined;
try {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(XOR_MODULE));
  wasmXor = instance.exports.xor as typeof wasmXor;
  wasmMemory = new Uint8Array((instance.exports.mem as WebAssembly.Memory).buffer);
} catch {
  // No WebAssembly SIMD: the JS loop does it all.
}
/** Whether `unmask` takes the WebAssembly path for large views (Node; measured, see `unmaskWasm`). */
export const unmaskUsesWasm = hostRuntime === 'node' && wasmXor !== undefined;
const useWasm = unmaskUsesWasm;

// Mask keys come from a pool refilled 4 KiB at a time: one CSPRNG call per 1024 frames.
const keyPool = new Uint8Array(4096);
let keyPoolAt = keyPool.length;

/**
 * One frame as bytes: header and payload in one buffer (one `Conn.write`).
 * `masked` (a client's frames) picks a fresh random key and masks a copy;
 * the caller's payload is never modified.
 */
export function encodeFrame(opcode: number, payload: Uint8Array, fin = true, masked = false): Uint8Array {
  const length = payload.length;
  const at = headerSize(length);
  const headerLength = at + (masked ? 4 : 0);
  const frame = new Uint8Array(headerLength + length);
  writeHeader(frame, opcode, length, fin);
  if (!masked) {
    frame.set(payload, headerLength);
    return frame;
  }
  frame[1] |= 0x80;
  const key = nextMaskKey();
  frame.set(key, at);
  if (length >= WASM_MIN && useWasm) {
    unmaskWasm(payload, key, 0, frame.subarray(headerLength));
  } else {
    frame.set(payload, headerLength);
    unmaskJs(frame.subarray(headerLength), key, 0);
  }
  return frame;
}

/**
 * The header alone of an unmasked frame, for sending a large payload
 * without copying it (the header and the payload as two writes).
 */
export function frameHeader(opcode: number, length: number, fin = true): Uint8Array {
  const header = new Uint8Array(headerSize(length));
  writeHeader(header, opcode, length, fin);
  return header;
}

/** A fresh masking key (RFC 6455 5.3), a view of a random pool refilled 1024 keys at a time. */
function nextMaskKey(): Uint8Array {
  if (keyPoolAt + 4 > keyPool.length) {
    randomFillSync(keyPool);
    keyPoolAt = 0;
  }
  const key = keyPool.subarray(keyPoolAt, keyPoolAt + 4);
  keyPoolAt += 4;
  return key;
}

/**
 * A frame around `payload` with no copy: its header written into the
 * `headroom` bytes before it in its buffer (the caller's to overwrite);
 * undefined when they are too few. `masked` (a client's frame): the header
 * carries a fresh key and the payload is masked in place, so it must be the
 * caller's too (a chunk a Conn handed out is).
 */
export function frameInHeadroom(opcode: number, payload: Uint8Array, headroom: number, masked = false): Uint8Array | undefined {
  const at = headerSize(payload.length);
  const size = at + (masked ? 4 : 0);
  if (headroom < size || payload.byteOffset < size) return undefined;
  const frame = new Uint8Array(payload.buffer, payload.byteOffset - size, size + payload.length);
  writeHeader(frame, opcode, payload.length, true);
  if (masked) {
    frame[1] |= 0x80;
    const key = nextMaskKey();
    frame.set(key, at);
    unmask(payload, key, 0);
  }
  return frame;
}

function headerSize(length: number): number {
  return length < 126 ? 2 : length < 0x10000 ? 4 : 10;
}

/** FIN, opcode and the payload length in its shortest form (RFC 6455 5.2), at the start of `frame`. */
function writeHeader(frame: Uint8Array, opcode: number, length: number, fin: boolean): void {
  frame[0] = (fin ? 0x80 : 0) | opcode;
  if (length < 126) {
    frame[1] = length;
  } else if (length < 0x10000) {
    frame[1] = 126;
    frame[2] = length >>> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 127;
    const high = Math.floor(length / 0x1_0000_0000);
    frame[2] = high >>> 24;
    frame[3] = (high >>> 16) & 0xff;
    frame[4] = (high >>> 8) & 0xff;
    frame[5] = high & 0xff;
    frame[6] = length >>> 24;
    frame[7] = (length >>> 16) & 0xff;
    frame[8] = (length >>> 8) & 0xff;
    frame[9] = length & 0xff;
  }
}

/** A close frame's payload: the code (2 bytes) and a UTF-8 reason cut to fit 125 bytes. */
export function closePayload(code: number, reason = ''): Uint8Array {
  let text = Buffer.from(reason, 'utf8');
  if (text.length > 123) text = text.subarray(0, lastBoundary(text, 123));
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  return payload;
}

function lastBoundary(bytes: Uint8Array, max: number): number {
  let end = max;
  // Step back over continuation bytes so a code point is never cut.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return end;
}

/** Codes an endpoint may send in a close frame (RFC 6455 7.4, IANA registry, 3000-4999 for applications). */
export function isSendableCloseCode(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006;
}

export type ParsedClose = { ok: true; code: number; reason: string } | { ok: false; failCode: number; why: string };

/** Check a received close payload: none (1005), or a valid code and a UTF-8 reason. */
export function parseClosePayload(payload: Uint8Array): ParsedClose {
  if (payload.length === 0) return { ok: true, code: CLOSE_NO_STATUS, reason: '' };
  if (payload.length === 1) return { ok: false, failCode: 1002, why: 'close payload of one byte' };
  const code = (payload[0]! << 8) | payload[1]!;
  if (!isSendableCloseCode(code)) return { ok: false, failCode: 1002, why: `invalid close code ${code}` };
  const reasonBytes = payload.subarray(2);
  if (!isValidUtf8(reasonBytes)) return { ok: false, failCode: 1007, why: 'close reason is not UTF-8' };
  return { ok: true, code, reason: Buffer.from(reasonBytes).toString('utf8') };
}
