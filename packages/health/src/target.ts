import { AddressError, formatHostPort, parseAddress } from '@wmproxy/core-net';
import { DEFAULT_STATUS, formatStatusRanges, parseStatusRanges, type StatusRanges } from './status.js';
import type { CheckSpec, GrpcCheck, HttpCheck, TargetSpec, TcpCheck } from './types.js';

/** A check with every default filled in and every string parsed: what probes run. */
export type ResolvedCheck = ResolvedTcpCheck | ResolvedHttpCheck | ResolvedGrpcCheck;

export interface ResolvedGrpcCheck {
  type: 'grpc' | 'grpcs';
  service: string;
  authority: string;
  servername: string;
  tlsVerify: boolean;
  ca?: string[];
}

/** The service a gRPC check asks about when none is given: the server as a whole (grpc.health.v1). */
export const DEFAULT_GRPC_SERVICE = '';
/** The longest service name accepted (names are fully qualified protobuf names, far shorter). */
export const MAX_GRPC_SERVICE_LENGTH = 1024;

export interface ResolvedTcpCheck {
  type: 'tcp';
  send?: Uint8Array;
  expect?: Uint8Array;
  /** `"PING"` or `0x0d0a`, for reasons. */
  expectLabel?: string;
}

export interface ResolvedHttpCheck {
  type: 'http' | 'https';
  method: string;
  path: string;
  host: string;
  headers: Array<[string, string]>;
  status: StatusRanges;
  statusLabel: string;
  body?: { text: string } | { regex: RegExp };
  maxBodyBytes: number;
  servername: string;
  tlsVerify: boolean;
  ca?: string[];
}

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

export class TargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TargetError';
  }
}

/** `host:port` with a lower-case name (no trailing dot) and the canonical IPv6 form, brackets included. */
export function normaliseAddress(input: string): string {
  let address;
  try {
    address = parseAddress(input);
  } catch (error) {
    throw new TargetError(error instanceof AddressError ? error.message : String(error));
  }
  if (address.wildcard) throw new TargetError(`invalid target "${input}": a host is needed (host:port)`);
  if (address.port === 0) throw new TargetError(`invalid target "${input}": port 0`);
  let host = address.host.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (address.family === 6) host = new URL(`http://[${host}]/`).hostname.slice(1, -1);
  return formatHostPort(host, address.port);
}

/** Host and port of a normalised address. */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  let host = address.slice(0, colon);
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host, port: Number(address.slice(colon + 1)) };
}

const SCHEMES: Record<string, { type: 'tcp' | 'http' | 'https' | 'grpc' | 'grpcs'; port?: number }> = {
  'tcp:': { type: 'tcp' },
  'http:': { type: 'http', port: 80 },
  'https:': { type: 'https', port: 443 },
  'grpc:': { type: 'grpc' },
  'grpcs:': { type: 'grpcs', port: 443 },
};

/**
 * `tcp://host:port`, `http://host[:port]/path?query`, `https://…`,
 * `grpc://host:port[/service]`, `grpcs://host[:port][/service]` → a target
 * spec (an HTTP target's path becomes the check's path, a gRPC target's the
 * service asked about). A bare `host:port` is a TCP target.
 */
export function parseTargetUrl(input: string): TargetSpec {
  if (!input.includes('://')) return { address: normaliseAddress(input), check: { type: 'tcp' } };
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new TargetError(`invalid target "${input}": not a URL`);
  }
  const scheme = SCHEMES[url.protocol];
  if (!scheme) throw new TargetError(`invalid target "${input}": scheme must be tcp://, http://, https://, grpc:// or grpcs://`);
  if (url.username || url.password) throw new TargetError(`invalid target "${input}": credentials in the URL are not supported (use --header)`);
  const port = url.port ? Number(url.port) : scheme.port;
  if (port === undefined) throw new TargetError(`invalid target "${input}": ${url.protocol}// needs a port`);
  const address = normaliseAddress(formatHostPort(url.hostname.replace(/^\[|\]$/g, ''), port));
  if (scheme.type === 'tcp') {
    if ((url.pathname !== '' && url.pathname !== '/') || url.search) throw new TargetError(`invalid target "${input}": tcp:// takes no path`);
    return { address, check: { type: 'tcp' } };
  }
  if (scheme.type === 'grpc' || scheme.type === 'grpcs') {
    if (url.search || url.hash) throw new TargetError(`invalid target "${input}": ${url.protocol}// takes a service name as its path, no query`);
    let service: string;
    try {
      service = decodeURIComponent(url.pathname.replace(/^\//, ''));
    } catch {
      throw new TargetError(`invalid target "${input}": the service name is not valid percent-encoding`);
    }
    return { address, check: service ? { type: scheme.type, service } : { type: scheme.type } };
  }
  return { address, check: { type: scheme.type, path: (url.pathname || '/') + url.search } };
}

function decodeBytes(value: string, encoding: 'text' | 'hex' | undefined, what: string): Uint8Array {
  if (encoding !== 'hex') return new TextEncoder().encode(value);
  const hex = value.replace(/\s+/g, '').replace(/^0x/i, '');
  if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-f]+$/i.test(hex)) {
    throw new TargetError(`invalid hex for ${what}: "${value}"`);
  }
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

/** `/ok/i` → RegExp; anything else is a substring. */
export function parseBodyMatch(input: string): { text: string } | { regex: RegExp } {
  const match = /^\/(.*)\/([dgimsuvy]*)$/s.exec(input);
  if (!match || match[1] === '') return { text: input };
  try {
    return { regex: new RegExp(match[1]!, match[2]!.replace('g', '').replace('y', '')) };
  } catch (error) {
    throw new TargetError(`invalid regular expression ${input}: ${(error as Error).message}`);
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function resolveCheck(address: string, check: CheckSpec): ResolvedCheck {
  if (check.type === 'tcp') return resolveTcp(check);
  if (check.type === 'grpc' || check.type === 'grpcs') return resolveGrpc(address, check);
  if (check.type !== 'http' && check.type !== 'https') {
    throw new TargetError(`unknown check type "${(check as { type?: unknown }).type}" (tcp, http, https, grpc, grpcs)`);
  }
  return resolveHttp(address, check);
}

function resolveTcp(check: TcpCheck): ResolvedTcpCheck {
  const resolved: ResolvedTcpCheck = { type: 'tcp' };
  if (check.send !== undefined && check.send !== '') resolved.send = decodeBytes(check.send, check.encoding, 'send');
  if (check.expect !== undefined && check.expect !== '') {
    resolved.expect = decodeBytes(check.expect, check.encoding, 'expect');
    resolved.expectLabel = check.encoding === 'hex' ? `0x${Buffer.from(resolved.expect).toString('hex')}` : JSON.stringify(check.expect);
  }
  return resolved;
}

function resolveHttp(address: string, check: HttpCheck): ResolvedHttpCheck {
  const method = (check.method ?? 'GET').toUpperCase();
  if (!TOKEN.test(method)) throw new TargetError(`invalid HTTP method "${check.method}"`);
  const path = check.path ?? '/';
  if (!path.startsWith('/') || /[\s\x00-\x1f\x7f]/.test(path)) throw new TargetError(`invalid HTTP path "${path}" (must start with / and contain no spaces)`);
  const { host: targetHost, port } = splitAddress(address);
  const defaultPort = check.type === 'https' ? 443 : 80;
  const hostHeader = check.host ?? (port === defaultPort ? formatHostPort(targetHost, 0).replace(/:0$/, '') : address);
  const headers: Array<[string, string]> = [];
  const given = check.headers === undefined ? [] : Array.isArray(check.headers) ? check.headers : Object.entries(check.headers);
  for (const [name, value] of given) {
    if (!TOKEN.test(name)) throw new TargetError(`invalid header name "${name}"`);
    if (/[\r\n\x00]/.test(value)) throw new TargetError(`invalid value for header ${name}`);
    headers.push([name, value]);
  }
  let status = DEFAULT_STATUS;
  if (check.expectStatus !== undefined) {
    try {
      status = parseStatusRanges(check.expectStatus);
    } catch (error) {
      throw new TargetError((error as Error).message);
    }
  }
  const maxBodyBytes = check.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes <= 0) throw new TargetError(`maxBodyBytes must be a positive integer`);
  const sniHost = check.servername ?? check.host?.replace(/:\d+$/, '').replace(/^\[|\]$/g, '') ?? targetHost;
  const resolved: ResolvedHttpCheck = {
    type: check.type,
    method,
    path,
    host: hostHeader,
    headers,
    status,
    statusLabel: formatStatusRanges(status),
    maxBodyBytes,
    servername: sniHost,
    tlsVerify: check.tlsVerify ?? true,
  };
  if (check.expectBody !== undefined && check.expectBody !== '') resolved.body = parseBodyMatch(check.expectBody);
  if (check.ca !== undefined) resolved.ca = Array.isArray(check.ca) ? check.ca : [check.ca];
  return resolved;
}

function resolveGrpc(address: string, check: GrpcCheck): ResolvedGrpcCheck {
  const service = check.service ?? DEFAULT_GRPC_SERVICE;
  if (typeof service !== 'string' || service.length > MAX_GRPC_SERVICE_LENGTH || /[\x00-\x1f\x7f]/.test(service)) {
    throw new TargetError(`invalid gRPC service name ${JSON.stringify(service)}`);
  }
  const { host: targetHost, port } = splitAddress(address);
  const authority = check.authority ?? (check.type === 'grpcs' && port === 443 ? formatHostPort(targetHost, 0).replace(/:0$/, '') : address);
  if (/[\s\x00-\x1f\x7f/]/.test(authority) || authority === '') throw new TargetError(`invalid gRPC authority "${authority}"`);
  const resolved: ResolvedGrpcCheck = {
    type: check.type,
    service,
    authority,
    servername: check.servername ?? check.authority?.replace(/:\d+$/, '').replace(/^\[|\]$/g, '') ?? targetHost,
    tlsVerify: check.tlsVerify ?? true,
  };
  if (check.ca !== undefined) resolved.ca = Array.isArray(check.ca) ? check.ca : [check.ca];
  return resolved;
}

export function isGrpcCheck(check: ResolvedCheck): check is ResolvedGrpcCheck {
  return check.type === 'grpc' || check.type === 'grpcs';
}

/** The check in words, for logs and tables: `tcp`, `http GET /health`, `grpc service "api.Users"`. */
export function describeCheck(check: ResolvedCheck | null): string {
  if (check === null) return 'passive';
  if (check.type === 'tcp') return check.send || check.expect ? 'tcp send/expect' : 'tcp';
  if (isGrpcCheck(check)) return check.service ? `${check.type} service ${JSON.stringify(check.service)}` : check.type;
  return `${check.type} ${check.method} ${check.path}`;
}

/**
 * The deduplication key: the normalised address plus everything that changes
 * what a probe does. Two configurations that would send the same probe to the
 * same place share one key.
 */
export function checkKey(address: string, check: ResolvedCheck | null): string {
  if (check === null) return `${address} passive`;
  if (check.type === 'tcp') {
    const hex = (bytes?: Uint8Array) => (bytes ? Buffer.from(bytes).toString('hex') : '');
    return check.send || check.expect ? `${address} tcp ${hex(check.send)}/${hex(check.expect)}` : `${address} tcp`;
  }
  if (isGrpcCheck(check)) {
    return [address, check.type, JSON.stringify(check.service), check.authority, check.servername, check.tlsVerify ? 'verify' : 'insecure', check.ca ? check.ca.join('').length : ''].join(' ');
  }
  const body = check.body === undefined ? '' : 'text' in check.body ? `"${check.body.text}"` : String(check.body.regex);
  const headers = check.headers.map(([name, value]) => `${name.toLowerCase()}=${value}`).sort().join('&');
  return [
    address,
    check.type,
    check.method,
    check.path,
    check.host,
    check.statusLabel,
    body,
    headers,
    check.maxBodyBytes,
    check.servername,
    check.tlsVerify ? 'verify' : 'insecure',
    check.ca ? check.ca.join('').length : '',
  ].join(' ');
}
