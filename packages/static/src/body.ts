import { promises as fsp } from 'node:fs';
import type { StaticBody, StaticResponse } from './types.js';

/** Chunk size for streamed file reads (bounded memory per response). */
export const CHUNK_SIZE = 64 * 1024;

const STATUS_LINE: Record<number, string> = {
  200: 'OK',
  204: 'No Content',
  206: 'Partial Content',
  301: 'Moved Permanently',
  304: 'Not Modified',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  412: 'Precondition Failed',
  416: 'Range Not Satisfiable',
  500: 'Internal Server Error',
};

/**
 * The body's bytes as an async sequence of chunks of at most 64 KiB, reading
 * files through one file handle. Memory stays bounded when the consumer awaits
 * its own backpressure (for example a core-net `Conn`'s drain) between chunks.
 */
export async function* bodyChunks(body: StaticBody): AsyncGenerator<Uint8Array> {
  switch (body.kind) {
    case 'empty':
      return;
    case 'bytes':
      yield body.data;
      return;
    case 'file':
      yield* fileChunks(body.path, body.start, body.end);
      return;
    case 'multipart': {
      const source = body.source;
      for (const part of body.parts) {
        yield part.head;
        if ('data' in source) yield source.data.subarray(part.start, part.end);
        else yield* fileChunks(source.path, part.start, part.end);
      }
      yield body.tail;
    }
  }
}

async function* fileChunks(path: string, start: number, end: number): AsyncGenerator<Uint8Array> {
  const handle = await fsp.open(path, 'r');
  try {
    let position = start;
    while (position < end) {
      const buffer = new Uint8Array(Math.min(CHUNK_SIZE, end - position));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) throw new Error(`${path} shrank while being sent`);
      position += bytesRead;
      yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/** A web `ReadableStream` pulling from `bodyChunks` (one chunk per pull: backpressure for free). */
export function bodyStream(body: StaticBody): ReadableStream<Uint8Array> {
  const iterator = bodyChunks(body);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await iterator.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (error) {
        controller.error(error);
      }
    },
    async cancel() {
      await iterator.return(undefined);
    },
  });
}

/** A WHATWG `Response` for any runtime with web streams (Bun, Node 18+, Deno, workers). */
export function toWebResponse(response: StaticResponse): Response {
  const body = response.body;
  const init = { status: response.status, headers: response.headers };
  if (body.kind === 'empty') return new Response(null, init);
  if (body.kind === 'bytes') return new Response(body.data, init);
  return new Response(bodyStream(body), init);
}

/**
 * The HTTP/1.1 status line and headers as bytes (with `Date` and `Connection`),
 * for writing a response on a raw connection such as a core-net `Conn`:
 * `conn.write(renderHead(res, keepAlive))`, then every chunk of `bodyChunks(res.body)`,
 * waiting for `drain` whenever `write` returns false.
 */
export function renderHead(response: StaticResponse, keepAlive: boolean): Uint8Array {
  let head = `HTTP/1.1 ${response.status} ${STATUS_LINE[response.status] ?? 'Unknown'}\r\ndate: ${new Date().toUTCString()}\r\n`;
  for (const name in response.headers) head += `${name}: ${response.headers[name]}\r\n`;
  head += keepAlive ? 'connection: keep-alive\r\n\r\n' : 'connection: close\r\n\r\n';
  return new TextEncoder().encode(head);
}
