/**
 * A real DNS server for tests (Debian's dnsmasq, installed by .ci/run) on a
 * loopback UDP port, answering only the records it is given (no upstream,
 * no hosts file) with a short TTL. `setRecords` rewrites its file and
 * restarts it on the same port: dnsmasq re-reads hosts files on SIGHUP but
 * not `srv-host` lines, so a restart is how an SRV record set changes.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killChild, waitUntilReady } from './spawned.js';

export const DNSMASQ = spawnSync('sh', ['-c', 'command -v dnsmasq || ls /usr/sbin/dnsmasq'], { encoding: 'utf8' }).stdout.trim().split('\n')[0] || undefined;

export interface DnsRecords {
  /** `name → [target, port, priority?, weight?]` SRV records. */
  srv?: Array<{ name: string; target: string; port: number; priority?: number; weight?: number }>;
  /** `name → address` A/AAAA records. */
  hosts?: Array<{ name: string; address: string }>;
}

export interface DnsmasqServer {
  readonly port: number;
  /** `127.0.0.1:PORT`, for a resolver list. */
  readonly address: string;
  setRecords(records: DnsRecords): Promise<void>;
  close(): Promise<void>;
}

/** True if `port` on 127.0.0.1 can be bound for both UDP and TCP (dnsmasq takes both). */
async function freeForDns(port: number): Promise<boolean> {
  const udp = await new Promise<boolean>((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => resolve(false));
    socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
  });
  if (!udp) return false;
  return new Promise<boolean>((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A loopback port below the kernel's ephemeral range (32768+), free for UDP
 * and TCP: a port from bind(0) is an ephemeral one, which any outgoing
 * connection of the other tests may take as its source port before dnsmasq
 * binds it, or while it restarts (dnsmasq then exits with 2).
 */
async function dnsPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await freeForDns(port)) return port;
  }
}

/** True once something answers a DNS query on the port (any answer). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    // A query for "ping." type A, id 0x1234.
    const query = Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 0x70, 0x69, 0x6e, 0x67, 0, 0, 1, 0, 1]);
    const timer = setTimeout(() => {
      socket.close();
      resolve(false);
    }, 200);
    socket.once('message', () => {
      clearTimeout(timer);
      socket.close();
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      socket.close();
      resolve(false);
    });
    socket.send(query, port, '127.0.0.1');
  });
}

function conf(records: DnsRecords): string {
  const lines: string[] = [];
  for (const record of records.srv ?? []) lines.push(`srv-host=${record.name},${record.target},${record.port},${record.priority ?? 0},${record.weight ?? 1}`);
  for (const record of records.hosts ?? []) lines.push(`host-record=${record.name},${record.address}`);
  return lines.join('\n') + '\n';
}

export async function dnsmasqServer(records: DnsRecords = {}): Promise<DnsmasqServer> {
  if (!DNSMASQ) throw new Error('dnsmasq is not installed (apt-get install dnsmasq-base; .ci/run installs it)');
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-dnsmasq-'));
  const file = join(dir, 'records.conf');
  let port = await dnsPort();
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    child = spawn(DNSMASQ, [
      '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${port}`,
      `--conf-file=${file}`, '--local-ttl=1', '--pid-file=', '--cache-size=0',
      // As root it would switch to "nobody"; stay who we are.
      ...(process.getuid?.() === 0 ? ['--user=root'] : []),
    ], { stdio: 'ignore' });
    await waitUntilReady('dnsmasq', child, () => answers(port), 10_000);
  };
  writeFileSync(file, conf(records));
  // Taken between the check and dnsmasq's bind: try another port (restarts keep theirs: clients know it).
  for (let attempt = 1; ; attempt++) {
    try {
      await start();
      break;
    } catch (error) {
      if (attempt === 5) throw error;
      port = await dnsPort();
    }
  }
  process.once('exit', () => child?.kill('SIGKILL'));
  return {
    port,
    address: `127.0.0.1:${port}`,
    async setRecords(next) {
      writeFileSync(file, conf(next));
      const running = child;
      child = undefined;
      await killChild(running);
      await start();
    },
    async close() {
      const running = child;
      child = undefined;
      await killChild(running);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
