// Process and port helpers shared by the reverse-proxy benchmarks.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTree } from './lib/procstat.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `--name value` from argv, or the fallback. */
export function argument(args, name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

/** A port on 127.0.0.1 that was free a moment ago. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolve once 127.0.0.1:port accepts connections. */
export async function waitPort(port) {
  for (let i = 0; i < 400; i++) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('connect', () => (socket.destroy(), resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(25);
  }
  throw new Error(`port ${port} never opened`);
}

/** Stop a child (continuing it first if it was stopped), SIGKILL after 3 s. */
export function stop(child, signal = 'SIGTERM') {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', resolve);
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => clearTimeout(timer));
    child.kill('SIGCONT');
    child.kill(signal);
  });
}

/** The middle value (the upper one of an even count). */
export const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/**
 * The processes a benchmark starts, killed together at the end. Their
 * standard error is shown with BENCH_VERBOSE=1. With `{ stdout: true }` the
 * child's standard output is read too, and `child.output` keeps the last
 * 8 KiB of both (to parse what a server prints, and for error messages).
 */
export class Children {
  constructor() {
    this.live = new Set();
  }

  start(command, argv, name, { stdout = false } = {}) {
    const child = spawn(command, argv, { stdio: ['ignore', stdout ? 'pipe' : 'ignore', 'pipe'], cwd: root, env: { ...process.env, NODE_ENV: 'production' } });
    child.output = '';
    const keep = (chunk) => {
      child.output = (child.output + chunk).slice(-8192);
      if (process.env.BENCH_VERBOSE) process.stderr.write(`[${name}] ${chunk}`);
    };
    child.stderr.on('data', keep);
    child.stdout?.on('data', keep);
    this.live.add(child);
    child.once('exit', () => this.live.delete(child));
    return child;
  }

  /** SIGKILL every child and its descendants (an sshd's per-connection processes). */
  killAll() {
    for (const child of this.live) {
      for (const pid of processTree(child.pid).reverse()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
    }
  }
}

/**
 * Two backends in one nginx process (one port each) serving `locations`
 * (nginx `location` blocks; `root` is `dir`). Resolves once both listen.
 */
export async function startNginxBackends(children, dir, locations) {
  const ports = [await freePort(), await freePort()];
  const conf = join(dir, 'backends.conf');
  writeFileSync(
    conf,
    `daemon off; worker_processes 1; pid ${join(dir, 'backends.pid')}; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; sendfile on;
${ports.map((port) => `server { listen 127.0.0.1:${port}; root ${dir}; ${locations} }`).join('\n')}
}`,
  );
  const child = children.start('nginx', ['-c', conf, '-p', dir], 'backends');
  for (const port of ports) await waitPort(port);
  return { ports, child };
}

/** `wmproxy run -c FILE [...extra]` on Bun or Node, as a user starts it (from another built checkout with `tree`). */
export function startWmproxyRun(children, runtime, file, extra = [], tree = root) {
  const command = runtime === 'bun' ? join(tree, 'node_modules/.bin/bun') : process.execPath;
  return children.start(command, [join(tree, 'cli/bin/run.js'), 'run', '-c', file, ...extra], `wmproxy-${runtime}`);
}

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * A light open-loop HTTP/1.1 load client on raw sockets (several times
 * cheaper per request than node:http, so that on a shared 2-core machine the
 * load generator is not what is measured). Keep-alive connections, opened on
 * demand up to `maxConns`; requests beyond that queue. Understands
 * Content-Length, chunked and close-delimited responses. No retry of any kind:
 * every failure is reported, as a client would see it.
 *
 * `request(done)` calls `done(status, error, reused)`: status 0 with an error
 * code (ECONNRESET, EPIPE, ETIMEOUT, ECLOSED...) when no complete response came.
 */
export class LoadClient {
  constructor({ port, host = '127.0.0.1', path = '/', maxConns = 256, timeoutMs = 5_000 }) {
    this.port = port;
    this.host = host;
    this.maxConns = maxConns;
    this.timeoutMs = timeoutMs;
    this.head = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: wmproxy-bench\r\n\r\n`, 'latin1');
    this.idle = [];
    this.queue = [];
    this.conns = new Set();
    this.opened = 0;
    this.sweeper = setInterval(() => this.sweep(), 100);
  }

  request(done) {
    const job = { done, start: 0 };
    const conn = this.idle.pop();
    if (conn) return this.send(conn, job);
    if (this.conns.size < this.maxConns) return this.send(this.open(), job);
    this.queue.push(job);
  }

  open() {
    const socket = net.connect(this.port, this.host);
    socket.setNoDelay(true);
    const conn = { socket, job: undefined, buf: undefined, used: 0, dead: false };
    this.conns.add(conn);
    this.opened++;
    socket.on('data', (chunk) => this.onData(conn, chunk));
    socket.on('error', (error) => this.fail(conn, error.code ?? 'ERROR'));
    socket.on('close', () => this.fail(conn, 'ECLOSED'));
    return conn;
  }

  send(conn, job) {
    conn.job = job;
    job.reused = conn.used > 0;
    job.start = performance.now();
    conn.buf = undefined;
    conn.socket.write(this.head);
  }

  fail(conn, code) {
    if (conn.dead) return;
    conn.dead = true;
    this.conns.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    conn.socket.destroy();
    const job = conn.job;
    conn.job = undefined;
    if (job) job.done(0, code, job.reused);
    if (this.queue.length > 0 && this.conns.size < this.maxConns) this.send(this.open(), this.queue.shift());
  }

  onData(conn, chunk) {
    if (!conn.job) return this.fail(conn, 'EUNSOLICITED');
    conn.buf = conn.buf ? Buffer.concat([conn.buf, chunk]) : chunk;
    const result = parseResponse(conn.buf);
    if (result === undefined) return;
    if (result.error) return this.fail(conn, result.error);
    const job = conn.job;
    conn.job = undefined;
    conn.buf = undefined;
    conn.used++;
    job.done(result.status, undefined, job.reused);
    if (result.close) {
      conn.dead = true;
      this.conns.delete(conn);
      conn.socket.destroy();
      if (this.queue.length > 0) this.send(this.open(), this.queue.shift());
      return;
    }
    const next = this.queue.shift();
    if (next) this.send(conn, next);
    else this.idle.push(conn);
  }

  sweep() {
    const now = performance.now();
    for (const conn of this.conns) if (conn.job && now - conn.job.start > this.timeoutMs) this.fail(conn, 'ETIMEOUT');
  }

  get inFlight() {
    let n = this.queue.length;
    for (const conn of this.conns) if (conn.job) n++;
    return n;
  }

  close() {
    clearInterval(this.sweeper);
    for (const conn of [...this.conns]) {
      conn.dead = true;
      conn.socket.destroy();
    }
    this.conns.clear();
    this.idle.length = 0;
  }
}

/** A complete response in `buf`: {status, close}; undefined while incomplete; {error} when malformed. */
function parseResponse(buf) {
  const end = buf.indexOf(HEAD_END);
  if (end < 0) return buf.length > 65536 ? { error: 'EHEAD' } : undefined;
  const head = buf.toString('latin1', 0, end);
  const status = Number(head.slice(9, 12));
  if (!head.startsWith('HTTP/1.') || !(status >= 100)) return { error: 'EBADSTATUS' };
  let length;
  let chunked = false;
  let close = head.startsWith('HTTP/1.0');
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === 'content-length') length = Number(value);
    else if (name === 'transfer-encoding') chunked = value.includes('chunked');
    else if (name === 'connection') close = value.includes('close') ? true : value.includes('keep-alive') ? false : close;
  }
  let at = end + 4;
  if (status === 204 || status === 304) return buf.length === at ? { status, close } : { error: 'EEXTRA' };
  if (chunked) {
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at);
      if (lineEnd < 0) return undefined;
      const size = parseInt(buf.toString('latin1', at, lineEnd), 16);
      if (!(size >= 0)) return { error: 'ECHUNK' };
      if (size === 0) {
        const trailerEnd = buf.indexOf(HEAD_END, lineEnd);
        if (buf.indexOf('\r\n', lineEnd + 2) === lineEnd + 2) return buf.length >= lineEnd + 4 ? { status, close } : undefined;
        return trailerEnd < 0 ? undefined : { status, close };
      }
      at = lineEnd + 2 + size + 2;
      if (buf.length < at) return undefined;
    }
  }
  if (length === undefined) return { error: 'ENOLENGTH' };
  if (buf.length < at + length) return undefined;
  if (buf.length > at + length) return { error: 'EEXTRA' };
  return { status, close };
}
