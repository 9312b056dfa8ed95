import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NetError, type Conn } from '@wmproxy/core-net';
import { socks5Connect } from '../src/index.js';
import { closedPort, startTcpServer } from './helpers.js';

const DANTED = '/usr/sbin/danted';

/** Dante on 127.0.0.1 (no auth, loopback targets only), as an independent SOCKS5 server for the client. */
describe('socks5Connect against Dante', { skip: existsSync(DANTED) ? false : 'danted is not installed' }, () => {
  let dir: string;
  let dante: ChildProcess | undefined;
  let port: number;
  let echo: { port: number; close(): Promise<void> };

  before(async () => {
    echo = await startTcpServer((socket) => socket.pipe(socket));
    dir = mkdtempSync(join(tmpdir(), 'wmproxy-dante-'));
    port = await closedPort();
    writeFileSync(
      join(dir, 'danted.conf'),
      [
        'logoutput: stderr',
        `internal: 127.0.0.1 port = ${port}`,
        'external: 127.0.0.1',
        'socksmethod: none',
        'clientmethod: none',
        'user.unprivileged: nobody',
        'client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }',
        'socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 }',
        '',
      ].join('\n'),
    );
    const args = ['-f', join(dir, 'danted.conf'), '-N', '1', '-p', join(dir, 'danted.pid')];
    // In its own PID namespace Dante's worker processes are reaped when it exits
    // (they would otherwise linger as zombies under an init that does not reap).
    for (const [command, commandArgs] of [
      ['unshare', ['--fork', '--pid', '--kill-child', DANTED, ...args]],
      [DANTED, args],
    ] as const) {
      const child = spawn(command, commandArgs, { stdio: 'ignore' });
      child.on('error', () => {});
      dante = child;
      for (let attempt = 0; attempt < 100 && child.exitCode === null && child.signalCode === null; attempt++) {
        if (await accepts(port)) return;
        await sleep(50);
      }
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    throw new Error('danted did not start');
  });
  after(async () => {
    if (dante && dante.exitCode === null && dante.signalCode === null) {
      const exited = new Promise((resolve) => dante!.once('exit', resolve));
      if (dante.spawnfile === 'unshare') {
        // Dante is PID 1 of its namespace and ignores signals from outside but SIGKILL;
        // killing it takes its workers down with it, and unshare then exits.
        const pid = dante.pid!;
        for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean)) {
          process.kill(Number(child), 'SIGKILL');
        }
      } else dante.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
    await echo.close();
  });

  test('connects through Dante and relays', async () => {
    const conn = await socks5Connect({ proxy: { host: '127.0.0.1', port }, host: '127.0.0.1', port: echo.port, timeoutMs: 5000 });
    const answer = new Promise<string>((resolve, reject) => {
      conn.setHandler({
        data: (_conn: Conn, chunk: Uint8Array) => resolve(Buffer.from(chunk).toString()),
        close: (_conn: Conn, error?: Error) => reject(error ?? new Error('closed')),
      });
    });
    conn.write(Buffer.from('dante'));
    assert.equal(await answer, 'dante');
    conn.destroy();
  });

  test("maps Dante's refusal of a closed port to ECONNREFUSED", async () => {
    await assert.rejects(
      socks5Connect({ proxy: { host: '127.0.0.1', port }, host: '127.0.0.1', port: await closedPort(), timeoutMs: 5000 }),
      (error: unknown) => error instanceof NetError && error.code === 'ECONNREFUSED',
    );
  });
});

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
