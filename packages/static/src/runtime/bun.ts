import { bodyChunks, bodyStream } from '../body.js';
import type { Server } from 'bun';
import type { StaticRequest, StaticResponse } from '../types.js';
import { hostMatches, serverUrl, type AdapterOptions, type StaticServer } from './adapter.js';
import { formatHostPort, listenError } from '@wmproxy/core-net';

/** Bun.serve's listen errors in Node's words (`listen EADDRINUSE: address already in use 127.0.0.1:8080`). */
function listening<T>(host: string, port: number, bind: () => T): T {
  try {
    return bind();
  } catch (error) {
    throw listenError(error, formatHostPort(host, port));
  }
}

/**
 * A web Response for Bun.serve. File bodies are `Bun.file(path).slice()`, which
 * Bun sends with sendfile(2). Bun answers Range requests itself for any 200
 * file body; when we decided to send the whole file despite a Range header
 * (If-Range mismatch, invalid or too many ranges) the body is streamed instead
 * so Bun cannot turn it into a 206.
 */
export function toBunResponse(response: StaticResponse, request: Request): Response | Promise<Response> {
  const body = response.body;
  const init = { status: response.status, headers: response.headers };
  switch (body.kind) {
    case 'empty':
      return new Response(null, init);
    case 'bytes':
      return new Response(body.data, init);
    case 'file':
      if (response.status === 200 && request.headers.has('range')) return new Response(bodyStream(body), init);
      return new Response(Bun.file(body.path).slice(body.start, body.end), init);
    case 'multipart':
      // Bun sends a streamed body chunked, dropping Content-Length, so a
      // multipart body up to 4 MiB is assembled first; larger ones stream.
      if (Number(response.headers['content-length']) <= MULTIPART_BUFFER_LIMIT) return assemble(body, init);
      return new Response(bodyStream(body), init);
  }
}

const MULTIPART_BUFFER_LIMIT = 4 * 1024 * 1024;

async function assemble(body: StaticResponse['body'], init: ResponseInit): Promise<Response> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of bodyChunks(body)) chunks.push(chunk);
  return new Response(new Blob(chunks), init);
}

const MISDIRECTED = 'Misdirected Request';

/** `http://host:port/path?q` → `/path?q` (Bun has already merged dot-segments). */
function targetOf(url: string): string {
  const slash = url.indexOf('/', url.indexOf('//') + 2);
  return slash < 0 ? '/' : url.slice(slash);
}

export async function serveBun(options: AdapterOptions): Promise<StaticServer> {
  const { handler, domain, accessLog } = options;

  async function respond(staticRequest: StaticRequest, request: Request, bunServer: Server<undefined>): Promise<Response> {
    const started = accessLog ? performance.now() : 0;
    const response = await handler.handle(staticRequest);
    if (accessLog) {
      accessLog.write({
        remoteAddress: bunServer.requestIP(request)?.address ?? '',
        method: request.method,
        target: staticRequest.target,
        protocol: 'HTTP/1.1',
        status: response.status,
        bytes: response.body.kind === 'empty' ? 0 : Number(response.headers['content-length'] ?? 0),
        referer: request.headers.get('referer') ?? undefined,
        userAgent: request.headers.get('user-agent') ?? undefined,
        durationMs: performance.now() - started,
      });
    }
    return toBunResponse(response, request);
  }

  const server = listening(options.host, options.port, () =>
    Bun.serve({
      hostname: options.host,
      port: options.port,
      // Set only for our own workers: anyone else's taken port must fail.
      reusePort: options.reusePort,
      idleTimeout: 30,
      fetch(request, bunServer) {
        if (domain !== undefined && !hostMatches(request.headers.get('host'), domain)) {
          return new Response(MISDIRECTED, { status: 421 });
        }
        const staticRequest: StaticRequest = { method: request.method, target: targetOf(request.url), headers: request.headers };
        if (!accessLog) {
          // Synchronous answer when the handler has it memoised: no promise, no I/O.
          const hit = handler.cached(staticRequest);
          if (hit) return toBunResponse(hit, request);
        }
        return respond(staticRequest, request, bunServer);
      },
      error(error) {
        options.logger?.error('static handler failed', { error: String(error) });
        return new Response(null, { status: 500 });
      },
    }),
  );
  const port = server.port ?? options.port;
  return {
    runtime: 'bun',
    host: options.host,
    port,
    url: serverUrl(options.host, port),
    handler,
    close: async () => {
      await server.stop(true);
    },
  };
}
