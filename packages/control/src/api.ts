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
 *   GET  /events      server-sent events: health transitions, ejections, reloads
 *   POST /reload      re-read the configuration file (errors: 422, the running one stays)
 *   POST /stop        graceful stop
 *
 * A bearer token (`Authorization: Bearer T`, or `?token=T` for the page and
 * the event stream) is needed for every endpoint when the API listens on a
 * non-loopback address, and for POST endpoints whenever one is configured.
 * `/healthz` is open to all: it tells nothing but "alive", and container and
 * orchestrator probes should not need a secret.
 */
import { timingSafeEqual } from 'node:crypto';
import { Elysia } from 'elysia';
import { formatHostPort, isLoopback, listenHost, parseAddress } from '@wmproxy/core-net';
import type { ControlConfig } from '@wmproxy/config';
import { DASHBOARD_HTML } from './dashboard.js';
import type { Instance, InstanceEvent } from './instance.js';

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
const TEXT_HEADERS = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };
const KEEPALIVE_MS = 5_000;
const HEALTHZ_PATH = '/healthz';

function tokenMatches(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

function givenToken(request: Request): string | undefined {
  const header = request.headers.get('authorization');
  if (header && /^bearer\s+/i.test(header)) return header.replace(/^bearer\s+/i, '').trim();
  const query = new URL(request.url).searchParams.get('token');
  return query ?? undefined;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2) + '\n', { status, headers: JSON_HEADERS });
}

/** The API's own state: the settings can change on reload without a restart (same address). */
interface Access {
  token: string | undefined;
  loopback: boolean;
}

/** Open event streams, closed on shutdown so that the server can stop. */
class EventStreams {
  private readonly open = new Set<ReadableStreamDefaultController<Uint8Array>>();
  private readonly encoder = new TextEncoder();

  constructor(private readonly instance: Instance) {}

  response(): Response {
    let listener: ((event: InstanceEvent) => void) | undefined;
    let timer: ReturnType<typeof setInterval> | undefined;
    let self: ReadableStreamDefaultController<Uint8Array> | undefined;
    const cleanup = () => {
      if (listener) this.instance.events.off('event', listener);
      if (timer) clearInterval(timer);
      if (self) this.open.delete(self);
      listener = undefined;
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
        send(`retry: 2000\nevent: hello\ndata: ${JSON.stringify({ at: Date.now(), recent: this.instance.recentEvents.slice(-50) })}\n\n`);
        listener = (event) => send(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
        this.instance.events.on('event', listener);
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

function buildApp(instance: Instance, access: Access, streams: EventStreams, adapter: unknown): Elysia {
  const app = new Elysia(adapter ? { adapter: adapter as never } : {});
  return app
    .onBeforeHandle(({ request, path }) => {
      const mutating = request.method !== 'GET' && request.method !== 'HEAD';
      // The path exactly: `/status?x=/healthz` is not liveness.
      if (!mutating && path === HEALTHZ_PATH) return;
      const needs = !access.loopback || (mutating && access.token !== undefined);
      if (!needs) return;
      if (access.token === undefined || !tokenMatches(access.token, givenToken(request))) {
        return new Response(JSON.stringify({ error: 'a valid bearer token is required' }) + '\n', {
          status: 401,
          headers: { ...JSON_HEADERS, 'www-authenticate': 'Bearer realm="wmproxy"' },
        });
      }
    })
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
    .get('/metrics', async () => {
      await instance.refresh();
      return new Response(instance.prometheus(), { headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' } });
    })
    .get('/events', () => streams.response())
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

export class ControlServer {
  readonly address: string;
  private readonly app: Elysia;
  private readonly streams: EventStreams;
  private readonly access: Access;
  private readonly nodeServer: NodeServerInfo | undefined;

  private constructor(app: Elysia, address: string, streams: EventStreams, access: Access, nodeServer: NodeServerInfo | undefined) {
    this.app = app;
    this.address = address;
    this.streams = streams;
    this.access = access;
    this.nodeServer = nodeServer;
  }

  static async start(instance: Instance, config: ControlConfig): Promise<ControlServer> {
    const address = parseAddress(config.listen);
    const hostname = listenHost(address);
    const access: Access = { token: config.token, loopback: !address.wildcard && isLoopback(address.host) };
    const streams = new EventStreams(instance);
    const onBun = typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined';
    if (onBun) {
      const app = buildApp(instance, access, streams, undefined);
      app.listen({ hostname, port: address.port, idleTimeout: 255 } as never);
      const port = (app.server as { port?: number } | null)?.port ?? address.port;
      return new ControlServer(app, formatHostPort(hostname, port), streams, access, undefined);
    }
    const { node } = await import('@elysiajs/node');
    const app = buildApp(instance, access, streams, node());
    let info: NodeServerInfo | undefined;
    app.listen({ hostname, port: address.port, gracefulShutdown: false, silent: true } as never, (server: unknown) => {
      info = server as NodeServerInfo;
    });
    await info?.raw?.ready();
    const bound = info?.raw?.node?.server?.address();
    const port = typeof bound === 'object' && bound ? bound.port : address.port;
    return new ControlServer(app, formatHostPort(hostname, port), streams, access, info);
  }

  /** New token (same address): applies at once. */
  configure(config: ControlConfig): void {
    this.access.token = config.token;
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
