import type { Transport } from '@wmproxy/core-net';
import type { ResolvedCheck } from '../target.js';
import type { ProbeResult } from '../types.js';
import { probeHttp } from './http.js';
import { probeTcp } from './tcp.js';

export { probeHttp, buildRequest, MAX_HEAD_BYTES } from './http.js';
export { probeTcp } from './tcp.js';

/** Run one probe of `check` against host:port (through `transport` when given); never throws. */
export function runProbe(host: string, port: number, check: ResolvedCheck, timeoutMs: number, transport?: Transport): Promise<ProbeResult> {
  return check.type === 'tcp' ? probeTcp(host, port, check, timeoutMs, transport) : probeHttp(host, port, check, timeoutMs, transport);
}
