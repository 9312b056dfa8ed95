/**
 * `workers = N`: worker processes share the listeners, the primary probes
 * each target once and workers follow its health states, counters add up in
 * the control API, a reload reaches every worker, and a killed worker is
 * replaced without a failed request on the others.
 *
 * Which worker owns a client connection is read from /proc (the socket's
 * inode among each worker's file descriptors), so the test can pin
 * connections to workers without any help from the code under test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '@wmproxy/core-net';
import { parseConfig } from '@wmproxy/config';
import { Instance } from '../src/index.js';
import { backend, until } from './helpers.js';

function configText(generation: number, backends: string[]): string {
  return `
[control]
listen = "127.0.0.1:0"
[reverse]
response_headers = ["set X-Generation ${generation}"]
[[upstream]]
name = "app"
servers = [${backends.map((address) => JSON.stringify(address)).join(', ')}]
health_check = { type = "http", path = "/healthz", interval = "100ms", timeout = "90ms", rise = 1, fall = 1 }
[[server]]
name = "web"
listen = "127.0.0.1:0"
[[server.location]]
path = "/"
upstream = "app"
`;
}

/** The inode of the established server-side socket `serverPort` ← `clientPort`, from /proc/net/tcp{,6}. */
function serverSocketInode(serverPort: number, clientPort: number): string | undefined {
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      if (fields[1]!.endsWith(`:${hex(serverPort)}`) && fields[2]!.endsWith(`:${hex(clientPort)}`) && fields[3] === '01') return fields[9];
    }
  }
  return undefined;
}

/** Which of `pids` holds that socket. */
function ownerOf(serverPort: number, clientPort: number, pids: number[]): number | undefined {
  const inode = serverSocketInode(serverPort, clientPort);
  if (!inode) return undefined;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}

interface Reply {
  status: number;
  body: string;
  generation: string | undefined;
  localPort: number;
}

/** Responses received so far, to compare with the instance's counters. */
let answered = 0;

function get(agent: http.Agent, port: number, path = '/'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path, agent }, (response) => {
      const localPort = response.socket.localPort ?? 0;
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        answered++;
        resolve({ status: response.statusCode ?? 0, body, generation: response.headers['x-generation'] as string | undefined, localPort });
      });
    });
    request.setTimeout(10_000, () => request.destroy(new Error('timeout')));
    request.on('error', reject);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function workerPids(instance: Instance): number[] {
  return (instance.status().workers ?? []).filter((worker) => worker.state === 'running' && worker.pid !== undefined).map((worker) => worker.pid!);
}

/** One keep-alive connection per worker: agents are opened until every worker owns one. */
async function connectionPerWorker(port: number, pids: number[]): Promise<Map<number, http.Agent>> {
  const byPid = new Map<number, http.Agent>();
  const spare: http.Agent[] = [];
  for (let attempt = 0; attempt < 80 && byPid.size < pids.length; attempt++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const reply = await get(agent, port);
    assert.equal(reply.status, 200);
    const owner = ownerOf(port, reply.localPort, pids);
    if (owner !== undefined && !byPid.has(owner)) byPid.set(owner, agent);
    else spare.push(agent);
  }
  for (const agent of spare) agent.destroy();
  assert.equal(byPid.size, pids.length, `every worker accepted one of 80 connections (${byPid.size} of ${pids.length} did)`);
  return byPid;
}

/** The sum of every sample of a metric, read through the control API. */
async function metric(instance: Instance, name: string): Promise<number> {
  const text = await (await fetch(`http://${instance.controlAddress}/metrics`)).text();
  return text
    .split('\n')
    .filter((entry) => entry.startsWith(name + ' ') || entry.startsWith(name + '{'))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

test('workers share the listeners, follow the primary health, add up their counters, reload together and are replaced when killed', { timeout: 120_000 }, async () => {
  const a = await backend('a');
  const b = await backend('b');
  const instance = await Instance.start(parseConfig(configText(1, [a.address, b.address]), 'toml', 'workers.toml'), { logger: silentLogger, workers: 2 });
  const agents: http.Agent[] = [];
  try {
    const status = instance.status();
    assert.equal(status.workers?.length, 2);
    const pids = workerPids(instance);
    assert.equal(new Set(pids).size, 2, 'two worker processes');
    assert.ok(!pids.includes(process.pid));
    const web = status.services.find((service) => service.name === 'web')!;
    const port = Number(web.addresses[0]!.split(':').pop());
    assert.ok(port > 0, 'port 0 was made concrete before the workers bound it');

    // Both workers accept on the same port.
    const byPid = await connectionPerWorker(port, pids);
    for (const agent of byPid.values()) agents.push(agent);

    // The primary probes each target once per interval: the workers do not probe.
    await sleep(600);
    const probes = instance.health.stats().probes;
    const seen = a.healthChecks + b.healthChecks;
    assert.ok(seen > 0, 'targets are probed');
    assert.ok(seen <= probes + 2, `backends saw ${seen} health checks, the primary ran ${probes}: nobody else probes`);

    // A backend dies: the primary marks it down and every worker stops using it.
    await b.kill();
    await until(() => instance.upstreams()[0]!.servers[1]!.state === 'unhealthy', 'the primary to mark b down');
    await until(async () => {
      await instance.refresh();
      return instance.upstreams()[0]!.servers[1]!.available === false;
    }, 'every worker to take b out of rotation');
    for (const agent of byPid.values()) {
      for (let i = 0; i < 5; i++) {
        const reply = await get(agent, port);
        assert.equal(reply.status, 200);
        assert.match(reply.body, /^a /, 'only a serves now');
      }
    }

    // Counters of both workers add up in /metrics and /upstreams.
    await until(async () => (await metric(instance, 'wmproxy_http_requests_total')) === answered, `wmproxy_http_requests_total to reach ${answered}`);
    const sum = instance.upstreams()[0]!.servers.reduce((total, server) => total + server.requests, 0);
    assert.ok(sum >= answered, `upstream requests (${sum}) count every answered request (${answered})`);
    // The primary's time series samples the workers' sum: every answered request shows up in it, on each server's columns too.
    const seriesTotal = () => {
      const view = instance.seriesView(0);
      return { all: view.requests['2xx']!.reduce((total, count) => total + count, 0), servers: view.servers.reduce((total, server) => total + server.requests.reduce((t, c) => t + c, 0), 0) };
    };
    await until(async () => seriesTotal().all >= answered, 'the series to hold the workers\' requests');
    assert.ok(seriesTotal().servers > 0, 'per-server columns count the workers\' requests');

    // A reload reaches every worker; their connections stay open.
    const result = await instance.reload(parseConfig(configText(2, [a.address, b.address]), 'toml', 'workers.toml'));
    assert.equal(result.ok, true, result.message);
    for (const agent of byPid.values()) {
      const reply = await get(agent, port);
      assert.equal(reply.generation, '2');
    }

    // Kill one worker while the other serves a steady stream of requests.
    const [victim, survivor] = pids as [number, number];
    const survivorAgent = byPid.get(survivor)!;
    const tally = { ok: 0, failed: [] as string[] };
    const stop = { done: false };
    const loop = (async () => {
      while (!stop.done) {
        try {
          const reply = await get(survivorAgent, port);
          if (reply.status === 200 && ownerOf(port, reply.localPort, [survivor]) === survivor) tally.ok++;
          else tally.failed.push(`status ${reply.status}, owner ${String(ownerOf(port, reply.localPort, [survivor]))}`);
        } catch (error) {
          tally.failed.push((error as Error).message);
        }
      }
    })();
    await sleep(200);
    process.kill(victim, 'SIGKILL');
    const replaced = await until(() => {
      const now = workerPids(instance);
      return now.length === 2 && !now.includes(victim) ? now : undefined;
    }, 'the killed worker to be replaced');
    await sleep(300);
    stop.done = true;
    await loop;
    assert.deepEqual(tally.failed, [], 'no request failed on the surviving worker');
    assert.ok(tally.ok > 0);
    assert.equal(instance.status().workers!.reduce((total, worker) => total + worker.restarts, 0), 1);
    assert.equal(await metric(instance, 'wmproxy_worker_restarts_total'), 1);

    // The replacement serves: new connections reach it, with the reloaded configuration.
    const fresh = await connectionPerWorker(port, replaced);
    for (const agent of fresh.values()) {
      agents.push(agent);
      const reply = await get(agent, port);
      assert.equal(reply.status, 200);
      assert.equal(reply.generation, '2', 'a replacement worker starts with the running configuration');
    }
    assert.ok(instance.recentEvents.some((event) => event.type === 'worker'), 'the crash is an event of the stream');
    await instance.stop();
    for (const pid of replaced) assert.equal(alive(pid), false, `worker ${pid} exited with the instance`);
  } finally {
    for (const agent of agents) agent.destroy();
    await instance.stop();
    await a.kill();
  }
});
