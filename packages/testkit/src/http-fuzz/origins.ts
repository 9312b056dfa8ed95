import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort } from '../index.js';
import { FUZZ_DIR, JsonChild, NODE_BINARY, PYTHON_BINARY } from './child.js';
import { Tap, type TapConnection } from './tap.js';

/** Something an origin reported. `request`: a complete request it parsed (and answered 200). */
export interface OriginEvent {
  type: 'request' | 'reject' | 'aborted' | 'tunnel' | 'expectation';
  conn: number | string;
  n?: number;
  method?: string;
  url?: string;
  version?: string;
  /** Raw name/value list, flattened. */
  headers?: string[];
  /** Base64 body, for `request`. */
  body?: string;
  code?: string | number;
  reason?: string;
}

export interface OriginRecord {
  events: OriginEvent[];
  /** The bytes on every connection the proxy opened to the origin (through the tap). */
  wire: TapConnection[];
  /** nginx's access log lines (JSON), for nginx. */
  log: string[];
}

/** A real HTTP server behind a recording tap, reporting what it parsed. */
export interface Origin {
  readonly name: string;
  /** Where the proxy sends requests: the tap in front of the origin (`127.0.0.1:NNNNN`). */
  readonly address: string;
  /** Wait (bounded) until every connection the proxy opened is closed, then hand over what happened since the last call. */
  collect(): Promise<OriginRecord>;
  close(): Promise<void>;
}

/** Thrown when an origin cannot run on this machine (the test skips it with this message). */
export class OriginUnavailable extends Error {}

function findOnPath(name: string, fallback: string[]): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), ...fallback]) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Debian's nginx (or one on PATH). */
export const NGINX_BINARY: string | undefined = findOnPath('nginx', ['/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']);

class ChildOrigin implements Origin {
  constructor(
    readonly name: string,
    private readonly child: JsonChild,
    private readonly tap: Tap,
  ) {}

  get address(): string {
    return this.tap.address;
  }

  async collect(): Promise<OriginRecord> {
    await this.tap.settle();
    const reply = await this.child.call({ cmd: 'sync' });
    return { events: (reply.events as OriginEvent[] | undefined) ?? [], wire: this.tap.take(), log: [] };
  }

  async close(): Promise<void> {
    await this.tap.close();
    await this.child.close();
  }
}

async function childOrigin(name: string, command: string, args: string[]): Promise<ChildOrigin> {
  const child = new JsonChild(command, args, `${name} origin`);
  let ready: Record<string, unknown>;
  try {
    ready = await child.ready;
  } catch (error) {
    await child.close();
    throw error;
  }
  const tap = await Tap.start(ready.port as number);
  return new ChildOrigin(name, child, tap);
}

/** node:http (llhttp, strict) in a child `node` process, so that it is llhttp on Bun too. */
export async function startNodeOrigin(): Promise<Origin> {
  if (!NODE_BINARY) throw new OriginUnavailable('no `node` binary on PATH: the llhttp origin needs one');
  return childOrigin('node', NODE_BINARY, [join(FUZZ_DIR, 'node-llhttp.mjs'), 'node']);
}

/** Python's http.server (BaseHTTPRequestHandler) with a typical hand-written body reader. */
export async function startPythonOrigin(): Promise<Origin> {
  if (!PYTHON_BINARY) throw new OriginUnavailable('no `python3` on PATH');
  return childOrigin('python', PYTHON_BINARY, ['-u', join(FUZZ_DIR, 'python-origin.py')]);
}

/**
 * nginx as the origin: it parses the request and reads the body, then passes
 * it to a node:http sink (a child process) that reports what nginx forwarded;
 * nginx's own refusals show in its access log and carry `X-Fuzz-Nginx`.
 */
class NginxOrigin implements Origin {
  readonly name = 'nginx';
  private logOffset = 0;

  constructor(
    private readonly process: ChildProcess,
    private readonly exited: Promise<void>,
    private readonly sink: JsonChild,
    private readonly tap: Tap,
    private readonly dir: string,
  ) {}

  get address(): string {
    return this.tap.address;
  }

  async collect(): Promise<OriginRecord> {
    await this.tap.settle();
    const reply = await this.sink.call({ cmd: 'sync' });
    const events = (reply.events as OriginEvent[] | undefined) ?? [];
    let text = '';
    try {
      text = readFileSync(join(this.dir, 'access.log'), 'latin1');
    } catch {
      text = '';
    }
    const fresh = text.slice(this.logOffset);
    this.logOffset = text.length;
    const log = fresh.split('\n').filter((line) => line.length > 0);
    for (const line of log) {
      let entry: { status?: number; request?: string; conn?: number };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue;
      }
      if ((entry.status ?? 0) >= 400) events.push({ type: 'reject', conn: entry.conn ?? 0, code: entry.status, reason: entry.request ?? '' });
    }
    return { events, wire: this.tap.take(), log };
  }

  async close(): Promise<void> {
    await this.tap.close();
    this.process.kill('SIGTERM');
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 2_000);
    await this.exited;
    clearTimeout(timer);
    await this.sink.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function nginxConfig(dir: string, port: number, sinkPort: number): string {
  return `pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 512; }
http {
  log_format fuzz escape=json '{"conn":$connection,"n":$connection_requests,"status":$status,"request":"$request","method":"$request_method","uri":"$request_uri","length":$request_length,"cl":"$content_length","te":"$http_transfer_encoding"}';
  access_log ${dir}/access.log fuzz;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:${port};
    add_header X-Fuzz-Nginx 1 always;
    location / {
      proxy_pass http://127.0.0.1:${sinkPort};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Fuzz-Nginx-Conn $connection;
      proxy_next_upstream off;
    }
  }
}
`;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startNginxOrigin(): Promise<Origin> {
  const binary = NGINX_BINARY;
  if (!binary) throw new OriginUnavailable('nginx is not installed (CI installs it; on Debian: apt-get install nginx-light)');
  if (!NODE_BINARY) throw new OriginUnavailable('no `node` binary on PATH for the nginx sink');
  const sink = new JsonChild(NODE_BINARY, [join(FUZZ_DIR, 'node-llhttp.mjs'), 'nginx-sink'], 'nginx sink');
  let sinkPort: number;
  try {
    sinkPort = (await sink.ready).port as number;
  } catch (error) {
    await sink.close();
    throw error;
  }
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-fuzz-nginx-'));
  let lastError = '';
  // nginx cannot listen on port 0: take a free port, and try another if someone took it meanwhile.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await closedPort();
    writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, sinkPort));
    const child = spawn(binary, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', 'stderr', '-g', 'daemon off; master_process off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      if (stderr.length < 8192) stderr += chunk.toString();
    });
    let gone = false;
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        gone = true;
        resolve();
      });
      child.once('error', () => {
        gone = true;
        resolve();
      });
    });
    const end = Date.now() + 5_000;
    let up = false;
    while (!gone && Date.now() < end) {
      if (await canConnect(port)) {
        up = true;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (up) {
      const tap = await Tap.start(port);
      return new NginxOrigin(child, exited, sink, tap, dir);
    }
    child.kill('SIGKILL');
    await exited;
    lastError = stderr;
    if (!/in use/i.test(stderr)) break;
  }
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`nginx did not start: ${lastError}`);
}

/** Start an origin by name. */
export function startOrigin(name: 'node' | 'python' | 'nginx'): Promise<Origin> {
  switch (name) {
    case 'node':
      return startNodeOrigin();
    case 'python':
      return startPythonOrigin();
    case 'nginx':
      return startNginxOrigin();
  }
}
