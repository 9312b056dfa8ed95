// Shared by the CLI tests: run `wmproxy <args>` as a user would (a child
// process of the runtime that runs the tests: bun for bun test, node for
// node --test), either to completion or in the background, and drive it with curl.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));

/** cli/bin/run.js, found from cli/test (Bun runs the sources) or cli/dist/test (Node runs the compiled tests). */
export const runJs: string = (() => {
  const found = [join(here, '..', 'bin', 'run.js'), join(here, '..', '..', 'bin', 'run.js')].find((path) => existsSync(path));
  if (!found) throw new Error(`cli/bin/run.js not found from ${here}`);
  return found;
})();

/**
 * The environment of the CLI: the tests' own, without NODE_ENV. bun test sets
 * NODE_ENV=test, which makes oclif look for TypeScript sources by itself; a user has none.
 */
export function cliEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_ENV;
  return env;
}

/** What a process printed, and how it exited (null: killed by a signal). */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function spawnCli(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [runJs, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...cliEnv(), ...env } });
}

/** Run `wmproxy <args>` to its exit; it is killed after `timeoutMs` should it hang. */
export function wmproxy(args: string[], options: { timeoutMs?: number } = {}): Promise<Run> {
  return collect(spawnCli(args), options.timeoutMs ?? 30_000);
}

/** Run curl (silent, errors on stderr, 10 s at most) to its exit. */
export function curl(args: string[]): Promise<Run> {
  return collect(spawn('curl', ['-sS', '--max-time', '10', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }), 30_000);
}

function collect(child: ChildProcess, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const safety = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(safety);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(safety);
      resolve({ code, stdout, stderr });
    });
  });
}

type Stream = 'stdout' | 'stderr';

/**
 * `wmproxy <args>` in the background, with its output collected as it comes.
 * Wait for a line with `waitFor`, end it with `stop` (the exit code) and, in a
 * `finally`, `kill()` it in case the test failed first. It is killed after 60 s should it hang.
 */
export class Running {
  stdout = '';
  stderr = '';
  /** Resolves with the exit code (null: killed by a signal) once the process exited and its output was read. */
  readonly exited: Promise<number | null>;
  readonly child: ChildProcess;
  private closed = false;

  /** `env` is added to the tests' environment. */
  constructor(
    readonly args: string[],
    env: Record<string, string> = {},
  ) {
    this.child = spawnCli(args, env);
    this.child.stdout!.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    const safety = setTimeout(() => this.child.kill('SIGKILL'), 60_000);
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => (this.stderr += `\nspawn: ${error.message}`));
      this.child.on('close', (code) => {
        clearTimeout(safety);
        this.closed = true;
        resolve(code);
      });
    });
  }

  /**
   * The first match of `pattern` in the output (stdout unless told), looked for
   * every 50 ms. Rejects, with what was printed, if the process exits or
   * `timeoutMs` passes first. Polling, as the tests always did, leaves the
   * process a moment after the line: `wmproxy run` prints "running" just
   * before it installs its signal handlers, so a SIGTERM sent the instant the
   * line arrives can still kill it with the default action.
   */
  async waitFor(pattern: RegExp, options: { stream?: Stream; timeoutMs?: number } = {}): Promise<RegExpExecArray> {
    const stream = options.stream ?? 'stdout';
    const timeoutMs = options.timeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // Read `closed` first: once it is set, every byte of output has been read.
      const closed = this.closed;
      const match = pattern.exec(this[stream]);
      if (match) return match;
      if (closed || Date.now() > deadline) {
        const why = closed ? `exited with ${this.child.exitCode ?? this.child.signalCode}` : `not within ${timeoutMs} ms`;
        throw new Error(`wmproxy ${this.args.join(' ')}: no ${pattern} on ${stream} (${why}); stdout ${JSON.stringify(this.stdout)}, stderr ${JSON.stringify(this.stderr)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The port in the first match of `pattern` (its first group), e.g. from a "listening" log line. */
  async port(pattern: RegExp, stream: Stream = 'stderr'): Promise<number> {
    return Number((await this.waitFor(pattern, { stream }))[1]);
  }

  /** Send `signal` (SIGKILL unless told) if the process is still running. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.closed) this.child.kill(signal);
  }

  /** Send `signal` (SIGTERM unless told) and resolve with the exit code. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    this.kill(signal);
    return this.exited;
  }
}
