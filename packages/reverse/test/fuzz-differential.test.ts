// Differential fuzzing of the reverse proxy's HTTP/1.1 path (docs/fuzzing.md):
// generated requests go through a fresh ReverseProxy to real origins (node:http
// in a child `node`, Python's http.server, nginx) behind recording taps, and
// generated hostile responses come back from a raw origin. A bounded run here
// (fixed seed); `npm run fuzz` runs the same properties for longer with random seeds.
import { BodyReader, parseRequestHead } from '@wmproxy/core-net';
import { defineFuzzSuite, type ProxyUnderTest } from '@wmproxy/testkit/http-fuzz';
import { ReverseProxy } from '../src/index.js';

const reverse: ProxyUnderTest = {
  name: 'reverse',
  profile: { target: 'origin', authorityForm: true },
  parser: { parseRequestHead, BodyReader },
  limits: {},
  async start(upstream) {
    const proxy = new ReverseProxy({
      servers: [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: 'origin' }] }] }],
      upstreams: [{ name: 'origin', servers: [{ address: upstream }] }],
      // One attempt, no hedging: every request reaches the origin at most once.
      retries: { tries: 1 },
      hedgeDelayMs: 0,
      requestHedgeMs: 0,
      shutdownDeadlineMs: 0,
    });
    await proxy.start();
    const address = proxy.addresses[0]!;
    return { port: Number(address.slice(address.lastIndexOf(':') + 1)), close: () => proxy.close() };
  },
};

defineFuzzSuite(reverse, 'reverse proxy', 0x5eed0);
