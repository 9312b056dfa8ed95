import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** `$XDG_STATE_HOME/wmproxy/tunnel`, else `~/.local/state/wmproxy/tunnel`. */
export function defaultStateDir(): string {
  const base = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'wmproxy', 'tunnel');
}

/** A PEM file's text; a missing file is a usage error with the path. */
export async function readPem(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
}
