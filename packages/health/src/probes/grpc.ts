import {
  decodeFields,
  decodeGrpcMessageField,
  decodeGrpcMessages,
  encodeFields,
  encodeGrpcMessage,
  formatGrpcTimeout,
  GrpcStatus,
  grpcStatusName,
  Http2ClientPool,
  WireError,
  WireType,
  type Http2FetchResponse,
  type Http2Headers,
  type Transport,
} from '@wmproxy/core-net';
import type { ResolvedGrpcCheck } from '../target.js';
import type { ProbeResult } from '../types.js';
import { connectFailureReason, failure, success } from './result.js';

/** grpc.health.v1 (health.proto). */
export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
/** HealthCheckResponse.ServingStatus. */
export const ServingStatus = Object.freeze({ UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const);
const SERVING_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

/** A health answer is a handful of bytes; anything much larger is not one. */
const MAX_RESPONSE_BYTES = 64 * 1024;
const USER_AGENT = 'wmproxy-health/0.1';
const te = new TextEncoder();
const td = new TextDecoder('utf-8', { fatal: false });

/** HealthCheckRequest { string service = 1; }, framed for gRPC. The empty service is the empty message (proto3). */
export function encodeHealthCheckRequest(service: string): Uint8Array {
  const message = service === '' ? new Uint8Array(0) : encodeFields([{ field: 1, wireType: WireType.LEN, value: te.encode(service) }]);
  return encodeGrpcMessage(message);
}

/** HealthCheckRequest's service, from one message (the test servers' side). Throws `WireError`. */
export function decodeHealthCheckRequest(message: Uint8Array): string {
  let service = '';
  for (const field of decodeFields(message)) {
    if (field.field !== 1) continue;
    if (field.wireType !== WireType.LEN) throw new WireError('HealthCheckRequest.service is not length-delimited');
    service = td.decode(field.value as Uint8Array);
  }
  return service;
}

/**
 * HealthCheckResponse { ServingStatus status = 1; } from one message: the
 * last `status` wins (protobuf merge rules), absent means UNKNOWN, unknown
 * fields are skipped. Throws `WireError` on malformed input.
 */
export function decodeHealthCheckResponse(message: Uint8Array): number {
  let status: number = ServingStatus.UNKNOWN;
  for (const field of decodeFields(message)) {
    if (field.field !== 1) continue;
    if (field.wireType !== WireType.VARINT) throw new WireError('HealthCheckResponse.status is not a varint');
    status = field.value as number;
  }
  return status;
}

/** HealthCheckResponse { status } framed (the test servers' side). */
export function encodeHealthCheckResponse(status: number): Uint8Array {
  return status === 0 ? new Uint8Array(0) : encodeFields([{ field: 1, wireType: WireType.VARINT, value: status }]);
}

export function servingStatusName(status: number): string {
  return SERVING_NAMES[status] ?? `status ${status}`;
}

function header(list: Http2Headers | undefined, name: string): string | undefined {
  if (!list) return undefined;
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}

/**
 * gRPC probe: one `grpc.health.v1.Health/Check` call on a fresh HTTP/2
 * connection (h2c, or TLS with ALPN h2 for `grpcs`), bounded by the timeout
 * as a whole (`grpc-timeout` tells the server too). SERVING passes; every
 * other answer fails with a reason that says which.
 */
export async function probeGrpc(host: string, port: number, check: ResolvedGrpcCheck, timeoutMs: number, transport?: Transport): Promise<ProbeResult> {
  const at = Date.now();
  const started = performance.now();
  const pool = new Http2ClientPool({
    host,
    port,
    authority: check.authority,
    ...(check.type === 'grpcs' ? { tls: { servername: check.servername, rejectUnauthorized: check.tlsVerify, ...(check.ca ? { ca: check.ca } : {}) } } : {}),
    ...(transport ? { transport } : {}),
    maxConnections: 1,
    connectTimeoutMs: timeoutMs,
    idleTimeoutMs: 0,
    pingIntervalMs: 0,
    maxPending: 1,
  });
  let response: Http2FetchResponse;
  try {
    response = await pool.fetch(
      {
        method: 'POST',
        path: HEALTH_CHECK_PATH,
        headers: ['content-type', 'application/grpc', 'te', 'trailers', 'grpc-timeout', formatGrpcTimeout(timeoutMs), 'user-agent', USER_AGENT],
      },
      { body: encodeHealthCheckRequest(check.service), deadlineMs: timeoutMs, maxBytes: MAX_RESPONSE_BYTES },
    );
  } catch (error) {
    return failure(at, started, connectFailureReason(error, timeoutMs));
  } finally {
    pool.destroy();
  }
  return judge(at, started, check, response);
}

function judge(at: number, started: number, check: ResolvedGrpcCheck, response: Http2FetchResponse): ProbeResult {
  if (response.status !== 200) return failure(at, started, `HTTP status ${response.status} (not a gRPC answer)`, response.status);
  const contentType = header(response.headers, 'content-type') ?? '';
  if (!/^application\/grpc(?:[+;]|$)/.test(contentType)) return failure(at, started, `content-type ${JSON.stringify(contentType)} is not application/grpc`);
  // A trailers-only answer carries grpc-status in the head.
  const rawStatus = header(response.trailers, 'grpc-status') ?? header(response.headers, 'grpc-status');
  if (rawStatus === undefined) return failure(at, started, 'no grpc-status in the answer');
  const code = /^\d{1,3}$/.test(rawStatus) ? Number(rawStatus) : -1;
  if (code !== GrpcStatus.OK) {
    const detail = header(response.trailers, 'grpc-message') ?? header(response.headers, 'grpc-message');
    const message = detail ? `: ${decodeGrpcMessageField(detail).slice(0, 200)}` : '';
    const name = code < 0 ? `grpc-status ${JSON.stringify(rawStatus.slice(0, 20))}` : `grpc-status ${code} ${grpcStatusName(code)}`;
    if (code === GrpcStatus.NOT_FOUND) return failure(at, started, `service ${JSON.stringify(check.service)} unknown (${name}${message})`);
    if (code === GrpcStatus.UNIMPLEMENTED) return failure(at, started, `no health service (${name}${message})`);
    return failure(at, started, `${name}${message}`);
  }
  let status: number;
  try {
    const messages = decodeGrpcMessages(response.body, MAX_RESPONSE_BYTES);
    if (messages.length !== 1) return failure(at, started, `expected one HealthCheckResponse, got ${messages.length}`);
    status = decodeHealthCheckResponse(messages[0]!);
  } catch (error) {
    if (error instanceof WireError) return failure(at, started, `malformed HealthCheckResponse: ${error.message}`);
    throw error;
  }
  if (status === ServingStatus.SERVING) return success(at, started, 'SERVING');
  if (status === ServingStatus.SERVICE_UNKNOWN) return failure(at, started, `service ${JSON.stringify(check.service)} unknown (SERVICE_UNKNOWN)`);
  return failure(at, started, servingStatusName(status));
}
