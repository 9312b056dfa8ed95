import type { StaticOptions } from '@wmproxy/static';
import type { LocationHandler, LocationResponse } from './types.js';

type StaticModule = typeof import('@wmproxy/static');
let loading: Promise<StaticModule> | undefined;

/**
 * A location that serves files with `@wmproxy/static` (nginx `root`/`alias`,
 * Caddy `file_server`): conditional requests, ranges, precompressed files,
 * streamed from disk with backpressure. `@wmproxy/static` (and its MIME
 * table) is loaded on the first request, so proxies without static locations
 * do not pay its memory.
 */
export function staticLocation(options: StaticOptions): LocationHandler {
  let handler: InstanceType<StaticModule['StaticHandler']> | undefined;
  let bodyChunks: StaticModule['bodyChunks'] | undefined;
  return {
    async handle(request): Promise<LocationResponse> {
      if (!handler) {
        const module = await (loading ??= import('@wmproxy/static'));
        handler ??= new module.StaticHandler(options);
        bodyChunks = module.bodyChunks;
      }
      const response = await handler.handle({
        method: request.method,
        target: request.target,
        headers: { get: (name: string) => request.header(name.toLowerCase()) ?? null },
      });
      const headers: Array<[string, string]> = [];
      let length: number | undefined;
      for (const name in response.headers) {
        if (name === 'content-length') length = Number(response.headers[name]);
        else headers.push([name, response.headers[name]!]);
      }
      // Bytes (small files come from the file store's cache) are written at once, without an async iterator.
      const body = response.body.kind === 'bytes' ? response.body.data : response.body.kind === 'empty' ? undefined : bodyChunks!(response.body);
      return { status: response.status, headers, body, length };
    },
  };
}

export type { StaticOptions };
