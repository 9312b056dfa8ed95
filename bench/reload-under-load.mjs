#!/usr/bin/env node
// Hot reload under load: `wmproxy run` with a reverse proxy and a forward
// proxy (on Bun, then on Node), wrk against each, and ten reloads through
// the control API while wrk runs. Every reload changes both proxies. Prints
// requests, req/s, socket errors and non-2xx answers per run: the target is
// zero errors.
//
//   node bench/reload-under-load.mjs [--duration 10] [--connections 32] [--only bun,node]
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argument, freePort, sleep, stop, waitPort } from './reverse-common.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const duration = Number(argument(args, 'duration', '10'));
const connections = Number(argument(args, 'connections', '32'));
const only = argument(args, 'only', 'bun,node').split(',');
const dir = mkdtempSync(join(tmpdir(), 'wmproxy-reload-bench-'));
const TOKEN = 'bench-token-123';
const RELOADS = 10;

const BACKEND = `
const http = require('node:http');
for (const port of process.argv.slice(1).map(Number)) {
  http.createServer((req, res) => res.end('ok')).listen(port, '127.0.0.1');
}`;

function config(generation, ports) {
  return `
[log]
level = "warn"
[control]
listen = "127.0.0.1:${ports.control}"
token = "${TOKEN}"
[reverse]
response_headers = ["set X-Generation ${generation}"]
[[upstream]]
name = "app"
servers = ["127.0.0.1:${ports.b1}", "127.0.0.1:${ports.b2}"]
[[server]]
listen = "127.0.0.1:${ports.reverse}"
[[server.location]]
upstream = "app"
[[proxy]]
listen = "127.0.0.1:${ports.forward}"
via = "1.1 generation-${generation}"
`;
}

function wrk(url, lua) {
  const argv = ['-t1', `-c${connections}`, `-d${duration}s`, ...(lua ? ['-s', lua] : []), url];
  return new Promise((resolve) => {
    const child = spawn('wrk', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (out += chunk));
    child.on('close', () => {
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
      const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      resolve({ requests, rps, socketErrors, non2xx, raw: out });
    });
  });
}

async function run(runtime) {
  const ports = { control: await freePort(), reverse: await freePort(), forward: await freePort(), b1: await freePort(), b2: await freePort() };
  const file = join(dir, `wmproxy-${runtime}.toml`);
  writeFileSync(file, config(0, ports));
  const lua = join(dir, 'absolute.lua');
  writeFileSync(lua, `wrk.path = "http://127.0.0.1:${ports.b1}/"\nwrk.headers["Host"] = "127.0.0.1:${ports.b1}"\n`);
  const backend = spawn(process.execPath, ['-e', BACKEND, String(ports.b1), String(ports.b2)], { stdio: 'ignore' });
  const bin = runtime === 'bun' ? join(root, 'node_modules', '.bin', 'bun') : process.execPath;
  const proxy = spawn(bin, [join(root, 'cli', 'bin', 'run.js'), 'run', '-c', file], { stdio: ['ignore', 'ignore', 'pipe'], cwd: root, env: { ...process.env, NODE_ENV: 'production' } });
  let stderr = '';
  proxy.stderr.on('data', (chunk) => (stderr += chunk));
  try {
    await Promise.all([waitPort(ports.b1), waitPort(ports.b2), waitPort(ports.reverse), waitPort(ports.forward), waitPort(ports.control)]);
    const reverseRun = wrk(`http://127.0.0.1:${ports.reverse}/`);
    const forwardRun = wrk(`http://127.0.0.1:${ports.forward}/`, lua);
    let applied = 0;
    const spacing = (duration * 1000) / (RELOADS + 2);
    for (let generation = 1; generation <= RELOADS; generation++) {
      await sleep(spacing);
      writeFileSync(file, config(generation, ports));
      const response = await fetch(`http://127.0.0.1:${ports.control}/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      const body = await response.json();
      if (body.ok) applied++;
      else console.error(`reload ${generation} rejected: ${body.message}`);
    }
    const [reverse, forward] = await Promise.all([reverseRun, forwardRun]);
    return { runtime, applied, reverse, forward };
  } finally {
    await stop(proxy);
    await stop(backend);
    if (process.env.BENCH_VERBOSE) process.stderr.write(stderr);
  }
}

console.log(`hot reload under load: ${RELOADS} reloads in ${duration} s, wrk -c${connections} against each proxy (keep-alive)\n`);
console.log('runtime  proxy    requests   req/s      socket errors  non-2xx  reloads applied');
for (const runtime of only) {
  const result = await run(runtime);
  for (const kind of ['reverse', 'forward']) {
    const r = result[kind];
    console.log(`${runtime.padEnd(8)} ${kind.padEnd(8)} ${String(r.requests).padEnd(10)} ${r.rps.toFixed(0).padEnd(10)} ${String(r.socketErrors).padEnd(14)} ${String(r.non2xx).padEnd(8)} ${result.applied}/${RELOADS}`);
  }
}
