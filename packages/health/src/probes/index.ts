import type { Transport } from '@wmproxy/core-net';
import type { ResolvedCheck } from '../target.js';
import type { ProbeResult } from '../types.js';
import { probeHttp } from './http.js';
import { probeTcp } from './tcp.js';
import { probeGrpc } from './grpc.js';

export { probeHttp, buildRequest, MAX_HEAD_BYTES } from './http.js';
export { probeTcp } from './tcp.js';
export {
  probeGrpc,
  encodeHealthCheckRequest,
  decodeHealthCheckRequest,
  encodeHealthCheckResponse,
  decodeHealthCheckResponse,
  servingStatusName,
  ServingStatus,
  HEALTH_CHECK_PATH,
} from './grpc.js';

/** Run one probe of `check` against host:port (through `transport` when given); never throws. */
export function runProbe(host: string, port: number, check: ResolvedCheck, timeoutMs: number, transport?: Transport): Promise<ProbeResult> {
  switch (check.type) {
    case 'tcp':
      return probeTcp(host, port, check, timeoutMs, transport);
    case 'grpc':
    case 'grpcs':
      return probeGrpc(host, port, check, timeoutMs, transport);
    default:
      return probeHttp(host, port, check, timeoutMs, transport);
  }
}
