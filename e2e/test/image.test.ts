import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  BACKEND_IMAGE, E2E_LABEL, PROXY_IMAGE, SESSION, LocalContainer, Network, Wait, buildImages, cleanUp, curl, dockerSkipReason,
  type StartedNetwork, type StartedTestContainer,
} from './support.js';

const skip = dockerSkipReason();

/** The backend, started at module level (hooks have the per-test timeout; an image build may not fit). */
async function setUp(): Promise<{ network: StartedNetwork; backend: StartedTestContainer }> {
  buildImages();
  let network: StartedNetwork | undefined;
  try {
    network = await new Network().start();
    const backend = await new LocalContainer(BACKEND_IMAGE)
      .withNetwork(network)
      .withNetworkAliases('backend')
      .withLoopbackPorts(8080)
      .withWaitStrategy(Wait.forLogMessage('echo: http on 8080'))
      .withStartupTimeout(120_000)
      .start();
    return { network, backend };
  } catch (error) {
    await cleanUp(network);
    throw error;
  }
}

const setup = skip ? undefined : await setUp();

describe('the wmproxy image', { skip }, () => {
  after(async () => {
    await cleanUp(setup?.network);
  });

  test('runs the CLI: version names the runtime inside the container', () => {
    const run = spawnSync('docker', ['run', '--rm', '--label', `${E2E_LABEL}=${SESSION}`, PROXY_IMAGE, 'version', '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(run.status, 0, run.stderr);
    const info = JSON.parse(run.stdout) as { version: string; runtime: string };
    assert.equal(info.version, '0.1.0');
    assert.match(info.runtime, /^(bun|node)$/);
  });

  test('the backend answers on its published loopback port', async () => {
    const result = await curl([`http://127.0.0.1:${setup!.backend.getMappedPort(8080)}/hello`]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).url, '/hello');
  });
});
