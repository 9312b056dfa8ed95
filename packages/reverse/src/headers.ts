import { newSpanId, newTraceId } from './trace.js';
import { CidrList, normaliseIp } from '@wmproxy/core-net';

/**
 * Header rules (Caddy `header_up`/`header_down`, nginx `proxy_set_header`/
 * `add_header`/`proxy_hide_header`, HAProxy `http-request set-header`):
 * `set` replaces every value, `add` appends one more, `add_if_missing` adds
 * only when absent (`default`), `remove` deletes every value. Values may use
 * `{client_ip}`, `{client_port}`, `{host}`, `{uri}`, `{path}`, `{method}`,
 * `{scheme}`, `{upstream_addr}`, `{status}`, `{server_port}`, and
 * `{new_traceparent}`: a fresh W3C trace context (`00-TRACEID-SPANID-01`),
 * so that `default traceparent {new_traceparent}` starts a trace at the proxy
 * when the client sent none (one it sent is forwarded unchanged).
 */
export interface HeaderRule {
  op: 'set' | 'add' | 'add_if_missing' | 'remove';
  name: string;
  value?: string;
}

export interface RuleVariables {
  client_ip: string;
  client_port: number;
  host: string;
  uri: string;
  method: string;
  scheme: string;
  upstream_addr: string;
  status: number;
  server_port: number;
}

/** Ordered header fields (case kept, duplicates kept), as sent on the wire. */
export type HeaderList = Array<[name: string, value: string]>;

const VARIABLE = /\{([a-z_]+)\}/g;
const KNOWN_VARIABLES = new Set(['client_ip', 'client_port', 'host', 'uri', 'path', 'method', 'scheme', 'upstream_addr', 'status', 'server_port', 'new_traceparent']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A rule with its template split once, at configuration time. */
export interface CompiledRule {
  op: HeaderRule['op'];
  name: string;
  lower: string;
  parts: string[];
  /** Same length as parts; a variable name where parts[i] is to be replaced. */
  vars: Array<string | undefined>;
}

export function compileRules(rules: readonly HeaderRule[] | undefined): CompiledRule[] {
  if (!rules) return [];
  return rules.map((rule) => {
    if (!TOKEN.test(rule.name)) throw new Error(`invalid header name "${rule.name}"`);
    if (rule.op !== 'remove' && rule.value === undefined) throw new Error(`header rule ${rule.op} ${rule.name} needs a value`);
    if (rule.value !== undefined && /[\r\n\0]/.test(rule.value)) throw new Error(`header value for ${rule.name} contains CR, LF or NUL`);
    const parts: string[] = [];
    const vars: Array<string | undefined> = [];
    const value = rule.value ?? '';
    let last = 0;
    for (const match of value.matchAll(VARIABLE)) {
      if (!KNOWN_VARIABLES.has(match[1]!)) throw new Error(`unknown variable {${match[1]}} in header ${rule.name}`);
      parts.push(value.slice(last, match.index));
      vars.push(undefined);
      parts.push('');
      vars.push(match[1]);
      last = match.index! + match[0].length;
    }
    parts.push(value.slice(last));
    vars.push(undefined);
    return { op: rule.op, name: rule.name, lower: rule.name.toLowerCase(), parts, vars };
  });
}

/**
 * Parse a rule from its text form: `set NAME VALUE`, `add NAME VALUE`,
 * `default NAME VALUE` (or `add_if_missing`), `remove NAME`, or `NAME: VALUE`
 * (same as set). Returns the rule and whether it targets the response
 * (prefix `down:`; `up:` or nothing targets the upstream request).
 */
export function parseHeaderRule(text: string): { rule: HeaderRule; response: boolean } {
  let rest = text.trim();
  let response = false;
  if (rest.startsWith('down:')) {
    response = true;
    rest = rest.slice(5).trim();
  } else if (rest.startsWith('up:')) rest = rest.slice(3).trim();
  const colonForm = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):\s*(.*)$/.exec(rest);
  if (colonForm) return { rule: { op: 'set', name: colonForm[1]!, value: colonForm[2]! }, response };
  const match = /^(set|add|default|add_if_missing|remove)\s+(\S+)(?:\s+(.*))?$/.exec(rest);
  if (!match) throw new Error(`invalid header rule "${text}" (expected "set|add|default|remove NAME [VALUE]" or "NAME: VALUE")`);
  const op = match[1] === 'default' ? 'add_if_missing' : (match[1] as HeaderRule['op']);
  const rule: HeaderRule = { op, name: match[2]! };
  if (op === 'remove') {
    if (match[3]) throw new Error(`header rule "${text}": remove takes no value`);
  } else {
    if (match[3] === undefined) throw new Error(`header rule "${text}" needs a value`);
    rule.value = match[3];
  }
  compileRules([rule]);
  return { rule, response };
}

/** A new W3C `traceparent`: version 00, random trace id (16 bytes) and parent id (8 bytes), sampled. */
export function newTraceparent(): string {
  return `00-${newTraceId()}-${newSpanId()}-01`;
}

function variable(vars: RuleVariables, name: string): string {
  if (name === 'new_traceparent') return newTraceparent();
  if (name === 'path') {
    const q = vars.uri.indexOf('?');
    return q < 0 ? vars.uri : vars.uri.slice(0, q);
  }
  return String(vars[name as keyof RuleVariables]);
}

function render(rule: CompiledRule, vars: RuleVariables): string {
  if (rule.parts.length === 1) return rule.parts[0]!;
  let out = '';
  for (let i = 0; i < rule.parts.length; i++) {
    const name = rule.vars[i];
    out += name === undefined ? rule.parts[i]! : variable(vars, name);
  }
  return out;
}

function removeAll(list: HeaderList, lower: string): void {
  for (let i = list.length - 1; i >= 0; i--) if (list[i]![0].toLowerCase() === lower) list.splice(i, 1);
}

function has(list: HeaderList, lower: string): boolean {
  for (const field of list) if (field[0].toLowerCase() === lower) return true;
  return false;
}

export function applyRules(list: HeaderList, rules: readonly CompiledRule[], vars: RuleVariables): void {
  for (const rule of rules) {
    switch (rule.op) {
      case 'remove':
        removeAll(list, rule.lower);
        break;
      case 'set':
        removeAll(list, rule.lower);
        list.push([rule.name, render(rule, vars)]);
        break;
      case 'add':
        list.push([rule.name, render(rule, vars)]);
        break;
      case 'add_if_missing':
        if (!has(list, rule.lower)) {
          list.push([rule.name, render(rule, vars)]);
        }
        break;
    }
  }
}

export interface ForwardedOptions {
  /**
   * Peers whose own X-Forwarded-* / Forwarded / X-Real-IP headers are kept
   * and extended (CIDRs). From anyone else they are replaced. Default: none.
   */
  trustedProxies?: string[];
  /** Add X-Forwarded-For, -Proto, -Host (default true). */
  xForwarded?: boolean;
  /** Add X-Real-IP (default true). */
  xRealIp?: boolean;
  /** Add the RFC 7239 Forwarded header (default true). */
  forwarded?: boolean;
}

export const FORWARDING_HEADERS: ReadonlySet<string> = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'forwarded']);

/** The compiled forwarding policy of a listener. */
export class Forwarding {
  private readonly trusted: CidrList;
  readonly xForwarded: boolean;
  readonly xRealIp: boolean;
  readonly forwarded: boolean;

  constructor(options: ForwardedOptions = {}) {
    this.trusted = new CidrList(options.trustedProxies ?? []);
    this.xForwarded = options.xForwarded ?? true;
    this.xRealIp = options.xRealIp ?? true;
    this.forwarded = options.forwarded ?? true;
  }

  private cachedIp = '';
  private cachedScheme = '';
  private cachedHost = '';
  private cached: HeaderList | undefined;

  /**
   * The forwarding fields for an untrusted peer (nothing it sent is kept):
   * they change only with the client address and Host, so the last ones are
   * reused (do not modify them).
   */
  fieldsFor(clientIp: string, scheme: string, host: string): HeaderList {
    if (this.cached === undefined || clientIp !== this.cachedIp || host !== this.cachedHost || scheme !== this.cachedScheme) {
      const fields: HeaderList = [];
      this.append(fields, clientIp, scheme, host, undefined);
      this.cached = fields;
      this.cachedIp = clientIp;
      this.cachedScheme = scheme;
      this.cachedHost = host;
    }
    return this.cached;
  }

  isTrusted(ip: string): boolean {
    return this.trusted.size > 0 && this.trusted.contains(ip);
  }

  /**
   * Append the forwarding headers to `out`. `incoming` holds the values the
   * client sent (lower-case name to value) — used only from trusted peers.
   */
  append(out: HeaderList, clientIp: string, scheme: string, host: string, incoming: Map<string, string> | undefined): void {
    const ip = normaliseIp(clientIp);
    const xff = incoming?.get('x-forwarded-for');
    if (this.xForwarded) {
      out.push(['X-Forwarded-For', xff ? `${xff}, ${ip}` : ip]);
      out.push(['X-Forwarded-Proto', incoming?.get('x-forwarded-proto') ?? scheme]);
      if (host) {
        out.push(['X-Forwarded-Host', incoming?.get('x-forwarded-host') ?? host]);
      }
    }
    if (this.xRealIp) {
      out.push(['X-Real-IP', incoming?.get('x-real-ip') ?? ip]);
    }
    if (this.forwarded) {
      const node = ip.includes(':') ? `"[${ip}]"` : ip;
      let element = `for=${node};proto=${scheme}`;
      if (host) element += `;host=${quoteIfNeeded(host)}`;
      const previous = incoming?.get('forwarded');
      out.push(['Forwarded', previous ? `${previous}, ${element}` : element]);
    }
  }
}

function quoteIfNeeded(value: string): string {
  return TOKEN.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`;
}
