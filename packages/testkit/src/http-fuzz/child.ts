import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

/** packages/testkit/fuzz: the child scripts and the seed corpus (found from src/ under Bun and dist/src/ under Node). */
export const FUZZ_DIR: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'fuzz', 'node-llhttp.mjs'))) return join(dir, 'fuzz');
    dir = dirname(dir);
  }
  throw new Error('packages/testkit/fuzz not found');
})();

/** A `node` binary (llhttp): this one under Node, the first on PATH under Bun; undefined when there is none. */
export const NODE_BINARY: string | undefined = (() => {
  if (!('bun' in process.versions)) return process.execPath;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'node'))) return join(dir, 'node');
  }
  return undefined;
})();

/** `python3` on PATH, if any. */
export const PYTHON_BINARY: string | undefined = (() => {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'python3'))) return join(dir, 'python3');
  }
  return undefined;
})();

/**
 * A child process speaking one JSON object per line: a `{"ready":true,...}`
 * line first, then one reply per command, matched by `id`. Closing its stdin
 * ends it; `close()` also kills it if it lingers.
 */
export class JsonChild {
  readonly ready: Promise<Record<string, unknown>>;
  private readonly child: ChildProcess;
  private readonly waiting = new Map<number, (reply: Record<string, unknown>) => void>();
  private nextId = 1;
  private exited = false;
  private stderr = '';

  constructor(command: string, args: string[], what: string) {
    // Not measured by the parent's c8 (NODE_V8_COVERAGE would make every child write a coverage file).
    const env = { ...process.env };
    delete env.NODE_V8_COVERAGE;
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      if (this.stderr.length < 8192) this.stderr += chunk.toString();
    });
    this.child.stdin!.on('error', () => undefined);
    const lines = createInterface({ input: this.child.stdout! });
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what} did not start within 10 s: ${this.stderr}`)), 10_000);
      this.child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      this.child.once('exit', (code) => {
        this.exited = true;
        clearTimeout(timer);
        reject(new Error(`${what} exited with ${code}: ${this.stderr}`));
        for (const resolveReply of this.waiting.values()) resolveReply({ error: `${what} exited` });
        this.waiting.clear();
      });
      lines.on('line', (line) => {
        let message: Record<string, unknown>;
        try {
          message = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if (message.ready === true) {
          clearTimeout(timer);
          resolve(message);
          return;
        }
        const id = message.id as number;
        const resolveReply = this.waiting.get(id);
        this.waiting.delete(id);
        resolveReply?.(message);
      });
    });
    // Nobody may await `ready` (a failed start is reported by the caller that does).
    this.ready.catch(() => undefined);
  }

  /** Send a command; resolves with the reply (bounded by `limitMs`). */
  call(command: Record<string, unknown>, limitMs = 10_000): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error('child process has exited'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no reply to ${String(command.cmd)} within ${limitMs} ms`));
      }, limitMs);
      this.waiting.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.child.stdin!.write(JSON.stringify({ ...command, id }) + '\n');
    });
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2_000);
    await exited;
    clearTimeout(timer);
  }
}
