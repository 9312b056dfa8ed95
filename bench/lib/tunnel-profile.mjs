// Profile the tunnel's two processes in one phase: `node bench/lib/tunnel-profile.mjs bun|node bulk|wrk OUTDIR [MiB]`.
// PERF_STAT=PREFIX counts each process's syscalls during the phase.
// Starts the stream service, a one-worker nginx, `wmproxy tunnel server|client` with --cpu-prof into OUTDIR,
// runs a download + upload (bulk) or wrk -c64 for 5 s (wrk) through it, and stops them (profiles are written on exit).
// Run it under `flock /work/bench.lock`.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { download, upload } from './stream-service.mjs';
import { runWrk } from './wrk.mjs';
import { cpuSecondsOf } from './procstat.mjs';
import { Children, freePort, sleep, startNginxBackends, waitPort } from '../reverse-common.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const [runtime, phase, out, mib = '512'] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'tunnel-prof-'));
const children = new Children();
process.on('exit', () => children.killAll());
const service = children.start(process.execPath, [join(root, 'bench/lib/stream-service.mjs')], 'service', { stdout: true });
while (!/"port":\d+/.test(service.output)) await sleep(50);
const servicePort = Number(/"port":(\d+)/.exec(service.output)[1]);
const nginx = await startNginxBackends(children, dir, 'location / { return 200 "hello world\\n"; }');
const command = runtime === 'bun' ? join(root, 'node_modules/.bin/bun') : process.execPath;
const prof = (name) => (out === '-' ? [] : ['--cpu-prof', `--cpu-prof-dir=${out}`, `--cpu-prof-name=${name}-${phase}.cpuprofile`]);
const cli = join(root, 'cli/bin/run.js');
const control = await freePort();
const bulk = await freePort();
const http = await freePort();
const server = children.start(command, [...prof('server'), cli, 'tunnel', 'server', '--listen', `127.0.0.1:${control}`, '--token', 'tok', '--state-dir', dir, '--allow-ports', String(bulk), '--allow-ports', String(http)], 'server', { stdout: true });
let fp;
while (!(fp = /\b(SHA256:[A-Za-z0-9+/=]{43,44})/.exec(server.output))) await sleep(50);
await waitPort(control);
const client = children.start(command, [...prof('client'), cli, 'tunnel', 'client', '--server', `127.0.0.1:${control}`, '--token', 'tok', '--fingerprint', fp[1],
  '--map', `bulk=tcp:127.0.0.1:${servicePort}:${bulk}`, '--map', `http=tcp:127.0.0.1:${nginx.ports[0]}:${http}`], 'client', { stdout: true });
for (;;) {
  try { await download(bulk, 1 << 20, 2000); break; } catch { await sleep(100); }
}
const bytes = Number(mib) << 20;
// Warm (JIT) before any tracer starts.
if (phase === 'wrk') await runWrk({ url: `http://127.0.0.1:${http}/`, connections: 64, durationSec: 1 });
// PERF_OUT=FILE: `perf record` both processes during the phase; STRACE_OUT=FILE: `strace -c` them.
let tracer;
if (process.env.PERF_OUT) tracer = children.start('perf', ['record', '-F', '1999', '-g', '-o', process.env.PERF_OUT, '-p', `${server.pid},${client.pid}`], 'perf');
if (process.env.STRACE_OUT) tracer = children.start('strace', [...(process.env.STRACE_ARGS ?? '-c').split(' '), '-f', '-o', process.env.STRACE_OUT, '-p', String(server.pid), '-p', String(client.pid)], 'strace');
// PERF_STAT=PREFIX: syscall and context-switch counts of each process during the phase, into PREFIX-server.txt and PREFIX-client.txt.
const counters = [];
if (process.env.PERF_STAT) {
  const events = ['raw_syscalls:sys_enter', 'syscalls:sys_enter_sendto', 'syscalls:sys_enter_recvfrom', 'syscalls:sys_enter_epoll_pwait2', 'syscalls:sys_enter_epoll_wait', 'syscalls:sys_enter_futex', 'syscalls:sys_enter_madvise', 'context-switches', 'task-clock'];
  for (const [name, child] of [['server', server], ['client', client]]) {
    counters.push(children.start('perf', ['stat', '-e', events.join(','), '-o', `${process.env.PERF_STAT}-${name}.txt`, '-p', String(child.pid)], `perf-stat-${name}`));
  }
}
if (tracer || counters.length) await sleep(1000);
const cpu = () => cpuSecondsOf([server.pid, client.pid]);
if (phase === 'bulk') {
  const c0 = cpu();
  const d = await download(bulk, bytes);
  const c1 = cpu();
  const u = await upload(bulk, bytes);
  const c2 = cpu();
  const perGiB = (s) => ((s * 1024) / Number(mib)).toFixed(2);
  console.log(`download ${(Number(mib) / d.seconds).toFixed(0)} MiB/s [${perGiB(c1 - c0)} cpu s/GiB], upload ${(Number(mib) / u.seconds).toFixed(0)} MiB/s [${perGiB(c2 - c1)}]`);
} else {
  const w = await runWrk({ url: `http://127.0.0.1:${http}/`, connections: 64, durationSec: 5, latency: true });
  console.log(`wrk ${w.requestsPerSec.toFixed(0)} req/s p99 ${w.latencyP99Ms} ms, ${w.requests} requests`);
}
for (const counter of counters) {
  counter.kill('SIGINT');
  await new Promise((r) => counter.once('exit', r));
}
if (tracer) {
  tracer.kill('SIGINT');
  await new Promise((r) => tracer.once('exit', r));
}
for (const child of [client, server]) {
  child.kill('SIGINT');
  await new Promise((r) => { const t = setTimeout(() => (child.kill('SIGKILL'), r()), 8000); child.once('exit', () => (clearTimeout(t), r())); });
}
process.exit(0);
