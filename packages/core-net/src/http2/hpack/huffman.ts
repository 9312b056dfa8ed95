/**
 * RFC 7541 Appendix B: the Huffman code, as (code, bit length) per symbol
 * 0..255. EOS (symbol 256) is 30 one-bits: 0x3fffffff.
 */
// prettier-ignore
const CODES = [
  0x1ff8,13, 0x7fffd8,23, 0xfffffe2,28, 0xfffffe3,28, 0xfffffe4,28, 0xfffffe5,28, 0xfffffe6,28, 0xfffffe7,28,
  0xfffffe8,28, 0xffffea,24, 0x3ffffffc,30, 0xfffffe9,28, 0xfffffea,28, 0x3ffffffd,30, 0xfffffeb,28, 0xfffffec,28,
  0xfffffed,28, 0xfffffee,28, 0xfffffef,28, 0xffffff0,28, 0xffffff1,28, 0xffffff2,28, 0x3ffffffe,30, 0xffffff3,28,
  0xffffff4,28, 0xffffff5,28, 0xffffff6,28, 0xffffff7,28, 0xffffff8,28, 0xffffff9,28, 0xffffffa,28, 0xffffffb,28,
  0x14,6, 0x3f8,10, 0x3f9,10, 0xffa,12, 0x1ff9,13, 0x15,6, 0xf8,8, 0x7fa,11,
  0x3fa,10, 0x3fb,10, 0xf9,8, 0x7fb,11, 0xfa,8, 0x16,6, 0x17,6, 0x18,6,
  0x0,5, 0x1,5, 0x2,5, 0x19,6, 0x1a,6, 0x1b,6, 0x1c,6, 0x1d,6,
  0x1e,6, 0x1f,6, 0x5c,7, 0xfb,8, 0x7ffc,15, 0x20,6, 0xffb,12, 0x3fc,10,
  0x1ffa,13, 0x21,6, 0x5d,7, 0x5e,7, 0x5f,7, 0x60,7, 0x61,7, 0x62,7,
  0x63,7, 0x64,7, 0x65,7, 0x66,7, 0x67,7, 0x68,7, 0x69,7, 0x6a,7,
  0x6b,7, 0x6c,7, 0x6d,7, 0x6e,7, 0x6f,7, 0x70,7, 0x71,7, 0x72,7,
  0xfc,8, 0x73,7, 0xfd,8, 0x1ffb,13, 0x7fff0,19, 0x1ffc,13, 0x3ffc,14, 0x22,6,
  0x7ffd,15, 0x3,5, 0x23,6, 0x4,5, 0x24,6, 0x5,5, 0x25,6, 0x26,6,
  0x27,6, 0x6,5, 0x74,7, 0x75,7, 0x28,6, 0x29,6, 0x2a,6, 0x7,5,
  0x2b,6, 0x76,7, 0x2c,6, 0x8,5, 0x9,5, 0x2d,6, 0x77,7, 0x78,7,
  0x79,7, 0x7a,7, 0x7b,7, 0x7ffe,15, 0x7fc,11, 0x3ffd,14, 0x1ffd,13, 0xffffffc,28,
  0xfffe6,20, 0x3fffd2,22, 0xfffe7,20, 0xfffe8,20, 0x3fffd3,22, 0x3fffd4,22, 0x3fffd5,22, 0x7fffd9,23,
  0x3fffd6,22, 0x7fffda,23, 0x7fffdb,23, 0x7fffdc,23, 0x7fffdd,23, 0x7fffde,23, 0xffffeb,24, 0x7fffdf,23,
  0xffffec,24, 0xffffed,24, 0x3fffd7,22, 0x7fffe0,23, 0xffffee,24, 0x7fffe1,23, 0x7fffe2,23, 0x7fffe3,23,
  0x7fffe4,23, 0x1fffdc,21, 0x3fffd8,22, 0x7fffe5,23, 0x3fffd9,22, 0x7fffe6,23, 0x7fffe7,23, 0xffffef,24,
  0x3fffda,22, 0x1fffdd,21, 0xfffe9,20, 0x3fffdb,22, 0x3fffdc,22, 0x7fffe8,23, 0x7fffe9,23, 0x1fffde,21,
  0x7fffea,23, 0x3fffdd,22, 0x3fffde,22, 0xfffff0,24, 0x1fffdf,21, 0x3fffdf,22, 0x7fffeb,23, 0x7fffec,23,
  0x1fffe0,21, 0x1fffe1,21, 0x3fffe0,22, 0x1fffe2,21, 0x7fffed,23, 0x3fffe1,22, 0x7fffee,23, 0x7fffef,23,
  0xfffea,20, 0x3fffe2,22, 0x3fffe3,22, 0x3fffe4,22, 0x7ffff0,23, 0x3fffe5,22, 0x3fffe6,22, 0x7ffff1,23,
  0x3ffffe0,26, 0x3ffffe1,26, 0xfffeb,20, 0x7fff1,19, 0x3fffe7,22, 0x7ffff2,23, 0x3fffe8,22, 0x1ffffec,25,
  0x3ffffe2,26, 0x3ffffe3,26, 0x3ffffe4,26, 0x7ffffde,27, 0x7ffffdf,27, 0x3ffffe5,26, 0xfffff1,24, 0x1ffffed,25,
  0x7fff2,19, 0x1fffe3,21, 0x3ffffe6,26, 0x7ffffe0,27, 0x7ffffe1,27, 0x3ffffe7,26, 0x7ffffe2,27, 0xfffff2,24,
  0x1fffe4,21, 0x1fffe5,21, 0x3ffffe8,26, 0x3ffffe9,26, 0xffffffd,28, 0x7ffffe3,27, 0x7ffffe4,27, 0x7ffffe5,27,
  0xfffec,20, 0xfffff3,24, 0xfffed,20, 0x1fffe6,21, 0x3fffe9,22, 0x1fffe7,21, 0x1fffe8,21, 0x7ffff3,23,
  0x3fffea,22, 0x3fffeb,22, 0x1ffffee,25, 0x1ffffef,25, 0xfffff4,24, 0xfffff5,24, 0x3ffffea,26, 0x7ffff4,23,
  0x3ffffeb,26, 0x7ffffe6,27, 0x3ffffec,26, 0x3ffffed,26, 0x7ffffe7,27, 0x7ffffe8,27, 0x7ffffe9,27, 0x7ffffea,27,
  0x7ffffeb,27, 0xffffffe,28, 0x7ffffec,27, 0x7ffffed,27, 0x7ffffee,27, 0x7ffffef,27, 0x7fffff0,27, 0x3ffffee,26,
];

export const EOS_LENGTH = 30;

const codeOf = new Uint32Array(256);
const lengthOf = new Uint8Array(256);
for (let sym = 0; sym < 256; sym++) {
  codeOf[sym] = CODES[sym * 2]!;
  lengthOf[sym] = CODES[sym * 2 + 1]!;
}

/*
 * Decoding walks a 4-bit-at-a-time state machine built once from the code:
 * states are the internal nodes of the code tree; for each state and nibble
 * the table gives the next state and at most one emitted symbol (every code is
 * at least 5 bits long). A string may end only at the root or on the all-ones
 * path less than 8 bits deep (RFC 7541 §5.2 padding).
 */
const NO_SYMBOL = 0xffff;
const FAIL = 0xfffe;
let nodeCount = 1;
const children: number[][] = [[-1, -1]];
const leafOf: number[] = [-1];
function addCode(code: number, length: number, sym: number): void {
  let node = 0;
  for (let bit = length - 1; bit >= 0; bit--) {
    const b = Math.floor(code / 2 ** bit) & 1;
    let next = children[node]![b]!;
    if (next === -1) {
      next = nodeCount++;
      children.push([-1, -1]);
      leafOf.push(-1);
      children[node]![b] = next;
    }
    node = next;
  }
  leafOf[node] = sym;
}
for (let sym = 0; sym < 256; sym++) addCode(codeOf[sym]!, lengthOf[sym]!, sym);
addCode(0x3fffffff, EOS_LENGTH, 256);

// Number the internal nodes densely.
const stateOf = new Int32Array(nodeCount).fill(-1);
const internal: number[] = [];
for (let node = 0; node < nodeCount; node++) {
  if (leafOf[node] === -1) {
    stateOf[node] = internal.length;
    internal.push(node);
  }
}
const stateCount = internal.length;
const nextState = new Uint16Array(stateCount * 16);
const emitted = new Uint16Array(stateCount * 16);
/** 1 where a string may end in this state. */
const accepting = new Uint8Array(stateCount);
{
  // Depth and all-ones-ness of each internal node, by walking the tree.
  const depth = new Int32Array(nodeCount);
  const ones = new Uint8Array(nodeCount);
  ones[0] = 1;
  const stack = [0];
  while (stack.length > 0) {
    const node = stack.pop()!;
    for (let b = 0; b < 2; b++) {
      const child = children[node]![b]!;
      if (child < 0) continue;
      depth[child] = depth[node]! + 1;
      ones[child] = ones[node]! && b === 1 ? 1 : 0;
      if (leafOf[child] === -1) stack.push(child);
    }
  }
  for (let s = 0; s < stateCount; s++) {
    const start = internal[s]!;
    accepting[s] = start === 0 || (ones[start] === 1 && depth[start]! < 8) ? 1 : 0;
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = start;
      let sym = NO_SYMBOL;
      for (let bit = 3; bit >= 0; bit--) {
        node = children[node]![(nibble >> bit) & 1]!;
        const leaf = leafOf[node]!;
        if (leaf !== -1) {
          sym = leaf === 256 ? FAIL : leaf;
          node = 0;
          if (leaf === 256) break;
        }
      }
      nextState[s * 16 + nibble] = stateOf[node]!;
      emitted[s * 16 + nibble] = sym;
    }
  }
}

/**
 * Decode `src` into `out` (which must hold at least `src.length * 8 / 5`
 * bytes). Returns the decoded length, or -1 for an invalid string (EOS in the
 * data, or padding that is not a short run of one-bits).
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let state = 0;
  let n = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    let at = state * 16 + (byte >> 4);
    let sym = emitted[at]!;
    if (sym !== NO_SYMBOL) {
      if (sym === FAIL) return -1;
      out[n++] = sym;
    }
    state = nextState[at]!;
    at = state * 16 + (byte & 0xf);
    sym = emitted[at]!;
    if (sym !== NO_SYMBOL) {
      if (sym === FAIL) return -1;
      out[n++] = sym;
    }
    state = nextState[at]!;
  }
  return accepting[state] === 1 ? n : -1;
}

/** Bytes the Huffman form of a latin1 string takes. */
export function huffmanLength(text: string): number {
  let bits = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff) throw new TypeError(`header ${JSON.stringify(text.slice(0, 40))} has a character outside latin1`);
    bits += lengthOf[code]!;
  }
  return (bits + 7) >>> 3;
}

/** Huffman-encode a latin1 string into `out` at `at`; returns the new offset. */
export function huffmanEncode(text: string, out: Uint8Array, at: number): number {
  // Up to 7 pending bits plus a 30-bit code fit in a double's 53-bit mantissa.
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < text.length; i++) {
    const sym = text.charCodeAt(i) & 0xff;
    const len = lengthOf[sym]!;
    acc = acc * 2 ** len + codeOf[sym]!;
    bits += len;
    while (bits >= 8) {
      bits -= 8;
      const scale = 2 ** bits;
      const byte = Math.floor(acc / scale);
      out[at++] = byte;
      acc -= byte * scale;
    }
  }
  // Pad with the most significant bits of EOS (ones).
  if (bits > 0) out[at++] = (acc << (8 - bits)) | (0xff >> bits);
  return at;
}
