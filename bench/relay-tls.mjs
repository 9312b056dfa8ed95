#!/usr/bin/env node
// Two-hop TLS relay micro-benchmark: what core-net's Relay costs, on Bun and on Node, against the least relay of
// the same runtime, in one run, over the same local service:
//
//   visitor -> relay A (plain in, TLS out) -> relay B (TLS in, plain out) -> stream service
//
// the path of a tunnel with one TLS data connection per visitor, without the tunnel.
//
//   flock /work/bench.lock node bench/relay-tls.mjs [--only least-bun,core-bun,...] [--compare DIR]
//         [--size-mib 512] [--rounds 3]
//
// Contenders (each a pair of processes, started once and kept for the run):
//   least-bun   bench/lib/relay-pair.ts tls: Bun.listen/Bun.connect, write and drain by hand;
//   core-bun    bench/lib/relay-pair-core.mjs on Bun: core-net's Relay between BunConns;
//   least-node  bench/lib/relay-pair-node.mjs tls: node:net and node:tls joined with pipe();
//   core-node   bench/lib/relay-pair-core.mjs on Node (dist/, so `npx tsc -b` first): Relay between NodeConns;
//   core-bun@base, core-node@base (with --compare DIR): the same with DIR's core-net (built);
//   plain-bun, plain-node (only with --only): the least relays without TLS, the floor under any TLS relay.
// Every round runs each contender in turn (so drift of the host hits all alike): one download of --size-mib
// (the visitor reads), then one upload. Shown per contender and direction: the median MiB/s over the rounds,
// and the median CPU seconds per GiB of the two relay processes (user + system from /proc, nothing else's).
// The visitor (this process) and the service are node processes on the same 2 cores: MiB/s is bounded by them
// too (their CPU s/GiB, both directions' median, is the last column); CPU s/GiB is the relay's own cost.
// Everything listens on 127.0.0.1; children are killed on exit.
// `--only ...,core-bun~K=V[~K2=V2]`: a contender again with K=V in its processes' environment (RELAY_SPLIT,
// RELAY_SPLIT_SIDE, RELAY_NODELAY, RELAY_RUNTIME of bench/lib/relay-pair-core.mjs, or any variable, e.g.
// NODE_OPTIONS=--tls-cipher-list=...). RELAY_STATS=1 in this process's environment: the core relays' counts
// of reads and writes and their mean sizes, at the end.
// `--perf ID:down|up` (no table): `perf record -g` on that contender's two relay processes for one transfer,
// to /tmp/relay-ID-DIR.data; `perf report -i FILE --no-children --sort dso,sym`. Bun's binary has no symbols
// (its BoringSSL shows as addresses in bun.exe), JIT frames show as `[JIT] tid N`.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSecondsOf, processTree } from './lib/procstat.mjs';
import { download, upload } from './lib/stream-service.mjs';
import { argument, Children, freePort, median, waitPort } from './reverse-common.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const bun = join(root, 'node_modules/.bin/bun');

async function main() {
  const args = process.argv.slice(2);
  const compare = argument(args, 'compare', undefined);
  const sizeMiB = Number(argument(args, 'size-mib', '512'));
  const rounds = Number(argument(args, 'rounds', '3'));
  const defaults = ['least-bun', 'core-bun', ...(compare ? ['core-bun@base'] : []), 'least-node', 'core-node', ...(compare ? ['core-node@base'] : [])];
  // Not in the default set: the least relays without TLS (bench/lib/relay-pair*'s tcp mode), the floor under TLS.
  const all = [...defaults, 'plain-bun', 'plain-node'];
  const only = argument(args, 'only', undefined)?.split(',');
  // `ID~K=V` (with --only): that contender again with K=V in its processes' environment (see the header).
  const variants = only?.filter((id) => id.includes('~')) ?? [];
  const chosen = [...(only ? all.filter((id) => only.includes(id) || only.includes(id.replace('@base', '-base'))) : defaults), ...variants];

  const children = new Children();
  const cleanup = () => children.killAll();
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => (cleanup(), process.exit(130)));
  process.on('uncaughtException', (error) => (console.error(error), cleanup(), process.exit(1)));
  process.on('unhandledRejection', (error) => (console.error(error), cleanup(), process.exit(1)));

  const service = children.start(process.execPath, [join(root, 'bench/lib/stream-service.mjs')], 'service', { stdout: true });
  const servicePort = Number((await printed(service, 'port')).port);
  servicePid = service.pid;

  const started = [];
  for (const id of chosen) started.push({ id, ...(await start(children, id, servicePort, compare)) });

  const perf = argument(args, 'perf', undefined);
  if (perf) {
    const [id, direction] = perf.split(':');
    const contender = started.find((c) => c.id === id);
    await download(contender.port, 32 << 20);
    const out = `/tmp/relay-${id.replace('@', '-')}-${direction}.data`;
    const pids = contender.pids();
    // `--strace`: syscall counts and times of both processes instead (strace slows them: MiB/s and CPU are off).
    const recorder = args.includes('--strace')
      ? spawn('strace', ['-c', '-f', '-o', out.replace('.data', '.strace'), ...pids.flatMap((pid) => ['-p', String(pid)])], { stdio: 'inherit' })
      : spawn('perf', ['record', '-g', '-o', out, '-p', pids.join(',')], { stdio: 'inherit' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const result = await transfer(direction === 'up' ? upload : download, contender.port, sizeMiB * 1024 * 1024, contender.pids);
    recorder.kill('SIGINT');
    await new Promise((resolve) => recorder.once('exit', resolve));
    console.log(`${id} ${direction}: ${fmt(result)} -> ${out}`);
    await statsOf(started);
    cleanup();
    process.exit(0);
  }
  const results = new Map(chosen.map((id) => [id, { down: [], up: [] }]));
  const bytes = sizeMiB * 1024 * 1024;
  for (const contender of started) {
    await download(contender.port, 32 << 20);
    await upload(contender.port, 32 << 20);
  }
  for (let round = 0; round < rounds; round++) {
    for (const contender of started) {
      const row = results.get(contender.id);
      row.down.push(await transfer(download, contender.port, bytes, contender.pids));
      row.up.push(await transfer(upload, contender.port, bytes, contender.pids));
      process.stderr.write(`round ${round + 1} ${contender.id}: down ${fmt(row.down.at(-1))}, up ${fmt(row.up.at(-1))}\n`);
    }
  }
  console.log(`\n${sizeMiB} MiB each way, ${rounds} rounds, median MiB/s [relay CPU s/GiB]`);
  console.log(`${'contender'.padEnd(16)} ${'download'.padStart(20)} ${'upload'.padStart(20)} ${'ends s/GiB'.padStart(10)}`);
  for (const [id, row] of results) {
    const summary = (runs) => fmt({ mibs: median(runs.map((r) => r.mibs)), cpuPerGiB: median(runs.map((r) => r.cpuPerGiB)) });
    const ends = median([...row.down, ...row.up].map((r) => r.endsPerGiB));
    console.log(`${id.padEnd(16)} ${summary(row.down).padStart(20)} ${summary(row.up).padStart(20)} ${ends.toFixed(2).padStart(10)}`);
  }
  await statsOf(started);
  cleanup();
  process.exit(0);
}

/** With RELAY_STATS=1 (see bench/lib/relay-pair-core.mjs): stop the core relays and show what they counted. */
async function statsOf(started) {
  if (!process.env.RELAY_STATS) return;
  for (const contender of started.filter((c) => c.id.startsWith('core'))) {
    for (const child of contender.processes) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      console.log(`${contender.id}: ${child.output.trim().split('\n').filter((line) => / reads /.test(line)).join('\n  ')}`);
    }
  }
}

function fmt({ mibs, cpuPerGiB }) {
  return `${mibs.toFixed(0)} [${cpuPerGiB.toFixed(2)}]`;
}

/** Ends' CPU: the visitor (this process) and the stream service, which share the cores with the relays. */
let servicePid = 0;
const endsCpu = () => cpuSecondsOf([process.pid, servicePid]);

async function transfer(direction, port, bytes, pids) {
  const before = cpuSecondsOf(pids());
  const endsBefore = endsCpu();
  const { seconds } = await direction(port, bytes, 120_000);
  const gib = bytes / 1024 ** 3;
  return { mibs: (gib * 1024) / seconds, cpuPerGiB: (cpuSecondsOf(pids()) - before) / gib, endsPerGiB: (endsCpu() - endsBefore) / gib };
}

/** The first JSON object with `key` that `child` prints on stdout. */
function printed(child, key) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${key} not printed: ${child.output}`)), 15_000);
    const look = () => {
      const match = new RegExp(`\\{"${key}":[^}]*\\}`).exec(child.output);
      if (match) (clearTimeout(timer), child.stdout.off('data', look), resolve(JSON.parse(match[0])));
    };
    child.stdout.on('data', look);
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${child.output}`)));
  });
}

async function start(children, id, servicePort, compare) {
  const [name, ...settings] = id.split('~');
  const [kind, runtime] = name.replace('@base', '').split('-');
  const tree = name.endsWith('@base') ? compare : root;
  const command = runtime === 'bun' ? bun : process.execPath;
  const script =
    kind === 'core' ? [join(root, 'bench/lib/relay-pair-core.mjs'), tree] : runtime === 'bun' ? [join(root, 'bench/lib/relay-pair.ts')] : [join(root, 'bench/lib/relay-pair-node.mjs')];
  const extra = kind === 'least' ? ['tls'] : kind === 'plain' ? ['tcp'] : [];
  const port = await freePort();
  // Children.start passes this process's environment on (copied when it spawns).
  const env = settings.map((setting) => [setting.slice(0, setting.indexOf('=')), setting.slice(setting.indexOf('=') + 1)]);
  for (const [key, value] of env) process.env[key] = value;
  const far = children.start(command, [...script, 'far', ...extra, String(servicePort)], `${id}-far`, { stdout: true });
  const { control } = await printed(far, 'control');
  const near = children.start(command, [...script, 'near', ...extra, String(control), String(port)], `${id}-near`, { stdout: true });
  for (const [key] of env) delete process.env[key];
  await waitPort(port);
  return { port, processes: [near, far], pids: () => [near, far].flatMap((child) => processTree(child.pid)) };
}

await main();
