import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { spawnGrpcChild } from './grpc-child.js';

/*
 * A real gRPC server (@grpc/grpc-js) implementing grpc.health.v1.Health/Check
 * with a generic service definition and (de)serializers written here, on
 * purpose apart from the code under test: a bug shared by our encoder and
 * our decoder cannot pass through a peer that has its own.
 */

/** HealthCheckResponse.ServingStatus. */
export const SERVING = 1;
export const NOT_SERVING = 2;

/** HealthCheckRequest { string service = 1 } → service (short names: one-byte tag and length suffice for tests, longer ones use the varint). */
function readService(buffer: Buffer): { service: string } {
  let at = 0;
  let service = '';
  while (at < buffer.length) {
    const tag = buffer[at++]!;
    let length = 0;
    let shift = 0;
    for (;;) {
      const byte = buffer[at++]!;
      length |= (byte & 0x7f) << shift;
      shift += 7;
      if ((byte & 0x80) === 0) break;
    }
    if (tag === 0x0a) service = buffer.toString('utf8', at, at + length);
    at += length;
  }
  // An object: grpc-js takes a falsy request for a missing one.
  return { service };
}

/** HealthCheckResponse { status = 1 } (proto3: 0 is the empty message). */
function writeStatus(status: number): Buffer {
  return status === 0 ? Buffer.alloc(0) : Buffer.from([0x08, status]);
}

const identity = (buffer: Buffer): Buffer => buffer;

const healthService: grpc.ServiceDefinition = {
  Check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: readService,
    responseSerialize: writeStatus,
    responseDeserialize: identity,
  },
};

export interface GrpcHealthServer {
  port: number;
  /** Status per service ('' is the server as a whole); a service not listed answers NOT_FOUND, as the health protocol says. */
  statuses: Map<string, number>;
  /** The service of every Check received, in order. */
  requests: string[];
  close(): Promise<void>;
}

export interface GrpcHealthServerOptions {
  statuses?: Record<string, number>;
  /** Serve TLS (grpc-js offers ALPN h2). */
  tls?: { cert: string; key: string };
  /** false: no health service at all (every Check answers UNIMPLEMENTED). */
  health?: boolean;
}

/** A gRPC health server in this process, on 127.0.0.1:0. */
export async function grpcHealthServer(options: GrpcHealthServerOptions = {}): Promise<GrpcHealthServer> {
  const server = new grpc.Server();
  const state: GrpcHealthServer = {
    port: 0,
    statuses: new Map(Object.entries(options.statuses ?? { '': SERVING })),
    requests: [],
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())).then(() => server.forceShutdown()),
  };
  if (options.health !== false) {
    server.addService(healthService, {
      Check(call: grpc.ServerUnaryCall<{ service: string }, number>, callback: grpc.sendUnaryData<number>) {
        const { service } = call.request;
        state.requests.push(service);
        const status = state.statuses.get(service);
        if (status === undefined) callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
        else callback(null, status);
      },
    });
  }
  const credentials = options.tls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(options.tls.cert), private_key: Buffer.from(options.tls.key) }])
    : grpc.ServerCredentials.createInsecure();
  state.port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (error, port) => (error ? reject(error) : resolve(port))));
  return state;
}

export interface SpawnedGrpcHealthServer {
  port: number;
  child: ChildProcess;
  /** SIGSTOP: the kernel still accepts connections, nothing answers (a blackholed server). */
  pause(): void;
  resume(): void;
  kill(): Promise<void>;
}

/**
 * A gRPC health server in a child `node` process (every service SERVING), to
 * be killed or paused (SIGSTOP) from the test.
 */
export async function spawnGrpcHealthServer(): Promise<SpawnedGrpcHealthServer> {
  const { port, child, kill } = await spawnGrpcChild(
    `
    const identity = (b) => b;
    const server = new grpc.Server();
    server.addService({ Check: { path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false,
      requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
      { Check(call, callback) { callback(null, Buffer.from([0x08, 1])); } });
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
      if (error) { console.error(error); process.exit(1); }
      console.log('port ' + port);
    });`,
    'gRPC health server',
  );
  return { port, child, kill, pause: () => child.kill('SIGSTOP'), resume: () => child.kill('SIGCONT') };
}

export * from './grpc-echo.js';
