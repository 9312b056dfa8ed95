/**
 * A real Redis for tests (Debian's redis-server, installed by .ci/run), on
 * its own loopback port, without persistence; stopped and started at will.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { kernelPort, killChild, waitUntilReady } from './spawned.js';

export const REDIS_SERVER = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim() || undefined;

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (chunk: Buffer) => {
      socket.destroy();
      resolve(chunk.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
  });
}

export async function redisServer(): Promise<RedisServer> {
  if (!REDIS_SERVER) throw new Error('redis-server is not installed (apt-get install redis-server; .ci/run installs it)');
  const port = await kernelPort();
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], { stdio: 'ignore' });
    await waitUntilReady('redis-server', child, () => answers(port), 10_000);
  };
  const stop = (): Promise<void> => {
    const running = child;
    child = undefined;
    return killChild(running);
  };
  await start();
  process.once('exit', () => child?.kill('SIGKILL'));
  return { port, url: `redis://127.0.0.1:${port}`, stop, start };
}
