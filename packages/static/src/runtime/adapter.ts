/**
 * The contract between createStaticServer and the runtime adapters (Bun.serve,
 * node:http, the worker cluster), apart from both so that neither imports the
 * other's module.
 */
import { formatHostPort, type Logger } from '@wmproxy/core-net';
import type { AccessLog } from '../access-log.js';
import type { StaticHandler } from '../handler.js';
import type { StaticOptions } from '../options.js';

export interface StaticServerOptions extends StaticOptions {
  /** `host:port` to listen on (default `127.0.0.1:8080`; port 0 = ephemeral). */
  listen?: string;
  /** Only requests whose Host is this name are served; others get 421. */
  domain?: string;
  accessLog?: AccessLog;
  logger?: Logger;
  /** Force an adapter; by default core-net's `runtimeName`: Bun.serve on Bun (unless WMPROXY_RUNTIME=node), node:http elsewhere. */
  runtime?: 'bun' | 'node';
  /** Processes serving the port, like nginx's `worker_processes` (default 1). */
  workers?: number;
  /** Bind with SO_REUSEPORT (set for the workers where core-net's `workerSharing` is `reuseport`). */
  reusePort?: boolean;
}

export interface StaticServer {
  readonly runtime: 'bun' | 'node';
  readonly host: string;
  readonly port: number;
  /** `http://host:port` */
  readonly url: string;
  readonly handler: StaticHandler;
  /** Stop accepting and close every connection. */
  close(): Promise<void>;
}

/** What a runtime adapter needs. */
export interface AdapterOptions {
  host: string;
  port: number;
  handler: StaticHandler;
  domain: string | undefined;
  accessLog: AccessLog | undefined;
  logger: Logger | undefined;
  reusePort: boolean;
}

export type Adapter = (options: AdapterOptions) => Promise<StaticServer>;

/** `Host` header → lowercase name without port; true when it names `domain`. */
export function hostMatches(host: string | undefined | null, domain: string): boolean {
  if (!host) return false;
  let name = host.toLowerCase();
  if (name.startsWith('[')) name = name.slice(0, name.indexOf(']') + 1);
  else {
    const colon = name.lastIndexOf(':');
    if (colon >= 0) name = name.slice(0, colon);
  }
  return name === domain || name === domain + '.';
}

export function serverUrl(host: string, port: number): string {
  const shown = host === '::' || host === '0.0.0.0' ? '127.0.0.1' : host;
  return `http://${formatHostPort(shown, port)}`;
}
