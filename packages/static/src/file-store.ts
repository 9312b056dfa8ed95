import { promises as fsp, type Stats } from 'node:fs';
import { sep } from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { httpDate } from './conditional.js';
import type { Coding } from './encoding.js';

/** What the server knows about one path on disk. */
export interface FileMeta {
  kind: 'file' | 'dir' | 'other';
  size: number;
  mtimeMs: number;
  mtimeSeconds: number;
  ino: number;
  lastModified: string;
  /** A symlink somewhere on the way resolves outside the root. */
  outside: boolean;
}

const MAX_META_ENTRIES = 10_000;

/** zstd is in node:zlib from Node 22.15 / 23.8 and in Bun. */
const zlibAny = zlib as unknown as Record<string, unknown>;
export const zstdAvailable = typeof zlibAny.zstdCompress === 'function';

const compressors: Record<Coding, (data: Uint8Array) => Promise<Uint8Array>> = {
  gzip: promisify(zlib.gzip) as (data: Uint8Array) => Promise<Uint8Array>,
  br: (data) =>
    promisify(zlib.brotliCompress)(data, {
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length },
    }) as Promise<Uint8Array>,
  zstd: zstdAvailable
    ? (promisify(zlibAny.zstdCompress as typeof zlib.gzip) as (data: Uint8Array) => Promise<Uint8Array>)
    : () => Promise.reject(new Error('zstd is not available in this runtime')),
};

/**
 * File metadata with a short time-to-live (like nginx's `open_file_cache`), and
 * a bounded LRU of small files' bytes and on-the-fly compressed bodies, keyed
 * by path and validated by ETag so a changed file is never served stale once
 * its metadata expires.
 */
export class FileStore {
  private readonly meta = new Map<string, { at: number; value: FileMeta | null }>();
  private readonly bytes = new Map<string, { etag: string; data: Uint8Array }>();
  private readonly loading = new Map<string, Promise<Uint8Array | undefined>>();
  private bytesTotal = 0;
  private realRoot: Promise<string> | undefined;

  constructor(
    readonly root: string,
    private readonly ttlMs: number,
    private readonly followSymlinks: boolean,
    private readonly memory: { maxFileSize: number; maxBytes: number } | undefined,
  ) {}

  /** Metadata for an absolute path under the root; null when missing or unreadable. */
  async stat(path: string): Promise<FileMeta | null> {
    const now = this.ttlMs > 0 ? Date.now() : 0;
    if (this.ttlMs > 0) {
      const cached = this.meta.get(path);
      if (cached && now - cached.at < this.ttlMs) return cached.value;
    }
    const value = await this.load(path);
    if (this.ttlMs > 0) {
      if (this.meta.size >= MAX_META_ENTRIES) this.meta.delete(this.meta.keys().next().value!);
      this.meta.set(path, { at: now, value });
    }
    return value;
  }

  private async load(path: string): Promise<FileMeta | null> {
    let stats: Stats;
    try {
      stats = await fsp.stat(path);
    } catch {
      return null;
    }
    let outside = false;
    if (!this.followSymlinks) {
      this.realRoot ??= fsp.realpath(this.root).catch(() => this.root);
      const [root, real] = await Promise.all([this.realRoot, fsp.realpath(path).catch(() => '')]);
      outside = real !== root && !real.startsWith(root.endsWith(sep) ? root : root + sep);
    }
    const mtimeSeconds = Math.floor(stats.mtimeMs / 1000);
    return {
      kind: stats.isFile() ? 'file' : stats.isDirectory() ? 'dir' : 'other',
      size: stats.size,
      mtimeMs: stats.mtimeMs,
      mtimeSeconds,
      ino: stats.ino,
      lastModified: httpDate(mtimeSeconds),
      outside,
    };
  }

  /** True when a file of this size is kept in memory. */
  cacheable(size: number): boolean {
    return this.memory !== undefined && size <= this.memory.maxFileSize;
  }

  /** The file's bytes from the LRU, reading it once when absent or stale. */
  contents(path: string, etag: string): Promise<Uint8Array | undefined> {
    return this.remember(path, etag, () => fsp.readFile(path));
  }

  /** The file compressed with `coding`, computed once per ETag. */
  compressed(path: string, etag: string, coding: Coding): Promise<Uint8Array | undefined> {
    return this.remember(`${coding}\0${path}`, etag, async () => compressors[coding](await fsp.readFile(path)));
  }

  private remember(key: string, etag: string, produce: () => Promise<Uint8Array>): Promise<Uint8Array | undefined> {
    const hit = this.bytes.get(key);
    if (hit && hit.etag === etag) {
      // Refresh recency.
      this.bytes.delete(key);
      this.bytes.set(key, hit);
      return Promise.resolve(hit.data);
    }
    const loadKey = key + '\0' + etag;
    const pending = this.loading.get(loadKey);
    if (pending) return pending;
    const promise = produce()
      .then((data) => {
        this.store(key, etag, data);
        return data;
      })
      .catch(() => undefined)
      .finally(() => this.loading.delete(loadKey));
    this.loading.set(loadKey, promise);
    return promise;
  }

  private store(key: string, etag: string, data: Uint8Array): void {
    const limit = this.memory?.maxBytes ?? 0;
    const previous = this.bytes.get(key);
    if (previous) {
      this.bytesTotal -= previous.data.length;
      this.bytes.delete(key);
    }
    if (data.length > limit) return;
    while (this.bytesTotal + data.length > limit && this.bytes.size > 0) {
      const [oldest, entry] = this.bytes.entries().next().value!;
      this.bytesTotal -= entry.data.length;
      this.bytes.delete(oldest);
    }
    this.bytes.set(key, { etag, data });
    this.bytesTotal += data.length;
  }
}
