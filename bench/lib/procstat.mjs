// Live resource use of a process tree from /proc: open file descriptors,
// resident memory, CPU time, and a sampler that keeps their peaks.
import { readdirSync, readFileSync } from 'node:fs';

/** `pid` and its live descendants (an nginx master and its workers). */
export function processTree(pid) {
  const out = [pid];
  let children = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {}
  for (const child of children) out.push(...processTree(child));
  return out;
}

/** Open file descriptors of `pids` together (undefined when none of them exists). */
export function fdCount(pids) {
  let count;
  for (const pid of pids) {
    try {
      count = (count ?? 0) + readdirSync(`/proc/${pid}/fd`).length;
    } catch {}
  }
  return count;
}

/** Resident memory of `pids` together, in MiB (VmRSS). */
export function rssMiB(pids) {
  let kib;
  for (const pid of pids) {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) kib = (kib ?? 0) + Number(match[1]);
    } catch {}
  }
  return kib === undefined ? undefined : kib / 1024;
}

/** User + system CPU seconds of `pids` together. */
export function cpuSecondsOf(pids, ticksPerSecond = 100) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {}
  }
  return ticks / ticksPerSecond;
}

/**
 * Sample FDs and RSS of a process tree (the root's descendants re-read every
 * time: nginx may replace a worker) every `everyMs`; `peak()` and `reset()`
 * give and restart the peaks; `last` is the latest sample.
 */
export class Sampler {
  constructor(rootPid, everyMs = 250) {
    this.rootPid = rootPid;
    this.last = { fds: 0, rss: 0 };
    this.reset();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.sample();
  }

  sample() {
    const pids = processTree(this.rootPid);
    const fds = fdCount(pids) ?? 0;
    const rss = rssMiB(pids) ?? 0;
    this.last = { fds, rss, at: performance.now() };
    this.peakFds = Math.max(this.peakFds, fds);
    this.peakRss = Math.max(this.peakRss, rss);
    return this.last;
  }

  reset() {
    this.peakFds = 0;
    this.peakRss = 0;
  }

  stop() {
    clearInterval(this.timer);
  }
}
