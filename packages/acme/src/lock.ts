/**
 * One order per certificate across workers and instances sharing a storage
 * directory: `locks/<id>.lock` is created exclusively and holds a lease
 * (owner and expiry) that the holder refreshes while it orders. A lock whose
 * lease ran out (its holder died) is taken over. Others wait, then read the
 * certificate the holder stored.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { hostname } from 'node:os';

interface Lease {
  owner: string;
  expires: number;
}

export class LeaseLock {
  private timer: ReturnType<typeof setInterval> | undefined;
  private held = false;
  readonly owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;

  constructor(
    readonly path: string,
    readonly leaseMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Take the lock if free or its lease ran out. Returns false when someone else holds it. */
  async tryAcquire(): Promise<boolean> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    if (await this.create()) return this.start();
    const lease = await this.read();
    if (lease && lease.expires > this.now()) return false;
    // Expired or unreadable: replace it, then check we are the one who did (two may race here).
    await this.write();
    const after = await this.read();
    return after?.owner === this.owner ? this.start() : false;
  }

  /** Give it up (only if still ours). */
  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (!this.held) return;
    this.held = false;
    const lease = await this.read();
    if (lease?.owner === this.owner) await unlink(this.path).catch(() => undefined);
  }

  /** Whether a live lease (anyone's) is on the file. */
  async busy(): Promise<boolean> {
    const lease = await this.read();
    return lease !== undefined && lease.expires > this.now();
  }

  private start(): boolean {
    this.held = true;
    // Refresh well before expiry; a refresh that fails leaves the lease to run out.
    this.timer = setInterval(() => void this.write().catch(() => undefined), Math.max(10, Math.floor(this.leaseMs / 3)));
    this.timer.unref?.();
    return true;
  }

  private lease(): string {
    return JSON.stringify({ owner: this.owner, expires: this.now() + this.leaseMs } satisfies Lease);
  }

  private async create(): Promise<boolean> {
    try {
      const handle = await open(this.path, 'wx', 0o600);
      try {
        await handle.writeFile(this.lease());
      } finally {
        await handle.close();
      }
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  }

  private async write(): Promise<void> {
    const temporary = `${this.path}.${randomBytes(6).toString('hex')}.tmp`;
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(this.lease());
    } finally {
      await handle.close();
    }
    await rename(temporary, this.path);
  }

  private async read(): Promise<Lease | undefined> {
    try {
      const lease = JSON.parse(await readFile(this.path, 'utf8')) as Partial<Lease>;
      return typeof lease.owner === 'string' && typeof lease.expires === 'number' ? (lease as Lease) : undefined;
    } catch {
      return undefined;
    }
  }
}
