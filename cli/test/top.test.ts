/** `wmproxy top` against a running instance: one frame with --once, and the live view in a pseudo-terminal (tmux). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort } from '@wmproxy/testkit';
import { Running, cliEnv, runJs, wmproxy } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'wmproxy-cli-top-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const TMUX = spawnSync('tmux', ['-V']).status === 0;

async function backend(): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer((_request, response) => response.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

async function instance(): Promise<{ run: Running; control: number; http: number; alive: string; dead: string; close(): Promise<void> }> {
  const alive = await backend();
  const dead = `127.0.0.1:${await closedPort()}`;
  const ports = { http: await closedPort(), control: await closedPort() };
  const file = join(scratch, `top-${ports.control}.toml`);
  writeFileSync(
    file,
    `[control]\nlisten = "127.0.0.1:${ports.control}"\n[[upstream]]\nname = "app"\nservers = ["${alive.address}", "${dead}"]\nhealth_check = { interval = "200ms", timeout = "150ms", rise = 1, fall = 1 }\n[[server]]\nlisten = "127.0.0.1:${ports.http}"\n[[server.location]]\nupstream = "app"\n`,
  );
  const run = new Running(['run', '-c', file]);
  await run.waitFor(/running \(pid/);
  return { run, ...ports, alive: alive.address, dead, close: async () => { await run.stop(); await alive.close(); } };
}

/** Requests through the proxy until the series shows them (one sample a second). */
async function traffic(port: number, control: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    await fetch(`http://127.0.0.1:${port}/x`).then((response) => response.text()).catch(() => undefined);
    if (i % 10 === 9) {
      const series = (await (await fetch(`http://127.0.0.1:${control}/series`)).json()) as { requests: Record<string, number[]> };
      if (series.requests['2xx']!.some((count) => count > 0)) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
  throw new Error('no request reached the series');
}

test('top --once prints one frame: totals, every upstream server with its rate, state and reason, the health changes', async () => {
  const running = await instance();
  try {
    await traffic(running.http, running.control);
    const top = await wmproxy(['top', '--once', '--control', `127.0.0.1:${running.control}`, '--window', '900s']);
    assert.equal(top.code, 0, top.stderr);
    const lines = top.stdout.split('\n');
    assert.match(lines[0]!, /^wmproxy \S+ · \w+ · pid \d+ · up \d+ s/);
    const requests = /^requests (\S+)\/s\s+1xx \S+\s+2xx (\S+)/.exec(lines[1]!);
    assert.ok(requests, lines[1]);
    assert.ok(Number(requests[2]) > 0, `2xx rate above 0: ${lines[1]}`);
    assert.match(lines[1]!, /retries \S+\/s {3}hedges \S+ won \/ \S+ lost\/s$/);
    assert.match(lines[2]!, /^latency p50 \S+ ms {2}p95 \S+ ms {2}p99 \S+ ms {3}in \S+ \S*B\/s {3}out \S+ \S*B\/s {3}connections \d+/);
    assert.doesNotMatch(lines[2]!, / in 0 B\/s/, 'request bytes counted');
    assert.match(top.stdout, /UPSTREAM\s+SERVER\s+STATE\s+REQ\/S\s+ERR\/S\s+ERR%\s+P99\s+ACTIVE\s+PROBE\s+REASON/);
    const row = (address: string) => lines.find((line) => line.includes(address)) ?? '';
    assert.match(row(running.alive), /^app\s+\S+\s+healthy\s+\d+\.\d\s+0\.0\s+\S+%\s+\d+(\.\d)? m?s /, 'the live server has a p99');
    assert.match(row(running.dead), /^app\s+\S+\s+unhealthy\s+.*ECONNREFUSED/);
    assert.match(top.stdout, /recent health changes:\n(.*\n)*.*unknown → unhealthy \(ECONNREFUSED\)/);
    assert.doesNotMatch(top.stdout, /\x1b\[/, 'no escape codes in --once');
  } finally {
    await running.close();
  }
});

test('top exits 1 with one line when the control API cannot be reached, 2 for a bad interval', async () => {
  const port = await closedPort();
  const down = await wmproxy(['top', '--once', '--control', `127.0.0.1:${port}`]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^wmproxy top: /m);
  const bad = await wmproxy(['top', '--interval', 'soon']);
  assert.equal(bad.code, 2);
});

test('top in a pseudo-terminal (tmux) redraws in place as time passes and exits on q', { skip: TMUX ? false : 'tmux is not installed' }, async () => {
  const running = await instance();
  const session = `wmproxy-top-${process.pid}`;
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', session, ...args], { encoding: 'utf8', env: cliEnv() });
  try {
    await traffic(running.http, running.control);
    tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '40', `${process.execPath} ${runJs} top --control 127.0.0.1:${running.control} --interval 300ms`);
    const screen = () => { try { return tmux('capture-pane', '-p', '-t', session); } catch { return ''; } };
    const until = async (check: (text: string) => boolean, what: string) => {
      for (let i = 0; i < 200; i++) {
        const text = screen();
        if (check(text)) return text;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`${what}; screen:\n${screen()}`);
    };
    const first = await until((text) => /UPSTREAM/.test(text) && text.includes(running.alive), 'the first frame');
    const clock = (text: string) => /(\d\d:\d\d:\d\d) UTC/.exec(text)?.[1];
    assert.ok(clock(first));
    const later = await until((text) => clock(text) !== undefined && clock(text) !== clock(first), 'a redraw with a later time');
    assert.equal(later.split('\n').filter((line) => line.startsWith('wmproxy ')).length, 1, 'redrawn in place: one header on the screen');
    tmux('send-keys', '-t', session, 'q');
    for (let i = 0; i < 100 && spawnSync('tmux', ['-L', session, 'has-session', '-t', session]).status === 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.notEqual(spawnSync('tmux', ['-L', session, 'has-session', '-t', session]).status, 0, 'q ended top (and with it the session)');
  } finally {
    spawnSync('tmux', ['-L', session, 'kill-server']);
    await running.close();
  }
});
