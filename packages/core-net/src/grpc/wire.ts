/*
 * The few gRPC and protobuf wire rules a proxy and a health check need, with
 * no code generation: protobuf varints and fields (encoding spec,
 * https://protobuf.dev/programming-guides/encoding/), gRPC's length-prefixed
 * messages, status codes and the grpc-timeout field (gRPC over HTTP/2,
 * PROTOCOL-HTTP2.md). Every decoder is bounded and throws only `WireError`.
 */

/** Malformed protobuf or gRPC framing: the only error the decoders throw. */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

/** Protobuf wire types that exist in proto3 (groups, 3 and 4, are refused). */
export const WireType = Object.freeze({ VARINT: 0, I64: 1, LEN: 2, I32: 5 } as const);

/** One decoded field: varints and 32-bit values as numbers, LEN and 64-bit values as bytes (little-endian for I64). */
export interface ProtobufField {
  field: number;
  wireType: 0 | 1 | 2 | 5;
  value: number | Uint8Array;
}

const MAX_VARINT_BYTES = 10;
const MAX_FIELD_NUMBER = 2 ** 29 - 1;

/** Append `value` (a non-negative safe integer) as a varint. */
export function writeVarint(out: number[], value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new WireError(`varint must be a non-negative safe integer, got ${value}`);
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

export function encodeVarint(value: number): Uint8Array {
  const out: number[] = [];
  writeVarint(out, value);
  return Uint8Array.from(out);
}

/**
 * The varint at `offset`: its value and the offset after it. Values above
 * 2^53-1 (which a number cannot hold exactly) are refused, as are varints
 * longer than 10 bytes and truncated ones.
 */
export function readVarint(bytes: Uint8Array, offset: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    const at = offset + i;
    if (at >= bytes.byteLength) throw new WireError('truncated varint');
    const byte = bytes[at]!;
    value += (byte & 0x7f) * scale;
    if (value > Number.MAX_SAFE_INTEGER) throw new WireError('varint above 2^53-1');
    if ((byte & 0x80) === 0) return { value, next: at + 1 };
    scale *= 0x80;
  }
  throw new WireError('varint longer than 10 bytes');
}

/** Every field of a message, in order. Unknown fields are returned too: the caller picks what it knows. */
export function decodeFields(bytes: Uint8Array, maxFields = 1024): ProtobufField[] {
  const fields: ProtobufField[] = [];
  let at = 0;
  while (at < bytes.byteLength) {
    if (fields.length >= maxFields) throw new WireError(`more than ${maxFields} fields`);
    const tag = readVarint(bytes, at);
    at = tag.next;
    const field = Math.floor(tag.value / 8);
    const wireType = tag.value % 8;
    if (field === 0 || field > MAX_FIELD_NUMBER) throw new WireError(`invalid field number ${field}`);
    switch (wireType) {
      case WireType.VARINT: {
        const v = readVarint(bytes, at);
        fields.push({ field, wireType, value: v.value });
        at = v.next;
        break;
      }
      case WireType.I64:
        if (at + 8 > bytes.byteLength) throw new WireError('truncated 64-bit field');
        fields.push({ field, wireType, value: bytes.subarray(at, at + 8) });
        at += 8;
        break;
      case WireType.LEN: {
        const length = readVarint(bytes, at);
        at = length.next;
        if (length.value > bytes.byteLength - at) throw new WireError(`field ${field} longer than the message`);
        fields.push({ field, wireType, value: bytes.subarray(at, at + length.value) });
        at += length.value;
        break;
      }
      case WireType.I32:
        if (at + 4 > bytes.byteLength) throw new WireError('truncated 32-bit field');
        fields.push({ field, wireType, value: (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0 });
        at += 4;
        break;
      default:
        throw new WireError(`unsupported wire type ${wireType} (field ${field})`);
    }
  }
  return fields;
}

/** A message from fields (the inverse of `decodeFields`). */
export function encodeFields(fields: readonly ProtobufField[]): Uint8Array {
  const out: number[] = [];
  for (const { field, wireType, value } of fields) {
    if (!Number.isInteger(field) || field < 1 || field > MAX_FIELD_NUMBER) throw new WireError(`invalid field number ${field}`);
    writeVarint(out, field * 8 + wireType);
    switch (wireType) {
      case WireType.VARINT:
        writeVarint(out, value as number);
        break;
      case WireType.LEN: {
        const bytes = value as Uint8Array;
        writeVarint(out, bytes.byteLength);
        for (const byte of bytes) out.push(byte);
        break;
      }
      case WireType.I64: {
        const bytes = value as Uint8Array;
        if (bytes.byteLength !== 8) throw new WireError('a 64-bit field needs 8 bytes');
        for (const byte of bytes) out.push(byte);
        break;
      }
      case WireType.I32: {
        const n = value as number;
        if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new WireError('a 32-bit field needs an unsigned 32-bit integer');
        out.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
        break;
      }
      default:
        throw new WireError(`unsupported wire type ${wireType as number}`);
    }
  }
  return Uint8Array.from(out);
}

// ---- gRPC over HTTP/2 ----

/** gRPC status codes (grpc/doc/statuscodes.md). */
export const GrpcStatus = Object.freeze({
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const);

const STATUS_NAMES = Object.keys(GrpcStatus);

/** `UNAVAILABLE` for 14; `status 99` for a code gRPC does not define. */
export function grpcStatusName(code: number): string {
  return STATUS_NAMES[code] ?? `status ${code}`;
}

/** One message with gRPC's 5-byte prefix (not compressed). */
export function encodeGrpcMessage(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.byteLength);
  new DataView(out.buffer).setUint32(1, payload.byteLength);
  out.set(payload, 5);
  return out;
}

/**
 * The messages of a complete gRPC body. Compressed messages (flag 1) are
 * refused: the caller never offered an encoding. A message over
 * `maxMessageBytes` or a truncated one is a `WireError`.
 */
export function decodeGrpcMessages(body: Uint8Array, maxMessageBytes = 4 * 1024 * 1024): Uint8Array[] {
  const messages: Uint8Array[] = [];
  let at = 0;
  while (at < body.byteLength) {
    if (body.byteLength - at < 5) throw new WireError('truncated gRPC message prefix');
    const flag = body[at]!;
    if (flag > 1) throw new WireError(`invalid gRPC message flag ${flag}`);
    if (flag === 1) throw new WireError('compressed gRPC message (no encoding was offered)');
    const length = ((body[at + 1]! << 24) | (body[at + 2]! << 16) | (body[at + 3]! << 8) | body[at + 4]!) >>> 0;
    if (length > maxMessageBytes) throw new WireError(`gRPC message of ${length} bytes (limit ${maxMessageBytes})`);
    at += 5;
    if (length > body.byteLength - at) throw new WireError('truncated gRPC message');
    messages.push(body.subarray(at, at + length));
    at += length;
  }
  return messages;
}

/** `grpc-timeout` for a deadline in milliseconds (at most 8 digits, as the spec requires). */
export function formatGrpcTimeout(ms: number): string {
  let n = Math.max(0, Math.ceil(ms));
  if (n < 1e8) return `${n}m`;
  n = Math.ceil(n / 1000);
  if (n < 1e8) return `${n}S`;
  n = Math.ceil(n / 60);
  if (n < 1e8) return `${n}M`;
  return `${Math.min(99_999_999, Math.ceil(n / 60))}H`;
}

/** `grpc-message` is percent-encoded; a malformed one is shown as sent. */
export function decodeGrpcMessageField(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Milliseconds per unit of `grpc-timeout` (H, M, S, m; u and n are below a millisecond). */
function timeoutUnitMs(unit: number): number {
  switch (unit) {
    case 72 /* H */:
      return 3_600_000;
    case 77 /* M */:
      return 60_000;
    case 83 /* S */:
      return 1000;
    case 109 /* m */:
      return 1;
    case 117 /* u */:
      return 1e-3;
    case 110 /* n */:
      return 1e-6;
    default:
      return 0;
  }
}

/**
 * `grpc-timeout` (`TimeoutValue TimeoutUnit`: 1 to 8 ASCII digits, then one
 * of H M S m u n) in whole milliseconds, rounded up so that a deadline under
 * a millisecond is not "no deadline"; undefined when malformed (the spec
 * allows at most 8 digits, so the largest is 99,999,999 hours: the caller
 * caps it by its own limits). No regular expression: it runs per request.
 */
export function parseGrpcTimeout(value: string): number | undefined {
  const n = value.length;
  if (n < 2 || n > 9) return undefined;
  const unitMs = timeoutUnitMs(value.charCodeAt(n - 1));
  if (unitMs === 0) return undefined;
  let amount = 0;
  for (let i = 0; i < n - 1; i++) {
    const digit = value.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    amount = amount * 10 + digit;
  }
  return Math.ceil(amount * unitMs);
}

/**
 * A `grpc-timeout` value for `ms` milliseconds (at least 1 ms; in seconds
 * when the milliseconds need more than the 8 digits the field allows), as a
 * proxy forwards what is left of a call's deadline.
 */
export function encodeGrpcTimeout(ms: number): string {
  const whole = Math.max(1, Math.ceil(ms));
  if (whole <= 99_999_999) return `${whole}m`;
  return `${Math.min(99_999_999, Math.ceil(whole / 1000))}S`;
}

/** `grpc-message` percent-encoded (gRPC over HTTP/2: bytes outside 0x20–0x7E and `%` are escaped). */
export function encodeGrpcMessageField(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}
