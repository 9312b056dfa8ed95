// wrk: run it (directly or through an HTTP proxy) and parse its summary.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from './proc.mjs';

const UNITS = { us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZES = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

/** Parse wrk's text output into numbers (latencies in ms, transfer in bytes/s). */
export function parseWrk(text) {
  const number = (regex) => {
    const match = regex.exec(text);
    return match ? Number(match[1]) : undefined;
  };
  const latency = /Latency\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)/.exec(text);
  const transfer = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(text);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    requestsPerSec: number(/Requests\/sec:\s+([\d.]+)/),
    requests: number(/(\d+) requests in/),
    latencyAvgMs: latency ? Number(latency[1]) * UNITS[latency[2]] : undefined,
    latencyMaxMs: latency ? Number(latency[5]) * UNITS[latency[6]] : undefined,
    transferPerSec: transfer ? Number(transfer[1]) * SIZES[transfer[2]] : undefined,
    non2xx: number(/Non-2xx or 3xx responses: (\d+)/) ?? 0,
    socketErrors: socketErrors ? socketErrors.slice(1).reduce((sum, value) => sum + Number(value), 0) : 0,
    // Only with --latency (the distribution table); undefined otherwise.
    latencyP50Ms: percentile(text, 50),
    latencyP99Ms: percentile(text, 99),
  };
}

/** A line `  99%    1.23ms` of wrk's --latency distribution, in ms. */
function percentile(text, p) {
  const match = new RegExp(`^\\s+${p}(?:\\.0+)?%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(text);
  return match ? Number(match[1]) * UNITS[match[2]] : undefined;
}

/**
 * Run wrk against `url`. With `proxy` ({host, port}) wrk connects to the
 * proxy and sends absolute-form requests for `url` (set by a Lua script).
 * `latency` adds wrk's percentile table (latencyP50Ms, latencyP99Ms).
 */
export async function runWrk({ url, proxy, threads = 2, connections = 50, durationSec = 10, timeoutSec = 5, latency = false }) {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-wrk-'));
  try {
    const args = [`-t${threads}`, `-c${connections}`, `-d${durationSec}s`, `--timeout`, `${timeoutSec}s`, ...(latency ? ['--latency'] : [])];
    let target = url;
    if (proxy) {
      const script = join(dir, 'proxy.lua');
      const { host } = new URL(url);
      writeFileSync(script, `wrk.path = ${JSON.stringify(url)}\nwrk.headers["Host"] = ${JSON.stringify(host)}\n`);
      args.push('-s', script);
      target = `http://${proxy.host}:${proxy.port}/`;
    }
    const result = await runCommand('wrk', [...args, target], { timeoutMs: (durationSec + 60) * 1000 });
    if (result.code !== 0) throw new Error(`wrk failed (${result.code}): ${result.stderr || result.stdout}`);
    return { ...parseWrk(result.stdout), raw: result.stdout };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
