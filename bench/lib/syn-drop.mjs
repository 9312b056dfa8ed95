// Blackholing a loopback port for benchmarks: an iptables rule drops the SYNs
// to it (established connections live on, new connects hang). Needs root.
// Every rule inserted is removed on exit, whatever happens.
import { spawnSync } from 'node:child_process';

const rules = new Set();

function iptables(op, port) {
  const result = spawnSync('iptables', [op, 'INPUT', '-i', 'lo', '-p', 'tcp', '--dport', String(port), '--syn', '-j', 'DROP'], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`iptables ${op} failed: ${result.stderr || result.error}`);
}

/** Root with a working iptables. */
export function canDropSyns() {
  return process.getuid?.() === 0 && spawnSync('iptables', ['-L', '-n'], { stdio: 'ignore' }).status === 0;
}

export function dropSyns(port) {
  iptables('-I', port);
  rules.add(port);
}

export function allowSyns(port) {
  if (!rules.delete(port)) return;
  iptables('-D', port);
}

process.on('exit', () => {
  for (const port of [...rules]) {
    try {
      allowSyns(port);
    } catch (error) {
      console.error(`could not remove the iptables rule for port ${port}: ${error.message}`);
    }
  }
});
