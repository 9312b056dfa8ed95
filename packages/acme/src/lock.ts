/**
 * One order per certificate across workers and instances sharing a storage
 * directory: `locks/<id>.lock` is created exclusively and holds a lease
 * (owner and expiry) that the holder refreshes while it orders. A lock whose
 * lease ran out (its holder died) is taken over. Others wait, then read the
 * certificate the holder stored.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, unlink } from 'node:fs/promises';
import { createExclusive, writeFileAtomic } from './files.js';
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

  /** The lock file appears with its lease in it (link of a written file): nobody ever reads it empty. */
  private create(): Promise<boolean> {
    return createExclusive(this.path, this.lease());
  }

  private write(): Promise<void> {
    return writeFileAtomic(this.path, this.lease());
  }

  /** The lease on the file; one that cannot be read (another program's, a torn disk) lasts `leaseMs` from the file's last change. */
  private async read(): Promise<Lease | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const lease = JSON.parse(text) as Partial<Lease>;
      if (typeof lease.owner === 'string' && typeof lease.expires === 'number') return lease as Lease;
    } catch {
      /* below */
    }
    const changed = await stat(this.path).then((info) => info.mtimeMs, () => 0);
    return { owner: '', expires: changed + this.leaseMs };
  }
}
