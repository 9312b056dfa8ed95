/**
 * Incremental UTF-8 validation (RFC 3629) for text messages that arrive in
 * pieces: a code point may straddle frames and TCP segments. No string is
 * built. Rejects overlongs, surrogates (U+D800..DFFF) and anything above
 * U+10FFFF, as RFC 6455 section 8.1 requires (close code 1007).
 */
export class Utf8Validator {
  /** Continuation bytes still expected for the current code point. */
  private need = 0;
  /** Bounds of the next continuation byte (narrower right after E0, ED, F0, F4). */
  private lower = 0x80;
  private upper = 0xbf;

  /** Feed bytes; false once the stream can no longer be valid UTF-8. */
  push(bytes: Uint8Array, start = 0, end = bytes.length): boolean {
    let need = this.need;
    let lower = this.lower;
    let upper = this.upper;
    for (let i = start; i < end; i++) {
      const byte = bytes[i]!;
      if (need === 0) {
        if (byte < 0x80) continue;
        if (byte >= 0xc2 && byte <= 0xdf) need = 1;
        else if (byte >= 0xe0 && byte <= 0xef) {
          need = 2;
          if (byte === 0xe0) lower = 0xa0;
          else if (byte === 0xed) upper = 0x9f;
        } else if (byte >= 0xf0 && byte <= 0xf4) {
          need = 3;
          if (byte === 0xf0) lower = 0x90;
          else if (byte === 0xf4) upper = 0x8f;
        } else return this.fail();
        continue;
      }
      if (byte < lower || byte > upper) return this.fail();
      lower = 0x80;
      upper = 0xbf;
      need--;
    }
    this.need = need;
    this.lower = lower;
    this.upper = upper;
    return true;
  }

  /** True when the bytes so far end on a code point boundary (call at the end of a message). */
  get complete(): boolean {
    return this.need === 0;
  }

  reset(): void {
    this.need = 0;
    this.lower = 0x80;
    this.upper = 0xbf;
  }

  private fail(): false {
    this.need = -1;
    this.lower = 0x100;
    return false;
  }
}

/** Whole-buffer check (close reasons). */
export function isValidUtf8(bytes: Uint8Array): boolean {
  const validator = new Utf8Validator();
  return validator.push(bytes) && validator.complete;
}
