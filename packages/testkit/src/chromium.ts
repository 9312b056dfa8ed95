/**
 * Headless Chromium driven through the DevTools protocol, for tests that
 * need a real browser (the dashboard, WebSocket interop): launch it, open
 * its first page, evaluate scripts, and clean up after it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import WebSocket from 'ws';

/** Debian's Chromium, when installed. */
export const CHROMIUM: string | undefined = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path));

/**
 * Flags for headless Chromium on a machine with no network but loopback:
 * without the background-networking ones it keeps dialling Google's hosts.
 */
export function chromiumFlags(profileDir: string): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
    `--user-data-dir=${profileDir}`,
  ];
}

/** A minimal DevTools protocol client for one page. */
export class Page {
  private id = 0;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  /** Protocol events (console messages, exceptions, requests) once their domain is enabled. */
  readonly events: Array<{ method: string; params: Record<string, unknown> }> = [];

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as { id?: number; method?: string; params?: Record<string, unknown>; result?: unknown; error?: { message: string } };
      if (message.id === undefined) {
        if (message.method) this.events.push({ method: message.method, params: message.params ?? {} });
        return;
      }
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) waiter?.reject(new Error(message.error.message));
      else waiter?.resolve(message.result);
    });
  }

  static async open(url: string): Promise<Page> {
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return new Page(socket);
  }

  /** The browser's first page, through its DevTools port. */
  static async first(port: number): Promise<Page> {
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ type: string; webSocketDebuggerUrl: string }>;
    return Page.open(targets.find((target) => target.type === 'page')!.webSocketDebuggerUrl);
  }

  send<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.id;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  async evaluate<T>(expression: string): Promise<T> {
    // A promise is awaited in the page: its value comes back.
    const result = await this.send<{ result: { value: T }; exceptionDetails?: unknown }>('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    return result.result.value;
  }

  close(): void {
    this.socket.close();
  }
}

export async function launchChromium(profile: string, extra: string[] = []): Promise<{ chrome: ChildProcess; port: number }> {
  const chrome = spawn(
    CHROMIUM!,
    [
      ...chromiumFlags(profile),
      ...extra,
      '--remote-debugging-address=127.0.0.1',
      '--remote-debugging-port=0',
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`chromium did not start: ${stderr}`)), 60_000);
    chrome.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    chrome.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`chromium exited with ${code}: ${stderr}`));
    });
  });
  return { chrome, port };
}


/**
 * Chromium's helper processes may still be writing the profile as they die
 * (they outlive the killed browser for a moment): retry, and if the directory
 * is still busy, leave it to the end of the process. A temporary directory
 * is not what these tests are about.
 */
export async function killChrome(chrome: ChildProcess | undefined): Promise<void> {
  if (!chrome || chrome.exitCode !== null) return;
  const exited = new Promise((resolve) => chrome.once('exit', resolve));
  chrome.kill('SIGKILL');
  await exited;
}

export function removeProfile(profile: string): void {
  try {
    rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
  } catch {
    process.once('exit', () => {
      try {
        rmSync(profile, { recursive: true, force: true });
      } catch {
        // Left in the temporary directory.
      }
    });
  }
}
