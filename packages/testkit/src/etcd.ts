/**
 * A real etcd for tests (Debian's etcd-server, installed by .ci/run): its own
 * data directory and loopback ports, stopped and restarted at will (the data
 * survives a restart, as a cluster member's would).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { kernelPort, killChild, waitUntilReady } from './spawned.js';

export interface EtcdServer {
  /** `etcd://127.0.0.1:PORT/PREFIX` for the given prefix. */
  url(prefix?: string): string;
  readonly port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export const ETCD = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' }).stdout.trim() || undefined;

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function etcdServer(): Promise<EtcdServer> {
  if (!ETCD) throw new Error('etcd is not installed (apt-get install etcd-server; .ci/run installs it)');
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-etcd-'));
  const port = await kernelPort();
  const peer = await kernelPort();
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    child = spawn(ETCD, [
      '--name', 'test', '--data-dir', join(dir, 'data'),
      '--listen-client-urls', `http://127.0.0.1:${port}`, '--advertise-client-urls', `http://127.0.0.1:${port}`,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `test=http://127.0.0.1:${peer}`, '--log-level', 'error',
    ], { stdio: 'ignore' });
    await waitUntilReady('etcd', child, () => listening(port), 20_000);
  };
  const stop = (): Promise<void> => {
    const running = child;
    child = undefined;
    return killChild(running);
  };
  await start();
  process.once('exit', () => child?.kill('SIGKILL'));
  return {
    port,
    url: (prefix = '/wmproxy') => `etcd://127.0.0.1:${port}${prefix}`,
    stop,
    start,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * One etcd for a whole test file: started before its tests and removed
 * after them (node:test hooks); `skip` says why when etcd is not installed.
 * `etcd` stands for the server once it runs.
 */
export function etcdForFile(): { skip: string | false; etcd: EtcdServer } {
  const skip = ETCD ? false : 'etcd is not installed (.ci/run installs etcd-server)';
  let server: EtcdServer | undefined;
  before(async () => {
    if (!skip) server = await etcdServer();
  });
  after(async () => {
    await server?.close();
  });
  const running = (): EtcdServer => {
    if (!server) throw new Error('etcd is not running (used outside the tests of its file?)');
    return server;
  };
  const etcd: EtcdServer = {
    get port() {
      return running().port;
    },
    url: (prefix) => running().url(prefix),
    stop: () => running().stop(),
    start: () => running().start(),
    close: () => running().close(),
  };
  return { skip, etcd };
}
