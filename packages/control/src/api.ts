/**
 * The control API and dashboard (Elysia): on Bun with its own server, on
 * Node through `@elysiajs/node`.
 *
 *   GET  /            dashboard (one HTML page, no build step)
 *   GET  /healthz     liveness: 200 while running, 503 once stopping (no token needed)
 *   GET  /status      services, listeners, uptime, version
 *   GET  /upstreams   every upstream server: health, reason, counts, last results, counters
 *   GET  /config      the running configuration, secrets redacted
 *   GET  /metrics     Prometheus text format
 *   GET  /series      the last 15 minutes, one sample a second, as columns (`?since=` epoch ms)
 *   GET  /series/stream  server-sent events: the samples after `?since=`, then each new one as it is taken
 *   GET  /assets/*    the dashboard's chart library (uPlot, from node_modules)
 *   GET  /events      server-sent events: health transitions, ejections, reloads
 *   POST /reload      re-read the configuration file (errors: 422, the running one stays)
 *   POST /stop        graceful stop
 *
 * Every request passes `RequestGuard` first (guard.ts): the bearer token
 * (`Authorization: Bearer T`, or `?token=T` for the page and the event
 * stream) for every endpoint off loopback and for mutations whenever one is
 * set, the Host check against DNS rebinding, and the cross-site checks on
 * mutations. `/healthz` is open to all: it tells nothing but "alive", and
 * container and orchestrator probes should not need a secret.
 *
 * The port is never shared: Elysia binds with SO_REUSEPORT unless told not
 * to, and a second instance (or anything else) on the same port would then
 * answer some of the requests meant for this one.
 */
import { Elysia } from 'elysia';
import { formatHostPort, hostRuntime, isLoopback, listenError, listenHost, parseAddress, silentLogger, type Address, type Logger } from '@wmproxy/core-net';
import type { ControlConfig } from '@wmproxy/config';
import { asset } from './assets.js';
import { DASHBOARD_HTML } from './dashboard.js';
import { HEALTHZ_PATH, RequestGuard, type GuardSettings } from './guard.js';
import type { ControlApi, ControlTarget, InstanceEvent } from './types.js';

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
const TEXT_HEADERS = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };
const KEEPALIVE_MS = 5_000;
function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2) + '\n', { status, headers: JSON_HEADERS });
}

function guardSettings(config: ControlConfig, address: Address): GuardSettings {
  return {
    token: config.token,
    loopback: !address.wildcard && isLoopback(address.host),
    allowedHosts: config.allowedHosts,
    listenHost: address.host,
  };
}

/** One line saying which listener failed and why, with the system code kept on `code`. */
function listenFailure(error: unknown, address: string): Error {
  const failure = listenError(error, address);
  failure.message = `control API: ${failure.message}`;
  return failure;
}

/** Open event streams, closed on shutdown so that the server can stop. */
class EventStreams {
  private readonly open = new Set<ReadableStreamDefaultController<Uint8Array>>();
  private readonly encoder = new TextEncoder();

  constructor(private readonly instance: ControlTarget) {}

  /** GET /events: health transitions, ejections, reloads as they happen, after the recent ones. */
  events(): Response {
    const instance = this.instance;
    return this.stream((send) => {
      send(`retry: 2000\nevent: hello\ndata: ${JSON.stringify({ at: Date.now(), recent: instance.recentEvents.slice(-50) })}\n\n`);
      const listener = (event: InstanceEvent) => send(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      instance.events.on('event', listener);
      return () => instance.events.off('event', listener);
    });
  }

  /**
   * GET /series/stream: the samples after `since` at once, then each new
   * sample as it is taken (an event `series` whose data is a SeriesView of
   * the samples and transitions since the last one sent).
   */
  series(since: number): Response {
    const instance = this.instance;
    return this.stream((send) => {
      let last = since;
      const push = () => {
        const view = instance.seriesView(last);
        if (view.t.length === 0 && view.transitions.length === 0) return;
        if (view.t.length > 0) last = view.t[view.t.length - 1]! * 1000;
        for (const transition of view.transitions) if (transition.at > last) last = transition.at;
        send(`event: series\ndata: ${JSON.stringify(view)}\n\n`);
      };
      send('retry: 2000\n\n');
      push();
      instance.events.on('sample', push);
      return () => instance.events.off('sample', push);
    });
  }

  /** A text/event-stream whose source `start` subscribes (returning its unsubscribe), with keep-alive comments. */
  private stream(start: (send: (text: string) => void) => () => void): Response {
    let unsubscribe: (() => void) | undefined;
    let timer: ReturnType<typeof setInterval> | undefined;
    let self: ReadableStreamDefaultController<Uint8Array> | undefined;
    const cleanup = () => {
      unsubscribe?.();
      if (timer) clearInterval(timer);
      if (self) this.open.delete(self);
      unsubscribe = undefined;
      timer = undefined;
    };
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        self = controller;
        this.open.add(controller);
        const send = (text: string) => {
          try {
            controller.enqueue(this.encoder.encode(text));
          } catch {
            cleanup();
          }
        };
        unsubscribe = start(send);
        timer = setInterval(() => send(`: keep-alive ${Date.now()}\n\n`), KEEPALIVE_MS);
      },
      cancel: cleanup,
    });
    return new Response(stream, { headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' } });
  }

  closeAll(): void {
    for (const controller of [...this.open]) {
      try {
        controller.close();
      } catch {
        /* already closed */
      }
    }
    this.open.clear();
  }
}

/** The peer of a request: Bun's server tells it; on Node srvx's request carries its socket. */
function clientAddress(request: Request, server: unknown): string | undefined {
  const bun = (server as { requestIP?: (request: Request) => { address: string } | null } | null)?.requestIP;
  if (typeof bun === 'function') {
    try {
      return bun.call(server, request)?.address;
    } catch {
      // @elysiajs/node's stand-in throws: the socket below has it.
    }
  }
  return (request as { runtime?: { node?: { req?: { socket?: { remoteAddress?: string } } } } }).runtime?.node?.req?.socket?.remoteAddress;
}

function buildApp(instance: ControlTarget, guard: RequestGuard, streams: EventStreams, adapter: unknown): Elysia {
  const app = new Elysia(adapter ? { adapter: adapter as never } : {});
  return app
    // Before routing, so that unknown paths and methods are guarded too.
    .onRequest(({ request, server }) => guard.check(request, clientAddress(request, server)))
    .get('/', () => new Response(DASHBOARD_HTML, { headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' } }))
    .get(HEALTHZ_PATH, () =>
      instance.stopping
        ? new Response('stopping\n', { status: 503, headers: TEXT_HEADERS })
        : new Response('ok\n', { headers: TEXT_HEADERS }))
    .get('/status', async () => {
      await instance.refresh();
      return json(instance.status());
    })
    .get('/upstreams', async () => {
      await instance.refresh();
      return json({ at: Date.now(), upstreams: instance.upstreams() });
    })
    .get('/config', () => json(instance.redactedConfig()))
    .get('/certs', async () => json({ at: Date.now(), certificates: (await instance.certificates?.()) ?? [] }))
    .get('/metrics', async () => {
      await instance.refresh();
      return new Response(instance.prometheus(), { headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' } });
    })
    .get('/series', ({ request }) => {
      const since = Number(new URL(request.url).searchParams.get('since') ?? 0);
      return new Response(JSON.stringify(instance.seriesView(Number.isFinite(since) ? since : 0)) + '\n', { headers: JSON_HEADERS });
    })
    .get('/assets/:name', async ({ request }) => (await asset(new URL(request.url).pathname)) ?? new Response('not found\n', { status: 404, headers: TEXT_HEADERS }))
    .get('/series/stream', ({ request }) => {
      const since = Number(new URL(request.url).searchParams.get('since') ?? 0);
      return streams.series(Number.isFinite(since) ? since : 0);
    })
    .get('/events', () => streams.events())
    .post('/reload', async () => {
      const result = await instance.reload();
      return json(result, result.ok ? 200 : 422);
    })
    .post('/stop', () => {
      setTimeout(() => instance.requestStop(), 10);
      return json({ ok: true, stopping: true }, 202);
    }) as unknown as Elysia;
}

interface NodeServerInfo {
  raw?: { ready(): Promise<unknown>; close(closeAll?: boolean): Promise<void>; node?: { server?: { address(): { port: number } | string | null } } };
}

export class ControlServer implements ControlApi {
  readonly address: string;
  private readonly app: Elysia;
  private readonly streams: EventStreams;
  private readonly guard: RequestGuard;
  private readonly bind: Address;
  private readonly nodeServer: NodeServerInfo | undefined;

  private constructor(app: Elysia, address: string, streams: EventStreams, guard: RequestGuard, bind: Address, nodeServer: NodeServerInfo | undefined) {
    this.app = app;
    this.address = address;
    this.streams = streams;
    this.guard = guard;
    this.bind = bind;
    this.nodeServer = nodeServer;
  }

  /** Listen on `config.listen`; a port already taken (by anything) fails with `code` EADDRINUSE. `logger` gets the refusals. */
  static async start(instance: ControlTarget, config: ControlConfig, logger: Logger = silentLogger): Promise<ControlServer> {
    const address = parseAddress(config.listen);
    const hostname = listenHost(address);
    const guard = new RequestGuard(guardSettings(config, address), logger);
    const streams = new EventStreams(instance);
    // Elysia's adapter follows the process, not WMPROXY_RUNTIME: that picks the data plane's sockets.
    if (hostRuntime === 'bun') {
      const app = buildApp(instance, guard, streams, undefined);
      try {
        app.listen({ hostname, port: address.port, idleTimeout: 255, reusePort: false } as never);
      } catch (error) {
        throw listenFailure(error, formatHostPort(hostname, address.port));
      }
      const port = (app.server as { port?: number } | null)?.port ?? address.port;
      return new ControlServer(app, formatHostPort(hostname, port), streams, guard, address, undefined);
    }
    const { node } = await import('@elysiajs/node');
    const app = buildApp(instance, guard, streams, node());
    let info: NodeServerInfo | undefined;
    try {
      // reusePort: @elysiajs/node asks for it, and Node honours it from 22.12 on.
      app.listen({ hostname, port: address.port, gracefulShutdown: false, silent: true, reusePort: false } as never, (server: unknown) => {
        info = server as NodeServerInfo;
      });
      await info?.raw?.ready();
    } catch (error) {
      throw listenFailure(error, formatHostPort(hostname, address.port));
    }
    const bound = info?.raw?.node?.server?.address();
    const port = typeof bound === 'object' && bound ? bound.port : address.port;
    return new ControlServer(app, formatHostPort(hostname, port), streams, guard, address, info);
  }

  /** New token or allowed hosts (same address): applies at once. */
  configure(config: ControlConfig): void {
    this.guard.configure(guardSettings(config, this.bind));
  }

  async close(): Promise<void> {
    this.streams.closeAll();
    if (this.nodeServer) {
      await this.nodeServer.raw?.close(true);
    } else {
      await this.app.stop(true);
    }
  }
}
