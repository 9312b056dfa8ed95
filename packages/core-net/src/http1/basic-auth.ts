import { createHash, timingSafeEqual } from 'node:crypto';

/** Realm of a challenge when none is configured. */
export const DEFAULT_BASIC_REALM = 'wmproxy';

/**
 * HTTP Basic credentials (RFC 7617) checked against a user table: the
 * forward proxy's `Proxy-Authorization` (407) and the reverse engine's
 * per-location `Authorization` (401). Passwords
 * are compared as SHA-256 digests with `timingSafeEqual`, so neither their
 * content nor their length leaks through timing.
 */
export class BasicAuth {
  private readonly digests = new Map<string, Buffer>();
  readonly realm: string;

  constructor(users: Record<string, string>, realm: string = DEFAULT_BASIC_REALM) {
    for (const [user, password] of Object.entries(users)) this.digests.set(user, digest(password));
    this.realm = realm;
  }

  get size(): number {
    return this.digests.size;
  }

  /** The user name when `header` carries valid credentials, else undefined. */
  check(header: string | undefined): string | undefined {
    if (header === undefined) return undefined;
    const space = header.indexOf(' ');
    if (space < 0 || header.slice(0, space).toLowerCase() !== 'basic') return undefined;
    const decoded = Buffer.from(header.slice(space + 1).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return undefined;
    const user = decoded.slice(0, colon);
    const expected = this.digests.get(user);
    const given = digest(decoded.slice(colon + 1));
    // Compare even for unknown users, so they take as long as known ones.
    const ok = timingSafeEqual(expected ?? ZERO_DIGEST, given) && expected !== undefined;
    return ok ? user : undefined;
  }

  /** The challenge sent with 407 (`Proxy-Authenticate`) or 401 (`WWW-Authenticate`). */
  get challenge(): string {
    return `Basic realm="${this.realm.replace(/["\\]/g, '')}"`;
  }
}

const ZERO_DIGEST = Buffer.alloc(32);

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** `Basic base64(user:pass)`, for talking to a parent proxy. */
export function basicCredentials(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
}
