import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { formatHostPort } from './address.js';
import { NetError, toNetError } from './errors.js';
import { runtime as activeRuntime, runtimeReady } from './runtime/index.js';
import type { Conn, ConnectOptions, TlsClientOptions } from './types.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export type Resolver = (host: string) => Promise<string[]>;

/** Every address of a name, IPv6 and IPv4, in the resolver's preferred order. */
export const systemResolver: Resolver = async (host) => {
  try {
    const records = await lookup(host, { all: true, verbatim: true });
    return records.map((record) => record.address);
  } catch (error) {
    throw new NetError('ENOTFOUND', `cannot resolve ${host}`, { address: host, cause: error });
  }
};

/** `connect`'s options: where to, and how names are resolved. */
export interface ConnectTarget extends ConnectOptions {
  resolver?: Resolver;
  /**
   * The addresses to dial, already resolved (and vetted by a destination
   * policy): `host` is then not resolved again, so what was checked is what
   * is dialled. `host` still names the target in errors and for TLS.
   */
  addresses?: readonly string[];
}

/**
 * Connect to `host:port`. Names are resolved to every address, and each is
 * tried in turn until one answers; the timeout bounds the whole attempt. The
 * error of the last address is reported (ETIMEDOUT when the time ran out).
 */
export async function connect(options: ConnectTarget): Promise<Conn> {
  await runtimeReady();
  const runtime = activeRuntime();
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const label = formatHostPort(options.host, options.port);
  const literal = isIP(options.host) !== 0;
  const ips = options.addresses ?? (literal ? [options.host] : await withDeadline((options.resolver ?? systemResolver)(options.host), deadline, label));
  if (ips.length === 0) throw new NetError('ENOTFOUND', `no address for ${options.host}`, { address: label });
  const tls: (TlsClientOptions & { servername: string }) | undefined = options.tls
    ? { ...(options.tls === true ? {} : options.tls), servername: (options.tls !== true && options.tls.servername) || (literal ? '' : options.host) }
    : undefined;
  let lastError: NetError | undefined;
  for (const ip of ips) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    if (options.signal?.aborted) throw new NetError('EABORTED', `connect to ${label} aborted`, { address: label });
    try {
      return await runtime.connectIp({
        ip,
        port: options.port,
        timeoutMs: remaining,
        tls,
        localAddress: options.localAddress,
        signal: options.signal,
      });
    } catch (error) {
      lastError = toNetError(error, formatHostPort(ip, options.port));
      if (lastError.code === 'EABORTED') throw lastError;
    }
  }
  if (!lastError || Date.now() >= deadline) {
    throw new NetError('ETIMEDOUT', `connect to ${label} timed out after ${timeoutMs} ms`, { address: label, cause: lastError });
  }
  throw lastError;
}

async function withDeadline<T>(promise: Promise<T>, deadline: number, label: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NetError('ETIMEDOUT', `resolving ${label} timed out`, { address: label })), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
