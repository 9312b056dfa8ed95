// Child processes for benchmarks: start one, wait until it listens, read its
// peak resident memory (VmHWM) and CPU time from /proc, stop it.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** A port that was free a moment ago (bind 127.0.0.1:0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolve once host:port accepts a TCP connection; reject after `timeoutMs`. */
export async function waitForPort(port, { host = '127.0.0.1', timeoutMs = 15_000, child } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before listening on ${port}`);
    const ok = await new Promise((resolve) => {
      const socket = connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Start a long-running process and wait until it listens on `port`. The
 * returned handle keeps the last 8 KiB of its output for error messages.
 */
export async function startProcess(command, args, { port, env = {}, cwd, timeoutMs = 15_000, name = command } = {}) {
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk) => {
    output = (output + chunk).slice(-8192);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const handle = {
    name,
    child,
    pid: child.pid,
    get output() {
      return output;
    },
    /** Peak resident set size in MiB (VmHWM), summed over the process and its children. */
    peakRssMiB: () => peakRssMiB(child.pid),
    cpuSeconds: () => cpuSeconds(child.pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
  child.once('error', (error) => keep(`\nspawn error: ${error.message}`));
  if (port !== undefined) {
    try {
      await waitForPort(port, { timeoutMs, child });
    } catch (error) {
      await handle.stop();
      throw new Error(`${name} did not start: ${error.message}\n${output.trim()}`);
    }
  }
  return handle;
}

function childPids(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Peak RSS (VmHWM) of `pid` plus its live descendants, in MiB; undefined when it is gone. */
export function peakRssMiB(pid) {
  let kib;
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    kib = match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
  if (kib === undefined) return undefined;
  for (const child of childPids(pid)) kib += (peakRssMiB(child) ?? 0) * 1024;
  return kib / 1024;
}

/** User + system CPU seconds used so far by `pid` and its live descendants. */
export function cpuSeconds(pid) {
  let ticks;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at ") ".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks = Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
  let seconds = ticks / CLOCK_TICKS;
  for (const child of childPids(pid)) seconds += cpuSeconds(child) ?? 0;
  return seconds;
}

/** Run a command to completion; resolves with its exit code and output. */
export function runCommand(command, args, { env = {}, cwd, timeoutMs = 600_000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => (stderr += error.message));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** Is `command` on PATH? */
export function have(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}
