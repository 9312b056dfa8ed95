import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLoopback } from '@wmproxy/core-net';
import { run, startHttpTarget, startProxy } from './helpers.js';
import { CHROMIUM, chromiumFlags } from '@wmproxy/testkit';


test('headless Chromium loads a local page through the SOCKS5 server', { skip: CHROMIUM ? false : 'chromium is not installed', timeout: 90_000 }, async () => {
  const page = await startHttpTarget();
  // Loopback only: anything else the browser might try is refused (0x02) before any lookup.
  const proxy = await startProxy({ allowDestination: (host) => isLoopback(host) });
  const profile = mkdtempSync(join(tmpdir(), 'wmproxy-chromium-'));
  try {
    const result = await run(
      CHROMIUM!,
      [
        ...chromiumFlags(profile),
        `--proxy-server=socks5://127.0.0.1:${proxy.port}`,
        // Chromium never proxies loopback unless told to; and it must resolve nothing itself.
        '--proxy-bypass-list=<-loopback>',
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
        '--dump-dom',
        `http://localhost:${page.port}/from-browser`,
      ],
      80_000,
    );
    assert.match(result.stdout, /<p id="greeting">hello \/from-browser via 127\.0\.0\.1<\/p>/, result.stderr.slice(-2000));
    await proxy.waitForLog('socks5 connect', `target=localhost:${page.port}`);
  } finally {
    // Chromium's helper processes may still be writing the profile as they die: retry.
    rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
    await proxy.close();
    await page.close();
  }
});
