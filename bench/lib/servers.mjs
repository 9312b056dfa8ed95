// Reference servers for benchmarks, each with its configuration in a fresh
// temporary directory and listening on 127.0.0.1 only: nginx (origin: a
// sparse file of any size plus a tiny response), Dante (SOCKS5, no auth),
// tinyproxy (HTTP proxy), HAProxy (any config text).
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startProcess } from './proc.mjs';

/** A temp dir readable by unprivileged workers (nginx, tinyproxy drop to nobody when run as root). */
function workDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), `wmproxy-bench-${prefix}-`));
  chmodSync(dir, 0o777);
  return dir;
}

function withCleanup(handle, dir) {
  const stop = handle.stop;
  handle.dir = dir;
  handle.stop = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return handle;
}

/**
 * nginx as an origin: GET /file serves a sparse file of `fileBytes` (zeros,
 * from the page cache), GET / answers "hello\n". Returns {port, stop, ...}.
 */
export async function startNginx({ fileBytes = 1 << 30, workers = 1, port } = {}) {
  port ??= await freePort();
  const dir = workDir('nginx');
  mkdirSync(join(dir, 'www'), { mode: 0o755 });
  const fd = openSync(join(dir, 'www', 'file'), 'w', 0o644);
  ftruncateSync(fd, fileBytes);
  closeSync(fd);
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((name) => `${name}_temp_path ${dir}/${name};`).join(' ');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes ${workers};
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  ${temp}
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    root ${dir}/www;
    location = / { default_type text/plain; return 200 "hello\\n"; }
  }
}
`,
  );
  const handle = await startProcess('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], {
    port,
    name: 'nginx',
  });
  return withCleanup(Object.assign(handle, { port, fileUrl: `http://127.0.0.1:${port}/file`, helloUrl: `http://127.0.0.1:${port}/` }), dir);
}

/** Dante (danted): SOCKS5 on 127.0.0.1, no authentication, CONNECT to loopback only. */
export async function startDante({ port } = {}) {
  port ??= await freePort();
  const dir = workDir('dante');
  writeFileSync(
    join(dir, 'danted.conf'),
    `logoutput: ${dir}/danted.log
internal: 127.0.0.1 port = ${port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect }
`,
  );
  const handle = await startProcess('danted', ['-f', join(dir, 'danted.conf'), '-p', join(dir, 'danted.pid')], { port, name: 'dante' });
  return withCleanup(Object.assign(handle, { port }), dir);
}

/** tinyproxy: HTTP forward proxy on 127.0.0.1, clients from loopback only. */
export async function startTinyproxy({ port, maxClients = 1000 } = {}) {
  port ??= await freePort();
  const dir = workDir('tinyproxy');
  writeFileSync(
    join(dir, 'tinyproxy.conf'),
    `User nobody
Group nogroup
Port ${port}
Listen 127.0.0.1
Timeout 600
MaxClients ${maxClients}
Allow 127.0.0.1
LogLevel Critical
LogFile "${dir}/tinyproxy.log"
PidFile "${dir}/tinyproxy.pid"
`,
  );
  const handle = await startProcess('tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')], { port, name: 'tinyproxy' });
  return withCleanup(Object.assign(handle, { port }), dir);
}

/**
 * HAProxy with the given configuration text; `{dir}` in it is replaced by the
 * temp dir. Pass the port it listens on so start-up can be awaited.
 */
export async function startHaproxy({ config, port }) {
  const dir = workDir('haproxy');
  writeFileSync(join(dir, 'haproxy.cfg'), config.replaceAll('{dir}', dir));
  const handle = await startProcess('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { port, name: 'haproxy' });
  return withCleanup(Object.assign(handle, { port }), dir);
}
