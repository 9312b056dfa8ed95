/**
 * Per-source penalties for failed authentication (OpenSSH 9.8's
 * PerSourcePenalties): a source that fails to authenticate more than
 * `allowance` times is refused for a while (`firstMs`, doubling with each
 * further failure up to `maxMs`); while penalized, its new connections are
 * closed at accept, before any TLS or protocol work. A source is an IPv4
 * address, or an IPv6 /64 (sshd's PerSourceNetBlockSize 32:64: one host
 * usually holds a whole /64). A successful login changes nothing: on a
 * shared address (NAT) it would let the guesser reset its own count.
 *
 * One log line when a source enters a penalty (`auth penalty: source
 * penalized`, with the address, the failures and the seconds: the line a
 * fail2ban filter matches); refused connections and an overflowing table are
 * counted and logged at most once per interval.
 *
 * Memory is bounded: at most `maxSources` sources of each family (sshd's
 * max-sources4/6; an IPv6 flood does not push IPv4 sources out). When a table
 * is full, sources not in a penalty are dropped, oldest failure first; when
 * every tracked source is in a penalty, a new failing source is not tracked
 * (sshd's default overflow mode, permissive). Penalties already given are
 * never dropped to make room: otherwise a spray of failures from fresh
 * addresses (a /48 holds 65 536 /64s) would free a penalized guesser. Denying
 * every new source on overflow (sshd's deny-all) would let the same spray
 * lock every legitimate client out: the untracked sources stay bound by the
 * listener's handshake limits instead.
 */
import { isIPv4 } from 'node:net';
import { CidrList, normaliseIp, parseIp } from './cidr.js';
import { LogBudget, type Logger } from './logger.js';

export const DEFAULT_PENALTY_ALLOWANCE = 2;
export const DEFAULT_PENALTY_FIRST_MS = 30_000;
export const DEFAULT_PENALTY_MAX_MS = 10 * 60_000;
export const DEFAULT_PENALTY_MAX_SOURCES = 65_536;
/** Refusals and overflows log at most one line per this interval, with their count. */
const REPORT_MS = 10_000;
/** When a table is full, this many of its oldest sources are looked at for one to drop (a bounded cost per failure). */
const EVICT_SCAN = 32;

export interface SourcePenaltyOptions {
  /** Off: nothing tracked, nothing refused (default on). */
  enabled?: boolean;
  /** Failed authentications a source may make before its first penalty (default 2; 0: the first failure is penalized). */
  allowance?: number;
  /** The first penalty (default 30 s); each further failure doubles it, up to `maxMs` (default 10 min). */
  firstMs?: number;
  maxMs?: number;
  /** Sources tracked at most, for each address family (default 65 536). */
  maxSources?: number;
  /** Addresses or CIDR ranges never penalized (default none, as sshd's PerSourcePenaltyExemptList). */
  exempt?: readonly string[];
}

interface Source {
  failures: number;
  /** The penalty ends then (0: none given). */
  until: number;
  lastFailure: number;
}

export class SourcePenalties {
  /** Connections refused because their source was penalized, since start. */
  refused = 0;
  /** Sources that entered a penalty, since start. */
  penalties = 0;
  /** Failures not tracked because the table of their family was full of penalized sources. */
  overflowed = 0;
  private enabled = true;
  private allowance = DEFAULT_PENALTY_ALLOWANCE;
  private firstMs = DEFAULT_PENALTY_FIRST_MS;
  private maxMs = DEFAULT_PENALTY_MAX_MS;
  private maxSources = DEFAULT_PENALTY_MAX_SOURCES;
  private exempt = new CidrList();
  private readonly v4 = new Map<string, Source>();
  private readonly v6 = new Map<string, Source>();
  private readonly refusals = new LogBudget(1, REPORT_MS);
  private readonly overflows = new LogBudget(1, REPORT_MS);

  constructor(
    private readonly logger: Logger,
    /** Names the service in log lines (`tunnel`, `control api`). */
    private readonly service: string,
    options: SourcePenaltyOptions = {},
  ) {
    this.configure(options);
  }

  /** New settings (a reload): penalties given stay until they end. */
  configure(options: SourcePenaltyOptions): void {
    const whole = (value: number | undefined, fallback: number, name: string, least: number): number => {
      if (value === undefined) return fallback;
      if (!Number.isInteger(value) || value < least) throw new RangeError(`auth penalty ${name} must be a whole number, ${least} or more (got ${value})`);
      return value;
    };
    this.enabled = options.enabled ?? true;
    this.allowance = whole(options.allowance, DEFAULT_PENALTY_ALLOWANCE, 'allowance', 0);
    this.firstMs = whole(options.firstMs, DEFAULT_PENALTY_FIRST_MS, 'first duration', 1);
    this.maxMs = Math.max(this.firstMs, whole(options.maxMs, DEFAULT_PENALTY_MAX_MS, 'max duration', 1));
    this.maxSources = whole(options.maxSources, DEFAULT_PENALTY_MAX_SOURCES, 'max sources', 1);
    this.exempt = new CidrList(options.exempt ?? []);
    if (!this.enabled) {
      this.v4.clear();
      this.v6.clear();
    }
  }

  /** Sources tracked now (both families). */
  get sources(): number {
    return this.v4.size + this.v6.size;
  }

  /** Sources in a penalty now. */
  penalized(now = Date.now()): number {
    let count = 0;
    for (const table of [this.v4, this.v6]) for (const source of table.values()) if (source.until > now) count++;
    return count;
  }

  /**
   * At accept: true when `address` is penalized now (the caller closes the
   * connection at once); counted and reported. Nothing to look up while no
   * source failed.
   */
  refuses(address: string, at?: number): boolean {
    if (this.v4.size === 0 && this.v6.size === 0) return false;
    const key = sourceOf(address);
    if (key === undefined) return false;
    const table = key.v6 ? this.v6 : this.v4;
    const source = table.get(key.key);
    if (source === undefined) return false;
    // The clock only for a tracked source (a default parameter would read it on every call).
    const now = at ?? Date.now();
    if (source.until <= now) return false;
    this.refused++;
    const dropped = this.refusals.take(now);
    if (dropped !== undefined) {
      this.logger.info(`${this.service} auth penalty: connections from penalized sources closed`, { client: address, source: key.key, refused: dropped + 1, secondsLeft: Math.ceil((source.until - now) / 1000) });
    }
    return true;
  }

  /** A failed authentication from `address`. Returns the penalty it started or lengthened, in ms (0: none). */
  failed(address: string, now = Date.now()): number {
    if (!this.enabled || this.exempt.contains(address)) return 0;
    const key = sourceOf(address);
    if (key === undefined) return 0;
    const table = key.v6 ? this.v6 : this.v4;
    this.forgetOldest(table, now);
    let source = table.get(key.key);
    if (source !== undefined && this.forgotten(source, now)) source.failures = 0;
    if (source === undefined) {
      if (table.size >= this.maxSources && !this.makeRoom(table, now)) {
        this.overflowed++;
        const dropped = this.overflows.take(now);
        if (dropped !== undefined) this.logger.warn(`${this.service} auth penalty: table full of penalized sources, failures not tracked`, { client: address, maxSources: this.maxSources, notTracked: dropped + 1 });
        return 0;
      }
      source = { failures: 0, until: 0, lastFailure: 0 };
    } else table.delete(key.key);
    // Map order is the order of last failures: the oldest come first for forgetting and eviction.
    table.set(key.key, source);
    source.failures++;
    source.lastFailure = now;
    if (source.failures <= this.allowance) return 0;
    const ms = Math.min(this.maxMs, this.firstMs * 2 ** Math.min(30, source.failures - this.allowance - 1));
    const entering = source.until <= now;
    source.until = Math.max(source.until, now + ms);
    if (entering) {
      this.penalties++;
      // One line per penalty, for each source: what a fail2ban filter reads.
      this.logger.warn(`${this.service} auth penalty: source penalized`, { client: normaliseIp(address), source: key.key, failures: source.failures, seconds: Math.ceil(ms / 1000) });
    }
    return ms;
  }

  /** A source not penalized whose last failure is `maxMs` old starts again from zero failures. */
  private forgotten(source: Source, now: number): boolean {
    return source.until <= now && now - source.lastFailure >= this.maxMs;
  }

  /** Drop the oldest source if it is forgotten: the table drains as failures come, with no timer. */
  private forgetOldest(table: Map<string, Source>, now: number): void {
    for (const [key, source] of table) {
      if (this.forgotten(source, now)) table.delete(key);
      return;
    }
  }

  /** Drop the oldest source not in a penalty among the first EVICT_SCAN; false when there is none. */
  private makeRoom(table: Map<string, Source>, now: number): boolean {
    let looked = 0;
    for (const [key, source] of table) {
      if (source.until <= now) {
        table.delete(key);
        return true;
      }
      if (++looked >= EVICT_SCAN) break;
    }
    return false;
  }
}

/** The source an address belongs to: the IPv4 address, or the IPv6 /64 (`2001:db8:0:1::/64`). */
export function sourceOf(address: string): { key: string; v6: boolean } | undefined {
  // What sockets report, without parsing: dotted IPv4, or IPv4-mapped on a dual-stack listener.
  if (isIPv4(address)) return { key: address, v6: false };
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return { key: address.slice(7), v6: false };
  const ip = parseIp(address);
  if (ip === undefined) return undefined;
  if (!ip.v6) return { key: normaliseIp(address), v6: false };
  const prefix = ip.value >> 64n;
  const groups: string[] = [];
  for (let shift = 48n; shift >= 0n; shift -= 16n) groups.push(((prefix >> shift) & 0xffffn).toString(16));
  return { key: `${groups.join(':')}::/64`, v6: true };
}
