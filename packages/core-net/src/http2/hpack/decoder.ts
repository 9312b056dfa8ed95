import { ErrorCode, Http2Error } from '../constants.js';
import { huffmanDecode } from './huffman.js';
import { STATIC_TABLE, STATIC_TABLE_LENGTH } from './static-table.js';

/** RFC 7541 §4.1: an entry's size is its name and value lengths plus 32. */
export const ENTRY_OVERHEAD = 32;

/** Flat header list: name, value, name, value, ... (latin1 strings, names lowercase). */
export type Http2Headers = string[];

function compressionError(message: string): Http2Error {
  return new Http2Error(ErrorCode.COMPRESSION_ERROR, message, 0);
}

/**
 * The dynamic table of one direction (RFC 7541 §2.3.2, §4): a ring of
 * entries, newest first, evicted from the oldest as size demands.
 */
export class DynamicTable {
  private names: string[];
  private values: string[];
  private head = 0;
  count = 0;
  size = 0;
  /** Total entries ever inserted: the encoder's stable ids are derived from it. */
  inserted = 0;

  constructor(public maxSize: number) {
    const capacity = Math.max(1, Math.floor(maxSize / ENTRY_OVERHEAD) + 1);
    this.names = new Array<string>(capacity);
    this.values = new Array<string>(capacity);
  }

  /** 1-based index among dynamic entries (1 = newest). */
  name(index: number): string {
    return this.names[(this.head + index - 1) % this.names.length]!;
  }
  value(index: number): string {
    return this.values[(this.head + index - 1) % this.names.length]!;
  }

  add(name: string, value: string, onEvict?: (name: string, value: string, id: number) => void): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    this.evictTo(this.maxSize - entrySize, onEvict);
    this.inserted++;
    // An entry larger than the table empties it and is not added (§4.4).
    if (entrySize > this.maxSize) return;
    if (this.count === this.names.length) this.grow();
    this.head = (this.head - 1 + this.names.length) % this.names.length;
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.count++;
    this.size += entrySize;
  }

  resize(maxSize: number, onEvict?: (name: string, value: string, id: number) => void): void {
    this.maxSize = maxSize;
    this.evictTo(maxSize, onEvict);
  }

  private evictTo(limit: number, onEvict?: (name: string, value: string, id: number) => void): void {
    while (this.count > 0 && this.size > limit) {
      const at = (this.head + this.count - 1) % this.names.length;
      const name = this.names[at]!;
      const value = this.values[at]!;
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
      // The oldest live entry's id: inserted - count + 1.
      onEvict?.(name, value, this.inserted - this.count + 1);
      this.names[at] = '';
      this.values[at] = '';
      this.count--;
    }
  }

  private grow(): void {
    const capacity = this.names.length * 2;
    const names = new Array<string>(capacity);
    const values = new Array<string>(capacity);
    for (let i = 0; i < this.count; i++) {
      names[i] = this.name(i + 1);
      values[i] = this.value(i + 1);
    }
    this.names = names;
    this.values = values;
    this.head = 0;
  }
}

export interface HpackDecoderOptions {
  /** Our SETTINGS_HEADER_TABLE_SIZE: the most a peer's size update may ask for (default 4096). */
  maxTableSize?: number;
  /** Our SETTINGS_MAX_HEADER_LIST_SIZE (default 64 KiB): a longer decoded list is flagged, not kept. */
  maxHeaderListSize?: number;
}

/** What one decoded header block held. */
export interface DecodeResult {
  /** Decoded size per RFC 7541 (names + values + 32 per field). */
  listSize: number;
  /** The list exceeded maxHeaderListSize: `out` was emptied. */
  tooLarge: boolean;
}

const scratchSize = 16 * 1024;

/**
 * HPACK decoder (RFC 7541). Fields go into a flat array as latin1 strings;
 * static-table hits cost no allocation. A decoded list over the limit is
 * still decoded to the end (the dynamic table must stay in step with the
 * peer's encoder) but its fields are dropped: an HPACK bomb (a small block
 * referencing a big entry many times) costs lookups, not memory. Errors are
 * COMPRESSION_ERROR connection errors.
 */
export class HpackDecoder {
  readonly table: DynamicTable;
  private readonly settingsMaxTableSize: number;
  maxHeaderListSize: number;
  private scratch = new Uint8Array(scratchSize);

  constructor(options: HpackDecoderOptions = {}) {
    this.settingsMaxTableSize = options.maxTableSize ?? 4096;
    this.maxHeaderListSize = options.maxHeaderListSize ?? 64 * 1024;
    this.table = new DynamicTable(this.settingsMaxTableSize);
  }

  decode(block: Uint8Array, out: Http2Headers): DecodeResult {
    const limit = this.maxHeaderListSize;
    let listSize = 0;
    let tooLarge = false;
    let at = 0;
    const end = block.byteLength;
    let fieldSeen = false;
    while (at < end) {
      const first = block[at]!;
      let name: string;
      let value: string;
      if (first & 0x80) {
        // Indexed field (§6.1).
        const index = this.integer(block, at, 7);
        at = this.next;
        if (index === 0) throw compressionError('indexed field with index 0');
        if (index <= STATIC_TABLE_LENGTH) {
          const entry = STATIC_TABLE[index]!;
          name = entry[0];
          value = entry[1];
        } else {
          const dyn = index - STATIC_TABLE_LENGTH;
          if (dyn > this.table.count) throw compressionError(`index ${index} beyond the tables`);
          name = this.table.name(dyn);
          value = this.table.value(dyn);
        }
      } else if ((first & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3): only before the first field.
        if (fieldSeen) throw compressionError('dynamic table size update after a field');
        const size = this.integer(block, at, 5);
        at = this.next;
        if (size > this.settingsMaxTableSize) throw compressionError(`table size update ${size} above ${this.settingsMaxTableSize}`);
        this.table.resize(size);
        continue;
      } else {
        // Literal: with incremental indexing (01), without (0000) or never indexed (0001).
        const indexing = (first & 0x40) !== 0;
        const index = this.integer(block, at, indexing ? 6 : 4);
        at = this.next;
        if (index === 0) {
          name = this.string(block, at, limit);
          at = this.next;
        } else if (index <= STATIC_TABLE_LENGTH) {
          name = STATIC_TABLE[index]![0];
        } else {
          const dyn = index - STATIC_TABLE_LENGTH;
          if (dyn > this.table.count) throw compressionError(`name index ${index} beyond the tables`);
          name = this.table.name(dyn);
        }
        value = this.string(block, at, limit);
        at = this.next;
        if (indexing) this.table.add(name, value);
      }
      fieldSeen = true;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (tooLarge) continue;
      if (listSize > limit) {
        // The block will be refused: drop what it held so far too.
        tooLarge = true;
        out.length = 0;
        continue;
      }
      out.push(name, value);
    }
    return { listSize, tooLarge };
  }

  /** Offset after the last integer or string read (saves allocating a pair). */
  private next = 0;

  private integer(buf: Uint8Array, at: number, prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = buf[at]! & max;
    at++;
    if (value < max) {
      this.next = at;
      return value;
    }
    let shift = 0;
    for (;;) {
      if (at >= buf.byteLength) throw compressionError('truncated integer');
      const byte = buf[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if ((byte & 0x80) === 0) break;
      // No legitimate length, index or size needs more than 4 continuation bytes (2^28).
      if (shift >= 28) throw compressionError('integer overflow');
    }
    if (value > 0x7fffffff) throw compressionError('integer overflow');
    this.next = at;
    return value;
  }

  private string(buf: Uint8Array, at: number, limit: number): string {
    const huffman = (buf[at]! & 0x80) !== 0;
    const length = this.integer(buf, at, 7);
    at = this.next;
    if (length > buf.byteLength - at) throw compressionError('string runs past the header block');
    if (length > limit) throw compressionError(`string of ${length} bytes over the header list limit`);
    const end = at + length;
    this.next = end;
    if (!huffman) return latin1(buf, at, end);
    // Each Huffman code is at least 5 bits: at most 8/5 bytes out per byte in.
    const need = Math.ceil((length * 8) / 5);
    if (need > this.scratch.byteLength) this.scratch = new Uint8Array(need);
    const n = huffmanDecode(buf, at, end, this.scratch);
    if (n < 0) throw compressionError('invalid Huffman string');
    return latin1(this.scratch, 0, n);
  }
}

/** Bytes as a latin1 string: short ones char by char, longer ones in one call. */
export function latin1(buf: Uint8Array, start: number, end: number): string {
  const length = end - start;
  if (length <= 16) {
    let text = '';
    for (let i = start; i < end; i++) text += String.fromCharCode(buf[i]!);
    return text;
  }
  if (length <= 8192) return String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
  let text = '';
  for (let i = start; i < end; i += 8192) {
    text += String.fromCharCode.apply(null, buf.subarray(i, Math.min(end, i + 8192)) as unknown as number[]);
  }
  return text;
}
