import { GrpcStatus, encodeGrpcMessageField, getHeader, parseGrpcTimeout, type HeaderList, type RequestHead, type ResponseHead } from '@wmproxy/core-net';

/*
 * What the proxy knows of gRPC (gRPC over HTTP/2, PROTOCOL-HTTP2.md): which
 * requests are calls, their deadline (`grpc-timeout`), and how a failure of
 * the proxy itself is told to a gRPC client: HTTP 200 with a trailers-only
 * answer carrying `grpc-status` and `grpc-message` (as Envoy does), since a
 * gRPC client reads no error page.
 */

/** A gRPC call: `content-type: application/grpc` (or `+proto`, `;...`), gRPC-Web excluded (it is HTTP/1-compatible). */
export function isGrpcRequest(head: RequestHead): boolean {
  const type = getHeader(head.headers, 'content-type');
  return type !== undefined && type.startsWith('application/grpc') && !type.startsWith('application/grpc-web');
}

/** The call's deadline in ms from its `grpc-timeout` (undefined: none or malformed, which is ignored as grpc-go does). */
export function grpcTimeoutMs(head: RequestHead): number | undefined {
  const value = getHeader(head.headers, 'grpc-timeout');
  return value === undefined ? undefined : parseGrpcTimeout(value);
}

/**
 * The gRPC status of an answer the proxy gives itself with this HTTP status
 * (the mapping of gRPC's http-grpc-status-mapping.md, with the proxy's own
 * timeouts as DEADLINE_EXCEEDED).
 */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 408:
    case 504:
      return GrpcStatus.DEADLINE_EXCEEDED;
    case 413:
    case 431:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case 429:
    case 502:
    case 503:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/**
 * What a client is told when the proxy ends a call (the reason, which names
 * upstream addresses and internal errors, goes to the log only, as an HTTP
 * client gets a bare error page).
 */
export function grpcPublicMessage(code: number): string {
  switch (code) {
    case GrpcStatus.UNAVAILABLE:
      return 'upstream unavailable';
    case GrpcStatus.DEADLINE_EXCEEDED:
      return 'deadline exceeded';
    case GrpcStatus.UNIMPLEMENTED:
      return 'no route for this call';
    case GrpcStatus.UNAUTHENTICATED:
      return 'unauthenticated';
    case GrpcStatus.PERMISSION_DENIED:
      return 'permission denied';
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return 'request too large';
    default:
      return 'proxy error';
  }
}

/** `grpc-status` and `grpc-message` fields. */
export function grpcStatusFields(code: number, message: string): HeaderList {
  return [
    ['grpc-status', String(code)],
    ['grpc-message', encodeGrpcMessageField(message)],
  ];
}

/** A trailers-only answer (no body) whose grpc-status is UNAVAILABLE: the server did not take the call, another may. */
export function isUnavailableAnswer(head: ResponseHead): boolean {
  return head.contentLength === 0 && getHeader(head.headers, 'grpc-status') === '14';
}
