/**
 * Streaming, strict base64 (RFC 4648 section 4) for the `base64` subprotocol
 * of websockify/noVNC: each message is one base64 text; a message's pieces
 * may split a 4-character group. Anything outside the alphabet, or padding
 * before the end, is an error (Buffer's own decoder silently skips it).
 */
const VALID = new Uint8Array(256);
for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') VALID[char.charCodeAt(0)] = 1;
const PAD = 0x3d;
const EMPTY = new Uint8Array(0);

export class Base64Decoder {
  /** Characters of an incomplete group (0..3). */
  private readonly carry = new Uint8Array(4);
  private carried = 0;
  /** '=' seen so far in this message: only more '=' (two at most) may follow. */
  private pads = 0;

  /** Decode the next piece; undefined when it is not base64. */
  push(text: Uint8Array): Uint8Array | undefined {
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (VALID[c]) {
        if (this.pads > 0) return undefined;
      } else if (c === PAD) {
        if (++this.pads > 2) return undefined;
      } else return undefined;
    }
    const total = this.carried + text.length;
    const whole = total - (total % 4);
    const joined = Buffer.allocUnsafe(total);
    joined.set(this.carry.subarray(0, this.carried), 0);
    joined.set(text, this.carried);
    this.carried = total - whole;
    this.carry.set(joined.subarray(whole, total), 0);
    return whole === 0 ? EMPTY : Buffer.from(joined.toString('latin1', 0, whole), 'base64');
  }

  /** The message ended: the bytes of an unpadded last group, or undefined when the text cannot be base64. */
  end(): Uint8Array | undefined {
    const carried = this.carried;
    const padded = this.pads > 0;
    this.carried = 0;
    this.pads = 0;
    if (carried === 0) return EMPTY;
    if (carried === 1 || padded) return undefined;
    return Buffer.from(Buffer.from(this.carry.subarray(0, carried)).toString('latin1'), 'base64');
  }
}

export function encodeBase64(bytes: Uint8Array): Uint8Array {
  return Buffer.from(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'), 'latin1');
}
