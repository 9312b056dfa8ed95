import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Logger } from '@wmproxy/core-net';
import { AccessLog, ReverseProxy, type AccessRecord, type ReverseProxyOptions } from '../src/index.js';
export { closedPort as deadPort } from '@wmproxy/testkit';

export interface Backend {
  name: string;
  port: number;
  address: string;
  server: http.Server;
  hits: number;
  close(): Promise<void>;
}

export type BackendHandler = (req: http.IncomingMessage, res: http.ServerResponse, backend: Backend) => void;

const defaultHandler: BackendHandler = (req, res, backend) => {
  if (req.url === '/health') {
    res.end('ok');
    return;
  }
  res.setHeader('X-Backend', backend.name);
  res.end(backend.name);
};

/** A node:http backend on 127.0.0.1, port 0 (or `port` to restart on the same one). */
export async function startBackend(name: string, handler: BackendHandler = defaultHandler, port = 0): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  const backend = { name, hits: 0 } as Backend;
  const server = http.createServer((req, res) => {
    if (req.url !== '/health') backend.hits++;
    handler(req, res, backend);
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  backend.server = server;
  backend.port = (server.address() as AddressInfo).port;
  backend.address = `127.0.0.1:${backend.port}`;
  backend.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return backend;
}

/** A raw TCP server that does whatever `onSocket` says (misbehaving backends). */
export async function startRaw(onSocket: (socket: net.Socket) => void): Promise<{ port: number; address: string; close(): Promise<void>; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}


export async function startProxy(options: Partial<ReverseProxyOptions> & Pick<ReverseProxyOptions, 'upstreams'>): Promise<{ proxy: ReverseProxy; base: string; port: number }> {
  const proxy = new ReverseProxy({
    shutdownDeadlineMs: 1_000,
    servers: options.servers ?? [{ listen: '127.0.0.1:0', vhosts: [{ locations: [{ path: '/', upstream: options.upstreams[0]!.name }] }] }],
    ...options,
  });
  await proxy.start();
  const address = proxy.addresses[0] ?? '127.0.0.1:0';
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  return { proxy, base: `http://127.0.0.1:${port}`, port };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

export const keepAliveAgent = (): http.Agent => new http.Agent({ keepAlive: true, maxSockets: 8 });

export function request(
  url: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer; agent?: http.Agent | false } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: options.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Send raw bytes, collect everything until the server closes (or `idleMs` passes without bytes). */
export function rawExchange(port: number, payload: string | Buffer, idleMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(done, idleMs);
    };
    socket.on('connect', () => {
      socket.write(payload);
      arm();
    });
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      arm();
    });
    socket.on('end', done);
    socket.on('close', done);
    socket.on('error', (error) => (chunks.length > 0 ? done() : reject(error)));
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `condition` every 20 ms until it holds (no timing assertion: the test timeout bounds it). */
export async function until(condition: () => boolean | Promise<boolean>, what: string, limitMs = 20_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A debug-level logger whose lines the test can read. */
export function memoryLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { lines, logger: new Logger({ level: 'debug', sink: { write: (line: string) => lines.push(line) } }) };
}

export interface CollectedSpan extends Record<string, unknown> {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
  status: { code: number; message?: string };
}

export interface Collector {
  endpoint: string;
  spans: CollectedSpan[];
  requests: number;
  /** Content-Type of each export request. */
  contentTypes: string[];
  bodies: unknown[];
  status: number;
  close(): Promise<void>;
}

/** An OTLP/HTTP (JSON) collector that keeps every span it receives (answers `status`). */
export async function startCollector(): Promise<Collector> {
  const collector = { spans: [], requests: 0, contentTypes: [], bodies: [], status: 200 } as unknown as Collector;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      collector.requests++;
      collector.contentTypes.push(String(req.headers['content-type']));
      const parsed = JSON.parse(body) as { resourceSpans: Array<{ resource: unknown; scopeSpans: Array<{ spans: Collector['spans'] }> }> };
      collector.bodies.push(parsed);
      if (collector.status === 200) for (const rs of parsed.resourceSpans) for (const ss of rs.scopeSpans) collector.spans.push(...ss.spans);
      res.statusCode = collector.status;
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  collector.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
  collector.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections(); // exporters keep connections alive
    });
  return collector;
}

/** A backend that records the traceparent and tracestate it was sent, answering `status` (200 by default). */
export function tracingBackend(name: string, seen: Array<{ traceparent?: string; tracestate?: string }>, status = 200, delayMs = 0): Promise<Backend> {
  return startBackend(name, (req, res) => {
    seen.push({ traceparent: req.headers.traceparent as string | undefined, tracestate: req.headers.tracestate as string | undefined });
    setTimeout(() => {
      res.statusCode = status;
      res.end(name);
    }, delayMs);
  });
}

/** An access log that keeps the records (retries, hedge outcome, trace id, bytes in). */
export class RecordingLog extends AccessLog {
  readonly records: AccessRecord[] = [];
  constructor() {
    super({ write: () => true }, 'json');
  }
  override log(record: AccessRecord): void {
    this.records.push(record);
  }
}

/** A client's W3C trace context, for tracing tests. */
export const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
export const CLIENT_PARENT = '00f067aa0ba902b7';
export const CLIENT_TRACEPARENT = `00-${CLIENT_TRACE}-${CLIENT_PARENT}-01`;
/** A version-00 traceparent: trace id, parent id, flags. */
export const TRACEPARENT_SHAPE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

/** An exported span's attribute value (whichever OTLP AnyValue field holds it). */
export function spanAttribute(span: CollectedSpan, key: string): unknown {
  const value = span.attributes.find((entry) => entry.key === key)?.value;
  return value === undefined ? undefined : Object.values(value)[0];
}
