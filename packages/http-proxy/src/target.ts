import { isIP } from 'node:net';
import { formatHostPort, isValidHostname } from '@wmproxy/core-net';

/** Where a proxied request goes. */
export interface Target {
  /** Host name or IP literal (IPv6 without brackets). */
  host: string;
  port: number;
  /** `host:port` (brackets for IPv6); the key for reusing an upstream connection. */
  authority: string;
  /** Origin-form path and query to send to the origin server (`/` at least). */
  path: string;
  /** The value for the Host field: as the client wrote the authority, default port omitted. */
  hostHeader: string;
}

/** Why a target was refused (becomes a 400). */
export class TargetError extends Error {
  override name = 'TargetError';
}

/** Split `host[:port]` (IPv6 in brackets); undefined when malformed. */
export function parseAuthority(text: string, defaultPort: number | undefined): { host: string; port: number } | undefined {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return undefined;
    host = text.slice(1, close);
    if (isIP(host) !== 6) return undefined;
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (rest[0] !== ':') return undefined;
      portText = rest.slice(1);
    }
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    } else host = text;
    if (host.includes(':')) return undefined;
    if (isIP(host) === 0 && !isValidHostname(host)) return undefined;
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return undefined;
    port = defaultPort;
  } else {
    if (portText.length === 0 || portText.length > 5) return undefined;
    for (let i = 0; i < portText.length; i++) {
      const c = portText.charCodeAt(i);
      if (c < 0x30 || c > 0x39) return undefined;
    }
    port = Number(portText);
    if (port < 1 || port > 65535) return undefined;
  }
  return { host: host.toLowerCase(), port };
}

/**
 * Parse an absolute-form target `http://host[:port][/path][?query]`. User
 * info (`user:pass@`) is dropped; a fragment is refused.
 */
export function parseAbsoluteTarget(target: string): Target {
  const schemeEnd = target.indexOf('://');
  if (schemeEnd < 0) throw new TargetError('not an absolute URL');
  const scheme = target.slice(0, schemeEnd).toLowerCase();
  if (scheme !== 'http') throw new TargetError(`scheme "${scheme}" is not supported (use CONNECT for https)`);
  const rest = target.slice(schemeEnd + 3);
  let end = rest.length;
  for (let i = 0; i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    if (c === 0x2f /* / */ || c === 0x3f /* ? */ || c === 0x23 /* # */) {
      end = i;
      break;
    }
  }
  let authority = rest.slice(0, end);
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1);
  let path = rest.slice(end);
  if (path.includes('#')) throw new TargetError('fragment in request-target');
  if (path === '') path = '/';
  else if (path[0] === '?') path = '/' + path;
  const parsed = parseAuthority(authority, 80);
  if (!parsed) throw new TargetError(`invalid authority "${authority}"`);
  const key = formatHostPort(parsed.host, parsed.port);
  const hostPart = parsed.host.includes(':') ? `[${parsed.host}]` : parsed.host;
  return { host: parsed.host, port: parsed.port, authority: key, path, hostHeader: parsed.port === 80 ? hostPart : key };
}

/** Parse a CONNECT authority-form target `host:port` (port required). */
export function parseConnectTarget(target: string): { host: string; port: number; authority: string } {
  const parsed = parseAuthority(target, undefined);
  if (!parsed) throw new TargetError(`invalid CONNECT target "${target}"`);
  return { ...parsed, authority: formatHostPort(parsed.host, parsed.port) };
}
