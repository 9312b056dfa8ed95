/**
 * Conversion from the configuration format of the original Rust wmproxy
 * (tickbh/wmproxy): `[proxy]` (bind_addr, flag, username, password,
 * udp_bind...), `[http]` with `[[http.upstream]]`, `[[http.server]]` and
 * `[[http.server.location]]`, and `[stream]` with `[[stream.upstream]]` and
 * `[[stream.server]]`.
 *
 * Nothing is dropped silently, and nothing is opened silently:
 * - every value read is type-checked; a wrong type is an error naming its key
 *   path, what was expected and what was found, as in the native format;
 * - a key the original knows but wmproxy has no equivalent for gives a
 *   warning naming it;
 * - a key the original does not know is an error (with "did you mean"): serde
 *   ignores it there, but a misspelt `usename` would leave a proxy open;
 * - what would make the result more open than the original is an error: a
 *   proxy reachable from other hosts without username and password, access
 *   lists (`allow_ip`, `deny_ip`) and match conditions without an equivalent.
 *
 * The original's per-server `fall_times`, `rise_times` and `fail_timeout`
 * (its passive health accounting) become the passive checks:
 * `health.passive.consecutive_failures` = fall_times, `health.passive.window`
 * and `health.passive.ejection_time` = fail_timeout, and `health.rise` =
 * rise_times. Every upstream server also gets the default active TCP check,
 * which is what the original meant to do.
 */
import { isIP } from 'node:net';
import { isLoopback, parseAddress, parseCidr } from '@wmproxy/core-net';
import { ConfigError, describeValue, IssueList, joinPath, type ConfigIssue } from './errors.js';
import type { ConfigFile } from './schema.js';
import { unknownKey } from './validate.js';

type Table = Record<string, unknown>;
type Out = Record<string, unknown>;
type Path = ReadonlyArray<string | number>;

const isTable = (value: unknown): value is Table => typeof value === 'object' && value !== null && !Array.isArray(value);
/** serde reads a null (YAML `key:`) as an absent Option, so the converter does too. */
const absent = (value: unknown): value is undefined | null => value === undefined || value === null;

/** True when `data` looks like the original wmproxy's format rather than this one. */
export function isOriginalFormat(data: unknown): boolean {
  if (!isTable(data)) return false;
  if (isTable(data.http)) return true;
  if (isTable(data.proxy) || isTable(data.stream)) return true;
  if (typeof data.control === 'string') return true;
  return 'bind_addr' in data || 'flag' in data || 'disable_stdout' in data;
}

export interface ConversionOptions {
  /** File named in issues (default `<inline>`). */
  file?: string;
  /** Return the issues instead of throwing a ConfigError (for `wmproxy convert`, which prints a complete conversion even when it is refused). */
  keepGoing?: boolean;
}

export interface ConversionResult {
  config: ConfigFile;
  warnings: string[];
  /** Wrongly typed values, unknown keys and refused conversions (only with `keepGoing`; otherwise they are thrown). */
  issues: ConfigIssue[];
  /** False when an issue dropped a value, so that `config` is not the file's conversion; true when every value was converted (issues then only refuse an open proxy). */
  complete: boolean;
  /** Key path in `config` → key path in the original file it came from, so that later errors name what the author wrote. */
  origins: ReadonlyMap<string, string>;
}

const DURATION = /^(\d+(\.\d+)?(ms|s|m|h|d))+$/;
const EXPECT = {
  address: 'an address such as 127.0.0.1:8090, [::1]:8090 or :8090',
  addresses: 'addresses such as "127.0.0.1:80" or "0.0.0.0:80 [::]:80" (separated by spaces or commas)',
  duration: 'a duration such as 10s, 500ms, 2min, 1h or a number of seconds',
  flag: 'a flag such as 7 or "http https socks5" (1 http, 2 https, 4 socks5)',
  headers: 'a list of header rules such as "proxy x-real-ip {client_ip}", "+ name value" or ["-", "name"]',
  ips: 'IP addresses or CIDR ranges separated by spaces, such as "127.0.0.1 10.0.0.0/8"',
} as const;
const RATE = 'no equivalent conversion: set rate_limit in [[server]] or [[server.location]] of the converted file (ignored)';
const IGNORED = 'no equivalent in wmproxy (ignored)';
/** `[proxy]` keys of the encrypted link between two proxies (see `hops`). */
const CENTER = 'applies to the center tunnel, which needs center_addr (a tunnel server) or mappings (a tunnel client) (ignored)';
const HOP_KEYS = ['server', 'ts', 'tc', 'two_way_tls', 'cert', 'key', 'domain'];
/** Keys of the original's CommonConfig that have no equivalent (allow_ip and deny_ip are refused, see `common`). */
const COMMON_NOTES: Record<string, string> = {
  max_read_buf: 'no equivalent: buffers are bounded by the engine (ignored)',
  rate_limit: 'no equivalent: a bandwidth limit is not part of wmproxy (ignored)',
  limit_req: RATE,
  client_write_timeout: IGNORED,
  client_timeout: IGNORED,
  proxy_timeout: 'not converted: set reverse.request_timeout in the converted file (ignored)',
  log_format: 'custom log formats have no equivalent: wmproxy writes nginx "combined" or JSON (log.access_format)',
  domain: IGNORED,
  match_names: 'named matchers have no equivalent (ignored)',
};
const COMMON_KEYS = ['proxy_connect_timeout', 'proxy_read_timeout', 'proxy_write_timeout', 'client_read_timeout', 'client_ka_timeout', 'access_log', 'error_log', 'log_names', 'allow_ip', 'deny_ip', 'proxy_url', ...Object.keys(COMMON_NOTES)];
const LEVELS: Record<string, string> = { trace: 'debug', debug: 'debug', info: 'info', warn: 'warn', error: 'error', off: 'silent' };

class Converter {
  readonly warnings: string[] = [];
  readonly issues: IssueList;
  readonly origins = new Map<string, string>();
  complete = true;
  private readonly upstreams: Out[] = [];
  private readonly upstreamNames = new Set<string>();
  private passive: { fall?: number; rise?: number; failTimeout?: string } = {};
  private readonly reverse: Out = {};
  private tunnelOut: Out | undefined;
  private readonly log: Out = {};
  private logNames: Record<string, string> = {};

  constructor(file: string) {
    this.issues = new IssueList(file);
  }

  warn(path: Path, why: string): void {
    const at = joinPath(path);
    this.warnings.push(at === '' ? why : `${at}: ${why}`);
  }

  /** An issue; `drops` says whether a value was left out of the conversion because of it. */
  private error(path: Path, expected: string, found: string, drops = true): void {
    this.issues.add(path, expected, found);
    if (drops) this.complete = false;
  }

  private wrong(path: Path, expected: string, value: unknown): undefined {
    this.error(path, expected, describeValue(value));
    return undefined;
  }

  /** `native` (a key path of the converted file) came from `original`. */
  private from(native: Path, original: Path): void {
    this.origins.set(joinPath(native), joinPath(original));
  }

  /** Forget the origins under `native` (a converted item that was then dropped). */
  private forget(native: Path): void {
    const prefix = joinPath(native);
    for (const key of [...this.origins.keys()]) {
      if (key === prefix || key.startsWith(`${prefix}.`) || key.startsWith(`${prefix}[`)) this.origins.delete(key);
    }
  }

  /** Warn for each known key without an equivalent (`notes`); an error for each key the original does not know either. */
  private rest(table: Table, path: Path, handled: readonly string[], notes: Record<string, string> = {}): void {
    const known = [...handled, ...Object.keys(notes)];
    for (const key of Object.keys(table)) {
      if (handled.includes(key)) continue;
      if (Object.hasOwn(notes, key)) this.warn([...path, key], notes[key]!);
      else {
        const { expected, found } = unknownKey(key, known);
        this.error([...path, key], expected, found);
      }
    }
  }

  // ------------------------------------------------------------ typed readers

  private string(table: Table, key: string, path: Path, nonEmpty = false): string | undefined {
    const value = table[key];
    if (absent(value)) return undefined;
    if (typeof value !== 'string') return this.wrong([...path, key], 'a string', value);
    if (nonEmpty && value.trim() === '') return this.wrong([...path, key], 'a non-empty string', value);
    return value;
  }

  private boolean(table: Table, key: string, path: Path): boolean | undefined {
    const value = table[key];
    if (absent(value)) return undefined;
    if (typeof value !== 'boolean') return this.wrong([...path, key], 'true or false', value);
    return value;
  }

  private integer(table: Table, key: string, path: Path, min: number, max?: number): number | undefined {
    const value = table[key];
    if (absent(value)) return undefined;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || (max !== undefined && value > max)) {
      return this.wrong([...path, key], max === undefined ? `an integer of at least ${min}` : `an integer from ${min} to ${max}`, value);
    }
    return value;
  }

  private table(table: Table, key: string, path: Path): Table | undefined {
    const value = table[key];
    if (absent(value)) return undefined;
    if (!isTable(value)) return this.wrong([...path, key], 'a table', value);
    return value;
  }

  /** A list of tables (`[[key]]`); a single table is taken as a list of one. */
  private tables(table: Table, key: string, path: Path): Array<{ value: Table; at: Path }> {
    const value = table[key];
    if (absent(value)) return [];
    if (isTable(value)) return [{ value, at: [...path, key] }];
    if (!Array.isArray(value)) {
      this.wrong([...path, key], 'a list of tables', value);
      return [];
    }
    const out: Array<{ value: Table; at: Path }> = [];
    value.forEach((item, index) => {
      if (isTable(item)) out.push({ value: item, at: [...path, key, index] });
      else this.wrong([...path, key, index], 'a table', item);
    });
    return out;
  }

  private strings(table: Table, key: string, path: Path): string[] | undefined {
    const value = table[key];
    if (absent(value)) return undefined;
    if (!Array.isArray(value)) return this.wrong([...path, key], 'a list of strings', value);
    const bad = value.findIndex((item) => typeof item !== 'string');
    if (bad >= 0) return this.wrong([...path, key, bad], 'a string', value[bad]);
    return value as string[];
  }

  /** The original's durations: a number of seconds, `10s`, `500ms`, `2min`, `1h` (and this format's `2m`, `1m30s`). */
  private duration(table: Table, key: string, path: Path): string | undefined {
    const value = table[key];
    if (absent(value)) return undefined;
    if (typeof value === 'number') {
      if (Number.isFinite(value) && value >= 0 && /^\d+(\.\d+)?$/.test(String(value))) return `${value}s`;
    } else if (typeof value === 'string') {
      const text = value.trim().toLowerCase();
      if (/^\d+(\.\d+)?$/.test(text)) return `${text}s`;
      const minutes = /^(\d+)min$/.exec(text);
      if (minutes) return `${minutes[1]}m`;
      if (DURATION.test(text)) return text;
    }
    return this.wrong([...path, key], EXPECT.duration, value);
  }

  /** One address (the original's SocketAddr). */
  private address(table: Table, key: string, path: Path): string | undefined {
    const value = table[key];
    if (absent(value)) return undefined;
    if (typeof value !== 'string') return this.wrong([...path, key], EXPECT.address, value);
    try {
      parseAddress(value);
      return value.trim();
    } catch {
      return this.wrong([...path, key], EXPECT.address, value);
    }
  }

  /** Addresses separated by spaces or commas (the original's WrapVecAddr), or a list of them. */
  private addresses(table: Table, key: string, path: Path): string[] | undefined {
    const value = table[key];
    if (absent(value)) return undefined;
    const parts = typeof value === 'string' ? [value] : Array.isArray(value) && value.every((item) => typeof item === 'string') ? (value as string[]) : undefined;
    if (!parts) return this.wrong([...path, key], EXPECT.addresses, value);
    const list = parts.flatMap((part) => part.split(/[\s,]+/).filter(Boolean));
    if (list.length === 0) return this.wrong([...path, key], EXPECT.addresses, value);
    for (const address of list) {
      try {
        parseAddress(address);
      } catch {
        return this.wrong([...path, key], EXPECT.addresses, value);
      }
    }
    return list;
  }

  /** The original's IpSets: addresses or CIDR ranges separated by spaces, as CIDR ranges that match what the original matches. */
  private ips(table: Table, key: string, path: Path): string[] | undefined {
    const value = this.string(table, key, path);
    if (value === undefined) return undefined;
    const list = value.split(/\s+/).filter(Boolean);
    try {
      if (list.length === 0) throw new Error('empty');
      // The original compares an IPv6 address, or one with prefix 0, as a single address: "/0" must not become every client.
      return list.map((entry) => {
        parseCidr(entry);
        const [ip, prefix] = entry.split('/');
        return prefix === undefined || Number(prefix) === 0 || isIP(ip!) === 6 ? ip! : entry;
      });
    } catch {
      return this.wrong([...path, key], EXPECT.ips, value);
    }
  }

  // ------------------------------------------------------------ sections

  convert(data: Table): ConfigFile {
    const out: Out = {};
    const top = ['proxy', 'http', 'stream', 'control', 'disable_stdout', 'disable_control', 'pidfile', 'default_level'];
    const control: Out = {};
    const listen = this.address(data, 'control', []);
    if (listen !== undefined) {
      control.listen = listen;
      this.from(['control'], ['control']);
      this.from(['control', 'listen'], ['control']);
    }
    if (this.boolean(data, 'disable_control', []) === true) {
      control.enabled = false;
      this.from(['control', 'enabled'], ['disable_control']);
    }
    if (Object.keys(control).length > 0) out.control = control;
    if (this.boolean(data, 'disable_stdout', []) !== undefined) this.warn(['disable_stdout'], 'no equivalent: set log.file to a path to keep logs off the terminal');
    if (this.string(data, 'pidfile', []) !== undefined) this.warn(['pidfile'], 'no equivalent: wmproxy writes no pid file (ignored)');
    const level = this.string(data, 'default_level', []);
    if (level !== undefined) {
      const mapped = LEVELS[level.trim().toLowerCase()];
      if (mapped === undefined) this.wrong(['default_level'], `one of ${Object.keys(LEVELS).map((name) => JSON.stringify(name)).join(', ')}`, level);
      else {
        this.log.level = mapped;
        this.from(['log', 'level'], ['default_level']);
      }
    }
    const proxies: Out[] = [];
    const proxy = this.table(data, 'proxy', []);
    if (proxy) proxies.push(this.proxy(proxy, ['proxy'], ['proxy', proxies.length]));
    // A bare proxy file (the original's server.toml/client.toml): the keys are at the top level.
    const bareKeys = Object.keys(data).filter((key) => !top.includes(key));
    if (bareKeys.length > 0) {
      const bare = Object.fromEntries(bareKeys.map((key) => [key, data[key]]));
      if ('bind_addr' in data || 'bind' in data || 'flag' in data) proxies.push(this.proxy(bare, [], ['proxy', proxies.length]));
      else this.rest(bare, [], top);
    }
    const http = this.table(data, 'http', []);
    if (http) this.http(http, out);
    const stream = this.table(data, 'stream', []);
    if (stream) this.stream(stream, out);
    if (proxies.length > 0) out.proxy = proxies;
    if (this.tunnelOut) out.tunnel = this.tunnelOut;
    if (this.upstreams.length > 0) out.upstream = this.upstreams;
    if (Object.keys(this.reverse).length > 0) out.reverse = this.reverse;
    if (Object.keys(this.log).length > 0) out.log = this.log;
    const passive: Out = {};
    const health: Out = {};
    if (this.passive.fall !== undefined) passive.consecutive_failures = this.passive.fall;
    if (this.passive.failTimeout !== undefined) {
      passive.window = this.passive.failTimeout;
      passive.ejection_time = this.passive.failTimeout;
    }
    if (this.passive.rise !== undefined) health.rise = this.passive.rise;
    if (Object.keys(passive).length > 0) health.passive = passive;
    if (Object.keys(health).length > 0) out.health = health;
    return reorder(out) as ConfigFile;
  }

  /** Bits of the original's `flag`: a number, or the words http, https, socks5 (tcp, udp) as its FromStr reads them. */
  private flag(value: unknown, path: Path): number | undefined {
    const words: Record<string, number> = { http: 1, https: 2, socks5: 4, tcp: 8, udp: 16 };
    let bits: number | undefined;
    if (typeof value === 'number') bits = value;
    else if (typeof value === 'string') {
      const text = value.trim().toLowerCase();
      if (/^\d+$/.test(text)) bits = Number(text);
      else if (text !== '') {
        bits = 0;
        for (const word of text.split(/[\s,|]+/)) {
          if (!Object.hasOwn(words, word)) return this.wrong(path, EXPECT.flag, value);
          bits |= words[word]!;
        }
      }
    }
    if (bits === undefined || !Number.isInteger(bits) || bits < 1 || bits > 255) return this.wrong(path, EXPECT.flag, value);
    return bits;
  }

  private proxy(proxy: Table, base: Path, native: Path): Out {
    const out: Out = {};
    this.from(native, base);
    const keys = (['bind_addr', 'bind'] as const).filter((key) => !absent(proxy[key]));
    // The original renamed bind_addr to bind; a file with both is ambiguous.
    if (keys.length === 2) this.error([...base, 'bind'], 'only one of bind_addr and bind', describeValue(proxy.bind));
    const bindKey = keys[0];
    let listen = '127.0.0.1:8090';
    if (bindKey) {
      const address = this.address(proxy, bindKey, base);
      if (address !== undefined) {
        listen = address;
        this.from([...native, 'listen'], [...base, bindKey]);
      }
    }
    out.listen = listen;
    if (!absent(proxy.flag)) {
      const bits = this.flag(proxy.flag, [...base, 'flag']);
      if (bits !== undefined) {
        const protocols = [bits & 1 ? 'http' : '', bits & 2 ? 'https' : '', bits & 4 ? 'socks5' : ''].filter(Boolean);
        // Serving all three when only tcp/udp were asked for would open more than the file says.
        if (protocols.length === 0) this.wrong([...base, 'flag'], 'a flag with http (1), https (2) or socks5 (4)', proxy.flag);
        else {
          if (bits & ~7) this.warn([...base, 'flag'], 'the tcp/udp flags (8, 16) have no equivalent on a proxy port: use [[stream]]');
          out.protocols = protocols;
          this.from([...native, 'protocols'], [...base, 'flag']);
        }
      }
    }
    const username = this.string(proxy, 'username', base, true);
    const password = this.string(proxy, 'password', base);
    if (username !== undefined && password !== undefined) {
      out.users = { [username]: password };
      this.from([...native, 'users'], [...base, 'username']);
      this.from([...native, 'users', username], [...base, 'password']);
    } else {
      for (const [key, other] of [['username', 'password'], ['password', 'username']] as const) {
        if (absent(proxy[key]) && !absent(proxy[other])) this.error([...base, key], `a string (${other} is set: username and password come together)`, 'nothing');
      }
    }
    const udpBind = this.string(proxy, 'udp_bind', base);
    if (udpBind !== undefined) {
      if (isIP(udpBind.trim()) === 0) this.wrong([...base, 'udp_bind'], 'an IP address', udpBind);
      else {
        out.udp_bind = udpBind.trim();
        this.from([...native, 'udp_bind'], [...base, 'udp_bind']);
      }
    }
    // The original's [proxy] is either a center tunnel (center_addr, mappings, center = true) or a proxy
    // with encrypted hops (server as the parent, ts, tc, two_way_tls): the same keys mean different things.
    const tunnelMode = !absent(proxy.center_addr) || !absent(proxy.mappings) || proxy.center === true;
    const mutualTls = tunnelMode ? false : this.hops(proxy, base, native, out);
    // The original serves anyone without credentials; wmproxy refuses an open proxy unless told, and so does the conversion.
    // Client certificates (tc with two_way_tls) are credentials too.
    const noCredentials = absent(proxy.username) && absent(proxy.password) && !mutualTls;
    if (bindKey && noCredentials && exposed(listen)) {
      this.error(
        [...base, bindKey],
        'a loopback address, or username and password (an open proxy is never converted silently: to keep one, convert the file with `wmproxy convert` and set allow or insecure_open = true in its [[proxy]])',
        `${describeValue(listen)}, reachable from other hosts without username and password`,
        false,
      );
    }
    const notes: Record<string, string> = { server_id: IGNORED };
    if (tunnelMode) {
      const tunnelKeys = this.tunnel(proxy, base, username, password);
      this.rest(proxy, base, ['bind_addr', 'bind', 'flag', 'username', 'password', 'udp_bind', ...tunnelKeys], notes);
    } else {
      for (const key of ['center', 'mode', 'map_http_bind', 'map_https_bind', 'map_tcp_bind', 'map_proxy_bind', 'map_cert', 'map_key']) notes[key] = CENTER;
      this.rest(proxy, base, ['bind_addr', 'bind', 'flag', 'username', 'password', 'udp_bind', ...HOP_KEYS], notes);
    }
    return out;
  }

  /**
   * The encrypted link between two proxies: `server` (the parent) with `ts`
   * (reach it over TLS), `tc` (serve the port over TLS), `two_way_tls`
   * (mutual TLS) and the one `cert`/`key` pair the original uses for all of
   * it (the port's certificate with tc, the one shown to the server with ts,
   * and the CA trusted for the other side either way), `domain` (the name
   * expected in the server's certificate). Returns whether clients must
   * show a certificate.
   */
  private hops(proxy: Table, base: Path, native: Path, out: Out): boolean {
    const server = this.string(proxy, 'server', base, true);
    const ts = this.boolean(proxy, 'ts', base) ?? false;
    const tc = this.boolean(proxy, 'tc', base) ?? false;
    const twoWay = this.boolean(proxy, 'two_way_tls', base) ?? false;
    const cert = this.string(proxy, 'cert', base, true);
    const key = this.string(proxy, 'key', base, true);
    const domain = this.string(proxy, 'domain', base, true);
    let mutual = false;
    if (tc) {
      // The original falls back to a certificate compiled into it; serving plain text instead would silently drop the encryption.
      if (cert === undefined || key === undefined) this.error([...base, 'tc'], 'cert and key with tc = true (wmproxy has no built-in certificate)', 'no cert/key');
      else {
        out.tls = { cert, key, ...(twoWay ? { client_ca: cert } : {}) };
        mutual = twoWay;
        this.from([...native, 'tls'], [...base, 'tc']);
      }
    }
    if (server !== undefined) {
      const url = server.includes('://') ? server : `${ts ? 'https' : 'http'}://${server}`;
      out.parent = url;
      this.from([...native, 'parent'], [...base, 'server']);
      if (ts) {
        const tls: Out = {};
        if (cert !== undefined) tls.ca = cert;
        if (twoWay && cert !== undefined && key !== undefined) Object.assign(tls, { cert, key });
        if (domain !== undefined) tls.server_name = domain;
        if (Object.keys(tls).length > 0) {
          out.parent_tls = tls;
          this.from([...native, 'parent_tls'], [...base, 'ts']);
        }
      }
    } else if (ts) this.warn([...base, 'ts'], 'no server to reach over TLS (ignored)');
    if (twoWay && !tc && !(ts && server !== undefined)) this.warn([...base, 'two_way_tls'], 'neither tc nor ts with a server: nothing to authenticate (ignored)');
    return mutual;
  }

  /**
   * The original's center tunnel, kept in `[proxy]`: `server` (+ `ts`,
   * `two_way_tls`, `cert`/`key`, `domain`, `[[proxy.mappings]]`) makes a tunnel
   * client; `center_addr` (+ `tc`, `cert`/`key`, `map_tcp_bind`,
   * `map_proxy_bind`) a tunnel server. Its plaintext username/password become
   * the challenge/response token `username:password` on both sides, so two
   * converted files still match. Returns the keys it handled.
   */
  private tunnel(proxy: Table, base: Path, username: string | undefined, password: string | undefined): string[] {
    const handled = ['center', 'mode'];
    const isClient = !absent(proxy.server);
    const isServer = !absent(proxy.center_addr);
    if (!isClient && !isServer) {
      for (const key of ['center', 'mode', 'ts', 'tc', 'two_way_tls', 'domain', 'cert', 'key', 'mappings', 'map_http_bind', 'map_https_bind', 'map_tcp_bind', 'map_proxy_bind', 'map_cert', 'map_key']) {
        if (!absent(proxy[key])) this.warn([...base, key], 'applies to the center tunnel, which needs server (client) or center_addr (server) (ignored)');
        handled.push(key);
      }
      return handled;
    }
    this.boolean(proxy, 'center', base);
    const token = username !== undefined && password !== undefined ? `${username}:${password}` : password;
    const tokenPath = [...base, password !== undefined ? 'password' : 'username'];
    if (token === undefined) this.error([...base, 'password'], 'username and password: the tunnel token (wmproxy never runs an unauthenticated tunnel)', 'nothing');
    const tunnel: Out = (this.tunnelOut ??= {});
    const cert = this.string(proxy, 'cert', base);
    const key = this.string(proxy, 'key', base);
    handled.push('cert', 'key', 'server', 'center_addr', 'ts', 'tc', 'two_way_tls', 'domain', 'mappings', 'map_http_bind', 'map_https_bind', 'map_tcp_bind', 'map_proxy_bind', 'map_cert', 'map_key');
    const tcpBind = this.address(proxy, 'map_tcp_bind', base);
    const proxyBind = this.address(proxy, 'map_proxy_bind', base);
    const portOf = (address: string | undefined): number | undefined => (address === undefined ? undefined : Number(address.slice(address.lastIndexOf(':') + 1)));
    if (isServer) {
      const listen = this.address(proxy, 'center_addr', base);
      const server: Out = {};
      if (listen !== undefined) {
        server.listen = listen;
        this.from(['tunnel', 'server', 'listen'], [...base, 'center_addr']);
      }
      if (token !== undefined) {
        server.token = token;
        this.from(['tunnel', 'server', 'token'], tokenPath);
      }
      if (this.boolean(proxy, 'tc', base) === true) {
        if (cert !== undefined && key !== undefined) {
          server.cert = cert;
          server.key = key;
          this.from(['tunnel', 'server', 'cert'], [...base, 'cert']);
          this.from(['tunnel', 'server', 'key'], [...base, 'key']);
        }
      } else {
        server.plain = true;
        this.warn([...base, 'tc'], 'the original center listened without TLS: converted as plain = true (the token is still never sent in clear; set tc = true or remove plain for TLS)');
      }
      const ports = [portOf(tcpBind), portOf(proxyBind)].filter((port): port is number => port !== undefined);
      if (ports.length > 0) server.allow_ports = ports;
      const bindHost = tcpBind ?? proxyBind;
      if (bindHost !== undefined) {
        const host = bindHost.slice(0, bindHost.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
        if (host !== '') server.public_host = host;
      }
      for (const k of ['map_http_bind', 'map_https_bind', 'map_cert', 'map_key']) {
        if (!absent(proxy[k])) this.warn([...base, k], 'http/https tunnel mappings are served through the reverse proxy; not converted yet (ignored)');
      }
      tunnel.server = server;
      this.from(['tunnel', 'server'], base);
    }
    if (isClient) {
      const address = this.string(proxy, 'server', base, true);
      const client: Out = {};
      if (address !== undefined) {
        client.server = address.trim();
        this.from(['tunnel', 'client', 'server'], [...base, 'server']);
      }
      if (token !== undefined) {
        client.token = token;
        this.from(['tunnel', 'client', 'token'], tokenPath);
      }
      if (this.boolean(proxy, 'ts', base) === true) {
        const domain = this.string(proxy, 'domain', base);
        if (domain !== undefined) client.servername = domain;
        if (this.boolean(proxy, 'two_way_tls', base) === true && cert !== undefined && key !== undefined) {
          client.cert = cert;
          client.key = key;
        }
      } else {
        client.plain = true;
        this.warn([...base, 'ts'], 'the original client connected without TLS: converted as plain = true (set ts = true for TLS)');
      }
      const mappings: Out[] = [];
      for (const { value, at } of this.tables(proxy, 'mappings', base)) {
        const name = this.string(value, 'name', at, true);
        const mode = this.string(value, 'mode', at, true);
        const local = this.string(value, 'local_addr', at);
        const domain = this.string(value, 'domain', at);
        const request: string[] = [];
        const response: string[] = [];
        if (mode === 'http') this.headers(value, at, request, response);
        else if (!absent(value.headers)) this.warn([...at, 'headers'], `header rules apply to http mappings; a ${String(mode)} mapping passes its bytes through (ignored)`);
        this.rest(value, at, ['name', 'mode', 'local_addr', 'domain', 'headers']);
        if (name === undefined || mode === undefined) continue;
        const mapping: Out = { name, kind: mode };
        if (local !== undefined) mapping.local = local;
        if (mode === 'tcp' || mode === 'proxy') {
          const port = portOf(mode === 'tcp' ? tcpBind : proxyBind);
          if (port === undefined) {
            this.error(at, `the public port of this ${mode} mapping: the server's map_${mode}_bind (add remote_port to the converted [[tunnel.client.mappings]])`, 'none in this file');
            continue;
          }
          mapping.remote_port = port;
        } else if (mode === 'http' || mode === 'https') {
          if (domain === undefined) {
            this.error([...at, 'domain'], `a domain for an ${mode} mapping`, 'nothing');
            continue;
          }
          mapping.domains = [domain];
          if (request.length > 0) mapping.request_headers = request;
          if (response.length > 0) mapping.response_headers = response;
        } else {
          this.wrong([...at, 'mode'], 'one of "http", "https", "tcp", "proxy"', mode);
          continue;
        }
        this.from(['tunnel', 'client', 'mappings', mappings.length], at);
        mappings.push(mapping);
      }
      if (mappings.length === 0) this.error([...base, 'mappings'], 'at least one mapping', 'none');
      client.mappings = mappings;
      // The original's proxy mapping exposes this side's proxy, which asks for the same username and password.
      if (mappings.some((mapping) => mapping.kind === 'proxy') && username !== undefined && password !== undefined) {
        client.proxy_users = { [username]: password };
        this.from(['tunnel', 'client', 'proxy_users'], [...base, 'username']);
      }
      tunnel.client = client;
      this.from(['tunnel', 'client'], base);
    }
    return handled;
  }

  /** Keys every original http/server/location level may carry ("CommonConfig"). */
  private common(table: Table, path: Path, level: 'http' | 'server' | 'location'): string[] {
    const handled: string[] = [];
    const names = this.table(table, 'log_names', path);
    if (table.log_names !== undefined) handled.push('log_names');
    if (names) {
      for (const [name, target] of Object.entries(names)) {
        if (typeof target === 'string') this.logNames[name] = target;
        else this.wrong([...path, 'log_names', name], 'a string such as "logs/access.log trace"', target);
      }
    }
    const hoist = (key: string, target: string) => {
      if (table[key] === undefined) return;
      handled.push(key);
      const value = this.duration(table, key, path);
      if (value === undefined) return;
      if (this.reverse[target] === undefined) {
        this.reverse[target] = value;
        this.from(['reverse', target], [...path, key]);
        if (level !== 'http') this.warn([...path, key], `applies to every server as reverse.${target} (timeouts are global in wmproxy)`);
      } else if (this.reverse[target] !== value) this.warn([...path, key], `differs from reverse.${target} = ${String(this.reverse[target])}; timeouts are global in wmproxy (ignored)`);
    };
    hoist('proxy_connect_timeout', 'connect_timeout');
    hoist('proxy_read_timeout', 'read_timeout');
    hoist('proxy_write_timeout', 'idle_timeout');
    hoist('client_read_timeout', 'client_body_timeout');
    hoist('client_ka_timeout', 'keepalive_timeout');
    for (const key of ['access_log', 'error_log']) {
      if (table[key] === undefined) continue;
      handled.push(key);
      const value = this.string(table, key, path, true);
      if (value !== undefined) this.logTarget(key, value, [...path, key], level);
    }
    // Dropping an access list would let every client in: refused, not warned.
    for (const key of ['allow_ip', 'deny_ip']) {
      if (table[key] === undefined) continue;
      handled.push(key);
      this.error(
        [...path, key],
        `no ${key} (wmproxy has no equivalent, and dropping it would let every client in: restrict access another way, such as a firewall or an internal listen address, then remove it)`,
        describeValue(table[key]),
      );
    }
    return handled;
  }

  /** `access_log = "access main"` refers to `log_names.access = "logs/access.log trace"`. */
  private logTarget(key: string, value: string, path: Path, level: string): void {
    const [name, format] = value.trim().split(/\s+/);
    const target = Object.hasOwn(this.logNames, name!) ? this.logNames[name!]!.trim().split(/\s+/) : undefined;
    const file = target?.[0] ? target[0] : name!;
    const fileKey = key === 'access_log' ? 'access_log' : 'file';
    const written = file === 'stdout' ? '-' : file;
    if (this.log[fileKey] === undefined) {
      this.log[fileKey] = written;
      this.from(['log', fileKey], path);
    } else if (this.log[fileKey] !== written) this.warn(path, `one ${key} for the whole instance in wmproxy (log.${fileKey} = ${String(this.log[fileKey])}; ignored)`);
    if (format && key === 'access_log') this.warn(path, `log format "${format}": wmproxy writes nginx "combined" or JSON (log.access_format)`);
    if (key === 'error_log') {
      // `error_log = "error debug"`: the second word (or the log_names entry's) is the level.
      const mapped = LEVELS[(format ?? '').toLowerCase()] ?? LEVELS[(target?.[1] ?? '').toLowerCase()];
      if (mapped && mapped !== 'silent') {
        this.log.level = mapped;
        this.from(['log', 'level'], path);
      }
    }
    if (level !== 'http') this.warn(path, 'logs are global in wmproxy ([log])');
  }

  private http(http: Table, out: Out): void {
    const path = ['http'];
    const handled = ['server', 'upstream', ...this.common(http, path, 'http')];
    this.tables(http, 'upstream', path).forEach(({ value, at }) => this.upstream(value, at));
    const servers: Out[] = [];
    for (const { value, at } of this.tables(http, 'server', path)) servers.push(this.server(value, at, ['server', servers.length]));
    if (servers.length > 0) out.server = servers;
    this.rest(http, path, handled, { ...COMMON_NOTES, limit_req_zone: RATE, proxy_url: 'only a location proxies in wmproxy (ignored)' });
  }

  private upstream(upstream: Table, path: Path, prefix = ''): string | undefined {
    const given = this.string(upstream, 'name', path);
    let name = given !== undefined && given !== '' ? given : `upstream-${this.upstreams.length}`;
    if (this.upstreamNames.has(name)) {
      const renamed = `${prefix || 'dup-'}${name}`;
      this.warn([...path, 'name'], `"${name}" is already an upstream: renamed "${renamed}"`);
      name = renamed;
    }
    const native = ['upstream', this.upstreams.length];
    const servers: Array<Out | string> = [];
    for (const { value: server, at } of this.tables(upstream, 'server', path)) {
      const address = this.address(server, 'addr', at);
      if (address === undefined && absent(server.addr)) this.error([...at, 'addr'], `${EXPECT.address} (required)`, 'nothing');
      const weight = this.integer(server, 'weight', at, 1, 65535);
      const fall = this.integer(server, 'fall_times', at, 1);
      const rise = this.integer(server, 'rise_times', at, 1);
      const failTimeout = this.duration(server, 'fail_timeout', at);
      this.rest(server, at, ['addr', 'weight', 'fall_times', 'rise_times', 'fail_timeout'], { status: 'no equivalent: health comes from the checks (ignored)' });
      if (address === undefined) continue;
      this.from([...native, 'servers', servers.length], at);
      if (weight !== undefined) this.from([...native, 'servers', servers.length, 'weight'], [...at, 'weight']);
      servers.push(weight === undefined ? address : { address, weight });
      if (fall !== undefined) this.passiveValue('fall', fall, [...at, 'fall_times'], ['health', 'passive', 'consecutive_failures']);
      if (rise !== undefined) this.passiveValue('rise', rise, [...at, 'rise_times'], ['health', 'rise']);
      if (failTimeout !== undefined) this.passiveValue('failTimeout', failTimeout, [...at, 'fail_timeout'], ['health', 'passive', 'window'], ['health', 'passive', 'ejection_time']);
    }
    this.rest(upstream, path, ['name', 'server'], { bind: 'not needed: the stream server says tcp or udp (ignored)' });
    if (servers.length === 0) {
      this.forget(native);
      this.warn(path, 'no servers (upstream dropped)');
      return undefined;
    }
    this.from(native, path);
    if (given !== undefined) this.from([...native, 'name'], [...path, 'name']);
    this.upstreamNames.add(name);
    this.upstreams.push({ name, servers });
    return name;
  }

  private passiveValue(key: 'fall' | 'rise' | 'failTimeout', value: number | string, path: Path, ...natives: Path[]): void {
    const current = this.passive[key];
    if (current === undefined) {
      (this.passive as Record<string, unknown>)[key] = value;
      for (const native of natives) this.from(native, path);
    } else if (current !== value) this.warn(path, `passive checks are global in wmproxy; ${JSON.stringify(current)} from an earlier server is used`);
  }

  /** An upstream for `http://name` or `http://host:port`. */
  private upstreamFor(url: string, path: Path): string | undefined {
    const match = /^(https?):\/\/([^/\s]+)/i.exec(url.trim());
    if (!match) return this.wrong(path, 'an http:// or https:// URL, or the name of an upstream as http://NAME', url);
    const host = match[2]!;
    if (this.upstreamNames.has(host)) return host;
    const tls = match[1]!.toLowerCase() === 'https';
    const address = /:\d+$/.test(host) ? host : `${host}:${tls ? 443 : 80}`;
    try {
      parseAddress(address);
    } catch {
      return this.wrong(path, 'an http:// or https:// URL, or the name of an upstream as http://NAME', url);
    }
    this.from(['upstream', this.upstreams.length], path);
    this.upstreamNames.add(host);
    this.upstreams.push({ name: host, servers: [tls ? { address, tls: true } : address] });
    return host;
  }

  /** The original's header rules (`"proxy + name value"`, or the older `["proxy", "+", "name", "value"]`); a malformed one is an error, since a dropped rule may be a security header. */
  private headers(table: Table, path: Path, request: string[], response: string[]): void {
    const value = table.headers;
    if (absent(value)) return;
    if (!Array.isArray(value)) return void this.wrong([...path, 'headers'], EXPECT.headers, value);
    value.forEach((entry, index) => {
      const at = [...path, 'headers', index];
      const words = typeof entry === 'string' ? splitWords(entry) : Array.isArray(entry) && entry.every((word) => typeof word === 'string') ? [...(entry as string[])] : undefined;
      if (!words || words.length < 2) return void this.wrong(at, 'a header rule such as "proxy x-real-ip {client_ip}", "+ name value" or "- name"', entry);
      let target = response;
      if (words[0] === 'proxy') {
        target = request;
        words.shift();
      }
      const op = words[0] === '+' ? 'add' : words[0] === '-' ? 'remove' : words[0] === '?' ? 'add_if_missing' : undefined;
      if (op) words.shift();
      if (op === 'remove') {
        // The original ignores a value after "- name".
        if (words.length === 0) return void this.wrong(at, 'a header rule such as "- name"', entry);
        target.push(`remove ${words[0]}`);
        return;
      }
      if (words.length < 2) return void this.wrong(at, 'a header rule with a name and a value, such as "+ name value"', entry);
      target.push(`${op ?? 'set'} ${words[0]} ${words.slice(1).join(' ')}`);
    });
  }

  private server(server: Table, path: Path, native: Path): Out {
    const out: Out = {};
    this.from(native, path);
    const listen = this.addresses(server, 'bind_addr', path);
    if (listen === undefined && absent(server.bind_addr)) this.error([...path, 'bind_addr'], `${EXPECT.addresses} (required)`, 'nothing');
    out.listen = listen === undefined ? '127.0.0.1:80' : listen.length === 1 ? listen[0] : listen;
    if (listen !== undefined) this.from([...native, 'listen'], [...path, 'bind_addr']);
    const names = this.string(server, 'server_name', path)?.split(/\s+/).filter(Boolean) ?? [];
    if (names.length > 0) {
      out.server_name = names;
      this.from([...native, 'server_name'], [...path, 'server_name']);
    }
    const cert = this.string(server, 'cert', path, true);
    const key = this.string(server, 'key', path, true);
    if (cert !== undefined && key !== undefined) {
      out.tls = { cert, key };
      this.from([...native, 'tls'], [...path, 'cert']);
      this.from([...native, 'tls', 'cert'], [...path, 'cert']);
      this.from([...native, 'tls', 'key'], [...path, 'key']);
    } else {
      // Serving plain HTTP where the file asked for TLS is not a conversion.
      for (const [name, other] of [['cert', 'key'], ['key', 'cert']] as const) {
        if (absent(server[name]) && !absent(server[other])) this.error([...path, name], `a file name (${other} is set: cert and key come together)`, 'nothing');
      }
    }
    const request: string[] = [];
    const response: string[] = [];
    this.headers(server, path, request, response);
    if (request.length > 0) out.request_headers = request;
    if (response.length > 0) out.response_headers = response;
    // Upstreams nested in the server are global in wmproxy.
    this.tables(server, 'upstream', path).forEach(({ value, at }) => this.upstream(value, at));
    const upName = this.string(server, 'up_name', path) || undefined;
    const root = this.string(server, 'root', path) || undefined;
    // Before the locations: a server's timeouts and log names come before theirs.
    const common = this.common(server, path, 'server');
    const locations: Out[] = [];
    for (const { value, at } of this.tables(server, 'location', path)) {
      const where = [...native, 'location', locations.length];
      const converted = this.location(value, at, upName, root, path, where);
      if (converted) locations.push(converted);
      else this.forget(where);
    }
    if (locations.length === 0) {
      const where = [...native, 'location', 0];
      if (upName) {
        locations.push({ path: '/', upstream: upName });
        this.from(where, [...path, 'up_name']);
      } else if (root) {
        locations.push({ path: '/', static: { root } });
        this.from(where, [...path, 'root']);
      } else {
        locations.push({ path: '/', respond: { status: 404, body: 'not found\n' } });
        this.warn(path, 'no location, up_name or root: answers 404');
      }
    }
    out.location = locations;
    const handled = ['bind_addr', 'server_name', 'cert', 'key', 'headers', 'upstream', 'up_name', 'root', 'location', ...common];
    this.rest(server, path, handled, {
      ...COMMON_NOTES,
      is_ws: 'not needed: WebSocket upgrades are proxied by every location (ignored)',
      bind_ssl: 'not converted: add a [[server]] with tls and these addresses to the converted file (ignored)',
      bind_mode: 'HTTP servers are always tcp (ignored)',
      proxy_url: 'only a location proxies in wmproxy: set reverse_proxy in the locations (ignored)',
      rate_limit_nums: RATE,
      rate_limit_per: RATE,
    });
    return out;
  }

  private location(location: Table, path: Path, upName: string | undefined, serverRoot: string | undefined, serverPath: Path, native: Path): Out | undefined {
    const out: Out = {};
    this.from(native, path);
    const handled = ['rule', 'method', 'headers', 'up_name', 'reverse_proxy', 'proxy_pass', 'proxy_url', 'file_server', 'root', 'is_ws', 'upstream', 'static_response'];
    let named = false;
    const rule = location.rule;
    if (absent(rule)) this.error([...path, 'rule'], 'a path rule such as "/" or "/api" (required)', 'nothing');
    else if (typeof rule === 'string') named = this.rule(rule, out, [...path, 'rule'], native);
    else if (isTable(rule)) {
      const at = [...path, 'rule'];
      const rulePath = this.string(rule, 'path', at);
      if (rulePath !== undefined) named = this.rule(rulePath, out, [...at, 'path'], native);
      const method = this.string(rule, 'method', at, true);
      if (method !== undefined) {
        out.methods = methods(method);
        this.from([...native, 'methods'], [...at, 'method']);
      }
      const clients = this.ips(rule, 'client_ip', at);
      if (clients !== undefined) {
        out.client_ips = clients;
        this.from([...native, 'client_ips'], [...at, 'client_ip']);
      }
      // Dropping a condition would make the location match more than the file says.
      for (const key of ['host', 'scheme']) {
        if (absent(rule[key])) continue;
        this.error([...at, key], `no ${key} (a location cannot match on the ${key} in wmproxy: put it in a [[http.server]] of its own${key === 'host' ? ' with that server_name' : ''}, then remove it)`, describeValue(rule[key]));
      }
      this.rest(rule, at, ['path', 'method', 'client_ip', 'host', 'scheme'], { remote_ip: 'not checked by the original either (ignored)' });
    } else this.wrong([...path, 'rule'], 'a path rule such as "/api", or a table with path, method and client_ip', rule);
    const method = this.string(location, 'method', path, true);
    if (method !== undefined) {
      out.methods = methods(method);
      this.from([...native, 'methods'], [...path, 'method']);
    }
    this.boolean(location, 'is_ws', path);
    const request: string[] = [];
    const response: string[] = [];
    this.headers(location, path, request, response);
    if (request.length > 0) out.request_headers = request;
    if (response.length > 0) out.response_headers = response;
    this.tables(location, 'upstream', path).forEach(({ value, at }) => this.upstream(value, at));
    let urlKey: string | undefined;
    for (const key of ['reverse_proxy', 'proxy_pass', 'proxy_url']) {
      if (this.string(location, key, path) && urlKey === undefined) urlKey = key;
    }
    const locationRoot = this.string(location, 'root', path) || undefined;
    const ownUpName = this.string(location, 'up_name', path) || undefined;
    const staticResponse = this.string(location, 'static_response', path);
    const fs = this.table(location, 'file_server', path);
    const common = this.common(location, path, 'location');
    this.rest(location, path, [...handled, ...common], {
      ...COMMON_NOTES,
      try_paths: 'use static.try_files instead (ignored)',
      rate_limit_nums: RATE,
      rate_limit_per: RATE,
    });
    if (named) return undefined;
    // The original's order: file_server, then static_response, then the proxy target.
    if (fs) {
      const at = [...path, 'file_server'];
      const fsRoot = this.string(fs, 'root', at) || undefined;
      const root = fsRoot ?? locationRoot ?? serverRoot;
      const spec: Out = {};
      const browse = this.boolean(fs, 'browse', at);
      if (browse !== undefined) spec.browse = browse;
      const index = this.strings(fs, 'index', at);
      if (index !== undefined) spec.index = index;
      const precompressed = this.strings(fs, 'precompressed', at);
      if (precompressed !== undefined) spec.precompressed = precompressed.length > 0;
      const cors = this.boolean(fs, 'cors', at);
      if (cors !== undefined) spec.cors = cors;
      const notFound = this.string(fs, 'path404', at, true);
      if (notFound !== undefined) spec.not_found = notFound;
      const hide = this.strings(fs, 'hide', at);
      if (hide !== undefined) spec.hide = hide.map((entry) => `*${entry}*`);
      this.string(fs, 'prefix', at);
      this.rest(fs, at, ['root', 'browse', 'index', 'precompressed', 'cors', 'path404', 'hide', 'prefix'], {
        ext_mimetype: 'no equivalent: MIME types come from mime-db (ignored)',
        default_mimetype: 'no equivalent: unknown types are application/octet-stream (ignored)',
        cache_time: 'use static.cache_control rules instead (ignored)',
        disable_compress: 'no equivalent: on-the-fly compression is off unless configured (ignored)',
        robots: IGNORED,
        status: 'no equivalent: a missing file is a 404 (ignored)',
        comm: IGNORED,
      });
      if (!root) {
        const reported = [fs.root, location.root].some((value) => !absent(value) && typeof value !== 'string');
        if (!reported) this.error([...at, 'root'], 'a directory, here or in root of the location or of the server (required)', 'nothing');
        return undefined;
      }
      out.static = { root, ...spec };
      this.from([...native, 'static'], at);
      this.from([...native, 'static', 'root'], fsRoot ? [...at, 'root'] : locationRoot ? [...path, 'root'] : [...serverPath, 'root']);
      if (staticResponse !== undefined) this.warn([...path, 'static_response'], 'both file_server and static_response: the files are served (as in the original)');
    } else if (staticResponse !== undefined) {
      const match = /^\s*(\d{3})\s*(.*)$/s.exec(staticResponse);
      out.respond = match ? { status: Number(match[1]), ...(match[2] ? { body: match[2] } : {}) } : { status: 200, body: staticResponse };
      this.from([...native, 'respond'], [...path, 'static_response']);
    } else if (urlKey) {
      const name = this.upstreamFor(location[urlKey] as string, [...path, urlKey]);
      if (!name) return undefined;
      out.upstream = name;
      this.from([...native, 'upstream'], [...path, urlKey]);
    } else if (ownUpName) {
      out.upstream = ownUpName;
      this.from([...native, 'upstream'], [...path, 'up_name']);
    } else if (upName) {
      out.upstream = upName;
      this.from([...native, 'upstream'], [...serverPath, 'up_name']);
    } else {
      this.warn(path, 'no file_server, static_response, reverse_proxy or up_name: location dropped');
      return undefined;
    }
    if (urlKey && out.upstream === undefined) this.warn([...path, urlKey], `both ${out.static ? 'file_server' : 'static_response'} and a proxy target: the ${out.static ? 'files are' : 'response is'} served (as in the original)`);
    return out;
  }

  /** Returns true for a named matcher (`@name`), which only try_paths reach in the original. */
  private rule(rule: string, out: Out, path: Path, native: Path): boolean {
    const text = rule.trim();
    if (text.startsWith('@')) {
      // Matching "/" instead would send every request there.
      this.warn(path, `named location ${text} (reached only through try_paths) has no equivalent: location dropped`);
      return true;
    }
    if (text.startsWith('~*')) {
      out.regex = text.slice(2).trim();
      out.regex_flags = 'i';
      this.from([...native, 'regex'], path);
    } else if (text.startsWith('~')) {
      out.regex = text.slice(1).trim();
      this.from([...native, 'regex'], path);
    } else if (text.startsWith('=')) {
      out.exact = text.slice(1).trim();
      this.from([...native, 'exact'], path);
    } else {
      out.path = text.startsWith('/') ? text : `/${text}`;
      this.from([...native, 'path'], path);
    }
    return false;
  }

  private stream(stream: Table, out: Out): void {
    const names = new Map<string, string>();
    this.tables(stream, 'upstream', ['stream']).forEach(({ value, at }) => {
      const original = typeof value.name === 'string' ? value.name : undefined;
      const name = this.upstream(value, at, 'stream-');
      if (original && name) names.set(original, name);
    });
    const streams: Out[] = [];
    const bridges: Out[] = [];
    for (const { value: server, at: path } of this.tables(stream, 'server', ['stream'])) {
      const native = ['stream', streams.length];
      const mode = this.string(server, 'bind_mode', path) ?? 'tcp';
      const listen = this.addresses(server, 'bind_addr', path);
      if (listen === undefined && absent(server.bind_addr)) this.error([...path, 'bind_addr'], `${EXPECT.addresses} (required)`, 'nothing');
      const refs = { up_name: this.string(server, 'up_name', path), server_name: this.string(server, 'server_name', path) };
      const refKey = (['up_name', 'server_name'] as const).find((key) => refs[key]);
      const ref = refKey ? refs[refKey] : undefined;
      let upstream = ref ? names.get(ref) ?? (this.upstreamNames.has(ref) ? ref : undefined) : undefined;
      let upstreamFrom: Path | undefined = upstream ? [...path, refKey!] : undefined;
      this.tables(server, 'upstream', path).forEach(({ value: nested, at }) => {
        const name = this.upstream(nested, at, 'stream-');
        if (name && (!upstream || nested.name === ref)) {
          upstream = name;
          upstreamFrom = at;
        }
      });
      const proxyUrl = this.string(server, 'proxy_url', path, true);
      const timeoutKey = absent(server.timeout) ? 'client_timeout' : 'timeout';
      const timeout = this.duration(server, timeoutKey, path);
      const ignored = Object.fromEntries(COMMON_KEYS.map((key) => [key, 'no effect on a stream (ignored)']));
      for (const key of ['bind_ssl', 'root', 'cert', 'key', 'headers', 'location', 'is_ws']) ignored[key] = 'no effect on a stream (ignored)';
      const bridging = mode === 'ws2tcp' || mode === 'tcp2ws' || mode === 'tcp2wss';
      const domain = bridging ? this.string(server, 'domain', path) : undefined;
      this.rest(server, path, ['bind_addr', 'bind_mode', 'up_name', 'server_name', 'upstream', 'proxy_url', 'timeout', 'client_timeout', ...(bridging ? ['domain'] : [])], ignored);
      if (bridging) {
        if (listen === undefined) continue;
        const bridge = this.wsBridge(mode, listen, { upstream, upstreamFrom, ref, refKey, proxyUrl, domain, names }, path, bridges.length);
        if (bridge) bridges.push(bridge);
        continue;
      }
      if (mode !== 'tcp' && mode !== 'udp') {
        this.wrong([...path, 'bind_mode'], 'one of "tcp", "udp", "ws2tcp", "tcp2ws", "tcp2wss"', server.bind_mode);
        continue;
      }
      if (!upstream && proxyUrl !== undefined) {
        upstream = this.upstreamFor(proxyUrl.replace(/^tcp:/i, 'http:'), [...path, 'proxy_url']);
        upstreamFrom = [...path, 'proxy_url'];
      }
      if (!upstream) {
        if (ref !== undefined) this.wrong([...path, refKey!], `the name of a [[stream.upstream]]${names.size > 0 ? ` (${[...names.keys()].map((name) => JSON.stringify(name)).join(', ')})` : ''}`, ref);
        else if (proxyUrl === undefined) this.error([...path, 'up_name'], 'the name of a [[stream.upstream]], or proxy_url (required)', 'nothing');
        continue;
      }
      if (listen === undefined) continue;
      const entry: Out = { listen: listen.length === 1 ? listen[0] : listen, upstream };
      this.from(native, path);
      this.from([...native, 'listen'], [...path, 'bind_addr']);
      this.from([...native, 'upstream'], upstreamFrom!);
      if (mode === 'udp') entry.protocol = 'udp';
      if (timeout !== undefined) {
        entry.idle_timeout = timeout;
        this.from([...native, 'idle_timeout'], [...path, timeoutKey]);
      }
      streams.push(entry);
    }
    if (streams.length > 0) out.stream = streams;
    if (bridges.length > 0) out.ws_proxy = bridges;
    this.rest(stream, ['stream'], ['server', 'upstream']);
  }

  /**
   * A `[[stream.server]]` with `bind_mode = "ws2tcp" | "tcp2ws" | "tcp2wss"`
   * as a `[[ws_proxy]]`. ws2tcp relays to its upstream group (balanced and
   * health-checked) or to `proxy_url`'s host:port; tcp2ws(s) connects to
   * `proxy_url` (a ws(s):// URL or host:port), else to the first server of
   * its upstream (the original dials one address), with `domain` as the TLS
   * name and Host of tcp2wss.
   */
  private wsBridge(
    mode: 'ws2tcp' | 'tcp2ws' | 'tcp2wss',
    listen: string[],
    from: { upstream: string | undefined; upstreamFrom: Path | undefined; ref: string | undefined; refKey: string | undefined; proxyUrl: string | undefined; domain: string | undefined; names: Map<string, string> },
    path: Path,
    index: number,
  ): Out | undefined {
    const native = ['ws_proxy', index];
    const entry: Out = { mode, listen: listen.length === 1 ? listen[0] : listen };
    this.from(native, path);
    this.from([...native, 'mode'], [...path, 'bind_mode']);
    this.from([...native, 'listen'], [...path, 'bind_addr']);
    const missing = (): undefined => {
      if (from.ref !== undefined) this.wrong([...path, from.refKey!], `the name of a [[stream.upstream]]${from.names.size > 0 ? ` (${[...from.names.keys()].map((name) => JSON.stringify(name)).join(', ')})` : ''}`, from.ref);
      else this.error([...path, 'up_name'], 'the name of a [[stream.upstream]], or proxy_url (required)', 'nothing');
      return undefined;
    };
    if (mode === 'ws2tcp') {
      if (from.proxyUrl !== undefined && !from.upstream) {
        const target = from.proxyUrl.trim().replace(/^(tcp|https?):\/\//i, '').replace(/\/.*$/, '');
        try {
          parseAddress(target);
        } catch {
          return this.wrong([...path, 'proxy_url'], 'the TCP target host:port (or tcp://host:port)', from.proxyUrl);
        }
        entry.target = target;
        this.from([...native, 'target'], [...path, 'proxy_url']);
        return entry;
      }
      if (!from.upstream) return missing();
      entry.upstream = from.upstream;
      this.from([...native, 'upstream'], from.upstreamFrom!);
      return entry;
    }
    const scheme = mode === 'tcp2wss' ? 'wss' : 'ws';
    let url: string | undefined;
    if (from.proxyUrl !== undefined) {
      const text = from.proxyUrl.trim();
      url = /^wss?:\/\//i.test(text) ? text : `${scheme}://${text.replace(/^[a-z]+:\/\//i, '')}`;
      if (!url.toLowerCase().startsWith(`${scheme}://`)) return this.wrong([...path, 'proxy_url'], `a ${scheme}:// URL or host:port (bind_mode "${mode}")`, from.proxyUrl);
      this.from([...native, 'url'], [...path, 'proxy_url']);
    } else if (from.upstream) {
      const group = this.upstreams.find((upstream) => upstream.name === from.upstream);
      const servers = (group?.servers ?? []) as Array<string | { address: string }>;
      const first = servers[0];
      if (first === undefined) return missing();
      const address = typeof first === 'string' ? first : first.address;
      if (servers.length > 1) this.warn(from.upstreamFrom!, `${mode} connects to one address: ${address} (the other servers of "${from.upstream}" are not used)`);
      url = `${scheme}://${address}/`;
      this.from([...native, 'url'], from.upstreamFrom!);
    } else return missing();
    entry.url = url;
    if (from.domain !== undefined) {
      if (mode === 'tcp2wss') entry.server_name = from.domain;
      entry.host = from.domain;
      this.from([...native, 'host'], [...path, 'domain']);
    }
    return entry;
  }
}

/** Reachable from other hosts: a wildcard or a non-loopback address. */
function exposed(listen: string): boolean {
  try {
    const parsed = parseAddress(listen);
    return parsed.wildcard || !isLoopback(parsed.host);
  } catch {
    return false;
  }
}

/** `get post` or `GET|POST` → ["GET", "POST"]. */
function methods(text: string): string[] {
  return text
    .split(/[\s,|]+/)
    .filter(Boolean)
    .map((method) => method.toUpperCase());
}

/** Words of `proxy + key "val 1"`, honouring quotes as the original does. */
function splitWords(text: string): string[] {
  const words: string[] = [];
  const pattern = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (const match of text.matchAll(pattern)) words.push(match[1] ?? match[2] ?? match[3]!);
  return words;
}

const ORDER = ['workers', 'log', 'control', 'health', 'reverse', 'proxy', 'upstream', 'server', 'stream', 'ws_proxy', 'tunnel'];
function reorder(out: Out): Out {
  const sorted: Out = {};
  for (const key of ORDER) if (out[key] !== undefined) sorted[key] = out[key];
  return sorted;
}

/**
 * Convert a configuration in the original wmproxy's format: every key
 * without an equivalent gets a warning; a wrongly typed value, an unknown
 * key or an open proxy is a ConfigError (or, with `keepGoing`, an issue).
 */
export function convertOriginal(data: unknown, options: ConversionOptions = {}): ConversionResult {
  const file = options.file ?? '<inline>';
  const converter = new Converter(file);
  let config: ConfigFile = {};
  if (isTable(data)) config = converter.convert(data);
  else {
    converter.issues.add('', 'a table of settings', describeValue(data));
    converter.complete = false;
  }
  const issues = converter.issues.issues;
  if (issues.length > 0 && !options.keepGoing) throw new ConfigError(file, issues);
  return { config, warnings: converter.warnings, issues, complete: converter.complete, origins: converter.origins };
}
