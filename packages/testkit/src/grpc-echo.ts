import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { spawnGrpcChild } from './grpc-child.js';

/*
 * A gRPC echo service with all four call kinds, served and called with
 * @grpc/grpc-js generic definitions and Buffer (de)serializers (no protobuf:
 * messages are UTF-8 text). Each answer names the server, so a test sees
 * which backend served a call; a few request texts make the server
 * misbehave on cue.
 *
 *   Unary          "x" → "<name>:x"; "fail:<code>" → that status;
 *                  "sleep:<ms>" → answers after ms (counts cancellations)
 *   ClientStream   "a","b" → "<name>:a,b"
 *   ServerStream   "count:<n>:<ms>" → n messages "<name>:<i>", ms apart;
 *                  "fail-after:<n>" → n messages, then ABORTED
 *   Bidi           each message "x" → "<name>:x"; ends when the client ends
 *
 * Every successful call ends with trailer `x-echo-server: <name>`.
 */

const SERVICE = 'wmproxy.test.Echo';
const identity = (buffer: Buffer): Buffer => buffer;

function method(name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: `/${SERVICE}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

/** The service definition, for servers and `grpc.makeGenericClientConstructor`. */
export const ECHO_SERVICE = {
  Unary: method('Unary', false, false),
  ClientStream: method('ClientStream', true, false),
  ServerStream: method('ServerStream', false, true),
  Bidi: method('Bidi', true, true),
} satisfies grpc.ServiceDefinition;

/** A generic client of the echo service. */
export interface EchoClient extends grpc.Client {
  Unary(request: Buffer, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Buffer>): grpc.ClientUnaryCall;
  ClientStream(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Buffer>): grpc.ClientWritableStream<Buffer>;
  ServerStream(request: Buffer, metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<Buffer>;
  Bidi(metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<Buffer, Buffer>;
}

const EchoClientConstructor = grpc.makeGenericClientConstructor(ECHO_SERVICE, SERVICE) as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => EchoClient;

/** A client of `address` (host:port); TLS when `ca` is given (server name `localhost`). */
export function echoClient(address: string, options: { ca?: string; channel?: grpc.ChannelOptions } = {}): EchoClient {
  const credentials = options.ca ? grpc.credentials.createSsl(Buffer.from(options.ca)) : grpc.credentials.createInsecure();
  return new EchoClientConstructor(address, credentials, { 'grpc.ssl_target_name_override': 'localhost', ...options.channel });
}

/** What a call ended with: the answer, or the gRPC status of the failure, and the trailers. */
export interface UnaryOutcome {
  value?: string;
  code: number;
  details: string;
  trailers: Record<string, string>;
}

/** One unary call; never rejects (a failure is an outcome with its code). */
export function unary(client: EchoClient, text: string, options: grpc.CallOptions = {}, metadata = new grpc.Metadata()): Promise<UnaryOutcome> {
  return new Promise((resolve) => {
    let value: string | undefined;
    let error: grpc.ServiceError | null = null;
    const call = client.Unary(Buffer.from(text), metadata, options, (failure, reply) => {
      error = failure;
      if (reply) value = reply.toString();
    });
    call.on('status', (status: grpc.StatusObject) => {
      // 'status' comes after the callback: both are known here.
      queueMicrotask(() => resolve({ ...(value !== undefined ? { value } : {}), code: error?.code ?? status.code, details: error?.details ?? status.details, trailers: flatten(status.metadata) }));
    });
  });
}

function flatten(metadata: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata.getMap())) out[key] = String(value);
  return out;
}

export interface EchoServer {
  port: number;
  name: string;
  /** Calls received, per method name. */
  calls: Record<string, number>;
  /** Calls that got grpc-js's 'cancelled' event: cancelled by the client or the proxy (on Bun, grpc-js also fires it when a call finished: count calls that cannot finish). */
  cancelled: number;
  /** Metadata (request headers) of every call, in order. */
  metadata: Array<Record<string, string>>;
  close(): Promise<void>;
}

function trailer(name: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('x-echo-server', name);
  return metadata;
}

/** An echo server in this process on 127.0.0.1:0 (TLS when `tls` is given: grpc-js offers ALPN h2). */
export async function grpcEchoServer(options: { name?: string; tls?: { cert: string; key: string }; /** Every Unary call fails with this status. */ failAll?: number } = {}): Promise<EchoServer> {
  const name = options.name ?? 'echo';
  const server = new grpc.Server();
  const state: EchoServer = {
    port: 0,
    name,
    calls: { Unary: 0, ClientStream: 0, ServerStream: 0, Bidi: 0 },
    cancelled: 0,
    metadata: [],
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())).then(() => server.forceShutdown()),
  };
  const seen = (kind: string, call: { metadata: grpc.Metadata; on(event: 'cancelled', listener: () => void): unknown }): void => {
    state.calls[kind]!++;
    state.metadata.push(flatten(call.metadata));
    call.on('cancelled', () => state.cancelled++);
  };
  server.addService(ECHO_SERVICE, {
    Unary(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      seen('Unary', call);
      const text = call.request.toString();
      if (options.failAll !== undefined) {
        callback({ code: options.failAll, details: `${name} fails every call` });
        return;
      }
      if (text.startsWith('fail:')) {
        callback({ code: Number(text.split(':')[1]), details: `failed on request (${name})` });
        return;
      }
      if (text.startsWith('sleep:')) {
        const timer = setTimeout(() => callback(null, Buffer.from(`${name}:${text}`), trailer(name)), Number(text.slice(6)));
        call.on('cancelled', () => clearTimeout(timer));
        return;
      }
      callback(null, Buffer.from(`${name}:${text}`), trailer(name));
    },
    ClientStream(call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      seen('ClientStream', call);
      const parts: string[] = [];
      call.on('data', (chunk: Buffer) => parts.push(chunk.toString()));
      call.on('end', () => callback(null, Buffer.from(`${name}:${parts.join(',')}`), trailer(name)));
    },
    ServerStream(call: grpc.ServerWritableStream<Buffer, Buffer>) {
      seen('ServerStream', call);
      const [kind, countText, gapText] = call.request.toString().split(':');
      const count = Number(countText);
      const gap = Number(gapText ?? 0);
      let sent = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      call.on('cancelled', () => clearTimeout(timer));
      const next = (): void => {
        if (call.cancelled) return;
        if (sent === count) {
          if (kind === 'fail-after') call.emit('error', { code: grpc.status.ABORTED, details: `failed after ${count} (${name})` });
          else call.end(trailer(name));
          return;
        }
        call.write(Buffer.from(`${name}:${sent++}`));
        timer = setTimeout(next, gap);
      };
      next();
    },
    Bidi(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
      seen('Bidi', call);
      call.on('data', (chunk: Buffer) => call.write(Buffer.from(`${name}:${chunk.toString()}`)));
      call.on('end', () => call.end(trailer(name)));
    },
  });
  const credentials = options.tls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(options.tls.cert), private_key: Buffer.from(options.tls.key) }])
    : grpc.ServerCredentials.createInsecure();
  state.port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (error, port) => (error ? reject(error) : resolve(port))));
  return state;
}

export interface SpawnedEchoServer {
  port: number;
  name: string;
  child: ChildProcess;
  kill(): Promise<void>;
}

/**
 * An echo server (Unary and ServerStream as above, h2c) in a child `node`
 * process, to be killed (SIGKILL) mid-call from a test. It prints
 * `unary <text>` on its stdout as each unary call arrives.
 */
export async function spawnGrpcEchoServer(name = 'spawned'): Promise<SpawnedEchoServer> {
  const { port, child, kill } = await spawnGrpcChild(
    `
    const id = (b) => b;
    const m = (n, rs, ss) => ({ path: '/${SERVICE}/' + n, requestStream: rs, responseStream: ss, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id });
    const name = ${JSON.stringify(name)};
    const server = new grpc.Server();
    server.addService({ Unary: m('Unary', false, false), ServerStream: m('ServerStream', false, true) }, {
      Unary(call, callback) {
        const text = call.request.toString();
        const delay = text.startsWith('sleep:') ? Number(text.slice(6)) : 0;
        // Tests wait for this line to know the call reached this process.
        console.log('unary ' + text);
        setTimeout(() => callback(null, Buffer.from(name + ':' + text)), delay);
      },
      ServerStream(call) {
        const [, count, gap] = call.request.toString().split(':');
        let sent = 0;
        const next = () => {
          if (call.cancelled) return;
          if (sent === Number(count)) return call.end();
          call.write(Buffer.from(name + ':' + sent++));
          setTimeout(next, Number(gap ?? 0));
        };
        next();
      },
    });
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
      if (error) { console.error(error); process.exit(1); }
      console.log('port ' + port);
    });`,
    'gRPC echo server',
  );
  return { port, name, child, kill };
}
