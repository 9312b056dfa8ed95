// The intranet tunnel in a NAT-shaped topology, with real containers:
//
//   host (visitors) ──► tunnel server ◄── lan (internal) ──┬── client 1 ── svc1 (internal) ── backend b1
//                        (wan + lan)                        └── client 2 ── svc2 (internal) ── backend b2
//
// The clients' networks have no route out and the server shares no network
// with the backends: every visitor request crosses a tunnel. The two clients
// serve one http mapping, so the server balances them as one upstream group
// and checks each local service through its tunnel. One backend dies and the
// group routes around it; a client container is killed and visitors see no
// error for idempotent requests.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BACKEND_IMAGE, BACKEND_READY, E2E_LABEL, PROXY_IMAGE, SESSION, LocalContainer, Network, Wait, buildImages, cleanUp, dockerSkipReason, selfSignedCert,
  type StartedNetwork, type StartedTestContainer,
} from './support.js';

const skip = dockerSkipReason();
const TOKEN = 'e2e-tunnel-token';
const HEALTH_INTERVAL = '500ms';

/** An internal network (no route out), labelled for clean-up. */
function internalNetwork(name: string): string {
  const created = spawnSync('docker', ['network', 'create', '--internal', '--label', 'org.testcontainers=true', '--label', `${E2E_LABEL}=${SESSION}`, name], { encoding: 'utf8' });
  if (created.status !== 0) throw new Error(`docker network create ${name}: ${created.stderr}`);
  return name;
}

function docker(...args: string[]): { status: number; out: string } {
  const result = spawnSync('docker', args, { encoding: 'utf8', timeout: 30_000 });
  return { status: result.status ?? -1, out: `${result.stdout}${result.stderr}` };
}

interface Answer {
  status: number;
  backend: string;
}

function get(port: number): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { host: 'app.test' }, agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, backend: String(res.headers['x-backend-id'] ?? '') }));
    });
    req.on('error', () => resolve({ status: 0, backend: '' }));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** Steady sequential GETs until stopped: every answer is kept. */
function traffic(port: number): { answers: Answer[]; stop(): Promise<void> } {
  const answers: Answer[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      answers.push(await get(port));
      await sleep(20);
    }
  })();
  return {
    answers,
    async stop() {
      running = false;
      await loop;
    },
  };
}

async function until(condition: () => boolean | Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > limitMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const networks: string[] = [];
let wan: StartedNetwork | undefined;
after(async () => {
  await cleanUp(wan);
  for (const name of networks) docker('network', 'rm', name);
});

test('two NATed clients serve one http mapping: a dead local service and a killed client cost visitors nothing', { skip, timeout: 300_000 }, async () => {
  buildImages();
  wan = await new Network().start();
  const lan = internalNetwork(`wmproxy-e2e-lan-${SESSION}`);
  networks.push(lan);
  const cert = selfSignedCert('tunnel.test');
  const backends: StartedTestContainer[] = [];
  const clients: StartedTestContainer[] = [];
  for (const id of ['b1', 'b2']) {
    const svc = internalNetwork(`wmproxy-e2e-svc-${id}-${SESSION}`);
    networks.push(svc);
    backends.push(
      await new LocalContainer(BACKEND_IMAGE)
        .withNetworkMode(svc)
        .withNetworkAliases('backend')
        .withEnvironment({ BACKEND_ID: id })
        .withWaitStrategy(Wait.forLogMessage(BACKEND_READY))
        .withStartupTimeout(120_000)
        .start(),
    );
  }
  const server = await new LocalContainer(PROXY_IMAGE)
    .withNetwork(wan)
    .withCopyContentToContainer([
      { content: cert.cert, target: '/etc/wmproxy/tunnel.pem', mode: 0o644 },
      { content: cert.key, target: '/etc/wmproxy/tunnel.key', mode: 0o644 },
    ])
    .withCommand([
      'tunnel', 'server', '--listen', '0.0.0.0:7000', '--token', TOKEN, '--cert', '/etc/wmproxy/tunnel.pem', '--key', '/etc/wmproxy/tunnel.key',
      '--http-listen', '0.0.0.0:8080', '--health-path', '/health', '--health-interval', HEALTH_INTERVAL, '--fall', '2', '--rise', '2',
    ])
    .withLoopbackPorts(8080)
    .withWaitStrategy(Wait.forLogMessage(/tunnel server listening/))
    .withStartupTimeout(120_000)
    .start();
  assert.equal(docker('network', 'connect', '--alias', 'tunnel.test', lan, server.getId()).status, 0);
  for (const [index, id] of ['b1', 'b2'].entries()) {
    const client = await new LocalContainer(PROXY_IMAGE)
      .withNetworkMode(lan)
      .withCopyContentToContainer([{ content: cert.cert, target: '/etc/wmproxy/tunnel-ca.pem', mode: 0o644 }])
      .withCommand(['tunnel', 'client', '--server', 'tunnel.test:7000', '--token', TOKEN, '--ca', '/etc/wmproxy/tunnel-ca.pem', '--name', `client-${index + 1}`,
        '--map', 'web=http:backend:8080@app.test'])
      .withStartupTimeout(120_000)
      .start();
    // The client reaches its own backend on its service network (connected after start: it dials the backend per stream).
    assert.equal(docker('network', 'connect', `wmproxy-e2e-svc-${id}-${SESSION}`, client.getId()).status, 0);
    clients.push(client);
  }
  const port = server.getMappedPort(8080);

  // The server has no way to the backends but the tunnels.
  const direct = docker('exec', server.getId(), 'bun', '-e', "await fetch('http://backend:8080/health', { signal: AbortSignal.timeout(3000) })");
  assert.notEqual(direct.status, 0, 'the server must not reach a backend directly');

  // Both clients serve the mapping.
  await until(async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++) seen.add((await get(port)).backend);
    return seen.has('b1') && seen.has('b2');
  }, 'answers from both backends through both tunnels', 90_000);

  // b1's service refuses: health checks through client 1's tunnel take it out; no visitor sees an error.
  let load = traffic(port);
  await sleep(500);
  assert.equal(docker('kill', '--signal', 'SIGUSR1', backends[0]!.getId()).status, 0);
  await until(() => load.answers.slice(-10).length === 10 && load.answers.slice(-10).every((answer) => answer.backend === 'b2'), 'b1 out of the rotation');
  assert.equal(docker('kill', '--signal', 'SIGUSR2', backends[0]!.getId()).status, 0);
  await until(() => load.answers.slice(-20).some((answer) => answer.backend === 'b1'), 'b1 back after rise checks');
  await load.stop();
  assert.deepEqual(load.answers.filter((answer) => answer.status !== 200), [], 'no visitor error while a local service died and came back');

  // Client 2's container is killed mid-traffic: its server leaves the group at once.
  load = traffic(port);
  await sleep(500);
  await clients[1]!.stop({ timeout: 0 });
  await sleep(3_000);
  await load.stop();
  assert.deepEqual(load.answers.filter((answer) => answer.status !== 200), [], 'no visitor error when a client vanished');
  assert.ok(load.answers.slice(-10).every((answer) => answer.backend === 'b1'));
});
