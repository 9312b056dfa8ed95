import { createReadStream } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable, pipeline } from 'node:stream';
import { bodyChunks, CHUNK_SIZE } from '../body.js';
import type { StaticResponse } from '../types.js';
import { formatHostPort, listenError } from '@wmproxy/core-net';
import { hostMatches, serverUrl, type AdapterOptions, type StaticServer } from './adapter.js';

const MISDIRECTED_BODY = new TextEncoder().encode('421 Misdirected Request\n');
const MISDIRECTED: StaticResponse = {
  status: 421,
  headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(MISDIRECTED_BODY.length) },
  body: { kind: 'bytes', data: MISDIRECTED_BODY },
};

interface Pending {
  req: IncomingMessage;
  res: ServerResponse;
  started: number;
  /** Read at arrival: after the response the socket may be gone. */
  remoteAddress: string;
  options: AdapterOptions;
}

function onPipelineDone(this: ServerResponse, error: Error | null | undefined): void {
  if (error) this.destroy(error);
}

/** Send a response description with node:http; file bodies stream in 64 KiB reads with backpressure. */
export function sendNode(res: ServerResponse, response: StaticResponse): void {
  res.writeHead(response.status, response.headers);
  const body = response.body;
  switch (body.kind) {
    case 'empty':
      res.end();
      return;
    case 'bytes':
      res.end(body.data);
      return;
    case 'file':
      if (body.end <= body.start) {
        res.end();
        return;
      }
      pipeline(
        createReadStream(body.path, { start: body.start, end: body.end - 1, highWaterMark: CHUNK_SIZE }),
        res,
        onPipelineDone.bind(res),
      );
      return;
    case 'multipart':
      pipeline(Readable.from(bodyChunks(body)), res, onPipelineDone.bind(res));
  }
}

function respond(this: Pending, response: StaticResponse): void {
  const { req, res, options } = this;
  sendNode(res, response);
  if (options.accessLog) {
    const length = response.body.kind === 'empty' ? 0 : Number(response.headers['content-length'] ?? 0);
    options.accessLog.write({
      remoteAddress: this.remoteAddress,
      method: req.method ?? '',
      target: req.url ?? '',
      protocol: `HTTP/${req.httpVersion}`,
      status: response.status,
      bytes: length,
      referer: req.headers.referer,
      userAgent: req.headers['user-agent'],
      durationMs: performance.now() - this.started,
    });
  }
}

function fail(this: Pending, error: unknown): void {
  this.options.logger?.error('static handler failed', { error: String(error), path: this.req.url });
  if (this.res.headersSent) this.res.destroy();
  else respond.call(this, { status: 500, headers: { 'content-length': '0' }, body: { kind: 'empty' } });
}

export async function serveNode(options: AdapterOptions): Promise<StaticServer> {
  const { handler, domain } = options;
  const server = createServer({ keepAliveTimeout: 5000, requestTimeout: 30000, headersTimeout: 20000 }, (req, res) => {
    const logging = options.accessLog !== undefined;
    const pending: Pending = {
      req,
      res,
      options,
      started: logging ? performance.now() : 0,
      remoteAddress: logging ? req.socket.remoteAddress ?? '' : '',
    };
    if (domain !== undefined && !hostMatches(req.headers.host, domain)) {
      respond.call(pending, MISDIRECTED);
      return;
    }
    const staticRequest = { method: req.method ?? 'GET', target: req.url ?? '/', headers: req.headers };
    const hit = handler.cached(staticRequest);
    if (hit) respond.call(pending, hit);
    else handler.handle(staticRequest).then(respond.bind(pending), fail.bind(pending));
  });
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error): void => reject(listenError(error, formatHostPort(options.host, options.port)));
    server.once('error', failed);
    // SO_REUSEPORT only for our own workers, and only where it balances (core-net's workerSharing; Node from 22.12).
    server.listen({ port: options.port, host: options.host, reusePort: options.reusePort }, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : options.port;
  return {
    runtime: 'node',
    host: options.host,
    port,
    url: serverUrl(options.host, port),
    handler,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
