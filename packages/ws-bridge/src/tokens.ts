import { readFile, stat } from 'node:fs/promises';

export interface HostPort {
  host: string;
  port: number;
}

export class TokenFileError extends Error {}

const TOKEN = /^[A-Za-z0-9._~-]{1,256}$/;

/** `host:port`, `[v6]:port`; undefined when malformed. */
export function parseHostPort(text: string): HostPort | undefined {
  const value = text.trim();
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: match[1] ?? match[2]!, port };
}

/**
 * websockify's token file (`--token-plugin TokenFile --token-source F`): one
 * `token: host:port` per line, `#` comments and blank lines ignored. A bad
 * line is an error naming the file and line, not a silently missing token.
 */
export function parseTokenFile(text: string, file = 'token file'): Map<string, HostPort> {
  const tokens = new Map<string, HostPort>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    const token = colon < 0 ? '' : line.slice(0, colon).trim();
    const target = colon < 0 ? undefined : parseHostPort(line.slice(colon + 1));
    if (!TOKEN.test(token) || !target) throw new TokenFileError(`${file}:${i + 1}: expected "token: host:port", got "${line}"`);
    tokens.set(token, target);
  }
  return tokens;
}

/**
 * Tokens read from a file, re-read when its modification time changes (so
 * editing the file takes effect without a restart, as with websockify).
 * A file that became unreadable or invalid keeps the last good table and
 * reports the problem through `onError`.
 */
export class TokenFile {
  private table = new Map<string, HostPort>();
  private mtimeMs = -1;
  private loading: Promise<void> | undefined;

  constructor(readonly path: string, private readonly onError: (error: Error) => void = () => {}) {}

  /** Read the file now; throws when it is missing or invalid (at start-up, a bad file is fatal). */
  async load(): Promise<void> {
    const info = await stat(this.path);
    this.table = parseTokenFile(await readFile(this.path, 'utf8'), this.path);
    this.mtimeMs = info.mtimeMs;
  }

  async lookup(token: string): Promise<HostPort | undefined> {
    this.loading ??= this.refresh().finally(() => {
      this.loading = undefined;
    });
    await this.loading;
    return this.table.get(token);
  }

  private async refresh(): Promise<void> {
    try {
      const info = await stat(this.path);
      if (info.mtimeMs === this.mtimeMs) return;
      this.table = parseTokenFile(await readFile(this.path, 'utf8'), this.path);
      this.mtimeMs = info.mtimeMs;
    } catch (error) {
      this.onError(error as Error);
    }
  }
}
