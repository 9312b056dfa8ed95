import { COLON, CR, FIELD_VALUE, HEX, HTAB, LF, SP, TOKEN } from './chars.js';
import { parseFieldLine, type HeaderList } from './head.js';

/** Receives decoded body bytes. The piece is a view into the input chunk, valid only during the call. */
export interface ChunkSink {
  onChunkData(piece: Uint8Array): void;
}

export interface ChunkedLimits {
  /** Most bytes of chunk extensions on one chunk-size line (default 4 KiB). */
  maxExtensionSize?: number;
  /** Most bytes of trailer fields in total (default 16 KiB). */
  maxTrailerSize?: number;
  /** Largest single chunk (default 2^48 bytes: only an overflow guard). */
  maxChunkSize?: number;
}

const enum State {
  SizeStart,
  Size,
  SizeWs,
  ExtBeforeName,
  ExtName,
  ExtAfterName,
  ExtBeforeValue,
  ExtValue,
  ExtQuoted,
  ExtQuotedEscape,
  /** Just after a quoted value's closing quote. */
  ExtAfterQuoted,
  /** Whitespace after a value: only `;` may follow (no BWS before CRLF). */
  ExtAfterValue,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  Trailer,
  Done,
  Error,
}

/** Where a trailer line is: its start (an empty line ends the trailers), the name, the value, or after its CR. */
const enum TrailerPhase {
  LineStart,
  Name,
  Value,
  Lf,
}

const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Incremental, strict decoder of the chunked transfer coding (RFC 9112
 * section 7.1). Feed it bytes as they arrive with `push`; it hands each piece
 * of body data to the sink as a view of the input (no copy), validates the
 * framing byte by byte and stops at the end of the message.
 *
 * Rejected: a size that is not plain hex (no `0x`, no sign, no whitespace
 * before it), more than 16 hex digits or over `maxChunkSize`; whitespace after
 * the size not followed by an extension; malformed extensions (`;name[=token|"quoted"]`,
 * with BWS only where RFC 9112's ABNF has it: around `;` and `=`, never before the CRLF);
 * anything but CRLF after the size line and after each chunk's data (lone LF,
 * bare CR); malformed or oversized trailer fields.
 *
 * Because the framing is fully validated, a proxy may forward the consumed
 * bytes unchanged (`chunk.subarray(0, consumed)`) instead of re-encoding.
 */
export class ChunkedDecoder {
  /** The terminating chunk and trailers have been read. */
  done = false;
  /** Why decoding failed (then `push` returns -1). */
  error: string | undefined;
  /** Trailer fields, in order. */
  readonly trailers: HeaderList = [];
  /** Body bytes decoded so far. */
  bodyBytes = 0;
  private state = State.SizeStart;
  private size = 0;
  private digits = 0;
  private extensionBytes = 0;
  private remaining = 0;
  private trailerBytes = 0;
  private trailerLine: number[] = [];
  private trailerPhase = TrailerPhase.LineStart;
  private readonly maxExtensionSize: number;
  private readonly maxTrailerSize: number;
  private readonly maxChunkSize: number;

  constructor(limits: ChunkedLimits = {}) {
    this.maxExtensionSize = limits.maxExtensionSize ?? 4096;
    this.maxTrailerSize = limits.maxTrailerSize ?? 16 * 1024;
    this.maxChunkSize = limits.maxChunkSize ?? 2 ** 48;
  }

  /**
   * Decode `chunk`. Returns how many bytes belong to this message: all of
   * them until the end is reached, then the offset just after the final CRLF
   * (the rest is the next message). Returns -1 on a framing error (see `error`).
   */
  push(chunk: Uint8Array, sink?: ChunkSink): number {
    const len = chunk.length;
    let i = 0;
    let state = this.state;
    while (i < len) {
      const c = chunk[i]!;
      switch (state) {
        case State.SizeStart:
        case State.Size: {
          const hex = HEX[c]!;
          if (hex !== 0) {
            if (++this.digits > 16) return this.fail('chunk size has too many digits');
            this.size = this.size * 16 + (hex - 1);
            if (this.size > this.maxChunkSize) return this.fail('chunk too large');
            state = State.Size;
          } else if (state === State.SizeStart) {
            return this.fail('invalid chunk size');
          } else if (c === CR) state = State.SizeLf;
          else if (c === SEMICOLON) state = State.ExtBeforeName;
          else if (c === SP || c === HTAB) state = State.SizeWs;
          else return this.fail('invalid chunk size');
          i++;
          break;
        }
        case State.SizeWs:
          if (c === SEMICOLON) state = State.ExtBeforeName;
          else if (c !== SP && c !== HTAB) return this.fail('whitespace after chunk size');
          i++;
          break;
        case State.SizeLf:
          if (c !== LF) return this.fail('chunk size line not ended by CRLF');
          i++;
          this.digits = 0;
          this.extensionBytes = 0;
          if (this.size === 0) {
            state = State.Trailer;
          } else {
            this.remaining = this.size;
            this.size = 0;
            state = State.Data;
          }
          break;
        case State.Data: {
          const take = Math.min(this.remaining, len - i);
          if (sink) sink.onChunkData(i === 0 && take === len ? chunk : chunk.subarray(i, i + take));
          this.bodyBytes += take;
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) state = State.DataCr;
          break;
        }
        case State.DataCr:
          if (c !== CR) return this.fail('chunk data not followed by CRLF');
          state = State.DataLf;
          i++;
          break;
        case State.DataLf:
          if (c !== LF) return this.fail('chunk data not followed by CRLF');
          state = State.SizeStart;
          i++;
          break;
        case State.Trailer: {
          // Every trailer byte is checked as it comes: a caller forwards what push() consumed
          // at once, so a bare CR or NUL must not pass while the line is still open.
          if (++this.trailerBytes > this.maxTrailerSize) return this.fail('trailers too large');
          const phase = this.trailerPhase;
          i++;
          if (phase === TrailerPhase.Lf) {
            if (c !== LF) return this.fail('trailer line not ended by CRLF');
            const line = this.trailerLine;
            this.trailerLine = [];
            this.trailerPhase = TrailerPhase.LineStart;
            if (line.length === 0) {
              this.state = State.Done;
              this.done = true;
              return i;
            }
            const reason = parseFieldLine(Buffer.from(line), 0, line.length, this.trailers);
            if (reason !== undefined) return this.fail(`invalid trailer: ${reason}`);
            break;
          }
          if (c === CR && phase !== TrailerPhase.Name) {
            this.trailerPhase = TrailerPhase.Lf;
            break;
          }
          if (phase === TrailerPhase.LineStart) {
            if (TOKEN[c] !== 1) return this.fail(c === SP || c === HTAB ? 'invalid trailer: obsolete line folding' : 'invalid trailer: invalid field name');
            this.trailerPhase = TrailerPhase.Name;
          } else if (phase === TrailerPhase.Name) {
            if (c === COLON) this.trailerPhase = TrailerPhase.Value;
            else if (TOKEN[c] !== 1) return this.fail('invalid trailer: invalid field name');
          } else if (FIELD_VALUE[c] !== 1) {
            return this.fail('invalid trailer: invalid character in field value');
          }
          this.trailerLine.push(c);
          break;
        }
        case State.Done:
          this.state = state;
          return i;
        case State.Error:
          return -1;
        default:
          state = this.extension(state, c);
          if (state === State.Error) return -1;
          if (++this.extensionBytes > this.maxExtensionSize) return this.fail('chunk extensions too large');
          i++;
      }
    }
    this.state = state;
    return len;
  }

  private extension(state: State, c: number): State {
    switch (state) {
      case State.ExtBeforeName:
        if (c === SP || c === HTAB) return state;
        if (TOKEN[c] === 1) return State.ExtName;
        break;
      case State.ExtName:
        if (TOKEN[c] === 1) return state;
        if (c === SP || c === HTAB) return State.ExtAfterName;
        if (c === EQUALS) return State.ExtBeforeValue;
        if (c === SEMICOLON) return State.ExtBeforeName;
        if (c === CR) return State.SizeLf;
        break;
      case State.ExtAfterName:
        // Whitespace after a name must lead to `=` or `;`, not to the line end.
        if (c === SP || c === HTAB) return state;
        if (c === EQUALS) return State.ExtBeforeValue;
        if (c === SEMICOLON) return State.ExtBeforeName;
        break;
      case State.ExtBeforeValue:
        if (c === SP || c === HTAB) return state;
        if (c === DQUOTE) return State.ExtQuoted;
        if (TOKEN[c] === 1) return State.ExtValue;
        break;
      case State.ExtValue:
        if (TOKEN[c] === 1) return state;
        if (c === SP || c === HTAB) return State.ExtAfterValue;
        if (c === SEMICOLON) return State.ExtBeforeName;
        if (c === CR) return State.SizeLf;
        break;
      case State.ExtQuoted:
        if (c === DQUOTE) return State.ExtAfterQuoted;
        if (c === BACKSLASH) return State.ExtQuotedEscape;
        if (FIELD_VALUE[c] === 1) return state;
        break;
      case State.ExtQuotedEscape:
        if (FIELD_VALUE[c] === 1) return State.ExtQuoted;
        break;
      case State.ExtAfterQuoted:
        if (c === SP || c === HTAB) return State.ExtAfterValue;
        if (c === SEMICOLON) return State.ExtBeforeName;
        if (c === CR) return State.SizeLf;
        break;
      case State.ExtAfterValue:
        // Whitespace after a value must lead to another extension, not to the line end.
        if (c === SP || c === HTAB) return state;
        if (c === SEMICOLON) return State.ExtBeforeName;
        break;
      default:
    }
    this.fail('invalid chunk extension');
    return State.Error;
  }

  private fail(reason: string): -1 {
    this.state = State.Error;
    this.error = reason;
    return -1;
  }
}

const CRLF_BYTES = new Uint8Array([CR, LF]);
const LAST_CHUNK_BYTES = new Uint8Array([0x30, CR, LF, CR, LF]);

/** CRLF, to write after a chunk's data when sending header, data and CRLF separately. */
export function chunkTrailerCrlf(): Uint8Array {
  return CRLF_BYTES;
}

/** `size-in-hex CRLF`: the line that starts a chunk of `size` bytes (size > 0). */
export function chunkHeader(size: number): Uint8Array {
  return Buffer.from(`${size.toString(16)}\r\n`, 'latin1');
}

/** One chunk (header, data, CRLF) in a single buffer. Empty data gives an empty result (an empty chunk would end the body). */
export function encodeChunk(data: Uint8Array): Uint8Array {
  if (data.length === 0) return new Uint8Array(0);
  const header = data.length.toString(16);
  const out = Buffer.allocUnsafe(header.length + 2 + data.length + 2);
  out.write(header, 0, 'latin1');
  out[header.length] = CR;
  out[header.length + 1] = LF;
  out.set(data, header.length + 2);
  out[out.length - 2] = CR;
  out[out.length - 1] = LF;
  return out;
}

/** The last chunk: `0 CRLF`, optional trailer fields, `CRLF`. */
export function encodeLastChunk(trailers?: HeaderList): Uint8Array {
  if (!trailers || trailers.length === 0) return LAST_CHUNK_BYTES;
  let text = '0\r\n';
  for (const [name, value] of trailers) text += `${name}: ${value}\r\n`;
  return Buffer.from(text + '\r\n', 'latin1');
}
