/**
 * Conversion from the configuration format of the original Rust wmproxy
 * (tickbh/wmproxy): `[proxy]` (bind_addr, flag, username, password,
 * udp_bind...), `[http]` with `[[http.upstream]]`, `[[http.server]]` and
 * `[[http.server.location]]`, and `[stream]` with `[[stream.upstream]]` and
 * `[[stream.server]]`. A key without an equivalent gives a warning naming
 * it; nothing is dropped silently.
 *
 * The original's per-server `fall_times`, `rise_times` and `fail_timeout`
 * (its passive health accounting) become the passive checks:
 * `health.passive.consecutive_failures` = fall_times, `health.passive.window`
 * and `health.passive.ejection_time` = fail_timeout, and `health.rise` =
 * rise_times. Every upstream server also gets the default active TCP check,
 * which is what the original meant to do.
 */
import { isLoopback, parseAddress } from '@wmproxy/core-net';
import type { ConfigFile } from './schema.js';

type Table = Record<string, unknown>;
type Out = Record<string, unknown>;

const isTable = (value: unknown): value is Table => typeof value === 'object' && value !== null && !Array.isArray(value);
const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : value === undefined ? [] : [value]);

/** True when `data` looks like the original wmproxy's format rather than this one. */
export function isOriginalFormat(data: unknown): boolean {
  if (!isTable(data)) return false;
  if (isTable(data.http)) return true;
  if (isTable(data.proxy) || isTable(data.stream)) return true;
  if (typeof data.control === 'string') return true;
  return 'bind_addr' in data || 'flag' in data || 'disable_stdout' in data;
}

export interface ConversionResult {
  config: ConfigFile;
  warnings: string[];
}

const DURATION = /^(\d+(\.\d+)?(ms|s|m|h|d))+$/;

class Converter {
  readonly warnings: string[] = [];
  private readonly upstreams: Out[] = [];
  private readonly upstreamNames = new Set<string>();
  private passive: { fall?: number; rise?: number; failTimeout?: string; from?: string } = {};
  private readonly reverse: Out = {};
  private readonly log: Out = {};
  private logNames: Table = {};

  warn(path: string, why: string): void {
    this.warnings.push(`${path}: ${why}`);
  }

  /** Report every key of `table` not in `handled` as having no equivalent. */
  private rest(table: Table, path: string, handled: readonly string[], notes: Record<string, string> = {}): void {
    for (const key of Object.keys(table)) {
      if (handled.includes(key)) continue;
      this.warn(`${path}.${key}`, notes[key] ?? 'no equivalent in wmproxy (ignored)');
    }
  }

  duration(value: unknown, path: string): string | undefined {
    if (typeof value === 'number') return `${value}s`;
    if (typeof value === 'string') {
      const text = value.trim().toLowerCase();
      if (/^\d+(\.\d+)?$/.test(text)) return `${text}s`;
      if (DURATION.test(text)) return text;
    }
    this.warn(path, `${JSON.stringify(value)} is not a duration (ignored)`);
    return undefined;
  }

  convert(data: Table): ConfigFile {
    const out: Out = {};
    const handled = ['proxy', 'http', 'stream', 'control', 'disable_stdout'];
    if (typeof data.control === 'string') out.control = { listen: data.control };
    else if (data.control !== undefined) this.warn('control', 'expected an address string (ignored)');
    if (data.disable_stdout !== undefined) this.warn('disable_stdout', 'no equivalent: set log.file to a path to keep logs off the terminal');
    const proxies: Out[] = [];
    if (isTable(data.proxy)) proxies.push(this.proxy(data.proxy, 'proxy'));
    // A bare proxy file (the original's server.toml/client.toml): the keys are at the top level.
    const bareKeys = Object.keys(data).filter((key) => !handled.includes(key));
    if (bareKeys.length > 0) {
      if ('bind_addr' in data || 'flag' in data) proxies.push(this.proxy(Object.fromEntries(bareKeys.map((key) => [key, data[key]])), ''));
      else this.rest(Object.fromEntries(bareKeys.map((key) => [key, data[key]])), '', []);
    }
    if (isTable(data.http)) this.http(data.http, out);
    if (isTable(data.stream)) this.stream(data.stream, out);
    if (proxies.length > 0) out.proxy = proxies;
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

  private proxy(proxy: Table, base: string): Out {
    const at = (key: string) => (base ? `${base}.${key}` : key);
    const out: Out = {};
    const listen = typeof proxy.bind_addr === 'string' ? proxy.bind_addr : '127.0.0.1:8090';
    out.listen = listen;
    if (proxy.flag !== undefined) {
      const bits = Number(proxy.flag);
      if (!Number.isInteger(bits) || bits <= 0) this.warn(at('flag'), `${JSON.stringify(proxy.flag)} is not a flag number (1 http, 2 https, 4 socks5): all three are served`);
      else {
        const protocols = [bits & 1 ? 'http' : '', bits & 2 ? 'https' : '', bits & 4 ? 'socks5' : ''].filter(Boolean);
        if (bits & ~7) this.warn(at('flag'), 'the tcp/udp flags (8, 16) have no equivalent on a proxy port: use [[stream]]');
        if (protocols.length > 0) out.protocols = protocols;
      }
    }
    if (typeof proxy.username === 'string' || typeof proxy.password === 'string') {
      if (typeof proxy.username === 'string' && typeof proxy.password === 'string') out.users = { [proxy.username]: proxy.password };
      else this.warn(at(typeof proxy.username === 'string' ? 'password' : 'username'), 'missing: username and password come together (authentication left off)');
    }
    if (typeof proxy.udp_bind === 'string') out.udp_bind = proxy.udp_bind;
    try {
      const parsed = parseAddress(listen);
      if (!out.users && (parsed.wildcard || !isLoopback(parsed.host) || parsed.host === '0.0.0.0')) {
        out.insecure_open = true;
        this.warn(at('bind_addr'), `${listen} is reachable from other hosts without authentication (an open proxy): insecure_open = true keeps the original's behaviour; add users or an allow list`);
      }
    } catch {
      this.warn(at('bind_addr'), `${JSON.stringify(listen)} is not an address`);
    }
    const notes: Record<string, string> = {};
    for (const key of ['server', 'center', 'mode', 'ts', 'tc', 'two_way_tls', 'domain', 'cert', 'key', 'mappings', 'map_http_bind', 'map_https_bind', 'map_tcp_bind', 'map_cert', 'map_key']) {
      notes[key] = 'no equivalent: the original\'s encrypted center tunnel and intranet mappings are not part of wmproxy (ignored)';
    }
    this.rest(proxy, base || '', ['bind_addr', 'flag', 'username', 'password', 'udp_bind'], notes);
    return out;
  }

  /** Keys every original http/server/location level may carry ("CommonConfig"). */
  private common(table: Table, path: string, level: 'http' | 'server' | 'location'): string[] {
    const handled: string[] = [];
    const hoist = (key: string, target: string) => {
      if (table[key] === undefined) return;
      handled.push(key);
      const value = this.duration(table[key], `${path}.${key}`);
      if (value === undefined) return;
      if (this.reverse[target] === undefined) {
        this.reverse[target] = value;
        if (level !== 'http') this.warn(`${path}.${key}`, `applies to every server as reverse.${target} (timeouts are global in wmproxy)`);
      } else if (this.reverse[target] !== value) this.warn(`${path}.${key}`, `differs from reverse.${target} = ${String(this.reverse[target])}; timeouts are global in wmproxy (ignored)`);
    };
    hoist('proxy_connect_timeout', 'connect_timeout');
    hoist('proxy_read_timeout', 'read_timeout');
    hoist('proxy_write_timeout', 'idle_timeout');
    hoist('client_read_timeout', 'client_body_timeout');
    hoist('client_ka_timeout', 'keepalive_timeout');
    for (const key of ['access_log', 'error_log']) {
      if (table[key] === undefined) continue;
      handled.push(key);
      this.logTarget(key, table[key], `${path}.${key}`, level);
    }
    if (table.log_names !== undefined) {
      handled.push('log_names');
      if (isTable(table.log_names)) this.logNames = { ...this.logNames, ...table.log_names };
    }
    return handled;
  }

  /** `access_log = "access main"` refers to `log_names.access = "logs/access.log trace"`. */
  private logTarget(key: string, value: unknown, path: string, level: string): void {
    if (typeof value !== 'string') return this.warn(path, 'expected a string (ignored)');
    const [name, format] = value.trim().split(/\s+/);
    const target = typeof this.logNames[name!] === 'string' ? (this.logNames[name!] as string).trim().split(/\s+/) : undefined;
    const file = target ? target[0]! : name!;
    const fileKey = key === 'access_log' ? 'access_log' : 'file';
    if (this.log[fileKey] === undefined) this.log[fileKey] = file === 'stdout' ? '-' : file;
    else if (this.log[fileKey] !== file) this.warn(path, `one ${key} for the whole instance in wmproxy (log.${fileKey} = ${String(this.log[fileKey])}; ignored)`);
    if (format && key === 'access_log') this.warn(path, `log format "${format}": wmproxy writes nginx "combined" or JSON (log.access_format)`);
    if (key === 'error_log') {
      // `error_log = "error debug"`: the second word (or the log_names entry's) is the level.
      const levels: Record<string, string> = { trace: 'debug', debug: 'debug', info: 'info', warn: 'warn', error: 'error' };
      const level = levels[format ?? ''] ?? levels[target?.[1] ?? ''];
      if (level) this.log.level = level;
    }
    if (level !== 'http') this.warn(path, 'logs are global in wmproxy ([log])');
  }

  private http(http: Table, out: Out): void {
    const handled = ['server', 'upstream', 'log_format', ...this.preLogNames(http)];
    handled.push(...this.common(http, 'http', 'http'));
    if (http.log_format !== undefined) this.warn('http.log_format', 'custom log formats have no equivalent: wmproxy writes nginx "combined" or JSON (log.access_format)');
    asArray(http.upstream).forEach((upstream, index) => this.upstream(upstream, `http.upstream[${index}]`));
    const servers: Out[] = [];
    asArray(http.server).forEach((server, index) => {
      if (isTable(server)) servers.push(this.server(server, `http.server[${index}]`));
      else this.warn(`http.server[${index}]`, 'expected a table (ignored)');
    });
    if (servers.length > 0) out.server = servers;
    this.rest(http, 'http', handled, { limit_req_zone: 'no equivalent: rate limiting is not part of wmproxy (ignored)' });
  }

  private preLogNames(table: Table): string[] {
    if (isTable(table.log_names)) this.logNames = { ...this.logNames, ...table.log_names };
    return table.log_names !== undefined ? ['log_names'] : [];
  }

  private upstream(upstream: unknown, path: string, prefix = ''): string | undefined {
    if (!isTable(upstream)) {
      this.warn(path, 'expected a table (ignored)');
      return undefined;
    }
    let name = typeof upstream.name === 'string' && upstream.name !== '' ? upstream.name : `upstream-${this.upstreams.length}`;
    if (this.upstreamNames.has(name)) {
      const renamed = `${prefix || 'dup-'}${name}`;
      this.warn(`${path}.name`, `"${name}" is already an upstream: renamed "${renamed}"`);
      name = renamed;
    }
    const servers: Array<Out | string> = [];
    asArray(upstream.server).forEach((server, index) => {
      const at = `${path}.server[${index}]`;
      if (!isTable(server) || typeof server.addr !== 'string') return this.warn(at, 'expected a table with addr (ignored)');
      const entry: Out = { address: server.addr };
      if (typeof server.weight === 'number') entry.weight = server.weight;
      servers.push(Object.keys(entry).length === 1 ? server.addr : entry);
      if (typeof server.fall_times === 'number') this.passiveValue('fall', server.fall_times, `${at}.fall_times`);
      if (typeof server.rise_times === 'number') this.passiveValue('rise', server.rise_times, `${at}.rise_times`);
      if (server.fail_timeout !== undefined) {
        const value = this.duration(server.fail_timeout, `${at}.fail_timeout`);
        if (value !== undefined) this.passiveValue('failTimeout', value, `${at}.fail_timeout`);
      }
      this.rest(server, at, ['addr', 'weight', 'fall_times', 'rise_times', 'fail_timeout'], { status: 'no equivalent: health comes from the checks (ignored)' });
    });
    if (servers.length === 0) {
      this.warn(path, 'no servers (upstream dropped)');
      return undefined;
    }
    this.upstreamNames.add(name);
    this.upstreams.push({ name, servers });
    this.rest(upstream, path, ['name', 'server'], { bind: 'not needed: the stream server says tcp or udp (ignored)' });
    return name;
  }

  private passiveValue(key: 'fall' | 'rise' | 'failTimeout', value: number | string, path: string): void {
    const current = this.passive[key];
    if (current === undefined) (this.passive as Record<string, unknown>)[key] = value;
    else if (current !== value) this.warn(path, `passive checks are global in wmproxy; ${JSON.stringify(current)} from an earlier server is used`);
  }

  /** An upstream for `http://name` or `http://host:port`. */
  private upstreamFor(url: string, path: string): string | undefined {
    const match = /^(https?):\/\/([^/]+)/i.exec(url.trim());
    if (!match) {
      this.warn(path, `${JSON.stringify(url)} is not an http:// or https:// URL (ignored)`);
      return undefined;
    }
    const host = match[2]!;
    if (this.upstreamNames.has(host)) return host;
    const tls = match[1]!.toLowerCase() === 'https';
    const address = /:\d+$/.test(host) ? host : `${host}:${tls ? 443 : 80}`;
    const name = host;
    this.upstreamNames.add(name);
    this.upstreams.push({ name, servers: [tls ? { address, tls: true } : address] });
    return name;
  }

  private headers(value: unknown, path: string, request: string[], response: string[]): void {
    asArray(value).forEach((entry, index) => {
      const at = `${path}[${index}]`;
      const words = typeof entry === 'string' ? splitWords(entry) : Array.isArray(entry) ? entry.map(String) : undefined;
      if (!words || words.length < 2) return this.warn(at, 'expected a header rule such as ["+", "name", "value"] (ignored)');
      let target = response;
      if (words[0] === 'proxy') {
        target = request;
        words.shift();
      }
      const op = words[0] === '+' ? 'add' : words[0] === '-' ? 'remove' : words[0] === '?' ? 'add_if_missing' : undefined;
      if (op) words.shift();
      if (op === 'remove') {
        if (words[0]) target.push(`remove ${words[0]}`);
        return;
      }
      if (words.length < 2) return this.warn(at, 'expected a name and a value (ignored)');
      const value = words.slice(1).join(' ');
      target.push(`${op ?? 'set'} ${words[0]} ${value}`);
    });
  }

  private server(server: Table, path: string): Out {
    const out: Out = {};
    const listen = asArray(server.bind_addr).flatMap((value) => (typeof value === 'string' ? value.split(/[\s,]+/).filter(Boolean) : []));
    out.listen = listen.length === 1 ? listen[0] : listen.length > 0 ? listen : '127.0.0.1:80';
    if (listen.length === 0) this.warn(`${path}.bind_addr`, 'missing: 127.0.0.1:80 assumed');
    const names = typeof server.server_name === 'string' ? server.server_name.split(/\s+/).filter(Boolean) : [];
    if (names.length > 0) out.server_name = names;
    if (typeof server.cert === 'string' && typeof server.key === 'string') out.tls = { cert: server.cert, key: server.key };
    const request: string[] = [];
    const response: string[] = [];
    this.headers(server.headers, `${path}.headers`, request, response);
    if (request.length > 0) out.request_headers = request;
    if (response.length > 0) out.response_headers = response;
    // Upstreams nested in the server are global in wmproxy.
    asArray(server.upstream).forEach((upstream, index) => this.upstream(upstream, `${path}.upstream[${index}]`));
    const upName = typeof server.up_name === 'string' && server.up_name !== '' ? server.up_name : undefined;
    const root = typeof server.root === 'string' && server.root !== '' ? server.root : undefined;
    const locations: Out[] = [];
    asArray(server.location).forEach((location, index) => {
      if (isTable(location)) {
        const converted = this.location(location, `${path}.location[${index}]`, upName, root);
        if (converted) locations.push(converted);
      } else this.warn(`${path}.location[${index}]`, 'expected a table (ignored)');
    });
    if (locations.length === 0) {
      if (upName) locations.push({ path: '/', upstream: upName });
      else if (root) locations.push({ path: '/', static: { root } });
      else {
        locations.push({ path: '/', respond: { status: 404, body: 'not found\n' } });
        this.warn(path, 'no location, up_name or root: answers 404');
      }
    }
    out.location = locations;
    const handled = ['bind_addr', 'server_name', 'cert', 'key', 'headers', 'upstream', 'up_name', 'root', 'location', 'is_ws'];
    handled.push(...this.common(server, path, 'server'));
    this.rest(server, path, handled, {
      limit_req: 'no equivalent: rate limiting is not part of wmproxy (ignored)',
      rate_limit_nums: 'no equivalent: rate limiting is not part of wmproxy (ignored)',
      rate_limit_per: 'no equivalent: rate limiting is not part of wmproxy (ignored)',
      max_read_buf: 'no equivalent: buffers are bounded by the engine (ignored)',
      bind_mode: 'HTTP servers are always tcp (ignored)',
    });
    return out;
  }

  private location(location: Table, path: string, upName: string | undefined, serverRoot: string | undefined): Out | undefined {
    const out: Out = {};
    const rule = location.rule;
    const handled = ['rule', 'method', 'headers', 'up_name', 'reverse_proxy', 'proxy_pass', 'proxy_url', 'file_server', 'root', 'is_ws', 'upstream'];
    if (typeof rule === 'string' || rule === undefined) this.rule(rule ?? '/', out, `${path}.rule`);
    else if (isTable(rule)) {
      if (typeof rule.path === 'string') this.rule(rule.path, out, `${path}.rule.path`);
      if (typeof rule.method === 'string') out.methods = [rule.method.toUpperCase()];
      if (typeof rule.client_ip === 'string') out.client_ips = [rule.client_ip];
      this.rest(rule, `${path}.rule`, ['path', 'method', 'client_ip']);
    }
    if (typeof location.method === 'string' && location.method !== '') out.methods = location.method.split(/[\s,|]+/).map((method) => method.toUpperCase());
    const request: string[] = [];
    const response: string[] = [];
    this.headers(location.headers, `${path}.headers`, request, response);
    if (request.length > 0) out.request_headers = request;
    if (response.length > 0) out.response_headers = response;
    asArray(location.upstream).forEach((upstream, index) => this.upstream(upstream, `${path}.upstream[${index}]`));
    const url = [location.reverse_proxy, location.proxy_pass, location.proxy_url].find((value) => typeof value === 'string' && value !== '') as string | undefined;
    if (isTable(location.file_server)) {
      const fs = location.file_server;
      const root = typeof fs.root === 'string' ? fs.root : typeof location.root === 'string' ? location.root : serverRoot;
      if (!root) {
        this.warn(`${path}.file_server`, 'no root (here, in the location or in the server): location dropped');
        return undefined;
      }
      const spec: Out = { root };
      if (typeof fs.browse === 'boolean') spec.browse = fs.browse;
      if (Array.isArray(fs.index)) spec.index = fs.index;
      if (Array.isArray(fs.precompressed)) spec.precompressed = fs.precompressed.length > 0;
      if (typeof fs.cors === 'boolean') spec.cors = fs.cors;
      if (typeof fs.path404 === 'string') spec.not_found = fs.path404;
      if (Array.isArray(fs.hide)) spec.hide = fs.hide.map((entry) => `*${String(entry)}*`);
      out.static = spec;
      this.rest(fs, `${path}.file_server`, ['root', 'browse', 'index', 'precompressed', 'cors', 'path404', 'hide', 'prefix'], {
        ext_mimetype: 'no equivalent: MIME types come from mime-db (ignored)',
        default_mimetype: 'no equivalent: unknown types are application/octet-stream (ignored)',
        cache_time: 'use static.cache_control rules instead (ignored)',
        disable_compress: 'no equivalent: on-the-fly compression is off unless configured (ignored)',
      });
      if (url) this.warn(`${path}.reverse_proxy`, 'both file_server and a proxy target: the files are served');
    } else if (url) {
      const name = this.upstreamFor(url, `${path}.reverse_proxy`);
      if (!name) return undefined;
      out.upstream = name;
    } else if (typeof location.up_name === 'string' && location.up_name !== '') out.upstream = location.up_name;
    else if (upName) out.upstream = upName;
    else if (location.static_response !== undefined) {
      handled.push('static_response');
      const text = String(location.static_response);
      const match = /^\s*(\d{3})\s*(.*)$/s.exec(text);
      out.respond = match ? { status: Number(match[1]), ...(match[2] ? { body: match[2] } : {}) } : { status: 200, body: text };
    } else {
      this.warn(path, 'no file_server, reverse_proxy or up_name: location dropped');
      return undefined;
    }
    const common = this.common(location, path, 'location');
    handled.push(...common);
    this.rest(location, path, handled, {
      try_paths: 'use static.try_files instead (ignored)',
      rate_limit_nums: 'no equivalent: rate limiting is not part of wmproxy (ignored)',
      rate_limit_per: 'no equivalent: rate limiting is not part of wmproxy (ignored)',
      limit_req: 'no equivalent: rate limiting is not part of wmproxy (ignored)',
      static_response: 'ignored: the location already has a target',
    });
    return out;
  }

  private rule(rule: string, out: Out, path: string): void {
    const text = rule.trim();
    if (text.startsWith('~*')) {
      out.regex = text.slice(2).trim();
      out.regex_flags = 'i';
    } else if (text.startsWith('~')) out.regex = text.slice(1).trim();
    else if (text.startsWith('=')) out.exact = text.slice(1).trim();
    else if (text.startsWith('/')) out.path = text;
    else if (text.startsWith('@')) this.warn(path, `named matcher ${text} has no equivalent: "/" used`);
    else out.path = `/${text}`;
  }

  private stream(stream: Table, out: Out): void {
    const names = new Map<string, string>();
    asArray(stream.upstream).forEach((upstream, index) => {
      const original = isTable(upstream) && typeof upstream.name === 'string' ? upstream.name : undefined;
      const name = this.upstream(upstream, `stream.upstream[${index}]`, 'stream-');
      if (original && name) names.set(original, name);
    });
    const streams: Out[] = [];
    asArray(stream.server).forEach((server, index) => {
      const path = `stream.server[${index}]`;
      if (!isTable(server)) return this.warn(path, 'expected a table (ignored)');
      const mode = typeof server.bind_mode === 'string' ? server.bind_mode : 'tcp';
      if (mode !== 'tcp' && mode !== 'udp') return this.warn(`${path}.bind_mode`, `"${mode}" (WebSocket bridging) has no equivalent: server dropped`);
      const listen = asArray(server.bind_addr).flatMap((value) => (typeof value === 'string' ? value.split(/[\s,]+/).filter(Boolean) : []));
      const ref = [server.up_name, server.server_name].find((value) => typeof value === 'string' && value !== '') as string | undefined;
      let upstream = ref ? names.get(ref) ?? (this.upstreamNames.has(ref) ? ref : undefined) : undefined;
      asArray(server.upstream).forEach((nested, at) => {
        const name = this.upstream(nested, `${path}.upstream[${at}]`, 'stream-');
        if (name && (!upstream || (isTable(nested) && nested.name === ref))) upstream = name;
      });
      if (!upstream && typeof server.proxy_url === 'string') upstream = this.upstreamFor(server.proxy_url.replace(/^tcp:/, 'http:'), `${path}.proxy_url`);
      if (listen.length === 0 || !upstream) return this.warn(path, `missing ${listen.length === 0 ? 'bind_addr' : 'upstream (up_name / server_name)'}: server dropped`);
      const entry: Out = { listen: listen.length === 1 ? listen[0] : listen, upstream };
      if (mode === 'udp') entry.protocol = 'udp';
      const timeout = server.timeout ?? server.client_timeout;
      if (timeout !== undefined) {
        const value = this.duration(timeout, `${path}.timeout`);
        if (value) entry.idle_timeout = value;
      }
      streams.push(entry);
      this.rest(server, path, ['bind_addr', 'bind_mode', 'up_name', 'server_name', 'upstream', 'proxy_url', 'timeout', 'client_timeout']);
    });
    if (streams.length > 0) out.stream = streams;
    this.rest(stream, 'stream', ['server', 'upstream']);
  }
}

/** Words of `proxy + key "val 1"`, honouring quotes as the original does. */
function splitWords(text: string): string[] {
  const words: string[] = [];
  const pattern = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (const match of text.matchAll(pattern)) words.push(match[1] ?? match[2] ?? match[3]!);
  return words;
}

const ORDER = ['workers', 'log', 'control', 'health', 'reverse', 'proxy', 'upstream', 'server', 'stream'];
function reorder(out: Out): Out {
  const sorted: Out = {};
  for (const key of ORDER) if (out[key] !== undefined) sorted[key] = out[key];
  return sorted;
}

/** Convert a configuration in the original wmproxy's format; every key without an equivalent gets a warning. */
export function convertOriginal(data: unknown): ConversionResult {
  const converter = new Converter();
  if (!isTable(data)) return { config: {}, warnings: ['the file is not a table'] };
  const config = converter.convert(data);
  return { config, warnings: converter.warnings };
}
