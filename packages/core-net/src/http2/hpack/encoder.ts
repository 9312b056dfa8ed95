import { DynamicTable, ENTRY_OVERHEAD, type Http2Headers } from './decoder.js';
import { huffmanEncode, huffmanLength } from './huffman.js';
import { STATIC_NAME_INDEX, STATIC_PAIR_INDEX, STATIC_TABLE_LENGTH } from './static-table.js';

/** Headers whose values are secrets: never indexed, here or by intermediaries (RFC 7541 §7.1.3). */
const SENSITIVE = new Set(['authorization', 'proxy-authorization']);
/** Short cookie crumbs are guessable by compression oracles (CRIME), so never indexed either. */
const SHORT_COOKIE = 20;
/** Values that change per message: indexing them only churns the table. */
const NOT_INDEXED = new Set([
  ':path', 'content-length', 'content-range', 'date', 'etag', 'last-modified', 'expires', 'age', 'location',
  'if-modified-since', 'if-none-match', 'if-match', 'if-range', 'if-unmodified-since', 'set-cookie', 'x-request-id',
  'grpc-timeout', 'grpc-message',
]);
const MAX_INDEXED_VALUE = 256;
const STATUS_INDEX: Record<number, number> = { 200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14 };

function hasUpper(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return true;
  }
  return false;
}

export interface HpackEncoderOptions {
  /** Most dynamic table this encoder uses, whatever the peer allows (default 4096). */
  maxTableSize?: number;
  /** Huffman-code strings when it saves bytes (default true). */
  huffman?: boolean;
}

/**
 * HPACK encoder (RFC 7541). Exact static matches are one byte; other fields
 * go into the dynamic table unless their values are per-message or secret;
 * `authorization`, `proxy-authorization` and short cookies are never indexed.
 * The peer's SETTINGS_HEADER_TABLE_SIZE is applied with `setPeerMaxTableSize`
 * and announced with a size update at the start of the next block.
 */
export class HpackEncoder {
  private readonly table: DynamicTable;
  private readonly ownMax: number;
  private readonly huffman: boolean;
  /** name → value → insertion id of the live dynamic entry. */
  private readonly live = new Map<string, Map<string, number>>();
  private pendingUpdates: number[] = [];
  private buf = new Uint8Array(4096);
  private at = 0;
  private readonly onEvict = (name: string, value: string, id: number): void => {
    const values = this.live.get(name);
    if (values?.get(value) === id) {
      values.delete(value);
      if (values.size === 0) this.live.delete(name);
    }
  };

  constructor(options: HpackEncoderOptions = {}) {
    this.ownMax = options.maxTableSize ?? 4096;
    this.huffman = options.huffman ?? true;
    // The peer's decoder starts at 4096 (the protocol default) until told otherwise.
    this.table = new DynamicTable(Math.min(this.ownMax, 4096));
    if (this.table.maxSize !== 4096) this.pendingUpdates.push(this.table.maxSize);
  }

  setPeerMaxTableSize(size: number): void {
    this.cachedHeaders = undefined;
    const next = Math.min(size, this.ownMax);
    if (next === this.table.maxSize && this.pendingUpdates.length === 0) return;
    // The smallest size in between must be announced too (RFC 7541 §4.2).
    const smallest = Math.min(next, ...this.pendingUpdates, this.table.maxSize);
    this.pendingUpdates = smallest < next ? [smallest, next] : [next];
    this.table.resize(smallest, this.onEvict);
    this.table.resize(next, this.onEvict);
  }

  /**
   * Encode a flat header list. The returned view is valid until the next
   * call. `neverIndex` names extra sensitive fields.
   */
  encode(headers: Http2Headers, neverIndex?: ReadonlySet<string>): Uint8Array {
    this.begin();
    for (let i = 0; i < headers.length; i += 2) this.field(headers[i]!, headers[i + 1]!, neverIndex);
    return this.finish();
  }

  /** Start a block field by field: `begin()`, `status()`/`field()`..., `finish()`. */
  begin(): void {
    this.at = 0;
    for (const size of this.pendingUpdates) this.integer(0x20, 5, size);
    this.pendingUpdates.length = 0;
  }

  /** `:status`, one byte for the seven codes in the static table. */
  status(code: number): void {
    const index = STATUS_INDEX[code];
    if (index !== undefined) {
      this.integer(0x80, 7, index);
      return;
    }
    // Literal without indexing, name :status (8); three ASCII digits.
    this.reserve(5);
    const text = String(code);
    this.buf[this.at++] = 0x08;
    this.buf[this.at++] = text.length;
    for (let i = 0; i < text.length; i++) this.buf[this.at++] = text.charCodeAt(i);
  }

  // A one-entry cache of the last response head: a server answering many
  // requests with the same header list (the same array) reuses its bytes while
  // the dynamic table has not changed.
  private cachedHeaders: Http2Headers | undefined;
  private cachedStatus = 0;
  private cachedInserted = -1;
  private cachedBlock: Uint8Array | undefined;

  /**
   * A response head (`:status` then `headers`). The same `headers` array
   * passed again (unchanged: callers must not mutate a list they reuse) costs
   * no encoding once its fields are in the table.
   */
  encodeResponse(status: number, headers: Http2Headers): Uint8Array {
    const inserted = this.table.inserted;
    const clean = this.pendingUpdates.length === 0;
    if (clean && headers === this.cachedHeaders && status === this.cachedStatus && inserted === this.cachedInserted) {
      return this.cachedBlock!;
    }
    this.begin();
    this.status(status);
    for (let i = 0; i < headers.length; i += 2) this.field(headers[i]!, headers[i + 1]!);
    const block = this.finish();
    if (clean && this.table.inserted === inserted) {
      // Encoding changed nothing in the table: the same list gives the same bytes next time.
      this.cachedHeaders = headers;
      this.cachedStatus = status;
      this.cachedInserted = inserted;
      this.cachedBlock = block.slice();
    } else {
      this.cachedHeaders = undefined;
    }
    return block;
  }

  /** The block so far; valid until the next `begin()`. */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.at);
  }

  field(name: string, value: string, neverIndex?: ReadonlySet<string>): void {
    if (hasUpper(name)) name = name.toLowerCase();
    const staticPair = STATIC_PAIR_INDEX.get(name)?.get(value);
    if (staticPair !== undefined) {
      this.integer(0x80, 7, staticPair);
      return;
    }
    const sensitive =
      SENSITIVE.has(name) || (name === 'cookie' && value.length < SHORT_COOKIE) || (neverIndex !== undefined && neverIndex.has(name));
    if (!sensitive) {
      const id = this.live.get(name)?.get(value);
      if (id !== undefined) {
        this.integer(0x80, 7, STATIC_TABLE_LENGTH + this.table.inserted - id + 1);
        return;
      }
    }
    const nameIndex = this.nameIndex(name);
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (sensitive) {
      this.integer(0x10, 4, nameIndex);
    } else if (!NOT_INDEXED.has(name) && value.length <= MAX_INDEXED_VALUE && entrySize <= this.table.maxSize) {
      this.integer(0x40, 6, nameIndex);
      if (nameIndex === 0) this.string(name);
      this.string(value);
      this.table.add(name, value, this.onEvict);
      let values = this.live.get(name);
      if (!values) this.live.set(name, (values = new Map()));
      values.set(value, this.table.inserted);
      return;
    } else {
      this.integer(0x00, 4, nameIndex);
      if (nameIndex !== 0 && value.length >= 8 && value.length <= 1024 && NOT_INDEXED.has(name)) {
        this.repeatedLiteral(name, value);
        return;
      }
    }
    if (nameIndex === 0) this.string(name);
    this.string(value);
  }

  // The last encoded value of each NOT_INDEXED name (at most one per name of that fixed set):
  // `date` is the same on every response within its second, and Huffman coding it each time costs.
  private readonly literals = new Map<string, { value: string; bytes: Uint8Array }>();

  private repeatedLiteral(name: string, value: string): void {
    const kept = this.literals.get(name);
    if (kept !== undefined && kept.value === value) {
      const bytes = kept.bytes;
      this.reserve(bytes.byteLength);
      this.buf.set(bytes, this.at);
      this.at += bytes.byteLength;
      return;
    }
    const start = this.at;
    this.string(value);
    const bytes = this.buf.slice(start, this.at);
    if (kept !== undefined) {
      kept.value = value;
      kept.bytes = bytes;
    } else {
      this.literals.set(name, { value, bytes });
    }
  }

  private nameIndex(name: string): number {
    const fixed = STATIC_NAME_INDEX.get(name);
    if (fixed !== undefined) return fixed;
    const values = this.live.get(name);
    if (values) {
      for (const id of values.values()) return STATIC_TABLE_LENGTH + this.table.inserted - id + 1;
    }
    return 0;
  }

  private reserve(size: number): void {
    if (this.at + size <= this.buf.byteLength) return;
    let capacity = this.buf.byteLength * 2;
    while (capacity < this.at + size) capacity *= 2;
    const grown = new Uint8Array(capacity);
    grown.set(this.buf.subarray(0, this.at));
    this.buf = grown;
  }

  private integer(pattern: number, prefixBits: number, value: number): void {
    this.reserve(6);
    const max = (1 << prefixBits) - 1;
    const buf = this.buf;
    if (value < max) {
      buf[this.at++] = pattern | value;
      return;
    }
    buf[this.at++] = pattern | max;
    value -= max;
    while (value >= 128) {
      buf[this.at++] = (value % 128) | 0x80;
      value = Math.floor(value / 128);
    }
    buf[this.at++] = value;
  }

  private string(text: string): void {
    const length = text.length;
    const coded = this.huffman && length > 0 ? huffmanLength(text) : length;
    if (coded < length) {
      this.integer(0x80, 7, coded);
      this.reserve(coded);
      this.at = huffmanEncode(text, this.buf, this.at);
      return;
    }
    this.integer(0x00, 7, length);
    this.reserve(length);
    const buf = this.buf;
    let at = this.at;
    for (let i = 0; i < length; i++) {
      const code = text.charCodeAt(i);
      if (code > 0xff) throw new TypeError(`header ${JSON.stringify(text.slice(0, 40))} has a character outside latin1`);
      buf[at++] = code;
    }
    this.at = at;
  }
}
