// Data connection churn: what TLS session resumption saves per pool refill.
//
//   flock /work/bench.lock node bench/tunnel-resume.mjs [--runtime bun|node|both] [--visitors 600] [--pool 4] [--rounds 2] [--gap-ms 3]
//
// A TLS tunnel server and its pinned client (bench/lib/tunnel-resume-child.mjs,
// each its own process, Bun or Node) with data connections taken at open
// (dataPromoteBytes 0): each visitor (100 bytes echoed, then closed, one at a
// time, `--gap-ms` apart so the pool keeps up) takes a data connection and
// the client dials its replacement. Two arms on the same code, alternated in
// each round: `resume` (the client offers its TLS session) and `full` (its
// kept session pinned to none: every dial a full handshake). Per arm: server
// and client CPU (ms) per data connection dialled, over the whole run (so
// the visitors' few bytes are in both arms), the share resumed, and the
// dial time (connect + TLS + the data handshake, ms, median and p90).
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSecondsOf } from './lib/procstat.mjs';
import { freePort } from './lib/proc.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : fallback;
};
const runtimes = option('runtime', 'both') === 'both' ? ['bun', 'node'] : [option('runtime')];
const visitors = Number(option('visitors', 600));
const pool = Number(option('pool', 4));
const rounds = Number(option('rounds', 2));
const gapMs = Number(option('gap-ms', 3));

function child(runtime, role, env) {
  const command = runtime === 'bun' ? join(root, 'node_modules/.bin/bun') : process.execPath;
  const proc = spawn(command, [join(root, 'bench/lib/tunnel-resume-child.mjs'), role], { env: { ...process.env, ...env, POOL: String(pool) }, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = [];
  let waiting;
  let buffered = '';
  proc.stdout.on('data', (chunk) => {
    buffered += chunk;
    for (let at = buffered.indexOf('\n'); at >= 0; at = buffered.indexOf('\n')) {
      lines.push(buffered.slice(0, at));
      buffered = buffered.slice(at + 1);
    }
    if (lines.length && waiting) waiting();
  });
  const line = async () => {
    while (lines.length === 0) await new Promise((resolve) => (waiting = resolve));
    waiting = undefined;
    return lines.shift();
  };
  return { proc, line, stop: () => (proc.stdin.end(), proc.kill()) };
}

function visit(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = 0;
    socket.on('connect', () => socket.write(Buffer.alloc(100, 1)));
    socket.on('data', (chunk) => {
      got += chunk.byteLength;
      if (got >= 100) socket.end();
    });
    socket.on('close', () => (got >= 100 ? resolve() : reject(new Error('no echo'))));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('visitor timed out')));
  });
}

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
};

async function arm(runtime, mode, echoPort) {
  const publicPort = await freePort();
  const server = child(runtime, 'server', {});
  const { port, fingerprint } = JSON.parse(await server.line());
  const client = child(runtime, 'client', { MODE: mode, PORT: String(port), FINGERPRINT: fingerprint, LOCAL: String(echoPort), PUBLIC: String(publicPort) });
  try {
    if ((await client.line()) !== 'ready') throw new Error('client not ready');
    client.proc.stdin.write('status\n');
    const before = JSON.parse(await client.line());
    const pids = [server.proc.pid, client.proc.pid];
    const serverCpu = cpuSecondsOf([server.proc.pid]);
    const clientCpu = cpuSecondsOf([client.proc.pid]);
    for (let i = 0; i < visitors; i++) {
      await visit(publicPort);
      if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    }
    // The last replacements dialled.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const serverUsed = cpuSecondsOf([server.proc.pid]) - serverCpu;
    const clientUsed = cpuSecondsOf([client.proc.pid]) - clientCpu;
    client.proc.stdin.write('status\n');
    const after = JSON.parse(await client.line());
    void pids;
    const dialled = after.dataConnections - before.dataConnections;
    return {
      runtime,
      mode,
      dialled,
      resumedShare: (after.dataResumed - before.dataResumed) / dialled,
      serverMsPerDial: (serverUsed * 1000) / dialled,
      clientMsPerDial: (clientUsed * 1000) / dialled,
      dialMedianMs: percentile(after.dials, 0.5),
      dialP90Ms: percentile(after.dials, 0.9),
    };
  } finally {
    client.stop();
    server.stop();
    await Promise.all([once(client.proc, 'exit'), once(server.proc, 'exit')]);
  }
}

const echo = net.createServer((socket) => {
  socket.on('data', (chunk) => socket.write(chunk));
  socket.on('end', () => socket.end());
  socket.on('error', () => socket.destroy());
});
await new Promise((resolve) => echo.listen(0, '127.0.0.1', resolve));
const results = [];
for (let round = 0; round < rounds; round++) {
  for (const runtime of runtimes) {
    const order = round % 2 === 0 ? ['full', 'resume'] : ['resume', 'full'];
    for (const mode of order) {
      const row = await arm(runtime, mode, echo.address().port);
      results.push(row);
      console.log(`round ${round + 1} ${runtime} ${mode.padEnd(6)} dialled ${row.dialled} resumed ${(row.resumedShare * 100).toFixed(0)}%  server ${row.serverMsPerDial.toFixed(3)} ms/dial  client ${row.clientMsPerDial.toFixed(3)} ms/dial  dial ${row.dialMedianMs.toFixed(2)} ms (p90 ${row.dialP90Ms.toFixed(2)})`);
    }
  }
}
echo.close();
console.log('\nmedian over rounds               server ms/dial  client ms/dial  both   dial ms p50  p90   resumed');
for (const runtime of runtimes) {
  for (const mode of ['full', 'resume']) {
    const rows = results.filter((row) => row.runtime === runtime && row.mode === mode);
    const med = (key) => percentile(rows.map((row) => row[key]), 0.5);
    console.log(`${runtime.padEnd(5)} ${mode.padEnd(26)} ${med('serverMsPerDial').toFixed(3).padStart(14)}  ${med('clientMsPerDial').toFixed(3).padStart(14)}  ${(med('serverMsPerDial') + med('clientMsPerDial')).toFixed(3).padStart(5)}  ${med('dialMedianMs').toFixed(2).padStart(11)}  ${med('dialP90Ms').toFixed(2).padStart(4)}   ${(med('resumedShare') * 100).toFixed(0)}%`);
  }
}
