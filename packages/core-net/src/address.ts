import { isIP } from 'node:net';

/** A parsed `host:port`. `host` is an IP literal (without brackets) or a DNS name. */
export interface Address {
  host: string;
  port: number;
  /** 4 or 6 for IP literals, 0 for names. */
  family: 0 | 4 | 6;
  /** `:port` form: every local address. */
  wildcard: boolean;
}

export class AddressError extends Error {
  constructor(readonly input: string, reason: string) {
    super(`invalid address "${input}": ${reason}`);
    this.name = 'AddressError';
  }
}

const HOSTNAME_LABEL = /^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$/;

export function isValidHostname(host: string): boolean {
  if (host.length === 0 || host.length > 253) return false;
  const trimmed = host.endsWith('.') ? host.slice(0, -1) : host;
  return trimmed.split('.').every((label) => HOSTNAME_LABEL.test(label));
}

function parsePort(input: string, text: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new AddressError(input, `port "${text}" is not a number from 0 to 65535`);
  const port = Number(text);
  if (port > 65535) throw new AddressError(input, `port ${port} is over 65535`);
  return port;
}

/**
 * Parse `ip:port`, `[v6]:port`, `host:port` or `:port` (all local addresses,
 * as the original wmproxy). A bare port (`8090`) is read as `:8090`.
 */
export function parseAddress(input: string): Address {
  const text = input.trim();
  if (text.length === 0) throw new AddressError(input, 'empty');
  if (/^\d+$/.test(text)) return { host: '', port: parsePort(input, text), family: 0, wildcard: true };
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new AddressError(input, 'missing "]" after an IPv6 address');
    const host = text.slice(1, close);
    if (isIP(host) !== 6) throw new AddressError(input, `"${host}" is not an IPv6 address`);
    if (text[close + 1] !== ':') throw new AddressError(input, 'expected ":port" after "]"');
    return { host, port: parsePort(input, text.slice(close + 2)), family: 6, wildcard: false };
  }
  const colon = text.lastIndexOf(':');
  if (colon < 0) throw new AddressError(input, 'expected host:port');
  const host = text.slice(0, colon);
  if (host.includes(':')) throw new AddressError(input, 'IPv6 addresses need brackets: [addr]:port');
  const port = parsePort(input, text.slice(colon + 1));
  if (host === '') return { host: '', port, family: 0, wildcard: true };
  const family = isIP(host);
  if (family === 0 && !isValidHostname(host)) throw new AddressError(input, `"${host}" is not an IP address or host name`);
  return { host, port, family: family as 0 | 4 | 6, wildcard: false };
}

/** A comma- or whitespace-separated list of addresses. */
export function parseAddressList(input: string): Address[] {
  const parts = input.split(/[\s,]+/).filter((part) => part.length > 0);
  if (parts.length === 0) throw new AddressError(input, 'empty list');
  return parts.map(parseAddress);
}

/** `host:port`, with brackets for IPv6, `:port` for a wildcard. */
export function formatAddress(address: Pick<Address, 'host' | 'port'>): string {
  return formatHostPort(address.host, address.port);
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The host to hand to a listener: the wildcard binds every address, dual-stack. */
export function listenHost(address: Address): string {
  return address.wildcard ? '::' : address.host;
}

/** True for 127.0.0.0/8, ::1 and ::ffff:127.x: addresses only this machine reaches. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host;
  return isIP(v4) === 4 && v4.startsWith('127.');
}
