// Static files: nginx vs wmproxy file server on Bun and on Node, same directory, one run.
// wrk -c64 against a 1 KiB file (requests/s) and a 10 MiB file (MB/s), each for
// DURATION seconds (default 10). nginx: 2 workers, sendfile on, access log off.
// The servers take turns, ROUNDS times (default 3), and the median of each is
// reported: the machine is shared, so interleaving keeps load drift from
// favouring whoever ran first.
// Usage: node bench/static-bench.mjs [--duration 10] [--connections 64] [--rounds 3]
import { chmodSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, have, startProcess } from './lib/proc.mjs';
import { runWrk } from './lib/wrk.mjs';

const arg = (name, fallback) => {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
};
const durationSec = arg('duration', 10);
const connections = arg('connections', 64);
const rounds = arg('rounds', 3);
const median = (values) => values.slice().sort((a, b) => a - b)[Math.floor(values.length / 2)];
const repo = fileURLToPath(new URL('..', import.meta.url));
const bun = join(repo, 'node_modules', '.bin', 'bun');

for (const tool of ['wrk', 'nginx']) {
  if (!have(tool) && !have(`/usr/sbin/${tool}`)) {
    console.error(`${tool} is not installed`);
    process.exit(1);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'wmproxy-static-bench-'));
const root = join(dir, 'www');
mkdirSync(root);
writeFileSync(join(root, 'small.bin'), randomBytes(1024));
writeFileSync(join(root, 'large.bin'), randomBytes(10 * 1024 * 1024));
// nginx workers run as nobody: the tree must be world-readable.
for (const path of [dir, root]) chmodSync(path, 0o755);

async function startNginx(port) {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/client_temp;
  proxy_temp_path ${dir}/proxy_temp;
  fastcgi_temp_path ${dir}/fastcgi_temp;
  uwsgi_temp_path ${dir}/uwsgi_temp;
  scgi_temp_path ${dir}/scgi_temp;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`,
  );
  const nginx = have('nginx') ? 'nginx' : '/usr/sbin/nginx';
  return startProcess(nginx, ['-c', conf, '-p', dir, '-e', `${dir}/nginx-error.log`], { port, name: 'nginx' });
}

const servers = [];
try {
  const NAMES = ['nginx', 'bun', 'bun x2', 'node', 'node x2'];
  const ports = {};
  for (const name of NAMES) ports[name] = await freePort();
  servers.push(await startNginx(ports.nginx));
  const serve = join(repo, 'bench', 'static-serve.mjs');
  for (const name of NAMES.slice(1)) {
    const [runtime, workers] = name.split(' x');
    const command = runtime === 'bun' ? bun : process.execPath;
    servers.push(await startProcess(command, [serve, root, String(ports[name]), workers ?? '1'], { port: ports[name], name: `wmproxy ${name}`, cwd: repo }));
  }

  const samples = {};
  for (const [file, label] of [['small.bin', '1 KiB'], ['large.bin', '10 MiB']]) {
    for (const name of NAMES) await runWrk({ url: `http://127.0.0.1:${ports[name]}/${file}`, connections, durationSec: 2 }); // warm-up
    for (let round = 0; round < rounds; round++) {
      for (const name of NAMES) {
        const result = await runWrk({ url: `http://127.0.0.1:${ports[name]}/${file}`, connections, durationSec });
        if (result.non2xx || result.socketErrors) console.error(`${name} ${label}: ${result.non2xx} non-2xx, ${result.socketErrors} socket errors`);
        (samples[`${name} ${label}`] ??= []).push(result);
        console.error(`round ${round + 1} ${name.padEnd(8)} ${label.padEnd(7)} ${result.requestsPerSec?.toFixed(0)} req/s  ${((result.transferPerSec ?? 0) / 1e6).toFixed(0)} MB/s`);
      }
    }
  }
  // Ratios are taken within each round (the servers ran back to back), then the median.
  const ratio = (name, label, field) =>
    median(samples[`${name} ${label}`].map((r, i) => r[field] / samples[`nginx ${label}`][i][field]));
  const results = {};
  for (const [key, list] of Object.entries(samples)) {
    results[key] = {
      requestsPerSec: median(list.map((r) => r.requestsPerSec)),
      transferPerSec: median(list.map((r) => r.transferPerSec)),
      latencyAvgMs: median(list.map((r) => r.latencyAvgMs)),
    };
  }

  const row = (name) => {
    const small = results[`${name} 1 KiB`];
    const large = results[`${name} 10 MiB`];
    return {
      server:
        name === 'nginx'
          ? 'nginx (2 workers, sendfile)'
          : `wmproxy on ${name.split(' ')[0]}, ${name.includes('x2') ? '2 workers' : '1 process'}`,
      '1 KiB req/s': Math.round(small.requestsPerSec),
      'vs nginx': ratio(name, '1 KiB', 'requestsPerSec').toFixed(2) + 'x',
      '10 MiB MB/s': Math.round(large.transferPerSec / 1e6),
      'vs nginx ': ratio(name, '10 MiB', 'transferPerSec').toFixed(2) + 'x',
      'avg latency 1 KiB (ms)': small.latencyAvgMs?.toFixed(2),
    };
  };
  console.log(`\nstatic files, wrk -t2 -c${connections} -d${durationSec}s, median of ${rounds} interleaved rounds (ratios: median of per-round ratios), loopback, ${new Date().toISOString()}`);
  console.table(NAMES.map(row));
} finally {
  for (const server of servers) await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
