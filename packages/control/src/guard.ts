/**
 * Who may talk to the control API, decided for every request before routing
 * (docs/security.md, "The control API", has the threat model):
 *
 * 1. `GET /healthz` is open to everyone: it tells nothing but "alive", and
 *    container probes reach it through whatever name or mapped port they have.
 * 2. A bearer token, when the endpoint needs one (every endpoint off
 *    loopback; mutations whenever a token is set): 401 without it.
 * 3. The Host header must name this API (DNS rebinding): the listen address,
 *    `localhost`, `127.0.0.1`, `::1`, or a name of `control.allowed_hosts`,
 *    whatever the port; 421 otherwise. A request carrying the valid token is
 *    exempt: a rebinding page cannot know the token.
 * 4. Mutations (every method but GET and HEAD) must not come from another
 *    site (`Sec-Fetch-Site`, `Origin`) and must carry something a browser
 *    only sends after a CORS preflight, which this API never grants:
 *    `Content-Type: application/json`, `X-Wmproxy-Request`, or
 *    `Authorization`. 403 otherwise.
 *
 * Refusals are logged (at most one line a second, with a count of the lines
 * left out, so that a hostile page cannot flood the log).
 *
 * A source that sends wrong tokens is penalized as on the tunnel port
 * (core-net SourcePenalties, its defaults: 2 wrong tokens allowed, then 30 s
 * doubling to 10 min): while penalized, every request from it but
 * `/healthz` gets 429 without its token being looked at, so guessing stops.
 * A request without a token is no failure (the dashboard on loopback).
 */
import { timingSafeEqual } from 'node:crypto';
import { SourcePenalties, type Logger } from '@wmproxy/core-net';

export const HEALTHZ_PATH = '/healthz';
/** The header the CLI client and the dashboard send on every request. */
export const REQUEST_HEADER = 'x-wmproxy-request';

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
const BEARER = /^bearer\s+/i;
const LOG_INTERVAL_MS = 1_000;
/** Attacker-chosen header values are cut to this length in the log. */
const LOGGED_CHARS = 200;

export interface GuardSettings {
  token: string | undefined;
  /** The API listens on a loopback address only (otherwise every endpoint needs the token). */
  loopback: boolean;
  /** Names the Host header may carry (lowercase, no port, no brackets), besides the built-in ones. */
  allowedHosts: readonly string[];
  /** The listen host (an IP or a name); the unspecified addresses add nothing. */
  listenHost: string;
}

/** `Host` value → lowercase name without port, brackets or trailing dot ('' when malformed). */
export function hostName(value: string): string {
  const lower = value.trim().toLowerCase();
  if (lower.startsWith('[')) {
    const end = lower.indexOf(']');
    return end === -1 ? '' : lower.slice(1, end);
  }
  const colon = lower.indexOf(':');
  const name = colon === -1 ? lower : lower.slice(0, colon);
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/** A configured name or listen host → the form `hostName` gives (`[::1]`, `::1` and `::1.` are one name). */
export function bareName(name: string): string {
  let lower = name.trim().toLowerCase();
  if (lower.startsWith('[') && lower.endsWith(']')) lower = lower.slice(1, -1);
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function pathOf(url: string): string {
  const scheme = url.indexOf('://');
  const start = scheme === -1 ? 0 : url.indexOf('/', scheme + 3);
  if (start === -1) return '/';
  const query = url.indexOf('?', start);
  return query === -1 ? url.slice(start) : url.slice(start, query);
}

function tokenMatches(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

function givenToken(request: Request): string | undefined {
  const header = request.headers.get('authorization');
  if (header && BEARER.test(header)) return header.replace(BEARER, '').trim();
  // Only the page and the event stream need the query form (browsers cannot give them headers).
  if (!request.url.includes('token=')) return undefined;
  return new URL(request.url).searchParams.get('token') ?? undefined;
}

/** Origin `http(s)://HOST` exactly as the request's Host: the dashboard calling its own API. */
function sameOrigin(origin: string, host: string | null): boolean {
  if (host === null) return false;
  const o = origin.toLowerCase();
  const h = host.toLowerCase();
  return o === `http://${h}` || o === `https://${h}`;
}

/** A header or content type that makes a browser send a CORS preflight first: no simple cross-site form or fetch has it. */
function preflighted(headers: Headers): boolean {
  if (headers.has(REQUEST_HEADER) || headers.has('authorization')) return true;
  const type = headers.get('content-type');
  if (type === null) return false;
  const semicolon = type.indexOf(';');
  return (semicolon === -1 ? type : type.slice(0, semicolon)).trim().toLowerCase() === 'application/json';
}

function clip(value: string | null): string | undefined {
  if (value === null) return undefined;
  return value.length > LOGGED_CHARS ? value.slice(0, LOGGED_CHARS) + '…' : value;
}

export class RequestGuard {
  private settings!: GuardSettings;
  private hosts = new Set<string>();
  private lastLogAt = 0;
  private unlogged = 0;
  /** Sources that sent wrong tokens. */
  readonly penalties: SourcePenalties;

  constructor(
    settings: GuardSettings,
    private readonly logger: Logger,
  ) {
    this.penalties = new SourcePenalties(logger, 'control api');
    this.configure(settings);
  }

  /** New token or allowed hosts (same address): applies at once. */
  configure(settings: GuardSettings): void {
    this.settings = settings;
    const hosts = new Set(['localhost', '127.0.0.1', '::1']);
    const listen = bareName(settings.listenHost);
    if (listen !== '' && listen !== '::' && listen !== '0.0.0.0') hosts.add(listen);
    for (const name of settings.allowedHosts) hosts.add(bareName(name));
    this.hosts = hosts;
  }

  /** A refusal to answer with, or undefined to let the request through. `address`: the client's, when the server tells it. */
  check(request: Request, address?: string): Response | undefined {
    const method = request.method;
    const mutating = method !== 'GET' && method !== 'HEAD';
    const path = pathOf(request.url);
    // The path exactly: `/status?x=/healthz` is not liveness.
    if (!mutating && path === HEALTHZ_PATH) return undefined;
    if (address !== undefined && this.penalties.refuses(address)) {
      return new Response(JSON.stringify({ error: 'too many wrong tokens from this address: try again later' }) + '\n', { status: 429, headers: JSON_HEADERS });
    }
    const { token, loopback } = this.settings;
    const given = givenToken(request);
    const authenticated = token !== undefined && tokenMatches(token, given);
    if (!authenticated && token !== undefined && given !== undefined && address !== undefined) this.penalties.failed(address);
    if (!authenticated && (!loopback || (mutating && token !== undefined))) {
      return new Response(JSON.stringify({ error: 'a valid bearer token is required' }) + '\n', {
        status: 401,
        headers: { ...JSON_HEADERS, 'www-authenticate': 'Bearer realm="wmproxy"' },
      });
    }
    const headers = request.headers;
    const host = headers.get('host');
    if (!authenticated && (host === null || !this.hosts.has(hostName(host)))) {
      return this.refuse(421, 'host', request, path, `the Host header ${JSON.stringify(host ?? '')} does not name this control API; use its address, localhost, 127.0.0.1 or [::1], or add the name to control.allowed_hosts`);
    }
    if (!mutating) return undefined;
    const site = headers.get('sec-fetch-site');
    if (site === 'cross-site' || site === 'same-site') {
      return this.refuse(403, 'cross-site', request, path, `a ${site} request cannot change the instance (Sec-Fetch-Site: ${site})`);
    }
    const origin = headers.get('origin');
    if (origin !== null && !sameOrigin(origin, host)) {
      return this.refuse(403, 'cross-origin', request, path, `a request from another origin (${origin}) cannot change the instance`);
    }
    if (!preflighted(headers)) {
      return this.refuse(403, 'simple-request', request, path, `${method} needs Content-Type: application/json or an X-Wmproxy-Request: 1 header (protection against cross-site requests)`);
    }
    return undefined;
  }

  private refuse(status: number, reason: string, request: Request, path: string, message: string): Response {
    const now = Date.now();
    if (now - this.lastLogAt >= LOG_INTERVAL_MS) {
      this.logger.warn('control API refused a request', {
        reason,
        status,
        method: request.method,
        path: clip(path),
        host: clip(request.headers.get('host')),
        origin: clip(request.headers.get('origin')),
        site: clip(request.headers.get('sec-fetch-site')),
        ...(this.unlogged > 0 ? { unlogged: this.unlogged } : {}),
      });
      this.lastLogAt = now;
      this.unlogged = 0;
    } else this.unlogged++;
    return new Response(JSON.stringify({ error: message }) + '\n', { status, headers: JSON_HEADERS });
  }
}
