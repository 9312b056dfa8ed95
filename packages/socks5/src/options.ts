import { isIP } from 'node:net';
import { CidrList, connect, silentLogger, systemResolver } from '@wmproxy/core-net';
import type { Logger, Resolver } from '@wmproxy/core-net';
import { UserTable } from './auth.js';
import { SOCKS5_DEFAULTS } from './defaults.js';
import type { Connector, DestinationPolicy } from './destination.js';

export interface Socks5ServerOptions {
  /** RFC 1929 username → password. When set, clients must authenticate; no-auth is refused (method 0xFF). */
  users?: Record<string, string>;
  /** Give up connecting to a target after this long; the client gets reply 0x06 (default 10 000). */
  connectTimeoutMs?: number;
  /** Close a client that has not completed greeting, auth and request in this time (default 10 000). */
  handshakeTimeoutMs?: number;
  /** Close a relay (TCP) or association (UDP) with no traffic for this long (default 300 000; 0 = never). */
  idleTimeoutMs?: number;
  /** Serve UDP ASSOCIATE (default true); when false it is answered 0x07. */
  udp?: boolean;
  /** IP to bind UDP relay sockets on (default: the IP the client's TCP connection arrived on). */
  udpBind?: string;
  /** Called with each requested target (name or IP, as the client sent it); false refuses it with 0x02. */
  allowDestination?: (host: string, port: number) => boolean;
  /** Targets to refuse with 0x02, checked against the resolved IPs of names too (e.g. `127.0.0.0/8`, `::1`). */
  destinationDeny?: CidrList | readonly string[];
  /** Opens upstream connections (default: core-net `connect`; http-proxy passes one that chains through a parent). */
  connector?: Connector;
  /** Name resolution for destination checks, UDP targets and the default connector (default: the system resolver). */
  resolver?: Resolver;
  logger?: Logger;
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = SOCKS5_DEFAULTS.handshakeTimeoutMs;

/** Options with every default filled in, shared by all sessions of a server. */
export interface ServerConfig {
  users: UserTable | undefined;
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
  udp: boolean;
  udpBind: string | undefined;
  policy: DestinationPolicy;
  connector: Connector;
  logger: Logger;
}

export function resolveOptions(options: Socks5ServerOptions): ServerConfig {
  const resolver = options.resolver ?? systemResolver;
  const deny = options.destinationDeny;
  const users = options.users && Object.keys(options.users).length > 0 ? new UserTable(options.users) : undefined;
  return {
    users,
    connectTimeoutMs: positive(options.connectTimeoutMs, SOCKS5_DEFAULTS.connectTimeoutMs, 'connectTimeoutMs'),
    handshakeTimeoutMs: positive(options.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS, 'handshakeTimeoutMs'),
    idleTimeoutMs: positive(options.idleTimeoutMs, SOCKS5_DEFAULTS.idleTimeoutMs, 'idleTimeoutMs', true),
    udp: options.udp ?? SOCKS5_DEFAULTS.udp,
    udpBind: ipLiteral(options.udpBind),
    policy: {
      allow: options.allowDestination,
      deny: deny === undefined ? undefined : deny instanceof CidrList ? deny : new CidrList(deny),
      resolver,
    },
    connector: options.connector ?? defaultConnector(resolver),
    logger: options.logger ?? silentLogger,
  };
}

function ipLiteral(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const ip = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value;
  if (isIP(ip) === 0) throw new RangeError(`udpBind must be an IP address, got "${value}"`);
  return ip;
}

function positive(value: number | undefined, fallback: number, name: string, zeroAllowed = false): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroAllowed)) {
    throw new RangeError(`${name} must be a ${zeroAllowed ? 'non-negative' : 'positive'} number of milliseconds, got ${value}`);
  }
  return value;
}

function defaultConnector(resolver: Resolver): Connector {
  return (host, port, timeoutMs, addresses) => connect({ host, port, timeoutMs, resolver, addresses });
}
