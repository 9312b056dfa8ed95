import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort, testPki } from '@wmproxy/testkit';
import { NOT_SERVING, SERVING, grpcHealthServer } from '@wmproxy/testkit/grpc';
import { Running, wmproxy } from './helpers.js';

/** An HTTP server answering every request with `status` and `body`; records request heads. */
interface TestServer {
  port: number;
  heads: string[];
  onRequest?: () => void;
  setStatus(status: number): void;
  close(): Promise<void>;
}

async function httpServer(status = 200, body = 'ok'): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const heads: string[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (chunk) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      heads.push(head);
      const current = status;
      state.onRequest?.();
      socket.end(`HTTP/1.1 ${current} X\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    });
  });
  const state: TestServer = {
    port: 0,
    heads,
    setStatus: (next) => (status = next),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}


test('probe: exit 0 and one line per target when every target is healthy', async () => {
  const server = await httpServer();
  try {
    const run = await wmproxy(['probe', `tcp://127.0.0.1:${server.port}`, `http://127.0.0.1:${server.port}/health`]);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.match(lines[0]!, /^STATE\s+TARGET\s+LATENCY\s+REASON$/);
    assert.match(lines[1]!, new RegExp(`^healthy\\s+tcp://127.0.0.1:${server.port}\\s+[\\d.]+ms\\s+connected$`));
    assert.match(lines[2]!, new RegExp(`^healthy\\s+http://127.0.0.1:${server.port}/health\\s+[\\d.]+ms\\s+status 200$`));
    assert.match(server.heads[0]!, /^GET \/health HTTP\/1.1\r\n/);
  } finally {
    await server.close();
  }
});

test('probe: exit 1 when any target is unhealthy, with the reason', async () => {
  const server = await httpServer(503, 'down');
  const refused = await closedPort();
  try {
    const run = await wmproxy(['probe', `tcp://127.0.0.1:${refused}`, `http://127.0.0.1:${server.port}/`]);
    assert.equal(run.code, 1);
    assert.match(run.stdout, new RegExp(`unhealthy\\s+tcp://127.0.0.1:${refused}\\s+\\S+\\s+ECONNREFUSED`));
    assert.match(run.stdout, /unhealthy\s+http:\/\/\S+\s+\S+\s+status 503 not in 200-399/);
  } finally {
    await server.close();
  }
});

test('probe --timeout longer than 1 s is honoured without --interval (the image HEALTHCHECK uses 3s)', async () => {
  // Accepts and never answers: only the timeout ends the probe.
  const silent = net.createServer((socket) => socket.on('error', () => undefined));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    const run = await wmproxy(['probe', `http://127.0.0.1:${port}/`, '--timeout', '1500ms', '--json']);
    assert.equal(run.code, 1);
    const report = JSON.parse(run.stdout) as { results: Array<{ reason: string }> };
    assert.match(report.results[0]!.reason, /^timeout after 1500 ms/);
  } finally {
    silent.close();
  }
});

test('probe --json: machine-readable results with expected status, body, method and headers applied', async () => {
  const server = await httpServer(500, 'degraded but alive');
  try {
    const run = await wmproxy([
      'probe',
      `http://127.0.0.1:${server.port}/ready`,
      '--expect-status', '500-599',
      '--expect-body', '/alive/',
      '--method', 'HEAD',
      '--header', 'X-Probe: ci',
      '--header', 'Authorization:Bearer t',
      '--json',
    ]);
    // HEAD responses have no body: the body cannot match.
    assert.equal(run.code, 1, run.stderr);
    const report = JSON.parse(run.stdout);
    assert.equal(report.healthy, false);
    assert.equal(report.results.length, 1);
    assert.equal(report.results[0].label, `http://127.0.0.1:${server.port}/ready`);
    assert.equal(report.results[0].state, 'unhealthy');
    assert.equal(report.results[0].reason, 'body did not match /alive/');
    assert.match(server.heads[0]!, /^HEAD \/ready HTTP\/1.1\r\n/);
    assert.match(server.heads[0]!, /\r\nX-Probe: ci\r\n/);
    assert.match(server.heads[0]!, /\r\nAuthorization: Bearer t\r\n/);

    const get = await wmproxy(['probe', `http://127.0.0.1:${server.port}/ready`, '--expect-status', '500-599', '--expect-body', '/alive/', '--json']);
    assert.equal(get.code, 0, get.stderr);
    const ok = JSON.parse(get.stdout);
    assert.equal(ok.healthy, true);
    assert.equal(ok.results[0].status, 500);
    assert.equal(ok.results[0].reason, 'status 500, body matched');
    assert.equal(typeof ok.results[0].latencyMs, 'number');
  } finally {
    await server.close();
  }
});

test('probe --junit: one testcase per target, a failure element for each unhealthy one', async () => {
  const server = await httpServer();
  const refused = await closedPort();
  const file = join(mkdtempSync(join(tmpdir(), 'wmproxy-junit-')), 'report.xml');
  try {
    const run = await wmproxy(['probe', `http://127.0.0.1:${server.port}/`, `tcp://127.0.0.1:${refused}`, '--junit', file]);
    assert.equal(run.code, 1);
    const xml = readFileSync(file, 'utf8');
    assert.match(xml, /^<\?xml version="1.0" encoding="UTF-8"\?>/);
    assert.match(xml, /<testsuite [^>]*tests="2" failures="1"/);
    const cases = [...xml.matchAll(/<testcase [^>]*name="([^"]+)"/g)].map((match) => match[1]);
    assert.deepEqual(cases, [`http://127.0.0.1:${server.port}/`, `tcp://127.0.0.1:${refused}`]);
    const failures = [...xml.matchAll(/<failure message="([^"]+)"/g)].map((match) => match[1]);
    assert.deepEqual(failures, ['unhealthy: ECONNREFUSED']);
  } finally {
    await server.close();
  }
});

test('probe --rise/--fall: that many consecutive results decide', async () => {
  const server = await httpServer();
  try {
    const run = await wmproxy(['probe', `http://127.0.0.1:${server.port}/`, '--rise', '3', '--interval', '300ms', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout);
    assert.equal(report.results[0].probes, 3);
    assert.equal(server.heads.length, 3);
  } finally {
    await server.close();
  }
});

test('probe --wait: keeps probing until the target comes up', async () => {
  // Unhealthy (503) until the first probe arrives, healthy from then on.
  const server = await httpServer(503, 'starting');
  server.onRequest = () => server.setStatus(200);
  try {
    const run = await wmproxy(['probe', `http://127.0.0.1:${server.port}/`, '--wait', '20s', '--interval', '200ms', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout);
    assert.equal(report.healthy, true);
    assert.equal(report.timedOut, false);
    assert.ok(report.results[0].probes >= 2, 'it failed at least once before succeeding');
    assert.equal(report.results[0].history[0].reason, 'status 503 not in 200-399');
    assert.equal(report.results[0].reason, 'status 200');
  } finally {
    await server.close();
  }
});

test('probe --wait: gives up at the deadline with exit 1', async () => {
  const port = await closedPort();
  const run = await wmproxy(['probe', `tcp://127.0.0.1:${port}`, '--wait', '300ms', '--interval', '50ms']);
  assert.equal(run.code, 1);
  assert.match(run.stdout, /not all healthy after 300ms/);
});

test('probe --watch: one line per transition when not on a terminal, until interrupted', async () => {
  const server = await httpServer();
  try {
    const watch = new Running(['probe', `http://127.0.0.1:${server.port}/`, '--watch', '--interval', '500ms']);
    await watch.waitFor(/-> healthy/).finally(() => watch.kill('SIGINT'));
    const code = await watch.exited;
    assert.match(watch.stdout, new RegExp(`^\\S+ http://127.0.0.1:${server.port}/ (unknown|unhealthy) -> healthy \\(status 200, [\\d.]+ms\\)$`, 'm'));
    assert.equal(code, 0);
  } finally {
    await server.close();
  }
});

test('probe: bad arguments exit 2 with a one-line error', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['probe'], /at least one TARGET/],
    [['probe', 'ftp://127.0.0.1:21'], /scheme must be tcp:\/\/, http:\/\/, https:\/\/, grpc:\/\/ or grpcs:\/\//],
    [['probe', 'grpc://127.0.0.1'], /grpc:\/\/ needs a port/],
    [['probe', 'grpc://127.0.0.1:1/svc?x=1'], /takes a service name as its path, no query/],
    [['probe', 'tcp://127.0.0.1:1', '--interval', 'soon'], /--interval: invalid duration "soon"/],
    [['probe', 'tcp://127.0.0.1:1', '--rise', '0'], /--rise must be a whole number/],
    [['probe', 'http://127.0.0.1:1/', '--expect-status', '20x'], /invalid status list/],
    [['probe', 'http://127.0.0.1:1/', '--header', 'novalue'], /--header "novalue" must be NAME:VALUE/],
    [['probe', 'tcp://127.0.0.1:1', '--no-such-flag'], /Nonexistent flag/],
    [['probe', '-c', 'no-such-file.yaml'], /no-such-file\.yaml/],
    [['probe', '-c', 'wmproxy.yaml', 'tcp://127.0.0.1:1'], /give TARGETs or -c CONFIG, not both/],
  ];
  for (const [args, message] of cases) {
    const run = await wmproxy(args);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message);
    assert.equal(run.stderr.trim().split('\n').length, 1, `one line: ${run.stderr}`);
    assert.equal(run.stdout, '');
  }
});

test('probe -c: probes every upstream server of a configuration file with its configured check', async () => {
  const server = await httpServer();
  const dead = await closedPort();
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-probe-config-'));
  const file = join(dir, 'wmproxy.toml');
  try {
    writeFileSync(
      file,
      [
        '[[upstream]]',
        'name = "app"',
        `servers = ["127.0.0.1:${server.port}", "127.0.0.1:${dead}"]`,
        '[upstream.health_check]',
        'type = "http"',
        'path = "/healthz"',
        '[[upstream]]',
        'name = "db"',
        `servers = ["127.0.0.1:${server.port}"]`,
        '[[upstream]]',
        'name = "unchecked"',
        `servers = ["127.0.0.1:${dead}"]`,
        'health_check = false',
      ].join('\n'),
    );
    const run = await wmproxy(['probe', '-c', file, '--json']);
    assert.equal(run.code, 1, run.stderr);
    const report = JSON.parse(run.stdout) as { results: Array<{ label: string; state: string; check: string }> };
    const byLabel = Object.fromEntries(report.results.map((result) => [result.label, result]));
    assert.deepEqual(Object.keys(byLabel).sort(), [`app 127.0.0.1:${dead}`, `app 127.0.0.1:${server.port}`, `db 127.0.0.1:${server.port}`].sort());
    assert.equal(byLabel[`app 127.0.0.1:${server.port}`]!.state, 'healthy');
    assert.match(byLabel[`app 127.0.0.1:${server.port}`]!.check, /http GET \/healthz/);
    assert.equal(byLabel[`app 127.0.0.1:${dead}`]!.state, 'unhealthy');
    assert.match(byLabel[`db 127.0.0.1:${server.port}`]!.check, /tcp/);
    assert.ok(server.heads.some((head) => head.startsWith('GET /healthz ')), 'the configured HTTP check reached the server');

    writeFileSync(file, 'upstreams = 1\n');
    const bad = await wmproxy(['probe', '-c', file]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('probe grpc:// and grpcs://: grpc.health.v1 Check, SERVING exits 0, anything else 1 with the reason', async () => {
  const pki = testPki();
  const plain = await grpcHealthServer({ statuses: { '': SERVING, 'svc.Up': SERVING, 'svc.Down': NOT_SERVING } });
  const secure = await grpcHealthServer({ statuses: { '': SERVING }, tls: { cert: pki.server.cert, key: pki.server.key } });
  try {
    const up = await wmproxy(['probe', `grpc://127.0.0.1:${plain.port}`, `grpc://127.0.0.1:${plain.port}/svc.Up`]);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    assert.match(up.stdout, new RegExp(`healthy\\s+grpc://127.0.0.1:${plain.port}/svc.Up\\s+[\\d.]+ms\\s+SERVING`));
    const down = await wmproxy(['probe', `grpc://127.0.0.1:${plain.port}/svc.Up`, `grpc://127.0.0.1:${plain.port}/svc.Down`, `grpc://127.0.0.1:${plain.port}/svc.Gone`]);
    assert.equal(down.code, 1);
    assert.match(down.stdout, /unhealthy\s+grpc:\/\/\S+\/svc\.Down\s+\S+\s+NOT_SERVING/);
    assert.match(down.stdout, /unhealthy\s+grpc:\/\/\S+\/svc\.Gone\s+\S+\s+service "svc\.Gone" unknown \(grpc-status 5 NOT_FOUND/);
    assert.deepEqual(plain.requests, ['', 'svc.Up', 'svc.Up', 'svc.Down', 'svc.Gone']);
    // grpcs: the certificate is verified unless --insecure.
    const verified = await wmproxy(['probe', `grpcs://127.0.0.1:${secure.port}`]);
    assert.equal(verified.code, 1);
    assert.match(verified.stdout, /unhealthy\s+grpcs:\/\/\S+\s+\S+\s+.*(certificate|TLS)/i);
    const insecure = await wmproxy(['probe', `grpcs://127.0.0.1:${secure.port}`, '--insecure']);
    assert.equal(insecure.code, 0, insecure.stdout + insecure.stderr);
    assert.match(insecure.stdout, /healthy\s+grpcs:\/\/\S+\s+\S+\s+SERVING/);
    const refused = await closedPort();
    const gone = await wmproxy(['probe', `grpc://127.0.0.1:${refused}`, '--json']);
    assert.equal(gone.code, 1);
    assert.equal((JSON.parse(gone.stdout) as { results: Array<{ reason: string }> }).results[0]!.reason, 'ECONNREFUSED');
  } finally {
    await plain.close();
    await secure.close();
    pki.cleanup();
  }
});
