/**
 * Mappings: what a client exposes through the server, and the `--map` spec
 * syntax. The local address stays on the client; the server learns the name,
 * kind, public port, domains and path (`publicView`).
 */
import { isIP } from 'node:net';
import { isValidHostname, parseIp } from '@wmproxy/core-net';
import { compileRules, type BasicAuthSpec, type HeaderRule } from '@wmproxy/reverse';

export type MappingKind = 'tcp' | 'udp' | 'http' | 'https' | 'proxy';
export const MAPPING_KINDS: readonly MappingKind[] = ['tcp', 'udp', 'http', 'https', 'proxy'];

export interface Mapping {
  /** Unique per client; several clients serving one name form a group on the server. */
  name: string;
  kind: MappingKind;
  /** The service on the client's side (not for `proxy`, which the client serves itself). */
  localHost?: string;
  localPort?: number;
  /** Public port on the server (tcp, udp, proxy). */
  remotePort?: number;
  /** http/https: exact names or `*.example.com` wildcards. */
  domains?: string[];
  /** http/https: path prefix (default `/`). */
  path?: string;
  /** Send a PROXY protocol header (v1 text or v2 binary) to the local service first (tcp, http, https). */
  proxyProtocol?: 1 | 2;
  /** http: visitors must send these Basic credentials (frp `httpUser`/`httpPassword`); checked on the server. */
  basicAuth?: BasicAuthSpec;
  /** http: the reverse engine's header rules on the request to the local service and on its response. */
  requestHeaders?: HeaderRule[];
  responseHeaders?: HeaderRule[];
}

/** The server's part of an http mapping: applied by the reverse engine there, so they travel with the mapping. */
type HttpRules = Pick<Mapping, 'basicAuth' | 'requestHeaders' | 'responseHeaders'>;

/** What the server is told (and keeps) about a mapping. */
export interface PublicMapping extends HttpRules {
  name: string;
  kind: MappingKind;
  remotePort?: number;
  domains?: string[];
  path?: string;
}

const MAX_RULES = 64;
const MAX_USERS = 64;
const MAX_RULE_TEXT = 4096;

export function publicView(mapping: Mapping): PublicMapping {
  const view: PublicMapping = { name: mapping.name, kind: mapping.kind };
  if (mapping.remotePort !== undefined) view.remotePort = mapping.remotePort;
  if (mapping.domains !== undefined) view.domains = mapping.domains;
  if (mapping.path !== undefined) view.path = mapping.path;
  if (mapping.basicAuth !== undefined) view.basicAuth = mapping.basicAuth;
  if (mapping.requestHeaders !== undefined) view.requestHeaders = mapping.requestHeaders;
  if (mapping.responseHeaders !== undefined) view.responseHeaders = mapping.responseHeaders;
  return view;
}

export class MappingError extends Error {
  override readonly name = 'MappingError';
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DOMAIN_PATTERN = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;

function port(text: string, what: string, spec: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new MappingError(`${spec}: ${what} "${text}" is not a port number`);
  const value = Number(text);
  if (value < 1 || value > 65535) throw new MappingError(`${spec}: ${what} ${value} is outside 1-65535`);
  return value;
}

/** Split `host:port[:rest]` where host may be `[v6]`. Returns [host, remaining text after the host's colon]. */
function splitHost(text: string, spec: string): [string, string] {
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') throw new MappingError(`${spec}: unterminated IPv6 address`);
    return [text.slice(1, close), text.slice(close + 2)];
  }
  const colon = text.indexOf(':');
  if (colon < 0) throw new MappingError(`${spec}: expected host:port`);
  return [text.slice(0, colon), text.slice(colon + 1)];
}

/**
 * Parse a `--map` spec:
 * - `web=http:127.0.0.1:8080@app.example.test[/path]` (also `*.example.test`)
 * - `db=tcp:127.0.0.1:5432:15432` (local host:port, public port)
 * - `dns=udp:127.0.0.1:53:15353`
 * - `out=proxy::18090` (the client's forward proxy on public port 18090)
 * - options after commas: `,proxy-protocol=v1|v2`, `,auth=USER:PASSWORD` (http: Basic auth, repeatable)
 */
export function parseMapSpec(spec: string): Mapping {
  const [main, ...options] = spec.trim().split(',');
  const eq = main!.indexOf('=');
  if (eq <= 0) throw new MappingError(`${spec}: expected name=kind:...`);
  const name = main!.slice(0, eq);
  if (!NAME.test(name)) throw new MappingError(`${spec}: name "${name}" may hold letters, digits, ".", "_", "-" (up to 64)`);
  const rest = main!.slice(eq + 1);
  const colon = rest.indexOf(':');
  if (colon < 0) throw new MappingError(`${spec}: expected kind:... after "${name}="`);
  const kind = rest.slice(0, colon) as MappingKind;
  if (!MAPPING_KINDS.includes(kind)) throw new MappingError(`${spec}: unknown kind "${kind}" (use ${MAPPING_KINDS.join(', ')})`);
  const body = rest.slice(colon + 1);
  const mapping: Mapping = { name, kind };
  if (kind === 'proxy') {
    // `proxy::18090`: the body is ":port".
    if (!body.startsWith(':')) throw new MappingError(`${spec}: proxy mappings are written proxy::PUBLIC_PORT`);
    mapping.remotePort = port(body.slice(1), 'public port', spec);
  } else if (kind === 'tcp' || kind === 'udp') {
    const [host, after] = splitHost(body, spec);
    const parts = after.split(':');
    if (parts.length !== 2) throw new MappingError(`${spec}: ${kind} mappings are written ${kind}:LOCAL_HOST:LOCAL_PORT:PUBLIC_PORT`);
    mapping.localHost = host;
    mapping.localPort = port(parts[0]!, 'local port', spec);
    mapping.remotePort = port(parts[1]!, 'public port', spec);
  } else {
    const at = body.indexOf('@');
    const [host, after] = splitHost(at < 0 ? body : body.slice(0, at), spec);
    mapping.localHost = host;
    mapping.localPort = port(after, 'local port', spec);
    if (at < 0) throw new MappingError(`${spec}: ${kind} mappings need a domain: ${kind}:HOST:PORT@DOMAIN[/PATH]`);
    const target = body.slice(at + 1);
    const slash = target.indexOf('/');
    const domain = slash < 0 ? target : target.slice(0, slash);
    mapping.domains = [domain.toLowerCase()];
    if (slash >= 0) mapping.path = target.slice(slash);
  }
  for (const option of options) {
    const eqAt = option.indexOf('=');
    const key = eqAt < 0 ? option : option.slice(0, eqAt);
    const value = eqAt < 0 ? undefined : option.slice(eqAt + 1);
    if (key === 'proxy-protocol' && (value === 'v1' || value === '1')) mapping.proxyProtocol = 1;
    else if (key === 'proxy-protocol' && (value === 'v2' || value === '2')) mapping.proxyProtocol = 2;
    else if (key === 'auth' && value !== undefined && value.indexOf(':') > 0) {
      const users = (mapping.basicAuth ??= { users: Object.create(null) as Record<string, string> }).users;
      users[value.slice(0, value.indexOf(':'))] = value.slice(value.indexOf(':') + 1);
    } else throw new MappingError(`${spec}: unknown option "${option}" (known: proxy-protocol=v1|v2, auth=USER:PASSWORD)`);
  }
  return validateMapping(mapping, spec);
}

/** Check a mapping (from a spec, a config file, or the wire); throws MappingError saying what is wrong. */
export function validateMapping(mapping: Mapping, where = mapping.name): Mapping {
  if (!NAME.test(mapping.name ?? '')) throw new MappingError(`${where}: invalid mapping name "${String(mapping.name)}"`);
  if (!MAPPING_KINDS.includes(mapping.kind)) throw new MappingError(`${where}: unknown kind "${String(mapping.kind)}"`);
  const needsPort = mapping.kind === 'tcp' || mapping.kind === 'udp' || mapping.kind === 'proxy';
  if (needsPort && !validPort(mapping.remotePort)) throw new MappingError(`${where}: a ${mapping.kind} mapping needs a public port (1-65535)`);
  if (mapping.kind !== 'proxy') {
    if (!mapping.localHost || !(isIP(mapping.localHost) || isValidHostname(mapping.localHost))) throw new MappingError(`${where}: invalid local host "${String(mapping.localHost)}"`);
    if (!validPort(mapping.localPort)) throw new MappingError(`${where}: invalid local port`);
  }
  if (mapping.kind === 'http' || mapping.kind === 'https') {
    if (!mapping.domains || mapping.domains.length === 0) throw new MappingError(`${where}: an ${mapping.kind} mapping needs a domain`);
    for (const domain of mapping.domains) if (!DOMAIN_PATTERN.test(domain) || domain.length > 253) throw new MappingError(`${where}: invalid domain "${domain}"`);
    if (mapping.path !== undefined && (!mapping.path.startsWith('/') || /[\s?#]/.test(mapping.path))) throw new MappingError(`${where}: path must start with "/" (no spaces, "?" or "#")`);
  }
  if (mapping.proxyProtocol !== undefined && (mapping.kind === 'udp' || mapping.kind === 'proxy')) throw new MappingError(`${where}: PROXY protocol applies to tcp, http and https mappings`);
  validateHttpRules(mapping, where);
  return mapping;
}

/** Basic auth users and header rules: http mappings only, bounded, and rules the engine compiles. */
function validateHttpRules(mapping: HttpRules & { kind: MappingKind }, where: string): void {
  const { basicAuth, requestHeaders, responseHeaders } = mapping;
  if (basicAuth === undefined && requestHeaders === undefined && responseHeaders === undefined) return;
  if (mapping.kind !== 'http') throw new MappingError(`${where}: basic auth and header rules apply to http mappings (an https mapping passes TLS through untouched)`);
  if (basicAuth !== undefined) {
    const users = Object.entries(basicAuth.users ?? {});
    if (users.length === 0 || users.length > MAX_USERS) throw new MappingError(`${where}: basic auth needs 1-${MAX_USERS} users`);
    for (const [user, password] of users) {
      if (user === '' || user.includes(':') || /[\0-\x1f]/.test(user) || typeof password !== 'string' || password.length > 256 || user.length > 256) {
        throw new MappingError(`${where}: basic auth user "${user.slice(0, 64)}" (a name without ":" and a password, up to 256 characters each)`);
      }
    }
    // Control characters would make the 401 challenge an invalid header: the engine refuses to write it, and every visitor's request fails with an error logged.
    if (basicAuth.realm !== undefined && (typeof basicAuth.realm !== 'string' || basicAuth.realm.length > 128 || /[\0-\x1f\x7f]/.test(basicAuth.realm))) {
      throw new MappingError(`${where}: basic auth realm is text up to 128 characters, without control characters`);
    }
  }
  for (const [key, rules] of [['request', requestHeaders], ['response', responseHeaders]] as const) {
    if (rules === undefined) continue;
    if (rules.length > MAX_RULES) throw new MappingError(`${where}: at most ${MAX_RULES} ${key} header rules`);
    try {
      for (const rule of rules) if ((rule.value?.length ?? 0) + rule.name.length > MAX_RULE_TEXT) throw new Error(`header rule ${rule.name} is too long`);
      compileRules(rules);
    } catch (error) {
      throw new MappingError(`${where}: ${key} header rules: ${(error as Error).message}`);
    }
  }
}

function validPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

/** Read a mapping announced by a client (untrusted JSON). */
export function readPublicMapping(value: unknown): PublicMapping {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new MappingError('mapping is not an object');
  const raw = value as Record<string, unknown>;
  if (typeof raw.name !== 'string') throw new MappingError('mapping has no name');
  if (typeof raw.kind !== 'string') throw new MappingError(`${raw.name.slice(0, 64)}: mapping has no kind`);
  const view: PublicMapping = { name: raw.name, kind: raw.kind as MappingKind };
  if (raw.remotePort !== undefined) view.remotePort = raw.remotePort as number;
  if (raw.domains !== undefined) {
    if (!Array.isArray(raw.domains) || raw.domains.length > 32 || !raw.domains.every((d) => typeof d === 'string')) throw new MappingError(`${view.name}: domains must be a list of names`);
    view.domains = (raw.domains as string[]).map((d) => d.toLowerCase());
  }
  if (raw.path !== undefined) {
    if (typeof raw.path !== 'string') throw new MappingError(`${view.name}: path must be text`);
    view.path = raw.path;
  }
  if (raw.basicAuth !== undefined) view.basicAuth = readBasicAuth(raw.basicAuth, view.name);
  if (raw.requestHeaders !== undefined) view.requestHeaders = readRules(raw.requestHeaders, view.name);
  if (raw.responseHeaders !== undefined) view.responseHeaders = readRules(raw.responseHeaders, view.name);
  // Validate with a placeholder local address: the server never sees the real one.
  validateMapping({ ...view, ...(view.kind === 'proxy' ? {} : { localHost: 'localhost', localPort: 1 }) } as Mapping);
  return view;
}

/** The mapping as shown in /status and logs: basic auth passwords hidden. */
export function redactMapping(mapping: PublicMapping): PublicMapping {
  if (mapping.basicAuth === undefined) return mapping;
  const users = Object.fromEntries(Object.keys(mapping.basicAuth.users).map((user) => [user, '***']));
  return { ...mapping, basicAuth: { ...mapping.basicAuth, users } };
}

function readBasicAuth(value: unknown, name: string): BasicAuthSpec {
  const raw = value as { users?: unknown; realm?: unknown } | null;
  if (typeof raw !== 'object' || raw === null || typeof raw.users !== 'object' || raw.users === null || Array.isArray(raw.users)) throw new MappingError(`${name}: basicAuth must be { users, realm? }`);
  const users = Object.create(null) as Record<string, string>;
  for (const [user, password] of Object.entries(raw.users)) {
    if (typeof password !== 'string') throw new MappingError(`${name}: basic auth passwords are text`);
    users[user] = password;
  }
  if (raw.realm !== undefined && typeof raw.realm !== 'string') throw new MappingError(`${name}: basic auth realm is text`);
  return raw.realm === undefined ? { users } : { users, realm: raw.realm };
}

function readRules(value: unknown, name: string): HeaderRule[] {
  if (!Array.isArray(value) || value.length > MAX_RULES) throw new MappingError(`${name}: header rules must be a list of at most ${MAX_RULES}`);
  return value.map((entry) => {
    const raw = entry as { op?: unknown; name?: unknown; value?: unknown } | null;
    if (typeof raw !== 'object' || raw === null || typeof raw.op !== 'string' || typeof raw.name !== 'string' || (raw.value !== undefined && typeof raw.value !== 'string')) {
      throw new MappingError(`${name}: a header rule is { op, name, value? }`);
    }
    const rule: HeaderRule = { op: raw.op as HeaderRule['op'], name: raw.name };
    if (!['set', 'add', 'add_if_missing', 'remove'].includes(rule.op)) throw new MappingError(`${name}: unknown header rule op "${rule.op.slice(0, 20)}"`);
    if (raw.value !== undefined) rule.value = raw.value;
    return rule;
  });
}

/** Same name, kind, port, domains, path and http rules: two clients serving it form one group. */
export function sameShape(a: PublicMapping, b: PublicMapping): boolean {
  return (
    a.kind === b.kind &&
    a.remotePort === b.remotePort &&
    (a.path ?? '/') === (b.path ?? '/') &&
    (a.domains ?? []).join(',') === (b.domains ?? []).join(',') &&
    JSON.stringify([a.basicAuth, a.requestHeaders, a.responseHeaders]) === JSON.stringify([b.basicAuth, b.requestHeaders, b.responseHeaders])
  );
}

// ---- PROXY protocol ---------------------------------------------------------

const V2_SIGNATURE = Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a);

/** The header a local service reads first to learn the real visitor (HAProxy's PROXY protocol). */
export function proxyProtocolHeader(version: 1 | 2, source: { address: string; port: number }, destination: { address: string; port: number }): Uint8Array {
  const src = unmap(source.address);
  const dst = unmap(destination.address);
  const family = isIP(src) === 6 || isIP(dst) === 6 ? 6 : isIP(src) === 4 && isIP(dst) === 4 ? 4 : 0;
  if (version === 1) {
    if (family === 0) return new TextEncoder().encode('PROXY UNKNOWN\r\n');
    const s = family === 6 && isIP(src) === 4 ? `::ffff:${src}` : src;
    const d = family === 6 && isIP(dst) === 4 ? `::ffff:${dst}` : dst;
    return new TextEncoder().encode(`PROXY TCP${family} ${s} ${d} ${source.port} ${destination.port}\r\n`);
  }
  if (family === 0) {
    const out = new Uint8Array(16);
    out.set(V2_SIGNATURE, 0);
    out[12] = 0x20; // version 2, LOCAL
    return out;
  }
  const size = family === 4 ? 12 : 36;
  const out = new Uint8Array(16 + size);
  out.set(V2_SIGNATURE, 0);
  out[12] = 0x21; // version 2, PROXY
  out[13] = family === 4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  out[14] = size >> 8;
  out[15] = size & 0xff;
  const addressBytes = family === 4 ? 4 : 16;
  out.set(ipToBytes(src, family), 16);
  out.set(ipToBytes(dst, family), 16 + addressBytes);
  const ports = 16 + 2 * addressBytes;
  out[ports] = source.port >> 8;
  out[ports + 1] = source.port & 0xff;
  out[ports + 2] = destination.port >> 8;
  out[ports + 3] = destination.port & 0xff;
  return out;
}

/** IPv4-mapped IPv6 (as dual-stack sockets report IPv4 peers) read as IPv4. */
function unmap(address: string): string {
  const parsed = parseIp(address);
  if (!parsed || parsed.v6) return address;
  const v = Number(parsed.value);
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

function ipToBytes(ip: string, family: 4 | 6): Uint8Array {
  const parsed = parseIp(ip)!;
  const size = family === 4 ? 4 : 16;
  // An IPv4 source on an IPv6 header is written IPv4-mapped.
  let value = family === 6 && !parsed.v6 ? 0xffff00000000n | parsed.value : parsed.value;
  const out = new Uint8Array(size);
  for (let i = size - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}
