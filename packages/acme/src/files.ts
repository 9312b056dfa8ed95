import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Write a file whole or not at all: a temporary file beside it (mode 0600:
 * keys are secret, and so is nothing here worth sharing), fsync, rename.
 */
export async function writeFileAtomic(path: string, data: string): Promise<void> {
  const temporary = await writeTemporary(path, data);
  try {
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

/** The file's text, or undefined when it does not exist. */
export async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** A written, synced temporary file beside `path` (mode 0600). */
async function writeTemporary(path: string, data: string): Promise<string> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return temporary;
}

/**
 * Create `path` with `data` unless it exists, whole (a link of a written
 * file: nobody reads it half written). False when it already existed.
 */
export async function createExclusive(path: string, data: string): Promise<boolean> {
  const temporary = await writeTemporary(path, data);
  try {
    await link(temporary, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}
