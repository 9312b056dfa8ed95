import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * RFC 1929 credentials. Passwords are compared as SHA-256 digests with a
 * constant-time comparison, so the time taken says nothing about how much of
 * a guess was right.
 */
export class UserTable {
  private readonly digests = new Map<string, Buffer>();

  constructor(users: Record<string, string>) {
    for (const [name, password] of Object.entries(users)) this.digests.set(name, digest(password));
  }

  get size(): number {
    return this.digests.size;
  }

  verify(username: string, password: string): boolean {
    const expected = this.digests.get(username);
    const given = digest(password);
    // Compare even for unknown users, so both cases take the same time.
    return timingSafeEqual(given, expected ?? UNKNOWN_USER) && expected !== undefined;
  }
}

const UNKNOWN_USER = Buffer.alloc(32);

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
